"""OpenTelemetry tracing: the invocation's span on the request path, the SDK after it.

The first response needs the span's ids (for the log line and the caller's trace), not the
SDK. So the invocation's SERVER span is a ``LightSpan``: an ``opentelemetry.trace.Span`` of
the API that keeps its name, ids, times, attributes, status and events as plain data, and is
the current span during the handler, so that log lines carry its ids and user spans are its
children. Once it ends it waits in the bounded queue; the span backend (``export/spans.py``)
drains the queue after the response, and only then is the SDK imported and the span made a
``ReadableSpan``, with the resource, the span limits and the instrumentation scope the SDK
would have given it (bench/results/importtime.md: the SDK's import is no longer part of init).

User spans: the global tracer provider is the layer's ``LazyTracerProvider`` (unless one is
set already). Its tracers make the SDK provider at their first span, and their spans go to the
same queue. Everything is configured by the standard ``OTEL_*`` variables: the sampler of the
light span is ``OTEL_TRACES_SAMPLER`` read as the SDK reads it, one of its six built-in
samplers (the SDK samples user spans with the same one).

The SDK's BatchSpanProcessor exports from a background thread on its own schedule, which a
frozen Lambda environment never runs: finished spans wait in the queue and leave only when the
span backend drains it, by a deadline.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from . import config
from .environment import INSTANCE_ID

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

DEFAULT_QUEUE_SIZE = 2048
_INSTRUMENTATION_NAME = "lambda_observability"
SAMPLERS = (
    "parentbased_always_on",
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_TRACE_ID_LIMIT = (1 << 64) - 1  # the SDK's TraceIdRatioBased compares the low 64 bits


def build_resource(
    service_name: str, service_version: str | None, env: Mapping[str, str] = os.environ
) -> Resource:
    from opentelemetry.sdk.resources import Resource

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


class Sampler:
    """``OTEL_TRACES_SAMPLER`` (and ``_ARG``) decided as the SDK's built-in samplers do."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self.name = config.choice(env, "OTEL_TRACES_SAMPLER", SAMPLERS)
        self.rate = 1.0
        if self.name.endswith("traceidratio"):
            self.rate = config.number(
                env, "OTEL_TRACES_SAMPLER_ARG", 1.0, inclusive=True, maximum=1.0
            )
        self._bound = round(self.rate * (_TRACE_ID_LIMIT + 1))

    def sampled(self, parent: SpanContext | None, trace_id: int) -> bool:
        if parent is not None and self.name.startswith("parentbased_"):
            return parent.trace_flags.sampled
        root = self.name.removeprefix("parentbased_")
        if root == "traceidratio":
            return trace_id & _TRACE_ID_LIMIT < self._bound
        return root == "always_on"


class LightSpan(trace.Span):
    """A span recorded as plain data, made a ``ReadableSpan`` after the response."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        on_end: Callable[[LightSpan], None],
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes = dict(attributes)
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.status = Status(StatusCode.UNSET)
        self.start_time = time.time_ns()
        self.end_time: int | None = None
        self._on_end = on_end

    def get_span_context(self) -> SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self.end_time is None:
            self.events.append((name, dict(attributes or {}), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        return None  # the invocation's span has no links

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK's Span: OK is final, UNSET never replaces anything.
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self.status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        import traceback

        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded: dict[str, Any] = {  # the SDK's attributes, in the SDK's words
            "exception.type": f"{module}.{qualname}" if module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        recorded.update(attributes or {})
        self.add_event("exception", recorded, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            self._on_end(self)


class QueueSpanProcessor:
    """Keeps finished, sampled spans until ``drain``; drops (and counts) beyond ``max_size``.

    The SDK's provider calls it as a span processor for user spans; the invocation's light
    spans come straight in. ``drain`` hands out ``ReadableSpan``s: ``readable`` (set by
    ``Tracing``) makes the light ones so, with the SDK loaded by then (``prepare``).
    """

    def __init__(self, max_size: int, on_drop: Callable[[int], None] | None = None) -> None:
        self._spans: deque[Any] = deque()
        self.max_size = max_size
        self.dropped_total = 0
        self._on_drop = on_drop
        # Set by the span backend: what TracerProvider.force_flush runs.
        self.flush: Callable[[int], bool] | None = None
        self.prepare: Callable[[], None] = lambda: None
        self.readable: Callable[[LightSpan], ReadableSpan] | None = None
        self._lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        self._put([span], at_front=False)

    def drain(self) -> list[ReadableSpan]:
        with self._lock:
            spans = list(self._spans)
            self._spans.clear()
        if self.readable is not None:
            return [self.readable(s) if isinstance(s, LightSpan) else s for s in spans]
        return spans

    def requeue(self, spans: Sequence[Any]) -> None:
        """Put back spans whose export failed, ahead of newer ones, within the bound."""
        self._put(list(spans), at_front=True)

    def __len__(self) -> int:
        return len(self._spans)

    def _put(self, spans: list[Any], at_front: bool) -> None:
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
    """The queue and the sampler of one environment, and its SDK provider once needed."""

    def __init__(
        self,
        resource: Resource | Callable[[], Resource],
        queue_size: int,
        on_drop: Callable[[int], None] | None = None,
        install_global: bool = True,
    ) -> None:
        self._resource = resource
        self.queue = QueueSpanProcessor(queue_size, on_drop=on_drop)
        self.queue.prepare = self._load_quietly
        self.queue.readable = self._readable
        self.sampler = Sampler()
        self._provider: TracerProvider | None = None
        self._lock = threading.Lock()
        self.is_global = install_global and _install_global(LazyTracerProvider(self))

    @property
    def provider(self) -> TracerProvider:
        """The SDK's provider, made (and the SDK imported) on first use."""
        return self._provider if self._provider is not None else self.load()

    @property
    def tracer(self) -> trace.Tracer:
        """The layer's own SDK tracer (for code that wants SDK spans of the layer's scope)."""
        return self.provider.get_tracer(_INSTRUMENTATION_NAME)

    def load(self) -> TracerProvider:
        with self._lock:
            if self._provider is None:
                from opentelemetry.sdk.trace import TracerProvider

                resource = self._resource() if callable(self._resource) else self._resource
                provider = TracerProvider(resource=resource)
                provider.add_span_processor(self.queue)  # type: ignore[arg-type]
                self._provider = provider
            return self._provider

    def _load_quietly(self) -> None:
        self.load()

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
    ) -> LightSpan:
        """A span of the invocation, as plain data (no SDK): a child of ``context``'s span."""
        found = trace.get_current_span(context).get_span_context()
        parent = found if found.is_valid else None
        trace_id = parent.trace_id if parent is not None else random.getrandbits(128)
        span_id = random.getrandbits(64) or 1
        sampled = self.sampler.sampled(parent, trace_id)
        span_context = SpanContext(
            trace_id,
            span_id,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
            trace_state=parent.trace_state if parent is not None else TraceState(),
        )
        return LightSpan(name, span_context, parent, kind, attributes or {}, self.queue.on_end)

    def _readable(self, span: LightSpan) -> ReadableSpan:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import Event, ReadableSpan

        limits, scope = _limits_and_scope()

        def bounded(values: Mapping[str, Any], most: int | None, length: int | None) -> Any:
            return BoundedAttributes(most, values, immutable=True, max_value_len=length)

        events = [
            Event(
                name,
                bounded(values, limits.max_event_attributes, limits.max_attribute_length),
                stamp,
            )
            for name, values, stamp in span.events[: limits.max_events]
        ]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=self.provider.resource,
            attributes=bounded(
                span.attributes, limits.max_span_attributes, limits.max_span_attribute_length
            ),
            events=events,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=scope,
        )


@functools.cache
def _limits_and_scope() -> tuple[Any, Any]:
    """The OTEL_*_LIMIT variables as the SDK reads them, and the layer's scope: read once."""
    from opentelemetry.sdk.trace import SpanLimits
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    return SpanLimits(), InstrumentationScope(_INSTRUMENTATION_NAME)


class LazyTracerProvider(trace.TracerProvider):
    """The global provider until a tracer of it makes a span: then the SDK's (``Tracing``)."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _LazyTracer(
            self._tracing,
            (instrumenting_module_name, instrumenting_library_version, schema_url, attributes),
        )

    def __getattr__(self, name: str) -> Any:  # force_flush, add_span_processor, resource...
        return getattr(self._tracing.provider, name)


class _LazyTracer(trace.Tracer):
    def __init__(self, tracing: Tracing, arguments: tuple[Any, ...]) -> None:
        self._tracing = tracing
        self._arguments = arguments
        self._real: trace.Tracer | None = None

    def _tracer(self) -> trace.Tracer:
        if self._real is None:
            self._real = self._tracing.provider.get_tracer(*self._arguments)
        return self._real

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        # The SDK tracer's own context manager (also a decorator), as the API's would be.
        return self._tracer().start_as_current_span(*args, **kwargs)


def _install_global(provider: trace.TracerProvider) -> bool:
    """Make ``provider`` the global one, so that user spans join the trace; not if the user
    (or an auto-instrumentation) has set one already."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider() is provider


def queue_size(env: Mapping[str, str] = os.environ) -> int:
    return int(config.number(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, integer=True))
