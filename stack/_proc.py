"""Process plumbing shared by the stack's components: binaries, readiness, stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


class Service:
    """Started on ``with`` entry, stopped on exit: every piece of the stack works the same way."""

    def start(self) -> Self:
        return self

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class StackError(RuntimeError):
    """A component could not be found, started or reached."""


def find_binary(names: Sequence[str], env_var: str, apt_package: str) -> str:
    """Locate a binary: $env_var first, then each name on PATH; fail with an install hint."""
    override = os.environ.get(env_var)
    if override:
        if shutil.which(override) is None:
            raise StackError(f"{env_var}={override!r} is not an executable file")
        return override
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    raise StackError(
        f"none of {', '.join(names)} found on PATH: install it with "
        f"`apt-get install -y {apt_package}` or point {env_var} at the binary"
    )


def http_ok(url: str, timeout: float = 1.0, headers: dict[str, str] | None = None) -> bool:
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback URL)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback URL)
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False


class ManagedProcess:
    """A child process with its output in a log file, stopped TERM-then-KILL."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("ab")
        # Own session: Ctrl-C in a terminal reaches only `python -m stack up`, which then
        # stops the children in order instead of them dying mid-write.
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until true; fail fast (with the log) if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            if not self.running():
                raise StackError(
                    f"{self.name} exited with code {self.popen.returncode} before {what}:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} not {what} after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)
        self._log.close()
