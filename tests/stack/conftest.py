"""Fixtures for the stack and janitor tests: real Pushgateway/Prometheus on loopback."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
# tests/stack/ has no __init__.py on purpose (it would shadow the `stack` package), so
# make sure the repo root, where `stack` lives, is importable whatever pytest's config.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stack import Pushgateway  # noqa: E402 (needs the path above)

JANITOR_PATH = REPO / "functions" / "pushgateway_janitor" / "app.py"  # also in the tests


@pytest.fixture(scope="session")
def janitor() -> ModuleType:
    """The janitor module, loaded under its own name (functions/healthz has an app.py too)."""
    spec = importlib.util.spec_from_file_location("pushgateway_janitor_app", JANITOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def _pushgateway_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    with Pushgateway(tmp_path_factory.mktemp("pushgateway")) as pg:
        yield pg


@pytest.fixture
def pushgateway(_pushgateway_session: Pushgateway) -> Pushgateway:
    """A shared real Pushgateway, emptied for each test."""
    _pushgateway_session.wipe()
    return _pushgateway_session
