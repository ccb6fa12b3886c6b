"""A small OTLP trace receiver for local runs and tests.

No OpenTelemetry Collector package can be installed here, so this speaks just enough
OTLP to stand in for one: TraceService/Export over gRPC and ``POST /v1/traces``
(binary protobuf, optionally gzip) over HTTP. Every span is kept in memory and appended
as one JSON line to a file; ``GET /spans`` / ``DELETE /spans`` on the HTTP port let
tests read and reset them. It has no fault controls of its own: a slow or failing backend is
``stack.faultproxy`` in front of it (``OtlpReceiverProcess`` starts one).

Run it alone with ``python -m stack.otlp_receiver``; it prints one JSON "ready" line
with the bound ports on stdout once both servers listen.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import sys
import tempfile
import threading
import time
import zlib
from concurrent import futures
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import (  # type: ignore[import-untyped, unused-ignore]
    DecodeError,
    Message,
)
from google.rpc import status_pb2  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

from stack._proc import Service
from stack.net import HOST, stop_event

DEFAULT_GRPC_PORT = 4317
DEFAULT_HTTP_PORT = 4318
MAX_BODY_BYTES = 64 * 1024 * 1024

ExportRequest = trace_service_pb2.ExportTraceServiceRequest
ExportResponse = trace_service_pb2.ExportTraceServiceResponse
JSON = Any  # recursive JSON values: typing them fully buys nothing here


# ---------------------------------------------------------------------------
# protobuf -> JSON-friendly dicts
#
# json_format does the walk over every field; what follows only turns its protobuf-JSON
# spellings into what the tests read: ids in lowercase hex (not base64, as OTLP/JSON writes
# them too), 64-bit integers as ints, and attribute lists as flat {key: python value} dicts.

_HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


def _to_dict(message: Message) -> dict[str, JSON]:
    return dict(
        json_format.MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,  # "" for a root span's parent_span_id
        )
    )


def _hex(b64: str) -> str:
    return base64.b64decode(b64).hex()


def any_value(value: dict[str, JSON]) -> JSON:
    """An AnyValue (as MessageToDict writes it) as the matching plain Python value."""
    for kind, inner in value.items():  # a oneof: at most one key
        if kind == "array_value":
            return [any_value(v) for v in inner.get("values", [])]
        if kind == "kvlist_value":
            return attributes(inner.get("values", []))
        if kind == "bytes_value":
            return _hex(inner)
        if kind == "int_value":  # 64-bit integers are JSON strings in protobuf's mapping
            return int(inner)
        return inner
    return None


def attributes(kvs: list[dict[str, JSON]]) -> dict[str, JSON]:
    """Repeated KeyValue as a dict (later duplicates win, like the SDK)."""
    return {kv["key"]: any_value(kv.get("value", {})) for kv in kvs}


def _plain(node: JSON, key: str = "") -> JSON:
    if key in _HEX_FIELDS:
        return _hex(node)
    if key == "attributes":
        return attributes(node)
    if key.endswith("_unix_nano"):  # fixed64: a JSON string too
        return int(node)
    if isinstance(node, dict):
        return {k: _plain(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, key) for v in node]
    return node


def span_records(request: ExportRequest, transport: str) -> list[dict[str, JSON]]:
    """Flatten an export request (resource -> scope -> spans) into one record per span: the
    span's own fields, plus ``resource_attributes``, ``scope``, ``transport``, ``received_at``."""
    received_at = time.time()
    records: list[dict[str, JSON]] = []
    for rs in _plain(_to_dict(request)).get("resource_spans", []):
        resource = rs.get("resource", {}).get("attributes", {})
        for ss in rs.get("scope_spans", []):
            scope = ss.get("scope", {"name": "", "version": ""})
            extra = {"resource_attributes": resource, "scope": scope}
            records.extend(
                {**span, **extra, "transport": transport, "received_at": received_at}
                for span in ss.get("spans", [])
            )
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


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc, unused-ignore]
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: ExportRequest, context: Any) -> ExportResponse:  # noqa: N802 (gRPC name)
        self._receiver.handle(request, "grpc")
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
        # OTLP/HTTP: error bodies are a google.rpc.Status in the request's encoding; every
        # error this receiver answers is the client's (a bad route, size, type or encoding)
        code = (
            grpc.StatusCode.NOT_FOUND
            if status == HTTPStatus.NOT_FOUND
            else grpc.StatusCode.INVALID_ARGUMENT
        )
        body = status_pb2.Status(code=code.value[0], message=message).SerializeToString()
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
        elif url.path == "/stats":
            self._send_json(200, receiver.stats())
        else:
            self._send_json(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/spans":
            self._send_json(200, {"deleted": self.server.receiver.store.clear()})
        else:
            self._send_json(404, {"error": "not found"})

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
        self.server.receiver.handle(request, "http")
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
        verbose: bool = False,
    ) -> None:
        self.store = SpanStore(Path(spans_file) if spans_file is not None else None)
        self.verbose = verbose
        self._requested = (grpc_port, http_port)
        self._grpc_server: Any = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._requests = {"grpc": 0, "http": 0}
        self.grpc_port = 0
        self.http_port = 0

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{HOST}:{self.grpc_port}"

    def handle(self, request: ExportRequest, transport: str) -> None:
        """Count the export and store its spans."""
        with self._stats_lock:
            self._requests[transport] += 1
        self.store.add(span_records(request, transport))

    def stats(self) -> dict[str, JSON]:
        with self._stats_lock:
            return {
                "requests": dict(self._requests),
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
        verbose=args.verbose,
    )
    stop = stop_event()
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
        stop.wait()
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
