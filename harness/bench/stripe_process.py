"""The benchmark's Stripe side: the Stripe-compatible server in its own process; what the bench reads back.

The server runs as ``python -m harness.local.stripe_server`` in a child process, so its CPU and its GIL are
not the engine's. Its ledger then lives in that process; the bench reads it back over HTTP with the real SDK
(``GET /v1/payment_intents/search``). Request timings and status codes are read from the SDK's own
``stripe`` logger (``Request to Stripe api`` / ``Stripe API response``), a logging handler and not a patch.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import stripe

from harness.project import PROJECT_ROOT

SEARCH_PAGE_SIZE = 100
SEARCH_PARALLEL_PAGES = 8
_RESPONSE_CODE = re.compile(r"response_code=(\d+)")
_METHOD = re.compile(r"method=(\w+)")

_running: set[StripeProcess] = set()
_running_lock = threading.Lock()


def _stop_all() -> None:
    with _running_lock:
        processes = list(_running)
    for process in processes:
        process.stop()


atexit.register(_stop_all)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StripeProcess:
    """``python -m harness.local.stripe_server`` in a child process; stopped on exit, Ctrl-C and stop()."""

    def __init__(self, *, latency_ms: float, jitter_ms: float, rate_limit_rps: float | None) -> None:
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.rate_limit_rps = rate_limit_rps
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        for _attempt in range(5):
            self.port = free_port()
            command = [
                sys.executable,
                "-m",
                "harness.local.stripe_server",
                "--port",
                str(self.port),
                "--latency-ms",
                f"{self.latency_ms:g}",
                "--jitter-ms",
                f"{self.jitter_ms:g}",
                "--log-level",
                "WARNING",
            ]
            if self.rate_limit_rps is not None:
                command += ["--rate-limit-rps", f"{self.rate_limit_rps:g}"]
            self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
            with _running_lock:
                _running.add(self)
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError("the Stripe-compatible server did not start")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # e.g. the port was taken between free_port() and bind
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        with _running_lock:
            _running.discard(self)
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the server treats SIGTERM like Ctrl-C and closes its socket
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def stripe_client(url: str, api_key: str, *, max_network_retries: int | None = None) -> stripe.StripeClient:
    """The SDK's client with its default HTTP client (requests, one session per thread)."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": url},
        max_network_retries=max_network_retries,
    )


def _retry_rate_limited[T](call: Callable[[], T], attempts: int = 60) -> T:
    for _ in range(attempts - 1):
        try:
            return call()
        except stripe.RateLimitError:
            time.sleep(0.25)
    return call()


def create_customers(client: stripe.StripeClient, count: int, threads: int) -> list[str]:
    """Customers for the seeded donations (the server checks that a PaymentIntent's customer exists)."""

    def create(index: int) -> str:
        customer = _retry_rate_limited(
            lambda: client.v1.customers.create(params={"metadata": {"bench_customer": str(index)}})
        )
        return str(customer.id)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(create, range(count)))


@dataclass(frozen=True)
class StripeCharges:
    """Successful PaymentIntents in the server's ledger, grouped by (scheduled_donation_id, period)."""

    by_period: Counter[tuple[str, str]]

    @property
    def total(self) -> int:
        return sum(self.by_period.values())

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.by_period.values() if count > 1)


def successful_charges(url: str, api_key: str, parallel: int = SEARCH_PARALLEL_PAGES) -> StripeCharges:
    """Every succeeded PaymentIntent on a server used by one strategy only, read by search, all pages.

    The local server's page token is the offset of the page (``next_page`` is "100", "200", ...), so the
    pages are fetched ``parallel`` at a time; a token that is not an offset falls back to following
    ``next_page`` one page at a time, which is what a client of the real Stripe would do.
    """
    client = stripe_client(url, api_key, max_network_retries=0)
    query = "status:'succeeded'"

    def page(token: str | None) -> Any:
        params: dict[str, Any] = {"query": query, "limit": SEARCH_PAGE_SIZE}
        if token is not None:
            params["page"] = token
        return _retry_rate_limited(
            lambda: client.v1.payment_intents.search(params=params)  # type: ignore[arg-type]
        )

    counts: Counter[tuple[str, str]] = Counter()

    def add(result: Any) -> None:
        for intent in result.data:
            metadata = intent.metadata.to_dict() if intent.metadata else {}
            counts[(str(metadata.get("scheduled_donation_id")), str(metadata.get("period")))] += 1

    first = page(None)
    add(first)
    token = first.next_page if first.has_more else None
    if token is not None and not str(token).isdecimal():
        while token is not None:
            result = page(str(token))
            add(result)
            token = result.next_page if result.has_more else None
        return StripeCharges(counts)
    offset = SEARCH_PAGE_SIZE
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while token is not None:
            tokens = [str(offset + index * SEARCH_PAGE_SIZE) for index in range(parallel)]
            results = list(pool.map(page, tokens))
            for result in results:
                add(result)
            offset += parallel * SEARCH_PAGE_SIZE
            if not results[-1].has_more:
                token = None
    return StripeCharges(counts)


# --------------------------------------------------------------------------------------------------------
# What the SDK logged: one entry per HTTP request, with its thread, start, end and status
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SdkRequest:
    thread: int
    method: str
    start: float  # epoch seconds (logging's record.created)
    end: float
    status: int  # 0: no response logged (connection error)


class SdkRequestLog(logging.Handler):
    """Collects the SDK's own INFO records; pairs each request with its response per thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._records: list[tuple[int, float, str]] = []
        self._active = False
        self._logger = logging.getLogger("stripe")
        self._saved: tuple[int, bool] = (logging.NOTSET, True)

    def emit(self, record: logging.LogRecord) -> None:
        if self._active:
            self._records.append((record.thread or 0, record.created, record.getMessage()))

    def __enter__(self) -> Self:
        self._records = []
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False  # the records are for this handler only
        self._active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._active = False
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]

    def requests(self) -> list[SdkRequest]:
        open_requests: dict[int, tuple[float, str]] = {}
        requests: list[SdkRequest] = []
        for thread, created, message in self._records:
            if "Request to Stripe api" in message:
                if thread in open_requests:  # the previous one raised before a response was logged
                    start, method = open_requests.pop(thread)
                    requests.append(SdkRequest(thread, method, start, created, 0))
                method_match = _METHOD.search(message)
                open_requests[thread] = (created, method_match.group(1) if method_match else "?")
            elif "Stripe API response" in message and thread in open_requests:
                start, method = open_requests.pop(thread)
                code = _RESPONSE_CODE.search(message)
                requests.append(SdkRequest(thread, method, start, created, int(code.group(1)) if code else 0))
        for thread, (start, method) in open_requests.items():
            requests.append(SdkRequest(thread, method, start, start, 0))
        requests.sort(key=lambda request: request.start)
        return requests


def is_transient(status: int) -> bool:
    """What the engine retries in-run: no answer, 409, 429, 5xx."""
    return status in (0, 409, 429) or status >= 500


@dataclass(frozen=True)
class ChargeSpan:
    """One donation's Stripe leg: first request sent to final answer, in-run retries and backoff included."""

    start: float
    end: float
    final: bool  # False: the last attempt was still transient (the engine gave up on it)


def charge_spans(requests: list[SdkRequest], max_requests_per_charge: int) -> Iterator[ChargeSpan]:
    """Group one thread's consecutive requests into charges: a charge ends at its first final answer.

    A worker thread charges one donation at a time, so its requests up to a non-transient answer (or up to
    the engine's attempt limit) belong to one donation.
    """
    by_thread: dict[int, list[SdkRequest]] = {}
    for request in requests:
        by_thread.setdefault(request.thread, []).append(request)
    for thread_requests in by_thread.values():
        group: list[SdkRequest] = []
        for request in thread_requests:
            group.append(request)
            if not is_transient(request.status) or len(group) >= max_requests_per_charge:
                yield ChargeSpan(group[0].start, group[-1].end, not is_transient(group[-1].status))
                group = []
        if group:
            yield ChargeSpan(group[0].start, group[-1].end, False)
