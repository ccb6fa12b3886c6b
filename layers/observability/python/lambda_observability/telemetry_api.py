"""The platform's own figures for each call, from the Lambda Telemetry API.

The internal extension subscribes at init to ``platform`` records; Lambda POSTs them, in
batches, to a listener of this module. Each ``platform.report`` becomes one observation of
``faas_invoke_duration_seconds``, ``faas_mem_usage_bytes`` and (on demand, where Lambda bills
by the millisecond) ``aws_lambda_billed_duration_seconds``; ``platform.initReport`` one of
``faas_init_duration_seconds`` (metrics.py). They are pushed with the rest.

A call's report leaves Lambda after the call has ended, extension time included, while the
environment is frozen: it arrives during the next call, and goes out with the next export, or
with the final one at SIGTERM (``wait_for_reports``).

Lambda Managed Instances accept schema 2025-01-29 only, send no ``platform.runtimeDone``, and
report no billed duration (they are billed by instance, not by the millisecond).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import metrics, sockets
from .errors import TelemetryError
from .extension import ExtensionClient, read_body, read_headers, read_line

SCHEMA_ON_DEMAND = "2022-12-13"
SCHEMA_MANAGED_INSTANCES = "2025-01-29"  # the only one LMI accepts
# Lambda's smallest buffer: a call's records leave as soon as the environment thaws.
BUFFERING = {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
DESTINATION_HOST = "sandbox.localdomain"
HOSTS_FILE = "/etc/hosts"
# A batch holds at most maxBytes (1 MiB at most) of records, plus the array's framing.
MAX_BATCH_BYTES = 1024 * 1024 + 64 * 1024
READ_TIMEOUT_SECONDS = 5.0  # a delivery that stalls this long is dropped; Lambda retries it
# At SIGTERM, how long the final export waits for the last call's report (of its 400 ms).
REPORT_WAIT_SECONDS = 0.1
# How long the extension waits for a delivery being taken before it asks for the next event.
QUIET_SECONDS = 0.05
_MB = 1024 * 1024
INVOKE_DURATION = "faas_invoke_duration_seconds"
BILLED_DURATION = "aws_lambda_billed_duration_seconds"
INIT_DURATION = "faas_init_duration_seconds"
MEM_USAGE = "faas_mem_usage_bytes"


class TelemetryApiError(TelemetryError):
    kind = "telemetry api"


def listen_address(hosts_file: str = HOSTS_FILE) -> str:
    """Where Lambda delivers: ``sandbox.localdomain`` as the sandbox's hosts file names it.

    Read from the file, never looked up: elsewhere (localrt, which delivers to 127.0.0.1, or
    a test) the name means nothing, and a DNS query for it would leave the machine.
    """
    try:
        with open(hosts_file, encoding="utf-8", errors="replace") as hosts:
            for entry in hosts:
                fields = entry.split("#", 1)[0].split()
                if DESTINATION_HOST in fields[1:]:
                    return fields[0]
    except OSError:
        pass
    return "127.0.0.1"


_SECONDS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MEMORY = tuple(float(mb * _MB) for mb in (64, 128, 256, 512, 1024, 2048, 4096, 10240))


@functools.cache
def _histogram(name: str) -> metrics.Histogram:
    """The figures' histograms, made on first use: a group without a subscription (sync
    mode, the switch off) pushes none of them, not empty ones."""
    documentation, buckets = _HISTOGRAMS[name]
    return metrics.histogram(name, documentation, buckets=buckets)


# Named after the OpenTelemetry FaaS semantic conventions (faas.invoke_duration,
# faas.init_duration, faas.mem_usage) in Prometheus' form; "billed" is Lambda's own.
_HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    INVOKE_DURATION: (
        "Invocation duration as the Lambda platform measured it (platform.report durationMs).",
        _SECONDS,
    ),
    BILLED_DURATION: (
        "Billed duration of each invocation (platform.report billedDurationMs); none on LMI.",
        _SECONDS,
    ),
    INIT_DURATION: (
        "Duration of this environment's init (platform.initReport durationMs).",
        (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    ),
    MEM_USAGE: (
        "Peak memory used by the environment, at each invocation (maxMemoryUsedMB).",
        _MEMORY,
    ),
}


class PlatformFigures:
    """Records the figures of the batches delivered, and counts the reports."""

    def __init__(self, billed: bool = True) -> None:
        self._billed = billed  # LMI reports no billed duration
        for name in _HISTOGRAMS:
            if billed or name != BILLED_DURATION:
                _histogram(name)  # present from the first push on, if with no observation
        self._counted = threading.Condition()
        self.reports = 0
        self.rejected = 0  # records of a known type whose figures were unusable

    def record(self, batch: Any) -> None:
        if not isinstance(batch, list):
            raise TelemetryApiError(f"a batch is a JSON array, not {type(batch).__name__}")
        reports = 0
        for event in batch:
            kind = event.get("type") if isinstance(event, dict) else None
            record = event.get("record") if isinstance(event, dict) else None
            figures = record.get("metrics") if isinstance(record, dict) else None
            if kind == "platform.report":
                reports += 1
                if not self._report(figures):
                    self.rejected += 1
            elif kind == "platform.initReport" and _phase(record) == "init":
                seconds = _milliseconds(figures, "durationMs")
                if seconds is None:
                    self.rejected += 1
                else:
                    _histogram(INIT_DURATION).observe(seconds)
        if reports:
            with self._counted:
                self.reports += reports
                self._counted.notify_all()

    def _report(self, figures: Any) -> bool:
        duration = _milliseconds(figures, "durationMs")
        if duration is None:
            return False
        _histogram(INVOKE_DURATION).observe(duration)
        billed = _milliseconds(figures, "billedDurationMs")
        if billed is not None and self._billed:
            _histogram(BILLED_DURATION).observe(billed)
        memory = _number(figures, "maxMemoryUsedMB")
        if memory is not None:
            _histogram(MEM_USAGE).observe(memory * _MB)
        return True

    def wait_for_reports(self, count: int, timeout: float) -> bool:
        """Whether ``count`` reports have arrived, waiting up to ``timeout`` for them."""
        with self._counted:
            return self._counted.wait_for(lambda: self.reports >= count, timeout)


def _phase(record: Any) -> Any:
    # An init in the invoke phase is a re-init after a failure, not this environment's init.
    return record.get("phase", "init") if isinstance(record, dict) else None


def _number(figures: Any, name: str) -> float | None:
    value = figures.get(name) if isinstance(figures, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _milliseconds(figures: Any, name: str) -> float | None:
    value = _number(figures, name)
    return None if value is None else value / 1000.0


class Gate:
    """When the listener may take a delivery: never while a handler runs.

    Batches fall due while the environment is frozen and arrive as it thaws, with the next
    event: taken then, they competed with that invocation's handler for the interpreter
    (measured: +0.6 ms client p50 per warm call). The async extension opens the gate once the
    handler has ended and closes it, once the listener is quiet, before it asks for the next
    event; a graceful shutdown opens it for good. Deliveries wait, unanswered, in between.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._busy = 0

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def close(self, quiet_timeout: float = QUIET_SECONDS) -> None:
        """Close once no delivery is being taken (bounded: a stuck one stays open, alone)."""
        with self._cond:
            self._cond.wait_for(lambda: self._busy == 0, quiet_timeout)
            self._open = False

    def wait_open(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._open, timeout)

    @contextlib.contextmanager
    def taking(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._open)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()


class Listener:
    """The subscription's HTTP destination, a thread per connection. Speaks just enough
    HTTP/1.1 (the Extensions API client's framing) to take a POSTed batch and answer it;
    ``http.server`` would cost its import at every cold start. With a ``gate``, a delivery
    is taken only while it is open (``Gate``)."""

    def __init__(self, figures: PlatformFigures, host: str, gate: Gate | None = None) -> None:
        self.figures = figures
        self._gate = gate
        self._server = sockets.listen(host, 4)
        self.port: int = self._server.getsockname()[1]
        self.errors = 0
        threading.Thread(target=self._serve, name="telemetry-api", daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                connection = sockets.accept(self._server)
            except OSError:
                return  # closed
            if self._gate is not None:
                self._gate.wait_open()  # not even a thread's start while a handler runs
            # A thread per connection: a platform that keeps one connection idle in its pool
            # and opens another for the next batch (AWS's LMI emulator, Go's HTTP client)
            # must not wait for the first to close.
            threading.Thread(
                target=self._handle, args=(connection,), name="telemetry-api-conn", daemon=True
            ).start()

    def _handle(self, connection: sockets.Socket) -> None:
        try:
            connection.settimeout(READ_TIMEOUT_SECONDS)
            self._converse(connection)
        except (OSError, TelemetryError):
            self.errors += 1  # one bad delivery; Lambda retries it on a new connection
        finally:
            connection.close()

    def _converse(self, connection: sockets.Socket) -> None:
        reader = sockets.reader(connection)
        while reader.peek(1):  # kept alive until Lambda closes it
            with self._gate.taking() if self._gate is not None else contextlib.nullcontext():
                status = self._take(reader)
            reason = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed"}[status]
            connection.sendall(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode("ascii")
            )

    def _take(self, reader: io.BufferedReader) -> int:
        method = read_line(reader).split(b" ", 1)[0]
        headers = read_headers(reader)
        body = read_body(reader, headers, MAX_BATCH_BYTES)
        if method != b"POST":
            return 405
        try:
            self.figures.record(json.loads(body))
        except (ValueError, TelemetryApiError):
            self.errors += 1
            return 400
        return 200


class Subscription:
    """What subscribing gave: the listener and its figures, or why there is none."""

    def __init__(self, outcome: str, listener: Listener | None = None) -> None:
        self.outcome = outcome
        self.listener = listener

    def wait_for_reports(self, count: int, timeout: float = REPORT_WAIT_SECONDS) -> bool:
        if self.listener is None:
            return False
        return self.listener.figures.wait_for_reports(count, timeout)


def subscribe(
    client: ExtensionClient,
    schema: str = SCHEMA_ON_DEMAND,
    address: Callable[[], str] = listen_address,
    gate: Gate | None = None,
) -> Subscription:
    """Subscribe ``client``'s (registered) extension to platform records; never raises."""
    billed = schema != SCHEMA_MANAGED_INSTANCES
    try:
        listener = Listener(PlatformFigures(billed), address(), gate)
    except OSError as error:
        return Subscription(f"no listener: {type(error).__name__}: {error}")
    request = {
        "schemaVersion": schema,
        "types": ["platform"],
        "buffering": BUFFERING,
        "destination": {"protocol": "HTTP", "URI": f"http://{DESTINATION_HOST}:{listener.port}"},
    }
    try:
        status, body = client.subscribe_telemetry(request)
    except Exception as error:
        listener.close()
        return Subscription(f"not subscribed: {type(error).__name__}: {error}")
    if status != 200:
        listener.close()
        # e.g. the classic emulator: 202 {"errorType": "Telemetry.NotSupported", ...}
        return Subscription(f"not subscribed: {status} {_error_type(body)}")
    return Subscription(f"subscribed (schema {schema})", listener)


def _error_type(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return repr(body[:80])
    kind = answer.get("errorType") if isinstance(answer, dict) else None
    if isinstance(kind, str):
        return kind[:80]
    return repr(body[:80])
