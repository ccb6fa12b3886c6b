"""The bench report's issue 21 targets, on made-up figures: what passes and what does not."""

from __future__ import annotations

from typing import Any

from bench import policy, report
from lambda_observability.config import DEFAULT_EXPORT_INTERVAL_SECONDS


def _cell(cold: float, warm: float, rss: float) -> dict[str, Any]:
    return {"cold_ms": {"p50": cold}, "warm_client_ms": {"p50": warm}, "peak_rss_mib": rss}


def _data(ours: dict[str, Any]) -> dict[str, Any]:
    cells = {
        "bare": _cell(50, 3.0, 15.0),
        "ours-async": ours,
        "otel-lite-async": _cell(200, 3.6, 37.0),
    }
    return {"delays_ms": [0], "results": {k: {"0": v} for k, v in cells.items()}}


def _issue_21(data: dict[str, Any]) -> dict[str, bool]:
    checks = [c for c in report.targets(data) if c["issue"] == 21]
    return {c["target"]: c["met"] for c in checks}


def test_issue_21_targets_met() -> None:
    met = _issue_21(_data(_cell(89, 3.5, 34.0)))
    assert met == {
        "cold start p50 at most 1.8x bare": True,
        "warm p50 overhead over bare no larger than lambda-otel-lite async's": True,
        "peak RSS at most 20 MiB above bare": True,
    }


def test_issue_21_targets_missed() -> None:
    met = _issue_21(_data(_cell(91, 3.7, 35.5)))
    assert set(met.values()) == {False}


def test_the_policy_benchs_default_is_the_layers() -> None:
    assert f"ours-{DEFAULT_EXPORT_INTERVAL_SECONDS:g}" == policy.DEFAULT_KEY
