"""deploy/otel-collector/config.yaml, the Collector config of the compose stack, loaded by a real
Collector: the project's own distribution (tools/otelcol) validates it, and runs its pipeline
with the function's spans going through it, over OTLP/HTTP and gRPC."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from stack.components import OtelCollector
from stack.gotools import OTELCOL
from tests.integration.direct import run_environment
from tests.localrt.harness import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "otel-collector" / "config.yaml"


def test_the_shipped_config_passes_validate() -> None:
    done = subprocess.run(
        [OTELCOL.binary(), "validate", f"--config={CONFIG}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtelCollector]:
    with OtelCollector(tmp_path_factory.mktemp("otelcol-deploy"), config=CONFIG) as c:
        yield c


def test_only_what_running_here_needs_is_changed(collector: OtelCollector) -> None:
    shipped = yaml.safe_load(CONFIG.read_text())
    overlay = collector._overlay(4317, 4318)
    # the receiver's addresses, Jaeger's place in the exporters, the internal metrics' listener
    assert set(overlay["receivers"]["otlp"]["protocols"]) == set(
        shipped["receivers"]["otlp"]["protocols"]
    )
    pipeline = overlay["service"]["pipelines"]["traces"]
    assert set(pipeline) == {"exporters"}  # receivers and processors are the shipped ones
    assert pipeline["exporters"] == [
        "file" if e.startswith("otlp/") else e
        for e in shipped["service"]["pipelines"]["traces"]["exporters"]
    ]
    assert shipped["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "batch"]
    assert collector.validate().returncode == 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_the_functions_spans_go_through_the_shipped_pipeline(
    collector: OtelCollector, protocol: str
) -> None:
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    run = run_environment(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
        },
        ["rest-get.json", "rest-unknown-path.json"],
    )
    assert [r["statusCode"] for r in run.responses] == [200, 404]
    trace_ids = {line["trace_id"] for line in run.logs if "trace_id" in line}
    assert len(trace_ids) == 2
    # the batch processor holds spans up to its timeout (1 s) before the exporters get them
    assert wait_until(lambda: {s["trace_id"] for s in collector.spans()} >= trace_ids, 10), (
        collector.spans()
    )
    spans = [s for s in collector.spans() if s["trace_id"] in trace_ids]
    assert sorted(s["attributes"].get("http.response.status_code") for s in spans) == [200, 404]
    assert {s["kind"] for s in spans} == {"SPAN_KIND_SERVER"}
    assert {s["resource_attributes"]["service.name"] for s in spans} == {"healthz"}
    # the shipped debug exporter saw them too
    log = collector._log.read_text()
    assert "Traces" in log and "debug" in log
