"""Structured logs: one Powertools Logger per environment, joined to the current span."""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger
from opentelemetry import trace

from .config import Settings


class _TraceContextFilter(logging.Filter):
    """Stamp each record with the active span's ids so that logs and traces join.

    Read per record, not once per invocation, so that lines written inside a child span carry
    the child's span id.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


def _build_logger(service: str) -> Logger:
    built = Logger(service=service)
    built.addFilter(_TraceContextFilter())
    return built


logger = _build_logger(Settings.from_env().service_name)
