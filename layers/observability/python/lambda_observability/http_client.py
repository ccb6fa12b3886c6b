"""The layer's one HTTP client: every request ends by a hard deadline, on kept-alive connections.

Every backend call the layer makes goes through ``request``: the Pushgateway push, OTLP over
HTTP, and Secrets Manager (via botocore's ``before-send`` hook, see ``secrets.py``).

- **A deadline, not a read timeout.** A socket timeout bounds each read; a backend that answers
  one byte every 200 ms never trips it. Here every connect, write and read gets only what is
  left of the request's deadline, and raises ``TimeoutError`` once it is spent.
- **No lock across I/O.** A connection is checked out of a small pool for one request and put
  back only after a clean answer, so a stuck backend holds one connection, never other callers.
- **Kept alive.** prometheus-client's urllib handler built a TLS context (loading the CA bundle)
  on every push: ~20-35 ms each, against ~1 ms for a reused connection.

Name resolution (``getaddrinfo``) is the one step no socket timeout reaches; an unresolvable
name fails at once, a resolver that hangs is not bounded here.
"""

from __future__ import annotations

import base64
import http.client
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_IDLE_PER_ORIGIN = 2  # at most this many kept-alive connections per origin


class DeadlineError(TimeoutError):
    """The request's overall deadline passed before its answer was complete."""


class HttpStatusError(OSError):
    """The server answered, with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.kind = f"http {status}"


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineError("deadline exceeded")
    return left


class _DeadlineSocket(socket.socket):
    """A socket whose every read and write gets only what is left of ``deadline``."""

    deadline = math.inf

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        # CPython applies the timeout to the whole sendall, not to each chunk.
        self.settimeout(_left(self.deadline))
        super().sendall(data, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    deadline = math.inf

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.settimeout(_left(self.deadline))
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(_left(self.deadline))
        super().sendall(data, flags)


class _Connection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port)
        self.tls = tls
        self.deadline = math.inf

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        if isinstance(self.sock, _DeadlineSocket | _DeadlineSSLSocket):
            self.sock.deadline = deadline

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), _left(self.deadline))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        plain = _DeadlineSocket(fileno=raw.detach())
        plain.deadline = self.deadline
        if self.tls is None:
            self.sock = plain
            return
        # The handshake runs inside wrap_socket with the socket's current timeout.
        plain.settimeout(_left(self.deadline))
        wrapped = self.tls.wrap_socket(plain, server_hostname=self.host)
        wrapped.deadline = self.deadline  # type: ignore[attr-defined]
        self.sock = wrapped


_pool_lock = threading.Lock()
_idle: dict[tuple[str, str, int], list[_Connection]] = {}
_default_tls: ssl.SSLContext | None = None


def tls_context(
    cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A TLS context whose sockets keep the deadline (built once per configuration)."""
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    context.sslsocket_class = _DeadlineSSLSocket
    return context


def _default_tls_context() -> ssl.SSLContext:
    global _default_tls
    if _default_tls is None:
        _default_tls = tls_context()  # loads the CA bundle: only for https, and only once
    return _default_tls


def _checkout(scheme: str, host: str, port: int, tls: ssl.SSLContext | None) -> _Connection:
    key = (scheme, host, port)
    with _pool_lock:
        idle = _idle.get(key)
        if idle:
            return idle.pop()
    if scheme == "https":
        return _Connection(host, port, tls or _default_tls_context())
    if scheme == "http":
        return _Connection(host, port, None)
    raise ValueError(f"unsupported URL scheme {scheme!r}")


def _checkin(scheme: str, connection: _Connection) -> None:
    key = (scheme, connection.host, connection.port)
    with _pool_lock:
        idle = _idle.setdefault(key, [])
        if len(idle) < _IDLE_PER_ORIGIN:
            idle.append(connection)
            return
    connection.close()


def request(
    url: str,
    method: str,
    deadline: float,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> Response:
    """Send one request and read the whole answer by ``deadline`` (a ``time.monotonic`` value).

    Raises ``DeadlineError`` when time runs out, ``OSError`` or ``http.client.HTTPException``
    when the connection fails; an HTTP error status is returned, not raised.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A kept-alive connection may have been closed by the server while the environment was
    # frozen: retry once on a fresh one. Callers send PUT, POST of OTLP and GET: a repeat is
    # harmless for each.
    for attempt in (1, 2):
        connection = _checkout(scheme, host, port, tls)
        reused = connection.sock is not None
        connection.arm(deadline)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            data = answer.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            connection.close()
            if attempt == 2 or not reused:
                raise
            # Whatever closed this one (a restart, an idle timeout) closed its idle siblings
            # too: the retry gets a new connection, not another stale one.
            _discard_idle(scheme, host, port)
            continue
        except TimeoutError:
            connection.close()
            raise DeadlineError("no complete answer by the deadline") from None
        except BaseException:
            connection.close()
            raise
        response = Response(
            answer.status,
            answer.reason,
            {name.lower(): value for name, value in answer.getheaders()},
            data,
        )
        if answer.will_close:
            connection.close()
        else:
            _checkin(scheme, connection)
        return response
    raise AssertionError("unreachable")


def _discard_idle(scheme: str, host: str, port: int) -> None:
    with _pool_lock:
        stale = _idle.pop((scheme, host, port), [])
    for connection in stale:
        connection.close()


def close_all() -> None:
    """Close every kept-alive connection (tests; a shutting-down environment)."""
    with _pool_lock:
        connections = [c for idle in _idle.values() for c in idle]
        _idle.clear()
    for connection in connections:
        connection.close()


PushHandler = Callable[[str, str, float | None, list[tuple[str, str]], bytes], Callable[[], None]]


def push_handler(credentials: tuple[str, str] | None, deadline: float | None = None) -> PushHandler:
    """prometheus-client's push handler protocol over this client; raises ``OSError`` on an
    HTTP error status, as prometheus-client's own handler does. Without ``deadline``, each
    request gets prometheus-client's ``timeout`` as its overall deadline."""

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def send() -> None:
            all_headers = dict(headers)
            if credentials is not None:
                token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
                all_headers["Authorization"] = f"Basic {token}"
            end = deadline if deadline is not None else time.monotonic() + (timeout or 30.0)
            try:
                answer = request(url, method, end, all_headers, data)
            except DeadlineError as error:
                raise DeadlineError(f"error talking to pushgateway: {error}") from None
            except (OSError, http.client.HTTPException) as error:
                raise OSError(f"error talking to pushgateway: {error!r}") from None
            if answer.status >= 400:
                raise HttpStatusError(
                    f"error talking to pushgateway: {answer.status} {answer.reason}", answer.status
                )

        return send

    return handler
