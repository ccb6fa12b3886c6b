"""API Gateway events built from real HTTP requests, and proxy responses turned back into HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.localrt.harness import LocalRT, body_json, pid_alive, wait_until

pytestmark = pytest.mark.integration


def _event(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    event: dict[str, Any] = body_json(resp)["event"]
    return event


def _raw_get(rt: LocalRT, path: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    """http.client sends duplicate headers as separate lines (requests would merge them)."""
    url = urlparse(rt.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    conn.putrequest("GET", path)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status == 200, data
    event: dict[str, Any] = json.loads(data)["event"]
    return event


def test_rest_event_from_real_request(echo_rt: LocalRT) -> None:
    event = _raw_get(
        echo_rt,
        "/rest/alice?tag=a&tag=b&single=1",
        [("X-Dup", "one"), ("X-Dup", "two"), ("User-Agent", "lrt-test")],
    )
    assert event["httpMethod"] == "GET"
    assert event["resource"] == "/rest/{name}"
    assert event["path"] == "/rest/alice"
    assert event["pathParameters"] == {"name": "alice"}
    assert event["queryStringParameters"] == {"tag": "b", "single": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "single": ["1"]}
    assert event["multiValueHeaders"]["X-Dup"] == ["one", "two"]
    assert event["headers"]["X-Dup"] == "two"
    assert event["headers"]["X-Forwarded-Port"] == str(urlparse(echo_rt.url).port)
    assert event["isBase64Encoded"] is False
    assert "version" not in event  # REST payload has no version field
    ctx = event["requestContext"]
    assert ctx["stage"] == "Prod"
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "lrt-test"
    assert ctx["resourcePath"] == "/rest/{name}"
    assert abs(ctx["requestTimeEpoch"] / 1000 - time.time()) < 30


def test_request_ids_are_fresh_per_request(echo_rt: LocalRT) -> None:
    first = body_json(echo_rt.get("/rest/a"))
    second = body_json(echo_rt.get("/rest/a"))
    assert (
        first["event"]["requestContext"]["requestId"]
        != second["event"]["requestContext"]["requestId"]
    )
    assert first["request_id"] != second["request_id"]  # Lambda request ids too


def test_proxy_path_and_any_method(echo_rt: LocalRT) -> None:
    event = _event(echo_rt.get("/proxy/a/b/c"))
    assert event["resource"] == "/proxy/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b/c"}
    deleted = _event(echo_rt.request("DELETE", "/rest/bob"))  # Method: any
    assert deleted["httpMethod"] == "DELETE"


def test_binary_request_body_is_base64(echo_rt: LocalRT) -> None:
    payload = bytes(range(256))
    resp = echo_rt.request(
        "POST", "/upload", data=payload, headers={"Content-Type": "application/octet-stream"}
    )
    event = _event(resp)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    text = _event(
        echo_rt.request("POST", "/upload", data="hi", headers={"Content-Type": "text/plain"})
    )
    assert text["isBase64Encoded"] is False and text["body"] == "hi"


def test_http_api_payload_v2(echo_rt: LocalRT) -> None:
    event = _event(
        echo_rt.get("/v2/carol?q=1&q=2", headers={"Cookie": "a=1; b=2", "User-Agent": "v2-agent"})
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v2/{name}"
    assert event["rawPath"] == "/v2/carol"
    assert event["rawQueryString"] == "q=1&q=2"
    assert event["queryStringParameters"] == {"q": "1,2"}
    assert event["pathParameters"] == {"name": "carol"}
    assert sorted(event["cookies"]) == ["a=1", "b=2"]
    ctx = event["requestContext"]
    assert ctx["stage"] == "$default"
    assert ctx["http"] == {
        "method": "GET",
        "path": "/v2/carol",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "v2-agent",
    }
    assert ctx["timeEpoch"] > 1_600_000_000_000  # milliseconds, like API Gateway


def test_http_api_payload_v1(echo_rt: LocalRT) -> None:
    event = _event(echo_rt.request("POST", "/v2compat/dave", data="x"))
    assert event["version"] == "1.0"
    assert event["httpMethod"] == "POST"
    assert event["multiValueHeaders"]


def test_response_headers_and_binary_body(echo_rt: LocalRT) -> None:
    multi = echo_rt.get("/rest/multi")
    assert multi.status_code == 201
    assert multi.headers["X-Single"] == "one"
    assert multi.headers["X-Multi"] == "a, b"  # two header lines, joined by requests
    binary = echo_rt.get("/rest/binary", headers={"Accept": "application/octet-stream"})
    assert binary.status_code == 200
    assert binary.content == bytes(range(256))


def test_unknown_routes_answer_like_api_gateway(echo_rt: LocalRT) -> None:
    for method, path in [("GET", "/nope"), ("POST", "/proxy/x"), ("GET", "/upload")]:
        resp = echo_rt.request(method, path)
        assert resp.status_code == 403, (method, path)
        assert resp.json() == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize("path", ["/rest/malformed", "/rest/notjson", "/rest/error"])
def test_bad_function_results_are_502(echo_rt: LocalRT, path: str) -> None:
    resp = echo_rt.get(path)
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}
    assert echo_rt.get("/rest/ok").status_code == 200  # the environment survived


def test_crash_is_502_and_environment_replaced(echo_rt: LocalRT) -> None:
    resp = echo_rt.get("/rest/crash")
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}
    stats = echo_rt.stats()
    crashed = [e for e in stats["environments"] if e["exit_code"] == 3]
    assert crashed and crashed[0]["state"] == "dead"
    dead_pid = crashed[0]["pid"]
    assert wait_until(lambda: not pid_alive(dead_pid), 5)
    after = body_json(echo_rt.get("/rest/ok"))["pid"]
    assert after != dead_pid and pid_alive(after)


def test_trace_header_reaches_runtime(echo_rt: LocalRT) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    info = body_json(echo_rt.get("/rest/t", headers={"X-Amzn-Trace-Id": trace}))
    assert info["trace_env"] == trace


def test_lambda_context_and_environment(echo_rt: LocalRT) -> None:
    info = body_json(echo_rt.get("/rest/ctx"))
    env = info["env"]
    assert info["function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:EchoFunction"
    assert 0 < info["remaining_ms"] <= 1000  # Timeout: 1 from Globals
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "192"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/EchoFunction"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["TZ"] == ":UTC"
    assert env["_HANDLER"] == "lrt_handlers.handler"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["FROM_GLOBALS"] == "global-value"
    assert info["layer"] is True  # the layer's python/ is on PYTHONPATH
    assert info["cwd"] == env["LAMBDA_TASK_ROOT"]
    stream = env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", stream)


def test_log_lines_are_tagged_and_unchanged(echo_rt: LocalRT) -> None:
    pid = body_json(echo_rt.get("/rest/logme"))["pid"]
    stats = echo_rt.stats()
    tag = next(e["tag"] for e in stats["environments"] if e["pid"] == pid)

    def logged() -> bool:
        return any(
            t == tag and line.startswith("{") and json.loads(line).get("path") == "logme"
            for t, line in echo_rt.tagged()
        )

    assert wait_until(logged, 5), echo_rt.text()


def test_stats_endpoint(echo_rt: LocalRT) -> None:
    echo_rt.get("/rest/stats")
    stats = echo_rt.stats()
    assert stats["function"] == "EchoFunction"
    assert stats["concurrency"] == 4
    env = stats["environments"][0]
    assert {"pid", "init_ms", "invocations", "tag", "state"} <= env.keys()
    assert env["init_ms"] is not None and env["init_ms"] > 0
    live = [e for e in stats["environments"] if e["state"] != "dead"]
    assert all(e["max_rss_mb"] > 5 for e in live)
    rec = stats["invocations"][-1]
    assert rec["outcome"] == "response"
    assert rec["client_ms"] > 0 and rec["billed_ms"] > 0 and rec["duration_ms"] > 0
