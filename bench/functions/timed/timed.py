"""The real function, with each piece of a warm invocation timed inside the environment.

Used by ``python -m bench.inenv`` only. It wraps public seams of the function and the layer
(the handler, ``@observe``'s invocation, the routing, the logger, the tracer, the event's
parse, the span's end) with timers, and writes each call's figures to ``BENCH_PIECES_FILE``
(a JSON object of lists, in ns) every few calls, outside the timed region.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The function's own directory: this wrapper is a function of bench/template.yaml of its own.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "functions" / "healthz"))


import app
from lambda_observability import http_event, logger
from lambda_observability.instrument import Instrumentation, instrumentation
from lambda_observability.tracing import LightSpan

# What bench/inenv.py reports, by these keys.
PIECES = ("whole", "observe", "function", "log_line", "span", "parse")

_now = time.perf_counter_ns
_current: dict[str, int] = defaultdict(int)
_calls: dict[str, list[int]] = defaultdict(list)
_out = os.environ.get("BENCH_PIECES_FILE", "")


def _timed(piece: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = _now()
        try:
            return function(*args, **kwargs)
        finally:
            _current[piece] += _now() - started

    return timed


tracing = instrumentation().tracing
tracing.start_span = _timed("span", tracing.start_span)  # type: ignore[method-assign]
LightSpan.end = _timed("span", LightSpan.end)  # type: ignore[method-assign]
logger.info = _timed("log_line", logger.info)  # type: ignore[method-assign]
http_event.parse = _timed("parse", http_event.parse)
Instrumentation.invoke = _timed("observe", Instrumentation.invoke)  # type: ignore[method-assign]
app.route = _timed("function", app.route)
_handler = _timed("whole", app.handler)


def handler(event: Any, context: Any) -> Any:
    _current.clear()
    response = _handler(event, context)
    for piece in PIECES:
        _calls[piece].append(_current[piece])
    if _out and len(_calls["whole"]) % 10 == 0:
        Path(_out).write_text(json.dumps(_calls))
    return response
