"""A Lambda Managed Instances test function: each awslambdaric worker imports it on its own.

At import every worker (LMI_EXTENSION=register) registers an internal extension with no events
under a name of its own and parks it in /extension/event/next, or registers nothing
(LMI_EXTENSION=none). On SIGTERM it writes `<pid> <epoch>` to LMI_SINK/sigterm-<pid> and
exits. The handler sleeps `?sleep=S` seconds and tells which worker served it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

_api = os.environ["AWS_LAMBDA_RUNTIME_API"]
_sink = Path(os.environ.get("LMI_SINK") or "/nonexistent")
_answers: dict[str, Any] = {}


def _request(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
    conn = http.client.HTTPConnection(_api)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


def _register(name: str, events: list[str]) -> tuple[int, dict[str, str], Any]:
    status, headers, body = _request(
        "POST",
        "/2020-01-01/extension/register",
        json.dumps({"events": events}).encode(),
        {"Lambda-Extension-Name": name},
    )
    return status, headers, json.loads(body)


def _park(ident: str) -> None:
    status, _, body = _request(
        "GET", "/2020-01-01/extension/event/next", None, {"Lambda-Extension-Identifier": ident}
    )
    _answers["event_next_returned"] = [status, body.decode(errors="replace")]


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    (_sink / f"sigterm-{os.getpid()}").write_text(f"{os.getpid()} {time.time()}\n")
    os._exit(0)


signal.signal(signal.SIGTERM, _on_sigterm)
if os.environ.get("LMI_EXTENSION", "register") == "register":
    _answers["invoke"] = _register(f"lmi-{os.getpid()}", ["INVOKE"])[::2]
    status, headers, body = _register(f"lmi-{os.getpid()}", [])
    _answers["empty"] = [status, body]
    _answers["again"] = _register(f"lmi-{os.getpid()}", [])[::2]
    if status == 200:  # a worker slower than the first to reach /next finds it closed
        threading.Thread(
            target=_park, args=(headers["Lambda-Extension-Identifier"],), daemon=True
        ).start()


def handler(event: dict[str, Any], context: Any) -> Any:
    began = time.time()
    time.sleep(float((event.get("queryStringParameters") or {}).get("sleep") or 0))
    late = _register(f"late-{os.getpid()}", []) if "late" in (event.get("path") or "") else None
    body = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "began": began,
        "ended": time.time(),
        "answers": _answers,
        "late_register": late[::2] if late else None,
        "tmpdir": os.environ.get("TMPDIR"),
        "env": {
            k: os.environ.get(k)
            for k in (
                "AWS_LAMBDA_MAX_CONCURRENCY",
                "AWS_LAMBDA_INITIALIZATION_TYPE",
                "AWS_LAMBDA_LOG_FORMAT",
            )
        },
    }
    return {"statusCode": 200, "body": json.dumps(body)}
