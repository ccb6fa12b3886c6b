"""Where the layer meets the OpenTelemetry API: imported only once something else imports it.

The layer records the invocation's span without the API (tracing.py says why). When user
code, an instrumentation, or the SDK after the first response imports ``opentelemetry.trace``,
``Instrumentation`` makes a ``Bridge`` (``lazy.when_imported``), which from then on:

- makes the layer's ``LazyTracerProvider`` the global one, unless one is set already, so that
  ``trace.get_tracer(...)`` records into the layer's queue (the SDK loads at a tracer's first
  span);
- reads the caller's context with the API's propagators (``OTEL_PROPAGATORS``, or the global
  one an instrumentation set), baggage included;
- makes the invocation's span the API's current span while the handler runs (``ApiSpan``), so
  that user spans are its children and log lines take the ids of the innermost span.

If the API arrives in the middle of an invocation (a handler importing it on its first call),
that invocation's span joins at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter

from . import tracing
from .propagation import Propagation
from .tracing import LightSpan, Parent, Tracing

_TOKEN: ContextVar[object | None] = ContextVar("lambda_observability_api_token", default=None)


class LowerCaseHeaderGetter(Getter[Mapping[str, str]]):
    """Reads propagation headers whatever case a propagator asks for them in.

    ``headers`` are stored lower-cased (http_event.py); W3C asks for ``traceparent``, X-Ray
    for ``X-Amzn-Trace-Id``.
    """

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key.lower())
        return [value] if value is not None else None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


HEADER_GETTER = LowerCaseHeaderGetter()


class Bridge:
    """The layer joined to the API: one per environment, made when the API is first imported."""

    def __init__(self, spans: Tracing, propagation: Propagation | None = None) -> None:
        self.propagation = propagation if propagation is not None else Propagation()
        self.is_global = spans.install_global and _install_global(LazyTracerProvider(spans))
        tracing.api_ids = _current_ids

    def extract(self, headers: Mapping[str, str]) -> tuple[Parent | None, Context | None]:
        """The caller's span and the context (baggage) the handler should run in."""
        try:
            context = self.propagation.propagator().extract(headers, getter=HEADER_GETTER)
        except Exception:
            # A header no propagator can read (e.g. an unencodable baggage value): start a new
            # trace rather than fail the request.
            return None, None
        found = trace.get_current_span(context).get_span_context()
        if not found.is_valid:
            return None, context
        state = found.trace_state.to_header() if found.trace_state else ""
        return Parent(found.trace_id, found.span_id, int(found.trace_flags), state or None), context

    def enter(self, span: LightSpan, context: Context | None) -> None:
        """Make ``span`` the API's current span in this thread, until ``leave``."""
        token = otel_context.attach(trace.set_span_in_context(ApiSpan(span), context))
        _TOKEN.set(token)

    def leave(self) -> None:
        token = _TOKEN.get()
        if token is not None:
            _TOKEN.set(None)
            otel_context.detach(token)  # type: ignore[arg-type]


def _current_ids() -> tuple[int, int] | None:
    found = trace.get_current_span().get_span_context()
    return (found.trace_id, found.span_id) if found.is_valid else None


class ApiSpan(trace.Span):
    """The invocation's ``LightSpan`` behind the API's ``Span`` interface."""

    def __init__(self, span: LightSpan) -> None:
        self.light = span
        self._context: trace.SpanContext | None = None

    def get_span_context(self) -> trace.SpanContext:
        if self._context is None:
            span = self.light
            self._context = trace.SpanContext(
                span.trace_id,
                span.span_id,
                is_remote=False,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if span.sampled else 0),
                trace_state=tracing.trace_state(span.trace_state),
            )
        return self._context

    def is_recording(self) -> bool:
        return self.light.is_recording()

    def set_attribute(self, key: str, value: Any) -> None:
        self.light.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.light.set_attributes(attributes)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        self.light.add_event(name, attributes, timestamp)

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        return None  # the invocation's span has no links

    def update_name(self, name: str) -> None:
        self.light.update_name(name)

    def set_status(
        self, status: trace.Status | trace.StatusCode, description: str | None = None
    ) -> None:
        if isinstance(status, trace.StatusCode):
            self.light.set_status(status.name, description)
        else:
            self.light.set_status(status.status_code.name, status.description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.light.record_exception(exception, attributes, timestamp, escaped)

    def end(self, end_time: int | None = None) -> None:
        self.light.end(end_time)


class LazyTracerProvider(trace.TracerProvider):
    """The global provider until a tracer of it makes a span: then the SDK's (``Tracing``)."""

    def __init__(self, spans: Tracing) -> None:
        self._tracing = spans

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
    def __init__(self, spans: Tracing, arguments: tuple[Any, ...]) -> None:
        self._tracing = spans
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
