"""The fault proxy, mode by mode, with real HTTP clients (urllib, http.client, requests,
prometheus-client's push) against an in-process backend on loopback."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, push_to_gateway

from stack.faultproxy import FaultProxy, FaultProxyError

REPO = Path(__file__).resolve().parents[2]


class Backend:
    """Echoes every request: {"method", "path", "body", "headers"}; 404 under /missing."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode(errors="replace")
                record = {
                    "method": self.command,
                    "path": self.path,
                    "body": body,
                    "headers": dict(self.headers.items()),
                }
                backend.requests.append(record)
                data = json.dumps(record).encode()
                self.send_response(404 if self.path.startswith("/missing") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Backend", "yes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


@pytest.fixture
def proxy(backend: Backend) -> Iterator[FaultProxy]:
    with FaultProxy(backend.url, control_port=0) as p:
        yield p


def _get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return int(resp.status), json.load(resp)


def test_pass_forwards_method_path_body_headers_and_status(
    proxy: FaultProxy, backend: Backend
) -> None:
    status, echo = _get(proxy.url + "/metrics/job/x?y=1")
    assert status == 200
    assert echo["path"] == "/metrics/job/x?y=1"
    with requests.Session() as session:
        resp = session.put(
            proxy.url + "/metrics/job/bench", data=b"a 1\n", headers={"X-Custom": "v"}, timeout=5
        )
        assert resp.status_code == 200
        assert resp.headers["X-Backend"] == "yes"
        assert resp.json()["body"] == "a 1\n"
        assert resp.json()["headers"]["X-Custom"] == "v"
        # the backend's own errors pass through untouched
        missing = session.get(proxy.url + "/missing", timeout=5)
        assert missing.status_code == 404
    stats = proxy.stats()
    assert stats["forwarded"] == 3
    assert stats["connections"] == 2  # the session kept its connection alive


def test_delay_forwards_late(proxy: FaultProxy, backend: Backend) -> None:
    proxy.delay(250)
    started = time.monotonic()
    status, _ = _get(proxy.url + "/delayed")
    elapsed = time.monotonic() - started
    assert status == 200
    assert 0.25 <= elapsed < 2.0
    assert backend.requests[-1]["path"] == "/delayed"


def test_refuse_closes_the_listener_then_reopens_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.refuse()
    with pytest.raises(urllib.error.URLError) as caught:
        _get(proxy.url + "/x", timeout=2)
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    with pytest.raises(requests.ConnectionError):
        requests.get(proxy.url + "/x", timeout=2)
    proxy.passthrough()
    assert proxy.port == port
    assert _get(proxy.url + "/x")[0] == 200


def test_refuse_resets_kept_alive_connections(proxy: FaultProxy) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    connection.request("GET", "/first")
    assert connection.getresponse().read()
    proxy.refuse()
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, OSError)):
        connection.request("GET", "/second")
        connection.getresponse()
    connection.close()


def test_blackhole_accepts_and_never_answers(proxy: FaultProxy, backend: Backend) -> None:
    before = len(backend.requests)
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(proxy.url + "/v1/traces", data=b"spans", timeout=(1, 0.3))
    assert time.monotonic() - started < 2
    # prometheus-client's push gives up at its timeout too
    registry = CollectorRegistry()
    Counter("healthz_calls", "calls", registry=registry).inc()
    with pytest.raises(OSError):
        push_to_gateway(proxy.url, job="bench", registry=registry, timeout=0.3)
    assert len(backend.requests) == before
    assert proxy.stats()["by_mode"]["blackhole"] == 2


def test_slow_answers_after_the_clients_timeout(proxy: FaultProxy) -> None:
    proxy.slow(400)
    with pytest.raises(requests.ReadTimeout):
        requests.get(proxy.url + "/slow", timeout=(1, 0.2))
    started = time.monotonic()
    resp = requests.get(proxy.url + "/slow", timeout=3)
    assert resp.status_code == 200
    assert time.monotonic() - started >= 0.4


def test_trickle_defeats_a_per_read_timeout(proxy: FaultProxy) -> None:
    proxy.trickle(5)
    started = time.monotonic()
    # each byte arrives well within 0.5 s, so the read timeout never fires
    resp = requests.get(proxy.url + "/trickled", timeout=(1, 0.5))
    elapsed = time.monotonic() - started
    assert resp.json()["path"] == "/trickled"
    assert elapsed >= 0.005 * len(resp.content) * 0.8


@pytest.mark.parametrize("code", [500, 401, 403])
def test_status_answers_without_forwarding(proxy: FaultProxy, backend: Backend, code: int) -> None:
    before = len(backend.requests)
    proxy.status(code, headers={"WWW-Authenticate": 'Basic realm="x"'})
    with pytest.raises(urllib.error.HTTPError) as caught:
        _get(proxy.url + "/metrics/job/x")
    assert caught.value.code == code
    assert caught.value.headers["WWW-Authenticate"] == 'Basic realm="x"'
    registry = CollectorRegistry()
    Counter("healthz_calls", "calls", registry=registry).inc()
    with pytest.raises(OSError, match=str(code)):
        push_to_gateway(proxy.url, job="bench", registry=registry, timeout=2)
    assert len(backend.requests) == before


def test_status_keeps_the_connection_usable(proxy: FaultProxy) -> None:
    proxy.status(503, body="down for maintenance")
    with requests.Session() as session:
        for _ in range(3):
            resp = session.get(proxy.url + "/x", timeout=2)
            assert (resp.status_code, resp.text) == (503, "down for maintenance")
    assert proxy.stats()["connections"] == 1


def test_malformed_garbage_is_not_http(proxy: FaultProxy) -> None:
    proxy.malformed("garbage")
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    connection.request("GET", "/x")
    with pytest.raises(http.client.BadStatusLine):
        connection.getresponse()
    connection.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(proxy.url + "/x", timeout=2)


def test_malformed_truncated_body(proxy: FaultProxy) -> None:
    proxy.malformed("truncated")
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    connection.request("GET", "/x")
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    connection.close()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(proxy.url + "/x", timeout=2)


def test_malformed_close_sends_nothing(proxy: FaultProxy) -> None:
    proxy.malformed("close")
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    connection.request("GET", "/x")
    with pytest.raises(http.client.RemoteDisconnected):
        connection.getresponse()
    connection.close()


def test_control_api_switches_modes_even_while_refusing(proxy: FaultProxy) -> None:
    control = proxy.control_url
    assert control is not None

    def put(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            control + "/fault", data=json.dumps(body).encode(), method="PUT"
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return int(resp.status), json.load(resp)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    assert put({"mode": "refuse"})[0] == 200
    assert _get(control + "/fault")[1]["mode"] == "refuse"
    assert put({"mode": "status", "status": 429, "headers": {"Retry-After": "1"}})[0] == 200
    assert requests.get(proxy.url + "/x", timeout=2).status_code == 429
    status, error = put({"mode": "nonsense"})
    assert status == 400 and "unknown mode" in error["error"]
    assert put({"mode": "pass"})[0] == 200
    state = _get(control + "/fault")[1]
    assert state["mode"] == "pass"
    assert state["stats"]["by_mode"]["status"] == 1


def test_stop_ends_a_blackholed_request_at_once(backend: Backend) -> None:
    proxy = FaultProxy(backend.url).start()
    proxy.blackhole(hold_s=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            requests.get(proxy.url + "/x", timeout=10)
        except requests.RequestException as error:
            errors.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    assert _wait_for(lambda: proxy.stats()["requests"] == 1)
    started = time.monotonic()
    proxy.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert errors


def test_rejects_non_loopback_and_bad_parameters(backend: Backend) -> None:
    with pytest.raises(FaultProxyError):
        FaultProxy("http://192.0.2.1:9091")
    with pytest.raises(FaultProxyError):
        FaultProxy(backend.url, host="0.0.0.0")
    with pytest.raises(FaultProxyError):
        FaultProxy("https://127.0.0.1:1")
    with FaultProxy(backend.url) as p:
        with pytest.raises(FaultProxyError):
            p.set_mode("explode")
        with pytest.raises(FaultProxyError):
            p.malformed("weird")
        assert p.fault.mode == "pass"


def test_command_line(backend: Backend) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.faultproxy", "--target", backend.url, "--delay-ms", "100"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        started = time.monotonic()
        assert _get(url + "/cli")[0] == 200
        assert time.monotonic() - started >= 0.1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _wait_for(predicate: Any, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
