"""Async export: the client never waits for telemetry, yet the telemetry arrives.

A slow OTLP backend (the receiver delays every answer) is where the modes differ: in sync mode
each response waits for the export, in async mode the internal extension exports after the
runtime has posted the response, while the local runtime (like Lambda) keeps the environment
busy until the extension is done.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from stack import Stack
from tests.e2e.test_proof import TEMPLATE
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration

DELAY_MS = 300
REQUESTS = 6


@pytest.fixture(scope="module")
def slow_stack() -> Iterator[Stack]:
    with Stack(delay_ms=DELAY_MS) as running:
        yield running


def _warm_latencies(rt: LocalRT) -> tuple[list[float], list[dict[str, float]]]:
    assert rt.get("/healthz").status_code == 200  # cold start, not measured
    client = []
    for _ in range(REQUESTS):
        # Let the previous export finish: with one environment a request sent earlier would
        # wait for it (on Lambda another environment would start, or the call be throttled).
        assert wait_until(rt.idle, 5)
        response = rt.get("/healthz")
        assert response.status_code == 200
        client.append(response.elapsed.total_seconds() * 1000)
    invocations = rt.stats()["invocations"][1:]
    return client, invocations


def _run(stack: Stack, mode: str) -> tuple[list[float], list[dict[str, float]]]:
    stack.reset()
    env = {**stack.env(), "OBSERVABILITY_EXPORT_MODE": mode}
    rt = LocalRT("--concurrency", "1", template=TEMPLATE, env=base_env(**env))
    try:
        client, invocations = _warm_latencies(rt)
        assert wait_until(lambda: len(stack.spans()) == REQUESTS + 1, 10), stack.spans()
        log = rt.text()
    finally:
        rt.stop()
    assert f'"export_mode":"{mode}"' in log
    return client, invocations


def test_async_response_does_not_wait_for_a_slow_backend(slow_stack: Stack) -> None:
    client, invocations = _run(slow_stack, "async")
    # The response leaves before the 300 ms export: far below the backend's delay...
    assert statistics.median(client) < DELAY_MS / 2, client
    # ...while the environment stays busy exporting after it (Lambda bills this time).
    assert statistics.median(inv["billed_ms"] for inv in invocations) >= DELAY_MS * 0.9
    assert all(inv["client_ms"] < inv["billed_ms"] for inv in invocations)
    # Every span arrived (checked in _run), and the counter reached the Pushgateway.
    slow_stack.wait_for_scrape()
    assert slow_stack.query_value('sum(healthz_calls_total{job="healthz"})') == REQUESTS + 1


def test_sync_response_pays_the_backend_delay(slow_stack: Stack) -> None:
    client, _ = _run(slow_stack, "sync")
    assert statistics.median(client) >= DELAY_MS * 0.9, client
