"""The project's hardest claim, on one machine: many concurrent execution environments push to
one Pushgateway, and Prometheus still counts every single call; every call has exactly one span,
joined to its logs and to the caller's trace.

The real function runs in the local runtime (awslambdaric processes, async export through the
internal extension) against a real Pushgateway, a real Prometheus and the OpenTelemetry Collector.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stack import Stack
from stack.components import Pushgateway
from stack.net import free_port
from tests.conftest import ROOT
from tests.localrt.harness import LocalRT, base_env, pid_alive, wait_until

pytestmark = pytest.mark.integration

CALLS = 400
CONCURRENCY = 4
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


def _start(env: dict[str, str], concurrency: int = CONCURRENCY) -> LocalRT:
    return LocalRT("--concurrency", str(concurrency), template=TEMPLATE, env=base_env(**env))


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def _wait_for_spans(stack: Stack, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    assert wait_until(lambda: len(stack.spans()) >= count, timeout), len(stack.spans())
    time.sleep(0.5)  # nothing more may arrive: "exactly one per call"
    return stack.spans()


def test_every_call_counted_traced_and_logged(stack: Stack) -> None:
    stack.reset()
    rt = _start(stack.env())
    traced: dict[int, tuple[str, str]] = {}
    try:

        def call(i: int) -> tuple[int, int]:
            headers = {}
            if i % 4 == 0:
                header, trace_id, parent_id = _traceparent()
                headers["traceparent"] = header
                traced[i] = (trace_id, parent_id)
            return i, rt.get("/healthz", headers=headers).status_code

        order = list(range(CALLS))
        random.shuffle(order)
        with ThreadPoolExecutor(max_workers=32) as pool:
            statuses = [status for _, status in pool.map(call, order)]
        assert statuses == [200] * CALLS

        stats = rt.stats()
        assert 1 < stats["summary"]["environments_started"] <= CONCURRENCY
        spans = _wait_for_spans(stack, CALLS)
        stack.wait_for_scrape()

        # 1. Prometheus counts every call, summed over the environments' groups.
        total = stack.query_value('sum(healthz_calls_total{job="healthz"})')
        assert total == CALLS
        groups = stack.query('count by (instance) (healthz_calls_total{job="healthz"})')
        assert isinstance(groups, list)
        assert len(groups) == stats["summary"]["environments_started"]
        assert (
            stack.query_value(
                'sum(http_server_request_duration_seconds_count{job="healthz",status_code="200"})'
            )
            == CALLS
        )

        # 2. Exactly one SERVER span per call, with the right attributes.
        server = [s for s in spans if s["kind"] == "SPAN_KIND_SERVER"]
        assert len(server) == len(spans) == CALLS
        invocation_ids = Counter(s["attributes"]["faas.invocation_id"] for s in server)
        assert len(invocation_ids) == CALLS and set(invocation_ids.values()) == {1}
        for span in server:
            attrs = span["attributes"]
            assert span["name"] == "GET /healthz"
            assert attrs["faas.trigger"] == "http"
            assert attrs["http.request.method"] == "GET"
            assert attrs["http.route"] == "/healthz"
            assert attrs["url.path"] == "/healthz"
            assert attrs["http.response.status_code"] == 200
            assert isinstance(attrs["faas.coldstart"], bool)
            assert attrs["cloud.resource_id"].startswith("arn:aws:lambda:")
            resource = span["resource_attributes"]
            assert resource["service.name"] == "healthz"
            assert resource["faas.name"]
            assert resource["cloud.region"] == "eu-west-1"
        cold = sum(1 for s in server if s["attributes"]["faas.coldstart"])
        assert cold == stats["summary"]["environments_started"]

        # 3. Each span sent with a traceparent continues that trace.
        by_trace = {s["trace_id"]: s for s in server}
        for trace_id, parent_id in traced.values():
            assert by_trace[trace_id]["parent_span_id"] == parent_id
        assert len({s["trace_id"] for s in server}) == CALLS

        # 4. Every log line carries the trace id of its invocation's span.
        trace_of = {s["attributes"]["faas.invocation_id"]: s["trace_id"] for s in server}
        lines = [json.loads(raw) for _, raw in rt.tagged() if raw.startswith("{")]
        per_request = [line for line in lines if "function_request_id" in line]
        seed = "Monitoring endpoint invoked! Counter was incremented!"
        # The seed's line, once per call (a successful call logs nothing else).
        assert Counter(
            line["function_request_id"] for line in per_request if line["message"] == seed
        ) == Counter(list(trace_of))
        for line in per_request:
            assert line["trace_id"] == trace_of[line["function_request_id"]], line
    finally:
        rt.stop()


def test_graceful_stop_loses_no_count(stack: Stack, tmp_path: Any) -> None:
    """Pushes fail while the Pushgateway is down; SIGTERM's final flush delivers the count."""
    stack.reset()
    gateway = Pushgateway(tmp_path)
    port = gateway.port = free_port()
    rt = _start({"PUSHGATEWAY_URL": f"http://127.0.0.1:{port}", "OTEL_TRACES_EXPORTER": "none"})
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: rt.get("/healthz").status_code, range(40)))
        assert statuses == [200] * 40
        environments = rt.stats()["summary"]["environments_started"]
        gateway.start()  # the backend comes back, but no request follows
    finally:
        code = rt.stop()
    try:
        assert code == 0
        groups = [g for g in gateway.groups() if g["labels"].get("job") == "healthz"]
        assert len(groups) == environments
        total = sum(float(g["healthz_calls_total"]["metrics"][0]["value"]) for g in groups)
        assert total == 40
        assert not any(pid_alive(pid) for pid in rt.seen_pids)
    finally:
        gateway.stop()
