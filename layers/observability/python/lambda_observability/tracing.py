"""OpenTelemetry tracing: the invocation's span on the request path, the SDK after it.

The first response needs the span's ids (for the log line and the caller's trace), neither
the SDK nor even the OpenTelemetry API (whose import, with ``typing_extensions``, was the
largest part of init left after the SDK: bench/results/importtime.md). So the invocation's
SERVER span is a ``LightSpan``: its name, ids, times, attributes, status and events as plain
data, current while the handler runs (``current_span``), so that log lines carry its ids.
Once it ends it waits in the bounded queue; the span backend (``export/spans.py``) drains the
queue after the response, and only then is the SDK imported and the span made a
``ReadableSpan``, with the resource, the span limits and the instrumentation scope the SDK
would have given it.

User spans: once anything imports the OpenTelemetry API, ``otel_api`` joins it (the layer's
provider becomes the global one, and the invocation's span the API's current span), so that
user spans are children of the invocation's and go to the same queue. Everything is
configured by the standard ``OTEL_*`` variables: the sampler of the light span is
``OTEL_TRACES_SAMPLER`` read as the SDK reads it, one of its six built-in samplers (the SDK
samples user spans with the same one).

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
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, NamedTuple

from . import config
from .environment import INSTANCE_ID

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Tracer

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
_SAMPLED = 0x01  # W3C trace-flags


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


class Parent(NamedTuple):
    """The caller's span, as its ``traceparent`` names it (W3C Trace Context)."""

    trace_id: int
    span_id: int
    flags: int
    # The tracestate header as received (header fields joined by ","), parsed by the API's
    # TraceState when the SDK span is made: None when absent or over W3C's length limit.
    trace_state: str | None = None

    @property
    def sampled(self) -> bool:
        return bool(self.flags & _SAMPLED)


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

    def sampled(self, parent: Parent | None, trace_id: int) -> bool:
        if parent is not None and self.name.startswith("parentbased_"):
            return parent.sampled
        root = self.name.removeprefix("parentbased_")
        if root == "traceidratio":
            return trace_id & _TRACE_ID_LIMIT < self._bound
        return root == "always_on"


class LightSpan:
    """The invocation's span as plain data, made an SDK ``ReadableSpan`` after the response.

    Its methods are the API ``Span``'s, with plain values where the API has its own types
    (``set_status("ERROR", ...)``, ``kind="SERVER"``); ``otel_api.ApiSpan`` is the same span
    behind the API's interface, once the API is loaded.
    """

    __slots__ = (
        "_on_end",
        "attributes",
        "description",
        "end_time",
        "events",
        "kind",
        "name",
        "parent",
        "sampled",
        "span_id",
        "start_time",
        "status",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent: Parent | None,
        sampled: bool,
        kind: str,
        attributes: Mapping[str, Any],
        on_end: Callable[[LightSpan], None],
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent = parent
        self.sampled = sampled
        self.trace_state = parent.trace_state if parent is not None else None
        self.kind = kind
        self.attributes = dict(attributes)
        self.events: list[tuple[str, dict[str, Any], int]] = []
        self.status = "UNSET"
        self.description: str | None = None
        self.start_time = time.time_ns()
        self.end_time: int | None = None
        self._on_end = on_end

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

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, code: str, description: str | None = None) -> None:
        """``code``: UNSET, OK or ERROR. As the SDK's Span: OK is final, UNSET replaces
        nothing, and only ERROR keeps a description."""
        if self.end_time is not None or self.status == "OK" or code == "UNSET":
            return
        self.status = code
        self.description = description if code == "ERROR" else None

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


# The invocation's span while its handler runs, for the log line's ids (logs.py) and for the
# OpenTelemetry API once it is loaded (otel_api.py).
_CURRENT: ContextVar[LightSpan | None] = ContextVar("lambda_observability_span", default=None)
# Set by otel_api once the API is loaded: the ids of the API's current span (a user span).
api_ids: Callable[[], tuple[int, int] | None] | None = None


def current_span() -> LightSpan | None:
    return _CURRENT.get()


def current_ids() -> tuple[int, int] | None:
    """The trace and span ids of the current span: a user span once the API is loaded,
    else the invocation's."""
    if api_ids is not None:
        ids = api_ids()
        if ids is not None:
            return ids
    span = _CURRENT.get()
    return (span.trace_id, span.span_id) if span is not None else None


def enter(span: LightSpan) -> Token[LightSpan | None]:
    return _CURRENT.set(span)


def leave(token: Token[LightSpan | None]) -> None:
    _CURRENT.reset(token)


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

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        if isinstance(span, LightSpan):
            if not span.sampled:
                return
        elif span.context is None or not span.context.trace_flags.sampled:  # an SDK span
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
        # Whether otel_api may make the layer's provider the global one, once the API is loaded.
        self.install_global = install_global

    @property
    def provider(self) -> TracerProvider:
        """The SDK's provider, made (and the SDK imported) on first use."""
        return self._provider if self._provider is not None else self.load()

    @property
    def tracer(self) -> Tracer:
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
        parent: Parent | None = None,
        kind: str = "INTERNAL",
        attributes: Mapping[str, Any] | None = None,
    ) -> LightSpan:
        """A span of the invocation, as plain data (no SDK, no API): a child of ``parent``."""
        trace_id = parent.trace_id if parent is not None else random.getrandbits(128)
        span_id = random.getrandbits(64) or 1
        sampled = self.sampler.sampled(parent, trace_id)
        return LightSpan(
            name, trace_id, span_id, parent, sampled, kind, attributes or {}, self.queue.on_end
        )

    def _readable(self, span: LightSpan) -> ReadableSpan:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        limits, scope = _limits_and_scope()

        def bounded(values: Mapping[str, Any], most: int | None, length: int | None) -> Any:
            return BoundedAttributes(most, values, immutable=True, max_value_len=length)

        state = trace_state(span.trace_state)
        context = SpanContext(
            span.trace_id, span.span_id, False, TraceFlags(_SAMPLED if span.sampled else 0), state
        )
        parent = span.parent
        if parent is not None:
            parent_context: SpanContext | None = SpanContext(
                parent.trace_id, parent.span_id, True, TraceFlags(parent.flags), state
            )
        else:
            parent_context = None
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
            context=context,
            parent=parent_context,
            resource=self.provider.resource,
            attributes=bounded(
                span.attributes, limits.max_span_attributes, limits.max_span_attribute_length
            ),
            events=events,
            kind=SpanKind[span.kind],
            status=Status(StatusCode[span.status], span.description),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=scope,
        )


def trace_state(header: str | None) -> Any:
    """The API's TraceState of a tracestate header, parsed as its W3C propagator parses it."""
    from opentelemetry.trace import TraceState

    return TraceState.from_header([header]) if header else TraceState()


@functools.cache
def _limits_and_scope() -> tuple[Any, Any]:
    """The OTEL_*_LIMIT variables as the SDK reads them, and the layer's scope: read once."""
    from opentelemetry.sdk.trace import SpanLimits
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    return SpanLimits(), InstrumentationScope(_INSTRUMENTATION_NAME)


def queue_size(env: Mapping[str, str] = os.environ) -> int:
    return int(config.number(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, integer=True))
