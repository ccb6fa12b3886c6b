"""A failed OTLP export prints nothing by itself (the SDK's exporter logs a plain-text line per
failed batch, not rate limited): its reason goes into the layer's single, rate-limited JSON
warning instead, through the SpanExportError."""

from __future__ import annotations

import os
import subprocess
import sys

from stack.net import free_port
from tests.conftest import ROOT

_SCRIPT = """
import logging, sys, time
# Like awslambdaric, which logs every record of the root logger as a plain-text line.
logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.spans import SpanBackend, SpanExportError
from lambda_observability.tracing import Tracing, build_resource

tracing = Tracing(build_resource("healthz", None), 16)
spans = SpanBackend(tracing.queue, FailureReporter())
for _ in range(5):
    with tracing.tracer.start_as_current_span("x"):
        pass
    try:
        spans.send(time.monotonic() + 0.5)
    except SpanExportError as error:
        print("REASON", error)
    else:
        print("EXPORTED")
"""


def test_failed_otlp_exports_do_not_log_once_per_export() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "layers/observability/python"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": dead,
        "OTEL_TRACES_EXPORTER": "otlp",
    }
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    reasons = [line for line in done.stdout.splitlines() if line.startswith("REASON")]
    assert len(reasons) == 5
    assert all(
        "Connection refused" in r and r.endswith("spans kept for the next export") for r in reasons
    )
    assert dead not in done.stdout  # the reason names no endpoint
    assert "Connection refused" not in done.stderr
    assert "export" not in done.stderr.lower(), done.stderr
