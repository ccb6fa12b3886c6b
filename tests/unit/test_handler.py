"""The health function answers every event in the events/ folder as specified."""

from __future__ import annotations

import json
from typing import Any

import pytest

import app
import health
from lambda_observability import metrics
from tests.conftest import load_event
from tests.unit.conftest import FakeLambdaContext, invoke


def _headers(response: dict[str, Any]) -> dict[str, str]:
    # REST answers carry multiValueHeaders, HTTP API answers plain headers.
    if "multiValueHeaders" in response:
        return {k: ", ".join(v) for k, v in response["multiValueHeaders"].items()}
    return dict(response.get("headers") or {})


def _calls() -> float:
    return metrics.value("healthz_calls_total") or 0.0


@pytest.mark.parametrize("event_file", ["rest-get.json", "http-api-get.json"])
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
