"""`make bench`: throughput, latency, 429s, round trips, CPU, memory and Lambda cost of the engine, measured
against the seed's two strategies in the same run, on the same data, with the same Stripe-compatible server.

For each latency and size: seed N scheduled donations, run the real ``app.lambda_handler`` (invoked until a
run ends without running out of time), then the seed's batch-and-pause strategy, then (on a sample) the
sequential one. Each strategy gets its own Stripe server process (a fresh ledger and a full rate-limit
bucket), its own API key and its own mongomock database seeded with the same donations. Then: engine memory
under tracemalloc (a separate pass, since tracing slows everything down), and a Stripe whose real limit is
below the configured one. Writes docs/BENCHMARKS.md (or --output) and a chart next to it.

    python -m harness.bench [--sizes 1000,10000] [--latencies 250,800] [--rate 100] [--sequential-sample 300]
                            [--full-100k] [--smoke] [--output docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import math
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, cast

from donation_processor.adapters.donation_store import DONATIONS, SCHEDULED
from harness.bench.mongo_meter import CountingClient, MongoMeter, indexed_client
from harness.bench.report import (
    PRICE_SOURCE,
    WARM_FRACTION,
    RunResult,
    draw_throughput_chart,
    percentile,
    seconds_triplet,
)
from harness.bench.strategies import due_donations, run_batches, run_sequential
from harness.bench.stripe_process import (
    SdkRequestLog,
    StripeProcess,
    charge_spans,
    create_customers,
    stripe_client,
    successful_charges,
)
from harness.local.aws_local import MotoServer, load_template, provision_local_stack, start_moto_server
from harness.local.seed import (
    AUTHENTICATION_REQUIRED,
    GENERIC_DECLINE,
    INSUFFICIENT_FUNDS,
    STOLEN_CARD,
    SUCCEEDS,
    scheduled_donation,
)
from harness.local.services import AWS_DUMMY_ENV
from harness.project import PROJECT_ROOT
from harness.reports.readme_figures import update_readme

DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "BENCHMARKS.md"
DATABASE = "donations"
NEXT_RUN_AT = "nextRunAt"  # the field the claim query sorts on (the due index's range)
ENGINE_LOGGER = "scheduled-donations"
MAX_INVOCATIONS = 50
RETRY_ATTEMPTS = 4  # STRIPE_RETRY_ATTEMPTS default: a charge is at most 5 requests
CUSTOMER_POOL = 20
# Samples per traced run, whatever its size: the peak of a noisy quantity depends on how often one looks.
MEMORY_SAMPLES = 60
MEMORY_MIN_INTERVAL = 0.2
MEMORY_PATTERNS = ("*/donation_processor/*", "*/scheduled_donations/app.py")
# Payment methods of the seeded donations: mostly successes, a few soft and hard declines, no malformed ones
# (the seed's strategies do not validate documents).
BENCH_MIX: tuple[tuple[str, int], ...] = (
    (SUCCEEDS, 94),
    (INSUFFICIENT_FUNDS, 2),
    (GENERIC_DECLINE, 1),
    (STOLEN_CARD, 2),
    (AUTHENTICATION_REQUIRED, 1),
)
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the engine's log handler may keep it for the process's life
atexit.register(_DEVNULL.close)  # closed at exit, so no ResourceWarning is printed after the test run


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (1_000, 10_000)
    latencies: tuple[float, ...] = (250.0, 800.0)
    rate: float = 100.0
    jitter_fraction: float = 0.2
    sequential_sample: int = 300
    sequential_every_size: bool = False
    max_concurrency: int = 16
    batch_size: int = 50
    tuned: bool = True
    memory_sizes: tuple[int, ...] = (1_000, 10_000)
    adapt_size: int = 500
    adapt_real_rate: float = 25.0
    memory_mb: int = 1024
    smoke: bool = False

    def jitter_ms(self, latency: float) -> float:
        return latency * self.jitter_fraction

    def tuned_concurrency(self, latency: float) -> int:
        """Little's law with 25 % headroom: requests in flight needed to sustain the rate at this latency."""
        return min(256, math.ceil(self.rate * latency / 1000 * 1.25))


def template_defaults() -> tuple[int, int, int]:
    """(FunctionMemorySize, MaxConcurrency, BatchSize) defaults from template.yaml."""
    parameters = load_template(PROJECT_ROOT / "template.yaml")["Parameters"]
    return (
        int(parameters["FunctionMemorySize"]["Default"]),
        int(parameters["MaxConcurrency"]["Default"]),
        int(parameters["BatchSize"]["Default"]),
    )


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedDonation:
    id: str
    payment_method: str
    amount: int
    due: datetime


def make_dataset(size: int, now: datetime) -> list[SeedDonation]:
    """The same N donations for every strategy of a cell: ids, cards, amounts and due dates."""
    rng = random.Random(7_000 + size)
    methods = [method for method, _ in BENCH_MIX]
    weights = [weight for _, weight in BENCH_MIX]
    return [
        SeedDonation(
            id=f"bench-{index:07d}",
            payment_method=rng.choices(methods, weights=weights)[0],
            amount=rng.choice((500, 1000, 2500, 5000)),
            due=now - timedelta(minutes=1 + index % 600),
        )
        for index in range(size)
    ]


def seed(database: Any, dataset: Sequence[SeedDonation], customers: Sequence[str]) -> None:
    documents = [
        scheduled_donation(
            customer_id=customers[index % len(customers)],
            next_run_at=donation.due,
            payment_method_id=donation.payment_method,
            amount=donation.amount,
            donation_id=donation.id,
            donorId=f"donor-{index}",
        )
        for index, donation in enumerate(dataset)
    ]
    for offset in range(0, len(documents), 1000):
        database["scheduled_donations"].insert_many(documents[offset : offset + 1000])


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# --------------------------------------------------------------------------------------------------------
# Measurement hooks for the engine run
# --------------------------------------------------------------------------------------------------------


class EngineLog(contextlib.AbstractContextManager["EngineLog"]):
    """The engine's own log records (Powertools logger): which donations it gave up on because of a 429."""

    def __init__(self) -> None:
        import logging

        class _Handler(logging.Handler):
            def __init__(self, sink: EngineLog) -> None:
                super().__init__(level=logging.WARNING)
                self.sink = sink

            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage() == "charge failed transiently; stays due":
                    if getattr(record, "reason", None) == "rate_limit":
                        self.sink.rate_limited_ids.add(str(getattr(record, "donation_id", "")))
                    else:
                        self.sink.other_transient_ids.add(str(getattr(record, "donation_id", "")))

        self.rate_limited_ids: set[str] = set()
        self.other_transient_ids: set[str] = set()
        self._handler = _Handler(self)
        self._logger = logging.getLogger(ENGINE_LOGGER)

    def __enter__(self) -> Self:
        self._logger.addHandler(self._handler)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._logger.removeHandler(self._handler)


class MemorySampler(threading.Thread):
    """tracemalloc (innermost frame) sampled every few seconds; keeps the peak of allocations made by the
    project's own lines (layers/shared/donation_processor/, functions/scheduled_donations/app.py)."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="bench-memory", daemon=True)
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak_bytes = 0
        self.samples = 0
        self.top: list[tuple[str, int, int]] = []
        self.series: list[tuple[float, int]] = []  # (seconds since start, bytes) for every sample
        self._origin = time.monotonic()

    def _sample(self) -> None:
        # Live objects only: a full collection first empties CPython's free lists (freed tuples, dicts and
        # floats kept for reuse, which tracemalloc still credits to the line that first allocated them) and
        # any cyclic garbage. The engine makes no cycles per donation (see test_stripe_adapter.py).
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, pattern) for pattern in MEMORY_PATTERNS]
        )
        statistics = snapshot.statistics("lineno")
        size = sum(statistic.size for statistic in statistics)
        self.series.append((round(time.monotonic() - self._origin, 2), size))
        if size > self.peak_bytes:
            self.peak_bytes = size
            self.top = [
                (str(statistic.traceback[0]).replace(f"{PROJECT_ROOT}/", ""), statistic.size, statistic.count)
                for statistic in statistics[:5]
            ]
        self.samples += 1

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            self._sample()

    def __enter__(self) -> Self:
        tracemalloc.start(1)
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop_event.set()
        self.join()
        self._sample()
        tracemalloc.stop()


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class BenchContext:
    """The parts of Lambda's context the handler reads; 15 minutes from the invoke, as in template.yaml."""

    deadline: float
    function_name: str = "ScheduledDonationsFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ScheduledDonationsFunction"
    aws_request_id: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _load_app() -> Any:
    # The first import creates the Powertools logger, whose handler keeps the stdout of that moment: the
    # bench's stdout stays clean and the engine still formats every log line, as it does in Lambda.
    with contextlib.redirect_stdout(_DEVNULL):
        import app
    return app


def _customer_threads(rate: float, latency_ms: float) -> int:
    return max(1, min(CUSTOMER_POOL, int(rate * latency_ms / 1000 * 0.5)))


# --------------------------------------------------------------------------------------------------------
# One engine run
# --------------------------------------------------------------------------------------------------------


def run_engine(
    config: BenchConfig,
    moto: MotoServer,
    dataset: Sequence[SeedDonation],
    *,
    latency: float,
    strategy: str,
    max_concurrency: int,
    server_rate: float | None = None,
    trace_memory: bool = False,
) -> RunResult:
    server_rate = config.rate if server_rate is None else server_rate
    app = _load_app()
    slug = strategy.replace(" ", "").replace("=", "").replace(",", "")
    api_key = f"sk_test_bench_{slug}_{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:10]
    uri = f"mongomock://localhost/bench-{tag}"
    from donation_processor.adapters import mongo_connection

    raw = indexed_client(DATABASE, (SCHEDULED, DONATIONS), sorted_fields=(NEXT_RUN_AT,))
    meter = MongoMeter()
    with StripeProcess(
        latency_ms=latency, jitter_ms=config.jitter_ms(latency), rate_limit_rps=server_rate
    ) as server:
        customers = create_customers(
            stripe_client(server.url, api_key),
            min(CUSTOMER_POOL, len(dataset)),
            _customer_threads(server_rate, latency),
        )
        seed(raw[DATABASE], dataset, customers)
        mongo_connection._clients[uri] = cast(Any, CountingClient(raw, meter))
        stack = provision_local_stack(
            moto.endpoint_url, lock_table_name=f"bench-lock-{tag}", queue_name=f"bench-dlq-{tag}"
        )
        env = {
            **AWS_DUMMY_ENV,
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "MONGODB_URI": uri,
            "MONGODB_DATABASE": DATABASE,
            "STRIPE_SECRET_KEY": api_key,
            "STRIPE_API_BASE": server.url,
            "LOCK_TABLE_NAME": stack.lock_table_name,
            "DEAD_LETTER_QUEUE_URL": stack.queue_url,
            "POWERTOOLS_SERVICE_NAME": ENGINE_LOGGER,
            "POWERTOOLS_METRICS_NAMESPACE": "ScheduledDonations",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "LOG_LEVEL": "INFO",
            "STRIPE_MAX_RPS": f"{config.rate:g}",
            "MAX_CONCURRENCY": str(max_concurrency),
            "BATCH_SIZE": str(config.batch_size),
        }
        event = json.loads((PROJECT_ROOT / "events" / "scheduled.json").read_text())
        time.sleep(1.1)  # the customers used some of the server's bucket: start every strategy with it full
        summaries: list[dict[str, Any]] = []
        billed = 0.0
        # About MEMORY_SAMPLES samples over the run's expected length (tracing runs at about 80 % speed).
        expected_s = len(dataset) / (0.8 * min(config.rate, server_rate))
        sampler = (
            MemorySampler(max(MEMORY_MIN_INTERVAL, expected_s / MEMORY_SAMPLES)) if trace_memory else None
        )
        with environment(env), EngineLog() as engine_log, SdkRequestLog() as sdk_log:
            app._engine = None  # a cold container: the engine is built from this environment
            with sampler if sampler is not None else contextlib.nullcontext():
                started = time.time()
                cpu_before = time.process_time()
                while len(summaries) < MAX_INVOCATIONS:
                    invoked = time.monotonic()
                    with contextlib.redirect_stdout(_DEVNULL):  # the EMF metrics
                        summary = app.lambda_handler(event, BenchContext(deadline=invoked + 900))
                    billed += math.ceil((time.monotonic() - invoked) * 1000) / 1000
                    summaries.append(summary)
                    if summary["status"] != "partial":
                        break
                cpu = time.process_time() - cpu_before
                wall = time.time() - started
            app._engine = None
        round_trips, mongo_cpu = meter.snapshot()
        requests = sdk_log.requests()
        spans = [span for span in charge_spans(requests, RETRY_ATTEMPTS + 1) if span.final]
        database = raw[DATABASE]
        claimed_at = {
            str(document["_id"]): document.get("lastClaimedAt")
            for document in database["scheduled_donations"].find({}, {"lastClaimedAt": 1})
        }
        claim_to_record: list[float] = []
        recorded: set[tuple[str, str]] = set()
        succeeded = declined = 0
        for record in database["donations"].find({}):
            donation_id = str(record["scheduledDonationId"])
            claimed = claimed_at.get(donation_id)
            if claimed is not None:
                claim_to_record.append(_epoch(record["createdAt"]) - _epoch(claimed))
            if record["status"] == "succeeded":
                succeeded += 1
                recorded.add((donation_id, str(record["period"])))
            else:
                declined += 1
        charges = successful_charges(server.url, api_key)
    mongo_connection._clients.pop(uri, None)
    result = RunResult(
        strategy=strategy,
        kind="engine",
        size=len(dataset),
        processed=len(dataset),
        latency_ms=latency,
        rate_limit=server_rate,
        started=started,
        wall_s=wall,
        configured_rps=config.rate,
        max_concurrency=max_concurrency,
        completions=[span.end for span in spans],
        charge_seconds=[span.end - span.start for span in spans],
        claim_to_record=claim_to_record,
        accepted_request_ends=[request.end for request in requests if request.status not in (0, 429)],
        requests=len(requests),
        requests_429=sum(1 for request in requests if request.status == 429),
        failed_429=len(engine_log.rate_limited_ids),
        succeeded_records=succeeded,
        declined=declined,
        stripe_succeeded=charges.total,
        duplicates=charges.duplicates,
        unrecorded=len(set(charges.by_period) - recorded),
        mongo_round_trips=round_trips,
        mongo_cpu_s=mongo_cpu,
        cpu_s=cpu,
        invocations=len(summaries),
        billed_s=billed,
    )
    if sampler is not None:
        result.memory_peak_kib = sampler.peak_bytes / 1024
        result.memory_samples = sampler.samples
        result.memory_top = sampler.top
        result.memory_series = sampler.series
    statuses = [summary["status"] for summary in summaries]
    log(
        f"  {strategy:<22} N={len(dataset):>6} {latency:g} ms: {result.warm_rate():6.1f} charges/s warm, "
        f"{result.requests_429} x 429, {result.failed_429} failed by 429, {result.duplicates} duplicates, "
        f"{wall:.1f} s, invocations {statuses}"
    )
    return result


# --------------------------------------------------------------------------------------------------------
# One run of a seed strategy
# --------------------------------------------------------------------------------------------------------


def run_strategy(
    config: BenchConfig, dataset: Sequence[SeedDonation], *, latency: float, kind: str, limit: int | None
) -> RunResult:
    api_key = f"sk_test_bench_{kind}_{uuid.uuid4().hex[:6]}"
    raw = indexed_client(DATABASE, (SCHEDULED, DONATIONS), sorted_fields=(NEXT_RUN_AT,))
    meter = MongoMeter()
    with StripeProcess(
        latency_ms=latency, jitter_ms=config.jitter_ms(latency), rate_limit_rps=config.rate
    ) as server:
        client = stripe_client(server.url, api_key)
        customers = create_customers(
            client, min(CUSTOMER_POOL, len(dataset)), _customer_threads(config.rate, latency)
        )
        seed(raw[DATABASE], dataset, customers)
        database = CountingClient(raw, meter)[DATABASE]
        time.sleep(1.1)
        with SdkRequestLog() as sdk_log:
            round_trips_before, mongo_cpu_before = meter.snapshot()
            started = time.time()
            cpu_before = time.process_time()
            documents = due_donations(database, datetime.now(UTC), limit)
            if kind == "sequential":
                charges = run_sequential(client, database, documents)
            else:
                charges = run_batches(client, database, documents, batch_size=config.batch_size)
            cpu = time.process_time() - cpu_before
            wall = time.time() - started
            round_trips, mongo_cpu = meter.snapshot()
        requests = sdk_log.requests()
        recorded = {
            (str(record["scheduledDonationId"]), str(record["period"]))
            for record in raw[DATABASE]["donations"].find({"status": "succeeded"})
        }
        ledger = successful_charges(server.url, api_key)
    answered = [charge for charge in charges if charge.outcome in ("succeeded", "declined")]
    name = "seed: sequential" if kind == "sequential" else f"seed: batches of {config.batch_size} + 1 s pause"
    result = RunResult(
        strategy=name,
        kind="sequential" if kind == "sequential" else "batch",
        size=len(dataset),
        processed=len(documents),
        latency_ms=latency,
        rate_limit=config.rate,
        started=started,
        wall_s=wall,
        completions=[charge.end for charge in answered],
        charge_seconds=[charge.end - charge.start for charge in answered],
        accepted_request_ends=[request.end for request in requests if request.status not in (0, 429)],
        requests=len(requests),
        requests_429=sum(1 for request in requests if request.status == 429),
        failed_429=sum(1 for charge in charges if charge.outcome == "rate_limited"),
        succeeded_records=len(recorded),
        declined=sum(1 for charge in charges if charge.outcome == "declined"),
        stripe_succeeded=ledger.total,
        duplicates=ledger.duplicates,
        unrecorded=len(set(ledger.by_period) - recorded),
        mongo_round_trips=round_trips - round_trips_before,
        mongo_cpu_s=mongo_cpu - mongo_cpu_before,
        cpu_s=cpu,
        invocations=1,
    )
    log(
        f"  {name:<22} N={len(dataset):>6} {latency:g} ms: {result.warm_rate():6.1f} charges/s warm over "
        f"{len(documents)} donations, {result.requests_429} x 429, {result.failed_429} failed by 429, "
        f"{result.duplicates} duplicates, {wall:.1f} s"
    )
    return result


# --------------------------------------------------------------------------------------------------------
# The whole bench
# --------------------------------------------------------------------------------------------------------


@dataclass
class BenchResults:
    config: BenchConfig
    main: list[RunResult]
    memory: list[RunResult]
    adaptation: list[RunResult]
    started: datetime
    duration_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def engine_variants(config: BenchConfig, latency: float, size: int) -> list[tuple[str, int]]:
    variants = [(f"engine (MAX_CONCURRENCY={config.max_concurrency})", config.max_concurrency)]
    tuned = config.tuned_concurrency(latency)
    if config.tuned and tuned > config.max_concurrency and size == min(config.sizes):
        variants.append((f"engine (MAX_CONCURRENCY={tuned})", tuned))
    return variants


def run_bench(config: BenchConfig, checkpoint: Callable[[BenchResults], None] | None = None) -> BenchResults:
    """Main matrix, then the lower real limit, then memory (slowest, last); ``checkpoint`` after each run."""
    clock = time.monotonic()
    results = BenchResults(
        config=config,
        main=[],
        memory=[],
        adaptation=[],
        started=datetime.now(UTC),
        duration_s=0.0,
        load_before=os.getloadavg(),
        load_after=os.getloadavg(),
    )

    def done(target: list[RunResult], result: RunResult) -> None:
        target.append(result)
        results.duration_s = time.monotonic() - clock
        results.load_after = os.getloadavg()
        if checkpoint is not None:
            checkpoint(results)

    with start_moto_server() as moto:
        for latency in config.latencies:
            for size in config.sizes:
                log(f"N={size:,}, latency {latency:g} ms (jitter ±{config.jitter_ms(latency):g} ms)")
                dataset = make_dataset(size, datetime.now(UTC))
                for name, concurrency in engine_variants(config, latency, size):
                    done(
                        results.main,
                        run_engine(
                            config, moto, dataset, latency=latency, strategy=name, max_concurrency=concurrency
                        ),
                    )
                done(results.main, run_strategy(config, dataset, latency=latency, kind="batch", limit=None))
                if config.sequential_every_size or size == min(config.sizes):
                    sample = min(config.sequential_sample, size)
                    done(
                        results.main,
                        run_strategy(config, dataset, latency=latency, kind="sequential", limit=sample),
                    )
        if config.adapt_size:
            latency = config.latencies[0]
            log(
                f"adaptation: Stripe allows {config.adapt_real_rate:g}/s, engine configured for "
                f"{config.rate:g}/s, N={config.adapt_size}"
            )
            dataset = make_dataset(config.adapt_size, datetime.now(UTC))
            for name, concurrency in engine_variants(config, latency, min(config.sizes)):
                done(
                    results.adaptation,
                    run_engine(
                        config,
                        moto,
                        dataset,
                        latency=latency,
                        strategy=name,
                        max_concurrency=concurrency,
                        server_rate=config.adapt_real_rate,
                    ),
                )
        latency = config.latencies[0]
        # The same cap on charges in flight for every size: tracing slows the engine down by a different
        # amount at each size, and the governor would answer with more threads, each holding a donation.
        in_flight = config.tuned_concurrency(latency)
        for size in sorted(config.memory_sizes):
            log(f"engine memory under tracemalloc: N={size:,}, latency {latency:g} ms")
            done(
                results.memory,
                run_engine(
                    config,
                    moto,
                    make_dataset(size, datetime.now(UTC)),
                    latency=latency,
                    strategy=f"engine (MAX_CONCURRENCY={in_flight})",
                    max_concurrency=in_flight,
                    trace_memory=True,
                ),
            )
    return results


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def _machine() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return [
        f"- {platform.system()} {platform.release()} ({platform.machine()}), {model}, "
        f"{os.cpu_count()} logical CPUs{memory}",
        f"- Python {platform.python_version()}, stripe {_version('stripe')}, mongomock "
        f"{_version('mongomock')}, "
        f"moto {_version('moto')}",
    ]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _pass(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def _row(result: RunResult, memory_mb: int) -> str:
    sample = f" (sample of {result.processed:,})" if result.kind == "sequential" else ""
    return (
        f"| {result.latency_ms:g} | {result.size:,} | {result.strategy}{sample} | {result.processed:,} | "
        f"{result.warm_rate():.1f} | {result.overall_rate():.1f} | {100 * result.share_of_limit():.0f} % | "
        f"{seconds_triplet(result.charge_seconds)} | {result.requests:,} | {result.requests_429:,} "
        f"({100 * result.share_429():.1f} %) | {result.failed_429:,} | {result.duplicates} | "
        f"{result.round_trips_per_donation():.2f} | {result.cpu_ms_per_charge():.1f} / "
        f"{result.cpu_ms_per_charge_without_mongomock():.1f} | ${result.lambda_cost_per_10k(memory_mb):.4f} |"
    )


MAIN_HEADER = (
    "| latency ms | N | strategy | donations run | charges/s (warm) | charges/s (overall) | share of limit "
    "(warm) | time per charge p50 / p95 / p99 s | Stripe requests | answered 429 | failed by 429 | "
    "duplicate charges | MongoDB round trips / donation | CPU ms / charge (process / without mongomock) | "
    "Lambda $ / 10k donations |\n"
    "|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
)


def _targets(results: BenchResults) -> list[str]:
    config = results.config
    main = results.main
    engines = [result for result in main if result.kind == "engine"]
    default = [result for result in engines if result.max_concurrency == config.max_concurrency]
    lines = [
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for result in engines:
        label = f"{result.strategy}, {result.latency_ms:g} ms, N={result.size:,}"
        share = result.share_of_limit()
        lines.append(
            f"| >= 90 % of the rate limit once warmed up ({label}) | {100 * share:.0f} % "
            f"({result.warm_rate():.1f} charges/s of {result.rate_limit:g}/s) | {_pass(share >= 0.9)} |"
        )
    for result in engines:
        label = f"{result.strategy}, {result.latency_ms:g} ms, N={result.size:,}"
        ok = result.share_429() < 0.01 and result.failed_429 == 0
        lines.append(
            f"| < 1 % of requests answered 429, no donation failed by a 429 ({label}) | "
            f"{100 * result.share_429():.2f} %, {result.failed_429} failed | {_pass(ok)} |"
        )
    for result in engines:
        cell = [
            other
            for other in main
            if other.kind == "batch" and (other.latency_ms, other.size) == (result.latency_ms, result.size)
        ]
        sequential = [
            other for other in main if other.kind == "sequential" and other.latency_ms == result.latency_ms
        ]
        label = f"{result.strategy}, {result.latency_ms:g} ms, N={result.size:,}"
        if cell and cell[0].warm_rate() > 0:
            ratio = result.warm_rate() / cell[0].warm_rate()
            lines.append(
                f"| >= 2.3x the batch-and-pause strategy ({label}) | {ratio:.2f}x | {_pass(ratio >= 2.3)} |"
            )
        if sequential and sequential[0].warm_rate() > 0:
            ratio = result.warm_rate() / sequential[0].warm_rate()
            lines.append(
                f"| >= 20x the sequential strategy ({label}) | {ratio:.1f}x | {_pass(ratio >= 20)} |"
            )
    for latency in config.latencies:
        by_size = sorted((r for r in default if r.latency_ms == latency), key=lambda r: r.size)
        if len(by_size) >= 2 and by_size[0].processed and by_size[-1].processed:
            small, large = by_size[0], by_size[-1]
            ratio = (large.wall_s / large.processed) / (small.wall_s / small.processed)
            lines.append(
                f"| time linear in N ({small.strategy}, {latency:g} ms): seconds per donation at "
                f"N={large.size:,} within 10 % of N={small.size:,} | "
                f"{1000 * large.wall_s / large.processed:.1f} ms"
                f" vs {1000 * small.wall_s / small.processed:.1f} ms ({ratio:.2f}x); CPU per donation "
                f"without mongomock {large.cpu_ms_per_charge_without_mongomock():.1f} ms vs "
                f"{small.cpu_ms_per_charge_without_mongomock():.1f} ms, inside mongomock "
                f"{1000 * large.mongo_cpu_s / large.processed:.1f} ms vs "
                f"{1000 * small.mongo_cpu_s / small.processed:.1f} ms | {_pass(ratio <= 1.1)} |"
            )
    peaks = sorted((r for r in results.memory if r.memory_peak_kib is not None), key=lambda r: r.size)
    if len(peaks) >= 2:
        small, large = peaks[0], peaks[-1]
        assert small.memory_peak_kib is not None
        assert large.memory_peak_kib is not None
        ratio = large.memory_peak_kib / small.memory_peak_kib if small.memory_peak_kib else math.inf
        lines.append(
            f"| engine memory flat: peak at N={large.size:,} within 10 % of N={small.size:,} | "
            f"{large.memory_peak_kib:,.0f} KiB vs {small.memory_peak_kib:,.0f} KiB ({ratio:.2f}x) | "
            f"{_pass(ratio <= 1.1)} |"
        )
    worst = max(engines, key=lambda r: r.round_trips_per_donation(), default=None)
    if worst is not None:
        lines.append(
            f"| <= 3 MongoDB round trips per donation (worst engine run) | "
            f"{worst.round_trips_per_donation():.2f} | {_pass(worst.round_trips_per_donation() <= 3)} |"
        )
    for result in results.adaptation:
        lines.append(
            f"| Stripe allows {result.rate_limit:g}/s, engine configured for {config.rate:g}/s: no donation "
            f"fails ({result.strategy}) | {result.failed_429} failed, {result.requests_429:,} x 429 "
            f"({100 * result.share_429():.1f} % of requests), {result.warm_rate():.1f} charges/s | "
            f"{_pass(result.failed_429 == 0)} |"
        )
    every = main + results.memory + results.adaptation
    duplicates = sum(result.duplicates for result in every)
    unrecorded = sum(result.unrecorded for result in every)
    lines.append(
        f"| duplicate charges = 0 (every run, every donation) | {duplicates} duplicates; {unrecorded} "
        f"successful charges without a succeeded record | {_pass(duplicates == 0)} |"
    )
    return lines


def _limits(results: BenchResults) -> list[str]:
    """What the harness itself limited, computed from the figures of this run."""
    lines: list[str] = []
    bound = [r for r in results.main if r.wall_s and r.mongo_cpu_s / r.wall_s > 0.5]
    for result in bound:
        lines.append(
            f"- {result.strategy}, N={result.size:,}, {result.latency_ms:g} ms: the bench process spent "
            f"{result.mongo_cpu_s:.0f} s of CPU inside mongomock in a {result.wall_s:.0f} s run "
            f"({100 * result.mongo_cpu_s / result.wall_s:.0f} % of a core; "
            f"{1000 * result.mongo_cpu_s / result.processed:.1f} ms per donation), against "
            f"{result.cpu_ms_per_charge_without_mongomock():.1f} ms of all other CPU per donation."
        )
    if bound:
        lines.append(
            "- Rows where mongomock takes more than half a core measure the harness, not the engine: holding "
            "the GIL, it starves the engine's worker threads. The engine's own CPU per donation (the figure "
            "without mongomock) is the one to compare across N."
        )
    else:
        lines.append(
            "- No run spent more than half a core inside mongomock. Its lookups are indexed for the "
            "engine's point reads and writes and for the claim query (`find` sorted on `nextRunAt` with a "
            "limit); `count_overdue` and the parked-letter query still scan, once per run."
        )
    lines.append(
        "- The sequential strategy ran on a sample; its rate is the sample's. Each strategy's Stripe server "
        "process, the moto server and mongomock share this machine's 2 cores with each other and with other "
        "work (see the load average above)."
    )
    return lines


def _memory_notes(results: BenchResults) -> list[str]:
    lines = [
        "Every write reaches mongomock as a BSON copy, as it would reach a server over the wire, so the "
        "strings the engine builds and sends (idempotency keys, periods) are not kept alive in this "
        "process's copy of the database on the engine's behalf; what is counted is what the engine holds. "
        "The largest lines at the peak:",
        "",
    ]
    for result in results.memory:
        for where, size, count in result.memory_top:
            lines.append(f"- N={result.size:,}: `{where}`: {size / 1024:,.1f} KiB in {count:,} blocks")
    if any(result.memory_top for result in results.memory):
        return [*lines, ""]
    return [
        lines[0].replace(
            " The largest lines at the peak:", " (The lines at the peak were not recorded by this run.)"
        ),
        "",
    ]


def headline(results: BenchResults) -> str:
    """One bold line: the engine's warm rates, the targets met, the duplicate charges (quoted by README)."""
    config = results.config
    engines = [r for r in results.main if r.kind == "engine" and r.max_concurrency == config.max_concurrency]
    rates = "; ".join(
        f"{latency:g} ms: "
        + ", ".join(
            f"{r.warm_rate():.1f}/s at N={r.size:,}"
            for r in sorted(engines, key=lambda r: r.size)
            if r.latency_ms == latency
        )
        for latency in config.latencies
    )
    verdicts = [line for line in _targets(results) if line.endswith(("**pass** |", "**FAIL** |"))]
    met = sum(line.endswith("**pass** |") for line in verdicts)
    duplicates = sum(r.duplicates for r in results.main + results.memory + results.adaptation)
    return (
        f"**Engine against a {config.rate:g}/s Stripe limit, once warmed up: {rates}. "
        f"{met} of {len(verdicts)} targets met; {duplicates} duplicate charges.**"
    )


def render(results: BenchResults, command: str, chart: Path, output: Path) -> str:
    config = results.config
    memory_mb = config.memory_mb
    main_rows = [_row(result, memory_mb) for result in results.main]
    engine_rows = [
        f"| {r.latency_ms:g} | {r.size:,} | {r.strategy}"
        f"{f', Stripe at {r.rate_limit:g}/s' if r in results.adaptation else ''} | "
        f"{seconds_triplet(r.claim_to_record)} | "
        f"{r.invocations} | {r.billed_s:.1f} | {r.succeeded_records:,} / {r.declined:,} | "
        f"{r.stripe_succeeded:,} | {r.unrecorded} | {r.mongo_cpu_s:.2f} s "
        f"({100 * r.mongo_cpu_s / r.wall_s if r.wall_s else 0:.0f} % of a core) |"
        for r in results.main + results.adaptation
        if r.kind == "engine"
    ]
    memory_rows = [
        f"| {r.size:,} | {r.latency_ms:g} | {r.max_concurrency} | {r.memory_peak_kib or 0:,.1f} | "
        f"{r.memory_samples} | {r.wall_s:.1f} |"
        for r in results.memory
    ]
    adaptation_rows = [_row(result, memory_mb) for result in results.adaptation]
    try:
        chart_link = chart.relative_to(output.parent).as_posix()
    except ValueError:
        chart_link = chart.as_posix()
    sequential_note = (
        "every size"
        if config.sequential_every_size
        else f"the N={min(config.sizes):,} data only (its rate does not depend on N)"
    )
    cpu_budget = 1000 * (memory_mb / 1769) / max(1.0, 0.9 * config.rate)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `harness/bench/run.py` (`make bench`); every figure below was measured by that run. "
        "Do not "
        "edit by hand: re-run the bench.",
        "",
        headline(results),
        "",
        "## Run",
        "",
        f"- Command: `{command}` (`make bench` runs `python -m harness.bench` with `PYTHONPATH` set to "
        "`layers/shared`, `functions/scheduled_donations` and the project root).",
        f"- Started {results.started:%Y-%m-%d %H:%M} UTC, took {results.duration_s / 60:.1f} min.",
        *_machine(),
        f"- Load average (1/5/15 min) before: {' / '.join(f'{v:.2f}' for v in results.load_before)}, after: "
        f"{' / '.join(f'{v:.2f}' for v in results.load_after)}. The machine's 2 cores were shared with other "
        "engineers' work during the run, so CPU-bound figures are pessimistic.",
        f"- Stripe-compatible server (`python -m harness.local.stripe_server`) in its own process, "
        "fresh for every "
        f"strategy run: latency {', '.join(f'{x:g}' for x in config.latencies)} ms ± "
        f"{100 * config.jitter_fraction:.0f} % uniform jitter, rate limit {config.rate:g} requests/s (token "
        "bucket with a 1 s burst, answered with Stripe's 429 `rate_limit` body above it).",
        "- Engine: the real `app.lambda_handler`, a cold container per run, "
        f"`STRIPE_MAX_RPS={config.rate:g}`, "
        f"`BATCH_SIZE={config.batch_size}`, `MAX_CONCURRENCY={config.max_concurrency}` (template.yaml's "
        "default; plus, on the smallest size and only where it is higher, a run with the concurrency "
        "Little's "
        "law asks for at that latency with 25 % headroom, rate x latency x 1.25); other settings at "
        "their defaults; `LOG_LEVEL=INFO` as in template.yaml; "
        "MongoDB is mongomock in this process, with the `_id`, unique and `nextRunAt` lookups a MongoDB "
        "server would make from its indexes (`harness/bench/indexed_mongomock.py`, proven against plain "
        "mongomock by tests/harness/test_indexed_mongomock.py) and writes copied through BSON as on the "
        "wire; DynamoDB and SQS are moto's server in this process.",
        f"- Data: the same N scheduled donations for every strategy of a row group (ids `bench-0000000`..., "
        f"{', '.join(f'{m} {w} %' for m, w in BENCH_MIX)}; due over the last 10 hours); "
        f"{CUSTOMER_POOL} Stripe customers per server. The sequential strategy ran on a sample of "
        f"{config.sequential_sample} on {sequential_note}.",
        "",
        "## Results",
        "",
        MAIN_HEADER,
        *main_rows,
        "",
        f"![charges completed per second over time]({chart_link})",
        "",
        "Charges completed per second since each strategy started (the sequential sample, flat, runs on past "
        "the right edge of the N=1,000 panels).",
        "",
        "Engine runs, MongoDB side:",
        "",
        "| latency ms | N | strategy | claim to record p50 / p95 / p99 s | invocations | billed Lambda "
        "seconds "
        "| records succeeded / failed | successful PaymentIntents in Stripe | charges without a record "
        "| CPU inside mongomock |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
        *engine_rows,
        "",
        "## Targets (issue 4)",
        "",
        *_targets(results),
        "",
        f"CPU budget for reference: at {memory_mb} MB a Lambda gets {memory_mb / 1769:.2f} of a vCPU (a "
        "full one "
        f"at 1,769 MB), so sustaining 90 % of {config.rate:g}/s leaves at most {cpu_budget:.1f} ms of "
        "CPU per "
        "charge for everything the engine does in-process (SDK, JSON, logging, threads).",
        "",
        "## Limits of this run",
        "",
        *_limits(results),
        "",
        "## Engine memory (tracemalloc)",
        "",
        "| N | latency ms | MAX_CONCURRENCY | peak KiB allocated by project lines | samples | wall s "
        "(traced, slower) |",
        "|---:|---:|---:|---:|---:|---:|",
        *memory_rows,
        "",
        *_memory_notes(results),
        "## Stripe's real limit below the configured one",
        "",
        MAIN_HEADER,
        *adaptation_rows,
        "",
        "## How each figure is measured",
        "",
        "- **charges/s (warm)**: donations that got a final Stripe answer (success or decline), per "
        "second, over "
        f"the middle {100 * WARM_FRACTION:.0f} % of completions (first and last 10 % left out: warm-up and "
        "tail). *Overall* is the same count over the whole wall time. Completion times come from the SDK's "
        "own `stripe` logger (`Request to Stripe api` / `Stripe API response` records, paired per thread), "
        "read by a logging handler, the same way for every strategy.",
        "- **share of limit**: Stripe requests answered with anything but 429, per second in that "
        "window, over "
        "the server's rate limit.",
        "- **time per charge**: the Stripe leg of one donation, from its first request to its final answer, "
        "in-run retries and backoff included (for the engine: a worker thread's consecutive requests up to a "
        "non-transient answer, at most 5; for the seed strategies: the `create` call). The engine's "
        "time from "
        "claim to record (`lastClaimedAt` to the record's `createdAt` in MongoDB) includes the wait for a "
        "worker and for the client-side rate limiter.",
        "- **answered 429**: responses with status 429 seen by the SDK. **Failed by 429**: engine: donations "
        "logged `charge failed transiently; stays due` with reason `rate_limit` (given up after "
        f"{RETRY_ATTEMPTS + 1} attempts, left due for the next run); seed strategies: `create` raised "
        "`RateLimitError` (they do not retry it, and the SDK only retries 409, 5xx and connection errors).",
        "- **duplicate charges**: after each run, every succeeded PaymentIntent on that run's server is read "
        "back with `GET /v1/payment_intents/search?query=status:'succeeded'` (all pages, 100 per page; the "
        "server is fresh per run, so these are exactly the run's charges) and grouped by the "
        "`scheduled_donation_id` and `period` metadata: any group above 1 is a duplicate. *Charges without "
        "a record* compares the same set with the succeeded records in MongoDB.",
        "- **MongoDB round trips**: the engine's client for the bench's `mongomock://` URI is a "
        "counting proxy "
        "placed in `donation_processor.adapters.mongo_connection`'s client cache (a measurement hook; "
        "no engine or "
        "pymongo code is patched): each collection method call is 1 round trip; a `find` is 1 for its first "
        "batch (101 documents, or its `limit`/`batch_size` if smaller) plus 1 `getMore` per further "
        "`batch_size` documents (1 for the rest when none is set). Divided by the donations run.",
        "- **CPU ms per charge**: `time.process_time()` of the bench process over the run, divided by the "
        "donations run. The Stripe server is another process and is not included; mongomock, moto's "
        "server threads, the Powertools logging and the bench's own hooks are. The second figure subtracts "
        "the CPU spent inside mongomock calls (`time.thread_time()` around each call in the proxy), which a "
        "real deployment spends on the MongoDB server.",
        "- **Engine memory**: a separate engine run per size (tracing slows everything down, so its "
        "wall time is not a throughput figure) with `MAX_CONCURRENCY` set to what Little's law asks for at "
        "that latency (rate x latency x 1.25) in every size, so that the comparison isolates N: the "
        "engine's working set is the donations in flight, and the governor would otherwise answer "
        "tracing's slowdown, different at each size, with more threads; "
        "`tracemalloc.start(1)` after seeding, snapshots every "
        f"run's expected length / {MEMORY_SAMPLES} (at least {MEMORY_MIN_INTERVAL:g} s), so that every size "
        "is looked at about as often, and at the end, filtered with `tracemalloc.Filter(True, pattern)` for "
        f"{', '.join(f'`{p}`' for p in MEMORY_PATTERNS)}: the bytes allocated by the project's own lines and "
        "still alive after a full `gc.collect()` (which empties CPython's free lists: freed tuples and dicts "
        "kept for reuse are otherwise still credited to the line that first allocated them) (innermost "
        "frame; what the SDK, json or logging allocate on the engine's behalf is not "
        "counted, nor mongomock's copy of the database or the bench's hooks). The peak is the "
        "largest sample.",
        f"- **Lambda $ / 10k donations**: billed duration (each invocation's wall time, rounded up to the "
        f"ms) x {memory_mb} MB (template.yaml's `FunctionMemorySize` default) x the arm64 price per GB-s, "
        "plus the invocations x the price per request, scaled to 10,000 donations. The seed strategies are "
        "priced as if they ran in the same function (their wall time, one invocation per 900 s). Prices: "
        f"$0.0000133334 per GB-s and $0.20 per million requests; source: {PRICE_SOURCE}",
        "- **Invocations**: the handler is invoked again only when a run stops early (`partial`: the 900 s "
        "budget less `TIME_MARGIN_SECONDS`); donations left due by a transient failure wait for the next "
        "scheduled run, as in production.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated numbers of donations")
    parser.add_argument("--latencies", default="250,800", help="comma-separated Stripe latencies in ms")
    parser.add_argument("--rate", type=float, default=100.0, help="Stripe's rate limit and STRIPE_MAX_RPS")
    parser.add_argument("--jitter", type=float, default=0.2, help="jitter as a fraction of the latency")
    parser.add_argument("--sequential-sample", type=int, default=300)
    parser.add_argument("--sequential-every-size", action="store_true")
    parser.add_argument("--max-concurrency", type=int, default=None, help="default: template.yaml's")
    parser.add_argument(
        "--no-tuned", action="store_true", help="skip the engine run with Little's-law concurrency"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument(
        "--memory-sizes", default=None, help="sizes of the tracemalloc pass (default: --sizes)"
    )
    parser.add_argument("--adapt-size", type=int, default=500)
    parser.add_argument("--adapt-rate", type=float, default=25.0)
    parser.add_argument("--full-100k", action="store_true", help="add N=100,000 to the sizes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, < 30 s, writes to a temp file")
    parser.add_argument("--render-from", default=None, help="re-render a saved results JSON; run nothing")
    parser.add_argument("--output", default=None, help=f"default: {DEFAULT_OUTPUT.relative_to(PROJECT_ROOT)}")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> BenchConfig:
    memory_mb, max_concurrency, batch_size = template_defaults()
    config = BenchConfig(
        sizes=tuple(int(size) for size in _numbers(args.sizes)),
        latencies=_numbers(args.latencies),
        rate=args.rate,
        jitter_fraction=args.jitter,
        sequential_sample=args.sequential_sample,
        sequential_every_size=args.sequential_every_size,
        max_concurrency=args.max_concurrency or max_concurrency,
        batch_size=batch_size,
        tuned=not args.no_tuned,
        memory_sizes=()
        if args.no_memory
        else tuple(int(x) for x in _numbers(args.memory_sizes or args.sizes)),
        adapt_size=args.adapt_size,
        adapt_real_rate=args.adapt_rate,
        memory_mb=memory_mb,
    )
    if args.full_100k and 100_000 not in config.sizes:
        config = replace(config, sizes=(*config.sizes, 100_000))
    if args.smoke:
        config = replace(
            config,
            sizes=(60,),
            latencies=(20.0,),
            rate=200.0,
            sequential_sample=20,
            memory_sizes=() if args.no_memory else (60,),
            adapt_size=150,
            adapt_real_rate=50.0,
            smoke=True,
        )
    return config


def results_path(moment: datetime) -> Path:
    return Path(tempfile.gettempdir()) / f"bench-results-{moment:%Y%m%dT%H%M%S}.json"


def save_results(results: BenchResults, command: str, path: Path) -> None:
    payload = {"command": command, "results": asdict(results)}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, default=str), encoding="utf-8")
    temporary.replace(path)


def load_results(path: Path) -> tuple[BenchResults, str]:
    payload = json.loads(path.read_text(encoding="utf-8"))
    raw = payload["results"]
    config = raw["config"]
    config = BenchConfig(
        **{
            **config,
            "sizes": tuple(config["sizes"]),
            "latencies": tuple(config["latencies"]),
            "memory_sizes": tuple(config["memory_sizes"]),
        }
    )
    runs = {key: [RunResult(**run) for run in raw[key]] for key in ("main", "memory", "adaptation")}
    results = BenchResults(
        config=config,
        started=datetime.fromisoformat(raw["started"]),
        duration_s=raw["duration_s"],
        load_before=tuple(raw["load_before"]),
        load_after=tuple(raw["load_after"]),
        **runs,
    )
    return results, str(payload["command"])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    config = config_from(args)
    if args.output:
        output = Path(args.output)
    elif config.smoke:
        output = Path(tempfile.mkdtemp(prefix="bench-smoke-")) / "BENCHMARKS.md"
    else:
        output = DEFAULT_OUTPUT
    output = output if output.is_absolute() else Path.cwd() / output
    chart = output.parent / "bench" / ("throughput-smoke.png" if config.smoke else "throughput.png")
    os.environ.setdefault("LOG_LEVEL", "INFO")
    for name, value in AWS_DUMMY_ENV.items():
        os.environ.setdefault(name, value)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if in_main_thread:
        signal.signal(signal.SIGTERM, _interrupt)  # stop the server processes on `kill` too
    try:
        if args.render_from:
            results, command = load_results(Path(args.render_from))
        else:
            log(f"config: {config}")
            command = " ".join(["python -m harness.bench", *arguments]).strip()
            saved = results_path(datetime.now(UTC))
            log(f"raw figures are saved to {saved} after every run (re-render with --render-from)")
            results = run_bench(config, checkpoint=lambda partial: save_results(partial, command, saved))
    except KeyboardInterrupt:
        log("interrupted; server processes stopped")
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    config = results.config
    title = (
        f"Charges per second over time (Stripe limit {config.rate:g}/s; "
        f"engine MAX_CONCURRENCY={config.max_concurrency} unless named)"
    )
    draw_throughput_chart(results.main, chart, title)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results, command, chart, output), encoding="utf-8")
    log(f"wrote {output} and {chart}")
    if output.resolve() == DEFAULT_OUTPUT.resolve():
        update_readme("bench", f"> {headline(results)}")
        log("updated the README's quote of docs/BENCHMARKS.md")
    engines = [result for result in results.main if result.kind == "engine"]
    duplicates = sum(result.duplicates for result in results.main + results.memory + results.adaptation)
    log(
        "engine warm rates: "
        + ", ".join(f"{r.strategy} {r.latency_ms:g} ms N={r.size}: {r.warm_rate():.1f}/s" for r in engines)
        + f"; duplicate charges: {duplicates}; p99 engine charge "
        + f"{max((percentile(r.charge_seconds, 0.99) for r in engines), default=0.0):.2f} s"
    )
    return 1 if duplicates else 0


if __name__ == "__main__":
    raise SystemExit(main())
