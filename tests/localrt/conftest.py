"""Fixtures starting the real `python -m localrt` (see harness.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.localrt.harness import TEMPLATE, LocalRT, assert_no_orphans


@pytest.fixture
def start_localrt() -> Iterator[Callable[..., LocalRT]]:
    started: list[LocalRT] = []

    def start(*args: str, env: dict[str, str] | None = None, template: Path = TEMPLATE) -> LocalRT:
        rt = LocalRT(*args, env=env, template=template)
        started.append(rt)
        return rt

    yield start
    for rt in started:
        rt.stop()
        assert_no_orphans(rt)


@pytest.fixture(scope="module")
def echo_rt() -> Iterator[LocalRT]:
    """One shared server for the request/response tests (EchoFunction, up to 4 environments)."""
    rt = LocalRT("--function", "EchoFunction", "--concurrency", "4")
    yield rt
    rt.stop()
    assert_no_orphans(rt)
