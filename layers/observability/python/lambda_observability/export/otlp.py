"""OTLP span exporters that make one attempt per export and end by a hard deadline.

The SDK's OTLP exporters retry with backoff until a timeout fixed when they are built, and the
HTTP one bounds each socket read, not the request: a collector that trickles its answer held an
export for minutes (opentelemetry-python #2663). Bounding them by what is left of an invocation
meant setting their private attributes. These use the SDK's own protobuf encoder
(``encode_spans``) and the standard ``OTEL_EXPORTER_OTLP_*`` variables, and send with a deadline
that the caller passes in: over the layer's HTTP client (``http/protobuf``), or with gRPC's own
per-call deadline (``grpc``). A failed attempt is not retried here: the spans go back to the
queue and leave with the next export.
"""

from __future__ import annotations

import gzip
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import config
from ..errors import TelemetryError
from . import http_client

# The SDK's default, 10 s, is far too long to hold a Lambda invocation; applies only when
# neither OTEL_EXPORTER_OTLP_TRACES_TIMEOUT nor OTEL_EXPORTER_OTLP_TIMEOUT is set (seconds, as
# the Python SDK reads them).
DEFAULT_TIMEOUT_SECONDS = 0.5


class OtlpExportError(TelemetryError):
    """One export attempt failed; the message says why, never with a header or credential."""


# RFC 9110 token characters: what a header name may hold.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_headers(raw: str, variable: str) -> dict[str, str]:
    """``key=value,key2=value2`` (values percent-decoded), as the OTLP exporter spec says.

    The SDK's parser logs the whole raw string, secrets included, when one entry is off. Here
    an entry that cannot be sent is left out with a problem that names its key at most; a
    curl-style ``key: value`` is read as ``key=value``.
    """
    headers: dict[str, str] = {}
    for position, entry in enumerate(raw.split(","), start=1):
        if not entry.strip():
            continue
        name, equals, value = entry.partition("=")
        if not equals:
            name, colon, value = entry.partition(":")
            if not colon:
                config.problem(
                    config.Problem(f"{variable} (entry {position})", "not key=value", "left out")
                )
                continue
        name = unquote(name).strip().lower()
        value = unquote(value).strip()
        if not name or not set(name) <= _TOKEN:
            config.problem(
                config.Problem(f"{variable} (entry {position})", "not a header name", "left out")
            )
            continue
        if any(ord(c) < 32 or ord(c) == 127 for c in value) or not value.isprintable():
            config.problem(
                config.Problem(
                    f"{variable} ({name})", "value has control characters", "header left out"
                )
            )
            continue
        headers[name] = value
    return headers


def _setting(env: Mapping[str, str], name: str) -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``, else ''."""
    return (
        env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}") or ""
    ).strip()


def _variable(env: Mapping[str, str], name: str) -> str:
    """The variable that sets ``name``: the traces-specific one if set."""
    specific = f"OTEL_EXPORTER_OTLP_TRACES_{name}"
    return specific if (env.get(specific) or "").strip() else f"OTEL_EXPORTER_OTLP_{name}"


def _timeout(env: Mapping[str, str]) -> float:
    return config.number(env, _variable(env, "TIMEOUT"), DEFAULT_TIMEOUT_SECONDS)


def _headers(env: Mapping[str, str]) -> dict[str, str]:
    return parse_headers(_setting(env, "HEADERS"), _variable(env, "HEADERS"))


def compression(env: Mapping[str, str]) -> str:
    return config.choice(env, _variable(env, "COMPRESSION"), ("none", "gzip", "deflate"))


class _BoundedExporter(SpanExporter):
    """``send`` with a deadline for the layer; ``export`` for anyone else (SDK interface)."""

    timeout: float

    def send(self, spans: Sequence[ReadableSpan], deadline: float) -> None:
        raise NotImplementedError

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.send(spans, time.monotonic() + self.timeout)
        except Exception:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpHttpSpanExporter(_BoundedExporter):
    """OTLP/HTTP with protobuf, over the layer's deadline-bounded HTTP client."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        explicit = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
        self.endpoint = explicit or f"{base.rstrip('/')}/v1/traces"
        self.timeout = _timeout(env)
        self.headers = {**_headers(env), "content-type": "application/x-protobuf"}
        self.compression = compression(env)
        if self.compression != "none":
            self.headers["content-encoding"] = self.compression
        certificate = _setting(env, "CERTIFICATE")
        client_cert = _setting(env, "CLIENT_CERTIFICATE")
        self._tls = (
            http_client.tls_context(
                certificate or None, client_cert, _setting(env, "CLIENT_KEY") or None
            )
            if certificate or client_cert
            else None
        )

    def send(self, spans: Sequence[ReadableSpan], deadline: float) -> None:
        body = encode_spans(spans).SerializePartialToString()
        if self.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        elif self.compression == "deflate":
            body = zlib.compress(body)
        deadline = min(deadline, time.monotonic() + self.timeout)
        http_client.request(self.endpoint, "POST", deadline, self.headers, body, self._tls)


class OtlpGrpcSpanExporter(_BoundedExporter):
    """OTLP/gRPC; needs the optional ``grpcio`` (layers/observability/requirements-grpc.txt)."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
            TraceServiceStub,
        )

        endpoint = _setting(env, "ENDPOINT") or "http://localhost:4317"
        parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        target = parts.netloc or endpoint
        insecure_setting = _setting(env, "INSECURE").lower()
        insecure = parts.scheme == "http" or (
            parts.scheme != "https" and insecure_setting == "true"
        )
        self.timeout = _timeout(env)
        self.metadata = tuple(_headers(env).items())
        self._compression = {
            "gzip": grpc.Compression.Gzip,
            "deflate": grpc.Compression.Deflate,
        }.get(compression(env), grpc.Compression.NoCompression)
        if insecure:
            self._channel = grpc.insecure_channel(target)
        else:
            certificate = _setting(env, "CERTIFICATE")
            roots = _read(certificate) if certificate else None
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots))
        self._stub: Any = TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._rpc_error = grpc.RpcError

    def send(self, spans: Sequence[ReadableSpan], deadline: float) -> None:
        left = min(deadline, time.monotonic() + self.timeout) - time.monotonic()
        if left <= 0:
            raise OtlpExportError("no time left to export", kind="timeout")
        try:
            # gRPC's timeout is a deadline for the whole call, enforced by its core.
            self._stub.Export(
                encode_spans(spans),
                metadata=self.metadata,
                timeout=left,
                compression=self._compression,
            )
        except self._rpc_error as error:
            code = error.code() if hasattr(error, "code") else None
            name = getattr(code, "name", "UNKNOWN")
            kind = "timeout" if name == "DEADLINE_EXCEEDED" else f"grpc {name.lower()}"
            raise OtlpExportError(f"gRPC {name}", kind=kind) from None

    def shutdown(self) -> None:
        self._channel.close()


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()
