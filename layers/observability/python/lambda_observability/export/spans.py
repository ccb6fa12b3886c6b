"""The span backend: finished spans from the tracing queue to the ``OTEL_TRACES_EXPORTER``s.

Exporters are built at the first export, not at cold start (their imports cost tens of ms).
Each keeps the spans it failed to send for its next export, within the queue's bound, so a
backend that is down loses nothing until the bound is reached (and then counts what it drops).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import config
from ..errors import TelemetryError
from ..tracing import QueueSpanProcessor
from .failures import FailureReporter

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

SUPPORTED_EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")


def exporter_names(env: Mapping[str, str] = os.environ) -> list[str]:
    """``OTEL_TRACES_EXPORTER``'s supported names, in order; others are a problem, ignored.

    Unset: OTLP when an endpoint is set, else the console. ``none`` alone means no export.
    """
    configured = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    configured = list(dict.fromkeys(n for n in configured if n))
    if not configured:
        has_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if has_endpoint else ["console"]
    for name in configured:
        if name not in SUPPORTED_EXPORTERS:
            config.problem(
                config.Problem(
                    "OTEL_TRACES_EXPORTER",
                    "unsupported exporter ignored",
                    "otlp, console, none",
                    name,
                )
            )
    return [n for n in configured if n in SUPPORTED_EXPORTERS and n != "none"]


def otlp_protocol(env: Mapping[str, str] = os.environ) -> str:
    specific = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    variable = specific if env.get(specific) else "OTEL_EXPORTER_OTLP_PROTOCOL"
    return config.choice(env, variable, PROTOCOLS)


def build_exporter(name: str, env: Mapping[str, str] = os.environ) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One JSON line per span, like the logs, instead of the SDK's indented default.
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    if otlp_protocol(env) == "grpc":
        from .otlp import OtlpGrpcSpanExporter

        return OtlpGrpcSpanExporter(env)
    from .otlp import OtlpHttpSpanExporter

    return OtlpHttpSpanExporter(env)


class SpanExportError(TelemetryError):
    """Some spans were kept for the next export; ``causes`` has one error per exporter."""


class _Target:
    """One exporter, and the spans it failed to send (kept for its next export, bounded)."""

    def __init__(self, name: str, exporter: SpanExporter | None, queue: QueueSpanProcessor) -> None:
        self.name = name
        self.exporter = exporter  # None until built, at the first export
        self.kept: list[ReadableSpan] = []
        self._queue = queue

    def build(self) -> SpanExporter:
        if self.exporter is None:
            self.exporter = build_exporter(self.name)
        return self.exporter

    def send(self, spans: list[ReadableSpan], deadline: float) -> None:
        self.build()
        assert self.exporter is not None
        send = getattr(self.exporter, "send", None)
        if send is not None:  # the layer's OTLP exporters take the deadline
            send(spans, deadline)
            return
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise TelemetryError("the exporter reported a failure")

    def keep(self, spans: list[ReadableSpan]) -> None:
        self.kept = spans[-self._queue.max_size :]
        self._queue.dropped(len(spans) - len(self.kept))


class SpanBackend:
    name = "otlp"
    carries_failures = False

    def __init__(
        self,
        queue: QueueSpanProcessor,
        reporter: FailureReporter,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self.queue = queue
        self._reporter = reporter
        self._targets = [_Target(name, None, queue) for name in exporter_names(env)]
        self._lock = threading.Lock()  # guards the lists below, never held across I/O
        self._landed = threading.Condition(self._lock)  # the export in flight has ended
        self._in_flight: list[ReadableSpan] = []
        self._dropped_seen = 0
        queue.flush = self.flush

    @property
    def exporters(self) -> list[str]:
        """The exporters in use, by ``OTEL_TRACES_EXPORTER`` name (``custom`` for one set)."""
        with self._lock:
            return [target.name for target in self._targets]

    def checks(self) -> dict[str, str]:
        return {"otlp:export": self.name} if "otlp" in self.exporters else {}

    def prepare(self) -> None:
        """The SDK and the exporters, loaded before the deadline starts (at the first export,
        which async mode makes after the first response; tens of ms of imports)."""
        self.queue.prepare()
        with self._lock:
            targets = list(self._targets)
        for target in targets:
            target.build()

    def use_exporter(self, exporter: SpanExporter | None) -> None:
        """Replace the exporters the ``OTEL_*`` variables name (tests, custom backends); spans
        the old ones still kept go back to the queue for the new one."""
        with self._lock:
            kept = list({id(s): s for t in self._targets for s in t.kept}.values())
            self._targets = [] if exporter is None else [_Target("custom", exporter, self.queue)]
        self.queue.requeue(kept)

    def send(self, deadline: float, final: bool = False) -> bool:
        """Send queued spans by ``deadline``; SpanExportError if any were kept.

        ``final`` (the SIGTERM flush) first waits for an export in flight, then resends its
        spans only if it has not ended, since the process exit would lose them: at least once
        rather than at most once, and exactly once whenever that export ends in time.
        """
        fresh = self.queue.drain()
        with self._lock:
            if final and self._in_flight:
                # An export in flight usually lands: wait for it (half the budget at most)
                # rather than send its spans twice; resend them only if it is still out.
                self._landed.wait_for(
                    lambda: not self._in_flight,
                    timeout=max(deadline - time.monotonic(), 0.0) / 2,
                )
            targets = list(self._targets)
            if final:
                fresh = self._in_flight + fresh
            else:
                self._in_flight = fresh
        errors: list[BaseException] = []
        for target in targets:
            with self._lock:
                batch, target.kept = target.kept + fresh, []
            if not batch:
                continue
            try:
                target.send(batch, deadline)
            except Exception as error:
                target.keep(batch)
                errors.append(error)
        with self._lock:
            if not final:
                self._in_flight = []
                self._landed.notify_all()
        self._report_drops()
        if errors:
            reasons = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            raise SpanExportError(
                reasons + "; spans kept for the next export", causes=tuple(errors)
            )
        return True

    def pending(self) -> int:
        """Spans waiting for an export (queued, or kept after a failure)."""
        with self._lock:
            kept = max((len(t.kept) for t in self._targets), default=0)
        return len(self.queue) + kept

    def flush(self, timeout_millis: int) -> bool:
        """``TracerProvider.force_flush``: export what is queued now; False if it failed."""
        try:
            self.send(time.monotonic() + timeout_millis / 1000)
        except Exception as error:
            self._reporter.failed(self.name, error)
            return False
        self._reporter.succeeded(self.name)
        return True

    def shutdown(self) -> None:
        for target in self._targets:
            if target.exporter is not None:
                target.exporter.shutdown()

    def _report_drops(self) -> None:
        dropped = self.queue.dropped_total
        if dropped > self._dropped_seen:
            self._reporter.spans_dropped(dropped - self._dropped_seen, dropped)
            self._dropped_seen = dropped
