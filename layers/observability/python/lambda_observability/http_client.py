"""A prometheus-client push handler over one kept-alive connection per gateway.

prometheus-client's own handler goes through ``urllib.request.build_opener``, which builds an
HTTPS handler, and so loads the system's CA bundle, on every request, even for http:// URLs:
about 20-35 ms per push here, against about 1 ms for a reused connection. A push runs after
every invocation, so that cost would be billed every time.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

PushHandler = Callable[[str, str, float | None, list[tuple[str, str]], bytes], Callable[[], None]]

_lock = threading.Lock()
_connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
_tls_context: ssl.SSLContext | None = None


def _connection(scheme: str, netloc: str, timeout: float | None) -> http.client.HTTPConnection:
    global _tls_context
    connection = _connections.get((scheme, netloc))
    if connection is None:
        if scheme == "https":
            if _tls_context is None:
                _tls_context = ssl.create_default_context()
            connection = http.client.HTTPSConnection(netloc, timeout=timeout, context=_tls_context)
        elif scheme == "http":
            connection = http.client.HTTPConnection(netloc, timeout=timeout)
        else:
            raise ValueError(f"unsupported Pushgateway URL scheme {scheme!r}")
        _connections[(scheme, netloc)] = connection
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    return connection


def _forget(scheme: str, netloc: str) -> None:
    connection = _connections.pop((scheme, netloc), None)
    if connection is not None:
        connection.close()


def request(
    url: str,
    method: str,
    timeout: float | None,
    headers: list[tuple[str, str]],
    data: bytes,
    credentials: tuple[str, str] | None = None,
) -> None:
    """Send one request; raise OSError on any failure or on an HTTP error status."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    all_headers = dict(headers)
    if credentials is not None:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        all_headers["Authorization"] = f"Basic {token}"
    with _lock:
        # A kept-alive connection may have been closed by the server while the environment was
        # frozen: retry once on a fresh one (push is a PUT and delete a DELETE: both idempotent).
        for attempt in (1, 2):
            connection = _connection(parts.scheme, parts.netloc, timeout)
            try:
                connection.request(method, path, body=data, headers=all_headers)
                response = connection.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                _forget(parts.scheme, parts.netloc)
                if attempt == 2:
                    raise
                continue
            except (OSError, http.client.HTTPException) as error:
                _forget(parts.scheme, parts.netloc)
                raise OSError(f"error talking to pushgateway: {error}") from None
            if response.will_close:
                _forget(parts.scheme, parts.netloc)
            if response.status >= 400:
                raise OSError(f"error talking to pushgateway: {response.status} {response.reason}")
            return


def push_handler(credentials: tuple[str, str] | None) -> PushHandler:
    """prometheus-client's handler protocol, on the kept-alive connections above."""

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return lambda: request(url, method, timeout, headers, data, credentials)

    return handler
