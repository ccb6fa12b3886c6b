"""The layer's Telemetry API subscriber: where it listens, what it records from a batch, how
its listener answers good and bad deliveries, and what a refused subscription leaves
(the end-to-end run under localrt: tests/e2e/test_platform_metrics.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from lambda_observability import config, metrics, telemetry_api
from lambda_observability.extension import ExtensionClient
from lambda_observability.telemetry_api import Listener, PlatformFigures
from tests.loopback import answering, fixed


def _report(
    request_id: str, duration: Any = 12.5, billed: Any = 13, memory: Any = 71
) -> dict[str, Any]:
    figures = {"durationMs": duration, "memorySizeMB": 128}
    if billed is not None:
        figures["billedDurationMs"] = billed
    if memory is not None:
        figures["maxMemoryUsedMB"] = memory
    record = {"requestId": request_id, "status": "success", "metrics": figures}
    return {"time": "2026-12-02T00:00:00.000Z", "type": "platform.report", "record": record}


def _count(name: str) -> float:
    return metrics.value(f"{name}_count") or 0.0


def _sum(name: str) -> float:
    return metrics.value(f"{name}_sum") or 0.0


def test_the_listener_takes_sandbox_localdomain_from_the_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n# 10.0.0.1 sandbox.localdomain\n"
        "169.254.100.1 sandbox sandbox.localdomain\n"
    )
    assert telemetry_api.listen_address(str(hosts)) == "169.254.100.1"
    hosts.write_text("127.0.0.1 localhost\n")
    assert telemetry_api.listen_address(str(hosts)) == "127.0.0.1"
    assert telemetry_api.listen_address(str(tmp_path / "missing")) == "127.0.0.1"


def test_a_batch_gives_one_observation_per_report_and_one_for_the_init() -> None:
    names = (
        telemetry_api.INVOKE_DURATION,
        telemetry_api.BILLED_DURATION,
        telemetry_api.MEM_USAGE,
        telemetry_api.INIT_DURATION,
    )
    figures = PlatformFigures()
    before = {name: (_count(name), _sum(name)) for name in names}
    init = {"phase": "init", "status": "success", "metrics": {"durationMs": 420.0}}
    reinit = {"phase": "invoke", "status": "success", "metrics": {"durationMs": 99.0}}
    figures.record(
        [
            {"type": "platform.initReport", "record": init},
            {"type": "platform.initReport", "record": reinit},  # a re-init, not this init
            {"type": "platform.start", "record": {"requestId": "a"}},
            {"type": "platform.runtimeDone", "record": {"requestId": "a", "metrics": {}}},
            _report("a"),
            _report("b", duration=3, billed=4, memory=80),
            {"type": "function", "record": "a log line"},
        ]
    )
    gained = {name: (_count(name) - c, _sum(name) - s) for name, (c, s) in before.items()}
    expected = {
        telemetry_api.INVOKE_DURATION: (2, 0.0155),
        telemetry_api.BILLED_DURATION: (2, 0.017),
        telemetry_api.MEM_USAGE: (2, (71 + 80) * 1024 * 1024),
        telemetry_api.INIT_DURATION: (1, 0.42),
    }
    for name, (count, total) in expected.items():
        assert gained[name][0] == count, name
        assert gained[name][1] == pytest.approx(total), name
    assert figures.reports == 2 and figures.rejected == 0


def test_unusable_figures_are_skipped_and_counted_not_raised() -> None:
    figures = PlatformFigures()
    name = telemetry_api.INVOKE_DURATION
    before = _count(name)
    figures.record(
        [
            _report("bool", duration=True),
            _report("negative", duration=-1),
            _report("text", duration="12"),
            {"type": "platform.report", "record": "not an object"},
            {"type": "platform.initReport", "record": None},
            "not an event",
            _report("kept", duration=float("nan"), billed=None),
        ]
    )
    assert _count(name) == before
    assert figures.reports == 5 and figures.rejected == 5
    with pytest.raises(telemetry_api.TelemetryApiError):
        figures.record({"type": "platform.report"})


def test_lmi_figures_have_no_billed_duration() -> None:
    figures = PlatformFigures(billed=False)
    before = _count(telemetry_api.BILLED_DURATION), _count(telemetry_api.INVOKE_DURATION)
    figures.record([_report("a", billed=None, memory=None)])
    assert _count(telemetry_api.BILLED_DURATION) == before[0]
    assert _count(telemetry_api.INVOKE_DURATION) == before[1] + 1


def _deliver(port: int, requests: list[bytes]) -> list[bytes]:
    """Send ``requests`` on one connection; the status line of each answer."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        for request in requests:
            sock.sendall(request)
            answers.append(reader.readline().strip())
            while reader.readline() not in (b"\r\n", b""):
                pass
    return answers


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:  # closed with the rest of the request unread
        return True


def _post(body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        framed = (
            b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:])) + b"0\r\n\r\n"
        )
        return b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_the_listener_answers_each_delivery_on_a_kept_alive_connection() -> None:
    listener = Listener(PlatformFigures(), "127.0.0.1")
    try:
        batch = json.dumps([_report("x")]).encode()
        answers = _deliver(
            listener.port,
            [
                _post(batch),
                _post(batch, chunked=True),
                _post(b"{not json"),
                _post(b'{"an": "object"}'),
                b"GET / HTTP/1.1\r\n\r\n",
            ],
        )
        assert answers == [
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 400 Bad Request",
            b"HTTP/1.1 400 Bad Request",
            b"HTTP/1.1 405 Method Not Allowed",
        ]
        assert listener.figures.reports == 2
    finally:
        listener.close()


def test_a_closed_gate_holds_deliveries_until_it_opens() -> None:
    # The async extension closes the gate while a handler runs: a delivery arriving then (on a
    # new connection, or on a kept-alive one) is neither read nor answered until it opens.
    gate = telemetry_api.Gate()
    gate.close()
    listener = Listener(PlatformFigures(), "127.0.0.1", gate)
    batch = json.dumps([_report("held")]).encode()
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
            sock.sendall(_post(batch))
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(100)
            assert listener.figures.reports == 0
            gate.open()
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
            assert listener.figures.reports == 1
            # Closed again (the next handler): the same connection's next batch waits too.
            gate.close()
            sock.sendall(_post(batch))
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(100)
            gate.open()
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
            assert listener.figures.reports == 2
    finally:
        listener.close()


def test_the_gate_closes_only_once_a_delivery_being_taken_is_done() -> None:
    import threading
    import time

    gate = telemetry_api.Gate()
    entered, release = threading.Event(), threading.Event()

    def take() -> None:
        with gate.taking():
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=take)
    worker.start()
    assert entered.wait(5)
    threading.Timer(0.1, release.set).start()
    started = time.monotonic()
    gate.close(quiet_timeout=5)
    assert time.monotonic() - started >= 0.09  # waited for the delivery, not for 5 s
    assert not gate.wait_open(0)
    worker.join(5)


def test_a_hostile_delivery_costs_its_connection_only() -> None:
    listener = Listener(PlatformFigures(), "127.0.0.1")
    try:
        oversized = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (
            telemetry_api.MAX_BATCH_BYTES + 1
        )
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
            sock.sendall(oversized)
            assert _closed(sock)  # closed, not read into memory
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n")
            assert _closed(sock)
        assert listener.errors == 2
        # The next delivery is taken as usual.
        assert _deliver(listener.port, [_post(json.dumps([_report("y")]).encode())]) == [
            b"HTTP/1.1 200 OK"
        ]
        assert listener.figures.reports == 1
    finally:
        listener.close()


def _registered(port: int) -> ExtensionClient:
    client = ExtensionClient(f"127.0.0.1:{port}")
    client._identifier = "extension-id"  # as register() leaves it
    return client


def test_a_refused_subscription_says_why_and_leaves_no_listener() -> None:
    # AWS's classic emulator: 202 Telemetry.NotSupported.
    body = b'{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}'
    answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    received: list[bytes] = []
    with answering(fixed(answer), received) as port:
        subscription = telemetry_api.subscribe(_registered(port))
    assert subscription.outcome == "not subscribed: 202 Telemetry.NotSupported"
    assert subscription.listener is None
    assert not subscription.wait_for_reports(1, 0.0)
    request = received[0].decode()
    assert request.startswith("PUT /2022-07-01/telemetry HTTP/1.1")
    assert "Lambda-Extension-Identifier: extension-id" in request
    sent = json.loads(request.split("\r\n\r\n", 1)[1])
    assert sent["schemaVersion"] == "2022-12-13" and sent["types"] == ["platform"]
    assert sent["buffering"] == {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
    assert sent["destination"]["URI"].startswith("http://sandbox.localdomain:")


def test_an_accepted_subscription_listens_where_it_said() -> None:
    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"OK"'
    received: list[bytes] = []
    with answering(fixed(answer), received) as port:
        subscription = telemetry_api.subscribe(
            _registered(port), telemetry_api.SCHEMA_MANAGED_INSTANCES
        )
    assert subscription.outcome == "subscribed (schema 2025-01-29)"
    assert subscription.listener is not None
    try:
        sent = json.loads(received[0].decode().split("\r\n\r\n", 1)[1])
        assert (
            sent["destination"]["URI"] == f"http://sandbox.localdomain:{subscription.listener.port}"
        )
        batch = json.dumps([_report("z", billed=None)]).encode()
        assert _deliver(subscription.listener.port, [_post(batch)]) == [b"HTTP/1.1 200 OK"]
        assert subscription.wait_for_reports(1, 5.0)
    finally:
        subscription.listener.close()


def test_an_unreachable_extensions_api_is_an_outcome_not_an_error() -> None:
    with answering(lambda conn: conn.close()) as port:
        subscription = telemetry_api.subscribe(_registered(port))
    assert subscription.outcome.startswith("not subscribed: ")
    assert "connection closed" in subscription.outcome
    assert subscription.listener is None


def test_the_switch_takes_on_or_off_and_warns_on_anything_else() -> None:
    config.take_problems()
    assert not config.Settings.from_env({"OBSERVABILITY_TELEMETRY_API": "OFF"}).telemetry_api
    assert config.Settings.from_env({}).telemetry_api
    assert config.Settings.from_env({"OBSERVABILITY_TELEMETRY_API": "maybe"}).telemetry_api
    [problem] = config.take_problems()
    assert problem.variable == "OBSERVABILITY_TELEMETRY_API" and problem.default == "on"
