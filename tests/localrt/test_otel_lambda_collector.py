"""opentelemetry-lambda's collector (built by `make go-tools` from tools/otel-lambda-collector)
under localrt as the external extension it is: it registers, gets an INVOKE per call and SHUTDOWN
at stop, subscribes to the Telemetry API (its lifecycle manager and its telemetryapi receiver),
and the function's spans go through it (otlp receiver, batch, decouple, otlphttp exporter) to a
real OTLP backend, the project's Collector."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.collector_ext import binary
from stack.components import OtelCollector
from stack.net import free_port
from tests.localrt.harness import FUNCTIONS, LocalRT, base_env, pid_alive, wait_until

pytestmark = pytest.mark.integration
TEMPLATE = FUNCTIONS / "otelcol_ext" / "template.yaml"
CALLS = 3
_INVOKE = re.compile(r'"eventType":\s*"INVOKE".*?"requestId":\s*"([^"]+)"')


def test_collector_extension_registers_gets_events_and_delivers_spans(
    start_localrt: Callable[..., LocalRT], tmp_path: Path
) -> None:
    started = time.monotonic()
    backend = OtelCollector(tmp_path).start()
    try:
        port = free_port()
        env = base_env(
            OTEL_LAMBDA_COLLECTOR_BIN=binary(),
            COLLECTOR_OTLP_HTTP_PORT=str(port),
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://localhost:{port}/v1/traces",
            OTEL_EXPORTER_OTLP_ENDPOINT=backend.http_endpoint,
        )
        rt = start_localrt(
            "--function", "CollectorExtTestFunction", "--concurrency", "1",
            "--grace-seconds", "2", env=env, template=TEMPLATE,
        )  # fmt: skip
        for _ in range(CALLS):
            answer = rt.get("/span")
            assert answer.status_code == 200, rt.text()
        assert wait_until(rt.idle, 10), rt.text()
        stats = rt.stats()
        (environment,) = stats["environments"]
        assert environment["extensions"] == ["collector"]  # registered under its file's name
        (extension,) = environment["external_extensions"]
        assert extension["exit_code"] is None
        ids = [str(r["request_id"]) for r in stats["invocations"]]
        assert len(ids) == CALLS
        # Two subscriptions, both of upstream's schema and buffering, both fed.
        subscriptions = environment["telemetry"]
        assert len(subscriptions) == 2
        for sub in subscriptions:
            assert sub["schemaVersion"] == "2022-12-13" and sub["types"] == ["platform"]
            assert sub["buffering"]["timeoutMs"] == 25 and sub["delivered"] > 0
        assert rt.stop() == 0
        assert wait_until(lambda: not pid_alive(int(extension["pid"])), 5)
        text = rt.text()
        # One INVOKE per call, for that call (the manager logs each event at debug level).
        collector_lines = [ln for ln in text.splitlines() if ":collector]" in ln]
        invoked = [m.group(1) for ln in collector_lines if (m := _INVOKE.search(ln))]
        assert invoked == ids, "\n".join(collector_lines[-40:])
        assert "Received SHUTDOWN event" in text

        # Every span reached the backend: through batch and decouple, at the latest at SHUTDOWN.
        def delivered() -> set[str]:
            return {
                str(s["attributes"].get("faas.invocation_id"))
                for s in backend.spans(name="invocation")
            }

        assert wait_until(lambda: delivered() >= set(ids), 10), (delivered(), ids)
        assert all(
            s["resource_attributes"].get("service.name") == "otelcol-ext-test"
            for s in backend.spans(name="invocation")
        )
    finally:
        backend.stop()
    assert time.monotonic() - started < 60
