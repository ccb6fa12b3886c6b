"""stack/net.py: the loopback check, free ports and the stop signals every local server uses."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from stack.net import free_port, is_loopback, port_in_use
from tests.conftest import ROOT


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.", ""])
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_free_port_is_free_and_nothing_listens_on_it() -> None:
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        assert port_in_use(port)


# The two shapes the servers here take: wait on the event (stack, receiver, fault proxy), or
# serve on the main thread and shut down from the signal (localrt).
WAITS = """
from stack.net import stop_event
stop = stop_event()
print("ready", flush=True)
stop.wait()
print("stopped", flush=True)
"""
SERVES = """
from http.server import HTTPServer, BaseHTTPRequestHandler
from stack.net import on_stop_signals
server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
on_stop_signals(lambda sig: (print(sig.name, flush=True), server.shutdown()))
print("ready", flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


@pytest.mark.parametrize("script", [WAITS, SERVES], ids=["event", "serving-thread"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_stop_signals(script: str, signum: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out.splitlines()[-1] == "stopped"
