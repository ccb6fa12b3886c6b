"""The propagator that reads the incoming trace context, built once, name by name.

``opentelemetry.propagate`` builds its global propagator when first imported: it looks every
``OTEL_PROPAGATORS`` name up among the installed packages' entry points (``importlib.metadata``
reads every ``*.dist-info``, tens of ms of cold start, bench/results/importtime.md), and one
name it cannot find makes the import raise, which dropped every propagator, W3C's included, and
was retried on every call. Here the two built-in propagators are made directly; any other name
is looked up once, at cold start, and one that is not installed is a problem (a warning) and
left out, while the others keep working. ``none`` means no propagation.

Once user code has imported ``opentelemetry.propagate`` (an instrumentation, say), its global
propagator is the one used, so that ``set_global_textmap`` keeps working.

Until anything imports the OpenTelemetry API, the layer does without it (tracing.py): with the
default propagators, ``w3c_parent`` reads ``traceparent`` as the API's W3C propagator does
(same pattern, same refusals; a test holds the two to the same answers), and baggage, which only
the API could read, waits for it (otel_api.py reads it with the API's propagators once loaded).
A name other than ``tracecontext``, ``baggage`` or ``none`` is a plugin of the API: then the API
is loaded at cold start (``needs_api``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import config
from .tracing import Parent

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator

_BUILT_IN = ("tracecontext", "baggage")
# opentelemetry.trace.propagation.tracecontext's pattern and tracestate limit, as they stand.
_TRACEPARENT = re.compile(
    "^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_MAXIMUM_TRACESTATE_LENGTH = 512


def configured(env: Mapping[str, str] = os.environ) -> list[str]:
    """``OTEL_PROPAGATORS``' names, in order, without repeats; [] for ``none``."""
    # Unset or empty means the default, as in opentelemetry.propagate.
    raw = env.get("OTEL_PROPAGATORS") or ",".join(_BUILT_IN)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return [] if "none" in (n.lower() for n in names) else list(dict.fromkeys(names))


def needs_api(names: list[str]) -> bool:
    """A propagator other than the two built-in ones is the API's plugin."""
    return any(name not in _BUILT_IN for name in names)


def w3c_parent(headers: Mapping[str, str]) -> Parent | None:
    """The caller's span from ``traceparent`` (and ``tracestate``), without the API."""
    header = headers.get("traceparent")
    if not header:
        return None
    match = _TRACEPARENT.search(header)
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    if (version == "00" and rest) or version == "ff":
        return None
    state = headers.get("tracestate")
    if state is not None and len(state) > _MAXIMUM_TRACESTATE_LENGTH:
        state = None  # the API's propagator logs and drops it too
    return Parent(int(trace_id, 16), int(span_id, 16), int(flags, 16), state)


def _make(name: str) -> TextMapPropagator | None:
    from opentelemetry.propagators.textmap import TextMapPropagator

    if name == "tracecontext":
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        return TraceContextTextMapPropagator()
    if name == "baggage":
        from opentelemetry.baggage.propagation import W3CBaggagePropagator

        return W3CBaggagePropagator()
    from importlib.metadata import entry_points

    found = entry_points(group="opentelemetry_propagator", name=name)
    reason = "not installed"
    for entry in found:
        try:
            made = entry.load()()
        except Exception as error:  # a broken plugin must not take the others down
            reason = f"failed to load ({type(error).__name__})"
            continue
        if isinstance(made, TextMapPropagator):
            return made
        reason = "not a TextMapPropagator"
    config.problem(config.Problem("OTEL_PROPAGATORS", f"propagator {reason}", "left out", name))
    return None


class Propagation:
    """Made once per environment; ``propagator()`` is read per invocation."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        from opentelemetry.propagators.composite import CompositePropagator

        made = [_make(name) for name in configured(env)]
        self._own = CompositePropagator([p for p in made if p is not None])

    def propagator(self) -> TextMapPropagator:
        propagate = sys.modules.get("opentelemetry.propagate")
        if propagate is None:
            return self._own
        global_textmap: TextMapPropagator = propagate.get_global_textmap()
        return global_textmap
