"""The project's OpenTelemetry Collector (tools/otelcol), fed by the real OTLP exporters over
HTTP and gRPC, and what it accepts and refuses on OTLP/HTTP."""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from stack import OtelCollector, Stack, StackError
from tests.localrt.harness import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def _collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtelCollector]:
    with OtelCollector(tmp_path_factory.mktemp("otelcol")) as collector:
        yield collector


@pytest.fixture
def collector(_collector: OtelCollector) -> OtelCollector:
    """One Collector for the module, its spans forgotten before each test."""
    _collector.clear_spans()
    return _collector


def http_exporter(c: OtelCollector, gzip_on: bool = True) -> HttpExporter:
    return HttpExporter(
        endpoint=f"{c.http_endpoint}/v1/traces",
        timeout=5,
        compression=Compression.Gzip if gzip_on else Compression.NoCompression,
    )


def grpc_exporter(c: OtelCollector) -> GrpcExporter:
    return GrpcExporter(endpoint=c.grpc_endpoint, insecure=True, timeout=5)


def emit_trace(exporter: SpanExporter) -> tuple[str, str]:
    """A server span with a failing child; returns (trace id, server span id) in hex."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "healthz", "faas.instance": "env-1"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.stack", "1.2.3")
    with (
        tracer.start_as_current_span(
            "GET /healthz",
            kind=SpanKind.SERVER,
            attributes={
                "http.route": "/healthz",
                "http.status_code": 200,
                "cold": True,
                "ratio": 0.5,
                "tags": ["a", "b"],
            },
        ) as server,
        tracer.start_as_current_span("check:db") as child,
    ):
        child.set_status(Status(StatusCode.ERROR, "db down"))
        child.add_event("retry", {"attempt": 2})
    provider.shutdown()
    ctx = server.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def arrived(c: OtelCollector, count: int, **filters: str) -> list[dict[str, Any]]:
    """The spans once `count` have been written (the file exporter flushes every 20 ms)."""
    assert wait_until(lambda: len(c.spans(**filters)) >= count, 10), c.spans()
    return c.spans(**filters)


def assert_trace(
    spans: list[dict[str, Any]], trace_id: str, server_id: str, transport: str
) -> None:
    by_name = {s["name"]: s for s in spans if s["trace_id"] == trace_id}
    assert set(by_name) == {"GET /healthz", "check:db"}
    server, child = by_name["GET /healthz"], by_name["check:db"]
    assert server["span_id"] == server_id and server["parent_span_id"] == ""
    assert child["parent_span_id"] == server_id
    assert server["kind"] == "SPAN_KIND_SERVER" and child["kind"] == "SPAN_KIND_INTERNAL"
    assert server["attributes"] == {
        "http.route": "/healthz",
        "http.status_code": 200,
        "cold": True,
        "ratio": 0.5,
        "tags": ["a", "b"],
    }
    assert server["resource_attributes"]["service.name"] == "healthz"
    assert server["resource_attributes"]["faas.instance"] == "env-1"
    assert (server["scope"]["name"], server["scope"]["version"]) == ("tests.stack", "1.2.3")
    assert server["status"] == {"code": "STATUS_CODE_UNSET", "message": ""}
    assert child["status"] == {"code": "STATUS_CODE_ERROR", "message": "db down"}
    assert child["events"][0]["name"] == "retry"
    assert child["events"][0]["attributes"] == {"attempt": 2}
    assert 0 < server["start_time_unix_nano"] <= child["start_time_unix_nano"]
    assert child["end_time_unix_nano"] <= server["end_time_unix_nano"]
    assert {server["transport"], child["transport"]} == {transport}


@pytest.mark.parametrize("gzip_on", [True, False], ids=["gzip", "identity"])
def test_http_exporter(collector: OtelCollector, gzip_on: bool) -> None:
    trace_id, server_id = emit_trace(http_exporter(collector, gzip_on))
    assert_trace(arrived(collector, 2, trace_id=trace_id), trace_id, server_id, "http")


def test_grpc_exporter(collector: OtelCollector) -> None:
    trace_id, server_id = emit_trace(grpc_exporter(collector))
    assert_trace(arrived(collector, 2, trace_id=trace_id), trace_id, server_id, "grpc")


def test_filters_and_clear(collector: OtelCollector) -> None:
    trace_a, _ = emit_trace(http_exporter(collector))
    trace_b, _ = emit_trace(grpc_exporter(collector))
    assert len(arrived(collector, 4)) == 4
    only_b = collector.spans(trace_id=trace_b)
    assert {s["trace_id"] for s in only_b} == {trace_b} and len(only_b) == 2
    by_db = collector.spans(name="check:db")
    assert sorted(s["trace_id"] for s in by_db) == sorted([trace_a, trace_b])
    assert collector.clear_spans() == 4
    assert collector.spans() == []
    # the Collector's files keep the history: one OTLP/JSON line per export request
    lines = [
        line for path in collector.span_files.values() for line in path.read_text().splitlines()
    ]
    assert len(lines) >= 4
    assert all("resourceSpans" in json.loads(line) for line in lines)


def post_traces(c: OtelCollector, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    req = urllib.request.Request(
        f"{c.http_endpoint}/v1/traces", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


PROTOBUF = {"Content-Type": "application/x-protobuf"}


def test_http_protocol_details(collector: OtelCollector) -> None:
    empty = ExportTraceServiceRequest().SerializeToString()
    status, ctype, body = post_traces(
        collector, gzip.compress(empty), {**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert (status, ctype) == (200, "application/x-protobuf")
    ExportTraceServiceResponse.FromString(body)  # a proper (empty) response message
    assert post_traces(
        collector, zlib.compress(empty), {**PROTOBUF, "Content-Encoding": "deflate"}
    )[0] == (200)

    assert post_traces(collector, b"\xff\xff garbage", PROTOBUF)[0] == 400
    assert post_traces(collector, b"not gzip", {**PROTOBUF, "Content-Encoding": "gzip"})[0] == 400
    assert post_traces(collector, empty, {**PROTOBUF, "Content-Encoding": "br"})[0] == 400
    status, ctype, _ = post_traces(collector, b"x", {"Content-Type": "text/plain"})
    assert status == 415
    # Unlike the hand-written receiver it replaces, the Collector takes OTLP/JSON too
    # (hex ids, lowerCamelCase names), which the OTLP/HTTP specification allows.
    span = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708"}
    request = {
        "resourceSpans": [{"scopeSpans": [{"spans": [{**span, "name": "json", "kind": 2}]}]}]
    }
    status, ctype, body = post_traces(
        collector, json.dumps(request).encode(), {"Content-Type": "application/json"}
    )
    assert (status, ctype) == (200, "application/json") and "partialSuccess" in json.loads(body)
    (record,) = arrived(collector, 1, name="json")
    assert record["trace_id"] == span["traceId"] and record["kind"] == "SPAN_KIND_SERVER"


def test_ids_of_the_wrong_length_are_refused(collector: OtelCollector) -> None:
    # The old receiver stored any bytes as an id; the Collector refuses the whole request.
    short = Span(trace_id=b"\x01" * 3, span_id=b"\x01" * 8, name="short")
    body = _request(short).SerializeToString()
    status, _, _ = post_traces(collector, body, PROTOBUF)
    assert status == 400
    # An all-zero trace id (invalid by the specification) is taken, and written without one.
    zero = Span(trace_id=bytes(16), span_id=b"\x01" * 8, name="zero")
    assert post_traces(collector, _request(zero).SerializeToString(), PROTOBUF)[0] == 200
    (record,) = arrived(collector, 1, name="zero")
    assert record["trace_id"] == ""
    assert collector.spans(name="short") == []


def _request(span: Span, scope: InstrumentationScope | None = None) -> ExportTraceServiceRequest:
    scope_spans = ScopeSpans(scope=scope, spans=[span]) if scope else ScopeSpans(spans=[span])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope_spans])])


def test_every_field_of_the_span_is_kept(collector: OtelCollector) -> None:
    # Through the Collector's pdata, its OTLP/JSON file and back through protobuf: links, their
    # attributes and trace state, scope attributes, flags and dropped counts all survive.
    scope = InstrumentationScope(name="s", version="1", attributes=[_kv("scope.attr", "x")])
    span = Span(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        name="linked",
        kind=Span.SpanKind.SPAN_KIND_CLIENT,
        flags=0x301,
        dropped_attributes_count=2,
        attributes=[
            _kv("bytes", AnyValue(bytes_value=b"\x00\xff")),
            _kv("nested", AnyValue(kvlist_value=KeyValueList(values=[_kv("n", 7)]))),
            KeyValue(key="unset"),
        ],
        links=[
            Span.Link(
                trace_id=b"\x11" * 16,
                span_id=b"\x22" * 8,
                trace_state="k=v",
                attributes=[_kv("link.kind", "follows")],
            )
        ],
    )
    status, _, _ = post_traces(collector, _request(span, scope).SerializeToString(), PROTOBUF)
    assert status == 200
    (record,) = arrived(collector, 1, name="linked")
    assert record["trace_id"] == bytes(range(1, 17)).hex() and record["parent_span_id"] == ""
    assert record["kind"] == "SPAN_KIND_CLIENT"
    assert (record["flags"], record["dropped_attributes_count"]) == (0x301, 2)
    assert record["attributes"] == {"bytes": "00ff", "nested": {"n": 7}, "unset": None}
    assert record["scope"]["attributes"] == {"scope.attr": "x"}
    assert record["resource_attributes"] == {}
    (link,) = record["links"]
    assert link["trace_id"] == "11" * 16 and link["span_id"] == "22" * 8
    assert link["trace_state"] == "k=v" and link["attributes"] == {"link.kind": "follows"}


def _kv(key: str, value: str | int | AnyValue) -> KeyValue:
    if isinstance(value, AnyValue):
        return KeyValue(key=key, value=value)
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def test_a_taken_port_is_an_error_and_free_ports_are_retried(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match="address already in use"):
            OtelCollector(tmp_path / "a", grpc_port=port).start()
    c = OtelCollector(tmp_path / "b")
    assert c.validate().returncode == 0


def emit_export(exporter: SpanExporter) -> SpanExportResult:
    """Export one finished span straight through `exporter`; return its result."""
    provider = TracerProvider()
    spans = []

    class Capture(SpanExporter):
        def export(self, batch: Any) -> SpanExportResult:
            spans.extend(batch)
            return SpanExportResult.SUCCESS

    provider.add_span_processor(SimpleSpanProcessor(Capture()))
    provider.get_tracer("t").start_span("s").end()
    provider.shutdown()
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def test_the_stacks_otlp_faults_are_the_fault_proxys() -> None:
    with Stack(delay_ms=200) as stack:
        assert stack.otlp_proxy is not None
        assert stack.otlp_http_endpoint == stack.otlp_proxy.url != stack.collector.http_endpoint

        def target(timeout: float = 5) -> HttpExporter:  # emit_export shuts each one down
            return HttpExporter(endpoint=f"{stack.otlp_http_endpoint}/v1/traces", timeout=timeout)

        started = time.monotonic()
        assert emit_export(target()) is SpanExportResult.SUCCESS
        assert time.monotonic() - started >= 0.2
        # 500 is not retryable over OTLP/HTTP: the exporter gives up at once
        stack.set_fault(fail_status=500)
        assert emit_export(target()) is SpanExportResult.FAILURE
        # any of the proxy's modes, not only a delay or a status
        stack.otlp_proxy.set_mode("refuse")
        assert emit_export(target(timeout=0.5)) is SpanExportResult.FAILURE
        stack.set_fault()
        assert emit_export(target()) is SpanExportResult.SUCCESS
        # spans are read from the Collector's files: neither delayed nor failed
        stack.otlp_proxy.set_mode("status", status=503)
        assert wait_until(lambda: len(stack.spans()) == 2, 5), stack.spans()
        # OTLP/gRPC goes straight to the Collector (the proxy speaks HTTP/1.1 only)
        grpc = GrpcExporter(endpoint=stack.otlp_grpc_endpoint, insecure=True, timeout=5)
        assert emit_export(grpc) is SpanExportResult.SUCCESS
        assert stack.otlp_proxy.stats()["stats"]["by_mode"] == {
            "delay": 1,
            "status": 1,
            "pass": 1,
        }
        assert len(stack.pids) == 4
    with Stack() as plain:
        assert plain.otlp_proxy is None
        assert plain.otlp_http_endpoint == plain.collector.http_endpoint
        with pytest.raises(StackError, match="no OTLP fault proxy"):
            plain.set_fault(delay_ms=100)
