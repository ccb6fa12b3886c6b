"""What the observability layer reads from an API Gateway proxy event (REST 1.0 or HTTP 2.0).

Every accessor tolerates missing or mistyped fields: events come from outside, and a malformed
one must still be logged and traced, never crash the instrumentation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.propagators.textmap import Getter

REST = "rest"
HTTP = "http"
# Semantic conventions: any other method is reported as _OTHER, which also keeps the metric's
# method label from growing without bound on hostile input.
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD = "_OTHER"


def api_gateway_kind(event: object) -> str | None:
    """``"rest"`` for payload 1.0, ``"http"`` for payload 2.0, None for anything else."""
    if not isinstance(event, Mapping) or not isinstance(event.get("requestContext"), Mapping):
        return None
    if event.get("version") == "2.0" and isinstance(event["requestContext"].get("http"), Mapping):
        return HTTP
    if isinstance(event.get("httpMethod"), str):
        return REST
    return None


@dataclass(frozen=True)
class HttpRequest:
    kind: str
    method: str
    path: str
    route: str | None
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    headers: dict[str, str]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    # Lower-case names: HTTP header names are case-insensitive, propagators look up exact keys.
    raw = event.get("headers")
    if not isinstance(raw, Mapping):
        return {}
    return {k.lower(): v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def parse(event: object) -> HttpRequest | None:
    kind = api_gateway_kind(event)
    if kind is None:
        return None
    assert isinstance(event, Mapping)
    context: Mapping[str, Any] = event["requestContext"]
    headers = _headers(event)
    if kind == HTTP:
        http: Mapping[str, Any] = context["http"]
        route_key = _text(event.get("routeKey")) or ""
        # routeKey is "GET /healthz" (or "$default"); the route is its path part.
        route = route_key.split(" ", 1)[1] if " " in route_key else None
        return HttpRequest(
            kind=kind,
            method=_text(http.get("method")) or "UNKNOWN",
            path=_text(http.get("path")) or _text(event.get("rawPath")) or "/",
            route=route,
            source_ip=_text(http.get("sourceIp")),
            user_agent=_text(http.get("userAgent")) or headers.get("user-agent"),
            request_id=_text(context.get("requestId")),
            headers=headers,
        )
    identity = context.get("identity")
    identity = identity if isinstance(identity, Mapping) else {}
    return HttpRequest(
        kind=kind,
        method=_text(event.get("httpMethod")) or "UNKNOWN",
        path=_text(event.get("path")) or "/",
        route=_text(event.get("resource")),
        source_ip=_text(identity.get("sourceIp")),
        user_agent=_text(identity.get("userAgent")) or headers.get("user-agent"),
        request_id=_text(context.get("requestId")),
        headers=headers,
    )


def normalized_method(method: str) -> str:
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else OTHER_METHOD


def status_code(response: object) -> int | None:
    if isinstance(response, Mapping):
        code = response.get("statusCode")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None


class LowerCaseHeaderGetter(Getter[Mapping[str, str]]):
    """Reads propagation headers whatever case a propagator asks for them in.

    ``headers`` are stored lower-cased; W3C asks for ``traceparent``, X-Ray for
    ``X-Amzn-Trace-Id``.
    """

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key.lower())
        return [value] if value is not None else None

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


HEADER_GETTER = LowerCaseHeaderGetter()
