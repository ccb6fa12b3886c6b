"""A small OTLP trace receiver for local runs and tests.

No OpenTelemetry Collector package can be installed here, so this speaks just enough
OTLP to stand in for one: TraceService/Export over gRPC and ``POST /v1/traces``
(binary protobuf, optionally gzip) over HTTP. Every span is kept in memory and appended
as one JSON line to a file; ``GET /spans`` / ``DELETE /spans`` on the HTTP port let
tests read and reset them. ``--delay-ms`` and ``--fail-status`` inject latency and
errors for fault and benchmark work (also adjustable at run time via ``PUT /control``).

Run it alone with ``python -m stack.otlp_receiver``; it prints one JSON "ready" line
with the bound ports on stdout once both servers listen.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import sys
import tempfile
import threading
import time
import zlib
from concurrent import futures
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from google.rpc import status_pb2  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from stack._proc import Service

HOST = "127.0.0.1"  # loopback only: this is a test double, never a shared service
DEFAULT_GRPC_PORT = 4317
DEFAULT_HTTP_PORT = 4318
MAX_BODY_BYTES = 64 * 1024 * 1024

ExportRequest = trace_service_pb2.ExportTraceServiceRequest
ExportResponse = trace_service_pb2.ExportTraceServiceResponse
JSON = Any  # recursive JSON values: typing them fully buys nothing here


@dataclass
class Fault:
    """Injected behaviour applied to every export, on both transports."""

    delay_ms: int = 0
    fail_status: int | None = None  # HTTP status to answer instead of accepting


# ---------------------------------------------------------------------------
# protobuf -> JSON-friendly dicts


def any_value(value: AnyValue) -> JSON:
    """Convert an OTLP AnyValue to the matching plain Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, JSON]:
    """Convert repeated KeyValue to a dict (later duplicates win, like the SDK)."""
    out: dict[str, JSON] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


def span_record(
    span: Span,
    resource_attrs: dict[str, JSON],
    scope: dict[str, str],
    transport: str,
) -> dict[str, JSON]:
    """One stored span: ids as lowercase hex, enums by their OTLP names."""
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "trace_state": span.trace_state,
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "resource_attributes": resource_attrs,
        "scope": scope,
        "status": {
            "code": Status.StatusCode.Name(span.status.code),
            "message": span.status.message,
        },
        "events": [
            {
                "name": ev.name,
                "time_unix_nano": ev.time_unix_nano,
                "attributes": attributes(ev.attributes),
            }
            for ev in span.events
        ],
        "links": [
            {"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex()} for ln in span.links
        ],
        "transport": transport,
        "received_at": time.time(),
    }


def span_records(request: ExportRequest, transport: str) -> list[dict[str, JSON]]:
    """Flatten an export request (resource -> scope -> spans) into records."""
    records: list[dict[str, JSON]] = []
    for rs in request.resource_spans:
        res = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = {"name": ss.scope.name, "version": ss.scope.version}
            records.extend(span_record(s, res, scope, transport) for s in ss.spans)
    return records


# ---------------------------------------------------------------------------
# storage


class SpanStore:
    """Thread-safe span list, mirrored to an append-only JSON-lines file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._spans: list[dict[str, JSON]] = []
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # line buffering: a crash still leaves every completed span on disk
            self._file = path.open("a", encoding="utf-8", buffering=1)

    def add(self, records: list[dict[str, JSON]]) -> None:
        with self._lock:
            self._spans.extend(records)
            if self._file is not None:
                for rec in records:
                    self._file.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def spans(self) -> list[dict[str, JSON]]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> int:
        """Forget the in-memory spans (the file keeps its history)."""
        with self._lock:
            n = len(self._spans)
            self._spans.clear()
            return n

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# ---------------------------------------------------------------------------
# transports

# OTLP/gRPC clients retry UNAVAILABLE/RESOURCE_EXHAUSTED but not INTERNAL, mirroring
# OTLP/HTTP's retryable 429/502/503/504 vs. permanent 500, so keep that distinction.
_GRPC_FOR_HTTP: dict[int, Any] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _grpc_code(http_status: int) -> Any:
    default = grpc.StatusCode.INVALID_ARGUMENT if http_status < 500 else grpc.StatusCode.UNKNOWN
    return _GRPC_FOR_HTTP.get(http_status, default)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc, unused-ignore]
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportRequest, context: Any) -> ExportResponse:  # noqa: N802 (gRPC name)
        status = self._receiver.handle(request, "grpc")
        if status is not None:
            context.abort(_grpc_code(status), f"injected failure (HTTP {status})")
        return ExportResponse()


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the OTLP HTTP exporter reuses sessions

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.receiver.verbose:
            super().log_message(format, *args)

    # -- helpers
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, value: JSON) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send_rpc_status(self, status: int, message: str) -> None:
        # OTLP/HTTP: error bodies are a google.rpc.Status in the request's encoding
        grpc_code = _grpc_code(status)
        body = status_pb2.Status(code=grpc_code.value[0], message=message).SerializeToString()
        self._send(status, body, "application/x-protobuf")

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send_rpc_status(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return None
        if int(length) > MAX_BODY_BYTES:
            self._send_rpc_status(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
            return None
        return self.rfile.read(int(length))

    # -- routes
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        receiver = self.server.receiver
        if url.path == "/spans":
            query = parse_qs(url.query)
            spans = receiver.store.spans()
            for key in ("trace_id", "name", "span_id", "parent_span_id"):
                if key in query:
                    spans = [s for s in spans if s[key] in query[key]]
            self._send_json(200, spans)
        elif url.path in ("/-/ready", "/-/healthy"):
            self._send(200, b"OK", "text/plain")
        elif url.path == "/control":
            self._send_json(200, asdict(receiver.fault))
        elif url.path == "/stats":
            self._send_json(200, receiver.stats())
        else:
            self._send_json(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/spans":
            self._send_json(200, {"deleted": self.server.receiver.store.clear()})
        else:
            self._send_json(404, {"error": "not found"})

    def do_PUT(self) -> None:
        if urlsplit(self.path).path != "/control":
            self._send_json(404, {"error": "not found"})
            return
        body = self._read_body()
        if body is None:
            return
        try:
            data = json.loads(body or b"{}")
            fault = Fault(
                delay_ms=int(data.get("delay_ms", 0)),
                fail_status=int(data["fail_status"]) if data.get("fail_status") else None,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            self._send_json(400, {"error": str(exc)})
            return
        self.server.receiver.fault = fault
        self._send_json(200, asdict(fault))

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/v1/traces":
            self._send_rpc_status(HTTPStatus.NOT_FOUND, "only /v1/traces is served")
            return
        body = self._read_body()
        if body is None:
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != "application/x-protobuf":
            self._send_rpc_status(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "only application/x-protobuf is supported"
            )
            return
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                self._send_rpc_status(HTTPStatus.BAD_REQUEST, f"unsupported encoding {encoding}")
                return
            request = ExportRequest.FromString(body)
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            self._send_rpc_status(HTTPStatus.BAD_REQUEST, f"cannot decode request: {exc}")
            return
        status = self.server.receiver.handle(request, "http")
        if status is not None:
            self._send_rpc_status(status, f"injected failure (HTTP {status})")
            return
        self._send(200, ExportResponse().SerializeToString(), "application/x-protobuf")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not block shutdown
    receiver: OtlpReceiver


# ---------------------------------------------------------------------------
# the receiver


class OtlpReceiver(Service):
    """OTLP/gRPC + OTLP/HTTP trace receiver; port 0 picks a free port."""

    def __init__(
        self,
        grpc_port: int = DEFAULT_GRPC_PORT,
        http_port: int = DEFAULT_HTTP_PORT,
        spans_file: Path | str | None = None,
        delay_ms: int = 0,
        fail_status: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.store = SpanStore(Path(spans_file) if spans_file is not None else None)
        self.fault = Fault(delay_ms=delay_ms, fail_status=fail_status)
        self.verbose = verbose
        self._requested = (grpc_port, http_port)
        self._grpc_server: Any = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._requests = {"grpc": 0, "http": 0}
        self._rejected = 0
        self.grpc_port = 0
        self.http_port = 0

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{HOST}:{self.grpc_port}"

    def handle(self, request: ExportRequest, transport: str) -> int | None:
        """Apply the fault, store the spans; return an HTTP status to fail with, if any."""
        fault = self.fault  # one read: a concurrent PUT /control must not split it
        if fault.delay_ms > 0:
            time.sleep(fault.delay_ms / 1000)
        with self._stats_lock:
            self._requests[transport] += 1
            if fault.fail_status is not None:
                self._rejected += 1
        if fault.fail_status is not None:
            return fault.fail_status
        self.store.add(span_records(request, transport))
        return None

    def stats(self) -> dict[str, JSON]:
        with self._stats_lock:
            return {
                "requests": dict(self._requests),
                "rejected": self._rejected,
                "spans": len(self.store.spans()),
            }

    def start(self) -> OtlpReceiver:
        grpc_port, http_port = self._requested
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call, unused-ignore]
            _TraceService(self), server
        )
        try:
            bound = server.add_insecure_port(f"{HOST}:{grpc_port}")
        except RuntimeError as exc:  # newer grpcio raises instead of returning 0
            raise OSError(f"cannot bind OTLP/gRPC on {HOST}:{grpc_port}: {exc}") from exc
        if bound == 0:
            raise OSError(f"cannot bind OTLP/gRPC on {HOST}:{grpc_port}")
        self.grpc_port = bound
        try:
            http = _HttpServer((HOST, http_port), _HttpHandler)
        except OSError:
            server.stop(None)
            raise
        http.receiver = self
        server.start()
        self._grpc_server = server
        self._http_server = http
        self.http_port = http.server_address[1]
        self._http_thread = threading.Thread(
            target=http.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name="otlp-http",
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait(timeout=5)
            self._grpc_server = None
        self.store.close()


# ---------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stack.otlp_receiver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="0 = any free port")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="0 = any free port")
    p.add_argument(
        "--spans-file",
        type=Path,
        default=None,
        help="JSON-lines file to append spans to (default: a new temp file)",
    )
    p.add_argument("--delay-ms", type=int, default=0, help="sleep before answering each export")
    p.add_argument(
        "--fail-status",
        type=int,
        default=None,
        help="answer every export with this HTTP status (gRPC: mapped code)",
    )
    p.add_argument("--verbose", action="store_true", help="log every HTTP request")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spans_file: Path = args.spans_file
    if spans_file is None:
        fd, name = tempfile.mkstemp(prefix="otlp-spans-", suffix=".jsonl")
        os.close(fd)
        spans_file = Path(name)
    receiver = OtlpReceiver(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        spans_file=spans_file,
        delay_ms=args.delay_ms,
        fail_status=args.fail_status,
        verbose=args.verbose,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        receiver.start()
    except OSError as exc:
        print(f"otlp_receiver: {exc}", file=sys.stderr)
        return 1
    try:
        # one machine-readable line: stack.Stack waits for it to learn the ports
        ready = {
            "event": "ready",
            "grpc_port": receiver.grpc_port,
            "http_port": receiver.http_port,
            "spans_file": str(spans_file),
        }
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
