"""The Runtime and Extensions APIs of a Lambda Managed Instances execution environment.

On LMI one environment serves several events at once: awslambdaric 4 forks
`AWS_LAMBDA_MAX_CONCURRENCY` workers, each importing the handler itself and running its own
/next loop against the same Runtime API. The rules here are those of AWS's emulator
(aws-lambda-runtime-interface-emulator, internal/lambda-managed-instances):

* each worker parked in /invocation/next is one free slot; an event goes to any of them;
* internal extensions may register for no event at all (any event list: 403
  Extension.InvalidEventType "No events allowed for internal extensions"; `{"events": []}` is
  accepted), a name once (403 Extension.InvalidExtensionState), at most 10 of them (403
  Extension.TooManyExtensions); registration closes when the first worker calls /next;
* init completes once a worker is in /next and every registered extension is in
  /extension/event/next; an extension that never calls it holds init until init times out;
* /extension/event/next then blocks for good: internal extensions get no INVOKE and no SHUTDOWN
  (the emulator never releases them; their process ends with the environment);
* nothing is frozen, and an event past its deadline fails alone (the environment stays; its
  worker's slot is free again when that worker comes back to /next).
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from localrt.runtime_api import (
    _ERROR_TYPES,
    _INVALID_EXTENSION_ID,
    Extension,
    Invocation,
    RuntimeApi,
)

MAX_EXTENSIONS = 10  # core.MaxAgentsAllowed in the emulator


@dataclass
class Worker:
    """One worker process: its connections to the Runtime API are told apart by pid (a worker
    opens a new connection after an answer it did not expect, e.g. 400 to a late response)."""

    name: str
    port: int  # the worker's local port: its pid is found from it
    state: str = "starting"  # "idle" (in /next) | "busy"
    invocations: int = 0
    current: Invocation | None = None
    pid: int | None = None


def _forbidden(error_type: str, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return HTTPStatus.FORBIDDEN, {}, {"errorMessage": message, "errorType": error_type}


class LmiRuntimeApi(RuntimeApi):
    """One environment's APIs with `workers` runtime slots (see the module's docstring)."""

    def __init__(
        self,
        function_name: str,
        handler: str,
        workers: int,
        on_ready: Callable[[], None],
        on_fatal: Callable[[str], None],
        on_slot_free: Callable[[Invocation], None],
        function_version: str = "$LATEST",
    ) -> None:
        super().__init__(function_name, handler, on_ready, on_fatal, function_version, freezer=None)
        self.max_workers = workers
        self._on_slot_free = on_slot_free  # called WITHOUT our lock
        self._parked = 0  # workers waiting in /next with nothing taken
        self._queue: collections.deque[Invocation] = collections.deque()
        self._reserved = 0  # slots promised to the pool, event not dispatched yet
        self._inflight: dict[str, Invocation] = {}  # taken by a worker, not back in /next
        self._workers: dict[int, Worker] = {}  # by id() of the connection's handler
        self._by_pid: dict[int, Worker] = {}
        # local port of a runtime connection -> pid of the worker process (set by Environment)
        self.pid_of_port: Callable[[int], int | None] = lambda _port: None

    # ---- scheduler side -------------------------------------------------------------

    def _ready_locked(self) -> bool:
        """Init is over: a worker is in /next and every extension in /extension/event/next."""
        return (
            not self._closed
            and self.t_first_next is not None
            and all(e.in_next for e in self._extensions.values())
        )

    def outstanding(self) -> int:
        """Slots in use: reserved, queued, or taken by a worker not yet back in /next."""
        with self._cond:
            return self._reserved + len(self._queue) + len(self._inflight)

    def try_reserve(self) -> bool:
        """Claim a parked worker for an event the caller will dispatch (or `unreserve`)."""
        with self._cond:
            if not self._initialised or self._closed:
                return False
            if self._parked - len(self._queue) - self._reserved <= 0:
                return False
            self._reserved += 1
            return True

    def unreserve(self) -> None:
        with self._cond:
            self._reserved = max(0, self._reserved - 1)
            self._cond.notify_all()

    def dispatch(self, inv: Invocation) -> None:
        with self._cond:
            if self._closed:
                self._reserved = max(0, self._reserved - 1)
                raise RuntimeError("environment is not ready")
            self._reserved = max(0, self._reserved - 1)
            inv.t_dispatch = time.monotonic()
            inv.deadline_ms = int(time.time() * 1000) + inv.timeout_ms
            self._queue.append(inv)
            self._cond.notify_all()

    def current(self) -> Invocation | None:
        return None  # several at once: see inflight()

    def inflight(self) -> list[Invocation]:
        with self._cond:
            return [*self._inflight.values(), *self._queue]

    def workers(self) -> list[Worker]:
        with self._cond:
            return list({id(w): w for w in self._workers.values()}.values())

    def abandon(self, outcome: str, message: str) -> Invocation | None:
        with self._cond:
            invs = [*self._inflight.values(), *self._queue]
            self._inflight.clear()
            self._queue.clear()
            self._closed = True
            self._cond.notify_all()
        error_type = _ERROR_TYPES.get(outcome, "Runtime.Unknown")
        body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
        for inv in invs:
            inv.finish(outcome, body, error_type)
        return invs[0] if invs else None

    # ---- request handlers ------------------------------------------------------------

    def _settle_locked(self) -> bool:
        if self._initialised or not self._ready_locked():
            return False
        self._initialised = True
        return True

    def runtime_next(self, conn: object = None) -> Invocation | None:
        freed: Invocation | None = None
        pid: int | None = None
        if id(conn) not in self._workers:  # a new connection: whose is it? (outside our lock)
            pid = self.pid_of_port(int(getattr(conn, "client_address", ("", 0))[1]))
        with self._cond:
            if self.t_first_next is None:
                self.t_first_next = time.monotonic()
                self._registration_open = False  # the emulator: closed at the first /next
            worker = self._worker_locked(conn, pid)
            if worker.current is not None:
                freed, worker.current = worker.current, None
                self._inflight.pop(freed.request_id, None)
                if not freed.done.is_set():
                    freed.finish(
                        "error",
                        json.dumps(
                            {
                                "errorMessage": "no response before next",
                                "errorType": "Runtime.NoResponse",
                            }
                        ).encode(),
                    )
                freed.t_ready = time.monotonic()
            worker.state = "idle"
            self._parked += 1
            fire = self._settle_locked()
            self._cond.notify_all()
        if fire:
            self._on_ready()
        if freed is not None:
            self._on_slot_free(freed)
        with self._cond:
            self._cond.wait_for(lambda: bool(self._queue) or self._closed)
            self._parked -= 1
            if self._closed:
                return None
            inv = self._queue.popleft()
            inv.cold = worker.invocations == 0
            inv.worker = worker.name
            worker.invocations += 1
            worker.current = inv
            worker.state = "busy"
            self._inflight[inv.request_id] = inv
            return inv

    def _worker_locked(self, conn: object, pid: int | None) -> Worker:
        key = id(conn)
        worker = self._workers.get(key)
        if worker is None:
            address = getattr(conn, "client_address", ("", 0))
            worker = self._by_pid.get(pid) if pid is not None else None
            if worker is None:
                known = len({id(w) for w in self._workers.values()})
                worker = Worker(f"worker-{known + 1}", int(address[1]), pid=pid)
                if pid is not None:
                    self._by_pid[pid] = worker
            self._workers[key] = worker
        return worker

    def runtime_result(
        self, request_id: str, kind: str, body: bytes, error_type: str | None
    ) -> tuple[int, dict[str, str]]:
        with self._cond:
            inv = self._inflight.get(request_id)
        if inv is None or inv.done.is_set():
            return HTTPStatus.BAD_REQUEST, {
                "errorMessage": "Invalid request ID",
                "errorType": "InvalidRequestID",
            }
        return super()._finish_result(inv, kind, body, error_type)

    def register(self, name: str, events: list[str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        # The emulator's order: event list, name, closed, limit, collision.
        if events:
            return _forbidden(
                "Extension.InvalidEventType", "No events allowed for internal extensions"
            )
        if not name:
            return _forbidden("Extension.InvalidExtensionName", "Empty extension name")
        with self._cond:
            if not self._registration_open:
                return _forbidden(
                    "Extension.RegistrationClosed", "Extension registration closed already"
                )
            if len(self._extensions) >= MAX_EXTENSIONS:
                return _forbidden(
                    "Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached"
                )
            if any(e.name == name for e in self._extensions.values()):
                return _forbidden(
                    "Extension.InvalidExtensionState", "Extension with this name already registered"
                )
            ext = Extension(str(uuid.uuid4()), name, [])
            self._extensions[ext.ident] = ext
        return self._registered(ext)

    def extension_next(self, ident: str) -> tuple[int, dict[str, Any]]:
        with self._cond:
            ext = self._extensions.get(ident)
            if ext is None:
                return HTTPStatus.FORBIDDEN, _INVALID_EXTENSION_ID
            ext.in_next = True
            fire = self._settle_locked()
            self._cond.notify_all()
        if fire:
            self._on_ready()
        with self._cond:  # no event ever comes: parked until the environment is gone
            self._cond.wait_for(lambda: self._closed)
        return HTTPStatus.INTERNAL_SERVER_ERROR, {
            "errorMessage": "environment shutting down",
            "errorType": "Runtime.Shutdown",
        }

    def extensions_not_ready(self) -> list[str]:
        with self._cond:
            return [e.name for e in self._extensions.values() if not e.in_next]
