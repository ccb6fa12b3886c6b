"""The faults again, under the export policy instead of an export after every call.

The fault campaign (test_telemetry_faults.py) exports after every call, so that each failure is
attributed to its request. Here a busy environment exports once per interval (short, so the
test stays short), and both backends break together while traffic flows: refused, blackhole,
an answer trickled byte by byte, and HTTP 500. What must still hold: every answer 200 within
its bound, the environment never recycled, at most one failed attempt per backend per interval,
and after a graceful stop every call counted and every span delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from stack import Stack
from stack.faultproxy import FaultProxy
from tests.e2e.test_proof import TEMPLATE
from tests.faults.campaign import ASYNC_CLIENT_BOUND_S, COLD_BOUND_S, OVERHEAD_S, pushgateway_value
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
RATE = 10.0  # calls per second, one environment
FAULT_S = 2.5
FAULTS: dict[str, Callable[[FaultProxy], object]] = {
    "refused": lambda p: p.refuse(),
    "blackhole": lambda p: p.blackhole(hold_s=3.0),
    "trickle": lambda p: p.trickle(200),
    "http-500": lambda p: p.status(500),
}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_faults_hold_under_the_export_policy(stack: Stack, mode: str) -> None:
    job = f"policy_faults_{mode}"
    with (
        FaultProxy(stack.pushgateway_url) as gateway,
        FaultProxy(stack.otlp_http_endpoint) as receiver,
    ):
        env = {
            **stack.env(),
            "PUSHGATEWAY_URL": gateway.url,
            "PUSHGATEWAY_JOB": job,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_RESOURCE_ATTRIBUTES": f"policy.faults={mode}",
            "OBSERVABILITY_EXPORT_MODE": mode,
            "OBSERVABILITY_EXPORT_INTERVAL_SECONDS": str(INTERVAL_S),
        }
        rt = LocalRT("--concurrency", "1", template=TEMPLATE, env=base_env(**env))
        latencies: list[tuple[str, float, int]] = []

        def traffic(phase: str, seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                # Async: the previous export may still run; on Lambda a request would go to
                # another environment, not wait, so wait here before sending.
                assert wait_until(rt.idle, 5)
                response = rt.get("/healthz")
                latencies.append((phase, response.elapsed.total_seconds(), response.status_code))
                time.sleep(1 / RATE)

        try:
            traffic("warm-up", 2.0)  # past a new environment's first calls, each exported
            for name, apply in FAULTS.items():
                apply(gateway)
                apply(receiver)
                traffic(name, FAULT_S)
                gateway.passthrough()
                receiver.passthrough()
                traffic(f"{name}:recovery", FAULT_S)
            stats = rt.stats()
        finally:
            code = rt.stop()  # SIGTERM: the final flush
        calls = len(latencies)
        # Every answer 200, within its bound; one environment served them all.
        assert {status for _, _, status in latencies} == {200}
        bound = ASYNC_CLIENT_BOUND_S if mode == "async" else 0.5 + OVERHEAD_S
        warm = [elapsed for _, elapsed, _ in latencies[1:]]
        assert latencies[0][1] <= COLD_BOUND_S
        assert max(warm) <= bound, max(warm)
        assert code == 0
        assert stats["summary"]["environments_started"] == 1
        assert stats["summary"]["failures"] == 0
        # At most one failed attempt per backend per interval while a fault lasted.
        most = len(FAULTS) * (FAULT_S / INTERVAL_S + 1)
        for backend in ("pushgateway", "otlp"):
            failures = pushgateway_value(
                stack, job, "telemetry_export_failures_total", backend=backend
            )
            assert failures is not None and 1 <= failures <= most, (backend, failures)
        # Nothing lost: every call counted, every span delivered (at least once).
        assert pushgateway_value(stack, job, "healthz_calls_total") == calls
        spans = [
            s
            for s in stack.spans()
            if s.get("resource_attributes", {}).get("policy.faults") == mode
        ]
        assert len({s["attributes"]["faas.invocation_id"] for s in spans}) == calls
        print(
            f"{mode}: {calls} calls, max warm {max(warm) * 1000:.0f} ms (bound {bound * 1000:.0f})"
        )
