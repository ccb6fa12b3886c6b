"""Fixtures for in-process tests of the function and the layer."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import app
from lambda_observability import logger
from lambda_observability.instrument import instrumentation


@dataclass
class FakeLambdaContext:
    """The attributes awslambdaric's LambdaContext offers, with a controllable clock."""

    aws_request_id: str = "0f1e2d3c-0000-4000-8000-000000000001"
    function_name: str = "healthz"
    function_version: str = "7"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:healthz"
    remaining_ms: int = 3000
    log_group_name: str = "/aws/lambda/healthz"
    log_stream_name: str = "2026/11/24/[$LATEST]abc"
    extra: dict[str, Any] = field(default_factory=dict)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def context() -> FakeLambdaContext:
    return FakeLambdaContext()


class LogCapture:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def raw(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    handler = logger.registered_handler
    assert isinstance(handler, __import__("logging").StreamHandler)
    previous = handler.setStream(capture.stream)
    try:
        yield capture
    finally:
        handler.setStream(previous)


class SpanCapture:
    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def spans() -> Iterator[SpanCapture]:
    exporter = InMemorySpanExporter()
    tracing = instrumentation().tracing
    tracing.queue.drain()
    instrumentation().spans.use_exporter(exporter)
    try:
        yield SpanCapture(exporter)
    finally:
        instrumentation().spans.use_exporter(None)


def invoke(event: Any, context: FakeLambdaContext) -> dict[str, Any]:
    response: dict[str, Any] = app.handler(event, context)
    return response
