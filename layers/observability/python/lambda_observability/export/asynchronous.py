"""The async trigger: export from an internal Lambda extension's thread, after the runtime has
posted the response. The client never waits for telemetry; Lambda keeps the environment running
until the export is done, and bills that time.

Registering an extension changes Lambda's lifecycle in the two ways this needs: an invocation
ends only when every extension asks for its next event, so work done between the runtime's
response and that request runs after the client has its answer; and the runtime process gets
SIGTERM before shutdown.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from ..extension import ExtensionClient
from ..telemetry_api import Gate
from .exporter import Exporter, deadline_within
from .failures import FailureReporter
from .policy import ExportPolicy

# The extension loop's backoff after the Extensions API failed (it must keep asking).
RETRY_BACKOFF_SECONDS = (0.01, 0.05, 0.2, 1.0)
# How long an arrived INVOKE waits unread for its handler to end (see _wait_for_handler_end).
PARSE_WAIT_SECONDS = 1.0


class AsyncFlush:
    """Export from an internal extension's thread, after the response has gone."""

    mode = "async"

    def __init__(
        self,
        exporter: Exporter,
        policy: ExportPolicy,
        client: ExtensionClient,
        reporter: FailureReporter,
        backoff: tuple[float, ...] = RETRY_BACKOFF_SECONDS,
    ) -> None:
        self._exporter = exporter
        # The Telemetry API listener's: open only between a handler's end and the next event.
        self.gate = Gate()
        # Run in the extension's thread before its first event (the Telemetry API subscription).
        self.first: Callable[[], None] | None = None
        # Set once the extension first asks for an event: its part of init is done.
        self.asking = threading.Event()
        self.policy = policy
        self._client = client
        self._reporter = reporter
        self._backoff = backoff
        self._done = threading.Condition()
        # Request ids whose handler has returned; at most a few are ever waiting here.
        self._finished: deque[str] = deque(maxlen=64)
        self._ends = 0  # handler ends so far
        self.loop_errors = 0

    def start(self) -> None:
        self._client.register()
        threading.Thread(target=self._run, name="telemetry-extension", daemon=True).start()

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None:
        with self._done:
            self._finished.append(request_id)
            self._ends += 1
            self._done.notify_all()

    @property
    def invocations(self) -> int:
        """Handler ends so far: one ``platform.report`` each is due from the Telemetry API."""
        with self._done:
            return self._ends

    @property
    def unmatched(self) -> int:
        """Handler ends whose INVOKE event has not been seen (bounded: lost events age out)."""
        with self._done:
            return len(self._finished)

    def _run(self) -> None:
        # A registered extension cannot unregister: if this loop stopped asking for events,
        # every later invocation would wait for it until its deadline. It never stops.
        if self.first is not None:
            try:
                self.first()
            except Exception as error:  # a bug here must not keep the loop from starting
                self._reporter.failed("extensions_api", error)
        failures = 0
        while True:
            with self._done:
                ends = self._ends
            self.gate.close()
            self.asking.set()
            try:
                event = self._client.next_event(partial(self._wait_for_handler_end, ends))
            except Exception as error:
                self.loop_errors += 1
                self._reporter.failed("extensions_api", error)
                time.sleep(self._backoff[min(failures, len(self._backoff) - 1)])
                failures += 1
                continue
            if failures:
                failures = 0
                self._reporter.succeeded("extensions_api")
            if event.get("eventType") != "INVOKE":
                continue
            try:
                self._export_after(str(event.get("requestId", "")), event.get("deadlineMs"))
            except Exception as error:  # a bug here must not end the loop either
                self._reporter.failed("extensions_api", error)

    def _wait_for_handler_end(self, ends_before: int) -> None:
        # The INVOKE has arrived and the handler is running in this interpreter: read the event
        # only once it is done (measured: -0.09 ms client latency per warm call). Bounded, as
        # a slow handler only costs this thread's parse, not a missed export.
        with self._done:
            self._done.wait_for(lambda: self._ends > ends_before, timeout=PARSE_WAIT_SECONDS)

    def _export_after(self, request_id: str, deadline_ms: object) -> None:
        now = time.time()
        deadline = deadline_ms / 1000.0 if isinstance(deadline_ms, int | float) else now + 3.0
        with self._done:
            # INVOKE reaches the extension as the handler starts: wait for the handler to end.
            self._done.wait_for(
                lambda: request_id in self._finished, timeout=max(deadline - now, 0.0)
            )
            if request_id in self._finished:
                self._finished.remove(request_id)
        self.gate.open()  # the platform's records, taken after the response, as the export
        if self.policy.due():
            self.policy.attempted()
            self._exporter.export(deadline_within(deadline - time.time()))
