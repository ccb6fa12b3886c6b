"""A tiny function for tests/localrt/test_otel_lambda_collector.py: one span per call, sent by
the plain OpenTelemetry SDK over OTLP/HTTP to the collector extension
(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, localhost), before returning, as
opentelemetry-instrumentation-aws-lambda's force_flush does."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "otelcol-ext-test"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(timeout=2)))
tracer = provider.get_tracer(__name__)


def handler(event: Any, context: Any) -> dict[str, Any]:
    with tracer.start_as_current_span("invocation") as span:
        span.set_attribute("faas.invocation_id", context.aws_request_id)
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "ok"}
