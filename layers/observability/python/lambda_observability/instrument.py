"""The layer's single entry point: ``@observe`` wraps a Lambda handler with logs, a span,
metrics and a bounded flush."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Mapping
from contextvars import Token
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

from . import config, environment, export, http_event, lazy, propagation, tracing
from .config import Settings
from .export.failures import reporter
from .export.spans import SpanBackend
from .logs import logger
from .metrics import COLD_STARTS, REQUEST_DURATION, SPANS_DROPPED
from .tracing import LightSpan, Parent, Tracing, build_resource, queue_size

if TYPE_CHECKING:
    from .otel_api import Bridge

LambdaHandler = Callable[[Any, Any], Any]

_UNSET_ROUTE = "unmatched"
_NO_HEADERS: Mapping[str, str] = {}


class Instrumentation:
    """Per-environment state: made once, at cold start, by the first ``observe``."""

    def __init__(self, settings: Settings, service_version: str | None) -> None:
        self.settings = settings
        # The resource is built with the SDK, after the first response (tracing.py).
        self.tracing = Tracing(
            functools.partial(build_resource, settings.service_name, service_version),
            queue_size(),
            on_drop=SPANS_DROPPED.inc,
        )
        self.exporter = export.exporter_for(settings, self.tracing, reporter)
        self.spans = next(b for b in self.exporter.backends if isinstance(b, SpanBackend))
        self.flush: export.Flush = export.start(settings, self.exporter)
        # Read at cold start, as opentelemetry.propagate reads OTEL_PROPAGATORS on import.
        self.propagators = propagation.configured()
        self._w3c = "tracecontext" in self.propagators
        # The OpenTelemetry API is joined when anything imports it (otel_api.py); plugin
        # propagators are the API's, so with one configured it is imported now.
        self.bridge: Bridge | None = None
        lazy.when_imported("opentelemetry.trace", self._join_api)
        if propagation.needs_api(self.propagators):
            import opentelemetry.trace  # noqa: F401
        # Every value the layer could not use, once, after the logger exists.
        for item in config.take_problems():
            logger.warning("configuration value ignored", extra=item.as_log())
        # One truth for the log line, the span and the counter (see environment.py):
        # Powertools' Logger reads this flag, and clears it after the first call as we do.
        # (Imported here, after logs.py has deferred what Powertools does not need.)
        from aws_lambda_powertools.logging import logger as powertools_logger

        self._cold = environment.first_call_is_cold()
        powertools_logger.is_cold_start = self._cold

    def invoke(
        self,
        handler: Callable[[Any, Any], Any],
        event: Any,
        context: Any,
        routes: Collection[str] = (),
    ) -> Any:
        cold, self._cold = self._cold, False
        if cold:
            COLD_STARTS.inc()
        self.flush.policy.started()
        # The one reading of the event: the handler gets it from http_event.current.
        request = http_event.parse(event, routes)
        started = time.perf_counter()
        status: int | None = None
        response: Any = None
        span: LightSpan | None = None
        token: Token[LightSpan | None] | None = None
        remembered: http_event.Remembered | None = None
        try:
            headers = request.headers if request is not None else _NO_HEADERS
            bridge = self.bridge
            parent, api_context = (
                bridge.extract(headers) if bridge else (self._parent(headers), None)
            )
            span = self.tracing.start_span(
                _span_name(request, context),
                parent,
                kind="SERVER",
                attributes=_span_attributes(request, context, cold),
            )
            token = tracing.enter(span)
            if bridge is not None:
                bridge.enter(span, api_context)
            remembered = http_event.remember(event, request)
            if request is not None:
                logger.append_keys(
                    correlation_id=request.request_id,
                    http_method=request.method,
                    path=request.path,
                    source_ip=request.source_ip,
                    user_agent=request.user_agent,
                )
            try:
                response = handler(event, context)
            except Exception as error:
                status = 500
                span.record_exception(error)
                span.set_status("ERROR", type(error).__name__)
                logger.exception("handler raised")
                raise
            finally:
                duration = time.perf_counter() - started
                if status is None:
                    status = http_event.status_code(response)
                self._record(span, request, status, duration)
            return response
        finally:
            # Each step runs even if the one before raised (a span processor's on_end, say):
            # the extension must hear that the handler ended, or the invocation runs to its
            # deadline.
            try:
                try:
                    if self.bridge is not None:
                        self.bridge.leave()
                finally:
                    if token is not None:
                        tracing.leave(token)
                if span is not None:
                    span.end()
            finally:
                try:
                    if remembered is not None:
                        http_event.forget(remembered)
                finally:
                    self.flush.after_invocation(
                        str(getattr(context, "aws_request_id", "")), _remaining_seconds(context)
                    )

    def _parent(self, headers: Mapping[str, str]) -> Parent | None:
        return propagation.w3c_parent(headers) if self._w3c else None

    def _join_api(self, module: ModuleType) -> None:
        """The API is imported (``lazy.when_imported``): join it, and if an invocation is in
        progress in this thread (its handler imported the API), its span joins now."""
        from .otel_api import Bridge

        bridge = Bridge(self.tracing)
        self.bridge = bridge
        span = tracing.current_span()
        if span is not None:
            request = http_event.in_progress()
            _, api_context = bridge.extract(request.headers if request else _NO_HEADERS)
            bridge.enter(span, api_context)

    def _record(
        self,
        span: LightSpan,
        request: http_event.HttpRequest | None,
        status: int | None,
        duration: float,
    ) -> None:
        if request is None:
            logger.info("invocation completed", extra={"duration_ms": round(duration * 1000, 3)})
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status("ERROR")
        REQUEST_DURATION.labels(
            method=http_event.normalized_method(request.method),
            route=request.route or _UNSET_ROUTE,
            status_code=str(status or 0),
        ).observe(duration)
        # A successful answer is in the span and the histogram already (and in API Gateway's
        # access log); a line of its own cost more than both (bench/results/percall.md).
        # Refused and failed requests keep theirs: that is where someone will look.
        if status is None or status >= 400:
            logger.info(
                "request completed",
                extra={"status_code": status, "duration_ms": round(duration * 1000, 3)},
            )


def _span_name(request: http_event.HttpRequest | None, context: Any) -> str:
    if request is None:
        return str(getattr(context, "function_name", "invocation"))
    method = http_event.normalized_method(request.method)
    return f"{method} {request.route}" if request.route else method


def _span_attributes(
    request: http_event.HttpRequest | None, context: Any, cold: bool
) -> dict[str, Any]:
    arn = str(getattr(context, "invoked_function_arn", "") or "")
    attributes: dict[str, Any] = {
        "faas.invocation_id": str(getattr(context, "aws_request_id", "") or ""),
        "faas.trigger": "http" if request is not None else "other",
        "faas.coldstart": cold,
        "cloud.resource_id": arn,
    }
    parts = arn.split(":")
    if len(parts) > 4 and parts[4]:
        attributes["cloud.account.id"] = parts[4]
    if request is not None:
        # Path only, never the query string: tokens travel there.
        method = http_event.normalized_method(request.method)
        attributes["http.request.method"] = method
        if method != request.method:
            attributes["http.request.method_original"] = request.method
        attributes["url.path"] = request.path
        if request.route:
            attributes["http.route"] = request.route
        if request.source_ip:
            attributes["client.address"] = request.source_ip
        if request.user_agent:
            attributes["user_agent.original"] = request.user_agent
    return attributes


def _remaining_seconds(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            return max(float(remaining()) / 1000.0, 0.0)
        except (TypeError, ValueError):
            pass
    return 3.0  # Lambda's default timeout, for callers without a real context


_instrumentation: Instrumentation | None = None


def instrumentation(service_version: str | None = None) -> Instrumentation:
    global _instrumentation
    if _instrumentation is None:
        _instrumentation = Instrumentation(Settings.from_env(), service_version)
    return _instrumentation


@overload
def observe(
    handler: LambdaHandler,
    *,
    service_version: str | None = None,
    routes: Collection[str] = (),
) -> LambdaHandler: ...


@overload
def observe(
    handler: None = None,
    *,
    service_version: str | None = None,
    routes: Collection[str] = (),
) -> Callable[[LambdaHandler], LambdaHandler]: ...


def observe(
    handler: LambdaHandler | None = None,
    *,
    service_version: str | None = None,
    routes: Collection[str] = (),
) -> LambdaHandler | Callable[[LambdaHandler], LambdaHandler]:
    """Decorate a Lambda handler: ``@observe`` or ``@observe(service_version="1.2.0")``.

    ``routes``: the function's paths, e.g. ``("/healthz",)``. Events that carry no route of
    their own (function URLs, ALB, HTTP API ``$default``) get the one their path matches, so
    that spans and metrics name a bounded route, and the handler can route on it.
    """
    known = frozenset(routes)

    def decorate(func: LambdaHandler) -> LambdaHandler:
        state = instrumentation(service_version)

        @functools.wraps(func)
        def wrapper(event: Any, context: Any) -> Any:
            return state.invoke(func, event, context, known)

        # Powertools adds cold_start and function_* to every line; the correlation id (the
        # API's request id) comes from the layer's own reading of the event, not a JMESPath
        # query over it.
        injected: LambdaHandler = logger.inject_lambda_context(wrapper, clear_state=True)
        return injected

    return decorate(handler) if handler is not None else decorate
