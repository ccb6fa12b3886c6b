"""The health function answers every event in the events/ folder as specified."""

from __future__ import annotations

import json
from typing import Any

import pytest

import app
import health
from lambda_observability import metrics
from localrt.template import read_function
from tests.conftest import ROOT, load_event
from tests.unit.conftest import FakeLambdaContext, SpanCapture, invoke

GET_EVENTS = ["rest-get.json", "http-api-get.json", "function-url-get.json", "alb-get.json"]


def _headers(response: dict[str, Any]) -> dict[str, str]:
    # ALB answers with multi-value headers on carry multiValueHeaders, the others headers.
    if "multiValueHeaders" in response:
        return {k: ", ".join(v) for k, v in response["multiValueHeaders"].items()}
    return dict(response.get("headers") or {})


def _calls() -> float:
    return metrics.value("healthz_calls_total") or 0.0


@pytest.mark.parametrize("event_file", GET_EVENTS)
def test_get_answers_health_json(event_file: str, context: FakeLambdaContext) -> None:
    response = invoke(load_event(event_file), context)

    assert response["statusCode"] == 200
    assert _headers(response)["Content-Type"] == "application/health+json"
    body = json.loads(response["body"])
    assert body["status"] == "pass"
    assert body["version"] == app.__version__
    assert body["releaseId"] == "7"  # AWS_LAMBDA_FUNCTION_VERSION, the deployed code version
    assert body["serviceId"] == "healthz"
    (uptime,) = body["checks"]["uptime"]
    assert uptime["componentType"] == "system"
    assert uptime["observedUnit"] == "s"
    assert uptime["observedValue"] >= 0
    assert uptime["status"] == "pass"
    assert uptime["time"].endswith("Z")


def test_head_has_get_status_and_headers_without_body(context: FakeLambdaContext) -> None:
    get = invoke(load_event("rest-get.json"), context)
    head = invoke(load_event("rest-head.json"), context)

    assert head["statusCode"] == get["statusCode"] == 200
    assert _headers(head) == _headers(get)
    assert head["body"] == ""


def test_every_health_call_increments_the_counter(context: FakeLambdaContext) -> None:
    before = _calls()
    for name in ("rest-get.json", "rest-head.json", "http-api-get.json"):
        invoke(load_event(name), context)
    assert _calls() == before + 3


def test_other_method_is_405_with_allow(context: FakeLambdaContext) -> None:
    before = _calls()
    response = invoke(load_event("rest-post.json"), context)

    assert response["statusCode"] == 405
    assert _headers(response)["Allow"] == "GET, HEAD"
    assert _headers(response)["Content-Type"] == "application/json"
    assert json.loads(response["body"]) == {"statusCode": 405, "message": "Method not allowed"}
    assert _calls() == before  # not a health check


def test_http_api_other_method_is_405(context: FakeLambdaContext) -> None:
    event = load_event("http-api-get.json")
    event["requestContext"]["http"]["method"] = "DELETE"  # type: ignore[index]
    event["routeKey"] = "DELETE /healthz"
    response = invoke(event, context)
    assert response["statusCode"] == 405
    assert _headers(response)["Allow"] == "GET, HEAD"


def test_unknown_path_is_404_json(context: FakeLambdaContext) -> None:
    response = invoke(load_event("rest-unknown-path.json"), context)
    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {"statusCode": 404, "message": "Not found"}


@pytest.mark.parametrize(
    "event",
    [
        load_event("s3-put-not-api-gateway.json"),
        {},
        None,
        [],
        "GET /healthz",
        {"requestContext": "nope", "httpMethod": "GET"},
    ],
    ids=["s3", "empty", "null", "list", "string", "bad-context"],
)
def test_non_api_gateway_event_is_a_clear_json_error(
    event: Any, context: FakeLambdaContext
) -> None:
    response = invoke(event, context)
    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert body["statusCode"] == 400
    assert "API Gateway proxy event" in body["message"]


def test_malformed_api_gateway_event_is_a_json_error(context: FakeLambdaContext) -> None:
    # Looks like REST 1.0 but its path is not text: the resolver cannot route it.
    event = load_event("rest-get.json")
    event["path"] = 42
    response = invoke(event, context)
    assert 400 <= response["statusCode"] < 500
    body = json.loads(response["body"])
    assert body["statusCode"] == response["statusCode"]
    assert "Traceback" not in response["body"]


def test_handler_error_is_500_json_without_stack_trace(
    context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch, logs: Any
) -> None:
    def broken(service_id: str) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(health, "health_document", broken)
    response = invoke(load_event("rest-get.json"), context)

    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"statusCode": 500, "message": "Internal server error"}
    assert "secret internals" not in response["body"]
    # ... but the log has it, for the operator.
    assert any("secret internals" in json.dumps(line) for line in logs.lines())


@pytest.mark.parametrize("event_file", GET_EVENTS)
@pytest.mark.parametrize("method", ["HEAD", "PUT"])
def test_every_event_shape_routes_by_method(
    event_file: str, method: str, context: FakeLambdaContext
) -> None:
    event = _with_method(load_event(event_file), method)
    response = invoke(event, context)
    if method == "HEAD":
        assert response["statusCode"] == 200
        assert response["body"] == ""
        assert _headers(response)["Content-Type"] == "application/health+json"
    else:
        assert response["statusCode"] == 405
        assert _headers(response)["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("event_file", GET_EVENTS)
def test_every_event_shape_answers_404_for_other_paths(
    event_file: str, context: FakeLambdaContext
) -> None:
    event = load_event(event_file)
    if "rawPath" in event:
        event["rawPath"] = "/nope"
        event["requestContext"]["http"]["path"] = "/nope"  # type: ignore[index]
        if event["routeKey"] != "$default":
            event["routeKey"] = "GET /{proxy+}"
    else:
        event["path"] = "/nope"
        if "resource" in event:
            event["resource"] = "/{proxy+}"
    response = invoke(event, context)
    assert response["statusCode"] == 404
    assert json.loads(response["body"]) == {"statusCode": 404, "message": "Not found"}


def test_alb_answer_has_a_status_description(context: FakeLambdaContext) -> None:
    ok = invoke(load_event("alb-get.json"), context)
    assert ok["statusDescription"] == "200 OK"
    assert ok["isBase64Encoded"] is False
    event = load_event("alb-get.json")
    event["httpMethod"] = "POST"
    refused = invoke(event, context)
    assert refused["statusDescription"] == "405 Method Not Allowed"


def test_alb_with_multi_value_headers_gets_them_back(context: FakeLambdaContext) -> None:
    # A target group with multi-value headers on sends only multiValueHeaders and ignores a
    # plain headers field in the answer.
    event = load_event("alb-get.json")
    single: dict[str, str] = event.pop("headers")  # type: ignore[assignment]
    event["multiValueHeaders"] = {k: [v] for k, v in single.items()}
    response = invoke(event, context)
    assert response["statusCode"] == 200
    assert "headers" not in response
    assert response["multiValueHeaders"]["Content-Type"] == ["application/health+json"]


def test_http_api_on_a_named_stage_routes_without_the_stage(context: FakeLambdaContext) -> None:
    event = load_event("http-api-get.json")
    event["routeKey"] = "$default"
    event["rawPath"] = "/v1/healthz"
    event["requestContext"]["stage"] = "v1"  # type: ignore[index]
    event["requestContext"]["http"]["path"] = "/v1/healthz"  # type: ignore[index]
    assert invoke(event, context)["statusCode"] == 200


@pytest.mark.parametrize(
    ("event_file", "source_ip", "user_agent"),
    [
        ("function-url-get.json", "203.0.113.7", "curl/8.5.0"),
        ("alb-get.json", "198.51.100.23", "ELB-HealthChecker/2.0"),
    ],
)
def test_function_url_and_alb_spans_name_the_matched_route(
    event_file: str, source_ip: str, user_agent: str, context: FakeLambdaContext, spans: SpanCapture
) -> None:
    before = metrics.value(
        "http_server_request_duration_seconds_count",
        {"method": "GET", "route": "/healthz", "status_code": "200"},
    )
    invoke(load_event(event_file), context)
    (span,) = spans.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "GET /healthz"
    assert attributes["http.route"] == "/healthz"
    assert attributes["client.address"] == source_ip
    assert attributes["user_agent.original"] == user_agent
    after = metrics.value(
        "http_server_request_duration_seconds_count",
        {"method": "GET", "route": "/healthz", "status_code": "200"},
    )
    assert (after or 0) == (before or 0) + 1


def test_the_handler_reads_the_layers_parse_of_the_event(
    context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One reading per invocation: @observe's, handed to the handler.
    from lambda_observability import http_event

    calls: list[object] = []
    parse = http_event.parse

    def counting(event: object, routes: Any = ()) -> Any:
        calls.append(event)
        return parse(event, routes)

    monkeypatch.setattr(http_event, "parse", counting)
    assert invoke(load_event("rest-get.json"), context)["statusCode"] == 200
    assert len(calls) == 1


def _with_method(event: dict[str, Any], method: str) -> dict[str, Any]:
    if "httpMethod" in event:
        event["httpMethod"] = method
    else:
        event["requestContext"]["http"]["method"] = method
        if event["routeKey"] != "$default":
            event["routeKey"] = f"{method} /healthz"
    return event


def test_template_routes_match_the_functions_routes() -> None:
    # Every method the function serves on a path has an API Gateway route to it, and every
    # route the template sends to the function is one it answers (405 and 404 included).
    spec = read_function(ROOT / "template.yaml", "HealthzFunction")
    routed: dict[str, set[str]] = {}
    for route in spec.routes:
        routed.setdefault(route.path, set()).update(m.upper() for m in route.methods)
    for path, methods in app.ROUTES.items():
        assert set(methods) <= routed[path], (path, routed)
    assert set(routed) <= {*app.ROUTES, "/{proxy+}"}, routed
