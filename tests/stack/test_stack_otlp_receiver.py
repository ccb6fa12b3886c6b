"""The OTLP receiver, fed by the real OTLP exporters over HTTP and gRPC."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
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

from stack import Stack, StackError
from stack.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[OtlpReceiver]:
    with OtlpReceiver(grpc_port=0, http_port=0, spans_file=tmp_path / "spans.jsonl") as r:
        yield r


def http_exporter(r: OtlpReceiver, gzip_on: bool = True) -> HttpExporter:
    return HttpExporter(
        endpoint=f"{r.http_endpoint}/v1/traces",
        timeout=5,
        compression=Compression.Gzip if gzip_on else Compression.NoCompression,
    )


def grpc_exporter(r: OtlpReceiver) -> GrpcExporter:
    return GrpcExporter(endpoint=r.grpc_endpoint, insecure=True, timeout=5)


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


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


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
def test_http_exporter(receiver: OtlpReceiver, gzip_on: bool) -> None:
    trace_id, server_id = emit_trace(http_exporter(receiver, gzip_on))
    assert_trace(get_json(f"{receiver.http_endpoint}/spans"), trace_id, server_id, "http")


def test_grpc_exporter(receiver: OtlpReceiver) -> None:
    trace_id, server_id = emit_trace(grpc_exporter(receiver))
    assert_trace(get_json(f"{receiver.http_endpoint}/spans"), trace_id, server_id, "grpc")


def test_spans_file_filters_and_delete(receiver: OtlpReceiver) -> None:
    trace_a, _ = emit_trace(http_exporter(receiver))
    trace_b, _ = emit_trace(grpc_exporter(receiver))
    base = receiver.http_endpoint
    assert len(get_json(f"{base}/spans")) == 4
    only_b = get_json(f"{base}/spans?trace_id={trace_b}")
    assert {s["trace_id"] for s in only_b} == {trace_b} and len(only_b) == 2
    assert [s["trace_id"] for s in get_json(f"{base}/spans?name=check:db")] == [trace_a, trace_b]

    req = urllib.request.Request(f"{base}/spans", method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.load(resp) == {"deleted": 4}
    assert get_json(f"{base}/spans") == []

    # the JSON-lines file keeps the history
    assert receiver.store.path is not None
    lines = receiver.store.path.read_text().splitlines()
    assert len(lines) == 4
    assert {json.loads(line)["trace_id"] for line in lines} == {trace_a, trace_b}
    assert get_json(f"{base}/stats")["requests"] == {"grpc": 2, "http": 2}


def post_traces(r: OtlpReceiver, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    req = urllib.request.Request(
        f"{r.http_endpoint}/v1/traces", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_http_protocol_details(receiver: OtlpReceiver) -> None:
    empty = ExportTraceServiceRequest().SerializeToString()
    status, ctype, body = post_traces(
        receiver,
        gzip.compress(empty),
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert (status, ctype) == (200, "application/x-protobuf")
    ExportTraceServiceResponse.FromString(body)  # a proper (empty) response message

    assert (
        post_traces(receiver, b"\xff\xff garbage", {"Content-Type": "application/x-protobuf"})[0]
        == 400
    )
    assert (
        post_traces(
            receiver,
            b"not gzip",
            {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )[0]
        == 400
    )
    assert post_traces(receiver, b"{}", {"Content-Type": "application/json"})[0] == 415


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


def test_every_field_of_the_span_is_kept(receiver: OtlpReceiver) -> None:
    # json_format walks every field: links, their attributes and trace state, scope
    # attributes, flags and dropped counts reach the record too, not only the ones a
    # hand-written conversion thought of.
    scope = InstrumentationScope(name="s", version="1", attributes=[_kv("scope.attr", "x")])
    span = Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
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
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(scope=scope, spans=[span])])]
    )
    status, _, _ = post_traces(
        receiver, request.SerializeToString(), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 200
    (record,) = receiver.store.spans()
    assert record["trace_id"] == bytes(range(16)).hex() and record["parent_span_id"] == ""
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


def test_the_receiver_has_no_fault_controls_of_its_own(receiver: OtlpReceiver) -> None:
    # one mechanism for a slow or failing backend: the fault proxy (next test)
    req = urllib.request.Request(f"{receiver.http_endpoint}/control", data=b"{}", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 501  # http.server: no do_PUT at all
    assert not hasattr(receiver, "fault")


@pytest.mark.integration
def test_the_stacks_otlp_faults_are_the_fault_proxys() -> None:
    with Stack(delay_ms=200) as stack:
        assert stack.otlp_proxy is not None
        assert stack.otlp_http_endpoint == stack.otlp_proxy.url != stack.receiver.http_endpoint

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
        # spans are read at the receiver's own port: neither delayed nor failed
        stack.otlp_proxy.set_mode("status", status=503)
        assert len(stack.spans()) == 2
        # OTLP/gRPC goes straight to the receiver (the proxy speaks HTTP/1.1 only)
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
        assert plain.otlp_http_endpoint == plain.receiver.http_endpoint
        with pytest.raises(StackError, match="no OTLP fault proxy"):
            plain.set_fault(delay_ms=100)
