"""Turn an invocation event (EventBridge schedule or a manual invoke) into a validated RunRequest."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from donation_processor.exceptions import InvalidEventError

MAX_DONATION_IDS = 1000
MAX_LIMIT = 1_000_000
_ID_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_MANUAL_FIELDS = frozenset({"dryRun", "donationIds", "limit"})


@dataclass(frozen=True)
class RunRequest:
    """What this invocation asks for."""

    dry_run: bool = False
    donation_ids: tuple[str, ...] | None = None
    limit: int | None = None
    source: str = "manual"


def _is_scheduled_event(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" or "detail-type" in event


def parse_event(event: object) -> RunRequest:
    """Validate the event; InvalidEventError names the first bad field."""
    if event is None:
        return RunRequest()
    if not isinstance(event, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(event).__name__}")
    if _is_scheduled_event(event):
        if event.get("detail-type") != "Scheduled Event":
            raise InvalidEventError(
                f"detail-type must be 'Scheduled Event', got {event.get('detail-type')!r}"
            )
        _refuse_run_options_in_detail(event)
        return RunRequest(source="schedule")
    unknown = sorted(str(key) for key in event if key not in _MANUAL_FIELDS)
    if unknown:
        raise InvalidEventError(f"unknown field {unknown[0]!r}; allowed: dryRun, donationIds, limit")
    dry_run = event.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidEventError("dryRun must be true or false")
    return RunRequest(
        dry_run=dry_run,
        donation_ids=_parse_ids(event.get("donationIds")),
        limit=_parse_limit(event.get("limit")),
    )


def _refuse_run_options_in_detail(event: dict[str, Any]) -> None:
    # A rule whose input carries options would otherwise start a real, full charge run: a "dry run"
    # that charges everyone due. Options belong to a manual invoke only.
    if "detail" not in event:
        return
    detail = event["detail"]
    if not isinstance(detail, dict):
        raise InvalidEventError(f"detail must be a JSON object, got {type(detail).__name__}")
    if detail:
        first = sorted(str(key) for key in detail)[0]
        raise InvalidEventError(
            f"a scheduled event takes no run options; detail.{first} is not allowed"
            ' (invoke manually with {"dryRun": true} or other options instead)'
        )


def _parse_ids(raw: object) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise InvalidEventError("donationIds must be a non-empty list of ids")
    if len(raw) > MAX_DONATION_IDS:
        raise InvalidEventError(f"donationIds may hold at most {MAX_DONATION_IDS} ids")
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
            raise InvalidEventError(f"donationIds[{index}] must be an id of letters, digits, '_' or '-'")
    return tuple(dict.fromkeys(raw))


def _parse_limit(raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_LIMIT:
        raise InvalidEventError(f"limit must be a whole number between 1 and {MAX_LIMIT}")
    return raw
