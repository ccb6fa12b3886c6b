"""The layer's propagator: built-in names without a package scan, the global one otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.propagators.composite import CompositePropagator

from lambda_observability.otel_api import HEADER_GETTER
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


def _trace_id(propagation: Propagation, headers: dict[str, str]) -> str:
    extracted = propagation.propagator().extract(headers, getter=HEADER_GETTER)
    return format(trace.get_current_span(extracted).get_span_context().trace_id, "032x")


def test_an_unknown_name_is_left_out_and_the_others_still_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17 item 5: `tracecontext,b3` (b3 not installed) dropped the W3C parent, said
    nothing, and retried the failed import on every call."""
    import importlib.metadata

    from lambda_observability import config

    config.take_problems()
    lookups: list[str] = []
    real = importlib.metadata.entry_points

    def counting(*, group: str, name: str) -> importlib.metadata.EntryPoints:
        lookups.append(name)
        return real(group=group, name=name)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    propagation = Propagation({"OTEL_PROPAGATORS": "tracecontext,b3"})
    (problem,) = config.take_problems()
    assert (problem.variable, problem.value) == ("OTEL_PROPAGATORS", "b3")
    assert "not installed" in problem.reason
    for _ in range(3):  # per call: no lookup again, the W3C parent kept
        assert _trace_id(propagation, {"traceparent": PARENT}) == PARENT[3:35]
    assert lookups == ["b3"]


def test_xray_is_found_among_installed_propagators() -> None:
    xray = Propagation({"OTEL_PROPAGATORS": "xray"})
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert _trace_id(xray, {"x-amzn-trace-id": header}) == "5759e988bd862e3fe1be46a994272793"


def test_none_means_no_propagation() -> None:
    assert _trace_id(Propagation({"OTEL_PROPAGATORS": "none"}), {"traceparent": PARENT}) == (
        "0" * 32
    )


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
