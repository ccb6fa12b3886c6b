"""SIGTERM while an async export is still in flight: the final flush delivers everything.

Both backends answer slowly (the FaultProxy holds each answer for 3 s), so the export that the
internal extension starts after the response is stuck when localrt stops. The backends then come
back and localrt sends SIGTERM with Lambda's budget (``--grace-seconds 0.5``, then SIGKILL). The
final flush must send, on connections of its own, the count and the spans of the stuck export.
"""

from __future__ import annotations

import time

import pytest

from stack import Stack
from stack.faultproxy import FaultProxy
from tests.e2e.test_proof import TEMPLATE
from tests.faults.campaign import pushgateway_value
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration


def test_sigterm_during_an_in_flight_export_delivers_within_500_ms() -> None:
    with (
        Stack() as stack,
        FaultProxy(stack.pushgateway_url) as gateway,
        FaultProxy(stack.otlp_http_endpoint) as receiver,
    ):
        env = {
            **stack.env(),
            "PUSHGATEWAY_URL": gateway.url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OBSERVABILITY_EXPORT_MODE": "async",
            "PUSHGATEWAY_TIMEOUT_SECONDS": "2.5",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
        }
        rt = LocalRT(
            "--concurrency", "1", "--grace-seconds", "0.5", template=TEMPLATE, env=base_env(**env)
        )
        try:
            assert rt.get("/healthz").status_code == 200  # cold start, exported normally
            assert wait_until(lambda: len(stack.spans()) == 1, 10)
            gateway.slow(3000)
            receiver.slow(3000)
            assert rt.get("/healthz").status_code == 200
            # The export is now held by both proxies; the environment is busy with it.
            assert wait_until(
                lambda: gateway.stats()["requests"] >= 2 and receiver.stats()["requests"] >= 2, 5
            ), (gateway.stats(), receiver.stats())
            assert rt.stats()["environments"][0]["state"] != "idle"
            gateway.passthrough()
            receiver.passthrough()
            began = time.monotonic()
        finally:
            code = rt.stop()
        stopped_s = time.monotonic() - began
        log = rt.text()
        assert code == 0
        assert "still running after" not in log, log  # not SIGKILLed: the flush fit the budget
        # Everything arrived, although the stuck export never finished.
        assert pushgateway_value(stack, "healthz", "healthz_calls_total") == 2
        request_ids = {s["attributes"]["faas.invocation_id"] for s in stack.spans()}
        assert len(request_ids) == 2
        print(f"SIGTERM to exit: {stopped_s * 1000:.0f} ms (localrt's stop included)")
