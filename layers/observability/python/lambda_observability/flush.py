"""Where telemetry leaves the environment: the one seam between an invocation and its export.

Two modes, chosen at cold start by ``OBSERVABILITY_EXPORT_MODE`` (auto, async or sync):

- ``sync`` exports before the handler returns, because the environment may freeze right after.
  The client waits for it, within a bound.
- ``async`` registers an internal Lambda extension and exports from its thread after the runtime
  has posted the response: the client never waits for telemetry, and Lambda keeps the
  environment running until the export is done (it counts as billed time).

``auto`` (the default) is async where the Extensions API answers and sync otherwise. Every
backend call is bounded by the invocation's deadline, and every failure is contained here:
reported, counted, never raised into the handler.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from .config import Settings
from .extension import ExtensionClient
from .failures import FailureReporter
from .logs import logger
from .metrics import SPANS_DROPPED, push, total
from .secrets import BasicAuthSecret
from .shutdown import install as install_sigterm_flush
from .tracing import Tracing

# Kept back from the invocation's deadline so that the handler still returns in time.
DEADLINE_MARGIN_SECONDS = 0.05
# Lambda gives the runtime 500 ms between SIGTERM and SIGKILL when internal extensions exist.
SHUTDOWN_BUDGET_SECONDS = 0.4


class Flush(Protocol):
    mode: str

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None: ...


class Exporter:
    """Sends queued spans and the metrics registry, each within a time budget."""

    def __init__(self, settings: Settings, tracing: Tracing, reporter: FailureReporter) -> None:
        self._settings = settings
        self._tracing = tracing
        self._reporter = reporter
        self._lock = threading.Lock()  # the extension thread and the SIGTERM flush may overlap
        self._dropped_seen = total(SPANS_DROPPED)
        self._secret = (
            BasicAuthSecret(settings.pushgateway_auth_secret_arn, settings.pushgateway_timeout)
            if settings.pushgateway_auth_secret_arn
            else None
        )

    def export(self, budget_seconds: float) -> None:
        deadline = time.monotonic() + budget_seconds
        if not self._lock.acquire(timeout=max(budget_seconds, 0.0)):
            return
        try:
            if not self._settings.pushgateway_url:
                self._export_spans(deadline)
                return
            # Both backends at once: the invocation pays the slower of the two, not their sum,
            # and a slow collector cannot eat the push's share of the deadline.
            pusher = threading.Thread(target=self._push_metrics, args=(deadline,), daemon=True)
            pusher.start()
            spans_ok = self._export_spans(deadline)
            pusher.join(max(deadline - time.monotonic(), 0.0))
            if not spans_ok:
                # The push may have read the registry before the span export's failure was
                # counted: push again so that telemetry_export_failures_total is current.
                self._push_metrics(deadline)
        finally:
            self._lock.release()

    def _export_spans(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        try:
            self._tracing.export(remaining)
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

    def _push_metrics(self, deadline: float) -> None:
        url = self._settings.pushgateway_url
        if not url:
            return
        credentials = None
        if self._secret is not None:
            try:
                credentials = self._secret.credentials()
            except Exception as error:
                self._reporter.failed("secrets", error)
                return
            self._reporter.succeeded("secrets")
        timeout = min(self._settings.pushgateway_timeout, deadline - time.monotonic())
        if timeout <= 0:
            self._reporter.failed("pushgateway", "no time left in the invocation to push")
            return
        try:
            push(url, self._settings.pushgateway_job, timeout, credentials)
        except Exception as error:
            self._reporter.failed("pushgateway", error)
        else:
            self._reporter.succeeded("pushgateway")


class SyncFlush:
    """Export before the handler returns (the client waits for it, bounded)."""

    mode = "sync"

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None:
        self._exporter.export(max(remaining_seconds - DEADLINE_MARGIN_SECONDS, 0.0))


class AsyncFlush:
    """Export from an internal extension's thread, after the response has gone."""

    mode = "async"

    def __init__(self, exporter: Exporter, client: ExtensionClient) -> None:
        self._exporter = exporter
        self._client = client
        self._done = threading.Condition()
        self._finished: set[str] = set()

    def start(self) -> None:
        self._client.register()
        threading.Thread(target=self._run, name="telemetry-extension", daemon=True).start()

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None:
        with self._done:
            self._finished.add(request_id)
            self._done.notify_all()

    def _run(self) -> None:
        while True:
            try:
                event = self._client.next_event()
            except Exception as error:
                # Without the Extensions API the environment still serves; only export stops.
                logger.error("telemetry extension stopped", extra={"error": repr(error)})
                return
            if event.get("eventType") != "INVOKE":
                continue
            self._export_after(str(event.get("requestId", "")), event.get("deadlineMs"))

    def _export_after(self, request_id: str, deadline_ms: object) -> None:
        now = time.time()
        deadline = deadline_ms / 1000.0 if isinstance(deadline_ms, int | float) else now + 3.0
        with self._done:
            # INVOKE reaches the extension as the handler starts: wait for the handler to end.
            self._done.wait_for(
                lambda: request_id in self._finished, timeout=max(deadline - now, 0.0)
            )
            self._finished.discard(request_id)
        self._exporter.export(max(deadline - time.time() - DEADLINE_MARGIN_SECONDS, 0.0))


def select(settings: Settings, exporter: Exporter) -> Flush:
    """The flush for this environment, logged once at cold start; installs the SIGTERM flush."""
    flush: Flush = SyncFlush(exporter)
    reason = "OBSERVABILITY_EXPORT_MODE=sync"
    if settings.export_mode != "sync":
        if settings.runtime_api is None:
            reason = "no Lambda Runtime API (AWS_LAMBDA_RUNTIME_API unset)"
        else:
            candidate = AsyncFlush(exporter, ExtensionClient(settings.runtime_api))
            try:
                candidate.start()
            except Exception as error:
                reason = f"Extensions API unavailable: {type(error).__name__}: {error}"
            else:
                flush, reason = candidate, f"OBSERVABILITY_EXPORT_MODE={settings.export_mode}"
        if settings.export_mode == "async" and flush.mode != "async":
            logger.warning("async export unavailable, exporting before each response")
    if settings.runtime_api is not None:
        install_sigterm_flush(lambda: exporter.export(SHUTDOWN_BUDGET_SECONDS))
    logger.info("telemetry export mode", extra={"export_mode": flush.mode, "reason": reason})
    return flush
