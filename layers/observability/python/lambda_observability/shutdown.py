"""Run a final flush when the environment gets SIGTERM.

A Python signal handler would never run here: between invocations the main thread sits inside
awslambdaric's native ``next`` call and only returns to Python when the next event arrives. The
C-level handler still writes the signal number to the wakeup fd, so a thread that reads it can
flush and exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable


def install(on_sigterm: Callable[[], None]) -> bool:
    """Call ``on_sigterm`` then exit on SIGTERM. False if it cannot be installed here."""
    if threading.current_thread() is not threading.main_thread():
        return False
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd)
    if previous != -1:
        # Someone else owns the wakeup fd: leave it to them.
        signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return False
    # A Python-level handler must exist for the C handler to write to the wakeup fd.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    threading.Thread(
        target=_watch, args=(read_fd, on_sigterm), name="sigterm-flush", daemon=True
    ).start()
    return True


def _watch(read_fd: int, on_sigterm: Callable[[], None]) -> None:
    while True:
        received = os.read(read_fd, 64)
        if signal.SIGTERM in received:
            break
    try:
        on_sigterm()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
