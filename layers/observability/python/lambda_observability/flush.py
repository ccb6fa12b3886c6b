"""Where telemetry leaves the environment: the one seam between an invocation and its export.

``SyncFlush`` exports before the handler returns, because the environment may freeze right
after. Every backend call is bounded by the invocation's remaining time, and every failure is
contained here: reported, counted, never raised into the handler.
"""

from __future__ import annotations

import time
from typing import Protocol

from .config import Settings
from .failures import FailureReporter
from .metrics import push
from .secrets import BasicAuthSecret
from .tracing import Tracing

# Kept back from the invocation's deadline so that the handler still returns in time.
DEADLINE_MARGIN_SECONDS = 0.05


class Flush(Protocol):
    def after_invocation(self, remaining_seconds: float) -> None: ...

    def shutdown(self, budget_seconds: float) -> None: ...


class Exporter:
    """Sends queued spans and the metrics registry, each within a time budget."""

    def __init__(self, settings: Settings, tracing: Tracing, reporter: FailureReporter) -> None:
        self._settings = settings
        self._tracing = tracing
        self._reporter = reporter
        self._secret = (
            BasicAuthSecret(settings.pushgateway_auth_secret_arn, settings.pushgateway_timeout)
            if settings.pushgateway_auth_secret_arn
            else None
        )

    def export(self, budget_seconds: float) -> None:
        deadline = time.monotonic() + budget_seconds
        self._export_spans(deadline)
        self._push_metrics(deadline)

    def _export_spans(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        try:
            ok = self._tracing.export(remaining)
        except Exception as error:
            self._reporter.failed("otlp", error)
            return
        if ok:
            self._reporter.succeeded("otlp")
        else:
            self._reporter.failed("otlp", "span export failed; spans kept for the next export")

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

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter

    def after_invocation(self, remaining_seconds: float) -> None:
        self._exporter.export(max(remaining_seconds - DEADLINE_MARGIN_SECONDS, 0.0))

    def shutdown(self, budget_seconds: float) -> None:
        self._exporter.export(budget_seconds)
