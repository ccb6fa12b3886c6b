"""Drives the real `python -m localrt` as a subprocess against localrt's own test template."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = Path(__file__).resolve().parent / "functions"
TEMPLATE = FUNCTIONS / "template.yaml"
_LISTENING = re.compile(r"listening on (http://\S+)")
_TAGGED = re.compile(r"^\[(env-\d+)\] (.*)$")


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for localrt: no AWS variables from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SIGTERM_"))}
    env.pop("PYTHONPATH", None)
    env["AWS_REGION"] = "eu-west-1"
    env.update(extra)
    return env


def pid_alive(pid: int) -> bool:
    try:
        # a zombie is dead, just not reaped yet
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


class LocalRT:
    """One `python -m localrt start-api` process, its stderr collected line by line."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, template: Path = TEMPLATE
    ) -> None:
        cmd = [sys.executable, "-m", "localrt", "start-api", "--template", str(template)]
        cmd += ["--port", "0", *args]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env or base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.seen_pids: set[int] = set()
        line = self.wait_line(lambda s: _LISTENING.search(s) is not None, timeout=30)
        match = _LISTENING.search(line)
        assert match, self.text()
        self.url = match.group(1)
        self.session = requests.Session()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<EOF>")
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pred: Callable[[str], bool], timeout: float = 10) -> str:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = end - time.monotonic()
                if left <= 0 or "<EOF>" in self.lines:
                    raise AssertionError("line not found; stderr was:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def tagged(self) -> list[tuple[str, str]]:
        """(tag, raw line) for every line an environment printed."""
        with self._cond:
            found = (_TAGGED.match(line) for line in self.lines)
            return [(m.group(1), m.group(2)) for m in found if m]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return self.session.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/__localrt/stats").json()
        self.seen_pids |= {e["pid"] for e in data["environments"] if e["pid"]}
        return data

    def idle(self) -> bool:
        """Every environment is ready for an event: no invocation, no export after one."""
        return all(e["state"] == "idle" for e in self.stats()["environments"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                self.stats()  # remember every environment's pid for the orphan check
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        self.session.close()
        return code


def assert_no_orphans(rt: LocalRT) -> None:
    """No orphans, ever: every environment process is gone once localrt has exited."""
    assert rt.proc.poll() is not None
    pids = set(rt.seen_pids)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5), pids


def body_json(resp: requests.Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resp.text)
    return data
