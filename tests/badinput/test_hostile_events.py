"""Property-based bad input: API Gateway 1.0 and 2.0, function URL and ALB events with missing
and odd fields, huge headers, non-UTF-8 and base64 bodies, odd methods and paths, hostile trace
headers, other services' events, non-dict events and null.

In process against ``app.handler`` (the real layer, sync export to an in-memory span exporter).
Whatever arrives: a well-formed API Gateway response, never an exception; every log output line
is exactly one JSON object (no newline or JSON injection); trace context is never corrupted
(valid ids; a bad ``traceparent`` starts a new root trace); planted secrets never show.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.exposition import generate_latest

import app
from lambda_observability import logger, metrics
from lambda_observability.instrument import instrumentation
from tests import planted
from tests.conftest import load_event
from tests.unit.conftest import FakeLambdaContext

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")
INJECTED = "INJECTED-LOG-LINE-5f1c"

# --- strategies ------------------------------------------------------------------------------

text = st.text(max_size=40)
hostile_text = st.one_of(
    text,
    st.sampled_from(
        [
            f'\n{{"level":"ERROR","message":"{INJECTED}"}}',
            f'"}}\n{{"message":"{INJECTED}',
            f"\r\n{INJECTED}\r\n",
            "\x00\x1b[31m\u2028\u2029\x85",
            "A" * 20_000,
        ]
    ),
)
traceparent = st.one_of(
    st.builds(
        lambda t, s, f: f"00-{t}-{s}-{f}",
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.text("0123456789abcdef", min_size=16, max_size=16),
        st.just("01"),
    ),
    st.sampled_from(
        [
            "00-00000000000000000000000000000000-0000000000000000-01",  # all-zero ids: invalid
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n" + INJECTED,
            "00-0af7651916cd43dd8448eb211c80319c",
            "",
        ]
    ),
    hostile_text,
)
header_name = st.one_of(
    st.sampled_from(["traceparent", "tracestate", "baggage", "user-agent", "content-type"]),
    st.text(min_size=1, max_size=20),
)
headers = st.dictionaries(header_name, hostile_text, max_size=6).map(
    lambda h: {**h, **planted.HEADERS}
)
method = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "DELETE", "OPTIONS", "get", "BREW", ""]), text
)
path = st.one_of(
    st.sampled_from(
        ["/healthz", "/healthz/", "//healthz", "/../healthz", "/%00", "/" + "a" * 5000]
    ),
    hostile_text,
)
body = st.one_of(
    st.none(),
    text,
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),  # non-UTF-8 bytes as text
    st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b).decode()),
)
odd = st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2), text)


def _rest(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = load_event("rest-get.json")
    event["httpMethod"] = draw(method)
    event["path"] = draw(path)
    event["headers"] = draw(st.one_of(headers, odd))
    event["multiValueHeaders"] = draw(st.one_of(st.none(), odd))
    event["queryStringParameters"] = {"token": planted.QUERY_TOKEN}
    event["multiValueQueryStringParameters"] = {"access_token": [planted.QUERY_ACCESS_TOKEN]}
    event["body"] = draw(body)
    event["isBase64Encoded"] = draw(st.one_of(st.booleans(), odd))
    return event


def _http(draw: st.DrawFn, name: str = "http-api-get.json") -> dict[str, Any]:
    # Payload 2.0: HTTP API, or a Lambda function URL (function-url-get.json).
    event: dict[str, Any] = load_event(name)
    event["requestContext"]["http"]["method"] = draw(method)
    event["requestContext"]["http"]["path"] = draw(path)
    event["rawPath"] = draw(st.one_of(path, odd))
    event["routeKey"] = draw(st.one_of(st.just("GET /healthz"), st.just("$default"), text, odd))
    event["headers"] = draw(st.one_of(headers, odd))
    event["cookies"] = draw(st.one_of(st.just([planted.COOKIE]), odd))
    event["rawQueryString"] = (
        f"token={planted.QUERY_TOKEN}&access_token={planted.QUERY_ACCESS_TOKEN}"
    )
    event["queryStringParameters"] = {"token": planted.QUERY_TOKEN}
    event["body"] = draw(body)
    event["isBase64Encoded"] = draw(st.one_of(st.booleans(), odd))
    return event


def _alb(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = load_event("alb-get.json")
    event["httpMethod"] = draw(method)
    event["path"] = draw(path)
    drawn = draw(st.one_of(headers, odd))
    if draw(st.booleans()):  # the target group has multi-value headers on
        del event["headers"]
        event["multiValueHeaders"] = (
            {k: [v] for k, v in drawn.items()} if isinstance(drawn, dict) else drawn
        )
    else:
        event["headers"] = drawn
    event["queryStringParameters"] = {"token": planted.QUERY_TOKEN}
    event["body"] = draw(body)
    event["isBase64Encoded"] = draw(st.one_of(st.booleans(), odd))
    return event


@st.composite
def api_gateway_event(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.sampled_from(["rest", "http", "function_url", "alb"]))
    if shape == "rest":
        event = _rest(draw)
    elif shape == "alb":
        event = _alb(draw)
    else:
        event = _http(
            draw, "function-url-get.json" if shape == "function_url" else "http-api-get.json"
        )
    # Missing fields: drop a few keys anywhere at the top level or in requestContext.
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=3)):
        event.pop(key, None)
    context = event.get("requestContext")
    if isinstance(context, dict):
        for key in draw(st.lists(st.sampled_from(sorted(context)), max_size=2)):
            context[key] = draw(odd)
    return event


other_events = st.sampled_from(
    [
        load_event("s3-put-not-api-gateway.json"),
        {"Records": [{"eventSource": "aws:sqs", "body": "{}"}]},
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        {"requestContext": {"elb": {"targetGroupArn": "arn"}}, "httpMethod": "GET", "path": "/"},
        {"version": "2.0", "requestContext": {"http": "not a dict"}},
        {"requestContext": None, "httpMethod": "GET"},
    ]
)
non_dict = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=True), text, st.lists(text, max_size=3)
)
any_event = st.one_of(api_gateway_event(), other_events, non_dict)

# --- harness ---------------------------------------------------------------------------------


@contextmanager
def captured() -> Iterator[tuple[io.StringIO, InMemorySpanExporter]]:
    """The layer's log stream and spans, for one invocation."""
    stream = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    exporter = InMemorySpanExporter()
    tracing = instrumentation().tracing
    tracing.queue.drain()
    instrumentation().spans.use_exporter(exporter)
    try:
        yield stream, exporter
    finally:
        handler.setStream(previous)
        instrumentation().spans.use_exporter(None)


def invoke(event: Any) -> tuple[Any, list[str], list[ReadableSpan]]:
    with captured() as (stream, exporter):
        response = app.handler(event, FakeLambdaContext())
    # Lines end with "\n" only: U+2028 or NEL inside a JSON string are not line breaks for a
    # log shipper (CloudWatch splits on "\n"), though str.splitlines() would split there.
    lines = [line for line in stream.getvalue().split("\n") if line]
    return response, lines, list(exporter.get_finished_spans())


def assert_well_formed(response: Any) -> None:
    assert isinstance(response, dict), response
    status = response["statusCode"]
    assert isinstance(status, int) and not isinstance(status, bool) and 200 <= status <= 599
    assert isinstance(response["body"], str)
    headers = response.get("headers") or {}
    multi = response.get("multiValueHeaders") or {}
    assert headers or multi, response
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in multi.values())
    content_type = headers.get("Content-Type") or (multi.get("Content-Type") or [""])[0]
    if status >= 400:
        assert content_type == "application/json"
        document = json.loads(response["body"])
        assert document["statusCode"] == status and isinstance(document["message"], str)
    else:
        assert status == 200 and content_type == "application/health+json"


def assert_clean_logs(lines: list[str]) -> None:
    assert lines, "every invocation logs at least its completion"
    for line in lines:
        record = json.loads(line)  # exactly one JSON object per line
        assert isinstance(record, dict), line
        assert record.get("message") != INJECTED, line
        assert "level" in record and "message" in record, line


def assert_valid_trace(spans: list[ReadableSpan]) -> None:
    (span,) = spans
    context = span.context
    assert (
        context is not None and context.is_valid and context.trace_id != 0 and context.span_id != 0
    )
    if span.parent is not None:
        assert span.parent.is_valid and span.parent.trace_id == context.trace_id


# --- properties ----------------------------------------------------------------------------


@SETTINGS
@given(any_event)
def test_any_event_answers_well_formed_and_logs_cleanly(event: Any) -> None:
    response, lines, spans = invoke(event)
    assert_well_formed(response)
    assert_clean_logs(lines)
    assert_valid_trace(spans)
    assert planted.leaks([response, *lines, [dict(s.attributes or {}) for s in spans]]) == []


@SETTINGS
@given(traceparent, st.one_of(st.none(), hostile_text), st.one_of(st.none(), hostile_text))
def test_hostile_trace_headers_never_corrupt_trace_context(
    parent: str, state: str | None, baggage: str | None
) -> None:
    event: dict[str, Any] = load_event("rest-get.json")
    event["headers"] = {"traceparent": parent, **planted.HEADERS}
    if state is not None:
        event["headers"]["tracestate"] = state
    if baggage is not None:
        event["headers"]["baggage"] = baggage
    response, lines, spans = invoke(event)
    assert response["statusCode"] == 200
    assert_clean_logs(lines)
    assert_valid_trace(spans)
    (span,) = spans
    assert span.context is not None
    trace_id, span_id = span.context.trace_id, span.context.span_id
    match = TRACEPARENT.match(parent)
    valid = match is not None and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}
    if valid:
        assert match is not None
        assert format(trace_id, "032x") == match.group(1)
        assert span.parent is not None and format(span.parent.span_id, "016x") == match.group(2)
    else:
        assert span.parent is None  # a new root trace
    # Every log line of the invocation carries the span's ids, well formed.
    ids = {(r.get("trace_id"), r.get("span_id")) for r in map(json.loads, lines) if "span_id" in r}
    assert ids == {(format(trace_id, "032x"), format(span_id, "016x"))}


HUGE = 100_000


def _huge_event(shape: str, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An event with 100 KB values in the fields ``http_event.parse`` reads for its shape
    (REST: ``requestContext.identity``, ``httpMethod``, ``path``; HTTP API:
    ``requestContext.http``), plus 512 KB of headers it never reads. Each value has a filler
    of its own, so that any copy of it can be traced to its field."""
    values = {
        "user_agent": "u" * HUGE,
        "source_ip": "1" * HUGE,
        "path": "/" + "p" * HUGE,
        "method": "M" * HUGE,
    }
    event: dict[str, Any] = load_event("rest-get.json" if shape == "rest" else "http-api-get.json")
    # A User-Agent header too: the layer prefers requestContext's, so this one is never read.
    event["headers"] = (
        {f"x-big-{i}": "h" * 8_000 for i in range(64)} | {"User-Agent": "h" * HUGE}
    ) | planted.HEADERS
    if shape == "rest":
        read = event["requestContext"]["identity"]
        read["userAgent"], read["sourceIp"] = values["user_agent"], values["source_ip"]
        if where == "route":
            event["httpMethod"], event["path"] = values["method"], values["path"]
    else:
        read = event["requestContext"]["http"]
        read["userAgent"], read["sourceIp"] = values["user_agent"], values["source_ip"]
        if where == "route":
            read["method"], read["path"] = values["method"], values["path"]
            event["rawPath"] = values["path"]
    if where != "route":
        values["method"], values["path"] = "GET", "/healthz"
    return event, values


@pytest.mark.parametrize("where", ["client", "route"])
@pytest.mark.parametrize("shape", ["rest", "http"])
def test_huge_values_where_the_layer_reads_them(shape: str, where: str) -> None:
    """The layer does not truncate: it puts the user agent, source IP, path and method it read
    whole into every log line of the invocation (as keys) and into the span (as attributes),
    as they came. Nothing else of the event reaches them (the headers it does not read, the
    query), the response never echoes them, and the pushed metrics' labels stay bounded (the
    method becomes ``_OTHER``, the route is the configured one)."""
    event, values = _huge_event(shape, where)
    response, lines, spans = invoke(event)

    assert_well_formed(response)
    assert response["statusCode"] == (200 if where == "client" else 404)
    assert len(json.dumps(response)) < 2_000  # nothing of the request is echoed

    assert_clean_logs(lines)
    records = [json.loads(line) for line in lines]
    # Refused requests log their completion; a health call logs the seed's line.
    expected = "request completed" if where == "route" else "Monitoring endpoint invoked!"
    assert any(r["message"].startswith(expected) for r in records)
    promised = sum(len(v) for v in values.values())
    for line, record in zip(lines, records, strict=True):
        # Whole values, as read, on every line: no truncation, and each at most once.
        assert record["user_agent"] == values["user_agent"]
        assert record["source_ip"] == values["source_ip"]
        assert record["path"] == values["path"]
        assert record["http_method"] == values["method"]
        assert len(line) < promised + 2_000
        assert "h" * 1_000 not in line  # the unread headers never reach a log line

    (span,) = spans
    attributes = dict(span.attributes or {})
    assert attributes["user_agent.original"] == values["user_agent"]
    assert attributes["client.address"] == values["source_ip"]
    assert attributes["url.path"] == values["path"]
    if where == "route":
        assert attributes["http.request.method"] == "_OTHER"
        assert attributes["http.request.method_original"] == values["method"]
    assert span.name == ("_OTHER /healthz" if where == "route" else "GET /healthz")
    assert len(json.dumps(attributes)) < promised + 2_000
    assert not any("h" * 1_000 in str(v) for v in attributes.values())

    exposed = generate_latest(metrics.REGISTRY).decode()
    assert max(len(line) for line in exposed.splitlines()) < 1_000
    assert planted.leaks([response, *lines, attributes]) == []


def test_null_and_non_dict_events_get_a_clear_400() -> None:
    events: list[Any] = [None, [], "GET /healthz", 42, {"httpMethod": "GET"}]
    for event in events:
        response, lines, spans = invoke(event)
        assert response["statusCode"] == 400
        assert "expected an API Gateway proxy event" in json.loads(response["body"])["message"]
        assert_clean_logs(lines)
        assert_valid_trace(spans)


def test_sampled_out_parent_is_honoured() -> None:
    event: dict[str, Any] = load_event("rest-get.json")
    event["headers"] = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
    response, lines, spans = invoke(event)
    assert response["statusCode"] == 200
    assert spans == []  # parentbased sampler: the caller decided not to sample
    assert_clean_logs(lines)
    assert {json.loads(line).get("trace_id") for line in lines} <= {
        "0af7651916cd43dd8448eb211c80319c"
    }
