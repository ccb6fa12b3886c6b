"""OpenTelemetry tracing: the provider, then a bounded queue processor (exporters: ``export``).

The SDK's BatchSpanProcessor exports from a background thread on its own schedule, which a
frozen Lambda environment never runs. Here finished spans wait in a bounded queue and leave only
when the span backend (``export/spans.py``) drains it, by a deadline. Everything is
configured by the standard ``OTEL_*`` variables; the provider becomes the global one unless one
is set already, so that spans of user code join the invocation's trace.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from . import config
from .environment import INSTANCE_ID

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
    if memory.isascii() and memory.isdigit():
        attributes["faas.max_memory"] = int(memory) * 1024 * 1024
    if service_version:
        attributes["service.version"] = service_version
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these defaults.
    return Resource.create(attributes)


class QueueSpanProcessor(SpanProcessor):
    """Keeps finished, sampled spans until ``drain``; drops (and counts) beyond ``max_size``."""

    def __init__(self, max_size: int, on_drop: Callable[[int], None] | None = None) -> None:
        self._spans: deque[ReadableSpan] = deque()
        self.max_size = max_size
        self.dropped_total = 0
        self._on_drop = on_drop
        # Set by the span backend: what TracerProvider.force_flush runs.
        self.flush: Callable[[int], bool] | None = None
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
        self.dropped(len(spans) - len(kept))

    def dropped(self, count: int) -> None:
        """Count ``count`` spans lost to the bound (here, or by an exporter's kept spans)."""
        if count <= 0:
            return
        with self._lock:
            self.dropped_total += count
        if self._on_drop is not None:
            self._on_drop(count)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is queued now (``TracerProvider.force_flush``); False if it failed."""
        if self.flush is None:
            return not self._spans
        return self.flush(timeout_millis)


class Tracing:
    """The provider and queue of one environment."""

    def __init__(
        self,
        resource: Resource,
        queue_size: int,
        on_drop: Callable[[int], None] | None = None,
        install_global: bool = True,
    ) -> None:
        self.provider = TracerProvider(resource=resource)
        self.queue = QueueSpanProcessor(queue_size, on_drop=on_drop)
        self.provider.add_span_processor(self.queue)
        self.tracer = self.provider.get_tracer(_INSTRUMENTATION_NAME)
        self.is_global = install_global and _install_global(self.provider)


def _install_global(provider: TracerProvider) -> bool:
    """Make ``provider`` the global one, so that user spans join the trace; not if the user
    (or an auto-instrumentation) has set one already."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider() is provider


def queue_size(env: Mapping[str, str] = os.environ) -> int:
    return int(config.number(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, integer=True))
