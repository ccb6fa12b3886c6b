"""promtool checks of the scrape config and rules, run as tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from stack import render_prometheus_config
from stack.components import ALERTS_TEST_YML, CONFIG_DIR
from stack.promtool import _run, check_config, check_rules, run_rule_tests


def test_check_config() -> None:
    result = check_config()
    assert result.ok, result.output
    assert "2 rule files found" in result.output


def test_check_rules() -> None:
    result = check_rules()
    assert result.ok, result.output


def test_rule_unit_tests() -> None:
    result = run_rule_tests()
    assert result.ok, result.output


def test_rendered_config_is_valid_and_targets_the_port(tmp_path: Path) -> None:
    config = render_prometheus_config(tmp_path, 45678)
    text = config.read_text()
    assert "127.0.0.1:45678" in text and "127.0.0.1:9091" not in text
    assert "honor_labels: true" in text
    result = _run("check rendered config", "check", "config", str(config))
    assert result.ok, result.output


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {
        rule["alert"]
        for group in _load(CONFIG_DIR / "alerts.yml")["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in _load(ALERTS_TEST_YML)["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a not-firing test"


def test_every_recording_rule_is_tested() -> None:
    records = {
        rule["record"]
        for group in _load(CONFIG_DIR / "recording_rules.yml")["groups"]
        for rule in group["rules"]
    }
    tested = {
        case["expr"]
        for test in _load(ALERTS_TEST_YML)["tests"]
        for case in test.get("promql_expr_test", [])
    }
    assert records - tested == set()
