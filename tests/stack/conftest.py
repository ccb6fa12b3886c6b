"""Fixtures for the stack and janitor tests: real Pushgateway/Prometheus on loopback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
# tests/stack/ has no __init__.py on purpose (it would shadow the `stack` package), so
# make sure the repo root, where `stack` lives, is importable whatever pytest's config.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


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
