"""Shared by every test: the Lambda-like environment the function modules read at import."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.components import Pushgateway

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

# Set before any test module imports the function or the layer, which read them at cold start.
os.environ.setdefault("AWS_LAMBDA_FUNCTION_NAME", "healthz")
os.environ.setdefault("AWS_LAMBDA_FUNCTION_VERSION", "7")
os.environ.setdefault("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
os.environ.setdefault("AWS_REGION", "eu-west-1")
os.environ.setdefault("OTEL_SERVICE_NAME", "healthz")
# In-process tests check what each invocation exports: export after every one of them. The
# export policy has tests of its own (tests/unit/test_export_policy.py, tests/e2e).
os.environ.setdefault("OBSERVABILITY_EXPORT_INTERVAL_SECONDS", "0")
# Unit tests must never reach a real backend from a developer's shell.
for _name in ("PUSHGATEWAY_URL", "PUSHGATEWAY_AUTH_SECRET_ARN", "OTEL_EXPORTER_OTLP_ENDPOINT"):
    os.environ.pop(_name, None)


def load_event(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((EVENTS / name).read_text())
    return loaded


@pytest.fixture(scope="session")
def _pushgateway_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    with Pushgateway(tmp_path_factory.mktemp("pushgateway")) as gateway:
        yield gateway


@pytest.fixture
def pushgateway(_pushgateway_session: Pushgateway) -> Pushgateway:
    """A real Pushgateway on a loopback port, shared by the session and emptied for each test."""
    _pushgateway_session.wipe()
    return _pushgateway_session


@pytest.fixture(scope="session")
def _second_pushgateway_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pushgateway]:
    with Pushgateway(tmp_path_factory.mktemp("pushgateway-2")) as gateway:
        yield gateway


@pytest.fixture
def pushgateways(
    pushgateway: Pushgateway, _second_pushgateway_session: Pushgateway
) -> tuple[Pushgateway, Pushgateway]:
    """Two real Pushgateways, both emptied: PUSHGATEWAY_URL sharded over several."""
    _second_pushgateway_session.wipe()
    return pushgateway, _second_pushgateway_session
