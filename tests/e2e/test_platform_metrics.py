"""The platform's own figures, end to end: the layer subscribes to localrt's Telemetry API at
init, and every call's ``platform.report`` reaches the pushed group, the last one included once
localrt has stopped the environment gracefully (SIGTERM, the final export).

The real function under localrt (async export through the internal extension) against a real
Pushgateway; the figures are compared with the REPORT lines localrt prints.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from stack import Stack
from tests.e2e.test_proof import TEMPLATE
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration

CALLS = 6
_REPORT = re.compile(r"REPORT RequestId: .* Duration: ([\d.]+) ms .* Billed Duration: (\d+) ms")


def histogram(stack: Stack, job: str, name: str) -> dict[str, Any] | None:
    """The pushed histogram's one sample (count, sum as numbers), or None."""
    for group in stack.pushgateway.groups():
        if group["labels"].get("job") == job and name in group:
            sample = group[name]["metrics"][0]
            return {"count": float(sample["count"]), "sum": float(sample["sum"])}
    return None


def _run(stack: Stack, **extra: str) -> tuple[LocalRT, int]:
    env = {**stack.env(), "OBSERVABILITY_EXPORT_MODE": "async", **extra}
    rt = LocalRT("--concurrency", "1", template=TEMPLATE, env=base_env(**env))
    try:
        for _ in range(CALLS):
            assert rt.get("/healthz").status_code == 200
            assert wait_until(rt.idle, 10)
    finally:
        code = rt.stop()
    return rt, code


def test_every_call_is_billed_in_the_pushed_group_after_a_graceful_stop() -> None:
    with Stack() as stack:
        rt, code = _run(stack)
        log = rt.text()
        assert code == 0, log
        assert '"telemetry_api":"subscribed (schema 2022-12-13)"' in log, log
        billed = histogram(stack, "healthz", "aws_lambda_billed_duration_seconds")
        invoke = histogram(stack, "healthz", "faas_invoke_duration_seconds")
        memory = histogram(stack, "healthz", "faas_mem_usage_bytes")
        init = histogram(stack, "healthz", "faas_init_duration_seconds")
    # One observation per call: the last call's report arrived at shutdown, before the final push.
    assert billed is not None and billed["count"] == CALLS, log
    assert invoke is not None and invoke["count"] == CALLS
    assert memory is not None and memory["count"] == CALLS and memory["sum"] > 0
    assert init is not None and init["count"] == 1 and init["sum"] > 0
    # The same figures as localrt's REPORT lines, billed rounded up to the millisecond.
    reports = [(float(d), int(b)) for d, b in _REPORT.findall(log)]
    assert len(reports) == CALLS, log
    assert billed["sum"] == pytest.approx(sum(b for _, b in reports) / 1000, abs=1e-6)
    # REPORT prints 2 decimals: each duration within 0.005 ms.
    assert invoke["sum"] == pytest.approx(sum(d for d, _ in reports) / 1000, abs=CALLS * 5e-6)
    assert billed["sum"] >= invoke["sum"]


def test_the_subscription_can_be_turned_off() -> None:
    with Stack() as stack:
        rt, code = _run(stack, OBSERVABILITY_TELEMETRY_API="off")
        log = rt.text()
        assert code == 0, log
        assert '"telemetry_api":"off (OBSERVABILITY_TELEMETRY_API=off)"' in log, log
        assert histogram(stack, "healthz", "aws_lambda_billed_duration_seconds") is None
        calls = histogram(stack, "healthz", "http_server_request_duration_seconds")
    # The rest of the group is there: only the platform's figures are missing.
    assert calls is not None and calls["count"] == CALLS
