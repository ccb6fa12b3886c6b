"""Processes the benchmark starts: localrt servers, the backends, and the fault proxy.

Every process started here is stopped by ``stop`` (or the ``ExitStack`` of the caller), every
wait is bounded, and every request goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import psutil

from bench.configs import REPO, TEMPLATE

# bench.run and bench.policy import it from here
from stack.components import FaultProxyProcess as FaultProxyProcess

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class BenchError(RuntimeError):
    pass


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _wait_line(log: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes]) -> re.Match[str]:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = pattern.search(text)
        if match:
            return match
        if proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited with {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.05)
    raise BenchError(f"{proc.args!r} did not start within 60 s: see {log}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def clean_env(**extra: str) -> dict[str, str]:
    """The shell's environment without AWS_* or PYTHONPATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("PYTHONPATH", None)
    env["AWS_REGION"] = "us-east-1"
    env.update(extra)
    return env


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    # /proc by hand here only: psutil reports the current RSS, not the peak
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def parent_pid(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


class LocalRT:
    """One ``python -m localrt start-api`` for one function of bench/template.yaml."""

    def __init__(
        self,
        function: str,
        env: dict[str, str],
        workdir: Path,
        concurrency: int = 1,
        max_concurrency: int | None = None,
        grace_seconds: float | None = 1.0,
    ) -> None:
        """``max_concurrency``: Lambda Managed Instances with that many workers per environment;
        ``grace_seconds`` None: localrt's own SIGTERM -> SIGKILL delay (600 ms on LMI)."""
        self.function = function
        self.log = workdir / f"localrt-{function}-{len(list(workdir.glob('localrt-*')))}.log"
        self._log_file = self.log.open("wb")
        cmd = [sys.executable, "-m", "localrt", "start-api", "--template", str(TEMPLATE)]
        cmd += ["--function", function, "--port", "0", "--concurrency", str(concurrency)]
        if max_concurrency is not None:
            cmd += ["--max-concurrency", str(max_concurrency)]
        if grace_seconds is not None:
            cmd += ["--grace-seconds", str(grace_seconds)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
        )
        self.port = 0
        self._conn: http.client.HTTPConnection | None = None

    @classmethod
    def attach(cls, other: LocalRT) -> LocalRT:
        """Another client of ``other``'s server, with a connection of its own (for threads)."""
        client = cls.__new__(cls)
        client.function, client.log, client.proc = other.function, other.log, other.proc
        client.port, client._conn = other.port, None
        return client

    def wait_listening(self) -> Self:
        self.port = int(_wait_line(self.log, _LISTENING, self.proc).group(1))
        return self

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        return self._conn

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        """One request on a kept-alive connection (reconnects once if localrt closed it)."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def timed_get(self, path: str = "/healthz") -> float:
        """Client-visible latency of one GET, in ms; raises unless 200."""
        started = time.perf_counter()
        status, body = self.request("GET", path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise BenchError(f"{self.function}: GET {path} answered {status}: {body[:300]!r}")
        return elapsed

    def stats(self) -> dict[str, Any]:
        status, body = self.request("GET", "/__localrt/stats")
        if status != 200:
            raise BenchError(f"{self.function}: stats answered {status}")
        data: dict[str, Any] = json.loads(body)
        return data

    def reset_stats(self) -> None:
        self.request("DELETE", "/__localrt/stats")

    def records(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` invocations are closed (environment ready again) and return them."""
        found: list[dict[str, Any]] = []

        def enough() -> bool:
            nonlocal found
            found = list(self.stats()["invocations"])
            return len(found) >= count

        if not wait_for(enough, timeout, interval=0.02):
            raise BenchError(f"{self.function}: {len(found)} of {count} invocations closed")
        return found

    def live_pid(self) -> int | None:
        live = [e for e in self.stats()["environments"] if e["state"] != "dead" and e["pid"]]
        return int(live[0]["pid"]) if live else None

    def kill_environment(self, pid: int) -> None:
        """SIGKILL this localrt's environment ``pid`` and wait until localrt has dropped it."""
        if parent_pid(pid) != self.proc.pid:
            raise BenchError(f"pid {pid} is not an environment of {self.function}'s localrt")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not wait_for(lambda: self.live_pid() is None, 10, interval=0.02):
            raise BenchError(f"{self.function}: environment {pid} still alive after SIGKILL")

    def close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> int | None:
        """SIGTERM localrt (it stops its environments gracefully), SIGKILL after 15 s; its exit
        code."""
        self.close_connection()
        _stop(self.proc)
        if not self._log_file.closed:
            self._log_file.close()
        return self.proc.returncode
