"""Spans of user code join the invocation's trace, end to end through localrt.

The layer installs its TracerProvider as the global one (unless one is set), so a function's own
``trace.get_tracer(...)`` records: its span is exported with the SERVER span as parent, and a
log line written inside it carries the child's ``span_id``.
"""

from __future__ import annotations

import json

import pytest

from stack import Stack
from tests.conftest import ROOT
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration

TEMPLATE = ROOT / "tests/e2e/functions/template.yaml"


def test_a_user_span_is_a_child_of_the_server_span_and_its_log_line_says_so() -> None:
    with Stack() as stack:
        env = {**stack.env(), "OTEL_TRACES_EXPORTER": "otlp"}
        rt = LocalRT("--concurrency", "1", template=TEMPLATE, env=base_env(**env))
        try:
            assert rt.get("/work").status_code == 200
            assert wait_until(lambda: len(stack.spans()) == 2, 10), stack.spans()
            lines = [json.loads(raw) for _, raw in rt.tagged() if raw.startswith("{")]
            spans = {s["name"]: s for s in stack.spans()}
        finally:
            rt.stop()
    server, child = spans["GET /work"], spans["load-config"]
    assert child["trace_id"] == server["trace_id"]
    assert child["parent_span_id"] == server["span_id"]
    assert child["attributes"]["user.recording"] is True
    (inside,) = [line for line in lines if line.get("message") == "inside the child span"]
    assert inside["span_id"] == child["span_id"]
    assert inside["trace_id"] == child["trace_id"]
