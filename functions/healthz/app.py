"""The health endpoint: GET and HEAD /healthz behind API Gateway (REST 1.0 or HTTP API 2.0).

The Lambda port of the seed's monitored app: every health check increments
``healthz_calls_total`` and answers ``application/health+json``
(draft-inadarei-api-health-check). Logs, traces and the Pushgateway push come from the
observability layer's ``@observe``.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    Response,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

import health
from health import HEALTH_CONTENT_TYPE, VERSION
from lambda_observability import logger, metrics, observe
from lambda_observability.http_event import HTTP, REST, api_gateway_kind

__version__ = VERSION

ERROR_CONTENT_TYPE = "application/json"
# Path -> allowed methods; the source of 405 answers and their Allow header.
ROUTES = {"/healthz": ("GET", "HEAD")}

CALLS = metrics.counter("healthz_calls_total", "Total number of calls to the healthz endpoint.")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response[str]:
    body = json.dumps({"statusCode": status, "message": message})
    return Response(status, ERROR_CONTENT_TYPE, body, headers=headers)


def _build(resolver: ApiGatewayResolver) -> ApiGatewayResolver:
    @resolver.route("/healthz", method=list(ROUTES["/healthz"]))
    def healthz() -> Response[str]:
        CALLS.inc()
        logger.info(
            "Monitoring endpoint invoked! Counter was incremented!",
            extra={"healthz_calls_total": metrics.total(CALLS)},
        )
        body = json.dumps(health.health_document(logger.service))
        method = resolver.current_event.http_method.upper()
        # HEAD: same status and headers, no body.
        return Response(200, HEALTH_CONTENT_TYPE, "" if method == "HEAD" else body)

    @resolver.not_found
    def not_found(_: NotFoundError) -> Response[str]:
        allowed = ROUTES.get(resolver.current_event.path)
        if allowed:
            return error_response(405, "Method not allowed", headers={"Allow": ", ".join(allowed)})
        return error_response(404, "Not found")

    @resolver.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(error: Exception) -> Response[str]:
        # The stack trace goes to the log, never to the client.
        logger.exception("unhandled error")
        return error_response(500, "Internal server error")

    return resolver


RESOLVERS: dict[str, ApiGatewayResolver] = {
    REST: _build(APIGatewayRestResolver()),
    HTTP: _build(APIGatewayHttpResolver()),
}


def _plain_error(status: int, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": ERROR_CONTENT_TYPE},
        "body": json.dumps({"statusCode": status, "message": message}),
        "isBase64Encoded": False,
    }


@observe(service_version=__version__)
def handler(event: Any, context: Any) -> dict[str, Any]:
    kind = api_gateway_kind(event)
    if kind is None:
        logger.warning("not an API Gateway proxy event", extra={"event_type": type(event).__name__})
        return _plain_error(
            400,
            "Bad request: expected an API Gateway proxy event (REST payload 1.0 or HTTP API 2.0)",
        )
    try:
        return RESOLVERS[kind].resolve(event, context)
    except Exception:
        # A malformed event the resolver could not read at all (route handlers' own errors are
        # answered by the exception handler above).
        logger.exception("malformed API Gateway event")
        return _plain_error(400, "Bad request: malformed API Gateway event")
