"""A function whose background threads keep working between invocations (unless frozen).

Each thread reports to a TCP listener the test owns (FREEZE_SINK=host:port), one line per
unit of work: `tick N` from a ticker that also burns a little CPU, `chunk N` from an
"export" that the handler starts and that runs on after the response, like a span exporter.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

_state = {"ticks": 0, "chunks": 0}
_ticker: threading.Thread | None = None


def _sink() -> socket.socket:
    host, _, port = os.environ["FREEZE_SINK"].rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _tick() -> None:
    with _sink() as sock:
        while True:
            burn_until = time.thread_time() + 0.005  # ~25 % of a CPU while running
            while time.thread_time() < burn_until:
                pass
            _state["ticks"] += 1
            sock.sendall(f"tick {_state['ticks']}\n".encode())
            time.sleep(0.015)


def _export(chunks: int, gap_s: float) -> None:
    with _sink() as sock:
        for _ in range(chunks):
            time.sleep(gap_s)
            _state["chunks"] += 1
            sock.sendall(f"chunk {_state['chunks']}\n".encode())


def handler(event: dict[str, Any], context: Any) -> Any:
    global _ticker
    path = str(event.get("path") or "").rstrip("/").rsplit("/", 1)[-1]
    query = event.get("queryStringParameters") or {}
    if path == "tick" and _ticker is None:
        _ticker = threading.Thread(target=_tick, name="ticker", daemon=True)
        _ticker.start()
    elif path == "export":
        args = (int(query.get("chunks", "40")), int(query.get("gap_ms", "25")) / 1000)
        threading.Thread(target=_export, args=args, name="export", daemon=True).start()
    time.sleep(int(query.get("ms", "0")) / 1000)
    body = {"pid": os.getpid(), **_state}
    return {"statusCode": 200, "body": json.dumps(body)}
