"""`make test` sets itself up: missing prerequisites are installed, or named in one line.

No test here runs the real apt-get: the scripts run with a PATH of stubs, where ``id`` says who
we are and ``apt-get`` records how it was called.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts/prereqs.sh"
BASH = shutil.which("bash") or "/bin/bash"
MAKE = shutil.which("make")
CHMOD = shutil.which("chmod") or "/bin/chmod"
MISSING_ALL = (
    "make: missing prometheus-pushgateway, prometheus, promtool: install the Debian packages "
    "prometheus-pushgateway prometheus "
    "(as root: apt-get install prometheus-pushgateway prometheus)"
)
NO_PYTHON = re.compile(
    r"Makefile:\d+: \*\*\* Python 3\.13 not found on PATH: "
    r"install it or pass PYTHON=/path/to/python3\.13\.  Stop\."
)


def _stub(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _stubs(tmp_path: Path, uid: int, apt_get: bool = True, present: tuple[str, ...] = ()) -> Path:
    """A bin directory: ``id -u`` prints uid; apt-get (if any) logs its calls to apt.log and,
    on ``install``, puts the three binaries in place as a real install would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "id", f"echo {uid}")
    if apt_get:
        log = tmp_path / "apt.log"
        install = " ".join(
            f"printf '#!{BASH}\\n' >{bin_dir}/{name}; {CHMOD} +x {bin_dir}/{name};"
            for name in ("prometheus-pushgateway", "prometheus", "promtool")
        )
        _stub(
            bin_dir,
            "apt-get",
            f'echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >>{log}\n'
            f'if [ "$1" = install ]; then {install} fi',
        )
    for name in present:
        _stub(bin_dir, name)
    return bin_dir


def _run_script(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    # Only the stubs on PATH; no PUSHGATEWAY_BIN/PROMETHEUS_BIN from the caller's shell.
    return subprocess.run(
        [BASH, str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True, text=True, cwd=ROOT
    )


def test_present_binaries_need_nothing(tmp_path: Path) -> None:
    bin_dir = _stubs(tmp_path, uid=0, present=("prometheus-pushgateway", "prometheus", "promtool"))
    done = _run_script(bin_dir)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (tmp_path / "apt.log").exists()


def test_not_root_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    done = _run_script(_stubs(tmp_path, uid=1000))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [MISSING_ALL]
    assert not (tmp_path / "apt.log").exists()  # apt-get was there, and never called


def test_root_without_apt_get_says_what_to_install(tmp_path: Path) -> None:
    done = _run_script(_stubs(tmp_path, uid=0, apt_get=False))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [MISSING_ALL]


def test_only_the_missing_binary_and_its_package_are_named(tmp_path: Path) -> None:
    bin_dir = _stubs(tmp_path, uid=1000, present=("prometheus-pushgateway", "prometheus"))
    done = _run_script(bin_dir)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "make: missing promtool: install the Debian packages prometheus "
        "(as root: apt-get install prometheus)"
    ]


def test_root_with_apt_get_installs_the_packages(tmp_path: Path) -> None:
    done = _run_script(_stubs(tmp_path, uid=0))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "make: installing the Debian packages prometheus-pushgateway prometheus "
        "(missing prometheus-pushgateway, prometheus, promtool)"
    ]
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "DEBIAN_FRONTEND= update -qq",
        "DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends "
        "prometheus-pushgateway prometheus",
    ]


def test_a_failed_install_still_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = _stubs(tmp_path, uid=0)
    _stub(bin_dir, "apt-get", "echo 'E: Unable to locate package' >&2; exit 100")
    done = _run_script(bin_dir)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == MISSING_ALL


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_test_stops_at_prereqs(tmp_path: Path) -> None:
    assert MAKE is not None
    done = subprocess.run(
        [MAKE, "test"],
        env={"PATH": str(_stubs(tmp_path, uid=1000))},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stdout == ""  # nothing else ran: no venv, lint or tests
    assert done.stderr.splitlines()[0] == MISSING_ALL
    assert not (tmp_path / "apt.log").exists()


@pytest.fixture
def fresh_checkout(tmp_path: Path) -> Path:
    """The Makefile in a directory without .venv, where `make venv` has to create one."""
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(ROOT / "Makefile", work)
    (work / "requirements-dev.lock").touch()
    return work


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
@pytest.mark.parametrize("args", [[], ["PYTHON="]], ids=["not-on-path", "empty-PYTHON"])
def test_no_python_is_one_line(fresh_checkout: Path, tmp_path: Path, args: list[str]) -> None:
    assert MAKE is not None
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [MAKE, "-n", "venv", *args],
        env={"PATH": str(empty)},
        capture_output=True,
        text=True,
        cwd=fresh_checkout,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert NO_PYTHON.fullmatch(line), line


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_python_is_found_on_path(fresh_checkout: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "python3.13")
    assert MAKE is not None
    done = subprocess.run(
        [MAKE, "-n", "venv"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        cwd=fresh_checkout,
        check=True,
    )
    assert f"{bin_dir}/python3.13 -m venv .venv" in done.stdout
