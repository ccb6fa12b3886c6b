"""When an invocation exports: at once while traffic is sparse, once per interval while busy."""

from __future__ import annotations

import itertools

import pytest

from lambda_observability.export import exporter_for
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.policy import GAP_WINDOW, ExportPolicy
from lambda_observability.export.sync import SyncFlush
from lambda_observability.tracing import Tracing, build_resource
from stack.net import free_port
from tests.unit.test_flush import FakeClock, _failures, _settings


def _invocations(policy: ExportPolicy, clock: FakeClock, gaps: list[float]) -> list[bool]:
    """Start an invocation after each gap; which of them export."""
    exported = []
    for gap in gaps:
        clock.now += gap
        policy.started()
        due = policy.due()
        if due:
            policy.attempted()
        exported.append(due)
    return exported


def test_a_new_environment_exports_its_first_invocations() -> None:
    clock = FakeClock()
    exported = _invocations(ExportPolicy(10, 1.0, clock), clock, [0.01] * 20)
    assert exported == [True] * GAP_WINDOW + [False] * 10


def test_sparse_traffic_exports_every_invocation() -> None:
    clock = FakeClock()
    assert _invocations(ExportPolicy(10, 1.0, clock), clock, [2.0] * 20) == [True] * 20


def test_busy_traffic_exports_once_per_interval() -> None:
    clock = FakeClock()
    policy = ExportPolicy(10, 1.0, clock)
    # 20 calls/s for 60 s: the first GAP_WINDOW calls export (a new environment), then one
    # call per 10 s.
    exported = _invocations(policy, clock, [0.05] * 1200)
    assert exported[:GAP_WINDOW] == [True] * GAP_WINDOW
    assert sum(exported) == GAP_WINDOW + 5  # then t = 10.5, 20.5, 30.5, 40.5, 50.5 s
    positions = [i for i, e in enumerate(exported) if e][GAP_WINDOW - 1 :]
    assert all(b - a >= 199 for a, b in itertools.pairwise(positions)), positions


def test_traffic_that_slows_down_goes_back_to_exporting_each_call() -> None:
    clock = FakeClock()
    policy = ExportPolicy(10, 1.0, clock)
    _invocations(policy, clock, [0.05] * 100)
    # The mean of the last 10 gaps reaches 1 s within a few sparse calls.
    tail = _invocations(policy, clock, [5.0] * 5)
    assert tail[-2:] == [True, True]


def test_interval_zero_exports_every_invocation() -> None:
    clock = FakeClock()
    assert _invocations(ExportPolicy(0, 1.0, clock), clock, [0.01] * 50) == [True] * 50


def test_an_outage_costs_one_failed_attempt_per_interval() -> None:
    """A failed attempt counts as an attempt: a down backend is not retried on every call."""
    refused = f"http://127.0.0.1:{free_port()}"
    clock = FakeClock()
    tracing = Tracing(build_resource("healthz", None), 16, install_global=False)
    exporter = exporter_for(_settings(refused), tracing, FailureReporter(clock=clock))
    exporter.backends[0].use_exporter(None)  # type: ignore[attr-defined]
    flush = SyncFlush(exporter, ExportPolicy(10, 1.0, clock))
    before = _failures("pushgateway")
    for _ in range(600):  # 30 s at 20 calls/s
        clock.now += 0.05
        flush.policy.started()
        flush.after_invocation("req", 3.0)
    # The first GAP_WINDOW calls, then t = 10.5 and 20.5 s (30.5 s is the next).
    assert _failures("pushgateway") == before + GAP_WINDOW + 2


@pytest.mark.parametrize("interval", [5.0, 20.0])
def test_exports_per_interval_never_exceed_one_when_busy(interval: float) -> None:
    clock = FakeClock()
    policy = ExportPolicy(interval, 1.0, clock)
    exported = _invocations(policy, clock, [0.01] * 10_000)  # 100 s at 100 calls/s
    assert sum(exported) <= GAP_WINDOW + 100 / interval
