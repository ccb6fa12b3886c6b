"""What localrt/events.py takes from SAM CLI, private methods included: an upgrade of aws-sam-cli
that renames, moves or reshapes any of it fails here, by name, not as a 502 in some other test."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from samcli.local.apigw import event_constructor
from samcli.local.apigw.exceptions import LambdaResponseParseException
from samcli.local.apigw.local_apigw_service import LocalApigwService
from samcli.local.apigw.path_converter import PathConverter
from samcli.local.apigw.route import Route

from localrt import events
from localrt.template import API_EVENT, HTTP_API_EVENT, RouteSpec

# name -> the parameters localrt passes (by position or by keyword), in sam's order
STATIC_METHODS: dict[str, tuple[str, ...]] = {
    "_parse_v1_payload_format_lambda_output": (
        "lambda_output",
        "binary_types",
        "flask_request",
        "event_type",
    ),
    "_parse_v2_payload_format_lambda_output": ("lambda_output", "binary_types", "flask_request"),
    "service_response": ("body", "headers", "status_code"),
}
CONSTRUCTORS: dict[Callable[..., Any], set[str]] = {
    event_constructor.construct_v1_event: {
        "flask_request",
        "port",
        "binary_types",
        "stage_name",
        "api_type",
    },
    event_constructor.construct_v2_event_http: {
        "flask_request",
        "port",
        "binary_types",
        "stage_name",
        "route_key",
        "request_time_epoch",
        "request_time",
    },
}

REST = RouteSpec(path="/items/{id}", methods=["GET"], event_type=API_EVENT)
HTTP_V2 = RouteSpec(path="/items/{id}", methods=["GET"], event_type=HTTP_API_EVENT)


@pytest.mark.parametrize("name", sorted(STATIC_METHODS))
def test_the_static_methods_localrt_calls_exist(name: str) -> None:
    # getattr_static: a plain function here would need an instance, which localrt never makes
    method = inspect.getattr_static(LocalApigwService, name)
    assert isinstance(method, staticmethod), f"LocalApigwService.{name} is not static any more"
    assert tuple(inspect.signature(method).parameters) == STATIC_METHODS[name]


@pytest.mark.parametrize("constructor", list(CONSTRUCTORS), ids=lambda f: f.__name__)
def test_the_event_constructors_take_localrts_keywords(constructor: Callable[..., Any]) -> None:
    assert CONSTRUCTORS[constructor] <= set(inspect.signature(constructor).parameters)


def test_the_names_localrt_imports() -> None:
    assert (Route.API, Route.HTTP) == (API_EVENT, HTTP_API_EVENT)
    assert PathConverter.convert_path_to_api_gateway("/items/<id>") == "/items/{id}"
    assert issubclass(LambdaResponseParseException, Exception)


@pytest.mark.parametrize("route", [REST, HTTP_V2], ids=["rest", "http-v2"])
def test_events_and_responses_through_sams_code(route: RouteSpec) -> None:
    app = Flask(__name__)
    app.add_url_rule("/items/<id>", "/items/<id>", lambda id: "")
    with app.test_request_context("/items/7?a=1", headers={"X-Test": "1"}) as ctx:
        event = events.build_event(ctx.request, route, 3000, [])
        result = json.dumps(
            {"statusCode": 201, "headers": {"X-Out": "yes"}, "body": "made", "cookies": []}
            if route is HTTP_V2
            else {"statusCode": 201, "headers": {"X-Out": "yes"}, "body": "made"}
        )
        response = events.to_http_response(result.encode(), route, [], ctx.request)
        with pytest.raises(LambdaResponseParseException):
            events.to_http_response(b"not json", route, [], ctx.request)
    context = event["requestContext"]
    if route is HTTP_V2:
        assert event["version"] == "2.0" and event["rawQueryString"] == "a=1"
        assert context["http"]["userAgent"] == event["headers"].get("User-Agent", "")
    else:
        assert event["path"] == "/items/7" and event["queryStringParameters"] == {"a": "1"}
        assert event["multiValueHeaders"]["X-Test"] == ["1"]
        assert {"requestTimeEpoch", "requestTime", "identity"} <= set(context)
    assert event["headers"]["X-Test"] == "1" and context["requestId"]
    assert response.status_code == 201
    assert response.headers["X-Out"] == "yes" and response.get_data() == b"made"
