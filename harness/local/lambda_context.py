"""The one stand-in for Lambda's context: what the handler reads of it, for tests, demo and bench."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class LocalLambdaContext:
    """A 15-minute budget counted from creation, like a Lambda invocation with Timeout 900."""

    budget_seconds: float = 900.0
    function_name: str = "ScheduledDonationsFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ScheduledDonationsFunction"
    aws_request_id: str = "local"
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.budget_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
