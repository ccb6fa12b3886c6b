"""The OpenTelemetry Lambda collector as a peer (``otel-collector-ext``): its build, and its own
phase of ``make bench``, spans delivered before and after a graceful stop.

The classic phases (cold starts, paced warm requests) measure it like every configuration; but
they end each environment with SIGKILL, and the collector's batch processor holds spans across
freezes (its decouple processor drains only what has left the batch before the extension calls
``/next``). So this phase runs one environment of its own per delay: ``calls`` paced GETs, then
the spans the backend got for those invocations (by ``faas.invocation_id``), then a graceful
stop (SIGTERM to localrt: the runtime gets SIGTERM and the extension ``SHUTDOWN`` with Lambda's
2,000 ms), then the spans again. Also the extension's own peak RSS (the classic rows measure the
runtime's process only) and what localrt says about its registration and subscriptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.configs import REPO
from bench.driver import FaultProxyProcess, LocalRT, clean_env, vm_hwm_kib, wait_for
from bench.measure import Budget, summary
from stack.components import OtelCollector
from stack.gotools import GoTool

FUNCTION = "OtelCollectorExtFunction"
KEY = "otel-collector-ext"
MANIFEST_DIR = "tools/otel-lambda-collector"
GAP_SECONDS = 0.1  # between an answer and the next request (the environment freezes meanwhile)


def tool() -> GoTool:
    """The build of tools/otel-lambda-collector: its key is over every file of the folder, in
    byte order of their paths, as scripts/build-go-tools.sh computes it."""
    files = sorted(
        str(p.relative_to(REPO)) for p in (REPO / MANIFEST_DIR).rglob("*") if p.is_file()
    )
    return GoTool("otel-lambda-collector", tuple(files), "OTEL_LAMBDA_COLLECTOR_BIN")


def binary() -> str:
    return str(Path(tool().binary()).resolve())


def phase(
    delay: int,
    collector: OtelCollector,
    proxy: FaultProxyProcess,
    otlp: FaultProxyProcess,
    workdir: Path,
    budget: Budget,
    calls: int,
) -> dict[str, Any]:
    proxy.set_delay(delay)
    otlp.set_delay(delay)
    env = clean_env(
        PUSHGATEWAY_URL=proxy.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
        OTEL_LAMBDA_COLLECTOR_BIN=binary(),
    )
    rt = LocalRT(FUNCTION, env, workdir, concurrency=1, grace_seconds=2.0)
    try:
        rt.wait_listening()
        rt.stats()
        client = []
        for _ in range(calls):
            budget.check("otel-collector-ext calls")
            client.append(rt.timed_get())
            time.sleep(GAP_SECONDS)
        records = rt.records(calls)
        stats = rt.stats()
        (environment,) = [e for e in stats["environments"] if e["state"] != "dead"]
        (extension,) = environment["external_extensions"]
        ext_rss = vm_hwm_kib(int(extension["pid"]))
        ids = {str(r["request_id"]) for r in records}

        def delivered() -> int:
            return sum(
                1
                for s in collector.spans()
                if str(s.get("attributes", {}).get("faas.invocation_id")) in ids
            )

        time.sleep(0.5)  # what was due has left by now, or waits in the frozen batch
        before_stop = delivered()
        began = time.monotonic()
        code = rt.stop()
        stop_ms = (time.monotonic() - began) * 1000
    finally:
        rt.stop()
    wait_for(lambda: delivered() >= calls, 10, interval=0.1)
    text = rt.log.read_text(errors="replace")
    return {
        "delay_ms": delay,
        "calls_made": calls,
        "gap_s": GAP_SECONDS,
        "client_ms": summary(client[1:]),
        "first_call_ms": client[0],
        "billed_ms": summary([float(r["billed_ms"]) for r in records[1:] if r.get("billed_ms")]),
        "post_response_ms": summary(
            [float(r["post_response_ms"]) for r in records[1:] if r.get("post_response_ms")]
        ),
        "extensions_ms": environment.get("extensions_ms"),
        "telemetry_subscriptions": [
            {k: t.get(k) for k in ("schemaVersion", "types", "buffering", "delivered")}
            for t in environment.get("telemetry", [])
        ],
        "extension_peak_rss_mib": None if ext_rss is None else ext_rss / 1024,
        "spans_before_stop": before_stop,
        "spans_after_stop": delivered(),
        "stop_exit_code": code,
        "stop_ms": stop_ms,
        "shutdown_seen": "Received SHUTDOWN event" in text,
        "sigkill_lines": [ln.strip()[:300] for ln in text.splitlines() if "SIGKILL" in ln],
    }


def run(
    delays: list[int],
    collector: OtelCollector,
    proxy: FaultProxyProcess,
    otlp: FaultProxyProcess,
    workdir: Path,
    budget: Budget,
    calls: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    out = []
    for delay in delays:
        result = phase(delay, collector, proxy, otlp, workdir, budget, calls)
        log(
            f"otel-collector-ext, delay {delay} ms: {result['spans_before_stop']} of {calls} "
            f"spans before the stop, {result['spans_after_stop']} after it "
            f"({result['stop_ms']:.0f} ms)"
        )
        out.append(result)
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "## The OpenTelemetry Lambda collector as an external extension (otel-collector-ext)",
        "",
        "One fresh environment per delay, `calls` GETs 100 ms apart, then a graceful stop "
        "(SIGTERM to localrt: the runtime gets SIGTERM and the extension SHUTDOWN, 2,000 ms). "
        "Spans counted at the Collector by `faas.invocation_id`. Warm figures exclude the first "
        "(cold) call. The extension's RSS is its own process (the classic rows' RSS is the "
        "runtime's).",
        "",
        "| delay | calls | client p50/p99 ms | billed p50 ms | post-response p50 ms | "
        "spans before stop | spans after stop | stop ms | extension peak RSS MiB | "
        "registered in ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rss = r["extension_peak_rss_mib"]
        lines.append(
            f"| {r['delay_ms']} ms | {r['calls_made']} | {r['client_ms']['p50']:.2f}/"
            f"{r['client_ms']['p99']:.2f} | {r['billed_ms']['p50']:.2f} | "
            f"{r['post_response_ms']['p50']:.2f} | {r['spans_before_stop']} | "
            f"{r['spans_after_stop']} | {r['stop_ms']:.0f} | "
            f"{'-' if rss is None else f'{rss:.1f}'} | {r['extensions_ms'] or 0:.0f} |"
        )
    subs = results[0]["telemetry_subscriptions"] if results else []
    lines += [
        "",
        f"Telemetry API subscriptions of the extension: {len(subs)} "
        + "; ".join(
            f"schema {s['schemaVersion']}, types {s['types']}, timeoutMs "
            f"{(s['buffering'] or {}).get('timeoutMs')}"
            for s in subs
        )
        + " (the lifecycle manager's, for platform.runtimeDone, and the telemetryapi "
        "receiver's).",
        "",
    ]
    return "\n".join(lines)
