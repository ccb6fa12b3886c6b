"""The timer trigger, for Lambda Managed Instances: export from a thread of each worker, on
the policy's interval, never on the request path.

An LMI environment is never frozen, so a background thread keeps running between calls, and
there are no billed milliseconds to save by exporting in the extension's window: only CPU,
which an interval keeps to one export per interval per worker. The policy still decides: while
traffic is sparse (or the interval is 0) the thread exports right after each call.

LMI lets internal extensions register for no event at all, and only one of a name: the first
worker registers ``{"events": []}`` so that the environment's workers get SIGTERM before
shutdown (the emulator SIGKILLs a runtime with no extension registered), then parks in
``/extension/event/next`` as every registered extension must. The others are refused, and
still export and flush on SIGTERM.
"""

from __future__ import annotations

import threading
import time

from ..extension import ExtensionClient
from .exporter import Exporter
from .failures import FailureReporter
from .policy import ExportPolicy

# Background exports have no invocation deadline: each backend's own timeout bounds it.
EXPORT_DEADLINE_SECONDS = 5.0
PARK_RETRY_SECONDS = 1.0


class TimerFlush:
    mode = "timer"

    def __init__(self, exporter: Exporter, policy: ExportPolicy) -> None:
        self._exporter = exporter
        self.policy = policy
        self._wake = threading.Condition()
        self._woken = False
        self._pending = False
        self.registered = False
        self.exports = 0

    def start(self, client: ExtensionClient | None, reporter: FailureReporter) -> str:
        """Start the timer; register (as SIGTERM needs) if ``client``. Says what happened."""
        outcome = "no Extensions API"
        if client is not None:
            try:
                client.register(events=())
            except Exception as error:
                outcome = f"not registered ({type(error).__name__}: {error}); another worker is"
            else:
                self.registered = True
                outcome = "registered for no events"
                threading.Thread(
                    target=self._park, args=(client, reporter), name="telemetry-lmi", daemon=True
                ).start()
        threading.Thread(target=self._run, name="telemetry-timer", daemon=True).start()
        return outcome

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None:
        with self._wake:
            self._pending = True
            if self.policy.due():
                self._woken = True
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._woken, timeout=self.policy.interval or None)
                self._woken = False
                pending, self._pending = self._pending, False
            if not pending:
                continue
            self.policy.attempted()
            self.exports += 1
            self._exporter.export(time.monotonic() + EXPORT_DEADLINE_SECONDS)

    @staticmethod
    def _park(client: ExtensionClient, reporter: FailureReporter) -> None:
        # A registered extension must wait in event/next; on LMI it gets no event, ever.
        while True:
            try:
                client.next_event()
            except Exception as error:
                reporter.failed("extensions_api", error)
                time.sleep(PARK_RETRY_SECONDS)
