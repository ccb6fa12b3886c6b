"""The layer's one reading of an HTTP event, and the answer's shape for the same event.

Four shapes reach a Lambda function over HTTP: API Gateway REST (payload 1.0), API Gateway
HTTP API (payload 2.0), Lambda function URLs (payload 2.0 too) and ALB target groups. ``parse``
reads what logs, spans, metrics and routing need, once per invocation (``@observe`` does it
before the handler runs; ``current`` hands the handler that same reading), and ``response``
shapes an answer the way the event's sender expects it.

Every accessor tolerates missing or mistyped fields: events come from outside, and a malformed
one must still be logged, traced and answered, never crash the instrumentation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextvars import ContextVar, Token
from typing import Any, NamedTuple

REST = "rest"
HTTP = "http"
FUNCTION_URL = "function_url"
ALB = "alb"
# Semantic conventions: any other method is reported as _OTHER, which also keeps the metric's
# method label from growing without bound on hostile input.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD = "_OTHER"
_NO_ROUTES: frozenset[str] = frozenset()


def event_kind(event: object) -> str | None:
    """``rest``, ``http``, ``function_url`` or ``alb``; None for anything else."""
    if not isinstance(event, Mapping) or not isinstance(event.get("requestContext"), Mapping):
        return None
    context = event["requestContext"]
    if event.get("version") == "2.0" and isinstance(context.get("http"), Mapping):
        domain = context.get("domainName")
        # Function URLs send payload 2.0 from <url-id>.lambda-url.<region>.on.aws.
        if isinstance(domain, str) and ".lambda-url." in domain:
            return FUNCTION_URL
        return HTTP
    if not isinstance(event.get("httpMethod"), str):
        return None
    return ALB if isinstance(context.get("elb"), Mapping) else REST


class HttpRequest(NamedTuple):
    kind: str
    method: str
    path: str
    # The route for spans and metrics: the event's own (REST resource, HTTP API route key),
    # else the declared route the path matched (function URLs, ALB, HTTP API $default).
    route: str | None
    # The declared route whose path this request's path is, whatever the event's route says:
    # what the function routes on. None if no declared route matches.
    matched_route: str | None
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    headers: dict[str, str]
    # ALB with multi-value headers on sends and expects only multiValueHeaders.
    multi_value_headers: bool = False


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value if value.isascii() else clean(value)


def clean(value: str) -> str:
    """``value`` with any lone surrogate written as its escape (``\\ud800``).

    A ``\\ud800`` JSON escape in an event decodes to a lone surrogate, which UTF-8 cannot
    encode: copied into a log line or a span attribute, it failed the whole line or the whole
    span batch. Everything this module reads from an event goes through here.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _headers(event: Mapping[str, Any]) -> tuple[dict[str, str], bool]:
    """Lower-cased headers (names are case-insensitive; propagators look up exact keys), and
    whether they came as ``multiValueHeaders`` only (repeated values joined as HTTP does)."""
    raw = event.get("headers")
    if isinstance(raw, Mapping):
        return {
            _clean_key(k): v if v.isascii() else clean(v)
            for k, v in raw.items()
            if isinstance(k, str) and isinstance(v, str)
        }, False
    multi = event.get("multiValueHeaders")
    if raw is None and isinstance(multi, Mapping):
        return {
            _clean_key(k): clean(", ".join(x for x in v if isinstance(x, str)))
            for k, v in multi.items()
            if isinstance(k, str) and isinstance(v, list)
        }, True
    return {}, False


def _clean_key(name: str) -> str:
    return name.lower() if name.isascii() else clean(name.lower())


def _match(path: str | None, routes: Collection[str], stage: object = None) -> str | None:
    if path is None or not routes:
        return None
    if path in routes:
        return path
    # HTTP API on a named stage: the path starts with /<stage>, the routes do not.
    if isinstance(stage, str) and stage != "$default" and path.startswith(f"/{stage}/"):
        stripped = path[len(stage) + 1 :]
        return stripped if stripped in routes else None
    return None


def parse(event: object, routes: Collection[str] = _NO_ROUTES) -> HttpRequest | None:
    """Read ``event`` (None if it is not an HTTP event); ``routes`` are the function's paths."""
    kind = event_kind(event)
    if kind is None:
        return None
    assert isinstance(event, Mapping)
    context: Mapping[str, Any] = event["requestContext"]
    headers, multi = _headers(event)
    if kind in (HTTP, FUNCTION_URL):
        http: Mapping[str, Any] = context["http"]
        route_key = _text(event.get("routeKey")) or ""
        # routeKey is "GET /healthz" (or "$default"); the route is its path part.
        route = route_key.split(" ", 1)[1] if " " in route_key else None
        path = _text(http.get("path")) or _text(event.get("rawPath"))
        matched = _match(path, routes, context.get("stage"))
        return HttpRequest(
            kind=kind,
            method=_text(http.get("method")) or "UNKNOWN",
            path=path or "/",
            route=route or matched,
            matched_route=matched,
            source_ip=_text(http.get("sourceIp")),
            user_agent=_text(http.get("userAgent")) or headers.get("user-agent"),
            request_id=_text(context.get("requestId")),
            headers=headers,
        )
    path = _text(event.get("path"))
    matched = _match(path, routes)
    if kind == ALB:
        # ALB has no request context beyond the target group: the client is in the headers.
        forwarded = headers.get("x-forwarded-for", "")
        return HttpRequest(
            kind=kind,
            method=_text(event.get("httpMethod")) or "UNKNOWN",
            path=path or "/",
            route=matched,
            matched_route=matched,
            source_ip=forwarded.split(",", 1)[0].strip() or None,
            user_agent=headers.get("user-agent"),
            request_id=None,
            headers=headers,
            multi_value_headers=multi,
        )
    identity = context.get("identity")
    identity = identity if isinstance(identity, Mapping) else {}
    return HttpRequest(
        kind=kind,
        method=_text(event.get("httpMethod")) or "UNKNOWN",
        path=path or "/",
        route=_text(event.get("resource")) or matched,
        matched_route=matched,
        source_ip=_text(identity.get("sourceIp")),
        user_agent=_text(identity.get("userAgent")) or headers.get("user-agent"),
        request_id=_text(context.get("requestId")),
        headers=headers,
    )


def response(
    request: HttpRequest | None, status: int, body: str, headers: Mapping[str, str]
) -> dict[str, Any]:
    """An answer in the shape the event's sender expects (API Gateway's for non-HTTP events).

    API Gateway (both payloads) and function URLs take ``headers``; ALB needs a
    ``statusDescription``, and ``multiValueHeaders`` when the target group has them on.
    """
    answer: dict[str, Any] = {"statusCode": status, "body": body, "isBase64Encoded": False}
    if request is not None and request.kind == ALB:
        from http import HTTPStatus  # ALB only: the enum's creation is init time otherwise

        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        answer["statusDescription"] = f"{status} {phrase}".strip()
        if request.multi_value_headers:
            answer["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
            return answer
    answer["headers"] = dict(headers)
    return answer


# The reading of the invocation in progress, with its event: a handler asking about another
# event (or running without @observe) gets a reading of its own.
_CURRENT: ContextVar[tuple[object, HttpRequest | None] | None] = ContextVar(
    "lambda_observability_request", default=None
)


def current(event: object, routes: Collection[str] = _NO_ROUTES) -> HttpRequest | None:
    """The request ``@observe`` read from ``event``, without reading the event again."""
    remembered = _CURRENT.get()
    if remembered is not None and remembered[0] is event:
        return remembered[1]
    return parse(event, routes)


Remembered = Token[tuple[object, HttpRequest | None] | None]


def remember(event: object, request: HttpRequest | None) -> Remembered:
    """Make ``request`` the reading of ``event`` until ``forget``."""
    return _CURRENT.set((event, request))


def forget(token: Remembered) -> None:
    _CURRENT.reset(token)


def in_progress() -> HttpRequest | None:
    """The reading of the invocation in progress in this thread, if any."""
    remembered = _CURRENT.get()
    return remembered[1] if remembered is not None else None


def normalized_method(method: str) -> str:
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else OTHER_METHOD


def status_code(response: object) -> int | None:
    if isinstance(response, Mapping):
        code = response.get("statusCode")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None
