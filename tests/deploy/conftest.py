"""Shared by the deployment checks: paths, tool lookup and the SAM transform."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DOCKERFILE = ROOT / "functions" / "healthz" / "Dockerfile"
LOCK = ROOT / "layers" / "observability" / "requirements.lock"
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
# Created by `make venv` (checkov's pins conflict with aws-sam-cli's, so it has a venv of its own).
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"

# What `sam package` puts in place of local code before CloudFormation runs the transform.
FAKE_IMAGE_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/healthz:python3.13-v1"
FAKE_ZIP_URIS = {
    "PushgatewayJanitorFunction": ("CodeUri", "s3://artifacts/janitor.zip"),
    "ObservabilityLayer": ("ContentUri", "s3://artifacts/layer.zip"),
}


def tool(name: str) -> str:
    """A binary from the project's venv, else from PATH; fails (never skips) when missing."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in {VENV_BIN} or on PATH: run `make venv`")
    return found


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse

    doc = yaml_parse(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


class _NoManagedPolicies:
    """The template names no managed policy by name, so no IAM lookup is needed."""

    def load(self) -> dict[str, str]:
        return {}


NO_VALUE = {"Ref": "AWS::NoValue"}


def _condition(template: dict[str, Any], values: Mapping[str, Any], expr: Any) -> Any:
    """A condition's value (or an operand's), from parameter values and defaults only."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((key, arg),) = expr.items()
        if key == "Ref":
            return values[arg]
        if key == "Condition":
            return _condition(template, values, template["Conditions"][arg])
        if key == "Fn::Equals":
            a, b = (_condition(template, values, x) for x in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not _condition(template, values, arg[0])
        if key == "Fn::And":
            return all(_condition(template, values, x) for x in arg)
        if key == "Fn::Or":
            return any(_condition(template, values, x) for x in arg)
        raise AssertionError(f"unexpected {key} in a condition")
    return expr


def _resolve_ifs(template: dict[str, Any], values: Mapping[str, Any], node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, if_true, if_false = node["Fn::If"]
            chosen = if_true if _condition(template, values, {"Condition": name}) else if_false
            return _resolve_ifs(template, values, chosen)
        resolved = {k: _resolve_ifs(template, values, v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v != NO_VALUE}
    if isinstance(node, list):
        items = [_resolve_ifs(template, values, v) for v in node]
        return [v for v in items if v != NO_VALUE]
    return node


def language_extensions(
    template: dict[str, Any], parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What the AWS::LanguageExtensions transform, which CloudFormation runs before SAM's, does
    here: each Fn::If of the resources and outputs replaced by its branch (every condition
    depends on parameters only), an AWS::NoValue branch removing the property. It inlines the
    parameters' values as well, which CloudFormation does later anyway: left as Refs here.
    (SAM CLI's samcli.lib.cfn_language_extensions, in its local partial mode, also drops the
    Fn::Sub around a ${AWS::StackName} it cannot resolve, so it cannot stand in for the service.)
    """
    assert template["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    values = {
        name: spec.get("Default", "") for name, spec in template.get("Parameters", {}).items()
    }
    values.update(parameters or {})
    for section in ("Resources", "Outputs"):
        template[section] = _resolve_ifs(template, values, template.get(section, {}))
    template["Transform"] = "AWS::Serverless-2016-10-31"
    return template


def sam_transform(parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """template.yaml through the transforms CloudFormation runs on deploy: AWS::LanguageExtensions,
    then aws-sam-translator's AWS::Serverless-2016-10-31."""
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

    template = language_extensions(copy.deepcopy(load_template()), parameters)
    resources = template["Resources"]
    resources["HealthzFunction"]["Properties"]["ImageUri"] = FAKE_IMAGE_URI
    for logical_id, (key, uri) in FAKE_ZIP_URIS.items():
        resources[logical_id]["Properties"][key] = uri
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    result: dict[str, Any] = transform(template, dict(parameters or {}), _NoManagedPolicies())
    return result


@pytest.fixture(scope="session")
def transformed() -> Callable[..., dict[str, Any]]:
    cache: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def get(**parameters: str) -> dict[str, Any]:
        key = tuple(sorted(parameters.items()))
        if key not in cache:
            cache[key] = sam_transform(parameters)
        return copy.deepcopy(cache[key])

    return get


@pytest.fixture(scope="session")
def checkov() -> str:
    if not CHECKOV.exists():
        pytest.fail(
            f"checkov is not installed at {CHECKOV.relative_to(ROOT)}: it lives in a venv of its "
            "own because its pins conflict with aws-sam-cli's; `make venv` creates it "
            "(python3.13 -m venv .tools/checkov && .tools/checkov/bin/pip install checkov==3.3.30)"
        )
    return str(CHECKOV)
