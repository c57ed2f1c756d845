"""RunSummary: counted from many threads, returned as the handler's JSON."""

from __future__ import annotations

import json
import threading

import pytest

from donation_processor.summary import RunSummary


def test_to_dict_has_exactly_the_documented_keys() -> None:
    # GIVEN a fresh summary
    summary = RunSummary(run_id="run-1")

    # WHEN it is rendered
    rendered = summary.to_dict()

    # THEN the keys are exactly the handler's contract, with zero counts
    assert set(rendered) == {
        "runId",
        "status",
        "due",
        "succeeded",
        "failed",
        "retried",
        "deadLettered",
        "invalid",
        "skipped",
        "deadLettersDeferred",
        "overdue",
        "donorEventsFailed",
        "missed",
        "systemicCode",
        "unseen",
        "durationMs",
        "amountByCurrency",
    }
    assert rendered["runId"] == "run-1"
    assert rendered["status"] == "completed"
    assert rendered["amountByCurrency"] == {}


def test_to_dict_maps_each_counter_to_its_key_and_is_json_serialisable() -> None:
    # GIVEN a summary with distinct values in every counter
    summary = RunSummary(
        run_id="run-2", status="partial", duration_ms=1234, systemic_code="parameter_unknown"
    )
    summary.add(due=1, succeeded=2, failed=3, retried=4, dead_lettered=5, invalid=6, skipped=7)
    summary.add(dead_letters_deferred=8, overdue=9, donor_events_failed=10, missed=11)
    summary.add_amount("usd", 2500)

    # WHEN it is rendered and serialised
    rendered = json.loads(json.dumps(summary.to_dict()))

    # THEN each value sits under its own key
    assert rendered == {
        "runId": "run-2",
        "status": "partial",
        "due": 1,
        "succeeded": 2,
        "failed": 3,
        "retried": 4,
        "deadLettered": 5,
        "invalid": 6,
        "skipped": 7,
        "deadLettersDeferred": 8,
        "overdue": 9,
        "donorEventsFailed": 10,
        "missed": 11,
        "systemicCode": "parameter_unknown",
        "unseen": {"noUsableNextRunAt": 0, "unknownStatus": 0},
        "durationMs": 1234,
        "amountByCurrency": {"usd": 2500},
    }


def test_to_dict_returns_a_copy_of_the_amounts() -> None:
    # GIVEN a rendered summary
    summary = RunSummary(run_id="run-3")
    summary.add_amount("eur", 100)
    rendered = summary.to_dict()

    # WHEN the caller changes the rendered amounts
    rendered["amountByCurrency"]["eur"] = 0

    # THEN the summary is unchanged
    assert summary.amount_by_currency == {"eur": 100}


def test_adding_an_unknown_counter_fails_loudly() -> None:
    # GIVEN a summary
    summary = RunSummary(run_id="run-4")

    # WHEN a misspelled counter is added
    # THEN it raises instead of silently counting nothing
    with pytest.raises(AttributeError, match="succeded"):
        summary.add(succeded=1)


def test_concurrent_adds_from_threads_sum_correctly() -> None:
    # GIVEN a summary shared by 8 threads
    summary = RunSummary(run_id="run-5")
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(1000):
            summary.add(succeeded=1, due=2)
            summary.add_amount("usd", 3)
            summary.add_amount("eur", 1)

    threads = [threading.Thread(target=worker) for _ in range(8)]

    # WHEN each thread adds 1000 times
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # THEN nothing was lost
    assert summary.succeeded == 8000
    assert summary.due == 16000
    assert summary.amount_by_currency == {"usd": 24000, "eur": 8000}
