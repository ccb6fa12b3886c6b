"""`make go-tools` (scripts/build-go-tools.sh): what `make test` builds from tools/, or the one
line that says what to install."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build-go-tools.sh"
BASH = shutil.which("bash") or "/bin/bash"

pytestmark = pytest.mark.integration


def test_without_go_one_line_says_what_to_install() -> None:
    done = subprocess.run(
        [BASH, str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "GO": "/nonexistent/go"},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "make: go not found: install Go 1.26 (go on PATH) to build the OpenTelemetry Collector "
        "and the Pushgateway from their modules (tools/)\n"
    )


def test_built_already_is_nothing_to_do() -> None:
    # make test ran the build before the tests: a second run finds both builds by their keys
    started = time.monotonic()
    done = subprocess.run([BASH, str(SCRIPT)], capture_output=True, text=True, cwd=REPO)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert time.monotonic() - started < 5


def test_every_collector_module_is_of_one_release() -> None:
    manifest = (REPO / "tools/otelcol/builder-config.yaml").read_text()
    versions = {
        line.split()[-1]
        for line in manifest.splitlines()
        if line.strip().startswith("- gomod:") or line.strip().startswith("gomod:")
    }
    # core's unstable modules and contrib at v0.161.0, core's stable ones (confmap) at v1.67.0
    assert versions == {"v0.161.0", "v1.67.0"}
    assert "# builder: go.opentelemetry.io/collector/cmd/builder v0.161.0" in manifest


def test_the_builds_are_the_versions_deploy_pins() -> None:
    services = yaml.safe_load((REPO / "deploy/docker-compose.yml").read_text())["services"]
    gomod = (REPO / "tools/pushgateway/go.mod").read_text()
    (required,) = [
        line.split()[1]
        for line in gomod.splitlines()
        if line.strip().startswith("github.com/prometheus/pushgateway ")
    ]
    for name in ("pushgateway", "pushgateway-2"):
        assert services[name]["image"] == f"prom/pushgateway:{required}"
    collector = services["otel-collector"]["image"]
    assert collector == "otel/opentelemetry-collector-contrib:0.161.0"
