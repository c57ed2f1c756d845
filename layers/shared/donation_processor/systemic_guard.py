"""Tell a fault of the whole system from one donor's bad data, before stopping anyone's schedule.

An API-version or account-configuration mismatch makes Stripe reject every request with the same error
(e.g. 400 `parameter_unknown`): none of it the donors' doing. One donor's bad customer id is rejected
alone. So a rejected request does not stop its schedule at once: it is held (K-1 donations at most). The
same non-card code on K distinct donations in a row is systemic: the run halts and every held one is let
go untouched (no stop, no letter, no donor event). Anything else in between (a charge, a decline, another
code) shows the held ones were each their own: they are stopped then.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Verdict[Held]:
    """What to do now: stop these (their rejections were their own), or halt and let these go."""

    stop: list[Held] = field(default_factory=list)
    let_go: list[Held] = field(default_factory=list)
    systemic_code: str | None = None


class SystemicGuard[Held]:
    def __init__(self, threshold: int) -> None:
        if threshold < 2:
            raise ValueError("threshold must be at least 2")
        self._threshold = threshold
        self._lock = threading.Lock()
        self._code: str | None = None
        self._held: list[tuple[str, Held]] = []
        self.halted_code: str | None = None

    def rejected(self, code: str, donation_id: str, held: Held) -> Verdict[Held]:
        """A request Stripe rejected (not a card error): hold it, or declare the fault systemic."""
        with self._lock:
            if self.halted_code is not None:
                return Verdict(let_go=[held], systemic_code=self.halted_code)
            verdict: Verdict[Held] = Verdict()
            if code != self._code:
                verdict.stop = [item for _, item in self._held]  # a different code broke the streak
                self._held, self._code = [], code
            self._held.append((donation_id, held))
            if len({donation for donation, _ in self._held}) >= self._threshold:
                self.halted_code = code
                verdict.let_go = [item for _, item in self._held]
                verdict.systemic_code = code
                self._held = []
            return verdict

    def answered(self) -> list[Held]:
        """Stripe answered something else (a charge, a decline): the held rejections were their own."""
        with self._lock:
            held, self._held, self._code = [item for _, item in self._held], [], None
            return held

    def drain(self) -> list[Held]:
        """The run is ending: what is still held is stopped unless the run halted."""
        with self._lock:
            held, self._held = [item for _, item in self._held], []
            return held
