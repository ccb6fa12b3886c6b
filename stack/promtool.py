"""promtool checks of the repo's Prometheus config and rules (used by tests and `check`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from stack._proc import find_binary
from stack.components import ALERTS_TEST_YML, CONFIG_DIR, PROMETHEUS_YML, RULE_FILES


@dataclass(frozen=True)
class CheckResult:
    name: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _run(name: str, *args: str) -> CheckResult:
    promtool = find_binary(["promtool"], "PROMTOOL_BIN", "prometheus")
    proc = subprocess.run(
        [promtool, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=CONFIG_DIR,
    )
    return CheckResult(name, proc.returncode, proc.stdout + proc.stderr)


def check_config() -> CheckResult:
    """`promtool check config` (also checks the rule files it references)."""
    return _run("check config", "check", "config", str(PROMETHEUS_YML))


def check_rules() -> CheckResult:
    return _run("check rules", "check", "rules", *(str(CONFIG_DIR / f) for f in RULE_FILES))


def run_rule_tests() -> CheckResult:
    return _run("test rules", "test", "rules", str(ALERTS_TEST_YML))


def run_all() -> list[CheckResult]:
    return [check_config(), check_rules(), run_rule_tests()]
