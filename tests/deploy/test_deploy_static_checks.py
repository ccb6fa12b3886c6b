"""The static checks of issue 5: sam validate --lint, cfn-lint with the serverless rules,
checkov on the template and the Dockerfile, hadolint. Every suppression is justified inline."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DOCKERFILE, ROOT, TEMPLATE, load_template, tool
from tests.deploy.test_deploy_transform import LMI

SERVERLESS_RULES = "cfn_lint_serverless.rules"
# Every checkov suppression must say why, in a sentence, not just name the check.
MIN_REASON_CHARS = 40


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_sam_validate_lint() -> None:
    result = run([tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_with_serverless_rules_on_the_sam_template() -> None:
    # `-t` first: --append-rules takes several values and would swallow the template's path.
    result = run([tool("cfn-lint"), "-t", str(TEMPLATE), "--append-rules", SERVERLESS_RULES])
    assert result.returncode == 0, result.stdout + result.stderr


def _lint_json(
    tmp_path: Path, name: str, template: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    template = copy.deepcopy(template)
    # AWS::LanguageExtensions resolved every !If (as CloudFormation runs it before SAM's
    # transform): the parameters and conditions they read are left unused (W2001, W8001), and
    # HealthzFunction's !GetAtt of the conditional HealthzCapacityProvider lost the !If
    # [UseManagedInstances, ...] that guarded it (W1001; it is only there when that condition
    # holds). The source template is linted with all three (test_cfn_lint_with_serverless_...).
    config = template.setdefault("Metadata", {}).setdefault("cfn-lint", {}).setdefault("config", {})
    config["ignore_checks"] = [*config.get("ignore_checks", []), "W1001", "W2001", "W8001"]
    path = tmp_path / name
    path.write_text(json.dumps(template, indent=1))
    return run(
        [
            tool("cfn-lint"),
            "-t",
            str(path),
            "--append-rules",
            SERVERLESS_RULES,
            "--format",
            "parseable",
        ]
    )


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"PushgatewayUrl": "https://pushgateway.example.com"},
        {"DeploymentType": "AllAtOnce"},
        LMI,
        {**LMI, "PushgatewayUrl": "https://pushgateway.example.com"},
    ],
    ids=["defaults", "with-pushgateway-and-janitor", "dev", "managed-instances", "lmi-pushgateway"],
)
def test_cfn_lint_serverless_rules_on_the_transformed_template(
    tmp_path: Path, transformed: Callable[..., dict[str, Any]], parameters: dict[str, str]
) -> None:
    # cfn-lint 1.x no longer runs the SAM transform (it checks SAM resources against SAM's
    # schema), so rules written for AWS::Lambda::Function, AWS::ApiGateway::Stage, ... --
    # all of cfn-lint-serverless -- never see a SAM template's resources. Lint what SAM makes.
    result = _lint_json(tmp_path, "transformed.json", transformed(**parameters))
    assert result.returncode == 0, result.stdout + result.stderr


def test_serverless_rules_do_fire_on_transformed_resources(
    tmp_path: Path, transformed: Callable[..., dict[str, Any]]
) -> None:
    """Guards the check above against silently checking nothing."""
    template = transformed(PushgatewayUrl="https://pushgateway.example.com")
    resources = template["Resources"]
    del resources["HealthzFunction"]["Properties"]["TracingConfig"]
    del resources["HealthzFunction"]["Metadata"]["cfn-lint"]
    stage = next(k for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::Stage")
    del resources[stage]["Properties"]["AccessLogSetting"]
    del resources[stage]["Properties"]["MethodSettings"]
    template.pop("Metadata")
    output = _lint_json(tmp_path, "broken.json", template).stdout
    for rule in ("WS1000", "WS1004", "ES2000", "ES2003", "ES4000", "ES1007"):
        assert f":{rule}:" in output, f"{rule} did not fire:\n{output}"


def _cfn_lint_ignores() -> dict[str, list[str]]:
    """Where the template tells cfn-lint to ignore a rule: top level and per resource."""
    doc = load_template()
    found = {
        "<template>": list(
            doc.get("Metadata", {}).get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
        )
    }
    for name, resource in doc["Resources"].items():
        checks = (
            (resource.get("Metadata") or {})
            .get("cfn-lint", {})
            .get("config", {})
            .get("ignore_checks")
        )
        if checks:
            found[name] = list(checks)
    return found


def test_every_cfn_lint_suppression_is_justified_inline() -> None:
    ignores = _cfn_lint_ignores()
    assert sorted(ignores) == ["<template>", "HealthzFunction", "PushgatewayJanitorFunction"]
    assert sorted(ignores["<template>"]) == ["ES1007", "ES4000", "W1030"]
    lines = TEMPLATE.read_text().splitlines()
    for checks in ignores.values():
        for check in checks:
            for i, line in enumerate(lines):
                if line.strip() == f"- {check}":
                    comment: list[str] = []
                    j = i - 1
                    while lines[j].strip().startswith("#"):
                        comment.insert(0, lines[j].strip("# "))
                        j -= 1
                    reason = " ".join(comment)
                    assert check in reason and len(reason) > 100, f"{check}: no reason above it"


def _checkov(checkov: str, path: Path, framework: str) -> dict[str, Any]:
    result = run(
        [checkov, "-f", str(path), "--framework", framework, "--output", "json", "--skip-download"]
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one report per framework
        (report,) = report
    assert isinstance(report, dict)
    return report


def _reasons(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (check["check_id"], check["resource"].rsplit(".", 1)[-1]): check["check_result"].get(
            "suppress_comment", ""
        )
        for check in report["results"]["skipped_checks"]
    }


def _failed(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]


def test_checkov_on_the_template(checkov: str) -> None:
    report = _checkov(checkov, TEMPLATE, "cloudformation")
    assert _failed(report) == []
    assert report["summary"]["passed"] >= 25
    for (check, resource), reason in _reasons(report).items():
        assert len(reason) >= MIN_REASON_CHARS, f"{check} on {resource}: no reason given"


@pytest.mark.parametrize(
    "parameters",
    [
        {"PushgatewayUrl": "https://pushgateway.example.com"},
        {**LMI, "PushgatewayUrl": "https://pushgateway.example.com"},
    ],
    ids=["on-demand", "managed-instances"],
)
def test_checkov_on_the_transformed_template_finds_only_what_the_template_justifies(
    tmp_path: Path,
    checkov: str,
    transformed: Callable[..., dict[str, Any]],
    parameters: dict[str, str],
) -> None:
    # The roles, stage, alias, deployment group, ... that SAM generates are checked too. Comments
    # do not survive the transform, so a failure is accepted only where the SAM resource it
    # comes from carries a justified skip of the same check.
    justified = _reasons(_checkov(checkov, TEMPLATE, "cloudformation"))
    path = tmp_path / "transformed.json"
    path.write_text(json.dumps(transformed(**parameters)))
    report = _checkov(checkov, path, "cloudformation")
    assert report["summary"]["passed"] >= 35
    unexplained = []
    for failed in report["results"]["failed_checks"]:
        resource = failed["resource"].rsplit(".", 1)[-1]
        source = re.sub(r"(ProdStage|Deployment[0-9a-f]{10})$", "", resource)
        if (failed["check_id"], source) not in justified:
            unexplained.append(f"{failed['check_id']} {resource}: {failed['check_name']}")
    assert unexplained == []


def test_checkov_on_the_dockerfile(checkov: str) -> None:
    report = _checkov(checkov, DOCKERFILE, "dockerfile")
    assert _failed(report) == []
    assert report["summary"]["passed"] >= 15
    reasons = _reasons(report)
    assert {check for check, _ in reasons} == {"CKV_DOCKER_2", "CKV_DOCKER_3"}
    for (check, _), reason in reasons.items():
        assert len(reason) >= MIN_REASON_CHARS, f"{check}: no reason given"


def test_hadolint_on_the_dockerfile() -> None:
    result = run([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nRUN cd /tmp && apt-get install -y gcc\n")
    result = run([tool("hadolint"), str(bad)])
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3042"):
        assert rule in result.stdout, result.stdout
