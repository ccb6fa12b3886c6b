"""GET /readyz tells whether telemetry is getting out, from what the layer recorded.

The real function under localrt (freezing on), the real Pushgateway behind a FaultProxy, the
OpenTelemetry Collector; in sync and async mode. Each fault is switched on, a /healthz call fails
to push, and /readyz must say warn for ``pushgateway:push`` with the failure's kind; once the fault
clears and a call pushes again, it says pass. Its answer is always 200, never names a host,
URL or credential, and /readyz calls are not counted in healthz_calls_total.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stack import Stack
from stack.faultproxy import FaultProxy
from tests import planted
from tests.e2e.test_proof import TEMPLATE
from tests.faults.campaign import pushgateway_value
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration

FAULTS: list[tuple[str, Callable[[FaultProxy], object]]] = [
    ("refused", lambda p: p.refuse()),
    ("http 503", lambda p: p.status(503)),
    ("timeout", lambda p: p.blackhole(hold_s=2.0)),
    ("malformed", lambda p: p.malformed("garbage")),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


def _get(rt: LocalRT, path: str, method: str = "GET") -> Any:
    response = rt.request(method, path, headers=planted.HEADERS, params=planted.QUERY)
    assert response.status_code == 200, response.text
    assert wait_until(rt.idle, 5)  # async: the export after the response is done
    return response


def _readyz(rt: LocalRT) -> dict[str, Any]:
    response = _get(rt, "/readyz")
    assert response.headers["Content-Type"] == "application/health+json"
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_readyz_warns_while_the_pushgateway_fails_and_passes_once_it_is_back(
    stack: Stack, mode: str
) -> None:
    stack.reset()
    seen: list[str] = []
    with FaultProxy(stack.pushgateway_url) as proxy:
        env = {
            **stack.env(),
            "PUSHGATEWAY_URL": proxy.url,
            "PUSHGATEWAY_JOB": f"readyz_{mode}",
            "OBSERVABILITY_EXPORT_MODE": mode,
        }
        rt = LocalRT("--concurrency", "1", template=TEMPLATE, env=base_env(**env))
        try:
            first = _readyz(rt)
            seen.append(json.dumps(first))
            # A backend not tried yet in this environment passes, and says so.
            assert first["status"] == "pass"
            assert set(first["checks"]) == {"pushgateway:push", "otlp:export"}
            for check in first["checks"].values():
                assert check == [{"status": "pass", "output": "not tried yet in this environment"}]
            healthz_calls = 0
            for kind, apply in FAULTS:
                apply(proxy)
                _get(rt, "/healthz")
                healthz_calls += 1
                during = _readyz(rt)
                seen.append(json.dumps(during))
                push = during["checks"]["pushgateway:push"][0]
                assert during["status"] == "warn", (kind, during)
                assert push["status"] == "warn"
                assert push["output"] == kind
                assert push["observedUnit"] == "s" and push["observedValue"] >= 0
                assert push["time"].endswith("Z")
                assert during["checks"]["otlp:export"][0]["status"] == "pass"
                proxy.passthrough()
                _get(rt, "/healthz")
                healthz_calls += 1
                after = _readyz(rt)
                seen.append(json.dumps(after))
                push = after["checks"]["pushgateway:push"][0]
                assert after["status"] == "pass", (kind, after)
                assert push["status"] == "pass" and "output" not in push
                assert push["observedValue"] < 2.0  # seconds since the last success
            head = _get(rt, "/readyz", method="HEAD")
            assert head.text == ""
            assert head.headers["Content-Type"] == "application/health+json"
            log = rt.text()
        finally:
            rt.stop()
    print(f"{mode}: " + "\n".join(seen))
    # /readyz is not a health check call; it is in the duration histogram like any route.
    assert pushgateway_value(stack, f"readyz_{mode}", "healthz_calls_total") == healthz_calls
    counts = [
        g
        for g in stack.pushgateway.groups()
        if g["labels"].get("job") == f"readyz_{mode}"
        for m in g["http_server_request_duration_seconds"]["metrics"]
        if m["labels"].get("route") == "/readyz"
    ]
    assert counts, "no /readyz sample in the duration histogram"
    # Nothing leaks: no host, port, URL or planted secret in any answer.
    text = "\n".join(seen)
    assert "127.0.0.1" not in text and "http" + "://" not in text
    assert str(proxy.port) not in text
    assert planted.leaks([text, log]) == []
