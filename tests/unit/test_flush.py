"""Failure containment: a telemetry backend that is down, silent or failing never raises into the
handler, never holds it past its budget, and is logged without flooding."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lambda_observability import metrics
from lambda_observability.config import Settings, gateways
from lambda_observability.export import Backend, Exporter
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.pushgateway import PushgatewayBackend
from lambda_observability.export.secrets import BasicAuthSecret, SecretError
from lambda_observability.export.spans import SpanBackend
from lambda_observability.instrument import instrumentation
from stack.net import free_port
from tests.unit.conftest import LogCapture


def _failures(backend: str) -> float:
    return metrics.value("telemetry_export_failures_total", {"backend": backend}) or 0.0


def _settings(url: str | None, secret_arn: str | None = None) -> Settings:
    return Settings(
        service_name="healthz",
        pushgateways=gateways(url),
        pushgateway_job="healthz",
        pushgateway_timeout=0.3,
        pushgateway_auth_secret_arn=secret_arn,
    )


def _exporter(
    settings: Settings, reporter: FailureReporter, spans: Backend | None = None
) -> Exporter:
    """The environment's span backend (or ``spans``) and a Pushgateway per ``settings``."""
    backends: list[Backend] = [spans or instrumentation().spans]
    if settings.pushgateways:
        backends.append(PushgatewayBackend(settings, reporter))
    return Exporter(backends, reporter)


@pytest.fixture
def closed_port() -> int:
    return free_port()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """Accepts connections (the kernel backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_warnings_are_rate_limited_but_every_failure_is_counted(logs: LogCapture) -> None:
    clock = FakeClock()
    reporter = FailureReporter(interval=60, clock=clock)
    before = _failures("pushgateway")

    for _ in range(5):
        reporter.failed("pushgateway", ConnectionRefusedError("refused"))
        clock.now += 1
    clock.now += 60
    reporter.failed("pushgateway", ConnectionRefusedError("refused"))
    reporter.succeeded("pushgateway")
    reporter.succeeded("pushgateway")  # recovery is logged once

    assert _failures("pushgateway") == before + 6
    lines = logs.lines()
    warnings = [line for line in lines if line["message"] == "telemetry export failed"]
    assert [w["suppressed_since_last_warning"] for w in warnings] == [0, 4]
    assert all(w["level"] == "WARNING" and w["backend"] == "pushgateway" for w in warnings)
    recovered = [line for line in lines if line["message"] == "telemetry export recovered"]
    assert len(recovered) == 1


def test_credentials_in_a_url_are_masked_in_warnings(logs: LogCapture) -> None:
    FailureReporter().failed("pushgateway", "cannot reach http://user:hunter2@127.0.0.1:1/")
    assert "hunter2" not in logs.raw()
    assert "//***@127.0.0.1" in logs.raw()


def test_pushgateway_refusing_is_contained(closed_port: int, logs: LogCapture) -> None:
    exporter = _exporter(_settings(f"http://127.0.0.1:{closed_port}"), FailureReporter())
    before = _failures("pushgateway")
    exporter.export(time.monotonic() + 2.0)
    assert _failures("pushgateway") == before + 1
    (warning,) = [line for line in logs.lines() if line["message"] == "telemetry export failed"]
    assert "Connection refused" in warning["error"] or "URLError" in warning["error"]


def test_pushgateway_blackhole_is_bounded_by_its_timeout(blackhole: int) -> None:
    exporter = _exporter(_settings(f"http://127.0.0.1:{blackhole}"), FailureReporter())
    before = _failures("pushgateway")
    started = time.monotonic()
    exporter.export(time.monotonic() + 5.0)
    elapsed = time.monotonic() - started
    assert _failures("pushgateway") == before + 1
    # PUSHGATEWAY_TIMEOUT_SECONDS is 0.3 here; generous slack for a loaded machine.
    assert elapsed < 2.0


def test_push_never_exceeds_the_remaining_budget(blackhole: int) -> None:
    exporter = _exporter(_settings(f"http://127.0.0.1:{blackhole}"), FailureReporter())
    before = _failures("pushgateway")
    exporter.export(time.monotonic() + 0.0)
    assert _failures("pushgateway") == before + 1  # no time left: not attempted, but counted


def test_failed_span_export_keeps_spans_for_the_next_export(logs: LogCapture) -> None:
    class Failing(InMemorySpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            raise ConnectionError("collector down")

    tracing = instrumentation().tracing
    tracing.queue.drain()
    with tracing.tracer.start_as_current_span("one"):
        pass
    instrumentation().spans.use_exporter(Failing())
    before = _failures("otlp")
    try:
        _exporter(_settings(None), FailureReporter()).export(time.monotonic() + 1.0)
        assert _failures("otlp") == before + 1
        assert instrumentation().spans.pending() == 1
        recovered = InMemorySpanExporter()
        instrumentation().spans.use_exporter(recovered)
        _exporter(_settings(None), FailureReporter()).export(time.monotonic() + 1.0)
        assert [span.name for span in recovered.get_finished_spans()] == ["one"]
        assert instrumentation().spans.pending() == 0
    finally:
        instrumentation().spans.use_exporter(None)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def _secret(value: str) -> str:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    return str(client.create_secret(Name="pushgateway-auth", SecretString=value)["ARN"])


def test_basic_auth_comes_from_secrets_manager(aws: None) -> None:
    arn = _secret(json.dumps({"username": "pusher", "password": "pw-123"}))
    assert BasicAuthSecret(arn).credentials() == ("pusher", "pw-123")


def test_bad_secret_never_shows_its_value(aws: None) -> None:
    arn = _secret("not json, but hunter2")
    with pytest.raises(SecretError) as error:
        BasicAuthSecret(arn).credentials()
    assert "hunter2" not in str(error.value)
    arn2 = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="wrong-shape", SecretString=json.dumps({"user": "x", "pass": "hunter2"})
    )["ARN"]
    with pytest.raises(SecretError, match="username and password") as error:
        BasicAuthSecret(arn2).credentials()
    assert "hunter2" not in str(error.value)


def test_missing_secret_is_not_retried_on_every_push(aws: None) -> None:
    clock = FakeClock()
    secret = BasicAuthSecret(
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:absent-AbCdEf", clock=clock
    )
    calls = 0
    real_fetch = secret._fetch

    def counting_fetch() -> object:
        nonlocal calls
        calls += 1
        return real_fetch()

    secret._fetch = counting_fetch  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(SecretError):
            secret.credentials()
    assert calls == 1
    clock.now += 31
    with pytest.raises(SecretError):
        secret.credentials()
    assert calls == 2


def test_secret_failure_skips_the_push_and_is_counted(aws: None, closed_port: int) -> None:
    exporter = _exporter(
        _settings(
            f"http://127.0.0.1:{closed_port}",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:absent-AbCdEf",
        ),
        FailureReporter(),
    )
    before_secrets, before_push = _failures("secrets"), _failures("pushgateway")
    exporter.export(time.monotonic() + 1.0)
    assert _failures("secrets") == before_secrets + 1
    assert _failures("pushgateway") == before_push


def test_secret_error_names_the_cause_type_only(aws: None) -> None:
    with pytest.raises(SecretError) as error:
        BasicAuthSecret(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"
        ).credentials()
    assert str(error.value).startswith("cannot read secret arn:aws:secretsmanager:")
    assert "GetParameterError (ResourceNotFoundException)" in str(error.value)


def test_dropped_spans_are_logged_rate_limited_and_counted(logs: LogCapture) -> None:
    from lambda_observability.tracing import Tracing, build_resource

    class Failing(InMemorySpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.FAILURE

    tracing = Tracing(
        build_resource("healthz", None),
        queue_size=2,
        on_drop=metrics.SPANS_DROPPED.inc,
        install_global=False,
    )
    clock = FakeClock()
    reporter = FailureReporter(clock=clock)
    spans = SpanBackend(tracing.queue, reporter)
    spans.use_exporter(Failing())
    exporter = _exporter(_settings(None), reporter, spans)
    before = metrics.value("otel_spans_dropped_total") or 0.0
    for round_ in range(3):
        for _ in range(5):
            with tracing.tracer.start_as_current_span(f"span-{round_}"):
                pass
        exporter.export(time.monotonic() + 1.0)
        clock.now += 1
    # 15 spans into a queue of 2 that never empties: 13 dropped, all counted...
    assert metrics.value("otel_spans_dropped_total") == before + 13
    # ...and one warning for the interval, not one per export.
    (warning,) = [line for line in logs.lines() if line["message"].startswith("spans dropped")]
    assert warning["level"] == "WARNING"
    assert warning["dropped_since_last_warning"] == 3
    assert warning["dropped_total"] == 3  # this environment's queue's own total


_SLOW_PUSH_IMPORT = """
import importlib.abc, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class SlowImport(importlib.abc.MetaPathFinder):
    # A small Lambda's share of a CPU: loading the push code takes longer than the push may.
    def find_spec(self, name, path, target=None):
        if name == "prometheus_client.exposition":
            time.sleep(0.4)
        return None

sys.meta_path.insert(0, SlowImport())
puts = []

class Gateway(BaseHTTPRequestHandler):
    def do_PUT(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        puts.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Gateway)
threading.Thread(target=server.serve_forever, daemon=True).start()
import app
from bench.fresh import lambda_context
from lambda_observability.export.failures import reporter
response = app.handler(json.load(open(sys.argv[1])), lambda_context())  # sync: exports first
state = reporter.states().get("pushgateway")
failure = state.failure_kind if state else "not tried"
print(json.dumps({"status": response["statusCode"], "puts": len(puts), "failure": failure}))
"""


def test_the_push_deadline_bounds_the_network_not_the_import_of_the_push_code() -> None:
    """The push code loads on the first export (after the response in async mode); its
    timeout starts once it is loaded, else a slow first import fails every cold start's push."""
    from bench import fresh
    from tests.conftest import ROOT

    port = free_port()
    out = fresh.run(
        _SLOW_PUSH_IMPORT,
        ROOT / "functions/healthz",
        [str(ROOT / "events/rest-get.json"), str(port)],
        {
            "OBSERVABILITY_EXPORT_MODE": "sync",
            "OTEL_TRACES_EXPORTER": "none",
            "PUSHGATEWAY_URL": f"http://127.0.0.1:{port}",
            "PUSHGATEWAY_TIMEOUT_SECONDS": "0.2",
        },
    )
    assert json.loads(out.splitlines()[-1]) == {"status": 200, "puts": 1, "failure": None}
