"""`make bench` at a tiny size: the whole pipeline runs and its figures make sense (not a benchmark)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.bench import run as bench

pytestmark = pytest.mark.timeout(120)


def _rows(report: str) -> dict[str, list[str]]:
    """Results-table rows by strategy name (the first table after '## Results')."""
    section = report.split("## Results", 1)[1].split("\n\n", 2)[1]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[re.sub(r" \(sample of .*\)$", "", cells[2])] = cells
    return rows


def test_smoke_bench_writes_a_report_with_every_strategy(tmp_path: Path) -> None:
    # Given the smoke configuration (60 donations, 20 ms latency, 200 requests/s) and an output in tmp_path
    output = tmp_path / "b.md"

    # When the bench runs in-process
    exit_code = bench.main(["--smoke", "--output", str(output)])

    # Then it succeeded and wrote the report and its chart, outside docs/
    assert exit_code == 0
    assert output.exists()
    assert (tmp_path / "bench" / "throughput-smoke.png").stat().st_size > 0
    report = output.read_text(encoding="utf-8")

    # And the results table has a row per strategy
    rows = _rows(report)
    engine = next(cells for name, cells in rows.items() if name.startswith("engine"))
    batch = rows["seed: batches of 50 + 1 s pause"]
    sequential = rows["seed: sequential"]

    # And no strategy charged any donation twice (column: duplicate charges)
    duplicates_column = 11
    assert [cells[duplicates_column] for cells in (engine, batch, sequential)] == ["0", "0", "0"]

    # And the engine charged faster than one donation at a time (column: charges/s once warmed up)
    rate_column = 4
    assert float(engine[rate_column]) > float(sequential[rate_column])
    assert float(batch[rate_column]) > 0
