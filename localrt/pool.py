"""Execution environments of one function, scheduled like Lambda's on-demand concurrency.

* One event per environment at a time.
* A warm idle environment is reused; a new one cold-starts only when all are busy, up to
  `concurrency`.  Past that, requests WAIT for a free environment (real Lambda answers
  429 TooManyRequestsException instead; waiting is kinder to local load tests).
* An environment is free again only when the runtime is back in /next and every
  extension is back in /event/next, even though the caller got its answer earlier.
* The deadline covers the whole invoke (handler + extensions' post-invoke work); an
  environment past it is killed and replaced by a cold start, as Lambda does.

Lambda Managed Instances (settings.max_concurrency = N): each environment serves up to N events
at once, one per awslambdaric worker parked in /next (see lmi.py). A request takes a free
worker of a running environment (lowest index first), waits for one that will be free (a
starting environment's, or one finishing) when there are enough for every waiting request,
and cold-starts another environment only when there are not, up to `concurrency`
environments. An event past its deadline fails alone: the environment is not killed.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from localrt.environment import Environment, LogSink, RuntimeSettings, Spawner, State
from localrt.runtime_api import Invocation

LOG = logging.getLogger("localrt")

INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit for on-demand functions
CLASSIC_GRACE_S = 2.0  # SIGTERM -> SIGKILL on stop, unless --grace-seconds says otherwise
LMI_GRACE_S = 0.6  # the emulator's LMI runtime shutdown timeout (defaultRuntimeShutdownTimeout)
_LMI_POLL_S = 0.02  # a worker parking for the first time notifies no one: look again
REUSE_WAIT_S = 0.05  # how long a request waits for a finishing warm environment
_WATCH_PERIOD_S = 0.02
_MAX_RECORDS = 10_000


class PoolClosedError(Exception):
    pass


class InitFailedError(Exception):
    """The cold start did not reach /next (crash, init error, init timeout)."""


@dataclass
class Record:
    """Timings of one invocation, in milliseconds."""

    request_id: str
    env: str
    cold: bool
    queue_ms: float  # waiting for an environment (including its cold start)
    init_ms: float | None = None
    outcome: str | None = None
    duration_ms: float | None = None  # event delivered -> runtime posted the result
    client_ms: float | None = None  # localrt got the event -> caller has the result
    billed_ms: float | None = None  # event delivered -> environment ready again (or killed)
    post_response_ms: float | None = None  # result posted -> ready again (extensions, runtime)
    finished_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class Pool:
    def __init__(
        self, settings: RuntimeSettings, concurrency: int, sink: LogSink | None = None
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.settings = settings
        self.concurrency = concurrency
        self._sink = sink or LogSink()
        self._spawner = Spawner()
        self._cond = threading.Condition()
        self._envs: list[Environment] = []  # live ones (not DEAD)
        self._all: list[Environment] = []  # every environment ever, for stats
        self._records: collections.deque[Record] = collections.deque(maxlen=_MAX_RECORDS)
        self._pending_records: dict[str, Record] = {}  # by env tag, waiting for readiness
        self._next_index = 1
        self._closed = False
        self.lmi = settings.lmi
        self._lmi_records: dict[str, Record] = {}  # by request id, until its worker is back
        self._waiting = 0  # LMI: requests waiting for a worker
        self._watchdog = threading.Thread(target=self._watch, name="localrt-watchdog", daemon=True)
        self._watchdog.start()

    # ---- invoking -----------------------------------------------------------------------

    def invoke(self, payload: bytes, trace_id: str | None = None) -> Invocation:
        """Run one event and return it finished (outcome set); function failures never raise."""
        t0 = time.monotonic()
        inv = Invocation(
            payload=payload,
            timeout_ms=self.settings.spec.timeout * 1000,
            function_arn=self.settings.function_arn,
            trace_id=trace_id,
        )
        if self.lmi:
            return self._invoke_lmi(inv, t0)
        try:
            env, cold = self._acquire()
        except InitFailedError as exc:
            body = {
                "errorMessage": f"environment failed to initialise: {exc}",
                "errorType": "Runtime.InitError",
            }
            inv.finish("init_error", json.dumps(body).encode(), "Runtime.InitError")
            return inv
        rec = Record(
            inv.request_id,
            env.tag,
            cold,
            (time.monotonic() - t0) * 1000,
            env.init_ms if cold else None,
        )
        with self._cond:
            self._pending_records[env.tag] = rec
        try:
            env.dispatch(inv)
        except RuntimeError:
            env.kill("crash", "environment was not ready")
            inv.finish(
                "crash",
                b'{"errorMessage":"environment was not ready","errorType":"Runtime.Unknown"}',
            )
        inv.done.wait()  # the watchdog guarantees an outcome by the deadline
        rec.outcome = inv.outcome
        rec.client_ms = (time.monotonic() - t0) * 1000
        if inv.t_response is not None:
            rec.duration_ms = (inv.t_response - inv.t_dispatch) * 1000
        if inv.outcome in ("timeout", "crash"):
            self._close_record(env)
        self._log_report(inv, rec, env)
        return inv

    def _acquire(self) -> tuple[Environment, bool]:
        reuse_deadline: float | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise PoolClosedError
                idle = [e for e in self._envs if e.state is State.IDLE]
                if idle:
                    env = idle[0]  # lowest index first: sequential traffic keeps reusing env-1
                    env.state = State.BUSY
                    env.last = None  # not "finishing" any more: a new event is on its way
                    return env, False
                if len(self._envs) < self.concurrency and self._finishing_locked():
                    # The caller of the previous event gets its answer before the runtime is
                    # back in /next: a client firing requests back to back would cold-start
                    # a second environment for a ~1 ms gap. Wait a little for the warm one.
                    now = time.monotonic()
                    reuse_deadline = reuse_deadline or now + REUSE_WAIT_S
                    if now < reuse_deadline:
                        self._cond.wait(reuse_deadline - now)
                        continue
                if len(self._envs) < self.concurrency:
                    env = self._new_environment_locked()
                    break
                self._cond.wait()
        try:
            env.start()
        except OSError as exc:
            self._drop(env, f"spawn failed: {exc}")
            raise InitFailedError(f"spawn failed: {exc}") from exc
        if not env.wait_init(INIT_TIMEOUT_S):
            env.kill("crash", "init did not complete")
            reason = (
                env.api.init_error.decode(errors="replace")
                if env.api.init_error
                else (env.end_reason or "init failed")
            )
            self._drop(env, reason)
            raise InitFailedError(reason)
        with self._cond:
            if env.state is State.DEAD:
                raise InitFailedError(env.end_reason or "environment died during init")
            env.state = State.BUSY
        return env, True

    # ---- Lambda Managed Instances ---------------------------------------------------------

    def _invoke_lmi(self, inv: Invocation, t0: float) -> Invocation:
        try:
            env = self._acquire_lmi()
        except InitFailedError as exc:
            body = {
                "errorMessage": f"environment failed to initialise: {exc}",
                "errorType": "Runtime.InitError",
            }
            inv.finish("init_error", json.dumps(body).encode(), "Runtime.InitError")
            return inv
        rec = Record(inv.request_id, env.tag, False, (time.monotonic() - t0) * 1000)
        with self._cond:
            self._lmi_records[inv.request_id] = rec
        try:
            env.dispatch(inv)
        except RuntimeError:
            inv.finish(
                "crash",
                b'{"errorMessage":"environment was not ready","errorType":"Runtime.Unknown"}',
            )
        inv.done.wait()  # the watchdog guarantees an outcome by the deadline
        rec.outcome = inv.outcome
        rec.cold = inv.cold
        rec.init_ms = env.init_ms if inv.cold else None
        rec.env = f"{env.tag}/{inv.worker}" if inv.worker else env.tag
        rec.client_ms = (time.monotonic() - t0) * 1000
        if inv.t_response is not None and inv.t_dispatch:
            rec.duration_ms = (inv.t_response - inv.t_dispatch) * 1000
        if inv.outcome != "response" and inv.outcome != "error":
            with self._cond:
                self._close_lmi_record_locked(inv)
        self._log_report(inv, rec, env)
        return inv

    def _acquire_lmi(self) -> Environment:
        """A reserved worker slot of a running environment (cold-starting one if needed)."""
        workers = self.settings.max_concurrency or 1
        while True:
            with self._cond:
                self._waiting += 1
                try:
                    env = self._reserve_or_new_locked(workers)
                finally:
                    self._waiting -= 1
                if env.state is not State.STARTING or env.proc is not None:
                    return env
            self._start_lmi(env)  # then look again: its workers are free slots now

    def _reserve_or_new_locked(self, workers: int) -> Environment:
        while True:
            if self._closed:
                raise PoolClosedError
            for env in self._envs:
                if env.state is State.IDLE and env.lmi_api and env.lmi_api.try_reserve():
                    return env
            # Slots that are or will be free: starting environments' and finishing workers'.
            spare = sum(
                max(0, workers - env.lmi_api.outstanding()) for env in self._envs if env.lmi_api
            )
            if spare < self._waiting and len(self._envs) < self.concurrency:
                return self._new_environment_locked()
            self._cond.wait(_LMI_POLL_S)

    def _start_lmi(self, env: Environment) -> None:
        try:
            env.start()
        except OSError as exc:
            self._drop(env, f"spawn failed: {exc}")
            raise InitFailedError(f"spawn failed: {exc}") from exc
        if not env.wait_init(INIT_TIMEOUT_S):
            late = env.lmi_api.extensions_not_ready() if env.lmi_api else []
            why = (
                f"extensions {late} did not call /extension/event/next before init ended"
                if late
                else None
            )
            env.kill("crash", why or "init did not complete")
            reason = (
                env.api.init_error.decode(errors="replace")
                if env.api.init_error
                else (why or env.end_reason or "init failed")
            )
            self._drop(env, reason)
            raise InitFailedError(reason)
        env.remember_group()
        with self._cond:
            if env.state is State.DEAD:
                raise InitFailedError(env.end_reason or "environment died during init")
            env.state = State.IDLE  # serving: each parked worker is a free slot
            self._cond.notify_all()

    def _new_environment_locked(self) -> Environment:
        """A new environment, counted in the pool (not started yet)."""
        env = Environment(
            self._next_index,
            self.settings,
            self._spawner,
            self._sink,
            self._ready,
            self._exited,
            self._slot_free,  # called only by LMI environments, whose workers free slots
        )
        self._next_index += 1
        self._envs.append(env)
        self._all.append(env)
        return env

    def _slot_free(self, env: Environment, inv: Invocation) -> None:
        with self._cond:
            self._close_lmi_record_locked(inv)
            self._cond.notify_all()

    def _close_lmi_record_locked(self, inv: Invocation) -> None:
        rec = self._lmi_records.pop(inv.request_id, None)
        if rec is None:
            return
        end = inv.t_ready if inv.t_ready is not None else time.monotonic()
        if inv.t_dispatch:
            rec.billed_ms = (end - inv.t_dispatch) * 1000
        if inv.t_response is not None and inv.t_ready is not None:
            rec.post_response_ms = (inv.t_ready - inv.t_response) * 1000
        rec.outcome = rec.outcome or inv.outcome
        rec.finished_at = time.time()
        self._records.append(rec)

    def _watch_lmi(self, env: Environment, now_ms: float) -> None:
        """An event past its deadline fails alone; its worker stays (the emulator's rule)."""
        assert env.lmi_api is not None
        for inv in env.lmi_api.inflight():
            if inv.done.is_set() or not inv.t_dispatch or now_ms < inv.deadline_ms:
                continue
            seconds = self.settings.spec.timeout
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            message = f"{stamp} {inv.request_id} Task timed out after {seconds:.2f} seconds"
            body = json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"})
            if inv.finish("timeout", body.encode(), "Sandbox.Timedout"):
                LOG.error("%s: %s", env.tag, message)

    def _finishing_locked(self) -> bool:
        """Some environment has answered its event and is only finishing up."""
        return any(e.state is State.BUSY and e.last and e.last.done.is_set() for e in self._envs)

    # ---- callbacks from environments -------------------------------------------------

    def _ready(self, env: Environment) -> None:
        if self.lmi:  # init is over; _start_lmi marks it serving
            with self._cond:
                self._cond.notify_all()
            return
        with self._cond:
            if env.state is State.BUSY:
                env.state = State.IDLE
                self._close_record_locked(env)
                self._cond.notify_all()

    def _exited(self, env: Environment, code: int) -> None:
        inv = env.api.abandon("crash", f"runtime exited with code {code}")
        with self._cond:
            self._close_record_locked(env)
            for pending in list(self._lmi_records):
                if self._lmi_records[pending].env.split("/")[0] == env.tag:
                    self._lmi_records.pop(pending)
        if inv is not None and inv.outcome == "crash":
            LOG.error(
                "%s: process exited with code %s during request %s", env.tag, code, inv.request_id
            )
        self._drop(env, env.end_reason or f"exited with code {code}")

    def _drop(self, env: Environment, reason: str) -> None:
        with self._cond:
            if env.state is not State.DEAD:
                LOG.info("%s (pid %s) removed: %s", env.tag, env.pid, reason)
                if env.end_reason is None:
                    env.end_reason = reason
            env.state = State.DEAD
            if env in self._envs:
                self._envs.remove(env)
            self._cond.notify_all()

    def _close_record(self, env: Environment) -> None:
        with self._cond:
            self._close_record_locked(env)

    def _close_record_locked(self, env: Environment) -> None:
        rec = self._pending_records.pop(env.tag, None)
        inv = env.last
        if rec is None or inv is None:
            return
        end = inv.t_ready if inv.t_ready is not None else time.monotonic()
        rec.billed_ms = (end - inv.t_dispatch) * 1000
        if inv.t_response is not None and inv.t_ready is not None:
            rec.post_response_ms = (inv.t_ready - inv.t_response) * 1000
        rec.outcome = rec.outcome or inv.outcome
        rec.finished_at = time.time()
        self._records.append(rec)

    # ---- deadlines -------------------------------------------------------------------------

    def _watch(self) -> None:
        """Kills environments past the deadline (no result, or extensions still busy)."""
        while True:
            time.sleep(_WATCH_PERIOD_S)
            now_ms = time.time() * 1000
            with self._cond:
                busy = [e for e in self._envs if e.state is State.BUSY]
                serving = [e for e in self._envs if e.lmi_api is not None]
            for env in serving:
                self._watch_lmi(env, now_ms)
            for env in busy:
                inv = env.api.current()
                if inv is None or inv.t_dispatch == 0.0 or now_ms < inv.deadline_ms:
                    continue
                seconds = self.settings.spec.timeout
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                message = f"{stamp} {inv.request_id} Task timed out after {seconds:.2f} seconds"
                LOG.error("%s: %s", env.tag, message)
                with self._cond:
                    env.state = State.DEAD
                    if env in self._envs:
                        self._envs.remove(env)
                    if env.end_reason is None:
                        env.end_reason = "timeout"
                    self._cond.notify_all()
                env.kill("timeout", message)
                if inv.done.is_set():
                    self._close_record(env)  # answered already; extensions overran the deadline

    # ---- stopping ------------------------------------------------------------------------

    def shutdown(self, grace: float | None = None) -> None:
        """SIGTERM every environment, give them `grace` seconds (telemetry flush), then SIGKILL.

        Default grace: 2 s, or LMI's 600 ms. On LMI, as in AWS's emulator, an environment where
        no extension registered gets SIGKILL at once, with no SIGTERM."""
        if grace is None:
            grace = LMI_GRACE_S if self.lmi else CLASSIC_GRACE_S
        with self._cond:
            self._closed = True
            envs = list(self._envs)
            self._cond.notify_all()
        for env in envs:
            if self.lmi and not env.api.extension_names():
                LOG.info("%s: no extension registered: SIGKILL, no SIGTERM (as on LMI)", env.tag)
                env.kill("crash", "shutdown")
                continue
            env.settings_grace = grace
            env.terminate()
        deadline = time.monotonic() + grace
        for env in envs:
            if not env.wait_exit(max(0.0, deadline - time.monotonic())):
                LOG.warning(
                    "%s (pid %s) still running after %.1fs grace: SIGKILL", env.tag, env.pid, grace
                )
                env.kill("crash", "shutdown")
                env.wait_exit(5.0)
        for env in envs:
            env.api.abandon("crash", "localrt is shutting down")
            env.remove_tmp()

    # ---- reporting -----------------------------------------------------------------------

    def _log_report(self, inv: Invocation, rec: Record, env: Environment) -> None:
        # The REPORT line Lambda writes to CloudWatch, tagged as localrt's own (not the function's):
        # Lambda's fields in Lambda's order, with localrt's Client latency after the duration.
        duration = rec.duration_ms or 0.0
        memory = env.max_rss_mb()
        init = (
            f" Init Duration: {rec.init_ms:.2f} ms" if rec.cold and rec.init_ms is not None else ""
        )
        LOG.info(
            "REPORT RequestId: %s Environment: %s Outcome: %s Duration: %.2f ms "
            "Client: %.2f ms Billed Duration: %d ms Memory Size: %s MB Max Memory Used: %d MB%s",
            inv.request_id,
            env.tag,
            inv.outcome,
            duration,
            rec.client_ms or 0.0,
            math.ceil(duration),  # as Lambda bills: up to the next millisecond
            self.settings.spec.memory_size,
            math.ceil(memory or 0),
            init,
        )
        if env.telemetry is not None and rec.duration_ms is not None:
            # platform.runtimeDone and platform.report: the same figures as the REPORT line.
            env.telemetry.invoke_done(
                inv.request_id,
                inv.outcome,
                rec.duration_ms,
                len(inv.body),
                memory,
                rec.init_ms if rec.cold else None,
            )

    def stats(self) -> dict[str, Any]:
        with self._cond:
            records = [r.as_dict() for r in self._records]
            envs = [e.describe() for e in self._all]
        return {
            "function": self.settings.spec.function_name,
            "concurrency": self.concurrency,
            "max_concurrency": self.settings.max_concurrency,
            "timeout_s": self.settings.spec.timeout,
            "memory_mb": self.settings.spec.memory_size,
            "freeze": self.settings.freeze,
            "environments": envs,
            "invocations": records,
            "summary": {
                "invocations": len(records),
                "cold_starts": sum(1 for r in records if r["cold"]),
                "failures": sum(1 for r in records if r["outcome"] != "response"),
                "environments_started": len(envs),
                "environments_alive": sum(1 for e in envs if e["state"] != "dead"),
            },
        }

    def reset_stats(self) -> None:
        with self._cond:
            self._records.clear()
