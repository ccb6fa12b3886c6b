"""One execution environment: one `python -m awslambdaric` process plus its Runtime API.

The process is started the way Lambda starts a runtime: its own Runtime API address, the
reserved AWS_LAMBDA_* variables, the function's variables and nothing else from the shell.
Every line it prints is forwarded with the environment's tag.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import datetime
import enum
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from localrt.extensions import REGISTER_TIMEOUT_S, ExternalExtension, find_extensions
from localrt.freeze import Freezer
from localrt.lmi import LmiRuntimeApi
from localrt.runtime_api import Invocation, RuntimeApi
from localrt.telemetry import Telemetry
from localrt.template import DEFAULT_ACCOUNT_ID, FunctionSpec
from stack.net import is_loopback

LOG = logging.getLogger("localrt")

_PASSTHROUGH = ("PATH", "HOME")
_PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class State(enum.Enum):
    STARTING = "starting"  # spawned, reserved by the request that caused the cold start
    IDLE = "idle"
    BUSY = "busy"  # event dispatched, or runtime/extensions not yet back in next
    DEAD = "dead"


@dataclass(frozen=True)
class RuntimeSettings:
    """What every environment of one function shares."""

    spec: FunctionSpec
    variables: dict[str, str]  # the function's own variables, precedence already applied
    region: str
    freeze: bool = True  # SIGSTOP environments parked in /next, as Lambda freezes them
    # Lambda Managed Instances: workers per environment (AWS_LAMBDA_MAX_CONCURRENCY); None is
    # on-demand (classic) Lambda, one event per environment.
    max_concurrency: int | None = None

    @property
    def lmi(self) -> bool:
        return self.max_concurrency is not None

    @property
    def function_arn(self) -> str:
        return (
            f"arn:aws:lambda:{self.region}:{DEFAULT_ACCOUNT_ID}:function:{self.spec.function_name}"
        )


class LogSink:
    """Writes whole lines to one stream: lines of concurrent environments never interleave."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr.buffer
        self._lock = threading.Lock()

    def write_line(self, tag: str, line: bytes) -> None:
        if not line.endswith(b"\n"):
            line += b"\n"
        with self._lock:
            try:
                self._stream.write(f"[{tag}] ".encode() + line)
                self._stream.flush()
            except (OSError, ValueError):  # terminal gone during shutdown
                pass


class Spawner:
    """Forks every child from ONE long-lived thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so forking from
    short-lived request threads would kill environments at random; a dedicated thread
    lives as long as localrt, and children get SIGKILL when localrt dies in any way.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[
            tuple[dict[str, Any], concurrent.futures.Future[subprocess.Popen[bytes]]]
        ] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="localrt-spawner", daemon=True)
        self._thread.start()

    def spawn(self, **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        fut: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((popen_kwargs, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            kwargs, fut = self._jobs.get()
            try:
                fut.set_result(subprocess.Popen(preexec_fn=_die_with_parent(os.getpid()), **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: nothing to import in the child

    def preexec() -> None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # parent died before prctl took effect
            os._exit(1)

    return preexec


def require_loopback(host: str) -> None:
    """localrt runs unauthenticated code execution: refuse anything but loopback."""
    if is_loopback(host):
        return
    raise SystemExit(
        f"localrt: refusing to listen on {host!r}: only loopback addresses are allowed"
    )


def log_stream_name() -> str:
    day = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
    return f"{day}/[$LATEST]{uuid.uuid4().hex}"


class Environment:
    def __init__(
        self,
        index: int,
        settings: RuntimeSettings,
        spawner: Spawner,
        sink: LogSink,
        on_ready: Callable[[Environment], None],
        on_exit: Callable[[Environment, int], None],
        on_slot_free: Callable[[Environment, Invocation], None] | None = None,
    ) -> None:
        self.index = index
        self.tag = f"env-{index}"
        self.settings = settings
        self.state = State.STARTING  # guarded by the pool's lock
        self.invocations = 0
        self.t_spawn = 0.0
        self.started_at = time.time()
        self.exit_code: int | None = None
        self.end_reason: str | None = None
        self.log_stream = log_stream_name()
        self.last: Invocation | None = None
        self._spawner = spawner
        self._sink = sink
        self._on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self.terminating = False
        # Lambda gives each environment a /tmp of its own (on LMI its workers share it).
        self.tmpdir: Path | None = None
        self._group: dict[int, psutil.Process] = {}  # LMI: the runtime's processes seen
        # LMI environments are never frozen ("continuously active").
        self.freezer = Freezer(settings.freeze and not settings.lmi)
        self.api: RuntimeApi
        if settings.max_concurrency is not None:
            slot_free = on_slot_free or (lambda _env, _inv: None)
            self.lmi_api: LmiRuntimeApi | None = LmiRuntimeApi(
                settings.spec.function_name,
                settings.spec.handler,
                settings.max_concurrency,
                on_ready=lambda: on_ready(self),
                on_fatal=lambda why: self.kill("crash", why),
                on_slot_free=lambda inv: slot_free(self, inv),
            )
            self.api = self.lmi_api
            self.lmi_api.pid_of_port = lambda port: _worker_pids(self.pid).get(port)
        else:
            self.lmi_api = None
            self.api = RuntimeApi(
                settings.spec.function_name,
                settings.spec.handler,
                on_ready=lambda: on_ready(self),
                on_fatal=lambda why: self.kill("crash", why),
                freezer=self.freezer,
            )
        # External extensions and the Telemetry API (on-demand environments only).
        self.extensions: list[ExternalExtension] = []
        self.telemetry: Telemetry | None = None
        self._extensions_killed = False
        self.extensions_ms: float | None = None  # init: spawn -> every extension registered
        if self.lmi_api is None:
            found = find_extensions(settings.spec.extension_dirs)
            self.extensions = [ExternalExtension(path) for path in found]
            self.api.external_names = {ext.name for ext in self.extensions}
            self.telemetry = Telemetry(self.freezer, self._platform())
            self.api.telemetry = self.telemetry
        elif settings.spec.extension_dirs and find_extensions(settings.spec.extension_dirs):
            LOG.warning("%s: external extensions are not run in LMI mode", self.tag)

    def _platform(self) -> dict[str, Any]:
        spec = self.settings.spec
        arn = f"arn:aws:lambda:{self.settings.region}::runtime:localrt-python{_PY_VERSION}"
        return {
            "functionName": spec.function_name,
            "functionVersion": "$LATEST",
            "memorySizeMB": spec.memory_size,
            "runtimeVersion": f"python:{_PY_VERSION}.localrt",
            "runtimeVersionArn": arn,
            "instanceId": self.log_stream,
        }

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def init_ms(self) -> float | None:
        t = self.api.t_first_next
        return None if t is None else (t - self.t_spawn) * 1000

    def process_env(self) -> dict[str, str]:
        spec, region = self.settings.spec, self.settings.region
        env = {k: os.environ[k] for k in _PASSTHROUGH + _CREDENTIALS if k in os.environ}
        if self.tmpdir is not None:
            env["TMPDIR"] = str(self.tmpdir)
        env.update(self.settings.variables)
        # Reserved variables last: Lambda does not let the function override them.
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
                "AWS_LAMBDA_INITIALIZATION_TYPE": (
                    "lambda-managed-instances" if self.settings.lmi else "on-demand"
                ),
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "_HANDLER": spec.handler,
                # Also makes awslambdaric poll /next from a thread, so SIGTERM handlers run.
                "AWS_EXECUTION_ENV": f"AWS_Lambda_python{_PY_VERSION}",
                "TZ": ":UTC",
                "PYTHONPATH": os.pathsep.join(str(p) for p in [spec.code_dir, *spec.layer_dirs]),
            }
        )
        if self.settings.max_concurrency is not None:
            # awslambdaric 4 forks this many workers; LMI takes only the JSON log format.
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.settings.max_concurrency)
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        else:
            env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)  # its presence alone selects LMI
        return env

    def start(self) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"localrt-{self.tag}-"))
        self.api.start()
        self.t_spawn = time.monotonic()
        if self.telemetry is not None:
            self.telemetry.init_start({})
        if not self._start_extensions():
            self.api.close()
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            return
        self.proc = self._spawner.spawn(
            args=[sys.executable, "-m", "awslambdaric", self.settings.spec.handler],
            cwd=str(self.settings.spec.code_dir),
            env=self.process_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Own process group: Ctrl-C reaches localrt only, which then sends SIGTERM; and
            # freezing stops the function's own child processes too.
            start_new_session=True,
        )
        self.freezer.attach(self.proc.pid)
        LOG.info("%s started pid %s (cold start)", self.tag, self.proc.pid)
        readers = [self._pump(self.proc.stdout), self._pump(self.proc.stderr)]
        threading.Thread(
            target=self._watch, args=(readers,), name=f"{self.tag}-watch", daemon=True
        ).start()

    # ---- external extensions --------------------------------------------------------------

    def _start_extensions(self) -> bool:
        """Start every external extension, then wait until all have registered (Lambda starts
        the runtime only then). False when one could not start, exited or never registered."""
        if not self.extensions:
            return True
        env = self.process_env()
        for ext in self.extensions:
            try:
                ext.start(self._spawner.spawn, env, self._extension_line, self._extension_exited)
            except OSError as exc:
                self.kill("crash", f"extension {ext.name} could not start: {exc}")
                return False
            assert ext.pid is not None
            self.freezer.attach_extra(ext.pid)
            LOG.info("%s: extension %s started pid %s", self.tag, ext.name, ext.pid)
        names = {ext.name for ext in self.extensions}
        if self.api.wait_registered(names, REGISTER_TIMEOUT_S):
            self.extensions_ms = (time.monotonic() - self.t_spawn) * 1000
            LOG.info("%s: extensions registered in %.1f ms", self.tag, self.extensions_ms)
            return True
        missing = sorted(names - set(self.api.extension_names()))
        self.kill("crash", f"extensions {missing} did not register before init ended")
        return False

    def _extension_line(self, name: str, line: bytes) -> None:
        self._sink.write_line(f"{self.tag}:{name}", line)
        if self.telemetry is not None:
            self.telemetry.log_line("extension", line)

    def _extension_exited(self, ext: ExternalExtension, code: int) -> None:
        if self.terminating or self._extensions_killed:
            return
        # Lambda: an extension that exits fails the init, or resets the environment later.
        phase = "init" if not self.api.initialised else "an invocation"
        LOG.error("%s: extension %s exited with code %s during %s", self.tag, ext.name, code, phase)
        self.kill("crash", f"extension {ext.name} exited with code {code} during {phase}")

    def _kill_extensions(self) -> None:
        self._extensions_killed = True
        for ext in self.extensions:
            ext.signal_group(signal.SIGKILL)

    def _wait_extensions(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for ext in self.extensions:
            if ext.proc is None:
                continue
            try:
                ext.proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def _shutdown_extensions(self) -> None:
        """Lambda's shutdown: SIGTERM to the runtime, SHUTDOWN to each extension that asked."""
        grace = self.settings_grace
        if self.telemetry is not None:
            self.telemetry.flush(min(0.25, grace / 4))  # what is buffered, before SHUTDOWN
        deadline_ms = int(time.time() * 1000 + grace * 1000)
        self.api.deliver_shutdown(deadline_ms)

    def _pump(self, stream: IO[bytes] | None) -> threading.Thread:
        json_logs = self.settings.variables.get("AWS_LAMBDA_LOG_FORMAT") == "JSON"

        def run() -> None:
            assert stream is not None
            for line in iter(stream.readline, b""):
                self._sink.write_line(self.tag, line)
                if self.telemetry is not None:
                    self.telemetry.log_line("function", line, json_logs)
            stream.close()

        thread = threading.Thread(target=run, name=f"{self.tag}-log", daemon=True)
        thread.start()
        return thread

    def _watch(self, readers: list[threading.Thread]) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        self.freezer.release()  # killed while frozen (not by us): children must not stay stopped
        if self.extensions:
            if self.terminating:
                # The runtime is gone; extensions still handle SHUTDOWN (the API stays up).
                self._wait_extensions(self.settings_grace + 0.5)
            else:
                self._kill_extensions()  # the runtime crashed: the environment goes
        if self.settings.lmi:
            if self.terminating:
                # SIGTERM ends awslambdaric's parent at once; its workers are still flushing.
                self.wait_group(self.settings_grace + 1.0)
            self._signal(signal.SIGKILL)  # no worker outlives its environment
        for reader in readers:  # flush the last lines (a traceback) before reporting the exit
            reader.join(timeout=1.0)
        self.exit_code = code
        self._on_exit(self, code)
        if self.telemetry is not None:
            self.telemetry.close()
        self.api.close()
        self.remove_tmp()

    def remove_tmp(self) -> None:
        """The environment's /tmp goes with it (also called by the pool's shutdown, which
        localrt's exit does not wait past)."""
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def wait_init(self, timeout: float) -> bool:
        ready = self.api.wait_ready(timeout)
        if ready and self.telemetry is not None:
            for name, events in self.api.extension_events():
                record = {"name": name, "state": "Ready", "events": events}
                self.telemetry.emit("platform.extension", record)
            self.telemetry.init_done(True, self.init_ms or 0.0)
        return ready

    def dispatch(self, inv: Invocation) -> None:
        self.last = inv
        self.invocations += 1
        if self.telemetry is not None:
            self.telemetry.invoke_start(inv.request_id, inv.trace_id)
        self.api.dispatch(inv)

    def kill(self, outcome: str, message: str) -> None:
        """Fail whatever is in flight with `outcome`, then SIGKILL the whole process group."""
        if self.end_reason is None:
            self.end_reason = f"{outcome}: {message}"
        self.api.abandon(outcome, message)
        self.freezer.release()
        self._signal(signal.SIGKILL)
        if self.extensions:
            self._kill_extensions()

    def terminate(self) -> None:
        # Lambda thaws the environment before SIGTERM, and it must stay thawed for the flush.
        self.terminating = True
        self.freezer.release()
        self.remember_group()
        self._signal(signal.SIGTERM)
        if self.extensions:
            threading.Thread(
                target=self._shutdown_extensions, name=f"{self.tag}-shutdown", daemon=True
            ).start()

    settings_grace = 0.6  # LMI: the pool sets its grace here before terminate()

    def remember_group(self) -> None:
        """Note the runtime's processes (awslambdaric and its workers) while they can be found:
        once the parent is gone its workers are no one's children."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.proc.pid)
            for proc in [parent, *parent.children(recursive=True)]:
                self._group.setdefault(proc.pid, proc)

    def group_alive(self) -> list[int]:
        alive = []
        for pid, proc in list(self._group.items()):
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return alive

    def wait_group(self, timeout: float) -> bool:
        """Wait until every process of the runtime noted so far has exited."""
        end = time.monotonic() + timeout
        while self.group_alive():
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)
        return True

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        # LMI: the group outlives its leader (awslambdaric's parent) while workers flush; the
        # group's id stays taken while any member lives, so killpg reaches only them.
        if self.proc.returncode is not None and not self.settings.lmi:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> bool:
        """The runtime, and every external extension, have exited."""
        end = time.monotonic() + timeout
        done = self._wait_runtime_exit(timeout)
        if self.extensions:
            done = self._wait_extensions(max(0.0, end - time.monotonic())) and done
        return done

    def _wait_runtime_exit(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        end = time.monotonic() + timeout
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if self.settings.lmi:  # the parent exits first; its workers may still be flushing
            return self.wait_group(max(0.0, end - time.monotonic()))
        return True

    def max_rss_mb(self) -> float | None:
        """Peak resident memory (Lambda's "Max Memory Used"), while the process is alive."""
        # /proc by hand here only: psutil reports the current RSS, not the peak (VmHWM)
        if self.proc is None or self.proc.returncode is not None:
            return None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return None

    def describe_workers(self) -> list[dict[str, Any]] | None:
        """LMI: each worker (one per connection to the Runtime API) with its pid and state."""
        if self.lmi_api is None:
            return None
        workers = self.lmi_api.workers()
        pids = {}
        if self.exit_code is None:
            self.remember_group()
            pids = _worker_pids(self.pid)
        out = []
        for worker in workers:
            if worker.pid is None:
                worker.pid = pids.get(worker.port)
            out.append(
                {
                    "name": worker.name,
                    "pid": worker.pid,
                    "state": worker.state if self.exit_code is None else "dead",
                    "invocations": worker.invocations,
                    "request_id": worker.current.request_id if worker.current else None,
                }
            )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "pid": self.pid,
            "state": self.state.value,
            "init_ms": _round(self.init_ms),
            "invocations": self.invocations,
            "started_at": self.started_at,
            "log_stream": self.log_stream,
            "extensions": self.api.extension_names(),
            "external_extensions": [
                {"name": e.name, "pid": e.pid, "exit_code": e.exit_code} for e in self.extensions
            ],
            "extensions_ms": _round(self.extensions_ms),
            "telemetry": self.telemetry.subscriptions() if self.telemetry else [],
            "max_concurrency": self.settings.max_concurrency,
            "workers": self.describe_workers(),
            "max_rss_mb": self.max_rss_mb(),
            "frozen": self.freezer.frozen,
            "frozen_ms": round(self.freezer.frozen_ms, 3),
            "exit_code": self.exit_code,
            "end_reason": self.end_reason,
        }


def _worker_pids(root_pid: int | None) -> dict[int, int]:
    """local TCP port -> pid, for the runtime's processes (each worker keeps one connection)."""
    found: dict[int, int] = {}
    if root_pid is None:
        return found
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(root_pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                for conn in proc.net_connections(kind="tcp"):
                    if conn.laddr:
                        found.setdefault(conn.laddr.port, proc.pid)
    return found


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
