"""SystemicGuard: the same rejection for K donations in a row is the system's, not theirs."""

from __future__ import annotations

import pytest

from donation_processor.systemic_guard import SystemicGuard


def test_k_rejections_with_one_code_on_distinct_donations_halt_and_let_every_held_one_go() -> None:
    # GIVEN a guard with K = 3
    guard: SystemicGuard[str] = SystemicGuard(3)

    # WHEN three donations are rejected with the same code in a row
    first = guard.rejected("parameter_unknown", "d1", "stop-1")
    second = guard.rejected("parameter_unknown", "d2", "stop-2")
    third = guard.rejected("parameter_unknown", "d3", "stop-3")

    # THEN nothing was stopped, and the third declared the fault systemic and let all three go
    assert (first.stop, first.let_go, second.stop, second.let_go) == ([], [], [], [])
    assert third.systemic_code == "parameter_unknown"
    assert third.let_go == ["stop-1", "stop-2", "stop-3"]
    assert guard.rejected("other_code", "d4", "stop-4").let_go == ["stop-4"]  # halted: everything goes


def test_a_charge_or_decline_between_rejections_shows_they_were_each_the_donors_own() -> None:
    guard: SystemicGuard[str] = SystemicGuard(3)
    guard.rejected("resource_missing", "d1", "stop-1")
    guard.rejected("resource_missing", "d2", "stop-2")
    assert guard.answered() == ["stop-1", "stop-2"]
    assert guard.rejected("resource_missing", "d3", "stop-3").systemic_code is None


def test_another_code_breaks_the_streak_and_stops_what_was_held() -> None:
    guard: SystemicGuard[str] = SystemicGuard(2)
    guard.rejected("resource_missing", "d1", "stop-1")
    verdict = guard.rejected("parameter_invalid_integer", "d2", "stop-2")
    assert (verdict.stop, verdict.systemic_code) == (["stop-1"], None)
    assert guard.drain() == ["stop-2"]


def test_the_same_donation_rejected_again_does_not_count_twice_and_nothing_held_is_lost() -> None:
    guard: SystemicGuard[str] = SystemicGuard(2)
    guard.rejected("parameter_unknown", "d1", "stop-1")
    assert guard.rejected("parameter_unknown", "d1", "stop-1-again").systemic_code is None
    assert guard.drain() == ["stop-1", "stop-1-again"]


def test_k_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        SystemicGuard(1)
