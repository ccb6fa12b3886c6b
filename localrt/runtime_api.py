"""The Lambda Runtime API and Extensions API for ONE execution environment.

One server per environment (own loopback port), like the per-sandbox "rapid" server in
Lambda.  It tracks the two facts the scheduler needs:

* the invocation's result, released to the caller the moment the runtime POSTs
  /response (real Lambda does this even while extensions keep working);
* readiness: the runtime is back in /invocation/next AND every registered extension is
  back in /event/next.  Only then can the environment take the next event, and only then
  is it frozen (see freeze.py) until that event is delivered.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from localrt.freeze import Freezer

LOG = logging.getLogger("localrt")

MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # Lambda's synchronous response limit
RUNTIME_PREFIX = "/2018-06-01/runtime"
EXTENSION_PREFIX = "/2020-01-01/extension"
TELEMETRY_PATH = "/2022-07-01/telemetry"
# The errorType Lambda reports when the environment, not the handler, failed the event.
_ERROR_TYPES = {"timeout": "Sandbox.Timedout", "crash": "Runtime.ExitError"}
_INVALID_EXTENSION_ID = {
    "errorMessage": "Invalid Lambda-Extension-Identifier",
    "errorType": "Extension.InvalidExtensionIdentifier",
}
_INVOCATION_RE = re.compile(r"^/2018-06-01/runtime/invocation/([^/]+)/(response|error)$")


@dataclass
class Invocation:
    """One event travelling through one environment."""

    payload: bytes
    timeout_ms: int
    function_arn: str
    trace_id: str | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int = 0  # epoch ms, set when the event is delivered
    done: threading.Event = field(default_factory=threading.Event)
    # "response" | "error" (function error) | "timeout" | "crash" | "too_large"
    outcome: str | None = None
    body: bytes = b""
    error_type: str | None = None
    t_dispatch: float = 0.0
    t_response: float | None = None  # when the runtime posted its result
    t_ready: float | None = None  # when the environment was ready for the next event
    cold: bool = False  # LMI: the first event of its worker (each worker imports the handler)
    worker: str | None = None  # LMI: which worker took it

    def finish(self, outcome: str, body: bytes, error_type: str | None = None) -> bool:
        """First outcome wins (a late /response after a timeout is ignored)."""
        if self.done.is_set():
            return False
        self.outcome, self.body, self.error_type = outcome, body, error_type
        self.t_response = time.monotonic()
        self.done.set()
        return True


@dataclass
class Extension:
    ident: str
    name: str
    events: list[str]
    in_next: bool = False  # a GET /event/next is parked and has nothing to deliver yet
    pending: dict[str, Any] | None = None
    external: bool = False  # an executable of /opt/extensions (may take SHUTDOWN)


class RuntimeApi:
    """Serves both APIs on 127.0.0.1:<ephemeral port> for a single environment."""

    def __init__(
        self,
        function_name: str,
        handler: str,
        on_ready: Callable[[], None],
        on_fatal: Callable[[str], None],
        function_version: str = "$LATEST",
        freezer: Freezer | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.handler = handler
        self._on_ready = on_ready  # called WITHOUT our lock (the pool takes its own)
        self._on_fatal = on_fatal  # init error / extension exit error: environment must go
        self._freezer = freezer  # called under our lock: freeze and dispatch never interleave
        self._cond = threading.Condition()
        self._runtime_in_next = False
        self._pending: Invocation | None = None  # dispatched, not yet taken by the runtime
        self._current: Invocation | None = None  # taken; waiting for result and readiness
        self._extensions: dict[str, Extension] = {}
        self._registration_open = True
        self._initialised = False
        self._closed = False
        self.t_first_next: float | None = None
        self.init_error: bytes | None = None
        # External extensions localrt started (their file names, as Lambda knows them), and
        # the Telemetry API (localrt/telemetry.py), set by the environment.
        self.external_names: set[str] = set()
        self.telemetry: Any = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="runtime-api", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # ---- scheduler side -------------------------------------------------------------

    def is_ready(self) -> bool:
        with self._cond:
            return self._ready_locked()

    def wait_ready(self, timeout: float) -> bool:
        with self._cond:
            return (
                self._cond.wait_for(lambda: self._ready_locked() or self._closed, timeout)
                and not self._closed
            )

    def extension_names(self) -> list[str]:
        with self._cond:
            return [e.name for e in self._extensions.values()]

    def extension_events(self) -> list[tuple[str, list[str]]]:
        with self._cond:
            return [(e.name, list(e.events)) for e in self._extensions.values()]

    @property
    def initialised(self) -> bool:
        with self._cond:
            return self._initialised

    def extension_name(self, ident: str) -> str | None:
        with self._cond:
            ext = self._extensions.get(ident)
            return ext.name if ext else None

    def wait_registered(self, names: set[str], timeout: float) -> bool:
        """Lambda starts the runtime once every external extension has registered."""

        def done() -> bool:
            got = {e.name for e in self._extensions.values() if e.external}
            return names <= got or self._closed

        with self._cond:
            return self._cond.wait_for(done, timeout) and not self._closed

    def deliver_shutdown(self, deadline_ms: int, reason: str = "spindown") -> int:
        """SHUTDOWN to every extension that registered for it; how many there are."""
        event = {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
        with self._cond:
            targets = [e for e in self._extensions.values() if "SHUTDOWN" in e.events]
            for ext in targets:
                ext.pending = event
            self._cond.notify_all()
        return len(targets)

    def dispatch(self, inv: Invocation) -> None:
        """Hand the event to the runtime and INVOKE to every subscribed extension at once."""
        with self._cond:
            if not self._ready_locked():
                raise RuntimeError("environment is not ready")
            if self._freezer is not None:
                self._freezer.thaw()  # before any parked /next can answer
            inv.t_dispatch = time.monotonic()
            inv.deadline_ms = int(time.time() * 1000) + inv.timeout_ms
            self._pending = self._current = inv
            event: dict[str, Any] = {
                "eventType": "INVOKE",
                "deadlineMs": inv.deadline_ms,
                "requestId": inv.request_id,
                "invokedFunctionArn": inv.function_arn,
            }
            if inv.trace_id:
                event["tracing"] = {"type": "X-Amzn-Trace-Id", "value": inv.trace_id}
            for ext in self._extensions.values():
                if "INVOKE" in ext.events:
                    ext.pending = event
            self._cond.notify_all()

    def current(self) -> Invocation | None:
        with self._cond:
            return self._current

    def abandon(self, outcome: str, message: str) -> Invocation | None:
        """The environment is going away: fail the event in flight, wake parked requests."""
        with self._cond:
            inv, self._current = self._current, None
            self._closed = True
            self._cond.notify_all()
        if inv is not None:
            error_type = _ERROR_TYPES.get(outcome, "Runtime.Unknown")
            body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
            inv.finish(outcome, body, error_type)
        return inv

    # ---- helpers (lock held) ---------------------------------------------------------

    def _ready_locked(self) -> bool:
        return (
            not self._closed
            and self._runtime_in_next
            and self._pending is None
            and all(e.in_next and e.pending is None for e in self._extensions.values())
        )

    def _settle_locked(self) -> bool:
        """True when this change made the environment ready for the pool (fire on_ready)."""
        if not self._ready_locked():
            return False
        if not self._initialised:
            self._initialised = True
            self._registration_open = False  # Lambda: extensions register during init only
            return True
        inv = self._current
        if inv is None:
            return False
        if not inv.done.is_set():
            # Runtime asked for the next event without answering this one.
            inv.finish(
                "error",
                json.dumps(
                    {"errorMessage": "no response before next", "errorType": "Runtime.NoResponse"}
                ).encode(),
            )
        inv.t_ready = time.monotonic()
        self._current = None
        return True

    def _park_locked(self) -> None:
        """Freeze once init is over, everything waits in /next and nothing is in flight."""
        if self._freezer is not None and self._initialised and self._ready_locked():
            self._freezer.freeze()

    # ---- request handlers ------------------------------------------------------------

    def runtime_next(self, conn: object = None) -> Invocation | None:
        with self._cond:
            if self.t_first_next is None:
                self.t_first_next = time.monotonic()
            self._runtime_in_next = True
            fire = self._settle_locked()
            self._park_locked()
            self._cond.notify_all()  # wake wait_ready()
        if fire:
            self._on_ready()
        with self._cond:
            self._cond.wait_for(lambda: self._pending is not None or self._closed)
            inv, self._pending = self._pending, None
            self._runtime_in_next = False
            return inv

    def runtime_result(
        self, request_id: str, kind: str, body: bytes, error_type: str | None
    ) -> tuple[int, dict[str, str]]:
        with self._cond:
            inv = self._current
        if inv is None or inv.request_id != request_id or inv.done.is_set():
            return HTTPStatus.BAD_REQUEST, {
                "errorMessage": "Invalid request ID",
                "errorType": "InvalidRequestID",
            }
        return self._finish_result(inv, kind, body, error_type)

    def _finish_result(
        self, inv: Invocation, kind: str, body: bytes, error_type: str | None
    ) -> tuple[int, dict[str, str]]:
        if kind == "response" and len(body) > MAX_RESPONSE_BYTES:
            msg = (
                f"Response payload size ({len(body)} bytes) exceeded maximum allowed"
                f" payload size ({MAX_RESPONSE_BYTES} bytes)."
            )
            inv.finish(
                "too_large",
                json.dumps(
                    {"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"}
                ).encode(),
            )
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {
                "errorMessage": msg,
                "errorType": "RequestEntityTooLarge",
            }
        inv.finish(kind, body, error_type)
        return HTTPStatus.ACCEPTED, {"status": "OK"}

    def runtime_init_error(self, body: bytes) -> Callable[[], None]:
        """Record the init error now; the returned call ends the environment (after answering)."""
        self.init_error = body
        return lambda: self._on_fatal(f"init error: {body.decode(errors='replace')}")

    def register(self, name: str, events: list[str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        if not name:
            return (
                HTTPStatus.FORBIDDEN,
                {},
                {
                    "errorMessage": "Empty extension name",
                    "errorType": "Extension.InvalidExtensionName",
                },
            )
        unknown = [e for e in events if e not in ("INVOKE", "SHUTDOWN")]
        if unknown:
            return (
                HTTPStatus.FORBIDDEN,
                {},
                {
                    "errorMessage": f"Unknown event types {unknown}",
                    "errorType": "Extension.InvalidEventType",
                },
            )
        external = name in self.external_names
        if "SHUTDOWN" in events and not external:
            # Extensions inside the runtime process cannot subscribe to SHUTDOWN in Lambda;
            # they get SIGTERM through the runtime process instead. Status and body are
            # those of AWS's emulator (aws-lambda-rie), measured.
            return (
                HTTPStatus.FORBIDDEN,
                {},
                {
                    "errorMessage": "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
                    "errorType": "Extension.InvalidEventType",
                },
            )
        with self._cond:
            if not self._registration_open:
                return (
                    HTTPStatus.FORBIDDEN,
                    {},
                    {
                        "errorMessage": "Extension registration closed already",
                        "errorType": "Extension.RegistrationClosed",
                    },
                )
            external = external and name not in {e.name for e in self._extensions.values()}
            ext = Extension(str(uuid.uuid4()), name, list(events), external=external)
            self._extensions[ext.ident] = ext
            self._cond.notify_all()  # wake wait_registered()
        return self._registered(ext)

    def _registered(self, ext: Extension) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Lambda's answer to a registration: the extension's identifier and the function."""
        body = {
            "functionName": self.function_name,
            "functionVersion": self.function_version,
            "handler": self.handler,
        }
        return HTTPStatus.OK, {"Lambda-Extension-Identifier": ext.ident}, body

    def extension_next(self, ident: str) -> tuple[int, dict[str, Any]]:
        with self._cond:
            ext = self._extensions.get(ident)
            if ext is None:
                return HTTPStatus.FORBIDDEN, _INVALID_EXTENSION_ID
            ext.in_next = True
            fire = self._settle_locked()
            self._park_locked()
            self._cond.notify_all()
        if fire:
            self._on_ready()
        with self._cond:
            self._cond.wait_for(lambda: ext.pending is not None or self._closed)
            event, ext.pending = ext.pending, None
            ext.in_next = False
        if event is None:
            return HTTPStatus.INTERNAL_SERVER_ERROR, {
                "errorMessage": "environment shutting down",
                "errorType": "Runtime.Shutdown",
            }
        return HTTPStatus.OK, event

    def extension_error(
        self, ident: str, which: str, error_type: str, body: bytes
    ) -> tuple[int, dict[str, str]]:
        with self._cond:
            ext = self._extensions.get(ident)
        if ext is None:
            return HTTPStatus.FORBIDDEN, _INVALID_EXTENSION_ID
        # Both end this environment in Lambda: init/error fails init, exit/error resets it.
        self._on_fatal(
            f"extension {ext.name} {which} error {error_type}: {body.decode(errors='replace')}"
        )
        return HTTPStatus.ACCEPTED, {"status": "OK"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # parked long-polls must never keep localrt alive
    block_on_close = False
    api: RuntimeApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A runtime killed mid-request (timeout, crash, shutdown) is routine, not a traceback.
        LOG.debug("runtime-api connection from %s dropped", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    # The native awslambdaric client keeps one HTTP/1.1 connection for all its calls.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("runtime-api %s", format % args)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        api = self.server.api
        path = self.path.split("?", 1)[0]
        if path == RUNTIME_PREFIX + "/invocation/next":
            inv = api.runtime_next(self)
            if inv is None:
                self._send(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"errorMessage": "shutting down", "errorType": "Runtime.Shutdown"},
                )
                self.close_connection = True
                return
            headers = {
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
            }
            if inv.trace_id:
                headers["Lambda-Runtime-Trace-Id"] = inv.trace_id
            self._send(HTTPStatus.OK, inv.payload, headers)
        elif path == EXTENSION_PREFIX + "/event/next":
            ident = self.headers.get("Lambda-Extension-Identifier") or ""
            status, body = api.extension_next(ident)
            self._send(status, body)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"errorMessage": "not found", "errorType": "NotFound"})

    def do_PUT(self) -> None:
        api = self.server.api
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path != TELEMETRY_PATH:
            self._send(HTTPStatus.NOT_FOUND, {"errorMessage": "not found", "errorType": "NotFound"})
            return
        ident = self.headers.get("Lambda-Extension-Identifier") or ""
        name = api.extension_name(ident)
        if name is None:
            self._send(HTTPStatus.FORBIDDEN, _INVALID_EXTENSION_ID)
        elif api.telemetry is None:  # LMI mode: what AWS's classic emulator answers
            self._send(
                HTTPStatus.ACCEPTED,
                {
                    "errorMessage": "Telemetry API is not supported",
                    "errorType": "Telemetry.NotSupported",
                },
            )
        else:
            status, answer = api.telemetry.subscribe(name, body, closed=api.initialised)
            self._send(status, answer)

    def do_POST(self) -> None:
        api = self.server.api
        path = self.path.split("?", 1)[0]
        body = self._body()
        match = _INVOCATION_RE.match(path)
        if match:
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
            status, answer = api.runtime_result(match.group(1), match.group(2), body, error_type)
            self._send(status, answer)
        elif path == RUNTIME_PREFIX + "/init/error":
            end_environment = api.runtime_init_error(body)
            self._send(HTTPStatus.ACCEPTED, {"status": "OK"})
            end_environment()
        elif path == EXTENSION_PREFIX + "/register":
            try:
                events = json.loads(body or b"{}").get("events") or []
            except (ValueError, AttributeError):
                self._send(
                    HTTPStatus.BAD_REQUEST,
                    {"errorMessage": "invalid body", "errorType": "InvalidRequest"},
                )
                return
            status, headers, answer = api.register(
                self.headers.get("Lambda-Extension-Name") or "", list(events)
            )
            self._send(status, answer, headers)
        elif path in (EXTENSION_PREFIX + "/init/error", EXTENSION_PREFIX + "/exit/error"):
            ident = self.headers.get("Lambda-Extension-Identifier") or ""
            error_type = (
                self.headers.get("Lambda-Extension-Function-Error-Type") or "Extension.Unknown"
            )
            status, answer = api.extension_error(ident, path.rsplit("/", 2)[-2], error_type, body)
            self._send(status, answer)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"errorMessage": "not found", "errorType": "NotFound"})
