"""Spans as the Collector's file exporter writes them, read back as one flat record per span.

The file exporter (``format: json``) writes each export request it consumed as one line of
OTLP/JSON: an ``ExportTraceServiceRequest`` with lowerCamelCase names, ids in hex, 64-bit
integers as strings and enums as numbers. Each line is parsed into the protobuf message
(``opentelemetry-proto``) and protobuf's ``json_format`` walks every field of it back out, so no
field is dropped by a hand-written conversion. The records read as the tests expect: snake_case
names, ids in lowercase hex (``parent_span_id`` is ``""`` for a root span), enums by name
(``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``), ``*_unix_nano`` as ints and attribute lists as
flat ``{key: python value}`` dicts, with the span's ``resource_attributes``, ``scope`` and the
``transport`` it came by.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ExportRequest = trace_service_pb2.ExportTraceServiceRequest
JSON = Any  # recursive JSON values: typing them fully buys nothing here

# OTLP/JSON writes these in hex, where protobuf's JSON mapping of `bytes` is base64.
_OTLP_HEX_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})
_HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})


def _hex_ids_to_base64(node: JSON, key: str = "") -> JSON:
    if key in _OTLP_HEX_FIELDS and isinstance(node, str):
        return base64.b64encode(bytes.fromhex(node)).decode()
    if isinstance(node, dict):
        return {k: _hex_ids_to_base64(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def parse_line(line: str | bytes) -> ExportRequest:
    """One line of the file exporter's JSON output as the export request it was."""
    request = ExportRequest()
    json_format.ParseDict(_hex_ids_to_base64(json.loads(line)), request)
    return request


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


def span_records(request: ExportRequest, transport: str | None) -> list[dict[str, JSON]]:
    """Flatten an export request (resource -> scope -> spans) into one record per span: the
    span's own fields, plus ``resource_attributes``, ``scope`` and ``transport`` (``"grpc"``,
    ``"http"``, or None where one receiver took both)."""
    records: list[dict[str, JSON]] = []
    for rs in _plain(_to_dict(request)).get("resource_spans", []):
        resource = rs.get("resource", {}).get("attributes", {})
        for ss in rs.get("scope_spans", []):
            scope = ss.get("scope", {"name": "", "version": ""})
            extra = {"resource_attributes": resource, "scope": scope, "transport": transport}
            records.extend({**span, **extra} for span in ss.get("spans", []))
    return records
