"""HTTP request -> API Gateway proxy event, and proxy response -> HTTP, with SAM CLI's code.

`sam local start-api` builds events in samcli.local.apigw.event_constructor and parses
results with LocalApigwService's static parsers; calling the same functions keeps
localrt's events identical to sam's.  Only sam's known local gaps are patched (values
frozen at import time, lost duplicate headers) - each patch says why.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import Any

from flask import Request, Response, jsonify, make_response
from samcli.local.apigw.event_constructor import construct_v1_event, construct_v2_event_http
from samcli.local.apigw.exceptions import LambdaResponseParseException
from samcli.local.apigw.local_apigw_service import LocalApigwService
from samcli.local.apigw.path_converter import PathConverter
from samcli.local.apigw.route import Route

from localrt.template import HTTP_API_EVENT, RouteSpec

RAW_HEADERS_KEY = "localrt.raw_headers"  # set by the front's request handler (duplicates kept)

__all__ = [
    "LambdaResponseParseException",
    "build_event",
    "gateway_error",
    "is_v2",
    "to_http_response",
]


def is_v2(route: RouteSpec) -> bool:
    # HttpApi defaults to payload 2.0; PayloadFormatVersion "1.0" gives the REST-like payload.
    return route.event_type == HTTP_API_EVENT and route.payload_format_version in (None, "2.0")


def build_event(
    request: Request, route: RouteSpec, port: int, binary_types: list[str]
) -> dict[str, Any]:
    """The event API Gateway would send for this request. Raises UnicodeDecodeError like sam."""
    now = datetime.datetime.now(datetime.UTC)
    request_time = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
    user_agent = request.headers.get("User-Agent", "")
    if is_v2(route):
        endpoint = PathConverter.convert_path_to_api_gateway(request.endpoint or "")
        route_key = "$default" if route.path == "$default" else f"{request.method} {endpoint}"
        event: dict[str, Any] = construct_v2_event_http(
            flask_request=request,
            port=port,
            binary_types=binary_types,
            stage_name=route.stage_name,
            route_key=route_key,
            # sam's defaults for these are computed once at import time: pass real ones.
            request_time_epoch=int(now.timestamp() * 1000),
            request_time=request_time,
        )
        ctx = event["requestContext"]
        ctx["http"]["userAgent"] = user_agent
    else:
        event = construct_v1_event(
            flask_request=request,
            port=port,
            binary_types=binary_types,
            stage_name=route.stage_name,
            api_type=Route.HTTP if route.event_type == HTTP_API_EVENT else Route.API,
        )
        ctx = event["requestContext"]
        ctx["requestTimeEpoch"] = int(now.timestamp() * 1000)
        ctx["requestTime"] = request_time
        ctx["identity"]["userAgent"] = user_agent
        _restore_duplicate_headers(event, request.environ.get(RAW_HEADERS_KEY))
    # sam's requestId default is one uuid per process; API Gateway gives one per request.
    ctx["requestId"] = str(uuid.uuid4())
    if route.event_type != HTTP_API_EVENT:
        ctx["extendedRequestId"] = ctx["requestId"]
    return event


def _restore_duplicate_headers(
    event: dict[str, Any], raw: Iterable[tuple[str, str]] | None
) -> None:
    """WSGI folds repeated headers into one value; REST's multiValueHeaders keeps each one."""
    multi = event.get("multiValueHeaders")
    if not raw or not multi:
        return
    by_name: dict[str, list[str]] = {}
    for name, value in raw:
        by_name.setdefault(name.lower(), []).append(value)
    for key in multi:
        values = by_name.get(key.lower())
        if values and len(values) > 1:
            multi[key] = values
            event["headers"][key] = values[-1]  # API Gateway's single-value view keeps the last one


def to_http_response(
    output: bytes, route: RouteSpec, binary_types: list[str], request: Request
) -> Response:
    """Parse the function's proxy result; raises LambdaResponseParseException when malformed."""
    text = output.decode("utf-8", errors="replace")
    if is_v2(route):
        status, headers, body = LocalApigwService._parse_v2_payload_format_lambda_output(
            text, binary_types, request
        )
    else:
        event_type = Route.HTTP if route.event_type == HTTP_API_EVENT else Route.API
        status, headers, body = LocalApigwService._parse_v1_payload_format_lambda_output(
            text, binary_types, request, event_type
        )
    response: Response = LocalApigwService.service_response(body, headers, status)
    return response


def gateway_error(status: int, message: str) -> Response:
    """API Gateway's own error bodies: {"message": ...}."""
    return make_response(jsonify({"message": message}), status)
