"""`stack.Stack` and `python -m stack up`: real processes, started and stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry, Counter, Histogram, push_to_gateway

from stack import Sample, Stack, StackError
from stack.gotools import OTELCOL, PUSHGATEWAY

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    # a zombie still answers kill(0) but is gone for our purposes
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def children_of(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def send_span(exporter: SpanExporter, name: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("tests.stack").start_span(name).end()
    provider.shutdown()


def test_stack_end_to_end() -> None:
    with Stack() as stack:
        pids = stack.pids
        workdir = stack.workdir
        assert len(pids) == 3 and all(alive(p) for p in pids)
        env = stack.env()
        assert env["PUSHGATEWAY_URL"] == stack.pushgateway_url
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == stack.otlp_http_endpoint
        assert all(url.startswith("http://127.0.0.1:") for url in env.values() if "://" in url)

        # two execution environments push under their own grouping keys
        for instance, calls in (("env-a", 2), ("env-b", 3)):
            registry = CollectorRegistry()
            Counter("healthz_calls", "calls", registry=registry).inc(calls)
            Histogram(
                "http_server_request_duration_seconds",
                "duration",
                ["method", "route", "status_code"],
                registry=registry,
            ).labels("GET", "/healthz", "200").observe(0.01)
            push_to_gateway(
                stack.pushgateway_url,
                job="healthz",
                registry=registry,
                grouping_key={"instance": instance},
                timeout=5,
            )
        send_span(
            HttpExporter(endpoint=f"{stack.otlp_http_endpoint}/v1/traces", timeout=5), "via-http"
        )
        send_span(
            GrpcExporter(endpoint=stack.otlp_grpc_endpoint, insecure=True, timeout=5), "via-grpc"
        )

        stack.wait_for_scrape(timeout=15)
        # honor_labels keeps the pushed job/instance
        samples = stack.query('healthz_calls_total{job="healthz"}')
        assert isinstance(samples, list)
        assert {s.labels["instance"]: s.value for s in samples} == {"env-a": 2.0, "env-b": 3.0}
        assert stack.query_value("sum(healthz_calls_total)") == 5.0
        assert stack.query("scalar(sum(healthz_calls_total))") == 5.0
        assert stack.query_value('count(push_time_seconds{job="healthz"})') == 2.0
        assert stack.query_value("absent(nothing_like_this)") == 1.0
        assert stack.query('up{job="pushgateway"}') == [
            Sample(
                {
                    "__name__": "up",
                    "job": "pushgateway",
                    "instance": stack.pushgateway_url.removeprefix("http://"),
                },
                1.0,
            )
        ]
        # the repo's rules are loaded
        groups = stack.prometheus.api("rules")["groups"]
        names = {r["name"] for g in groups for r in g["rules"]}
        assert {"HealthzMetricsAbsent", "job:healthz_calls:rate5m"} <= names

        assert sorted(s["name"] for s in stack.spans()) == ["via-grpc", "via-http"]
        assert {s["transport"] for s in stack.spans(name="via-grpc")} == {"grpc"}
        stack.reset()
        assert stack.spans() == [] and stack.pushgateway.groups() == []

    assert not any(alive(p) for p in pids)
    assert not workdir.exists()
    stack.stop()  # idempotent


def test_missing_binary_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_BIN", "/nonexistent/prometheus")
    before = set(children_of(os.getpid()))
    with pytest.raises(StackError, match="PROMETHEUS_BIN"):
        Stack()
    monkeypatch.delenv("PROMETHEUS_BIN")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match="apt-get install -y prometheus"):
        Stack()
    monkeypatch.undo()
    for env_var in ("PUSHGATEWAY_BIN", "OTELCOL_BIN"):
        with monkeypatch.context() as m:
            m.setenv(env_var, "/nonexistent/binary")
            with pytest.raises(StackError, match=env_var):
                Stack()
    assert set(children_of(os.getpid())) == before


def test_go_builds_are_looked_up_by_their_manifests_key(tmp_path: Path) -> None:
    # The key the build script names the folder by (scripts/build-go-tools.sh) is the one the
    # stack looks for: a changed manifest is never served by an older build.
    for tool in (OTELCOL, PUSHGATEWAY):
        built = tool.built_path()
        assert built.parent.name == f"{tool.name}-{tool.key()}"
        manifests = b"".join((REPO / m).read_bytes() for m in tool.manifests)  # what `cat` gives
        digest = subprocess.run(
            ["sha256sum"], input=manifests, capture_output=True, check=True
        ).stdout.decode()[:16]
        assert digest == tool.key()
        assert os.access(built, os.X_OK), "make go-tools has not built it"
        with pytest.raises(StackError, match="make go-tools"):
            tool.binary(built=tmp_path)


def test_startup_failure_stops_what_started(tmp_path: Path) -> None:
    # Prometheus cannot bind a port that is taken: the Collector and Pushgateway that
    # already started must be stopped again.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = set(children_of(os.getpid()))
        stack = Stack(prometheus_port=port, workdir=tmp_path)
        with pytest.raises(StackError, match="prometheus exited"):
            stack.start()
    assert set(children_of(os.getpid())) == before


def up_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stack",
        "up",
        "--pushgateway-port",
        "0",
        "--prometheus-port",
        "0",
        "--otlp-grpc-port",
        "0",
        "--otlp-http-port",
        "0",
        *args,
    ]


def test_cli_up_prints_env_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        up_command(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "export PUSHGATEWAY_URL=http://127.0.0.1:" in output, output
        assert "export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:" in output
        children = children_of(proc.pid)
        assert len(children) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not any(alive(p) for p in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_up_refuses_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            up_command("--prometheus-port", str(port)),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 2
    assert f"--prometheus-port {port}" in proc.stderr
