"""Loopback servers that answer whatever a test needs, byte for byte."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def answering(
    answer: Callable[[socket.socket], None], received: list[bytes] | None = None
) -> Iterator[int]:
    """A loopback server that reads a request (kept in ``received``), then runs ``answer``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = conn.recv(65536)
                if received is not None:
                    received.append(data)
                with contextlib.suppress(OSError):
                    answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


def fixed(data: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(data)
