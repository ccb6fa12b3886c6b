"""The layer's propagator: built-in names without a package scan, the global one otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.propagators.composite import CompositePropagator

from lambda_observability.http_event import HEADER_GETTER
from lambda_observability.propagation import Propagation

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "configured", [None, "", "tracecontext,baggage", " baggage , tracecontext"]
)
def test_built_in_names_read_traceparent(configured: str | None) -> None:
    env = {} if configured is None else {"OTEL_PROPAGATORS": configured}
    context = Propagation(env)._own
    assert context is not None
    extracted = context.extract({"traceparent": PARENT}, getter=HEADER_GETTER)
    span_context = trace.get_current_span(extracted).get_span_context()
    assert format(span_context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_other_names_go_through_opentelemetry_propagate() -> None:
    # xray, b3, none, typos: opentelemetry.propagate resolves them (and reports its errors).
    assert Propagation({"OTEL_PROPAGATORS": "tracecontext,xray"})._own is None
    assert Propagation({"OTEL_PROPAGATORS": "none"})._own is None


@pytest.fixture
def global_textmap() -> Iterator[None]:
    from opentelemetry import propagate

    previous = propagate.get_global_textmap()
    try:
        yield
    finally:
        propagate.set_global_textmap(previous)


@pytest.mark.usefixtures("global_textmap")
def test_a_global_propagator_someone_set_is_used() -> None:
    from opentelemetry import propagate

    custom = CompositePropagator([])
    propagate.set_global_textmap(custom)
    assert Propagation({})._own is not None
    assert Propagation({}).propagator() is custom
