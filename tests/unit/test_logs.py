"""Structured logs: JSON lines with Lambda context, correlation id, the seed's fields, and the
ids of the span they were written in."""

from __future__ import annotations

from typing import Any

from tests.conftest import load_event
from tests.unit.conftest import FakeLambdaContext, LogCapture, SpanCapture, invoke


def _by_message(lines: list[dict[str, Any]], message: str) -> dict[str, Any]:
    (line,) = [line for line in lines if line["message"] == message]
    return line


def test_health_call_logs_one_json_line_with_seed_fields(
    context: FakeLambdaContext, logs: LogCapture, spans: SpanCapture
) -> None:
    event = load_event("rest-get.json")
    invoke(event, context)

    lines = logs.lines()
    seed = _by_message(lines, "Monitoring endpoint invoked! Counter was incremented!")
    assert seed["service"] == "healthz"
    assert seed["level"] == "INFO"
    assert isinstance(seed["cold_start"], bool)
    assert seed["function_request_id"] == context.aws_request_id
    assert seed["correlation_id"] == event["requestContext"]["requestId"]  # type: ignore[index]
    assert seed["http_method"] == "GET"
    assert seed["path"] == "/healthz"
    assert seed["source_ip"] == "127.0.0.1"
    assert seed["user_agent"] == "Custom User Agent String"
    assert seed["healthz_calls_total"] >= 1

    # A successful request logs the seed's line only: its status and duration are in the span
    # and the duration histogram.
    assert [line["message"] for line in lines] == [seed["message"]]

    (span,) = spans.finished()
    assert seed["trace_id"] == format(span.context.trace_id, "032x")
    assert seed["span_id"] == format(span.context.span_id, "016x")


def test_refused_request_logs_its_completion(
    context: FakeLambdaContext, logs: LogCapture, spans: SpanCapture
) -> None:
    invoke(load_event("rest-post.json"), context)
    access = _by_message(logs.lines(), "request completed")
    assert access["status_code"] == 405
    assert access["duration_ms"] >= 0
    assert access["http_method"] == "POST"
    (span,) = spans.finished()
    assert access["trace_id"] == format(span.context.trace_id, "032x")


def test_log_trace_id_follows_incoming_traceparent(
    context: FakeLambdaContext, logs: LogCapture, spans: SpanCapture
) -> None:
    invoke(load_event("rest-get-traceparent.json"), context)
    assert {line["trace_id"] for line in logs.lines()} == {"4bf92f3577b34da6a3ce929d0e0e4736"}


def test_http_api_event_logs_the_same_fields(
    context: FakeLambdaContext, logs: LogCapture, spans: SpanCapture
) -> None:
    event = load_event("http-api-get.json")
    invoke(event, context)
    access = _by_message(logs.lines(), "Monitoring endpoint invoked! Counter was incremented!")
    assert access["http_method"] == "GET"
    assert access["path"] == "/healthz"
    assert access["source_ip"] == event["requestContext"]["http"]["sourceIp"]  # type: ignore[index]
    assert access["user_agent"] == "agent"
    assert access["correlation_id"] == event["requestContext"]["requestId"]  # type: ignore[index]


def test_request_keys_do_not_leak_into_the_next_invocation(
    context: FakeLambdaContext, logs: LogCapture, spans: SpanCapture
) -> None:
    invoke(load_event("rest-get.json"), context)
    invoke(load_event("s3-put-not-api-gateway.json"), context)
    last = logs.lines()[-1]
    assert last["message"] == "invocation completed"
    assert "http_method" not in last
    assert "correlation_id" not in last


def test_no_pushgateway_still_counts_in_the_log(
    context: FakeLambdaContext, logs: LogCapture, spans: SpanCapture
) -> None:
    invoke(load_event("rest-get.json"), context)
    invoke(load_event("rest-get.json"), context)
    seen = [
        line["healthz_calls_total"]
        for line in logs.lines()
        if line["message"].startswith("Monitoring endpoint invoked")
    ]
    assert seen[1] == seen[0] + 1
