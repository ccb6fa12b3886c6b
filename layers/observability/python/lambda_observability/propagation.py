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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from opentelemetry.propagators.textmap import TextMapPropagator

from . import config

_BUILT_IN = ("tracecontext", "baggage")


def _configured(env: Mapping[str, str]) -> list[str]:
    # Unset or empty means the default, as in opentelemetry.propagate.
    raw = env.get("OTEL_PROPAGATORS") or ",".join(_BUILT_IN)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return [] if "none" in (n.lower() for n in names) else list(dict.fromkeys(names))


def _make(name: str) -> TextMapPropagator | None:
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

        made = [_make(name) for name in _configured(env)]
        self._own = CompositePropagator([p for p in made if p is not None])

    def propagator(self) -> TextMapPropagator:
        propagate = sys.modules.get("opentelemetry.propagate")
        if propagate is None:
            return self._own
        global_textmap: TextMapPropagator = propagate.get_global_textmap()
        return global_textmap
