"""What every local server here shares (localrt, the stack, the fault proxy, benchmarks, tests):
where it may listen, which port is free, and how it is stopped. Standard library only."""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

HOST = "127.0.0.1"  # every local server listens on loopback only


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    """A loopback port that was free a moment ago: callers retry if another process wins the race,
    and tests use it as a port where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def on_stop_signals(stop: Callable[[signal.Signals], None]) -> None:
    """SIGINT and SIGTERM call `stop(signal)` in a new thread: handlers run on the main thread,
    which may be the one serving (a server's shutdown() would then wait for itself)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=stop, args=(signal.Signals(signum),), daemon=True).start()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def stop_event() -> threading.Event:
    """An event that SIGINT or SIGTERM sets. Ask for it before starting anything, so that a
    signal during startup still stops what had started."""
    stop = threading.Event()
    on_stop_signals(lambda _signal: stop.set())
    return stop
