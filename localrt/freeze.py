"""Freezing an idle execution environment, as Lambda does between invocations.

Lambda freezes the whole sandbox once the runtime and every extension wait for their next
event, and thaws it to deliver the next one: background threads (a span exporter, a ticker)
make no progress in between.  localrt does the same with SIGSTOP/SIGCONT on the
environment's process group (each environment is its own session, see environment.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable

import psutil

# How long after a thaw threads may still carry the stop's signal-pending flag, and how long
# release() waits for them to run (see _wait_until_scheduled).
_RECENT_THAW_S = 1.0
_SETTLE_TIMEOUT_S = 0.2


class Freezer:
    """SIGSTOP/SIGCONT for one process group, with the time spent frozen.

    `freeze` is called by the Runtime API under its own lock, only when everything is parked
    in /next; `thaw` before an event is delivered. `release` thaws for good (SIGTERM, SIGKILL,
    exit): nothing may freeze the group after it, so a dying process is never left stopped.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._pgid: int | None = None
        self._released = False
        self._frozen_since: float | None = None
        self._thawed_at: float | None = None
        self._frozen_total = 0.0
        self._extra: list[int] = []  # external extensions' process groups, frozen with it
        self._holds = 0  # telemetry deliveries in flight: freezing waits for them
        self._wanted = False  # a freeze asked for while held, done when the last hold ends
        # Called (under our lock) right after a thaw; True takes a hold for the caller, which
        # then calls unhold(): telemetry due while frozen leaves before the next freeze.
        self.thaw_hook: Callable[[], bool] | None = None

    def attach(self, pgid: int) -> None:
        with self._lock:
            self._pgid = pgid

    def attach_extra(self, pgid: int) -> None:
        """Freeze this process group too (an external extension runs in its own)."""
        with self._lock:
            self._extra.append(pgid)

    def try_hold(self) -> bool:
        """Keep the environment thawed while telemetry is delivered; False when frozen now."""
        with self._lock:
            if self._frozen_since is not None:
                return False
            self._holds += 1
            return True

    def unhold(self) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds == 0 and self._wanted:
                self._wanted = False
                self._freeze_locked()

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_since is not None

    @property
    def frozen_ms(self) -> float:
        with self._lock:
            total = self._frozen_total
            if self._frozen_since is not None:
                total += time.monotonic() - self._frozen_since
            return total * 1000

    def freeze(self) -> None:
        with self._lock:
            if self._holds:
                self._wanted = True
                return
            self._freeze_locked()

    def _freeze_locked(self) -> None:
        if not self.enabled or self._released or self._pgid is None:
            return
        if self._frozen_since is not None:
            return
        if self._send(signal.SIGSTOP):
            self._frozen_since = time.monotonic()

    def thaw(self) -> None:
        with self._lock:
            self._wanted = False
            self._thaw_locked()

    def release(self) -> None:
        """Thaw for good, and return once a signal sent next can reach the main thread."""
        with self._lock:
            self._released = True
            self._wanted = False
            self._thaw_locked()
            pid, thawed_at = self._pgid, self._thawed_at
        recent = thawed_at is not None and time.monotonic() - thawed_at < _RECENT_THAW_S
        if pid is not None and recent:
            _wait_until_scheduled(pid)

    def _thaw_locked(self) -> None:
        if self._frozen_since is None:
            return
        self._send(signal.SIGCONT)
        now = time.monotonic()
        self._frozen_total += now - self._frozen_since
        self._frozen_since = None
        self._thawed_at = now
        if self.thaw_hook is not None and self.thaw_hook():
            self._holds += 1

    def _send(self, sig: int) -> bool:
        assert self._pgid is not None
        for extra in self._extra:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(extra, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)
            return True
        return False


def _wait_until_scheduled(pid: int) -> None:
    """Wait (bounded) until every thread of `pid` has run since it was thawed.

    Until then a thread keeps the signal-pending flag of the stop, and the first thread to
    look at its signals takes a process-directed signal from the shared queue: a SIGTERM sent
    at once may be taken by a thread parked in recv(), while the main thread, where Python
    runs signal handlers, goes back to its wait and never sees it.  A thread stopped (T) or
    runnable (R) has not gone back to sleep yet; one that keeps running costs the timeout.
    """
    deadline = time.monotonic() + _SETTLE_TIMEOUT_S
    while _thread_states(pid) & _NOT_ASLEEP and time.monotonic() < deadline:
        time.sleep(0.001)


_NOT_ASLEEP = {psutil.STATUS_STOPPED, psutil.STATUS_RUNNING}


def _thread_states(pid: int) -> set[str]:
    """psutil's status of every thread (a thread id is a process id to it on Linux)."""
    states: set[str] = set()
    with contextlib.suppress(psutil.Error):
        for thread in psutil.Process(pid).threads():
            with contextlib.suppress(psutil.Error):  # the thread ended meanwhile
                states.add(psutil.Process(thread.id).status())
    return states
