"""Configuration 4, the common way today: the bare handler wrapped by
opentelemetry-instrumentation-aws-lambda, with the OTel SDK exporting OTLP/HTTP, plus a
prometheus-client push to the Pushgateway before returning.

As the instrumentation's documentation shows: configure a TracerProvider with a
BatchSpanProcessor and the OTLP exporter, define the handler, then call
``AwsLambdaInstrumentor().instrument()``, which wraps ``_HANDLER`` and calls
``force_flush`` on the provider after every invocation, before the response leaves.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aws_lambda import AwsLambdaInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, Counter, push_to_gateway

if TYPE_CHECKING:
    from bench.functions.health.python.health_logic import respond
else:
    from health_logic import respond

provider = TracerProvider(resource=Resource.create())
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

REGISTRY = CollectorRegistry()
CALLS = Counter(
    "healthz_calls", "Total number of calls to the healthz endpoint.", registry=REGISTRY
)
# One group per execution environment, or concurrent environments overwrite each other.
INSTANCE = uuid.uuid4().hex


def handler(event: Any, context: Any) -> dict[str, Any]:
    CALLS.inc()
    response = respond(event)
    url = os.environ.get("PUSHGATEWAY_URL")
    if url:
        try:
            push_to_gateway(
                url,
                job=os.environ.get("PUSHGATEWAY_JOB", "healthz"),
                registry=REGISTRY,
                grouping_key={"instance": INSTANCE},
                timeout=float(os.environ.get("PUSHGATEWAY_TIMEOUT_SECONDS", "0.5")),
            )
        except Exception as error:
            print(f"pushgateway push failed: {error!r}")
    return response


AwsLambdaInstrumentor().instrument(tracer_provider=provider)
