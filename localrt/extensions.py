"""External extensions: the executables Lambda finds in /opt/extensions.

Lambda starts each one before the runtime, in the function's environment (the same
AWS_LAMBDA_RUNTIME_API), and starts the runtime once all of them have registered; init fails
when one exits or never registers. localrt runs each in a process group of its own (the
environment's freezer stops and continues it with the runtime's), prints its lines with the
environment's tag and the extension's name, and hands them to the Telemetry API as
`extension` records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

LOG = logging.getLogger("localrt")

REGISTER_TIMEOUT_S = 10.0  # Lambda's init limit covers extension registration too


def find_extensions(paths: list[Path]) -> list[Path]:
    """Executable files in the given folders (or the files given), sorted by name, as Lambda
    lists /opt/extensions; a later layer's file of the same name replaces an earlier one's."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file())
        else:
            continue
        for candidate in candidates:
            if os.access(candidate, os.X_OK):
                found[candidate.name] = candidate
            else:
                LOG.warning("extension %s is not executable: skipped", candidate)
    return [found[name] for name in sorted(found)]


class ExternalExtension:
    """One extension process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(
        self,
        spawn: Callable[..., subprocess.Popen[bytes]],
        env: dict[str, str],
        on_line: Callable[[str, bytes], None],
        on_exit: Callable[[ExternalExtension, int], None],
    ) -> None:
        self.proc = spawn(
            args=[str(self.path)],
            cwd=str(self.path.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: frozen with the environment, killed with it
        )
        readers = [self._pump(self.proc.stdout, on_line), self._pump(self.proc.stderr, on_line)]
        threading.Thread(
            target=self._watch, args=(readers, on_exit), name=f"ext-{self.name}", daemon=True
        ).start()

    def _pump(self, stream: IO[bytes] | None, on_line: Callable[[str, bytes], None]) -> Any:
        def run() -> None:
            assert stream is not None
            for line in iter(stream.readline, b""):
                on_line(self.name, line)
            stream.close()

        thread = threading.Thread(target=run, name=f"ext-{self.name}-log", daemon=True)
        thread.start()
        return thread

    def _watch(
        self, readers: list[threading.Thread], on_exit: Callable[[ExternalExtension, int], None]
    ) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        for reader in readers:
            reader.join(timeout=1.0)
        self.exit_code = code
        on_exit(self, code)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
