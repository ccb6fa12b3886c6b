"""Count every telemetry failure, but log it at most once per interval per backend.

A backend that is down would otherwise write one warning per request, forever. The latest
outcome per backend is also kept (``states``), for the readiness document (``readiness.py``).
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .logs import logger
from .metrics import EXPORT_FAILURES

LOG_INTERVAL_SECONDS = 60.0
_DROPS = "spans_dropped"  # rate-limit key of the dropped-spans warning


@dataclass(frozen=True)
class BackendState:
    """A backend's latest outcome in this environment."""

    last_attempt_wall: float  # time.time() of the latest attempt
    last_success: float | None  # time.monotonic() of the latest success, if any
    failing: bool  # the latest attempt failed
    failure_kind: str | None  # its kind: refused, timeout, dns, http 503, malformed, ...


class FailureReporter:
    def __init__(
        self, interval: float = LOG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._dropped_unreported = 0
        self._states: dict[str, BackendState] = {}

    def states(self) -> dict[str, BackendState]:
        with self._lock:
            return dict(self._states)

    def failed(self, backend: str, error: BaseException | str) -> None:
        EXPORT_FAILURES.labels(backend=backend).inc()
        now = self._clock()
        kind = failure_kind(error)
        with self._lock:
            previous = self._states.get(backend)
            self._states[backend] = BackendState(
                time.time(), previous.last_success if previous else None, True, kind
            )
            last = self._last_logged.get(backend)
            if last is not None and now - last < self._interval:
                self._suppressed[backend] = self._suppressed.get(backend, 0) + 1
                return
            suppressed = self._suppressed.pop(backend, 0)
            self._last_logged[backend] = now
        logger.warning(
            "telemetry export failed",
            extra={
                "backend": backend,
                "error": _describe(error),
                "suppressed_since_last_warning": suppressed,
            },
        )

    def succeeded(self, backend: str) -> None:
        with self._lock:
            self._states[backend] = BackendState(time.time(), time.monotonic(), False, None)
            if self._last_logged.pop(backend, None) is None:
                return
            suppressed = self._suppressed.pop(backend, 0)
        logger.info(
            "telemetry export recovered",
            extra={"backend": backend, "suppressed_since_last_warning": suppressed},
        )

    def spans_dropped(self, count: int, total: float) -> None:
        """Spans lost to a full queue (already counted in otel_spans_dropped_total)."""
        now = self._clock()
        with self._lock:
            self._dropped_unreported += count
            last = self._last_logged.get(_DROPS)
            if last is not None and now - last < self._interval:
                return
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            self._last_logged[_DROPS] = now
        logger.warning(
            "spans dropped: export queue full",
            extra={"dropped_since_last_warning": dropped, "dropped_total": total},
        )


_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")


def _describe(error: BaseException | str) -> str:
    # Type and message only (a traceback per failed push would flood the log), with any
    # user:password@ in a URL masked.
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return _URL_CREDENTIALS.sub("//***@", text)[:500]


def failure_kind(error: BaseException | str) -> str:
    """What went wrong, in a word or two that never quote a host, URL or credential.

    Walks the chain of causes: the layer wraps library errors, and the root cause tells most.
    An error may name its own kind (``kind``), or carry the errors it summarises (``causes``).
    """
    current: BaseException | None = error if isinstance(error, BaseException) else None
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _kind_of(current)
        if kind:
            return kind
        causes = getattr(current, "causes", None)
        if causes:
            return failure_kind(causes[0])
        current = current.__cause__ or current.__context__
    return "error"


def _kind_of(error: BaseException) -> str | None:
    named = getattr(error, "kind", None)
    if isinstance(named, str):
        return named
    if isinstance(error, socket.gaierror):
        return "dns"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, TimeoutError):
        return "timeout"
    # An HTTPException exists only once http.client is loaded: do not import it for this.
    client = sys.modules.get("http.client")
    if client is not None and isinstance(error, client.HTTPException):
        return "malformed"
    if isinstance(error, ConnectionError):
        return "connection lost"
    # botocore's, matched by name: boto3 is imported only when a secret is configured.
    name = type(error).__name__
    if name in ("ConnectTimeoutError", "ReadTimeoutError"):
        return "timeout"
    if name == "TransformParameterError":
        return "malformed"
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return f"http {status}"
    return None


reporter = FailureReporter()
