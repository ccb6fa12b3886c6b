"""The results as a Markdown table (ratios against the bare floor), a chart and target checks."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

BARE = "bare"
OURS = ("ours-sync", "ours-async")
LITE = ("otel-lite-sync", "otel-lite-async")
# Issue 10's targets, for our async mode (the default inside Lambda).
P50_MARGIN_MS = 0.5
COLD_RATIO = 3.5
COLD_VS_LITE = 0.8  # at least 20 % faster than lambda-otel-lite's best mode
RSS_MARGIN_MIB = 25.0
# Issue 21 (async mode): cold at most 1.8x bare, warm overhead no larger than lambda-otel-lite
# async's, peak RSS within 20 MiB of bare (its billed target is in bench.policy).
COLD_RATIO_21 = 1.8
RSS_MARGIN_21_MIB = 20.0
LITE_ASYNC = "otel-lite-async"


def _get(data: dict[str, Any], key: str, delay: int) -> dict[str, Any] | None:
    cell: dict[str, Any] | None = data["results"].get(key, {}).get(str(delay))
    return cell


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 10's targets, checked for every delay and both of our modes (they apply to async:
    sync mode exports before answering, so the backend's delay is in its latency)."""
    checks: list[dict[str, Any]] = []

    def check(target: str, key: str, delay: int, value: str, met: bool, issue: int = 10) -> None:
        checks.append(
            {
                "issue": issue,
                "target": target,
                "config": key,
                "delay_ms": delay,
                "value": value,
                "met": met,
                "applies": key == "ours-async",
            }
        )

    for delay in data["delays_ms"]:
        bare = _get(data, BARE, delay)
        if bare is None:
            continue
        ours_async = _get(data, "ours-async", delay)
        lite_async = _get(data, LITE_ASYNC, delay)
        if ours_async is not None:
            ratio = ours_async["cold_ms"]["p50"] / bare["cold_ms"]["p50"]
            check(
                f"cold start p50 at most {COLD_RATIO_21:g}x bare",
                "ours-async",
                delay,
                f"{ratio:.2f}x",
                ratio <= COLD_RATIO_21,
                21,
            )
            ours_extra = ours_async["warm_client_ms"]["p50"] - bare["warm_client_ms"]["p50"]
            if lite_async is not None:
                lite_extra = lite_async["warm_client_ms"]["p50"] - bare["warm_client_ms"]["p50"]
                check(
                    "warm p50 overhead over bare no larger than lambda-otel-lite async's",
                    "ours-async",
                    delay,
                    f"{ours_extra:+.2f} ms vs {lite_extra:+.2f} ms",
                    ours_extra <= lite_extra,
                    21,
                )
            if ours_async["peak_rss_mib"] is not None and bare["peak_rss_mib"] is not None:
                extra = ours_async["peak_rss_mib"] - bare["peak_rss_mib"]
                check(
                    f"peak RSS at most {RSS_MARGIN_21_MIB:g} MiB above bare",
                    "ours-async",
                    delay,
                    f"{extra:+.1f} MiB",
                    extra <= RSS_MARGIN_21_MIB,
                    21,
                )
        lite = [c for c in (_get(data, k, delay) for k in LITE) if c is not None]
        for key in OURS:
            ours = _get(data, key, delay)
            if ours is None:
                continue
            cold = ours["cold_ms"]["p50"]
            if lite:
                best = min(c["cold_ms"]["p50"] for c in lite)
                check(
                    f"cold start p50 at least {1 - COLD_VS_LITE:.0%} faster than "
                    "lambda-otel-lite's best mode",
                    key,
                    delay,
                    f"{cold:.0f} ms vs {best:.0f} ms ({cold / best:.2f}x)",
                    cold <= COLD_VS_LITE * best,
                )
            ratio = cold / bare["cold_ms"]["p50"]
            check(
                f"cold start p50 at most {COLD_RATIO:g}x bare",
                key,
                delay,
                f"{ratio:.2f}x",
                ratio <= COLD_RATIO,
            )
            p50_diff = ours["warm_client_ms"]["p50"] - bare["warm_client_ms"]["p50"]
            check(
                f"warm p50 within {P50_MARGIN_MS:g} ms of bare",
                key,
                delay,
                f"{p50_diff:+.2f} ms",
                p50_diff <= P50_MARGIN_MS,
            )
            if ours["peak_rss_mib"] is not None and bare["peak_rss_mib"] is not None:
                extra = ours["peak_rss_mib"] - bare["peak_rss_mib"]
                check(
                    f"peak RSS at most {RSS_MARGIN_MIB:g} MiB above bare",
                    key,
                    delay,
                    f"{extra:+.1f} MiB",
                    extra <= RSS_MARGIN_MIB,
                )
    return checks


def _anomalies(data: dict[str, Any]) -> list[str]:
    """Warm phases where the environment stayed busy long after answering, or requests queued."""
    found = []
    for config in data["configs"]:
        for delay in data["delays_ms"]:
            cell = _get(data, config["key"], delay)
            if cell is None:
                continue
            post_max = cell["warm_post_response_ms"]["max"]
            if cell["warm_queued_requests"] or post_max > 1000:
                found.append(
                    f"- {config['label']} at {delay} ms: {cell['warm_queued_requests']} "
                    f"requests queued, post-response work up to {post_max:.0f} ms."
                )
    if not found:
        return []
    return [
        "",
        "Anomalies (a queued request's latency includes its wait; lambda-otel-lite 0.15's "
        "extension reads `/extension/event/next` with a 2 s socket timeout and falls out of "
        "step with INVOKE events after any idle period over 2 s):",
        "",
        *found,
    ]


def _code_notes(meta: dict[str, Any]) -> list[str]:
    """Other engineers edit the layer while the benchmark runs; every cold start imports it."""
    before, last, after = (meta.get(k) for k in ("code_before", "code_at_last_start", "code_after"))
    if not before or not after:
        return []
    note = f"Code under test (layer, function, bench handlers): sha256 {before['sha256']}"
    if before["uncommitted"]:
        note += " (uncommitted changes: " + "; ".join(before["uncommitted"]) + ")"
    notes = [note + "."]
    if last and last["sha256"] != before["sha256"]:
        notes.append(
            f"**Warning: the code under test changed while environments were being started** "
            f"({before['sha256']} -> {last['sha256']}): some ran the new code."
        )
    elif after["sha256"] != before["sha256"]:
        notes.append(
            f"(The code changed to {after['sha256']} after the last environment had started: "
            "every measured environment ran the code above.)"
        )
    return notes


def markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    labels = {c["key"]: c["label"] for c in data["configs"]}
    lines = [
        "# Benchmark: the health handler under each observability configuration",
        "",
        f"One run of `python -m bench` ({meta['started']}, commit {meta['commit']}, "
        f"{meta['seconds']:.0f} s): {meta['cold_starts']} cold starts and "
        f"{meta['warm_requests']} warm requests per configuration and backend delay, on "
        f"{meta['cpus']} CPUs, Python {meta['python']}.",
        "Machine load (shared with other engineers' tests): "
        f"before `{meta['load_before']['uptime']}`, after `{meta['load_after']['uptime']}`.",
        *_code_notes(meta),
        "",
        "Backends on 127.0.0.1: a real Pushgateway and the OpenTelemetry Collector (OTLP/HTTP), "
        "each behind a `stack.faultproxy`; *delay* is added by both proxies (`delay` mode). "
        "Ratios and differences are against the bare handler in the same run and at the same "
        "delay.",
        "",
        "| configuration | delay | cold p50 ms (x bare) | cold min ms | init p50 ms "
        "| warm p50 ms (vs bare) | warm p99 ms | billed p50 ms (x bare) | post-response p50 ms "
        "| peak RSS MiB (vs bare) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for delay in data["delays_ms"]:
        bare = _get(data, BARE, delay)
        assert bare is not None
        for config in data["configs"]:
            key = config["key"]
            cell = _get(data, key, delay)
            if cell is None:
                continue
            cold = cell["cold_ms"]["p50"]
            cold_ratio = cold / bare["cold_ms"]["p50"]
            p50 = cell["warm_client_ms"]["p50"]
            billed = cell["warm_billed_ms"]["p50"]
            billed_ratio = billed / bare["warm_billed_ms"]["p50"]
            rss = cell["peak_rss_mib"]
            rss_text = "n/a"
            if rss is not None and bare["peak_rss_mib"] is not None:
                rss_text = f"{rss:.1f} ({rss - bare['peak_rss_mib']:+.1f})"
            lines.append(
                f"| {labels[key]} | {delay} ms | {cold:.0f} ({cold_ratio:.2f}x) "
                f"| {cell['cold_ms']['min']:.0f} | {_fmt(cell['cold_init_ms']['p50'], 0)} "
                f"| {p50:.2f} ({p50 - bare['warm_client_ms']['p50']:+.2f}) "
                f"| {cell['warm_client_ms']['p99']:.2f} "
                f"| {billed:.2f} ({billed_ratio:.1f}x) "
                f"| {_fmt(cell['warm_post_response_ms']['p50'])} | {rss_text} |"
            )
    lines += [
        "",
        "## Targets",
        "",
        "Issue 21's (async mode; its init target is in importtime.md, its billed one in "
        "policy.md), then issue 10's.",
        "",
        "| issue | target | configuration | delay | measured | met |",
        "|---:|---|---|---:|---:|---|",
    ]
    checks = sorted(data.get("targets", []), key=lambda c: -int(c.get("issue", 10)))
    for check in checks:
        met = "yes" if check["met"] else "**no**"
        if not check["applies"]:
            met += " (target is for async)"
        lines.append(
            f"| {check.get('issue', 10)} | {check['target']} | {check['config']} "
            f"| {check['delay_ms']} ms | {check['value']} | {met} |"
        )
    lines += [
        "",
        "## What is measured",
        "",
        "- **cold**: the client's time for the first request to a function with no environment "
        "(localrt spawns `python -m awslambdaric`, which imports the handler, takes the event and "
        "answers), median (and minimum, the least disturbed by other load) over fresh "
        "environments. Cold rounds alternate the configurations. "
        "**init**: spawn to the runtime's first `/next` (Lambda's Init Duration).",
        "- **warm**: GET /healthz on one warm environment per configuration, client-side, "
        "after a warm-up, the configurations interleaved request by request (rotating order): "
        "each environment idles about one cycle between its requests and load from other "
        "processes hits every configuration alike. Each answer is followed by a pause "
        "calibrated on that environment's slowest warm-up post-response time, so that requests "
        "find their environment ready (as in Lambda, where a busy environment means another "
        "environment, not a wait) and no post-response work overlaps another request.",
        "- **billed**: localrt's billed-equivalent duration, from the event's delivery until "
        "the runtime and every extension are back in `/next` (post-response export included).",
        "- **post-response**: from the runtime's response to the environment being ready again.",
        "- **peak RSS**: `VmHWM` of the environment process after the warm requests.",
        "",
        "Per delay (" + " / ".join(f"{d} ms" for d in data["delays_ms"]) + "):",
        "",
        "| configuration | what it sends | pause after each answer ms | idle between its "
        "requests p50 (max) ms | requests that queued |",
        "|---|---|---|---|---|",
    ]
    for config in data["configs"]:
        cells = [c for c in (_get(data, config["key"], d) for d in data["delays_ms"]) if c]
        gaps = " / ".join(f"{c['warm_gap_ms']:.0f}" for c in cells)
        idle = " / ".join(
            f"{c['warm_idle_ms']['p50']:.0f} ({c['warm_idle_ms']['max']:.0f})"
            for c in cells
            if "warm_idle_ms" in c
        )
        queued = " / ".join(str(c["warm_queued_requests"]) for c in cells)
        lines.append(f"| {config['label']} | {config['telemetry']} | {gaps} | {idle} | {queued} |")
    lines += _anomalies(data)
    if "collector_ext" in data:
        from bench import collector_ext

        lines += ["", collector_ext.markdown(data["collector_ext"])]
    if "lmi" in data:
        from bench import lmi

        lines += lmi.markdown(data["lmi"], data.get("lmi_targets", []))
    lines += [
        "",
        f"Telemetry received during the classic phases: {meta['spans_received']} spans, "
        f"{meta['pushes_forwarded']} Pushgateway pushes. "
        "Package versions: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()) + ".",
        "",
        "![chart](latest.png)",
        "",
    ]
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [c["key"] for c in data["configs"]]
    delays = data["delays_ms"]
    panels: tuple[tuple[str, Callable[[dict[str, Any]], float], bool], ...] = (
        ("cold start p50 (ms)", lambda c: c["cold_ms"]["p50"], False),
        ("warm client p50 (ms, log)", lambda c: c["warm_client_ms"]["p50"], True),
        ("billed p50 (ms, log)", lambda c: c["warm_billed_ms"]["p50"], True),
        ("peak RSS (MiB)", lambda c: c["peak_rss_mib"] or 0.0, False),
    )
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    width = 0.8 / len(delays)
    for ax, (title, value, log_scale) in zip(axes.flat, panels, strict=True):
        for i, delay in enumerate(delays):
            heights = []
            for key in keys:
                cell = _get(data, key, delay)
                heights.append(value(cell) if cell else 0.0)
            positions = [x + (i - (len(delays) - 1) / 2) * width for x in range(len(keys))]
            bars = ax.bar(positions, heights, width, label=f"backend delay {delay} ms")
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_title(title)
        ax.set_xticks(range(len(keys)), keys, rotation=25, ha="right", fontsize=8)
        if log_scale:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    meta = data["meta"]
    fig.suptitle(
        f"healthz on localrt, {meta['started']} (load {meta['load_before']['loadavg'][0]:.2f}"
        f" -> {meta['load_after']['loadavg'][0]:.2f}, {meta['cpus']} CPUs)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
