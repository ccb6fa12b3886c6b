"""Fewer hand-made parts: what a library or one shared helper does is not written again."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# psutil has no peak RSS (VmHWM): the benchmarks and localrt's "Max Memory Used" report the peak.
PROC_ALLOWED = {
    "bench/driver.py",
    "localrt/environment.py",
    # The layer runs inside users' functions and cannot depend on psutil: it reads the LMI
    # runtime's start time (one field of /proc/<ppid>/stat) to name the workers' directory.
    "layers/observability/python/lambda_observability/workers.py",
}


def python_sources() -> dict[str, str]:
    """Every Python file git knows of or would add (so never .venv or .tools)."""
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    this = Path(__file__).relative_to(REPO).as_posix()  # its patterns would match themselves
    return {n: (REPO / n).read_text() for n in names if (REPO / n).is_file() and n != this}


def test_proc_is_read_through_psutil() -> None:
    by_hand = {name for name, text in python_sources().items() if re.search(r"[\"']/proc\b", text)}
    assert by_hand <= PROC_ALLOWED, sorted(by_hand - PROC_ALLOWED)


# One of each, in stack/net.py.
SHARED = "stack/net.py"
ONE_OF_EACH = {
    # bound to port 0 and let go (one that goes on to listen() is a server of a test's own)
    "free port": r"\.bind\(\([^()]*, 0\)\)\n(?!\s*\w+\.listen)",
    "loopback check": r"\.is_loopback\b",
    "signal-and-stop loop": r"signal\.signal\(signal\.SIG(?:INT|TERM)",
}
# Lambda functions and the layer handle SIGTERM as the function itself must, not as a server.
NOT_SERVERS = ("layers/", "functions/", "tests/localrt/functions/")


@pytest.mark.parametrize("part", sorted(ONE_OF_EACH))
def test_one_of_each_server_part(part: str) -> None:
    found = {
        name
        for name, text in python_sources().items()
        if not name.startswith(NOT_SERVERS) and re.search(ONE_OF_EACH[part], text)
    }
    assert SHARED in found
    assert found == {SHARED}, sorted(found - {SHARED})
