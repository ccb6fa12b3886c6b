"""When an export is due: the one rule every trigger asks."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# Gaps between invocations that the policy averages to tell sparse from busy traffic.
GAP_WINDOW = 10


class ExportPolicy:
    """Decides, at the end of each invocation, whether this one exports.

    Export after each of an environment's first ``GAP_WINDOW`` invocations (a new environment
    shows at once), while invocations are sparse (the mean of their last ``GAP_WINDOW`` gaps is
    at least ``sparse_gap``), or once ``interval`` has passed since the last attempt. An
    attempt counts whether it succeeded or not: a backend that is down costs one failed
    attempt per interval, not one per call.
    """

    def __init__(
        self,
        interval: float,
        sparse_gap: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.sparse_gap = sparse_gap
        self._clock = clock
        self._gaps: deque[float] = deque(maxlen=GAP_WINDOW)
        self._last_start: float | None = None
        self._last_export: float | None = None

    def started(self) -> None:
        now = self._clock()
        if self._last_start is not None:
            self._gaps.append(now - self._last_start)
        self._last_start = now

    def due(self) -> bool:
        if self.interval <= 0 or len(self._gaps) < GAP_WINDOW:
            return True  # a new environment: too few gaps to call its traffic busy
        if sum(self._gaps) / len(self._gaps) >= self.sparse_gap:
            return True
        return self._last_export is None or self._clock() - self._last_export >= self.interval

    def attempted(self) -> None:
        self._last_export = self._clock()
