"""Freezing: an environment parked in /next is SIGSTOPped, as Lambda freezes it, and thawed
(SIGCONT) to take its next event or SIGTERM.  `--no-freeze` keeps it running."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.localrt.harness import (
    ROOT,
    LocalRT,
    base_env,
    body_json,
    pid_alive,
    wait_until,
)

pytestmark = pytest.mark.integration
Start = Callable[..., LocalRT]

STOPPED = psutil.STATUS_STOPPED  # SIGSTOP's T


@pytest.fixture
def start(start_localrt: Start) -> Start:
    """conftest's ``start_localrt``: stopped, and checked for orphans, after each test."""
    return start_localrt


class Sink:
    """A loopback TCP listener counting the lines the function's threads send, by first word."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._server.accept()
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                with self._lock:
                    self._counts[line.split(b" ", 1)[0].decode()] += 1

    def count(self, kind: str) -> int:
        with self._lock:
            return self._counts[kind]

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = Sink()
    yield running
    running.close()


def thread_states(pid: int) -> set[str]:
    """The psutil status of every thread of `pid` (a thread id is a process id to psutil)."""
    states: set[str] = set()
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(psutil.NoSuchProcess):
            states.add(psutil.Process(thread.id).status())
    return states


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process, in clock ticks."""
    times = psutil.Process(pid).cpu_times()
    return round((times.user + times.system) * os.sysconf("SC_CLK_TCK"))


def environment(rt: LocalRT) -> dict[str, Any]:
    envs: list[dict[str, Any]] = rt.stats()["environments"]
    assert len(envs) == 1, envs
    return envs[0]


def frozen(rt: LocalRT) -> bool:
    return bool(environment(rt)["frozen"])


def freeze_function(start: Start, sink: Sink, *args: str) -> LocalRT:
    env = base_env(FREEZE_SINK=sink.address)
    return start("--function", "FreezeFunction", "--concurrency", "1", *args, env=env)


def test_idle_environment_is_stopped_and_uses_no_cpu(start: Start, sink: Sink) -> None:
    rt = freeze_function(start, sink)
    pid = body_json(rt.get("/freeze/tick"))["pid"]  # starts a thread that burns CPU and ticks
    assert wait_until(lambda: frozen(rt), 5)
    assert thread_states(pid) == {STOPPED}, thread_states(pid)
    cpu, ticks = cpu_ticks(pid), sink.count("tick")
    time.sleep(1.0)
    assert cpu_ticks(pid) == cpu  # not one clock tick of CPU in a second
    assert sink.count("tick") == ticks

    # The next event thaws it: the ticker runs while the handler does (300 ms)...
    assert body_json(rt.get("/freeze/tick?ms=300"))["pid"] == pid
    assert wait_until(lambda: sink.count("tick") >= ticks + 3, 1), sink.count("tick") - ticks
    # ...and stops again once the environment is back in /next.
    assert wait_until(lambda: frozen(rt), 5)
    assert thread_states(pid) == {STOPPED}


def test_export_after_next_is_frozen_midway(start: Start, sink: Sink) -> None:
    # 40 chunks, 25 ms apart, sent after the response: the "spans lost when the environment
    # freezes" of Lambda. They are not lost, they wait for the next thaw.
    rt = freeze_function(start, sink)
    rt.get("/freeze/export?chunks=40&gap_ms=25")
    assert wait_until(lambda: frozen(rt), 5)
    sent = sink.count("chunk")
    time.sleep(1.0)  # the whole export would be over by now, were it running
    assert sink.count("chunk") == sent < 40
    rt.get("/freeze/hello?ms=1500")  # thawed for the handler's 1.5 s: the export finishes
    assert wait_until(lambda: sink.count("chunk") == 40, 2), sink.count("chunk")


def test_no_freeze_keeps_the_environment_running(start: Start, sink: Sink) -> None:
    rt = freeze_function(start, sink, "--no-freeze")
    pid = body_json(rt.get("/freeze/tick"))["pid"]
    rt.get("/freeze/export?chunks=20&gap_ms=25")
    assert wait_until(lambda: environment(rt)["state"] == "idle", 5)
    cpu, ticks = cpu_ticks(pid), sink.count("tick")
    time.sleep(1.0)
    assert STOPPED not in thread_states(pid)
    assert cpu_ticks(pid) >= cpu + 5  # the ticker burns ~25 % of a CPU
    assert sink.count("tick") >= ticks + 10
    assert sink.count("chunk") == 20  # the export ran to the end without another event
    stats = rt.stats()
    assert stats["freeze"] is False
    assert stats["environments"][0]["frozen"] is False
    assert stats["environments"][0]["frozen_ms"] == 0


def test_stats_show_frozen_time(start: Start, sink: Sink) -> None:
    rt = freeze_function(start, sink)
    rt.get("/freeze/hello")
    assert wait_until(lambda: frozen(rt), 5)
    assert rt.stats()["freeze"] is True
    first = environment(rt)["frozen_ms"]
    time.sleep(0.5)
    second = environment(rt)["frozen_ms"]
    assert second >= first + 450
    assert body_json(rt.get("/freeze/hello?ms=200"))  # thawed while it runs
    assert wait_until(lambda: frozen(rt), 5)
    assert environment(rt)["frozen_ms"] >= second  # a running total


def test_freezes_only_when_every_extension_is_parked(start: Start) -> None:
    # The extension thread works 300 ms after each INVOKE: the runtime is back in /next long
    # before, and the environment must keep running until the extension is back too.
    rt = start("--function", "ExtensionFunction", "--concurrency", "1")
    rt.get("/ext")
    assert wait_until(lambda: frozen(rt), 5)
    t0 = time.monotonic()
    pid = body_json(rt.get("/ext"))["pid"]
    assert not frozen(rt)
    assert STOPPED not in thread_states(pid)
    assert wait_until(lambda: frozen(rt), 5)
    assert time.monotonic() - t0 >= 0.25
    assert thread_states(pid) == {STOPPED}
    # Frozen between events, yet the extension saw every INVOKE and finished its work.
    third = body_json(rt.get("/ext"))
    assert third["extension"]["finished"] == 2


def test_sigterm_thaws_a_frozen_environment(start: Start, tmp_path: Path) -> None:
    marker = tmp_path / "flushed.txt"
    rt = start("--function", "EchoFunction", env=base_env(SIGTERM_MARKER=str(marker)))
    pid = body_json(rt.get("/rest/hello"))["pid"]
    assert wait_until(lambda: frozen(rt), 5)
    assert thread_states(pid) == {STOPPED}
    assert rt.stop(signal.SIGTERM) == 0
    assert marker.read_text() == f"flushed {pid}\n"  # its SIGTERM handler ran
    assert not pid_alive(pid)


def test_grace_expiry_sigkills_a_frozen_environment(start: Start) -> None:
    rt = start(
        "--function", "EchoFunction", "--grace-seconds", "0.5", env=base_env(SIGTERM_IGNORE="1")
    )
    pid = body_json(rt.get("/rest/hello"))["pid"]
    assert wait_until(lambda: frozen(rt), 5)
    rt.stop(signal.SIGTERM)
    assert wait_until(lambda: not pid_alive(pid), 3)
    rt.wait_line(lambda s: "SIGKILL" in s)


def _pushgateway(puts: list[float]) -> type[BaseHTTPRequestHandler]:
    """A stand-in Pushgateway that records when each PUT arrived."""

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            puts.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def test_layer_sigterm_flush_runs_in_a_frozen_environment(start: Start) -> None:
    """The real function: its async export ends before the extension's /next, then the
    environment freezes; SIGTERM thaws it and the layer's final flush pushes once more."""
    puts: list[float] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _pushgateway(puts))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        env = base_env(PUSHGATEWAY_URL=url, OTEL_TRACES_EXPORTER="none")
        rt = start("--concurrency", "1", env=env, template=ROOT / "template.yaml")
        assert rt.get("/healthz").status_code == 200
        assert wait_until(lambda: frozen(rt), 5)
        pid = environment(rt)["pid"]
        assert thread_states(pid) == {STOPPED}
        pushed = len(puts)
        assert pushed >= 1  # the export after the first call, before the freeze
        t_stop = time.monotonic()
        assert rt.stop(signal.SIGTERM) == 0
        assert not pid_alive(pid)
        assert [t for t in puts if t > t_stop], puts  # the SIGTERM flush
    finally:
        server.shutdown()
        server.server_close()
