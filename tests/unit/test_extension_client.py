"""The Extensions API client's own HTTP/1.1: framing, kept-alive reuse, and broken answers.

The client reads answers itself (see extension.py for why), so these tests send it the byte
streams a server may send: Content-Length and chunked framing, answers split into single
bytes, connections closed between and inside answers, and malformed ones. The server is a
loopback socket that answers each request with the next scripted reply.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from lambda_observability.extension import ExtensionClient, ExtensionError

EVENT = {"eventType": "INVOKE", "requestId": "r-1", "deadlineMs": 1, "invokedFunctionArn": "a"}
EVENT_BODY = json.dumps(EVENT).encode()
REGISTERED = b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: ext-1\r\nContent-Length: 2\r\n\r\n{}"


def ok(body: bytes = EVENT_BODY, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@dataclass
class Reply:
    data: bytes
    close_after: bool = False  # close the connection once sent (no Connection: close header)
    reset_after: bool = False  # then reset it (RST) instead of closing it
    byte_by_byte: bool = False
    silent: bool = False  # read the request, never answer


@dataclass
class ScriptedApi:
    replies: list[Reply]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                buffered = buffered[length:]
                with self.lock:
                    self.requests.append(head)
                    reply = self.replies.pop(0)
                if reply.silent:
                    time.sleep(5)
                    return
                if reply.byte_by_byte:
                    for byte in reply.data:
                        conn.sendall(bytes([byte]))
                else:
                    conn.sendall(reply.data)
                if reply.reset_after:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if reply.close_after:
                    return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def api_factory() -> Iterator[type[ScriptedApi]]:
    made: list[ScriptedApi] = []

    class Factory(ScriptedApi):
        def __post_init__(self) -> None:
            super().__post_init__()
            made.append(self)

    yield Factory
    for api in made:
        api.close()


def registered(api: ScriptedApi) -> ExtensionClient:
    client = ExtensionClient(api.address)
    assert client.register() == "ext-1"
    return client


def test_register_then_events_on_one_kept_alive_connection(api_factory: type[ScriptedApi]) -> None:
    api = api_factory([Reply(REGISTERED), Reply(ok()), Reply(ok())])
    client = registered(api)
    assert client.next_event() == EVENT
    assert client.next_event() == EVENT
    assert api.connections == 1
    register, first, _ = api.requests
    assert register.startswith(b"POST /2020-01-01/extension/register HTTP/1.1\r\n")
    assert b"Lambda-Extension-Name: lambda_observability" in register
    assert first.startswith(b"GET /2020-01-01/extension/event/next HTTP/1.1\r\n")
    assert b"Lambda-Extension-Identifier: ext-1" in first


def test_chunked_answer_with_extensions_and_trailers(api_factory: type[ScriptedApi]) -> None:
    half = len(EVENT_BODY) // 2
    first, second = EVENT_BODY[:half], EVENT_BODY[half:]
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x;name=value\r\n%s\r\n" % (len(first), first)
        + b"%X\r\n%s\r\n" % (len(second), second)
        + b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    api = api_factory([Reply(REGISTERED), Reply(chunked), Reply(ok())])
    client = registered(api)
    assert client.next_event() == EVENT
    assert client.next_event() == EVENT  # the stream stayed in step after the trailer
    assert api.connections == 1


def test_answer_arriving_one_byte_at_a_time(api_factory: type[ScriptedApi]) -> None:
    api = api_factory([Reply(REGISTERED, byte_by_byte=True), Reply(ok(), byte_by_byte=True)])
    assert registered(api).next_event() == EVENT


def test_stale_kept_alive_connection_is_replaced_once(api_factory: type[ScriptedApi]) -> None:
    # The server drops the connection after registering, without saying so.
    api = api_factory([Reply(REGISTERED, close_after=True), Reply(ok())])
    client = registered(api)
    time.sleep(0.05)
    assert client.next_event() == EVENT
    assert api.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(EVENT_BODY), EVENT_BODY),
        ok(extra=b"Connection: close\r\n"),
    ],
    ids=["http-1.0", "connection-close"],
)
def test_answers_that_end_the_connection_are_not_reused(
    api_factory: type[ScriptedApi], answer: bytes
) -> None:
    api = api_factory([Reply(REGISTERED), Reply(answer, close_after=True), Reply(ok())])
    client = registered(api)
    assert client.next_event() == EVENT
    assert client.next_event() == EVENT
    assert api.connections == 2


def test_answer_framed_by_the_end_of_the_connection(api_factory: type[ScriptedApi]) -> None:
    unframed = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + EVENT_BODY
    api = api_factory([Reply(REGISTERED), Reply(unframed, close_after=True)])
    assert registered(api).next_event() == EVENT


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", "middle of an answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}", "malformed length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0_2\r\n\r\n{}", "malformed length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
            "malformed length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nContent-Length: 2\r\n\r\n{}XXXXXXX",
            "conflicting Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "malformed length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n", "out of range"),
        (ok(b"not json"), "malformed JSON"),
        (ok(b"[1, 2]"), "list, not an object"),
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", "answered 500"),
    ],
    ids=[
        "not-http",
        "header",
        "short-body",
        "negative-length",
        "signed-length",
        "underscore-length",
        "hex-prefixed-chunk",
        "two-lengths",
        "bad-length",
        "bad-chunk-size",
        "chunk-without-crlf",
        "huge-length",
        "not-json",
        "not-an-object",
        "status-500",
    ],
)
def test_broken_answers_raise_and_the_next_call_starts_afresh(
    api_factory: type[ScriptedApi], answer: bytes, message: str
) -> None:
    api = api_factory([Reply(REGISTERED), Reply(answer, close_after=True), Reply(ok())])
    client = registered(api)
    with pytest.raises(ExtensionError, match=message):
        client.next_event()
    assert client.next_event() == EVENT  # what is left of a broken stream is never read


def test_a_new_connection_closed_before_answering_is_not_retried(
    api_factory: type[ScriptedApi],
) -> None:
    api = api_factory([Reply(b"", close_after=True), Reply(REGISTERED)])
    with pytest.raises(ExtensionError, match="closed before the answer"):
        ExtensionClient(api.address).register()
    assert api.connections == 1


def test_register_times_out(api_factory: type[ScriptedApi]) -> None:
    api = api_factory([Reply(b"", silent=True)])
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        ExtensionClient(api.address, register_timeout=0.3).register()
    assert time.monotonic() - started < 2.0


def test_next_event_before_register_is_refused() -> None:
    with pytest.raises(ExtensionError, match="not registered"):
        ExtensionClient("127.0.0.1:9").next_event()


def test_a_reset_in_the_middle_of_an_answer_is_not_retried(api_factory: type[ScriptedApi]) -> None:
    """Part of the event came back: the API handed it out, and asking again would skip it."""
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{" + b" " * 20
    api = api_factory([Reply(REGISTERED), Reply(partial, reset_after=True), Reply(ok())])
    client = registered(api)
    with pytest.raises(ExtensionError, match="middle of an answer"):
        client.next_event()
    assert len(api.requests) == 2  # register and one /next: no second /next behind its back


def test_interim_and_bodyless_answers(api_factory: type[ScriptedApi]) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    api = api_factory([Reply(interim + REGISTERED), Reply(no_content), Reply(ok())])
    client = registered(api)
    started = time.monotonic()
    with pytest.raises(ExtensionError, match="answered 204"):
        client.next_event()  # a 204 has no body: nothing to wait for
    assert time.monotonic() - started < 1.0
    assert client.next_event() == EVENT
    assert api.connections == 1


def test_folded_and_repeated_equal_headers_are_read(api_factory: type[ScriptedApi]) -> None:
    answer = ok(extra=b"X-Folded: one\r\n two\r\nContent-Length: %d\r\n" % len(EVENT_BODY))
    api = api_factory([Reply(REGISTERED), Reply(answer), Reply(ok())])
    client = registered(api)
    assert client.next_event() == EVENT
    assert client.next_event() == EVENT  # in step: the body was read to its one length


def test_on_arrival_runs_for_a_200_only(api_factory: type[ScriptedApi]) -> None:
    error = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"
    api = api_factory([Reply(REGISTERED), Reply(error), Reply(ok())])
    client = registered(api)
    arrivals: list[float] = []
    with pytest.raises(ExtensionError, match="answered 500"):
        client.next_event(lambda: arrivals.append(time.monotonic()))
    assert arrivals == []  # an error answer does not wait for any handler
    assert client.next_event(lambda: arrivals.append(time.monotonic())) == EVENT
    assert len(arrivals) == 1
