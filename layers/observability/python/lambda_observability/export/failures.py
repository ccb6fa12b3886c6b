"""Count every telemetry failure, but log it at most once per interval per backend.

A backend that is down would otherwise write one warning per request, forever. The latest
outcome per backend is also kept (``states``), for the readiness document (``readiness.py``).
Backends are named as in ``telemetry_export_failures_total``: pushgateway, otlp, secrets,
extensions_api.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from ..errors import describe, failure_kind
from ..logs import logger
from ..metrics import EXPORT_FAILURES

LOG_INTERVAL_SECONDS = 60.0
_DROPS = "spans_dropped"  # rate-limit key of the dropped-spans warning


class BackendState(NamedTuple):
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
                "error": describe(error),
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


reporter = FailureReporter()
