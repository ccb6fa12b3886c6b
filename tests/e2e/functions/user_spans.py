"""A user's handler: its own tracer, a child span, and a log line inside it."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from lambda_observability import logger, observe

tracer = trace.get_tracer("user.code")


@observe
def handler(event: Any, context: Any) -> dict[str, Any]:
    with tracer.start_as_current_span("load-config") as span:
        span.set_attribute("user.recording", span.is_recording())
        logger.info("inside the child span")
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "done"}
