"""A function with an internal extension (a thread) that works 300 ms after every INVOKE.

Like an async telemetry exporter: the client should not wait for it, the next event should.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from typing import Any

POST_INVOKE_WORK_S = float(os.environ.get("EXT_WORK_S", "0.3"))
_api = os.environ["AWS_LAMBDA_RUNTIME_API"]
_state: dict[str, Any] = {"invokes": 0, "finished": 0, "last_done": 0.0}


def _request(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
    conn = http.client.HTTPConnection(_api)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def _register() -> str:
    status, headers, body = _request(
        "POST",
        "/2020-01-01/extension/register",
        json.dumps({"events": ["INVOKE"]}).encode(),
        {"Lambda-Extension-Name": "slow-exporter"},
    )
    assert status == 200, body
    _state["register"] = json.loads(body)
    return str(headers["Lambda-Extension-Identifier"])


def _loop(ident: str) -> None:
    while True:
        status, _, body = _request(
            "GET", "/2020-01-01/extension/event/next", None, {"Lambda-Extension-Identifier": ident}
        )
        if status != 200:
            return
        event = json.loads(body)
        _state["invokes"] += 1
        _state["events"] = {**_state.get("events", {}), event["requestId"]: event}
        time.sleep(POST_INVOKE_WORK_S)
        _state["finished"] += 1
        _state["last_done"] = time.time()


threading.Thread(target=_loop, args=(_register(),), daemon=True).start()


def handler(event: dict[str, Any], context: Any) -> Any:
    # What the extension had finished when this event arrived proves the environment waited.
    body = {
        "pid": os.getpid(),
        "started": time.time(),
        "extension": dict(_state),
        "request_id": context.aws_request_id,
    }
    return {"statusCode": 200, "body": json.dumps(body)}
