"""A client of the Lambda Extensions API, for an internal extension (a thread of the runtime).

Registering an extension changes Lambda's lifecycle in the two ways async export needs: an
invocation ends only when every extension asks for its next event, so work done between the
runtime's response and that request runs after the client has its answer; and the runtime
process gets SIGTERM before shutdown.

The client speaks HTTP/1.1 itself, on one kept-alive socket, instead of using ``http.client``.
Its thread wakes with every event, while the handler runs in the same interpreter: whatever it
does before it waits for the handler holds the GIL the handler needs. ``http.client`` parses
headers with the ``email`` package and was a new connection per event; measured under localrt
that cost 0.24 ms of client latency and 0.55 ms of billed time per warm call, and importing it
10 to 15 ms of cold start (bench/results/latest.md). The Extensions API is a local endpoint
with a fixed shape: small JSON answers, framed by Content-Length or chunked encoding.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from . import sockets
from .errors import TelemetryError

EXTENSION_NAME = "lambda_observability"
_API_VERSION = "2020-01-01"
_MAX_LINE = 65536  # a status or header line longer than this is not the Extensions API
_MAX_BODY = 6 * 1024 * 1024  # Lambda's largest payload; an event is a few hundred bytes
_MAX_HEADERS = 100  # as http.client: the API sends a handful
_MAX_HEADER_BYTES = 256 * 1024  # all header lines together, folded continuations included


class ExtensionError(TelemetryError):
    kind = "extensions api"


class _StaleConnectionError(ExtensionError):
    """The connection ended before any byte of the answer: a kept-alive socket gone stale."""


class ExtensionClient:
    def __init__(self, runtime_api: str, register_timeout: float = 1.0) -> None:
        host, _, port = runtime_api.partition(":")
        self._host = host
        self._port = int(port or 80)
        self._register_timeout = register_timeout
        self._identifier: str | None = None
        self._sock: sockets.Socket | None = None
        self._reader: io.BufferedReader | None = None

    def register(self, events: tuple[str, ...] = ("INVOKE",)) -> str:
        """Register for ``events``: INVOKE on demand (internal extensions may not ask for
        SHUTDOWN), none at all on Lambda Managed Instances, which allows no other."""
        status, headers, body = self._request(
            "POST",
            f"/{_API_VERSION}/extension/register",
            {"Lambda-Extension-Name": EXTENSION_NAME, "Content-Type": "application/json"},
            json.dumps({"events": list(events)}).encode(),
            timeout=self._register_timeout,
        )
        identifier = headers.get("lambda-extension-identifier")
        if status != 200 or not identifier:
            raise ExtensionError(f"register answered {status}: {body[:200]!r}")
        self._identifier = identifier
        return identifier

    def subscribe_telemetry(self, subscription: dict[str, Any]) -> tuple[int, bytes]:
        """``PUT /2022-07-01/telemetry``: the answer's status and body, whatever they are (a
        classic emulator answers 202 ``Telemetry.NotSupported``)."""
        if self._identifier is None:
            raise ExtensionError("not registered")
        status, _, body = self._request(
            "PUT",
            "/2022-07-01/telemetry",
            {"Lambda-Extension-Identifier": self._identifier, "Content-Type": "application/json"},
            json.dumps(subscription).encode(),
            timeout=self._register_timeout,
        )
        return status, body

    def next_event(self, on_arrival: Callable[[], None] | None = None) -> dict[str, Any]:
        """Block until the next event: this also tells Lambda the previous one is done.

        ``on_arrival`` runs once a 200 answer has started to arrive (its status line is in),
        before the rest is read: an INVOKE reaches the extension as the handler starts, and
        this is the caller's chance to wait for the handler before spending the GIL on parsing.
        It must not raise: the event it precedes would be lost.
        """
        if self._identifier is None:
            raise ExtensionError("not registered")
        # No timeout: the call legitimately blocks while the environment is frozen.
        status, _, body = self._request(
            "GET",
            f"/{_API_VERSION}/extension/event/next",
            {"Lambda-Extension-Identifier": self._identifier},
            None,
            timeout=None,
            on_arrival=on_arrival,
        )
        if status != 200:
            raise ExtensionError(f"event/next answered {status}: {body[:200]!r}")
        try:
            event = json.loads(body)
        except ValueError as error:
            raise ExtensionError(f"event/next answered malformed JSON: {error}") from None
        if not isinstance(event, dict):
            raise ExtensionError(f"event/next answered {type(event).__name__}, not an object")
        return event

    def close(self) -> None:
        sock, self._sock, self._reader = self._sock, None, None
        if sock is not None:
            sock.close()

    def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float | None,
        on_arrival: Callable[[], None] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        message = head.encode("latin-1") + b"\r\n" + (body or b"")
        # A kept-alive socket may have been closed by the other side: one retry on a new one,
        # only when no byte of the answer came back (else the API may have handed out an event).
        for attempt in (1, 2):
            reused = self._sock is not None
            try:
                sock, reader = self._connection(timeout)
                sock.settimeout(timeout)
                try:
                    sock.sendall(message)
                    started = reader.peek(1)  # blocks until the answer starts, or the end
                except (BrokenPipeError, ConnectionResetError):
                    started = b""
                if not started:
                    raise _StaleConnectionError("connection closed before the answer")
                status, persistent, answer_headers, data = _read_answer(reader, on_arrival)
            except _StaleConnectionError:
                self.close()
                if attempt == 2 or not reused:
                    raise
                continue
            except BaseException:
                self.close()  # a timeout or a broken answer leaves the stream unusable
                raise
            if not persistent:
                self.close()
            return status, answer_headers, data
        raise AssertionError("unreachable")

    def _connection(self, timeout: float | None) -> tuple[sockets.Socket, io.BufferedReader]:
        if self._sock is None or self._reader is None:
            sock = sockets.connect(self._host, self._port, timeout)
            self._sock, self._reader = sock, sockets.reader(sock)
        return self._sock, self._reader


def _read_answer(
    reader: io.BufferedReader, on_arrival: Callable[[], None] | None = None
) -> tuple[int, bool, dict[str, str], bytes]:
    """Status, whether the connection stays open, headers (names lower-cased) and body.

    ``on_arrival`` runs once a 200 status line is in, before the rest is read.
    """
    try:
        while True:
            version, code = _status_line(reader)
            if code == 200 and on_arrival is not None:
                on_arrival()
            headers = read_headers(reader)
            if not 100 <= code < 200:
                break  # an interim answer (100 Continue) is followed by the real one
        persistent = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if code in (204, 304):
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked" or (
            "content-length" in headers
        ):
            body = read_body(reader, headers)
        else:  # framed by the end of the connection
            body, persistent = reader.read(_MAX_BODY + 1), False
            if len(body) > _MAX_BODY:
                raise ExtensionError("answer too large")
    except ConnectionResetError:
        raise ExtensionError("connection reset in the middle of an answer") from None
    return code, persistent, headers, body


def read_body(reader: io.BufferedReader, headers: dict[str, str], limit: int = _MAX_BODY) -> bytes:
    """A message body framed by chunked encoding or Content-Length (none: empty)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return _read_chunked(reader, limit)
    if "content-length" in headers:
        return _exactly(reader, _number(headers["content-length"], 10, limit))
    return b""


def _status_line(reader: io.BufferedReader) -> tuple[str, int]:
    line = read_line(reader)
    version, _, rest = line.decode("latin-1").partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdecimal():
        raise ExtensionError(f"not an HTTP answer: {line[:80]!r}")
    return version, int(code)


def read_headers(reader: io.BufferedReader) -> dict[str, str]:
    """Header lines up to the blank one (names lower-cased), bounded in number and in total
    size like the body: also for the Telemetry API's requests (``telemetry_api``)."""
    parts: dict[str, list[str]] = {}
    name = ""
    lines = size = 0
    while True:
        line = read_line(reader)
        if line in (b"\r\n", b"\n"):
            return {key: " ".join(value) for key, value in parts.items()}
        lines += 1
        size += len(line)
        if lines > _MAX_HEADERS or size > _MAX_HEADER_BYTES:
            raise ExtensionError("too many header lines")
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t") and name:  # an obsolete folded continuation (RFC 9112 5.2)
            parts[name].append(text.strip())  # joined once at the end, not re-copied per line
            continue
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise ExtensionError(f"malformed header line: {line[:80]!r}")
        value = value.strip()
        if name == "content-length" and parts.get(name, [value]) != [value]:
            # Two lengths: the answer's end is unknown, and so is where the next one starts.
            raise ExtensionError("conflicting Content-Length headers")
        parts[name] = [value]


def _read_chunked(reader: io.BufferedReader, limit: int = _MAX_BODY) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size = _number(read_line(reader).split(b";", 1)[0].decode("latin-1"), 16, limit)
        if size == 0:
            while read_line(reader) not in (b"\r\n", b"\n"):  # trailers
                pass
            return b"".join(chunks)
        total += size
        if total > limit:
            raise ExtensionError("body too large")
        chunks.append(_exactly(reader, size))
        if read_line(reader) not in (b"\r\n", b"\n"):
            raise ExtensionError("chunk not followed by CRLF")


def read_line(reader: io.BufferedReader) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if not line:
        raise ExtensionError("connection closed in the middle of an answer")
    if len(line) > _MAX_LINE:
        raise ExtensionError("answer line too long")
    return line


def _number(text: str, base: int, limit: int = _MAX_BODY) -> int:
    digits = text.strip()
    allowed = "0123456789" if base == 10 else "0123456789abcdefABCDEF"
    # Plain digits only: int() would also take "+2", "0_2" or "0x2".
    if not digits or any(c not in allowed for c in digits):
        raise ExtensionError(f"malformed length {text[:20]!r}")
    value = int(digits, base)
    if value > limit:
        raise ExtensionError(f"length out of range: {value}")
    return value


def _exactly(reader: io.BufferedReader, length: int) -> bytes:
    data = reader.read(length)
    if len(data) != length:
        raise ExtensionError("connection closed in the middle of an answer")
    return data
