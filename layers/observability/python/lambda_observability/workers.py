"""The worker processes of one Lambda Managed Instances environment, and what they share.

On LMI awslambdaric forks ``AWS_LAMBDA_MAX_CONCURRENCY`` workers, each importing the handler
itself: each would push a Pushgateway group of its own, 16 per vCPU. Instead the workers share
a directory in /tmp (which LMI shares between them): prometheus-client's multiprocess mode keeps
each worker's values there in a memory-mapped file, one worker at a time (the *leader*, whoever
holds the lock file) pushes their sum as the environment's one group, and the group's instance
id is written there once, by whichever worker comes first.

Standard library only: ``metrics`` imports this before prometheus-client, which reads
``PROMETHEUS_MULTIPROC_DIR`` when it is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Mapping
from pathlib import Path

from . import environment


def shared_directory(env: Mapping[str, str] = os.environ) -> Path | None:
    """The directory this environment's workers share; None off LMI.

    ``PROMETHEUS_MULTIPROC_DIR`` if set, else one per parent process in the temp directory:
    the workers' parent is the environment's runtime, and its start time tells a reused pid
    apart.
    """
    if not environment.is_managed_instances(env):
        return None
    configured = env.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        return Path(configured)
    import tempfile  # only on LMI: it imports shutil and random

    parent = os.getppid()
    return Path(tempfile.gettempdir()) / f"lambda_observability-{parent}-{_start_ticks(parent)}"


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, starttime (after the comm field)


def environment_id(directory: Path) -> str:
    """The environment's instance id: made by the first worker to ask, read by the others."""
    path = directory / "instance"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    import uuid  # LMI only

    candidate = directory / f"instance.{os.getpid()}"
    candidate.write_text(uuid.uuid4().hex)
    with contextlib.suppress(FileExistsError):
        os.link(candidate, path)  # atomic: exactly one worker's id wins
    candidate.unlink()
    return path.read_text().strip()


class Leader:
    """Whether this worker pushes the environment's group: it holds ``leader.lock``.

    The kernel releases the lock when its worker dies, and another worker takes it at its next
    try: there is always at most one leader, and soon one again.
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / "leader.lock"
        self._fd: int | None = None

    def held(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True


def prepare(env: Mapping[str, str] = os.environ) -> Path | None:
    """On LMI, make the shared directory and point prometheus-client at it (before its import)."""
    directory = shared_directory(env)
    if directory is None:
        return None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(directory))
    return directory
