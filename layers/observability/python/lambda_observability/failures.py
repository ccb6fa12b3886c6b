"""Count every telemetry failure, but log it at most once per interval per backend.

A backend that is down would otherwise write one warning per request, forever.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from .logs import logger
from .metrics import EXPORT_FAILURES

LOG_INTERVAL_SECONDS = 60.0
_DROPS = "spans_dropped"  # rate-limit key of the dropped-spans warning


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

    def failed(self, backend: str, error: BaseException | str) -> None:
        EXPORT_FAILURES.labels(backend=backend).inc()
        now = self._clock()
        with self._lock:
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


reporter = FailureReporter()
