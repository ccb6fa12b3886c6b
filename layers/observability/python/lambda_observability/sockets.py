"""TCP for the Extensions and Telemetry APIs, with ``_socket``, the C module ``socket`` wraps.

Both are spoken at init. Importing ``socket`` builds four enums from every constant of
``_socket`` and imports ``selectors``: about 5 ms of every cold start, more than the rest of
the layer's own modules together (bench/results/importtime.md), for what takes a connect, a
listen and an accept here. The export path, after the response, uses ``socket`` itself
(export/http_client.py).
"""

from __future__ import annotations

import _socket
import io

Socket = _socket.socket
gaierror = _socket.gaierror  # the very class socket.gaierror names


def connect(host: str, port: int, timeout: float | None) -> Socket:
    """``socket.create_connection``: each address of ``host`` in turn, Nagle off."""
    # An ASCII host as bytes: getaddrinfo encodes a str with the idna codec, whose import
    # (unicodedata, stringprep) is a millisecond of every cold start.
    name: str | bytes = host.encode() if host.isascii() else host
    failure: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM):
        sock = Socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            return sock
        except OSError as error:
            sock.close()
            failure = error
    raise failure if failure is not None else OSError(f"no address for {host!r}")


def listen(host: str, backlog: int) -> Socket:
    """A listening socket on ``host``, on a port the system picks."""
    server = Socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        server.bind((host, 0))
        server.listen(backlog)
    except OSError:
        server.close()
        raise
    return server


def accept(server: Socket) -> Socket:
    """The next connection (blocking, as ``socket.accept`` gives it without a timeout)."""
    descriptor, _ = server._accept()  # type: ignore[attr-defined]  # what socket.accept calls
    return Socket(fileno=descriptor)


class _SocketReader(io.RawIOBase):
    def __init__(self, sock: Socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._sock.recv_into(buffer)


def reader(sock: Socket) -> io.BufferedReader:
    """``sock.makefile("rb")``: buffered reads, ``peek`` included; closing it leaves ``sock``
    open (close the socket itself)."""
    return io.BufferedReader(_SocketReader(sock))
