"""The Runtime and Extensions API of one environment, driven in-process over real HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localrt.runtime_api import MAX_RESPONSE_BYTES, Invocation, RuntimeApi


class Api:
    def __init__(self) -> None:
        self.ready_calls = 0
        self.fatal: list[str] = []
        self.api = RuntimeApi("fn", "mod.handler", self._ready, self.fatal.append)
        self.api.start()

    def _ready(self) -> None:
        self.ready_calls += 1

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection(self.api.address, timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None

    def background(self, method: str, path: str, **kw: Any) -> tuple[threading.Thread, list[Any]]:
        out: list[Any] = []
        thread = threading.Thread(target=lambda: out.append(self.call(method, path, **kw)))
        thread.start()
        return thread, out


@pytest.fixture
def api() -> Iterator[Api]:
    a = Api()
    yield a
    a.api.close()


def _invocation(payload: bytes = b'{"k": 1}', trace: str | None = None) -> Invocation:
    return Invocation(payload=payload, timeout_ms=3000, function_arn="arn:fn", trace_id=trace)


NEXT = "/2018-06-01/runtime/invocation/next"
REGISTER = "/2020-01-01/extension/register"
EVENT_NEXT = "/2020-01-01/extension/event/next"


def test_next_delivers_event_with_headers(api: Api) -> None:
    thread, out = api.background("GET", NEXT)
    assert api.api.wait_ready(5)
    trace = "Root=1-abc;Sampled=1"
    inv = _invocation(trace=trace)
    api.api.dispatch(inv)
    thread.join(5)
    status, headers, body = out[0]
    assert status == 200 and body == {"k": 1}
    assert headers["Lambda-Runtime-Aws-Request-Id"] == inv.request_id
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == "arn:fn"
    assert headers["Lambda-Runtime-Trace-Id"] == trace
    deadline = int(headers["Lambda-Runtime-Deadline-Ms"])
    assert abs(deadline - (time.time() * 1000 + 3000)) < 1000
    assert not api.api.is_ready()

    status, _, answer = api.call(
        "POST", f"/2018-06-01/runtime/invocation/{inv.request_id}/response", {"ok": 1}
    )
    assert status == 202 and answer == {"status": "OK"}
    assert inv.done.is_set() and inv.outcome == "response" and json.loads(inv.body) == {"ok": 1}
    # A second answer for the same event, or one for an unknown id, is refused.
    status, _, answer = api.call(
        "POST", f"/2018-06-01/runtime/invocation/{inv.request_id}/response", {}
    )
    assert status == 400 and answer["errorType"] == "InvalidRequestID"
    # Free again only once the runtime is back in /next.
    assert api.ready_calls == 1  # the init
    thread, _ = api.background("GET", NEXT)
    assert api.api.wait_ready(5)
    assert api.ready_calls == 2 and inv.t_ready is not None
    api.api.abandon("crash", "test over")
    thread.join(5)


def _deliver(api: Api) -> Invocation:
    thread, _ = api.background("GET", NEXT)
    assert api.api.wait_ready(5)
    inv = _invocation()
    api.api.dispatch(inv)
    thread.join(5)
    return inv


def test_function_error_and_oversized_response(api: Api) -> None:
    inv = _deliver(api)
    err = {"errorMessage": "boom", "errorType": "ValueError"}
    status, _, _ = api.call(
        "POST",
        f"/2018-06-01/runtime/invocation/{inv.request_id}/error",
        err,
        {"Lambda-Runtime-Function-Error-Type": "Unhandled"},
    )
    assert status == 202
    assert inv.outcome == "error" and inv.error_type == "Unhandled"
    assert json.loads(inv.body) == err

    inv = _deliver(api)
    big = "x" * (MAX_RESPONSE_BYTES + 10)
    status, _, body = api.call(
        "POST", f"/2018-06-01/runtime/invocation/{inv.request_id}/response", big
    )
    assert status == 413 and body["errorType"] == "RequestEntityTooLarge"
    assert inv.outcome == "too_large"
    api.api.abandon("crash", "test over")


def test_extensions_register_and_gate_readiness(api: Api) -> None:
    status, headers, body = api.call(
        "POST", REGISTER, {"events": ["INVOKE"]}, {"Lambda-Extension-Name": "ext"}
    )
    assert status == 200
    assert body == {"functionName": "fn", "functionVersion": "$LATEST", "handler": "mod.handler"}
    ident = headers["Lambda-Extension-Identifier"]

    # SHUTDOWN is not for internal extensions (status and body measured on aws-lambda-rie).
    status, _, body = api.call(
        "POST", REGISTER, {"events": ["INVOKE", "SHUTDOWN"]}, {"Lambda-Extension-Name": "x"}
    )
    assert status == 403
    assert body == {
        "errorMessage": "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension",
        "errorType": "Extension.InvalidEventType",
    }
    status, _, body = api.call("GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": "nope"})
    assert status == 403 and body["errorType"] == "Extension.InvalidExtensionIdentifier"

    rt_thread, _ = api.background("GET", NEXT)
    time.sleep(0.1)
    assert not api.api.is_ready()  # the runtime alone is not enough: the extension is not back
    ext_thread, ext_out = api.background(
        "GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": ident}
    )
    assert api.api.wait_ready(5)
    status, _, _ = api.call("POST", REGISTER, {"events": []}, {"Lambda-Extension-Name": "late"})
    assert status == 403  # registration closes with init

    inv = _invocation(trace="Root=1-xyz")
    api.api.dispatch(inv)
    ext_thread.join(5)
    status, _, event = ext_out[0]
    assert status == 200
    assert event == {
        "eventType": "INVOKE",
        "deadlineMs": inv.deadline_ms,
        "requestId": inv.request_id,
        "invokedFunctionArn": "arn:fn",
        "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-xyz"},
    }
    rt_thread.join(5)
    api.call("POST", f"/2018-06-01/runtime/invocation/{inv.request_id}/response", {})
    rt_thread, _ = api.background("GET", NEXT)
    time.sleep(0.1)
    assert inv.done.is_set() and not api.api.is_ready()  # answered, extension still busy
    ext_thread, _ = api.background(
        "GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": ident}
    )
    assert api.api.wait_ready(5)
    api.api.abandon("crash", "test over")
    rt_thread.join(5)
    ext_thread.join(5)


def test_init_error_and_extension_errors_are_fatal(api: Api) -> None:
    status, _, _ = api.call(
        "POST",
        "/2018-06-01/runtime/init/error",
        {"errorMessage": "bad import", "errorType": "Runtime.ImportModuleError"},
        {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
    )
    assert status == 202
    assert api.api.init_error is not None and b"bad import" in api.api.init_error
    _, headers, _ = api.call("POST", REGISTER, {"events": []}, {"Lambda-Extension-Name": "e"})
    ident = headers["Lambda-Extension-Identifier"]
    status, _, _ = api.call(
        "POST",
        "/2020-01-01/extension/exit/error",
        {},
        {"Lambda-Extension-Identifier": ident, "Lambda-Extension-Function-Error-Type": "E.X"},
    )
    assert status == 202
    assert len(api.fatal) == 2 and "E.X" in api.fatal[1]
