"""The propagator that reads the incoming trace context, chosen without scanning packages.

``opentelemetry.propagate`` builds its global propagator when first imported: with
``OTEL_PROPAGATORS`` set, even to the built-in ``tracecontext,baggage``, it looks every name up
among the installed packages' entry points (``importlib.metadata`` reads every
``*.dist-info``), tens of ms of cold start (bench/results/importtime.md). The two built-in
propagators are made here directly, as ``opentelemetry.propagate`` makes them when the
variable is unset; any other name (``xray``, ``xray-lambda``, ``b3``, ``none``, ...) goes
through ``opentelemetry.propagate``, with its own errors. Once anything has imported
``opentelemetry.propagate`` (user code, an instrumentation), its global propagator is the one
used, so that ``set_global_textmap`` keeps working.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from opentelemetry.propagators.textmap import TextMapPropagator

_BUILT_IN = ("tracecontext", "baggage")


def _configured(env: Mapping[str, str]) -> list[str]:
    # Unset or empty means the default, as in opentelemetry.propagate.
    raw = env.get("OTEL_PROPAGATORS") or ",".join(_BUILT_IN)
    return [name.strip() for name in raw.split(",")]


def _built_in(names: list[str]) -> TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    made = {"tracecontext": TraceContextTextMapPropagator, "baggage": W3CBaggagePropagator}
    return CompositePropagator([made[name]() for name in names])


class Propagation:
    """Made once per environment; ``propagator()`` is read per invocation."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        names = _configured(env)
        self._own = _built_in(names) if all(n in _BUILT_IN for n in names) else None

    def propagator(self) -> TextMapPropagator:
        if self._own is not None and "opentelemetry.propagate" not in sys.modules:
            return self._own
        from opentelemetry import propagate

        return propagate.get_global_textmap()
