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


def sam_transform(parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """template.yaml through aws-sam-translator, as CloudFormation's transform runs it on deploy."""
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

    template = copy.deepcopy(load_template())
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
