"""The Lambda Telemetry API (`PUT /2022-07-01/telemetry`) for one execution environment.

An extension subscribes during init to `platform`, `function` and/or `extension` records, with
a buffering of its own (Lambda's bounds and defaults), and an HTTP destination
`http://sandbox.localdomain:PORT/...`. localrt POSTs JSON arrays of `{time, type, record}` to
127.0.0.1:PORT (sandbox.localdomain is never looked up), in the schema of 2022-12-13 or
2025-01-29 (which adds `instanceId` and `instanceMaxMemory` to platform.initStart).

Records made before a subscription (platform.initStart, the init's log lines) are kept and
delivered to it, as Lambda does. Nothing is delivered while the environment is frozen: a batch
due then leaves at the next thaw (the next event, or shutdown), so the platform.report of one
invocation usually arrives during the next one, as on Lambda; a delivery in flight holds the
freeze off until it ends.
"""

from __future__ import annotations

import datetime
import http.client
import json
import logging
import math
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from localrt.freeze import Freezer

LOG = logging.getLogger("localrt")

SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
TYPES = ("platform", "function", "extension")
# (minimum, maximum, default): Lambda's documented bounds.
BUFFERING = {
    "maxItems": (1000, 10000, 1000),
    "maxBytes": (262144, 1048576, 262144),
    "timeoutMs": (25, 30000, 1000),
}
DESTINATION_HOSTS = ("sandbox.localdomain", "sandbox")
DELIVERY_TIMEOUT_S = 2.0  # one POST; a destination slower than this loses the batch
_BACKLOG_MAX = 10_000  # records kept from before the first subscription
_STATUS = {"response": "success", "error": "error", "timeout": "timeout"}
_CLOSED = {
    "errorMessage": "Telemetry API subscription is closed",
    "errorType": "Telemetry.SubscriptionClosed",
}


def _now() -> str:
    stamp = datetime.datetime.now(datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _invalid(message: str) -> tuple[int, dict[str, str]]:
    return HTTPStatus.BAD_REQUEST, {"errorType": "ValidationError", "errorMessage": message}


@dataclass
class Subscription:
    name: str  # the extension's
    schema: str
    types: set[str]
    max_items: int
    max_bytes: int
    timeout_ms: int
    port: int
    path: str
    buffer: list[tuple[dict[str, Any], int]] = field(default_factory=list)  # (event, size)
    buffered_bytes: int = 0
    first_at: float | None = None  # monotonic, when the oldest buffered record came
    delivered: int = 0
    batches: int = 0
    dropped: int = 0


class Telemetry:
    def __init__(self, freezer: Freezer, platform: dict[str, Any]) -> None:
        self._freezer = freezer
        self.platform = platform  # functionName, functionVersion, memorySizeMB, instanceId...
        self._cond = threading.Condition()
        self._subs: list[Subscription] = []
        self._backlog: list[tuple[str, dict[str, Any]]] = []  # (category, event)
        self._closed = False
        self._backlog_open = True  # until init ends: no subscription can come after it
        self._flush_all = False
        self._thread: threading.Thread | None = None
        self._granted = False  # the freezer holds a freeze off for us (see _on_thaw)
        freezer.thaw_hook = self._on_thaw

    # ---- the API ----------------------------------------------------------------------

    def subscribe(self, name: str, body: bytes, closed: bool) -> tuple[int, Any]:
        if closed:
            return HTTPStatus.FORBIDDEN, _CLOSED
        try:
            req = json.loads(body or b"null")
        except ValueError as exc:
            return _invalid(f"Invalid JSON: {exc}")
        if not isinstance(req, dict):
            return _invalid("schema validation error: expected an object")
        schema = req.get("schemaVersion")
        if schema not in SCHEMA_VERSIONS:
            return _invalid(
                f"schema validation error: schemaVersion must be one of {SCHEMA_VERSIONS}"
            )
        types = req.get("types")
        if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
            return _invalid(f"schema validation error: types must be a non-empty list of {TYPES}")
        buffering = req.get("buffering") or {}
        if not isinstance(buffering, dict):
            return _invalid("schema validation error: buffering must be an object")
        values: dict[str, int] = {}
        for key, (low, high, default) in BUFFERING.items():
            value = buffering.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                return _invalid(
                    f"schema validation error: buffering.{key} must be an integer in {low}..{high}"
                )
            values[key] = value
        dest = req.get("destination")
        if not isinstance(dest, dict) or dest.get("protocol") != "HTTP":
            return _invalid("schema validation error: destination.protocol must be HTTP")
        url = urllib.parse.urlsplit(str(dest.get("URI") or ""))
        try:
            port = url.port
        except ValueError:
            port = None
        if url.scheme != "http" or url.hostname not in DESTINATION_HOSTS or not port:
            return _invalid(
                "Invalid destination: destination.URI must be http://sandbox.localdomain:PORT"
            )
        sub = Subscription(
            name,
            str(schema),
            set(types),
            values["maxItems"],
            values["maxBytes"],
            values["timeoutMs"],
            port,
            url.path or "/",
        )
        with self._cond:
            self._subs.append(sub)
            for category, event in self._backlog:
                if category in sub.types:
                    self._add_locked(sub, event)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="localrt-telemetry", daemon=True
                )
                self._thread.start()
        LOG.info("telemetry: %s subscribed to %s (schema %s)", name, sorted(sub.types), schema)
        self.emit(
            "platform.telemetrySubscription",
            {"name": name, "state": "Subscribed", "types": list(types)},
        )
        return HTTPStatus.OK, b'"OK"'

    def subscriptions(self) -> list[dict[str, Any]]:
        with self._cond:
            return [
                {
                    "name": s.name,
                    "schemaVersion": s.schema,
                    "types": sorted(s.types),
                    "buffering": {
                        "maxItems": s.max_items,
                        "maxBytes": s.max_bytes,
                        "timeoutMs": s.timeout_ms,
                    },
                    "port": s.port,
                    "delivered": s.delivered,
                    "batches": s.batches,
                    "dropped": s.dropped,
                }
                for s in self._subs
            ]

    # ---- records ----------------------------------------------------------------------

    def emit(self, kind: str, record: Any) -> None:
        """One record; `kind` is platform.* or "function" / "extension" (a log line)."""
        category = kind.split(".", 1)[0]
        event = {"time": _now(), "type": kind, "record": record}
        with self._cond:
            if self._closed:
                return
            if self._backlog_open and len(self._backlog) < _BACKLOG_MAX:
                self._backlog.append((category, event))
            for sub in self._subs:
                if category in sub.types:
                    self._add_locked(sub, event)
            self._cond.notify_all()

    def log_line(self, category: str, line: bytes, json_format: bool = False) -> None:
        text = line.decode(errors="replace").rstrip("\r\n")
        record: Any = text
        if json_format:
            try:
                record = json.loads(text)
            except ValueError:
                record = text
        self.emit(category, record)

    def init_start(self, schema_extras: dict[str, Any]) -> None:
        self.emit(
            "platform.initStart",
            {
                "initializationType": "on-demand",
                "phase": "init",
                "runtimeVersion": self.platform["runtimeVersion"],
                "runtimeVersionArn": self.platform["runtimeVersionArn"],
                "functionName": self.platform["functionName"],
                "functionVersion": self.platform["functionVersion"],
                **schema_extras,
            },
        )

    def init_done(self, ok: bool, duration_ms: float, error_type: str | None = None) -> None:
        status = "success" if ok else "error"
        extra = {} if ok else {"errorType": error_type or "Runtime.Unknown"}
        base = {"initializationType": "on-demand", "phase": "init", "status": status, **extra}
        self.emit("platform.initRuntimeDone", dict(base))
        self.emit("platform.initReport", {**base, "metrics": {"durationMs": round(duration_ms, 3)}})
        with self._cond:
            self._backlog_open = False
            self._backlog.clear()

    def invoke_start(self, request_id: str, trace_id: str | None) -> None:
        record: dict[str, Any] = {"requestId": request_id, "version": "$LATEST"}
        if trace_id:
            record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        self.emit("platform.start", record)

    def invoke_done(
        self,
        request_id: str,
        outcome: str | None,
        duration_ms: float,
        produced_bytes: int,
        max_memory_mb: float | None,
        init_ms: float | None,
    ) -> dict[str, Any]:
        """platform.runtimeDone and platform.report; the report's record is returned."""
        status = _STATUS.get(outcome or "", "failure")
        duration = round(duration_ms, 3)
        self.emit(
            "platform.runtimeDone",
            {
                "requestId": request_id,
                "status": status,
                "metrics": {"durationMs": duration, "producedBytes": produced_bytes},
            },
        )
        metrics: dict[str, Any] = {
            "durationMs": duration,
            "billedDurationMs": math.ceil(duration_ms),
            "memorySizeMB": self.platform["memorySizeMB"],
            "maxMemoryUsedMB": math.ceil(max_memory_mb or 0),
        }
        if init_ms is not None:
            metrics["initDurationMs"] = round(init_ms, 3)
        report = {"requestId": request_id, "status": status, "metrics": metrics}
        self.emit("platform.report", report)
        return report

    # ---- delivery ---------------------------------------------------------------------

    def flush(self, timeout: float) -> None:
        """Deliver everything buffered now (shutdown); returns when done or after `timeout`."""
        end = time.monotonic() + timeout
        with self._cond:
            self._flush_all = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: not any(s.buffer for s in self._subs), max(0.0, end - time.monotonic())
            )
            self._flush_all = False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _add_locked(self, sub: Subscription, event: dict[str, Any]) -> None:
        if sub.schema == "2025-01-29" and event["type"] == "platform.initStart":
            # The 2025-01-29 schema names the instance (its log stream) and its memory (bytes).
            extra = {
                "instanceId": self.platform.get("instanceId"),
                "instanceMaxMemory": self.platform["memorySizeMB"] * 1024 * 1024,
            }
            event = {**event, "record": {**event["record"], **extra}}
        size = len(json.dumps(event, ensure_ascii=False).encode())
        if not sub.buffer:
            sub.first_at = time.monotonic()
        sub.buffer.append((event, size))
        sub.buffered_bytes += size

    def _due_locked(self, sub: Subscription, now: float) -> bool:
        if not sub.buffer:
            return False
        if self._flush_all or len(sub.buffer) >= sub.max_items:
            return True
        if sub.buffered_bytes >= sub.max_bytes:
            return True
        return sub.first_at is not None and now - sub.first_at >= sub.timeout_ms / 1000

    def _take_locked(self, sub: Subscription) -> list[dict[str, Any]]:
        """One batch: at most maxItems records and maxBytes bytes (at least one record)."""
        batch: list[dict[str, Any]] = []
        size = 0
        while sub.buffer and len(batch) < sub.max_items:
            event, n = sub.buffer[0]
            if batch and size + n > sub.max_bytes:
                break
            sub.buffer.pop(0)
            sub.buffered_bytes -= n
            batch.append(event)
            size += n
        sub.first_at = time.monotonic() if sub.buffer else None
        return batch

    def _next_wait_locked(self, now: float) -> float:
        waits = [
            s.first_at + s.timeout_ms / 1000 - now
            for s in self._subs
            if s.buffer and s.first_at is not None
        ]
        return max(0.005, min(waits)) if waits else 0.5

    def _on_thaw(self) -> bool:
        """The freezer's thaw hook (its lock held): hold the next freeze off if a batch is due."""
        with self._cond:
            now = time.monotonic()
            if self._granted or not any(self._due_locked(s, now) for s in self._subs):
                return False
            self._granted = True
            self._cond.notify_all()
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                closed, held = self._closed, self._granted
                if closed:
                    self._granted = False
            if closed:
                if held:
                    self._freezer.unhold()  # outside our lock (the thaw hook nests the other way)
                return
            with self._cond:
                now = time.monotonic()
                due = [s for s in self._subs if self._due_locked(s, now)]
                granted, self._granted = self._granted, False
                if not due and not granted:
                    self._cond.wait(self._next_wait_locked(now))
                    continue
            if not granted and not self._freezer.try_hold():
                with self._cond:  # frozen: a batch leaves at the next thaw (_on_thaw wakes us)
                    if not self._granted and not self._closed:
                        self._cond.wait(0.5)
                continue
            try:
                for sub in due:
                    with self._cond:
                        batch = self._take_locked(sub)
                    if batch:
                        self._post(sub, batch)
            finally:
                self._freezer.unhold()
            with self._cond:
                self._cond.notify_all()  # wake flush()

    def _post(self, sub: Subscription, batch: list[dict[str, Any]]) -> None:
        data = json.dumps(batch, ensure_ascii=False).encode()
        conn = http.client.HTTPConnection("127.0.0.1", sub.port, timeout=DELIVERY_TIMEOUT_S)
        try:
            conn.request("POST", sub.path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            ok = 200 <= resp.status < 300
        except (OSError, http.client.HTTPException) as exc:
            LOG.debug("telemetry: delivery to %s failed: %s", sub.name, exc)
            ok = False
        finally:
            conn.close()
        with self._cond:
            if ok:
                sub.delivered += len(batch)
                sub.batches += 1
            else:
                sub.dropped += len(batch)
        if not ok:
            LOG.warning("telemetry: %d records for %s dropped", len(batch), sub.name)
