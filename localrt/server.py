"""The HTTP front: API Gateway's routing and error answers in front of the pool.

Only the template's routes exist (method included), as in API Gateway: anything else is
answered by the gateway itself (REST: 403 Missing Authentication Token), never by the
function.  GET /__localrt/stats exposes timings for benchmarks and soak tests.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from samcli.local.apigw.local_apigw_service import CatchAllPathConverter
from samcli.local.apigw.path_converter import PathConverter
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from localrt.environment import require_loopback
from localrt.events import (
    RAW_HEADERS_KEY,
    LambdaResponseParseException,
    build_event,
    gateway_error,
    to_http_response,
)
from localrt.pool import Pool, PoolClosedError
from localrt.template import ALL_METHODS, API_EVENT, FunctionSpec, RouteSpec

LOG = logging.getLogger("localrt")

STATS_PATH = "/__localrt/stats"
INTERNAL_ERROR = "Internal server error"


class RequestHandler(WSGIRequestHandler):
    # HTTP/1.1 keep-alive like API Gateway (and like sam's front).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # see runtime_api: avoids 40 ms Nagle/delayed-ACK stalls

    def make_environ(self) -> Any:
        environ = super().make_environ()
        environ[RAW_HEADERS_KEY] = list(self.headers.items())  # WSGI folds duplicates; keep them
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        LOG.debug("%s %s -> %s", self.command, self.path, code)


def create_app(spec: FunctionSpec, pool: Pool, port_ref: list[int]) -> Flask:
    """port_ref[0] is the bound port (X-Forwarded-Port), known only after binding port 0."""
    app = Flask("localrt")
    app.url_map.converters["path"] = CatchAllPathConverter  # {proxy+} spans slashes, as in sam
    app.url_map.strict_slashes = False
    routes: dict[tuple[str, str], RouteSpec] = {}

    def handle(**_path_params: str) -> Response:
        route = routes.get((request.endpoint or "", request.method))
        if route is None:  # e.g. HEAD, which Flask adds to GET rules by itself
            return not_found()
        try:
            event = build_event(request, route, port_ref[0], spec.binary_media_types)
        except UnicodeDecodeError:
            LOG.error("request body is not UTF-8 and not a binary media type")
            return gateway_error(502, INTERNAL_ERROR)
        try:
            inv = pool.invoke(json.dumps(event).encode(), request.headers.get("X-Amzn-Trace-Id"))
        except PoolClosedError:
            return gateway_error(502, INTERNAL_ERROR)
        if inv.outcome != "response":
            LOG.error(
                "request %s failed: %s %s",
                inv.request_id,
                inv.outcome,
                inv.body.decode(errors="replace")[:2000],
            )
            return gateway_error(502, INTERNAL_ERROR)
        try:
            return to_http_response(inv.body, route, spec.binary_media_types, request)
        except LambdaResponseParseException as exc:
            LOG.error("Invalid lambda response received: %s", exc)
            return gateway_error(502, INTERNAL_ERROR)

    only_http_api = bool(spec.routes) and all(r.event_type != API_EVENT for r in spec.routes)

    def not_found(*_args: Any) -> Response:
        if only_http_api:
            return gateway_error(404, "Not Found")
        return gateway_error(403, "Missing Authentication Token")

    @app.get(STATS_PATH)
    def stats() -> Response:
        return jsonify(pool.stats())

    @app.delete(STATS_PATH)
    def reset_stats() -> Response:
        pool.reset_stats()
        return jsonify({"reset": True})

    default_route: RouteSpec | None = None
    for route in spec.routes:
        if route.path == "$default":
            default_route = route
            continue
        flask_path = PathConverter.convert_path_to_flask(route.path)
        for method in route.methods:
            if route.methods == ALL_METHODS:  # ANY: an explicit method on the path wins
                routes.setdefault((flask_path, method), route)
            else:
                routes[(flask_path, method)] = route
        app.add_url_rule(
            flask_path,
            endpoint=flask_path,
            view_func=handle,
            methods=route.methods,
            provide_automatic_options=False,
        )
    if default_route is not None:  # HttpApi $default: everything no explicit route took
        for flask_path in ("/", "/<path:any_path>"):
            for method in ALL_METHODS:
                routes.setdefault((flask_path, method), default_route)
            app.add_url_rule(
                flask_path,
                endpoint=flask_path,
                view_func=handle,
                methods=ALL_METHODS,
                provide_automatic_options=False,
            )
    app.register_error_handler(404, not_found)
    app.register_error_handler(405, not_found)
    return app


def serve(spec: FunctionSpec, pool: Pool, host: str, port: int) -> BaseWSGIServer:
    """Bind and return the server (caller runs serve_forever and shutdown)."""
    require_loopback(host)  # again: serve() may be called without the CLI
    port_ref = [port]
    app = create_app(spec, pool, port_ref)
    server = make_server(host, port, app, threaded=True, request_handler=RequestHandler)
    port_ref[0] = server.server_port
    return server
