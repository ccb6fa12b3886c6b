"""The short soak (about 10 s) in `make test`; `make soak` runs the same code for 60 s."""

from __future__ import annotations

import pytest

from soak import run

pytestmark = pytest.mark.integration


def test_short_soak_has_no_5xx_no_lost_count_no_growth() -> None:
    report = run(seconds=10, concurrency=4, max_requests=20_000)
    print(report.text())
    assert report.problems == []
    assert report.requests > 100 and report.prometheus_calls == report.requests
    assert set(report.statuses) == {200}
    assert 1 <= len(report.environments) <= 4
    assert all(env["samples"] >= 5 for env in report.environments.values())
