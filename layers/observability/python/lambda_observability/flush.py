"""Where telemetry leaves the environment: the one seam between an invocation and its export.

*When* (``ExportPolicy``): after every invocation while traffic is sparse, so that it shows at
once; at most once per ``OBSERVABILITY_EXPORT_INTERVAL_SECONDS`` while invocations come often,
so that the cost is paid once per interval and not once per call. Lambda bills the time an
export takes after the response, and a frozen environment cannot export in the background.

*Where* (``OBSERVABILITY_EXPORT_MODE``, auto, async or sync):

- ``sync`` exports before the handler returns, because the environment may freeze right after.
  The client waits for it, within a bound.
- ``async`` registers an internal Lambda extension and exports from its thread after the runtime
  has posted the response: the client never waits for telemetry, and Lambda keeps the
  environment running until the export is done (it counts as billed time).

``auto`` (the default) is async where the Extensions API answers and sync otherwise. Every
backend call ends by a hard deadline (``http_client``), and every failure is contained here:
reported, counted, never raised into the handler. SIGTERM gets a final export of everything.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Protocol

from .config import Settings
from .extension import ExtensionClient
from .failures import FailureReporter
from .logs import logger
from .metrics import SPANS_DROPPED, push, push_code, total
from .secrets import BasicAuthSecret
from .shutdown import install as install_sigterm_flush
from .tracing import Tracing

# Kept back from the invocation's deadline so that the handler still returns in time.
DEADLINE_MARGIN_SECONDS = 0.05
# Lambda gives the runtime 500 ms between SIGTERM and SIGKILL when internal extensions exist.
SHUTDOWN_BUDGET_SECONDS = 0.4
# The extension loop's backoff after the Extensions API failed (it must keep asking).
RETRY_BACKOFF_SECONDS = (0.01, 0.05, 0.2, 1.0)
# How long an arrived INVOKE waits unread for its handler to end (see _wait_for_handler_end).
PARSE_WAIT_SECONDS = 1.0
# A second push (after a failed span export) needs at least this much of its deadline left.
REPUSH_MIN_SECONDS = 0.02
# Gaps between invocations that the policy averages to tell sparse from busy traffic.
GAP_WINDOW = 10


class Flush(Protocol):
    mode: str
    policy: ExportPolicy

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None: ...


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


class Exporter:
    """Sends queued spans and the metrics registry, both by one deadline."""

    def __init__(self, settings: Settings, tracing: Tracing, reporter: FailureReporter) -> None:
        self._settings = settings
        self._tracing = tracing
        self._reporter = reporter
        self._dropped_seen = total(SPANS_DROPPED)
        self._secret = (
            BasicAuthSecret(settings.pushgateway_auth_secret_arn, settings.pushgateway_timeout)
            if settings.pushgateway_auth_secret_arn
            else None
        )

    def export(self, deadline: float, final: bool = False) -> None:
        """Export by ``deadline`` (``time.monotonic``). No lock: the SIGTERM flush must not
        wait for an export in flight; it sends the newest state on connections of its own."""
        if not self._settings.pushgateway_url:
            self._export_spans(deadline, final)
            return
        push_code()  # loaded (once) before the push's deadline starts
        # Both backends at once: the invocation pays the slower of the two, not their sum.
        # The thread ends by the deadline, as every backend call does.
        push_deadline = min(deadline, time.monotonic() + self._settings.pushgateway_timeout)
        pushed: list[bool] = []
        pusher = threading.Thread(
            target=lambda: pushed.append(self._push_metrics(push_deadline)), daemon=True
        )
        pusher.start()
        spans_ok = self._export_spans(deadline, final)
        pusher.join()
        # The push may have read the registry before the span export's failure was counted:
        # push again, within the same deadline, so that telemetry_export_failures_total is
        # current (else the next push carries it).
        left = push_deadline - time.monotonic()
        if pushed == [True] and not spans_ok and left > REPUSH_MIN_SECONDS:
            self._push_metrics(push_deadline)

    def _export_spans(self, deadline: float, final: bool) -> bool:
        try:
            self._tracing.export(deadline, final=final)
        except Exception as error:
            self._reporter.failed("otlp", error)
            ok = False
        else:
            self._reporter.succeeded("otlp")
            ok = True
        dropped = total(SPANS_DROPPED)
        if dropped > self._dropped_seen:
            self._reporter.spans_dropped(int(dropped - self._dropped_seen), dropped)
            self._dropped_seen = dropped
        return ok

    def _push_metrics(self, deadline: float) -> bool:
        """Push the registry by ``deadline``; whether it arrived."""
        url = self._settings.pushgateway_url
        if not url:
            return False
        credentials = None
        if self._secret is not None:
            try:
                credentials = self._secret.credentials(deadline)
            except Exception as error:
                self._reporter.failed("secrets", error)
                return False
            self._reporter.succeeded("secrets")
        if deadline <= time.monotonic():
            self._reporter.failed("pushgateway", TimeoutError("no time left in the invocation"))
            return False
        try:
            push(url, self._settings.pushgateway_job, deadline, credentials)
        except Exception as error:
            self._reporter.failed("pushgateway", error)
            return False
        self._reporter.succeeded("pushgateway")
        return True


def _deadline(remaining_seconds: float) -> float:
    return time.monotonic() + max(remaining_seconds - DEADLINE_MARGIN_SECONDS, 0.0)


class SyncFlush:
    """Export before the handler returns (the client waits for it, bounded)."""

    mode = "sync"

    def __init__(self, exporter: Exporter, policy: ExportPolicy) -> None:
        self._exporter = exporter
        self.policy = policy

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None:
        if self.policy.due():
            self.policy.attempted()
            self._exporter.export(_deadline(remaining_seconds))


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
    def unmatched(self) -> int:
        """Handler ends whose INVOKE event has not been seen (bounded: lost events age out)."""
        with self._done:
            return len(self._finished)

    def _run(self) -> None:
        # A registered extension cannot unregister: if this loop stopped asking for events,
        # every later invocation would wait for it until its deadline. It never stops.
        failures = 0
        while True:
            with self._done:
                ends = self._ends
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
        if self.policy.due():
            self.policy.attempted()
            self._exporter.export(_deadline(deadline - time.time()))


def select(settings: Settings, exporter: Exporter, reporter: FailureReporter) -> Flush:
    """The flush for this environment, logged once at cold start; installs the SIGTERM flush."""
    policy = ExportPolicy(settings.export_interval, settings.export_sparse_gap)
    flush: Flush = SyncFlush(exporter, policy)
    reason = "OBSERVABILITY_EXPORT_MODE=sync"
    if settings.export_mode != "sync":
        if settings.runtime_api is None:
            reason = "no Lambda Runtime API (AWS_LAMBDA_RUNTIME_API unset)"
        else:
            candidate = AsyncFlush(
                exporter, policy, ExtensionClient(settings.runtime_api), reporter
            )
            try:
                candidate.start()
            except Exception as error:
                reason = f"Extensions API unavailable: {type(error).__name__}: {error}"
            else:
                flush, reason = candidate, f"OBSERVABILITY_EXPORT_MODE={settings.export_mode}"
        if settings.export_mode == "async" and flush.mode != "async":
            logger.warning("async export unavailable, exporting before each response")
    if settings.runtime_api is not None:
        install_sigterm_flush(
            lambda: exporter.export(time.monotonic() + SHUTDOWN_BUDGET_SECONDS, final=True)
        )
    logger.info(
        "telemetry export mode",
        extra={
            "export_mode": flush.mode,
            "reason": reason,
            "export_interval_seconds": policy.interval,
            "export_sparse_gap_seconds": policy.sparse_gap,
        },
    )
    return flush
