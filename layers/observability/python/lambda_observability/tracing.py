"""OpenTelemetry tracing: provider, then a bounded queue processor, then exporters built late.

The SDK's BatchSpanProcessor exports from a background thread on its own schedule, which a
frozen Lambda environment never runs. Here finished spans wait in a bounded queue and leave only
when ``export`` is called with a deadline (by the export policy in ``flush.py``). Everything is
configured by the standard ``OTEL_*`` variables; the provider becomes the global one unless one
is set already, so that spans of user code join the invocation's trace.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from .metrics import INSTANCE_ID, SPANS_DROPPED

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

DEFAULT_QUEUE_SIZE = 2048
_INSTRUMENTATION_NAME = "lambda_observability"


def build_resource(
    service_name: str, service_version: str | None, env: Mapping[str, str] = os.environ
) -> Resource:
    attributes: dict[str, Any] = {
        "service.name": service_name,
        "service.instance.id": INSTANCE_ID,
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "faas.name": env.get("AWS_LAMBDA_FUNCTION_NAME", "unknown"),
        "faas.version": env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        # Semantic conventions: on AWS, faas.instance is the environment's log stream.
        "faas.instance": env.get("AWS_LAMBDA_LOG_STREAM_NAME", INSTANCE_ID),
        "cloud.region": env.get("AWS_REGION", "unknown"),
    }
    memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory.isdigit():
        attributes["faas.max_memory"] = int(memory) * 1024 * 1024
    if service_version:
        attributes["service.version"] = service_version
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these defaults.
    return Resource.create(attributes)


class QueueSpanProcessor(SpanProcessor):
    """Keeps finished, sampled spans until ``drain``; drops (and counts) beyond ``max_size``."""

    def __init__(self, max_size: int, flush: Callable[[int], bool] | None = None) -> None:
        self._spans: deque[ReadableSpan] = deque()
        self.max_size = max_size
        self._flush = flush
        self._lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        self._put([span], at_front=False)

    def drain(self) -> list[ReadableSpan]:
        with self._lock:
            spans = list(self._spans)
            self._spans.clear()
        return spans

    def requeue(self, spans: list[ReadableSpan]) -> None:
        """Put back spans whose export failed, ahead of newer ones, within the bound."""
        self._put(spans, at_front=True)

    def __len__(self) -> int:
        return len(self._spans)

    def _put(self, spans: list[ReadableSpan], at_front: bool) -> None:
        with self._lock:
            room = max(self.max_size - len(self._spans), 0)
            kept = spans[:room]
            if at_front:
                self._spans.extendleft(reversed(kept))
            else:
                self._spans.extend(kept)
        dropped = len(spans) - len(kept)
        if dropped:
            SPANS_DROPPED.inc(dropped)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued now (``TracerProvider.force_flush``); False if it failed."""
        if self._flush is None:
            return not self._spans
        return self._flush(timeout_millis)


SUPPORTED_EXPORTERS = ("otlp", "console", "none")


def exporter_names(env: Mapping[str, str] = os.environ) -> tuple[list[str], list[str]]:
    """``OTEL_TRACES_EXPORTER`` as (supported, unsupported) names, in order.

    Unset: OTLP when an endpoint is set, else the console. ``none`` alone means no export.
    """
    configured = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    configured = [n for n in configured if n]
    if not configured:
        has_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return (["otlp"] if has_endpoint else ["console"]), []
    supported = [n for n in dict.fromkeys(configured) if n in SUPPORTED_EXPORTERS and n != "none"]
    unsupported = [n for n in dict.fromkeys(configured) if n not in SUPPORTED_EXPORTERS]
    return supported, unsupported


def otlp_protocol(env: Mapping[str, str] = os.environ) -> str:
    return (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def build_exporter(name: str, env: Mapping[str, str] = os.environ) -> SpanExporter:
    """Imported on first export, not at cold start: exporters cost tens of ms of imports."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One JSON line per span, like the logs, instead of the SDK's indented default.
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    if name != "otlp":
        raise ValueError(f"unsupported OTEL_TRACES_EXPORTER {name!r}: use otlp, console or none")
    protocol = otlp_protocol(env)
    if protocol == "grpc":
        from .otlp import OtlpGrpcSpanExporter

        return OtlpGrpcSpanExporter(env)
    if protocol == "http/protobuf":
        from .otlp import OtlpHttpSpanExporter

        return OtlpHttpSpanExporter(env)
    raise ValueError(
        f"unsupported OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r}: use http/protobuf or grpc"
    )


class SpanExportError(Exception):
    """Some spans were kept for the next export; the message says why the export failed."""

    def __init__(self, message: str, causes: list[BaseException]) -> None:
        super().__init__(message)
        self.causes = causes  # one per exporter that failed


class _Target:
    """One exporter, and the spans it failed to send (kept for its next export, bounded)."""

    def __init__(self, name: str, exporter: SpanExporter | None, max_kept: int) -> None:
        self.name = name
        self.exporter = exporter  # None until built, at the first export
        self.kept: list[ReadableSpan] = []
        self._max_kept = max_kept

    def send(self, spans: list[ReadableSpan], deadline: float) -> None:
        if self.exporter is None:
            self.exporter = build_exporter(self.name)
        send = getattr(self.exporter, "send", None)
        if send is not None:  # the layer's OTLP exporters take the deadline
            send(spans, deadline)
            return
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.exporter.export(spans) is not SpanExportResult.SUCCESS:
            raise RuntimeError("the exporter reported a failure")

    def keep(self, spans: list[ReadableSpan]) -> None:
        self.kept = spans[-self._max_kept :]
        dropped = len(spans) - len(self.kept)
        if dropped:
            SPANS_DROPPED.inc(dropped)


class Tracing:
    """The provider and queue of one environment, and its exporters, built at first export."""

    def __init__(
        self,
        resource: Resource,
        queue_size: int,
        env: Mapping[str, str] = os.environ,
        install_global: bool = True,
    ) -> None:
        self.provider = TracerProvider(resource=resource)
        self.queue = QueueSpanProcessor(queue_size, flush=self._force_flush)
        self.provider.add_span_processor(self.queue)
        self.tracer = self.provider.get_tracer(_INSTRUMENTATION_NAME)
        self.is_global = install_global and _install_global(self.provider)
        names, unsupported = exporter_names(env)
        self.unsupported_exporters = unsupported
        self._targets = [_Target(name, None, queue_size) for name in names]
        self._lock = threading.Lock()  # guards the lists below, never held across I/O
        self._in_flight: list[ReadableSpan] = []

    @property
    def exporters(self) -> list[str]:
        """The exporters in use, by ``OTEL_TRACES_EXPORTER`` name (``custom`` for one set)."""
        with self._lock:
            return [target.name for target in self._targets]

    def use_exporter(self, exporter: SpanExporter | None) -> None:
        """Replace the exporters the ``OTEL_*`` variables name (tests, custom backends); spans
        the old ones still kept go back to the queue for the new one."""
        with self._lock:
            kept = list({id(s): s for t in self._targets for s in t.kept}.values())
            self._targets = (
                [] if exporter is None else [_Target("custom", exporter, self.queue.max_size)]
            )
        self.queue.requeue(kept)

    def export(self, deadline: float, final: bool = False) -> None:
        """Send queued spans by ``deadline`` (``time.monotonic``); SpanExportError if any were kept.

        ``final`` (the SIGTERM flush) also resends the spans of an export still in flight,
        which the process exit would otherwise lose: at least once rather than at most once.
        """
        fresh = self.queue.drain()
        with self._lock:
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
        if errors:
            reasons = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            raise SpanExportError(reasons + "; spans kept for the next export", errors)

    def pending(self) -> int:
        """Spans waiting for an export (queued, or kept after a failure)."""
        with self._lock:
            kept = max((len(t.kept) for t in self._targets), default=0)
        return len(self.queue) + kept

    def _force_flush(self, timeout_millis: int) -> bool:
        try:
            self.export(time.monotonic() + timeout_millis / 1000)
        except SpanExportError:
            return False
        return True

    def shutdown(self) -> None:
        for target in self._targets:
            if target.exporter is not None:
                target.exporter.shutdown()


def _install_global(provider: TracerProvider) -> bool:
    """Make ``provider`` the global one, so that user spans join the trace; not if the user
    (or an auto-instrumentation) has set one already."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider() is provider


def queue_size(env: Mapping[str, str] = os.environ) -> int:
    raw = env.get("OTEL_BSP_MAX_QUEUE_SIZE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_QUEUE_SIZE
