"""Figures from one strategy run, the targets of issue 4, and docs/BENCHMARKS.md with its chart."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# AWS Lambda, arm64, US East (N. Virginia), first pricing tier; see PRICE_SOURCE.
ARM64_PRICE_PER_GB_SECOND = 0.0000133334
PRICE_PER_REQUEST = 0.20 / 1_000_000
PRICE_SOURCE = (
    "AWS's Lambda pricing page (aws.amazon.com/lambda/pricing, Arm price, US East (N. Virginia)) as quoted "
    "by cloudchipr.com's 2024 pricing guide (first 7.5 billion GB-s per month) and by a second public cost "
    "note; the stored copy of AWS's page itself did not show the table, so the value is an assumption "
    "checked against two secondary sources, looked up 2026-11-29. Free tier and volume tiers are ignored."
)
LAMBDA_MAX_SECONDS = 900
WARM_FRACTION = 0.8  # "once warmed up": the middle 80 % of completions

type Kind = Literal["engine", "batch", "sequential"]


@dataclass
class RunResult:
    strategy: str
    kind: Kind
    size: int
    processed: int
    latency_ms: float
    rate_limit: float
    started: float
    wall_s: float
    configured_rps: float | None = None
    max_concurrency: int | None = None
    completions: list[float] = field(default_factory=list)
    charge_seconds: list[float] = field(default_factory=list)
    claim_to_record: list[float] = field(default_factory=list)
    accepted_request_ends: list[float] = field(default_factory=list)
    requests: int = 0
    requests_429: int = 0
    failed_429: int = 0
    succeeded_records: int = 0
    declined: int = 0
    stripe_succeeded: int = 0
    duplicates: int = 0
    unrecorded: int = 0
    mongo_round_trips: int = 0
    mongo_cpu_s: float = 0.0
    cpu_s: float = 0.0
    invocations: int = 0
    billed_s: float = 0.0
    memory_peak_kib: float | None = None
    memory_samples: int = 0
    memory_top: list[tuple[str, int, int]] = field(default_factory=list)
    memory_series: list[tuple[float, int]] = field(default_factory=list)

    # ---- derived figures ----

    def warm_window(self) -> tuple[float, float, int]:
        """(start, end, completions inside) of the middle 80 % of completions."""
        times = sorted(self.completions)
        if len(times) < 3:
            return (self.started, self.started + self.wall_s, len(times))
        skip = int(len(times) * (1 - WARM_FRACTION) / 2)
        first, last = skip, len(times) - 1 - skip
        return times[first], times[last], last - first

    def warm_rate(self) -> float:
        start, end, count = self.warm_window()
        return count / (end - start) if end > start else 0.0

    def overall_rate(self) -> float:
        return len(self.completions) / self.wall_s if self.wall_s > 0 else 0.0

    def share_of_limit(self) -> float:
        """Stripe requests answered (not 429) per second in the warm window, over the server's limit."""
        start, end, _ = self.warm_window()
        if end <= start:
            return 0.0
        answered = sum(1 for moment in self.accepted_request_ends if start <= moment <= end)
        return answered / (end - start) / self.rate_limit

    def share_429(self) -> float:
        return self.requests_429 / self.requests if self.requests else 0.0

    def round_trips_per_donation(self) -> float:
        return self.mongo_round_trips / self.processed if self.processed else 0.0

    def cpu_ms_per_charge(self) -> float:
        return 1000 * self.cpu_s / self.processed if self.processed else 0.0

    def cpu_ms_per_charge_without_mongomock(self) -> float:
        return 1000 * (self.cpu_s - self.mongo_cpu_s) / self.processed if self.processed else 0.0

    def lambda_cost_per_10k(self, memory_mb: int) -> float:
        """Duration (GB-s) at the template's memory on arm64 plus requests, scaled to 10,000 donations."""
        seconds = self.billed_s if self.kind == "engine" else self.wall_s
        requests = (
            self.invocations if self.kind == "engine" else max(1, math.ceil(seconds / LAMBDA_MAX_SECONDS))
        )
        cost = seconds * memory_mb / 1024 * ARM64_PRICE_PER_GB_SECOND + requests * PRICE_PER_REQUEST
        return cost * 10_000 / self.processed if self.processed else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def seconds_triplet(values: Sequence[float]) -> str:
    return " / ".join(f"{percentile(values, q):.2f}" for q in (0.50, 0.95, 0.99))


# --------------------------------------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------------------------------------


def throughput_series(result: RunResult, bin_seconds: float = 1.0) -> tuple[list[float], list[float]]:
    """Charges completed per second, in bins of bin_seconds since the strategy started."""
    if not result.completions:
        return [], []
    bins = math.ceil(max(result.wall_s, max(result.completions) - result.started) / bin_seconds) + 1
    counts = [0] * bins
    for moment in result.completions:
        index = min(bins - 1, max(0, int((moment - result.started) / bin_seconds)))
        counts[index] += 1
    return [index * bin_seconds for index in range(bins)], [count / bin_seconds for count in counts]


def draw_throughput_chart(results: Sequence[RunResult], path: Path, title: str) -> None:
    """One panel per (latency, size); one line per strategy; the server's limit as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted({(result.latency_ms, result.size) for result in results})
    columns = len({size for _, size in cells})
    rows = math.ceil(len(cells) / columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.8 * rows), squeeze=False)
    for index, (latency, size) in enumerate(cells):
        axes: Any = axes_grid[index // columns][index % columns]
        cell = [result for result in results if (result.latency_ms, result.size) == (latency, size)]
        shown = [result.wall_s for result in cell if result.kind != "sequential"] or [cell[0].wall_s]
        bin_seconds = float(max(1, math.ceil(max(shown) / 100)))
        for result in cell:
            xs, ys = throughput_series(result, bin_seconds)
            label = result.strategy + (
                f" (sample of {result.processed})" if result.kind == "sequential" else ""
            )
            axes.plot(xs, ys, label=label, linewidth=1.2)
        others = [result.wall_s for result in cell if result.kind != "sequential"]
        if others and max(others) < max(result.wall_s for result in cell):
            axes.set_xlim(0, max(others) * 1.25)  # the sequential sample runs on, flat, far to the right
        axes.axhline(
            cell[0].rate_limit, color="grey", linestyle="--", linewidth=0.8, label="Stripe rate limit"
        )
        axes.set_title(f"N = {size:,}, latency {latency:g} ms")
        axes.set_xlabel("seconds since the strategy started")
        axes.set_ylabel(f"charges completed per second ({bin_seconds:g} s bins)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="upper right")
    for index in range(len(cells), rows * columns):
        axes_grid[index // columns][index % columns].axis("off")
    figure.suptitle(textwrap.fill(title, 70 * columns), fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
