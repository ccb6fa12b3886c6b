"""The layer's one HTTP client: every request ends by a hard deadline, on kept-alive connections.

Every backend call the layer makes goes through ``request``: the Pushgateway push, OTLP over
HTTP, the janitor, and Secrets Manager's credentials reach the push through it too.

- **A deadline, not a read timeout.** A socket timeout bounds each read; a backend that answers
  one byte every 200 ms never trips it. Here name resolution, every connect (across all the
  addresses a name resolves to), write and read get only what is left of the request's
  deadline, and ``DeadlineError`` is raised once it is spent.
- **Only a 2xx is a success.** A redirect is not followed: behind an ALB that redirects HTTP to
  HTTPS, nothing arrived, and saying so is the point.
- **Bounded answers.** At most ``max_body`` bytes of an answer are read: an endpoint that
  streams without end must not grow the process past Lambda's memory limit.
- **No lock across I/O.** A connection is checked out of a small pool for one request and put
  back only after a clean answer, so a stuck backend holds one connection, never other callers.
- **Kept alive.** prometheus-client's urllib handler built a TLS context (loading the CA bundle)
  on every push: ~20-35 ms each, against ~1 ms for a reused connection.

Errors are ``TelemetryError``s whose message never quotes a header value, URL or answer body.
"""

from __future__ import annotations

import http.client
import ipaddress
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import DeadlineError, TelemetryError, failure_kind

_IDLE_PER_ORIGIN = 2  # at most this many kept-alive connections per origin
DEFAULT_MAX_BODY = 64 * 1024  # a push or OTLP answer is a few bytes; an error page a few KiB


class HttpStatusError(TelemetryError):
    """The server answered, with a status other than 2xx."""

    def __init__(self, status: int, reason: str) -> None:
        note = " (redirect not followed)" if 300 <= status < 400 else ""
        super().__init__(f"HTTP {status} {reason[:80]}{note}", kind=f"http {status}")
        self.status = status


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


def resolve(host: str, port: int, deadline: float) -> list[Any]:
    """``getaddrinfo`` by ``deadline``: in a thread of its own, since no timeout reaches it.

    An IP literal needs no lookup (and no thread). A resolver that hangs costs the thread,
    which ends with the lookup, never the caller.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Any] = []
    failed: list[BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as error:
            failed.append(error)
        finally:
            done.set()

    threading.Thread(target=lookup, name="dns-lookup", daemon=True).start()
    if not done.wait(_left(deadline)):
        raise DeadlineError("name resolution did not finish by the deadline")
    if failed:
        raise failed[0]
    return found


def connect(host: str, port: int, deadline: float) -> socket.socket:
    """A TCP connection by ``deadline``, whatever the number of addresses ``host`` has.

    ``socket.create_connection`` gives every address the whole timeout: three addresses that
    drop SYNs took three times the deadline. Here each address gets a fair share of what is
    left (the last one all of it), so one dead zone still leaves time for the next.
    """
    addresses = resolve(host, port, deadline)
    if not addresses:
        raise TelemetryError("name resolved to no address", kind="dns")
    last: BaseException | None = None
    for index, (family, kind, proto, _, address) in enumerate(addresses):
        share = _left(deadline) / (len(addresses) - index)
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(share)
            sock.connect(address)
        except OSError as error:
            sock.close()
            last = error
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last is not None
    if isinstance(last, TimeoutError) and deadline <= time.monotonic():
        raise DeadlineError("no connection by the deadline") from None
    raise last


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
        raw = connect(self.host, self.port, self.deadline)
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
    raise TelemetryError(f"unsupported URL scheme {scheme[:10]!r}", kind="malformed")


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
    max_body: int = DEFAULT_MAX_BODY,
) -> Response:
    """Send one request and read the whole answer by ``deadline`` (a ``time.monotonic`` value).

    Returns a 2xx answer. Raises ``HttpStatusError`` for any other status, ``DeadlineError``
    when time runs out, and ``TelemetryError`` (with the kind of the cause) when the
    connection fails or the answer is malformed or larger than ``max_body``.
    """
    try:
        response = _request(url, method, deadline, headers or {}, body, tls, max_body)
    except TelemetryError:
        raise
    except TimeoutError:
        raise DeadlineError("no complete answer by the deadline") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        # Type and errno text only: http.client quotes header values and URLs in its messages.
        reason = getattr(error, "strerror", None)
        message = type(error).__name__ + (f": {reason}" if isinstance(reason, str) else "")
        raise TelemetryError(message, kind=_kind(error)) from None
    if not 200 <= response.status < 300:
        raise HttpStatusError(response.status, response.reason)
    return response


def _kind(error: BaseException) -> str:
    return "malformed" if isinstance(error, ValueError) else failure_kind(error)


def _request(
    url: str,
    method: str,
    deadline: float,
    headers: dict[str, str],
    body: bytes | None,
    tls: ssl.SSLContext | None,
    max_body: int,
) -> Response:
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A kept-alive connection may have been closed by the server while the environment was
    # frozen: retry once on a fresh one. Callers send PUT, POST of OTLP, GET and DELETE: a
    # repeat is harmless for each.
    for attempt in (1, 2):
        connection = _checkout(scheme, host, port, tls)
        reused = connection.sock is not None
        connection.arm(deadline)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read(max_body + 1)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            connection.close()
            if attempt == 2 or not reused:
                raise
            # Whatever closed this one (a restart, an idle timeout) closed its idle siblings
            # too: the retry gets a new connection, not another stale one.
            _discard_idle(scheme, host, port)
            continue
        except BaseException:
            connection.close()
            raise
        if len(data) > max_body:
            connection.close()  # the rest of the answer is never read
            raise TelemetryError(f"answer larger than {max_body} bytes", kind="too large")
        if answer.length:
            # read(amt) does not raise for a body cut short of its Content-Length: the
            # server may not have taken the request as sent, so it is no success.
            connection.close()
            raise TelemetryError("answer ended before its Content-Length", kind="malformed")
        response = Response(
            answer.status,
            answer.reason,
            {name.lower(): value for name, value in answer.getheaders()},
            data,
        )
        if answer.will_close or not answer.isclosed():
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
