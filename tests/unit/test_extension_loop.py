"""The internal extension never stops asking for events, whatever the Extensions API does.

A registered extension cannot unregister: if its loop ended, every later invocation would wait
for it until the deadline. Here the Extensions API (a small loopback server with Lambda's paths
and headers) fails transiently, by HTTP 500 and by dropped connections; the loop must retry,
keep serving invocations afterwards, and keep its bookkeeping bounded.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lambda_observability import metrics
from lambda_observability.export import asynchronous
from lambda_observability.export.asynchronous import AsyncFlush
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.policy import ExportPolicy
from lambda_observability.extension import ExtensionClient
from tests.localrt.harness import wait_until


class ExtensionsApi(ThreadingHTTPServer):
    """Register, then /event/next: the first ``failures`` requests fail, then events are served."""

    daemon_threads = True

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures_left = failures
        self.events: queue.Queue[str] = queue.Queue()
        self.next_requests = 0
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: ExtensionsApi

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Lambda-Extension-Identifier", "ext-1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.next_requests += 1
            fail = self.server.failures_left
            self.server.failures_left -= 1
        if fail > 0:
            if fail % 2:  # a dropped connection, then an error answer, in turn
                self.close_connection = True
                return
            self.send_error(500, "Internal Server Error")
            return
        request_id = self.server.events.get()
        deadline_ms = int((time.time() + 3) * 1000)
        body = json.dumps(
            {"eventType": "INVOKE", "requestId": request_id, "deadlineMs": deadline_ms}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CountingExporter:
    def __init__(self) -> None:
        self.exports = 0

    def export(self, deadline: float, final: bool = False) -> None:
        self.exports += 1


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Iterator[ExtensionsApi]:
    server = ExtensionsApi(failures=getattr(request, "param", 6))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_the_loop_survives_a_failing_extensions_api(api: ExtensionsApi) -> None:
    exporter = CountingExporter()
    before = metrics.value("telemetry_export_failures_total", {"backend": "extensions_api"}) or 0
    flush = AsyncFlush(
        exporter,  # type: ignore[arg-type]
        ExportPolicy(interval=0, sparse_gap=1.0),
        ExtensionClient(api.address),
        FailureReporter(),
        backoff=(0.01, 0.02),
    )
    flush.start()
    # The failures pass; the loop keeps asking.
    assert wait_until(lambda: api.next_requests >= 7, 5), api.next_requests
    assert flush.loop_errors == 6
    failures = metrics.value("telemetry_export_failures_total", {"backend": "extensions_api"})
    assert failures == before + 6
    # Then every invocation completes: the extension exports after it and asks for the next.
    for served in range(1, 21):
        api.events.put(f"req-{served}")
        flush.after_invocation(f"req-{served}", 3.0)
        assert _served(exporter, api, served), (served, exporter.exports, api.next_requests)
    threads = threading.active_count()  # steady: the loop, and the API's pending /next
    # Handlers that ended while their INVOKE was lost (the API failing) leave bounded traces.
    for i in range(500):
        flush.after_invocation(f"lost-{i}", 3.0)
    assert flush.unmatched <= 64
    api.events.put("req-last")
    flush.after_invocation("req-last", 3.0)
    assert _served(exporter, api, 21)
    assert threading.active_count() == threads
    assert [t.name for t in threading.enumerate()].count("telemetry-extension") == 1


def _served(exporter: CountingExporter, api: ExtensionsApi, count: int) -> bool:
    """``count`` invocations exported, and the extension back in /next after each."""
    return wait_until(lambda: exporter.exports == count and api.next_requests == 7 + count, 5)


class RecordingClient(ExtensionClient):
    """Notes when an event arrives, when the loop lets it be read, and when it is parsed."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.log: list[str] = []

    def next_event(self, on_arrival: Callable[[], None] | None = None) -> dict[str, Any]:
        def arrived() -> None:
            self.log.append("arrived")
            if on_arrival is not None:
                on_arrival()
            self.log.append("released")

        event = super().next_event(arrived)
        self.log.append(f"parsed {event['requestId']}")
        return event


@pytest.mark.parametrize("api", [0], indirect=True)
def test_an_invoke_is_read_only_after_its_handler_ends(
    api: ExtensionsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler runs in this interpreter: parsing its INVOKE meanwhile would take the GIL."""
    monkeypatch.setattr(asynchronous, "PARSE_WAIT_SECONDS", 0.5)
    exporter = CountingExporter()
    client = RecordingClient(api.address)
    flush = AsyncFlush(
        exporter,  # type: ignore[arg-type]
        ExportPolicy(interval=0, sparse_gap=1.0),
        client,
        FailureReporter(),
    )
    flush.start()
    api.events.put("req-1")
    assert wait_until(lambda: "arrived" in client.log, 5)
    time.sleep(0.2)  # the handler is still running
    assert client.log == ["arrived"]
    flush.after_invocation("req-1", 3.0)
    assert wait_until(lambda: exporter.exports == 1, 5)
    assert client.log[:3] == ["arrived", "released", "parsed req-1"]
    # A handler that outlasts the wait only costs the parse during it, not the export.
    api.events.put("req-2")
    assert wait_until(lambda: "parsed req-2" in client.log, 5)
    assert exporter.exports == 1
    flush.after_invocation("req-2", 3.0)
    assert wait_until(lambda: exporter.exports == 2, 5)


class GateWatchingExporter(CountingExporter):
    """Notes whether the Telemetry API gate was open when each export ran."""

    def __init__(self) -> None:
        super().__init__()
        self.flush: AsyncFlush | None = None
        self.open_at_export: list[bool] = []

    def export(self, deadline: float, final: bool = False) -> None:
        assert self.flush is not None
        self.open_at_export.append(self.flush.gate.wait_open(0))
        super().export(deadline, final)


@pytest.mark.parametrize("api", [0], indirect=True)
def test_the_telemetry_gate_is_open_only_between_a_handlers_end_and_the_next_event(
    api: ExtensionsApi,
) -> None:
    exporter = GateWatchingExporter()
    flush = AsyncFlush(
        exporter,  # type: ignore[arg-type]
        ExportPolicy(interval=0, sparse_gap=1.0),
        ExtensionClient(api.address),
        FailureReporter(),
    )
    exporter.flush = flush
    flush.start()
    assert wait_until(lambda: api.next_requests == 1, 5)
    for served in range(1, 4):
        assert not flush.gate.wait_open(0)  # waiting for the event, then the handler runs
        api.events.put(f"req-{served}")
        time.sleep(0.05)
        assert not flush.gate.wait_open(0)
        flush.after_invocation(f"req-{served}", 3.0)
        assert wait_until(lambda n=served: exporter.exports == n, 5)  # type: ignore[misc]
        assert wait_until(lambda n=served: api.next_requests == 1 + n, 5)  # type: ignore[misc]
    assert exporter.open_at_export == [True, True, True]
    assert not flush.gate.wait_open(0)
