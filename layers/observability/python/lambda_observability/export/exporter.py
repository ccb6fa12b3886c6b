"""The one export seam: every backend behind one small interface, sent by one deadline.

A backend has a name (as in ``telemetry_export_failures_total{backend=...}``), a ``send``
bounded by a deadline that raises a ``TelemetryError`` on failure, and the readiness checks
its outcomes answer. The ``Exporter`` sends to all of them at once, so that an export costs the
slowest backend, not their sum, and records every outcome with the failure reporter. Triggers
(``sync``, ``asynchronous``) decide *when* with the ``ExportPolicy``; this decides nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

from .failures import FailureReporter

# Kept back from the invocation's deadline so that the handler still returns in time.
DEADLINE_MARGIN_SECONDS = 0.05
# A second send (after another backend failed) needs at least this much of the deadline left.
RESEND_MIN_SECONDS = 0.02


class Backend(Protocol):
    name: str
    # Sends the failure counters (the metrics registry): worth resending after another
    # backend failed in the same export, so that the failure shows now, not one export later.
    carries_failures: bool

    def prepare(self) -> None:
        """Load what ``send`` needs, before its deadline starts (imports, not I/O)."""

    def send(self, deadline: float, final: bool = False) -> bool | None:
        """Send by ``deadline`` (``time.monotonic``); ``final``: the last export (SIGTERM).

        False: nothing was sent, by design (not this worker's turn): no outcome to record.
        """

    def checks(self) -> dict[str, str]:
        """Readiness check name -> the reporter's backend name whose outcome answers it."""


def deadline_within(remaining_seconds: float) -> float:
    """A ``time.monotonic`` deadline inside an invocation that has ``remaining_seconds``."""
    return time.monotonic() + max(remaining_seconds - DEADLINE_MARGIN_SECONDS, 0.0)


class Exporter:
    def __init__(self, backends: Sequence[Backend], reporter: FailureReporter) -> None:
        self.backends = tuple(backends)
        self._reporter = reporter

    def export(self, deadline: float, final: bool = False) -> None:
        """Send to every backend by ``deadline``; never raises, never waits past it.

        No lock: the SIGTERM flush must not wait for an export in flight; it sends the newest
        state on connections of its own.
        """
        for backend in self.backends:
            try:
                backend.prepare()
            except Exception as error:
                self._reporter.failed(backend.name, error)
        outcomes: dict[str, bool] = {}
        others = [
            threading.Thread(target=self._send, args=(b, deadline, final, outcomes), daemon=True)
            for b in self.backends[1:]
        ]
        for thread in others:
            thread.start()
        if self.backends:
            self._send(self.backends[0], deadline, final, outcomes)
        for thread in others:
            thread.join(max(deadline - time.monotonic(), 0.0))
        if False in outcomes.values():
            for backend in self.backends:
                left = deadline - time.monotonic()
                if (
                    backend.carries_failures
                    and outcomes.get(backend.name)
                    and left > (RESEND_MIN_SECONDS)
                ):
                    self._send(backend, deadline, final, outcomes)

    def _send(
        self, backend: Backend, deadline: float, final: bool, outcomes: dict[str, bool]
    ) -> None:
        if deadline <= time.monotonic():
            self._reporter.failed(backend.name, TimeoutError("no time left to export"))
            outcomes[backend.name] = False
            return
        try:
            sent = backend.send(deadline, final)
        except Exception as error:  # a bug in a backend is contained too
            # A step of the backend's own (its credentials) may name itself.
            self._reporter.failed(getattr(error, "backend", None) or backend.name, error)
            outcomes[backend.name] = False
        else:
            if sent is not False:
                self._reporter.succeeded(backend.name)
                outcomes[backend.name] = True
