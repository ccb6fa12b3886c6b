"""Where telemetry leaves the environment: backends behind one seam, and when they are sent.

- ``exporter``: the ``Backend`` interface (a name, a send bounded by a deadline, its readiness
  checks) and the ``Exporter`` that sends to all of them by one deadline;
- backends: ``spans`` (OTLP or the console, ``otlp`` builds the OTLP exporters) and
  ``pushgateway`` (the metrics registry), over ``http_client`` with ``secrets`` for basic auth;
- *when*: ``policy`` (after every call while traffic is sparse, once per interval while busy)
  asked by a trigger: ``sync`` (before the handler returns) or ``asynchronous`` (from an
  internal extension, after the response) or, on Lambda Managed Instances, ``timer`` (a
  background thread of each worker);
- ``failures``: every failure counted, logged at most once a minute, kept for ``/readyz``.

``OBSERVABILITY_EXPORT_MODE=auto`` (the default) is async where the Extensions API answers and
sync otherwise. SIGTERM gets a final export of everything (``shutdown.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from .. import environment, metrics, telemetry_api, workers
from ..config import Settings
from ..extension import ExtensionClient
from ..logs import logger
from ..shutdown import install as install_sigterm_flush
from ..tracing import Tracing
from .asynchronous import AsyncFlush
from .exporter import Backend, Exporter
from .failures import FailureReporter, reporter
from .policy import ExportPolicy
from .pushgateway import PushgatewayBackend
from .spans import SpanBackend
from .sync import SyncFlush
from .timer import TimerFlush

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

# Lambda gives the runtime 500 ms between SIGTERM and SIGKILL when internal extensions exist
# (600 ms on Lambda Managed Instances).
SHUTDOWN_BUDGET_SECONDS = 0.4

__all__ = ["Backend", "Exporter", "Flush", "backends", "current", "exporter_for", "start"]


class Flush(Protocol):
    mode: str
    policy: ExportPolicy

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None: ...


_current: Exporter | None = None


def current() -> Exporter | None:
    """This environment's exporter, once ``@observe`` has built it."""
    return _current


def backends(
    settings: Settings, tracing: Tracing, source: FailureReporter = reporter
) -> list[Backend]:
    """The backends the configuration names, spans first."""
    found: list[Backend] = [SpanBackend(tracing.queue, source)]
    if settings.pushgateways:
        shared = metrics.SHARED_DIRECTORY
        if shared is None:
            found.append(PushgatewayBackend(settings, source))
        else:  # LMI: every worker's values summed, as the environment's group
            instance = workers.environment_id(shared)
            leader = workers.Leader(shared).held
            found.append(PushgatewayBackend(settings, source, _summed, instance, leader))
    return found


def _summed() -> CollectorRegistry:
    return metrics.environment_registry()[0]


def exporter_for(
    settings: Settings, tracing: Tracing, source: FailureReporter = reporter
) -> Exporter:
    """An exporter over the backends ``settings`` name."""
    return Exporter(backends(settings, tracing, source), source)


def start(settings: Settings, exporter: Exporter, source: FailureReporter = reporter) -> Flush:
    """The trigger for this environment, logged once at cold start; installs the SIGTERM flush
    and, where an extension is registered, the Telemetry API subscription."""
    global _current
    _current = exporter
    policy = ExportPolicy(settings.export_interval, settings.export_sparse_gap)
    flush: Flush = SyncFlush(exporter, policy)
    reason = "OBSERVABILITY_EXPORT_MODE=sync"
    client = ExtensionClient(settings.runtime_api) if settings.runtime_api else None
    platform = _not_subscribed(settings)
    announced_by_extension = False
    if environment.is_managed_instances():
        # Every worker's values go to the shared files from the first one on, and LMI's init
        # is never on a request's path: the registry is made now, not at the first export.
        metrics.registry()
    if settings.export_mode != "sync" and environment.is_managed_instances():
        # Never frozen, no billed milliseconds: a background timer, off the request path.
        timer = TimerFlush(exporter, policy)
        flush, reason = timer, "Lambda Managed Instances: " + timer.start(client, source)
    elif settings.export_mode != "sync":
        if client is None:
            reason = "no Lambda Runtime API (AWS_LAMBDA_RUNTIME_API unset)"
        else:
            candidate = AsyncFlush(exporter, policy, client, source)
            registered = f"OBSERVABILITY_EXPORT_MODE={settings.export_mode}"
            if platform is None:
                # Subscribed from the extension's thread before its first event, while this
                # one goes on with init: its round trip is off init's path. It must still
                # happen during init, which ends only once the extension asks for an event.
                platform = telemetry_api.Subscription("subscribing")
                candidate.first = partial(
                    _subscribe, client, candidate, platform, partial(_announce, policy, registered)
                )
            try:
                candidate.start()
            except Exception as error:
                reason = f"Extensions API unavailable: {type(error).__name__}: {error}"
            else:
                flush, reason = candidate, registered
                announced_by_extension = candidate.first is not None
        if settings.export_mode == "async" and flush.mode != "async":
            logger.warning("async export unavailable, exporting before each response")
    if platform is None or (flush.mode != "async" and platform.outcome == "subscribing"):
        platform = telemetry_api.Subscription("no extension registered")
    if settings.runtime_api is not None:
        install_sigterm_flush(partial(_final_export, exporter, flush, platform))
    if not announced_by_extension:
        _announce(policy, reason, flush, platform)
    return flush


def _not_subscribed(settings: Settings) -> telemetry_api.Subscription | None:
    """Why there is no subscription, or None if the async extension may subscribe."""
    if not settings.telemetry_api:
        return telemetry_api.Subscription("off (OBSERVABILITY_TELEMETRY_API=off)")
    if environment.is_managed_instances():
        # Not on LMI (yet): subscribed, AWS's emulator in LMI mode stalled calls (one of 120
        # timed out after 30 s in tests/e2e/test_runtimes_proof.py, 4 workers), and LMI's
        # records carry no billed duration anyway.
        return telemetry_api.Subscription("not on Lambda Managed Instances")
    return None


def _subscribe(
    client: ExtensionClient,
    extension: AsyncFlush,
    platform: telemetry_api.Subscription,
    announce: Callable[[Flush, telemetry_api.Subscription], None],
) -> None:
    """In the extension's thread, before its first event: its connection is free."""
    made = telemetry_api.subscribe(client, gate=extension.gate)
    platform.outcome, platform.listener = made.outcome, made.listener
    announce(extension, platform)


def _announce(
    policy: ExportPolicy, reason: str, flush: Flush, platform: telemetry_api.Subscription
) -> None:
    logger.info(
        "telemetry export mode",
        extra={
            "export_mode": flush.mode,
            "reason": reason,
            "export_interval_seconds": policy.interval,
            "export_sparse_gap_seconds": policy.sparse_gap,
            "telemetry_api": platform.outcome,
        },
    )


def _final_export(exporter: Exporter, flush: Flush, platform: telemetry_api.Subscription) -> None:
    deadline = time.monotonic() + SHUTDOWN_BUDGET_SECONDS
    if isinstance(flush, AsyncFlush):
        # The last call's platform.report leaves Lambda as the environment shuts down.
        flush.gate.open()
        platform.wait_for_reports(flush.invocations)
    exporter.export(deadline, final=True)
