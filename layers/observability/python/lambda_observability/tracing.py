"""OpenTelemetry tracing: provider, then a bounded queue processor, then an exporter built late.

The SDK's BatchSpanProcessor exports from a background thread on its own schedule, which a
frozen Lambda environment never runs. Here finished spans wait in a bounded queue and leave only
when ``export`` is called with a time budget (before the response in sync mode, after it in
async mode). Everything is configured by the standard ``OTEL_*`` variables.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from .metrics import INSTANCE_ID, SPANS_DROPPED

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

DEFAULT_QUEUE_SIZE = 2048
# The SDK's own default, 10 s, is far too long to hold a Lambda invocation; applies only when
# neither OTEL_EXPORTER_OTLP_TIMEOUT nor OTEL_EXPORTER_OTLP_TRACES_TIMEOUT is set.
DEFAULT_OTLP_TIMEOUT_SECONDS = 0.5
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

    def __init__(self, max_size: int) -> None:
        self._spans: deque[ReadableSpan] = deque()
        self._max_size = max_size
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
            room = max(self._max_size - len(self._spans), 0)
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
        return True


def exporter_name(env: Mapping[str, str] = os.environ) -> str:
    """``OTEL_TRACES_EXPORTER``; by default OTLP when an endpoint is set, else the console."""
    configured = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if configured:
        return configured.split(",")[0].strip()
    has_endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "otlp" if has_endpoint else "console"


def otlp_protocol(env: Mapping[str, str] = os.environ) -> str:
    return (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def build_exporter(env: Mapping[str, str] = os.environ) -> SpanExporter | None:
    """Imported on first export, not at cold start: the exporters cost ~100 ms of imports."""
    name = exporter_name(env)
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One JSON line per span, like the logs, instead of the SDK's indented default.
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    if name != "otlp":
        raise ValueError(f"unsupported OTEL_TRACES_EXPORTER {name!r}: use otlp, console or none")
    protocol = otlp_protocol(env)
    timeout = (
        None
        if env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT")
        else DEFAULT_OTLP_TIMEOUT_SECONDS
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(timeout=timeout)
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(timeout=timeout)
    raise ValueError(
        f"unsupported OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r}: use http/protobuf or grpc"
    )


def bound_timeout(exporter: SpanExporter, seconds: float) -> None:
    """Cap the exporter's retry deadline for this export.

    The OTLP exporters fix their timeout at construction and retry until it passes; an export
    must instead end within what is left of the invocation. These are private attributes of the
    HTTP (``_client._timeout``) and gRPC (``_timeout``) exporters, so this is best effort, and
    tests check that it still takes effect.
    """
    client: Any = getattr(exporter, "_client", None)
    target: Any = client if client is not None and hasattr(client, "_timeout") else exporter
    if not hasattr(target, "_timeout"):
        return
    configured = getattr(target, "_configured_timeout", None)
    if configured is None:
        configured = target._timeout
        target._configured_timeout = configured
    target._timeout = max(min(configured, seconds), 0.001)


class _LastExporterError(logging.Handler):
    """Takes the OTLP exporters' own log lines, which are one plain-text line per failed batch,
    and keeps the last one as the reason our rate-limited JSON warning gives."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()[:300]

    def take(self) -> str | None:
        message, self.message = self.message, None
        return message


def _capture_exporter_logs() -> _LastExporterError:
    handler = _LastExporterError()
    exporter_logger = logging.getLogger("opentelemetry.exporter")
    exporter_logger.addHandler(handler)
    exporter_logger.propagate = False
    return handler


class SpanExportError(Exception):
    """The spans were requeued; the message says why the export failed."""


class Tracing:
    """The provider and queue of one environment, and its lazily built exporter."""

    def __init__(self, resource: Resource, queue_size: int) -> None:
        self.provider = TracerProvider(resource=resource)
        self.queue = QueueSpanProcessor(queue_size)
        self.provider.add_span_processor(self.queue)
        self.tracer = self.provider.get_tracer(_INSTRUMENTATION_NAME)
        self._exporter: SpanExporter | None = None
        self._exporter_built = False
        self._export_lock = threading.Lock()
        self._exporter_errors = _capture_exporter_logs()

    def use_exporter(self, exporter: SpanExporter | None) -> None:
        """Replace the exporter the ``OTEL_*`` variables would build (tests, custom backends)."""
        with self._export_lock:
            self._exporter = exporter
            self._exporter_built = True

    def export(self, timeout: float) -> None:
        """Send queued spans within ``timeout`` seconds; SpanExportError if they were requeued."""
        with self._export_lock:
            if not self._exporter_built:
                # A bad OTEL_* value raises here, on every export until fixed, and is reported
                # by the caller; the spans stay queued.
                self._exporter = build_exporter()
                self._exporter_built = True
            spans = self.queue.drain()
            if not spans or self._exporter is None:
                return
            from opentelemetry.sdk.trace.export import SpanExportResult

            bound_timeout(self._exporter, timeout)
            self._exporter_errors.take()
            try:
                result = self._exporter.export(spans)
                reason = self._exporter_errors.take() or "the exporter reported a failure"
            except Exception as error:
                result, reason = SpanExportResult.FAILURE, f"{type(error).__name__}: {error}"
            if result is SpanExportResult.SUCCESS:
                return
            self.queue.requeue(spans)
            raise SpanExportError(f"{reason}; spans kept for the next export")

    def shutdown(self) -> None:
        if self._exporter is not None:
            self._exporter.shutdown()


def queue_size(env: Mapping[str, str] = os.environ) -> int:
    raw = env.get("OTEL_BSP_MAX_QUEUE_SIZE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_QUEUE_SIZE
