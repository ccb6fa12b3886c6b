"""Handlers localrt's tests run in real execution environments (one path = one behaviour)."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

COLD_START_PID = os.getpid()
_INVOCATIONS = 0

# SIGTERM grace: the handler a real function would use to flush telemetry.
if os.environ.get("SIGTERM_MARKER"):

    def _on_sigterm(signum: int, _frame: object) -> None:
        time.sleep(0.2)  # pretend to flush: still inside the grace period
        Path(os.environ["SIGTERM_MARKER"]).write_text(f"flushed {os.getpid()}\n")
        print(json.dumps({"level": "INFO", "message": "sigterm flushed"}), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, _on_sigterm)

if os.environ.get("SIGTERM_IGNORE"):  # a function that never exits on SIGTERM: must get SIGKILL
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _path(event: dict[str, Any]) -> str:
    return str(event.get("rawPath") or event.get("path") or "")


def handler(event: dict[str, Any], context: Any) -> Any:
    global _INVOCATIONS
    _INVOCATIONS += 1
    path = _path(event).rstrip("/").rsplit("/", 1)[-1]
    query = event.get("queryStringParameters") or {}
    print(json.dumps({"level": "INFO", "message": "invoked", "path": path, "pid": os.getpid()}))
    if path == "sleep":
        time.sleep(int(query.get("ms", "0")) / 1000)
    elif path == "crash":
        os._exit(3)
    elif path == "error":
        raise ValueError("boom")
    elif path == "malformed":
        return {"statusCode": 200, "body": "x", "unexpected": True}  # REST rejects unknown keys
    elif path == "notjson":
        return "plain string, not a proxy response"
    elif path == "binary":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    elif path == "multi":
        return {
            "statusCode": 201,
            "headers": {"X-Single": "one"},
            "multiValueHeaders": {"X-Multi": ["a", "b"]},
            "body": "multi",
        }
    info = {
        "event": event,
        "pid": COLD_START_PID,
        "invocations": _INVOCATIONS,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_arn": context.invoked_function_arn,
        "env": {k: v for k, v in os.environ.items() if not k.startswith("_LAMBDA")},
        "trace_env": os.environ.get("_X_AMZN_TRACE_ID"),
        "layer": importlib.util.find_spec("lrt_layer_mod") is not None,
        "cwd": os.getcwd(),
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(info),
    }


def plain(event: Any, context: Any) -> Any:
    """For `invoke` and the RIE cross-check: a deterministic answer from the event alone."""
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError(str(event["fail"]))
    return {"echo": event, "function": context.function_name, "memory": context.memory_limit_in_mb}
