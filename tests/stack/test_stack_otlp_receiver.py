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
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

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
    assert server["scope"] == {"name": "tests.stack", "version": "1.2.3"}
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


def test_fail_status(receiver: OtlpReceiver) -> None:
    # 500 is not retryable (OTLP/HTTP) and maps to INTERNAL (not retried over gRPC either),
    # so the exporters give up at once instead of backing off.
    receiver.fault.fail_status = 500
    assert emit_export(http_exporter(receiver)) is SpanExportResult.FAILURE
    assert emit_export(grpc_exporter(receiver)) is SpanExportResult.FAILURE
    assert receiver.store.spans() == []
    assert receiver.stats()["rejected"] == 2

    status, ctype, _ = post_traces(receiver, b"", {"Content-Type": "application/x-protobuf"})
    assert (status, ctype) == (500, "application/x-protobuf")

    # switched off at run time through the control endpoint
    req = urllib.request.Request(
        f"{receiver.http_endpoint}/control",
        method="PUT",
        data=b'{"delay_ms": 0, "fail_status": null}',
    )
    with urllib.request.urlopen(req, timeout=5):
        pass
    assert emit_export(http_exporter(receiver)) is SpanExportResult.SUCCESS


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


def test_delay(receiver: OtlpReceiver) -> None:
    receiver.fault.delay_ms = 200
    started = time.monotonic()
    assert emit_export(grpc_exporter(receiver)) is SpanExportResult.SUCCESS
    assert emit_export(http_exporter(receiver)) is SpanExportResult.SUCCESS
    assert time.monotonic() - started >= 0.4
