"""Structured logs: one Powertools Logger per environment, joined to the current span."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from . import config, lazy, tracing

# Powertools' package __init__ imports its Metrics and Tracer, and its Logger's module imports
# jmespath for correlation id paths the layer does not use (``inject_lambda_context`` gets the
# id from the layer's reading of the event): both run on first use instead (lazy.py).
_PACKAGE_DEFERRED = lazy.defer("aws_lambda_powertools")
lazy.defer("aws_lambda_powertools.utilities.jmespath_utils")
if _PACKAGE_DEFERRED:
    from aws_lambda_powertools.package_logger import set_package_logger_handler

    set_package_logger_handler()  # type: ignore[no-untyped-call]  # as the package __init__ does

from aws_lambda_powertools.logging import Logger  # noqa: E402  (after the deferrals)

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _TraceContextFilter(logging.Filter):
    """Stamp each record with the active span's ids so that logs and traces join.

    Read per record, not once per invocation, so that lines written inside a child span carry
    the child's span id.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ids = tracing.current_ids()
        if ids is not None:
            record.trace_id = format(ids[0], "032x")
            record.span_id = format(ids[1], "016x")
        return True


def dumps(log: Any) -> str:
    """Powertools' serialisation (UTF-8 kept), unless the line holds a lone surrogate.

    An event's ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 stream can
    write: the whole line would become a traceback. Such a line is written with ASCII escapes
    instead, still one JSON object. ``isascii`` keeps the usual line's cost to one scan.
    """
    text = json.dumps(log, default=str, separators=(",", ":"), ensure_ascii=False)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(log, default=str, separators=(",", ":"))
    return text


def log_level(env: Mapping[str, str] = os.environ) -> str | None:
    """``POWERTOOLS_LOG_LEVEL`` (or ``LOG_LEVEL``); None when unset (Powertools' own default
    and Lambda's log level controls apply), INFO when unknown.

    Powertools raises at import on an unknown level (``trace``): a Runtime.InitError for a
    typo. Here it is a problem and INFO.
    """
    name = "POWERTOOLS_LOG_LEVEL" if env.get("POWERTOOLS_LOG_LEVEL") else "LOG_LEVEL"
    raw = (env.get(name) or "").strip()
    level = raw.upper()
    if not raw:
        return None
    if level == "WARN":
        return "WARNING"
    if level not in LEVELS:
        config.problem(config.Problem(name, f"not one of {', '.join(LEVELS)}", "INFO", raw))
    return level if level in LEVELS else "INFO"


def _build_logger(service: str) -> Logger:
    built = Logger(service=service, level=log_level(), json_serializer=dumps)
    built.addFilter(_TraceContextFilter())
    return built


logger = _build_logger(config.service_name())
