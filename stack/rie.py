"""AWS's own Runtime Interface Emulator (aws-lambda-rie), run natively on loopback ports.

The binary comes with the aws-sam-cli wheel (``samcli/local/rapid/aws-lambda-rie-x86_64``). It
runs one execution environment, in one of two modes:

* classic (on-demand): ``aws-lambda-rie --runtime-api-address A --runtime-interface-emulator-address
  B python -m awslambdaric HANDLER``, the runtime started from its command line, as our own user.
* Lambda Managed Instances, chosen by the emulator when ``AWS_LAMBDA_MAX_CONCURRENCY`` is set: it
  ignores its command line, runs the first ``bootstrap`` of /var/runtime, /var/task and /opt, as
  uid 993 / gid 990, in a process group of its own, and answers a request that finds every worker
  busy with ``Runtime.Unavailable: no idle runtimes``. The bootstrap is put on /var/task in a
  private mount namespace (``unshare -m``): /var gets an overlay (its upper layer in our temp
  folder) so that /var/task can be made without touching the machine's /var, and /root (mode 700,
  where pyenv's Pythons live) is replaced by a tmpfs of mode 755 holding only a bind of
  /root/.pyenv, so uid 993 can run the venv's interpreter. Nothing outside the namespace changes.

Invoke with ``POST /2015-03-31/functions/function/invocations`` (``Rie.invoke``); ``stop`` sends
SIGTERM, as Lambda's shutdown does, and waits for the emulator and every runtime process.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psutil

from stack._proc import Service, StackError
from stack.net import HOST, free_port

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RUNTIME_UID, RUNTIME_GID = 993, 990  # the emulator's LMI supervisor runs the runtime as these
_UNAVAILABLE = ("Runtime.Unavailable", "no idle runtimes")
# Variables of the developer's shell that must not reach the function.
_DROPPED_PREFIXES = ("AWS_", "OTEL_", "PUSHGATEWAY_", "OBSERVABILITY_", "PYTHON", "LAMBDA_")


def rie_binary() -> Path:
    """The emulator shipped in the aws-sam-cli wheel (found without importing samcli)."""
    spec = importlib.util.find_spec("samcli")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("aws-sam-cli is not installed in this Python: `make venv` installs it")
    arch = "arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"
    path = Path(next(iter(spec.submodule_search_locations))) / "local" / "rapid"
    binary = path / f"aws-lambda-rie-{arch}"
    if not binary.is_file():
        raise StackError(f"{binary} not found: the aws-sam-cli wheel ships it")
    return binary


@dataclass
class InvokeResult:
    status: int
    body: bytes
    latency_ms: float  # of the attempt that was served (refused attempts excluded)
    refusals: int  # "no idle runtimes" answers before it was served

    def json(self) -> Any:
        return json.loads(self.body)


def traversable(paths: Sequence[Path], hidden: Path) -> list[str]:
    """Shell lines, for a private mount namespace, that let any user reach ``paths``.

    A folder on the way that others cannot enter (``/root``; a checkout in a ``mktemp -d``
    folder, mode 700) gets a tmpfs of mode 755 laid over it, with only the entries on the way
    bound back into it: the folder itself is not changed, and nothing outside the namespace
    sees a difference. Outer folders first, so that inner ones are reached through the binds.
    """
    children: dict[Path, set[str]] = {}
    for path in paths:
        for parent in path.parents:
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                children.setdefault(parent, set()).add(path.relative_to(parent).parts[0])
    lines = []
    for index, folder in enumerate(sorted(children, key=lambda p: len(p.parts))):
        keep = shlex.quote(str(hidden / str(index)))
        target = shlex.quote(str(folder))
        lines += [f"mkdir -p {keep}", f"mount --bind {target} {keep}"]
        lines.append(f"mount -t tmpfs -o mode=755 tmpfs {target}")
        for child in sorted(children[folder]):
            inside, saved = (
                shlex.quote(str(folder / child)),
                shlex.quote(f"{hidden / str(index)}/{child}"),
            )
            lines.append(
                f"if [ -d {saved} ]; then mkdir {inside}; else touch {inside}; fi;"
                f" mount --bind {saved} {inside}"
            )
    return lines


class Rie(Service):
    """One aws-lambda-rie process: one execution environment of the function.

    ``max_concurrency=None`` is the classic emulator; an int is LMI mode with that many workers.
    """

    def __init__(
        self,
        code_dir: Path,
        layer_dirs: Sequence[Path] = (),
        handler: str = "app.handler",
        env: Mapping[str, str] | None = None,
        max_concurrency: int | None = None,
        python: str = sys.executable,
        timeout_s: int = 30,
        startup_timeout: float = 30.0,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.code_dir = Path(code_dir).resolve()
        self.layer_dirs = [Path(p).resolve() for p in layer_dirs]
        self.handler = handler
        self.function_env = dict(env or {})
        self.max_concurrency = max_concurrency
        self.python = python
        self.timeout_s = timeout_s
        self.startup_timeout = startup_timeout
        self._on_line = on_line
        self.binary = rie_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.runtime_api_port = 0
        self.port = 0
        self.workdir: Path | None = None
        self.lines: list[str] = []
        self._lines_cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self.runtime_pids: set[int] = set()  # every runtime process seen (for the orphan check)
        self.stop_ms: float | None = None
        self.exit_code: int | None = None

    @property
    def lmi(self) -> bool:
        return self.max_concurrency is not None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{INVOKE_PATH}"

    # -- starting
    def process_env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES) and k != "_"
        }
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": "healthz",
                "AWS_REGION": "eu-west-1",
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
                "_HANDLER": self.handler,
                "PYTHONPATH": os.pathsep.join(str(p) for p in [self.code_dir, *self.layer_dirs]),
            }
        )
        assert self.workdir is not None
        # The runtime's temp files (on LMI the layer's workers share a folder there) go with
        # the harness's folder; uid 993 owns it on LMI.
        env["TMPDIR"] = str(self.workdir / "tmp")
        env.update(self.function_env)
        if self.lmi:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.max_concurrency)
            env["HOME"] = str(self.workdir / "home")  # uid 993 cannot write root's home
        else:
            env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)  # its mere presence selects LMI
        return env

    def _emulator_args(self) -> list[str]:
        return [
            str(self.binary),
            "--runtime-api-address",
            f"{HOST}:{self.runtime_api_port}",
            "--runtime-interface-emulator-address",
            f"{HOST}:{self.port}",
        ]

    def _command(self) -> tuple[list[str], Path]:
        if not self.lmi:
            return [
                *self._emulator_args(),
                self.python,
                "-m",
                "awslambdaric",
                self.handler,
            ], self.code_dir
        if os.geteuid() != 0:
            raise StackError("the emulator's LMI mode needs root here (unshare -m, mounts)")
        if shutil.which("unshare") is None:
            raise StackError("unshare (util-linux) not found: the LMI mode needs it")
        assert self.workdir is not None
        task = self.workdir / "task"
        task.mkdir(mode=0o755)
        bootstrap = task / "bootstrap"
        bootstrap.write_text(
            "#!/bin/sh\n"
            f"cd {shlex.quote(str(self.code_dir))} || exit 1\n"
            f"exec {shlex.quote(self.python)} -m awslambdaric {shlex.quote(self.handler)}\n"
        )
        bootstrap.chmod(0o755)
        for owned in ("home", "tmp"):
            (self.workdir / owned).mkdir(mode=0o755, exist_ok=True)
            os.chown(self.workdir / owned, RUNTIME_UID, RUNTIME_GID)
        for name in ("upper", "work", "hidden"):
            (self.workdir / name).mkdir(mode=0o755)
        w = shlex.quote(str(self.workdir))
        # What the runtime (uid 993) reads: the interpreter (pyenv's, under /root), the venv,
        # the function and the layer, wherever the checkout is.
        needed = [
            Path(os.path.realpath(self.python)),
            Path(self.python).absolute(),
            self.code_dir.absolute(),
            *(Path(d).absolute() for d in self.layer_dirs),
        ]
        script = "\n".join(
            [
                "set -e",
                "mount --make-rprivate /",
                *traversable(needed, self.workdir / "hidden"),
                "mount -t overlay overlay"
                f" -o lowerdir=/var,upperdir={w}/upper,workdir={w}/work /var",
                "mkdir -p /var/task",
                f"mount --bind {w}/task /var/task",
                "exec " + " ".join(shlex.quote(a) for a in self._emulator_args()),
            ]
        )
        (self.workdir / "namespace.sh").write_text(script + "\n")
        return ["unshare", "-m", "sh", str(self.workdir / "namespace.sh")], self.code_dir

    def start(self) -> Self:
        self.workdir = Path(tempfile.mkdtemp(prefix="healthz-rie-"))
        self.workdir.chmod(0o755)  # uid 993 reaches the bootstrap through it
        (self.workdir / "tmp").mkdir(mode=0o755)
        try:
            self.runtime_api_port, self.port = free_port(), free_port()
            cmd, cwd = self._command()
            self.process = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=self.process_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._reader = threading.Thread(target=self._read, name="rie-output", daemon=True)
            self._reader.start()
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if self._on_line is not None:
                self._on_line(line)
            with self._lines_cond:
                self.lines.append(line)
                self._lines_cond.notify_all()

    def _wait_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(f"aws-lambda-rie exited at start:\n{self.text()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                self._remember_runtime()
                return
            time.sleep(0.02)
        raise StackError(f"aws-lambda-rie not listening after {self.startup_timeout}s")

    def _remember_runtime(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.runtime_pids.add(child.pid)

    # -- using
    def text(self) -> str:
        with self._lines_cond:
            return "\n".join(self.lines)

    def wait_line(self, pred: Callable[[str], bool], timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self._lines_cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lines_cond.wait(left)

    def invoke_once(self, event: Mapping[str, Any] | bytes, timeout: float = 30.0) -> InvokeResult:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            began = time.perf_counter()
            # awslambdaric decodes the event by its content type: JSON must say so
            conn.request("POST", INVOKE_PATH, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            elapsed = (time.perf_counter() - began) * 1000
        finally:
            conn.close()
        self._remember_runtime()
        return InvokeResult(resp.status, data, elapsed, 0)

    def invoke(
        self, event: Mapping[str, Any] | bytes, timeout: float = 30.0, retry_for: float = 10.0
    ) -> InvokeResult:
        """Invoke; in LMI mode a "no idle runtimes" refusal is retried (up to `retry_for` s): a
        worker that has answered may not be back in /next yet when the client sends again."""
        deadline = time.monotonic() + retry_for
        refusals = 0
        while True:
            result = self.invoke_once(event, timeout)
            if not (result.status >= 400 and any(s.encode() in result.body for s in _UNAVAILABLE)):
                result.refusals = refusals
                return result
            refusals += 1
            if time.monotonic() > deadline:
                result.refusals = refusals
                return result
            time.sleep(0.002)

    def worker_pids(self) -> list[int]:
        """The runtime's processes now alive (bootstrap, awslambdaric and its forked workers)."""
        if self.process is None:
            return []
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(self.process.pid).children(recursive=True)
            return [k.pid for k in kids if k.status() != psutil.STATUS_ZOMBIE]
        return []

    # -- stopping
    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the emulator (its graceful shutdown), wait for it and every runtime process;
        SIGKILL whatever is left after `timeout` (a failure of the emulator's, reported)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            self._remember_runtime()
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.lines.append(f"[rie harness] still running {timeout}s after SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                self.exit_code = proc.wait(5)
            self.stop_ms = (time.monotonic() - began) * 1000
        elif proc is not None:
            self.exit_code = proc.returncode
        left = [p for p in self.runtime_pids if _alive(p)]
        end = time.monotonic() + timeout
        while left and time.monotonic() < end:
            time.sleep(0.02)
            left = [p for p in left if _alive(p)]
        for pid in left:
            self.lines.append(f"[rie harness] runtime process {pid} outlived the emulator: SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def outlived(self) -> list[str]:
        """Lines the harness added about processes it had to kill (empty when all went well)."""
        return [line for line in self.lines if line.startswith("[rie harness]")]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
