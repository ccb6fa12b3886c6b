"""The health endpoint: GET and HEAD /healthz over HTTP (API Gateway REST 1.0 or HTTP API 2.0,
a Lambda function URL, or an ALB target group).

The Lambda port of the seed's monitored app: every health check increments
``healthz_calls_total`` and answers ``application/health+json``
(draft-inadarei-api-health-check). Logs, traces and the Pushgateway push come from the
observability layer's ``@observe``, which also reads the event, once: routing here uses that
reading (``http_event.current``) instead of a web framework, whose imports would cost more
cold start than the whole layer (see the README's benchmarks).
"""

from __future__ import annotations

import json
from typing import Any

import health
from health import HEALTH_CONTENT_TYPE, VERSION
from lambda_observability import http_event, logger, metrics, observe

__version__ = VERSION

ERROR_CONTENT_TYPE = "application/json"
# Path -> allowed methods; the source of 405 answers and their Allow header.
ROUTES = {"/healthz": ("GET", "HEAD"), "/readyz": ("GET", "HEAD")}

CALLS = metrics.counter("healthz_calls_total", "Total number of calls to the healthz endpoint.")


def error_response(
    request: http_event.HttpRequest | None,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = json.dumps({"statusCode": status, "message": message})
    return http_event.response(
        request, status, body, {"Content-Type": ERROR_CONTENT_TYPE, **(headers or {})}
    )


def healthz(request: http_event.HttpRequest) -> dict[str, Any]:
    CALLS.inc()
    logger.info(
        "Monitoring endpoint invoked! Counter was incremented!",
        extra={"healthz_calls_total": metrics.total(CALLS)},
    )
    # HEAD: same status and headers, no body.
    body = (
        ""
        if request.method.upper() == "HEAD"
        else json.dumps(health.health_document(logger.service))
    )
    return http_event.response(request, 200, body, {"Content-Type": HEALTH_CONTENT_TYPE})


def readyz(request: http_event.HttpRequest) -> dict[str, Any]:
    """Is telemetry getting out? Read from what the layer recorded: no backend is contacted,
    the answer is 200 even when a check warns, and healthz_calls_total is not counted."""
    from lambda_observability import readiness  # only readiness probes pay for it

    body = "" if request.method.upper() == "HEAD" else json.dumps(readiness.document())
    headers = {"Content-Type": readiness.CONTENT_TYPE, "Cache-Control": "no-store"}
    return http_event.response(request, 200, body, headers)


def route(request: http_event.HttpRequest) -> dict[str, Any]:
    allowed = ROUTES.get(request.matched_route or "")
    if allowed is None:
        return error_response(request, 404, "Not found")
    if request.method.upper() not in allowed:
        return error_response(
            request, 405, "Method not allowed", headers={"Allow": ", ".join(allowed)}
        )
    return readyz(request) if request.matched_route == "/readyz" else healthz(request)


@observe(service_version=__version__, routes=ROUTES)
def handler(event: Any, context: Any) -> dict[str, Any]:
    request = http_event.current(event, ROUTES)
    if request is None:
        logger.warning("not an HTTP event", extra={"event_type": type(event).__name__})
        return error_response(
            None,
            400,
            "Bad request: expected an API Gateway proxy event (REST payload 1.0 or HTTP API "
            "2.0), a Lambda function URL or an ALB target group request",
        )
    try:
        return route(request)
    except Exception:
        # The stack trace goes to the log, never to the client.
        logger.exception("unhandled error")
        return error_response(request, 500, "Internal server error")
