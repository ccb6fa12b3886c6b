"""The bench's Lambda Managed Instances rows (bench/lmi.py): exports per interval from the
proxies' samples, the targets and the table, on made-up figures."""

from __future__ import annotations

from typing import Any

from bench import lmi
from bench.measure import summary


def test_exports_per_interval_from_samples() -> None:
    # 1 PUT a second, 4 POSTs a second, one 1.5 s step with 6 POSTs, a short last step
    samples = [
        {"t": 0.0, "puts": 0.0, "posts": 0.0},
        {"t": 1.0, "puts": 1.0, "posts": 4.0},
        {"t": 2.5, "puts": 2.0, "posts": 10.0},
        {"t": 3.5, "puts": 3.0, "posts": 14.0},
        {"t": 3.6, "puts": 3.0, "posts": 14.0},
    ]
    puts = lmi.per_interval(samples, "puts", 1.0)
    assert puts["total"] == 3 and puts["seconds"] == 3.6
    assert abs(puts["per_interval"] - 3 / 3.6) < 1e-9
    assert puts["max"] == 1.0 and abs(puts["min"] - 1 / 1.5) < 1e-9
    posts = lmi.per_interval(samples, "posts", 1.0)
    assert posts["min"] == posts["max"] == 4.0  # the 0.1 s step is left out
    assert lmi.per_interval(samples, "posts", 2.0)["per_interval"] == 2 * 14 / 3.6
    assert lmi.per_interval(samples[:1], "puts", 1.0)["per_interval"] is None


def _cell(ms: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "first_call_ms": 200.0,
        "client_ms": summary(ms),
        "vs_bare_p50_ms": 0.0,
        "vs_bare_p99_ms": extra.pop("vs_bare_p99_ms", 0.0),
        "calls_at_least_delay": sum(1 for v in ms if v >= 100),
        "environments": 1,
        "queued": 0,
        "workers": [4],
        "stop": {"exit_code": 0, "stop_ms": 700.0, "sigkill_lines": []},
        **extra,
    }


def _phase(delay: int, ours_ms: list[float], counted: float, spans: int, groups: int) -> Any:
    exports = {"total": 10, "seconds": 10.0, "per_interval": 1.0, "min": 1.0, "max": 1.0}
    bare = _cell([3.0] * 99 + [10.0])
    ours = _cell(
        ours_ms,
        vs_bare_p99_ms=summary(ours_ms)["p99"] - bare["client_ms"]["p99"],
        pushgateway_puts=exports,
        otlp_posts={**exports, "per_interval": 4.0},
        sigterm_puts=4,
        sigterm_posts=4,
        groups=groups,
        calls_counted=counted,
        spans_delivered=spans,
    )
    return {"delay_ms": delay, "calls_made": 101, "bare-lmi": bare, "ours-lmi": ours}


def _data(*phases: Any) -> dict[str, Any]:
    return {
        "workers": 4,
        "clients": 4,
        "interval_seconds": 1.0,
        "calls": 100,
        "warmup": 0,
        "seconds": 10.0,
        "configs": [c.__dict__ for c in lmi.LMI_CONFIGS],
        "phases": list(phases),
    }


def test_targets_are_checked_at_100_ms_only() -> None:
    good = _phase(100, [3.5] * 99 + [10.5], 101.0, 101, 1)
    data = _data(_phase(0, [150.0] * 100, 0.0, 0, 4), good)
    checks = lmi.targets(data)
    assert [c["delay_ms"] for c in checks] == [100] * 4
    assert all(c["met"] for c in checks), checks
    markdown = "\n".join(lmi.markdown(data, checks))
    assert "## Lambda Managed Instances" in markdown
    assert "| 2. this project, LMI | 100 ms |" in markdown
    assert "101 of 101" in markdown and "**no**" not in markdown


def test_targets_fail_on_a_slow_tail_a_wait_a_loss_or_a_second_group() -> None:
    bad = _phase(100, [3.5] * 98 + [120.0, 130.0], 100.0, 101, 2)
    checks = {c["target"]: c["met"] for c in lmi.targets(_data(bad))}
    assert not any(checks.values()), checks
    lost_spans = _phase(100, [3.5] * 100, 101.0, 99, 1)
    (loss,) = [c for c in lmi.targets(_data(lost_spans)) if "SIGTERM" in c["target"]]
    assert not loss["met"] and loss["value"] == "101 and 99 of 101"
