"""Issue 17: each finding of the outside review, reproduced, and what the layer does now.

Every test here failed on 18e67e9. Servers are loopback sockets; made-up names resolve through
a patched ``socket.getaddrinfo``, never through DNS.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import fresh
from lambda_observability import config, http_event
from lambda_observability.config import Settings, gateways
from lambda_observability.errors import DeadlineError, TelemetryError, describe
from lambda_observability.export import Exporter, http_client
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.otlp import OtlpHttpSpanExporter, parse_headers
from lambda_observability.export.pushgateway import PushgatewayBackend, push
from lambda_observability.extension import ExtensionClient, ExtensionError
from lambda_observability.logs import dumps, log_level
from tests.conftest import EVENTS, ROOT
from tests.loopback import answering, fixed

HEALTHZ = ROOT / "functions" / "healthz"


# --- loopback servers ---------------------------------------------------------------------


@contextlib.contextmanager
def dropping_syns(count: int) -> Iterator[list[int]]:
    """``count`` ports on 127.0.0.1 whose SYNs are dropped, like a security group that drops.

    A listening socket with a backlog of 0, its one slot taken by a connection never accepted:
    Linux drops further SYNs (the client's connect hangs) rather than refusing them.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            port = int(listener.getsockname()[1])
            filler = stack.enter_context(socket.socket())
            filler.settimeout(2)
            filler.connect(("127.0.0.1", port))
            ports.append(port)
        yield ports


def endless(head: bytes, piece: bytes) -> Callable[[socket.socket], None]:
    def stream(conn: socket.socket) -> None:
        conn.sendall(head)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            conn.sendall(piece)

    return stream


@pytest.fixture
def resolve_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[int]], None]:
    """Make ``name`` resolve to 127.0.0.1 on each of ``ports``, in order."""

    def install(name: str, ports: list[int]) -> None:
        real = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == name:
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in ports
                ]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", fake)

    return install


def _settings(url: str, timeout: float = 0.5) -> Settings:
    return Settings("healthz", gateways(url), "hardening", timeout, None)


def _failures(reporter: FailureReporter, backend: str) -> str | None:
    state = reporter.states().get(backend)
    return state.failure_kind if state else None


# --- 1. one deadline for the whole call, whatever DNS returns --------------------------------


def test_three_addresses_that_drop_syns_cost_one_deadline_not_three(
    resolve_to: Callable[[str, list[int]], None],
) -> None:
    with dropping_syns(3) as ports:
        resolve_to("pgw.three-zones.test", ports)
        reporter = FailureReporter()
        exporter = Exporter(
            [PushgatewayBackend(_settings("http://pgw.three-zones.test:9091"), reporter)], reporter
        )
        started = time.monotonic()
        exporter.export(time.monotonic() + 1.0)
        elapsed = time.monotonic() - started
    # PUSHGATEWAY_TIMEOUT_SECONDS=0.5 bounds the push: 1.54 s on 18e67e9 (0.5 s per address).
    assert elapsed < 0.5 + 0.25, elapsed
    assert _failures(reporter, "pushgateway") == "timeout"


def test_a_dead_zone_leaves_time_for_the_next_address(
    resolve_to: Callable[[str, list[int]], None],
) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with dropping_syns(2) as dead, answering(fixed(ok)) as live:
        resolve_to("pgw.one-dead.test", [*dead, live])
        started = time.monotonic()
        answer = http_client.request(
            "http://pgw.one-dead.test/metrics", "PUT", time.monotonic() + 0.9, body=b""
        )
    assert answer.status == 200
    assert time.monotonic() - started < 0.9 + 0.2


def test_a_resolver_that_hangs_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow-dns.test":
            time.sleep(2)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    started = time.monotonic()
    with pytest.raises(DeadlineError):
        http_client.request("http://slow-dns.test:9091/", "GET", time.monotonic() + 0.3)
    assert time.monotonic() - started < 0.3 + 0.2


def test_the_sigterm_flush_ends_by_its_budget_whatever_the_backends_do(
    resolve_to: Callable[[str, list[int]], None],
) -> None:
    """1,139 ms against Lambda's 500 ms on 18e67e9: the push thread's join had no timeout."""
    from lambda_observability.export import SHUTDOWN_BUDGET_SECONDS

    with dropping_syns(3) as ports:
        resolve_to("pgw.sigterm.test", ports)
        reporter = FailureReporter()
        # A push timeout longer than the budget: the budget must still win.
        backend = PushgatewayBackend(_settings("http://pgw.sigterm.test:9091", 5.0), reporter)
        started = time.monotonic()
        Exporter([backend], reporter).export(time.monotonic() + SHUTDOWN_BUDGET_SECONDS, final=True)
        assert time.monotonic() - started < SHUTDOWN_BUDGET_SECONDS + 0.1


# --- 2. a redirect is not a success ---------------------------------------------------------


REDIRECT = (
    b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.test/\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_a_redirected_push_is_a_failure_and_readiness_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambda_observability import export, readiness
    from lambda_observability.instrument import instrumentation

    with answering(fixed(REDIRECT)) as port:
        reporter = FailureReporter()
        settings = _settings(f"http://127.0.0.1:{port}")
        exporter = Exporter([PushgatewayBackend(settings, reporter)], reporter)
        exporter.export(time.monotonic() + 1.0)
    assert _failures(reporter, "pushgateway") == "http 301"
    instrumentation()
    monkeypatch.setattr(export, "_current", exporter)
    document = readiness.document(reporter)
    assert document["status"] == "warn"
    assert document["checks"]["pushgateway:push"][0]["output"] == "http 301"


def test_the_janitor_does_not_report_a_redirected_delete_as_deleted() -> None:
    import importlib.util
    import sys

    path = ROOT / "functions/pushgateway_janitor/app.py"
    spec = importlib.util.spec_from_file_location("pushgateway_janitor_app", path)
    assert spec is not None and spec.loader is not None
    janitor = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = janitor  # dataclasses resolve their module by name
        spec.loader.exec_module(janitor)
    with answering(fixed(REDIRECT)) as port:
        with pytest.raises(TelemetryError, match="301"):
            janitor.delete_group(f"http://127.0.0.1:{port}", {"job": "j", "instance": "i"})
        with pytest.raises(TelemetryError, match="301"):
            janitor.list_groups(f"http://127.0.0.1:{port}")


def test_an_otlp_redirect_is_a_failure() -> None:
    with answering(fixed(REDIRECT)) as port:
        exporter = OtlpHttpSpanExporter({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"})
        with pytest.raises(TelemetryError) as caught:
            exporter.send([], time.monotonic() + 1.0)
    assert caught.value.kind == "http 301"


# --- 3. OTLP header values never reach the logs ---------------------------------------------


def test_curl_style_and_encoded_headers_are_read_without_quoting_values() -> None:
    config.take_problems()
    assert parse_headers("x-api-key: s3cr3t-value", "V") == {"x-api-key": "s3cr3t-value"}
    assert parse_headers("a=1,b=x%20y", "V") == {"a": "1", "b": "x y"}
    assert parse_headers("x-api-key=bad%0Avalue,ok=1", "V") == {"ok": "1"}
    (problem,) = config.take_problems()
    text = json.dumps(problem.as_log())
    assert "x-api-key" in text and "bad" not in text and "value" not in problem.as_log()


def test_no_header_value_in_any_line_the_function_prints() -> None:
    """The SDK's parser logged the raw string as plain text; a %0A value's http.client error
    was quoted in 'telemetry export failed'."""
    for headers in ("x-api-key: PLANTED-KEY-1", "x-api-key=PLANTED%0AKEY-1"):
        out = _fresh_invoke(
            {
                "OTEL_EXPORTER_OTLP_HEADERS": headers,
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                "OTEL_TRACES_EXPORTER": "otlp",
            }
        )
        assert "PLANTED" not in out
        assert all(json.loads(line) for line in out.splitlines() if line.strip())


# --- 4. bounded answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",  # framed by the end of the connection
    ],
)
def test_an_endless_answer_is_cut_at_the_cap(head: bytes) -> None:
    piece = b"10000\r\n" + b"x" * 0x10000 + b"\r\n" if b"chunked" in head else b"x" * 65536
    with answering(endless(head, piece)) as port:
        tracemalloc.start()
        try:
            with pytest.raises(TelemetryError) as caught:
                http_client.request(
                    f"http://127.0.0.1:{port}/", "PUT", time.monotonic() + 2, body=b""
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert caught.value.kind == "too large"
    assert peak < 1024 * 1024  # 290 MiB on 18e67e9 within the push's 0.5 s


# --- 6. credentials in PUSHGATEWAY_URL -------------------------------------------------------


def test_a_url_password_is_never_quoted_and_becomes_basic_auth() -> None:
    config.take_problems()
    assert gateways("http://user:Zq7#xk/w?rd@pgw.test:9091") == ()
    (problem,) = config.take_problems()
    shown = json.dumps(problem.as_log())
    assert "Zq7" not in shown and "xk" not in shown and "pgw.test" not in shown
    (gateway,) = gateways("http://user:p%23ss@pgw.test:9091/")
    assert gateway.url == "http://pgw.test:9091"
    assert gateway.credentials == ("user", "p#ss")
    assert "p#ss" not in repr(gateway)
    settings = config.Settings.from_env({"PUSHGATEWAY_URL": "http://user:p%23ss@pgw.test:9091/"})
    assert settings.pushgateways == (gateway,)
    assert "p#ss" not in repr(settings) and "p%23ss" not in repr(settings)


def test_basic_auth_from_the_url_reaches_the_gateway() -> None:
    received: list[bytes] = []
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with answering(fixed(ok), received) as port:
        push(f"http://u:pw%2Fx@127.0.0.1:{port}", "auth", time.monotonic() + 1)
    assert b"Authorization: Basic dTpwdy94" in received[0]  # base64("u:pw/x")
    assert b"pw" not in received[0].split(b"\r\n", 1)[0]  # not in the request line
    assert "pw/x" not in describe("failed: pw/x")  # kept secret once used


# --- 7. a lone surrogate in an event --------------------------------------------------------


def test_a_lone_surrogate_neither_breaks_a_log_line_nor_a_span(tmp_path: Path) -> None:
    raw = (EVENTS / "rest-get.json").read_text()
    event = json.loads(raw)
    event["path"] = "/healthz\ud800"
    event["requestContext"]["identity"]["userAgent"] = "agent\udfff"
    event["headers"]["User-Agent"] = "agent\udfff"
    path = tmp_path / "surrogate.json"
    path.write_text(json.dumps(event))  # ensure_ascii: the \ud800 escape, as API Gateway sends
    out = _fresh_invoke({"OTEL_TRACES_EXPORTER": "console"}, path)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and all(isinstance(line, dict) for line in lines)
    (span,) = [line for line in lines if line.get("kind") == "SpanKind.SERVER"]
    assert span["attributes"]["url.path"] == "/healthz\\ud800"
    request = http_event.parse(event)
    assert request is not None and request.user_agent == "agent\\udfff"
    assert dumps({"m": "\ud800"}) == '{"m":"\\ud800"}'  # still one JSON object


# --- 8. configuration typos -----------------------------------------------------------------


def test_typos_in_the_configuration_are_warnings_and_defaults() -> None:
    out = _fresh_invoke(
        {
            "POWERTOOLS_LOG_LEVEL": "trace",
            "OTEL_BSP_MAX_QUEUE_SIZE": "²",
            "PUSHGATEWAY_TIMEOUT_SECONDS": "fast",
            "OBSERVABILITY_EXPORT_MODE": "later",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon",
            "OTEL_TRACES_EXPORTER": "none",
        }
    )
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    ignored = {
        line["variable"]: line for line in lines if line["message"] == "configuration value ignored"
    }
    assert set(ignored) >= {
        "POWERTOOLS_LOG_LEVEL",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "PUSHGATEWAY_TIMEOUT_SECONDS",
        "OBSERVABILITY_EXPORT_MODE",
    }
    assert ignored["POWERTOOLS_LOG_LEVEL"]["using"] == "INFO"
    assert ignored["OTEL_BSP_MAX_QUEUE_SIZE"]["using"] == "2048"
    assert any(line["message"].startswith("Monitoring endpoint invoked") for line in lines)
    assert log_level({"POWERTOOLS_LOG_LEVEL": "warn"}) == "WARNING"
    assert log_level({}) is None


# --- 9. the Extensions API client bounds header lines -----------------------------------------


def test_an_endless_header_section_is_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: x\r\n"
    with answering(endless(head, b"X-Filler: " + b"y" * 1000 + b"\r\n")) as port:
        tracemalloc.start()
        try:
            with pytest.raises(ExtensionError, match="too many header lines"):
                ExtensionClient(f"127.0.0.1:{port}").register()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2 * 1024 * 1024  # 426 MiB on 18e67e9


# --- 10. one cold-start truth ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("initialization", "cold"),
    [
        ("on-demand", True),
        ("provisioned-concurrency", False),
        ("lambda-managed-instances", False),
    ],
)
def test_log_line_span_and_counter_agree_on_cold_start(initialization: str, cold: bool) -> None:
    script = (
        "import json, sys\n"
        "from bench.fresh import lambda_context\n"
        "import app\n"
        "from lambda_observability import metrics\n"
        "event = json.load(open(sys.argv[1]))\n"
        "for _ in range(2):\n"
        "    app.handler(event, lambda_context())\n"
        "print(json.dumps({'counted': metrics.value('lambda_cold_starts_total')}))\n"
    )
    out = fresh.run(
        script,
        HEALTHZ,
        [str(EVENTS / "rest-get.json")],
        {
            "AWS_LAMBDA_INITIALIZATION_TYPE": initialization,
            # Spans printed before the handler returns, LMI's background timer included.
            "OBSERVABILITY_EXPORT_MODE": "sync",
            "OTEL_TRACES_EXPORTER": "console",
            "PYTHONIOENCODING": "utf-8",
        },
    )
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    seed = [line for line in lines if line.get("message", "").startswith("Monitoring endpoint")]
    spans = [line for line in lines if line.get("kind") == "SpanKind.SERVER"]
    assert [line["cold_start"] for line in seed] == [cold, False]
    assert [span["attributes"]["faas.coldstart"] for span in spans] == [cold, False]
    assert lines[-1]["counted"] == (1.0 if cold else 0.0)


def _fresh_invoke(variables: dict[str, str], event: Path = EVENTS / "rest-get.json") -> str:
    """One invocation in a fresh interpreter whose standard output is strict UTF-8, as on
    Lambda; every line it prints."""
    script = (
        "import json, sys\n"
        "from bench.fresh import lambda_context\n"
        "import app\n"
        "app.handler(json.load(open(sys.argv[1])), lambda_context())\n"
    )
    return fresh.run(
        script,
        HEALTHZ,
        [str(event)],
        {"OBSERVABILITY_EXPORT_MODE": "sync", "PYTHONIOENCODING": "utf-8", **variables},
    )


def test_a_body_cut_short_of_its_length_is_no_success() -> None:
    """read(amt), used for the cap, does not raise on a truncated body as read() did."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    with answering(fixed(cut)) as port, pytest.raises(TelemetryError) as caught:
        http_client.request(f"http://127.0.0.1:{port}/", "PUT", time.monotonic() + 2, body=b"")
    assert caught.value.kind == "malformed"
