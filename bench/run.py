"""One benchmark run: backends up, every configuration's localrt up, both delays, results out."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import collector_ext, importtime, inenv, lmi, percall, report
from bench.configs import CONFIGS, DELAYS_MS, REPO, RESULTS, Config
from bench.driver import FaultProxyProcess, LocalRT, clean_env
from bench.measure import Budget, ColdSample, WarmResult, cold_start, summary, warm
from stack.components import OtlpReceiverProcess, Pushgateway

PACKAGES = (
    "awslambdaric",
    "aws-lambda-powertools",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-aws-lambda",
    "lambda-otel-lite",
    "prometheus-client",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--cold", type=int, default=10, help="cold starts per config and delay")
    parser.add_argument("--warm", type=int, default=200, help="measured warm requests")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests (not measured)")
    parser.add_argument(
        "--configs", default=",".join(c.key for c in CONFIGS), help="comma-separated keys"
    )
    parser.add_argument("--delays", default=",".join(str(d) for d in DELAYS_MS))
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--skip-importtime", action="store_true")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the logs of localrt and the backends"
    )
    parser.add_argument("--quick", action="store_true", help="3 cold, 30 warm: a smoke run")
    parser.add_argument(
        "--lmi-calls", type=int, default=200, help="measured calls per LMI configuration"
    )
    parser.add_argument("--lmi-warmup", type=int, default=100, help="LMI warm-up calls")
    parser.add_argument(
        "--lmi-seconds", type=float, default=10.0, help="the LMI measured calls' duration"
    )
    parser.add_argument(
        "--lmi-interval",
        type=float,
        default=lmi.INTERVAL_SECONDS,
        help="OBSERVABILITY_EXPORT_INTERVAL_SECONDS of ours-LMI",
    )
    parser.add_argument("--skip-lmi", action="store_true", help="no Lambda Managed Instances rows")
    parser.add_argument(
        "--collector-calls",
        type=int,
        default=50,
        help="calls of otel-collector-ext's graceful-stop phase, per delay",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.cold, args.warm, args.warmup = 3, 30, 5
        args.lmi_calls, args.lmi_warmup, args.lmi_seconds = 40, 20, 3.0
        args.collector_calls = 10
    return args


def load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return {"loadavg": [one, five, fifteen], "uptime": uptime.strip()}


def git_commit() -> str | None:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return result.stdout.strip() or None


CODE_UNDER_TEST = ("layers/observability/python", "functions/healthz", "bench/functions")


def code_fingerprint() -> dict[str, Any]:
    """A hash of the code the environments import, and whether git sees it modified: other
    engineers edit the layer while the benchmark runs, and every cold start imports it anew."""
    digest = hashlib.sha256()
    for top in CODE_UNDER_TEST:
        for path in sorted((REPO / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", *CODE_UNDER_TEST],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {"sha256": digest.hexdigest()[:16], "uncommitted": status.splitlines()}


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def cell(cold: list[ColdSample], result: WarmResult) -> dict[str, Any]:
    return {
        "cold_ms": summary([c.client_ms for c in cold]),
        "cold_init_ms": summary([c.init_ms for c in cold if c.init_ms is not None]),
        "cold_billed_ms": summary([c.billed_ms for c in cold if c.billed_ms is not None]),
        "cold_samples_ms": [round(c.client_ms, 3) for c in cold],
        "warm_client_ms": summary(result.client_ms),
        "warm_localrt_client_ms": summary(result.record_values("client_ms")),
        "warm_duration_ms": summary(result.record_values("duration_ms")),
        "warm_billed_ms": summary(result.record_values("billed_ms")),
        "warm_post_response_ms": summary(result.record_values("post_response_ms")),
        "warm_queue_ms": summary(result.record_values("queue_ms")),
        "warm_queued_requests": result.queued,
        "warm_cold_requests": result.cold,
        "warm_gap_ms": result.gap_ms,
        "warm_idle_ms": summary(result.idle_ms),
        "peak_rss_mib": None if result.peak_rss_kib is None else result.peak_rss_kib / 1024,
        "cold_peak_rss_mib": summary(
            [c.peak_rss_kib / 1024 for c in cold if c.peak_rss_kib is not None]
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = [k.strip() for k in args.configs.split(",") if k.strip()]
    configs = [c for c in CONFIGS if c.key in wanted]
    if not configs or configs[0].key != "bare":
        raise SystemExit("the bare configuration must be part of every run (it is the floor)")
    delays = [int(d) for d in args.delays.split(",")]
    budget = Budget(args.budget)
    meta: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_before": load(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": git_commit(),
        "code_before": code_fingerprint(),
        "packages": versions(),
        "cold_starts": args.cold,
        "warm_requests": args.warm,
        "warmup_requests": args.warmup,
    }
    started_code: list[dict[str, Any]] = []  # after the last environment of each phase started
    cold: dict[tuple[str, int], list[ColdSample]] = {}
    warm_results: dict[tuple[str, int], WarmResult] = {}
    workdir = Path(tempfile.mkdtemp(prefix="healthz-bench-"))
    with contextlib.ExitStack() as stack:
        if args.keep_workdir:
            log(f"logs in {workdir}")
        else:
            stack.callback(shutil.rmtree, workdir, True)
        pushgateway = Pushgateway(workdir).start()
        stack.callback(pushgateway.stop)
        receiver = OtlpReceiverProcess(workdir).start()
        stack.callback(receiver.stop)
        proxy = stack.enter_context(FaultProxyProcess(pushgateway.url, workdir))
        otlp = stack.enter_context(FaultProxyProcess(receiver.http_endpoint, workdir, "otlp"))
        env = clean_env(PUSHGATEWAY_URL=proxy.url, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url)
        with_collector = any(c.key == collector_ext.KEY for c in configs)
        if with_collector:  # the extension's binary, built by make go-tools
            env["OTEL_LAMBDA_COLLECTOR_BIN"] = collector_ext.binary()
        servers: dict[str, LocalRT] = {}
        for config in configs:  # all start in parallel
            servers[config.key] = LocalRT(config.function, env, workdir)
            stack.callback(servers[config.key].stop)
        for rt in servers.values():
            rt.wait_listening()
            rt.stats()  # warms localrt's own HTTP path
        log(f"backends and {len(servers)} localrt servers up after {budget.elapsed:.1f} s")
        for delay in delays:
            otlp.set_delay(delay)
            proxy.set_delay(delay)
            for config in configs:
                cold[(config.key, delay)] = []
            # Cold starts interleaved across configurations (rotated each round), so that a
            # change of load on this shared machine hits them all alike.
            for round_ in range(args.cold):
                order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
                for config in order:
                    budget.check("cold starts")
                    sample = cold_start(servers[config.key])
                    cold[(config.key, delay)].append(sample)
                    time.sleep(0.05)
            log(f"delay {delay} ms: {args.cold} cold starts each, at {budget.elapsed:.0f} s")
            started = budget.elapsed
            phase = warm(
                [servers[c.key] for c in configs],
                args.warmup,
                args.warm,
                budget,
                on_started=lambda: started_code.append(code_fingerprint()),
            )
            for config, result in zip(configs, phase, strict=True):
                warm_results[(config.key, delay)] = result
                p50 = summary(result.client_ms)["p50"]
                log(
                    f"delay {delay} ms: {config.key} warm p50 {p50:.2f} ms, "
                    f"gap {result.gap_ms:.0f} ms"
                )
            log(f"delay {delay} ms: warm phase {budget.elapsed - started:.0f} s")
        spans = len(receiver.spans())
        pushes = proxy.stats()["stats"]["forwarded"]
        for rt in servers.values():  # the classic servers are idle: out of the LMI phases' way
            rt.stop()
        collector_results = None
        if with_collector:
            collector_results = collector_ext.run(
                delays, receiver, proxy, otlp, workdir, budget, args.collector_calls, log
            )
        lmi_results = None
        if not args.skip_lmi:
            lmi_results = lmi.run(
                delays,
                pushgateway,
                receiver,
                proxy,
                otlp,
                workdir,
                budget,
                args.lmi_calls,
                args.lmi_warmup,
                args.lmi_seconds,
                log,
                args.lmi_interval,
            )
    meta["load_after"] = load()
    meta["code_at_last_start"] = started_code[-1] if started_code else None
    meta["code_after"] = code_fingerprint()
    meta["seconds"] = budget.elapsed
    meta["spans_received"] = spans
    meta["pushes_forwarded"] = pushes
    results: dict[str, dict[str, Any]] = {}
    for config in configs:
        results[config.key] = {
            str(delay): cell(cold[(config.key, delay)], warm_results[(config.key, delay)])
            for delay in delays
        }
    data: dict[str, Any] = {
        "meta": meta,
        "delays_ms": delays,
        "configs": [asdict(c) for c in configs],
        "results": results,
    }
    if collector_results is not None:
        data["collector_ext"] = collector_results
    if lmi_results is not None:
        data["lmi"] = lmi_results
    return data


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = run(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data["targets"] = report.targets(data)
    if "lmi" in data:
        data["lmi_targets"] = lmi.targets(data["lmi"])
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "latest.md").write_text(report.markdown(data))
    report.chart(data, out / "latest.png")
    log(f"wrote {out / 'latest.md'}, latest.json, latest.png in {data['meta']['seconds']:.0f} s")
    print(report.markdown(data))
    if not args.skip_importtime:
        importtime.main(["--out", str(out)])
        percall.main(["--out", str(out)])
        inenv.main(["--out", str(out)])
    return 0


__all__ = ["Config", "main"]
