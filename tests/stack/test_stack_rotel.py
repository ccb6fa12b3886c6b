"""The function's spans through rotel, a second OTLP collector nobody here wrote (Rust, PyPI
`rotel`), and on to the project's OpenTelemetry Collector: over OTLP/HTTP and gRPC on each side
of it."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rotel  # type: ignore[import-untyped]

from stack._proc import ManagedProcess
from stack.components import OtelCollector
from stack.net import HOST, free_port, port_in_use
from tests.integration.direct import run_environment
from tests.localrt.harness import wait_until

AGENT = Path(rotel.__file__).parent / "rotel-agent"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtelCollector]:
    with OtelCollector(tmp_path_factory.mktemp("otelcol")) as process:
        yield process


class Rotel:
    """rotel-agent receiving OTLP on two free ports and exporting to ``endpoint``."""

    def __init__(self, workdir: Path, endpoint: str, protocol: str) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        argv = [
            str(AGENT),
            "start",
            f"--otlp-grpc-endpoint={HOST}:{self.grpc_port}",
            f"--otlp-http-endpoint={HOST}:{self.http_port}",
            "--exporter=otlp",
            f"--otlp-exporter-endpoint={endpoint}",
            f"--otlp-exporter-protocol={protocol}",
            "--batch-timeout=50ms",
            f"--pid-file={workdir / 'rotel.pid'}",
            f"--log-file={workdir / 'rotel-agent.log'}",
        ]
        # The binary links libpython3.13.so dynamically; pyenv's shared build keeps it in its
        # own lib directory, off the loader's path.
        env = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": sysconfig.get_config_var("LIBDIR")}
        self.process = ManagedProcess("rotel", argv, workdir / "rotel.log", env=env)
        ports = (self.grpc_port, self.http_port)
        self.process.wait_until(lambda: all(map(port_in_use, ports)), 15, "listening")

    def stop(self) -> None:
        self.process.stop()


@pytest.mark.parametrize(
    ("inbound", "outbound"),
    [("http/protobuf", "grpc"), ("grpc", "http")],
    ids=["http-in", "grpc-in"],
)
def test_spans_pass_through_rotel(
    receiver: OtelCollector, tmp_path: Path, inbound: str, outbound: str
) -> None:
    onward = receiver.grpc_endpoint if outbound == "grpc" else receiver.http_endpoint
    collector = Rotel(tmp_path, onward, outbound)
    try:
        port = collector.grpc_port if inbound == "grpc" else collector.http_port
        run = run_environment(
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": inbound,
                "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
            },
            ["rest-get.json"],
        )
        assert [r["statusCode"] for r in run.responses] == [200]
        (trace_id,) = {line["trace_id"] for line in run.logs if "trace_id" in line}
        spans = _wait_for(receiver, trace_id)
    finally:
        collector.stop()
    (span,) = spans
    assert span["kind"] == "SPAN_KIND_SERVER"
    assert span["attributes"]["http.route"] == "/healthz"
    assert span["resource_attributes"]["service.name"] == "healthz"
    # The last hop was rotel's, in the protocol it was told to export with.
    assert span["transport"] == ("grpc" if outbound == "grpc" else "http")


def _wait_for(receiver: OtelCollector, trace_id: str) -> list[dict[str, Any]]:
    assert wait_until(lambda: bool(receiver.spans(trace_id=trace_id)), 10), "no span arrived"
    return receiver.spans(trace_id=trace_id)
