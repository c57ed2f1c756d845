"""Donor-facing events on an EventBridge bus, so the host platform can e-mail the donor.

Ids, amounts and reasons only: no names, no e-mail, no card data. Delivery is best effort: events go
out in batches of ten and at the end of the run; a batch EventBridge refuses is retried once, and what
still fails is counted (DonorEventsFailed, alarmed) and logged by event id. If the process dies, the up
to nine events still buffered are lost (the outcome itself is in MongoDB and in Stripe); each event
carries a stable eventId, so consumers can deduplicate.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from donation_processor.donor_event_types import SOURCE
from donation_processor.observability import logger

_BATCH = 10  # PutEvents takes at most 10 entries


class EventBridgeDonorEvents:
    def __init__(self, bus_name: str, client: Any) -> None:
        self._bus = bus_name
        self._client = client
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._failed = 0

    def publish(self, detail_type: str, detail: Mapping[str, Any]) -> None:
        entry = {
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(dict(detail), default=str, sort_keys=True),
            "EventBusName": self._bus,
        }
        with self._lock:
            self._pending.append(entry)
            batch = self._take_batch() if len(self._pending) >= _BATCH else []
        if batch:
            self._send(batch)

    def flush(self) -> int:
        while True:
            with self._lock:
                batch = self._take_batch()
            if not batch:
                break
            self._send(batch)
        with self._lock:
            failed, self._failed = self._failed, 0
        return failed

    def _take_batch(self) -> list[dict[str, Any]]:
        batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> None:
        for attempt in (1, 2):
            try:
                answer = self._client.put_events(Entries=batch)
            except (ClientError, BotoCoreError) as error:
                if attempt == 2:
                    self._count_failed(batch, type(error).__name__)
                continue
            results = answer.get("Entries", [])
            batch = [entry for entry, result in zip(batch, results, strict=False) if result.get("ErrorCode")]
            if not batch:
                return
            if attempt == 2:
                self._count_failed(batch, "entry_rejected")

    def _count_failed(self, batch: list[dict[str, Any]], reason: str) -> None:
        with self._lock:
            self._failed += len(batch)
        for entry in batch:
            detail = json.loads(entry["Detail"])
            logger.error(
                "donor event not delivered",
                detail_type=entry["DetailType"],
                event_id=detail.get("eventId"),
                reason=reason,
            )
