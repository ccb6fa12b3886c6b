"""Configuration 5: lambda-otel-lite around the bare handler, exporting OTLP/HTTP.

Its mode comes from ``LAMBDA_EXTENSION_SPAN_PROCESSOR_MODE``: ``sync`` flushes in the handler,
``async`` flushes from its internal extension after the response. Its default exporter writes
spans to stdout for a forwarder; here it gets the OTLP/HTTP exporter (its ``otlp-http`` extra,
as its README shows) so that it sends to the same receiver as the other configurations.
lambda-otel-lite does traces only: no metrics are pushed in this configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lambda_otel_lite import create_traced_handler, init_telemetry
from lambda_otel_lite.extractors import api_gateway_v1_extractor
from lambda_otel_lite.processor import LambdaSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

if TYPE_CHECKING:
    from bench.functions.health.python.health_logic import respond
else:
    from health_logic import respond

tracer, completion_handler = init_telemetry(
    span_processors=[LambdaSpanProcessor(OTLPSpanExporter())]
)
traced = create_traced_handler(
    "healthz", completion_handler, attributes_extractor=api_gateway_v1_extractor
)


@traced
def handler(event: Any, context: Any) -> dict[str, Any]:
    return respond(event)
