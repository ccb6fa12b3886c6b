"""Lambda Managed Instances rows of `python -m bench`: bare-LMI and ours-LMI side by side.

Each configuration runs under localrt as one LMI execution environment (`--concurrency 1
--max-concurrency 4`: awslambdaric forks 4 workers, each serving its own events, never frozen).
Per backend delay, both start fresh and take, from 4 client threads, one environment cold start,
a warm-up, then `calls` measured GETs each, the two configurations interleaved request by
request (rotating order) and paced so that the measured phase lasts `seconds`. Then localrt is
stopped gracefully (SIGTERM; localrt SIGTERMs the environment's process group and SIGKILLs it
600 ms later, as the emulator does).

Measured for each:

- client latency p50/p99 of the measured calls, against bare-LMI's in the same phase, and how
  many took at least the backend's delay (an export on the request path would cost that);
- exports per interval: Pushgateway PUTs and OTLP POSTs forwarded by the fault proxies during
  the measured phase, per `OBSERVABILITY_EXPORT_INTERVAL_SECONDS` (1 s here), sampled each
  interval (bare sends nothing, so every forwarded request is ours-LMI's);
- groups per environment: the Pushgateway's groups for the phase's own job after the stop;
- after SIGTERM: `healthz_calls_total` summed over the job's groups against the calls made,
  and the spans delivered (by the Collector, matched to localrt's invocation ids) against them.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.driver import FaultProxyProcess, LocalRT, clean_env, wait_for
from bench.measure import Budget, summary
from stack.components import OtelCollector, Pushgateway

WORKERS = 4  # --max-concurrency: workers of the one environment
CLIENTS = 4  # client threads: never more requests in flight per configuration than workers
INTERVAL_SECONDS = 1.0  # OBSERVABILITY_EXPORT_INTERVAL_SECONDS of ours-LMI (--lmi-interval)
SAMPLE_SECONDS = 1.0  # the proxies' counts are read this often
# Targets (issue 18), at 100 ms of backend delay
P99_MARGIN_MS = 1.0
TARGET_DELAY_MS = 100


@dataclass(frozen=True)
class LmiConfig:
    key: str
    function: str  # logical ID in bench/template.yaml
    label: str
    telemetry: str


BARE_LMI = LmiConfig("bare-lmi", "BareFunction", "1. bare handler (floor), LMI", "nothing")
OURS_LMI = LmiConfig(
    "ours-lmi",
    "OursAsyncFunction",  # export mode async: on LMI the layer takes its timer trigger
    "2. this project, LMI",
    "JSON logs + span (OTLP/HTTP) + Pushgateway push, from a timer thread of each worker, "
    "once per interval (1 s) while busy",
)
LMI_CONFIGS = (BARE_LMI, OURS_LMI)


def drive(
    servers: list[LocalRT], clients: int, rounds: int, period_s: float, budget: Budget
) -> list[list[float]]:
    """`clients` threads, each `rounds` rounds of one GET to every server (rotating order), a
    round every `period_s` (the clients staggered over the period); latencies per server (ms)."""
    started = time.perf_counter() + 0.01

    def client(i: int) -> list[list[float]]:
        own = [LocalRT.attach(rt) for rt in servers]
        latencies: list[list[float]] = [[] for _ in servers]
        try:
            first = started + i * period_s / clients
            for r in range(rounds):
                pause = first + r * period_s - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                budget.check("LMI requests")
                for j in range(len(servers)):
                    k = (i + r + j) % len(servers)
                    latencies[k].append(own[k].timed_get())
        finally:
            for rt in own:
                rt.close_connection()
        return latencies

    with ThreadPoolExecutor(max_workers=clients) as pool:
        per_client = list(pool.map(client, range(clients)))
    return [[ms for c in per_client for ms in c[k]] for k in range(len(servers))]


class Sampler:
    """The fault proxies' forwarded counts, once per interval, in a thread."""

    def __init__(self, proxies: dict[str, FaultProxyProcess], interval: float) -> None:
        self.proxies = proxies
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-lmi-sampler", daemon=True)

    def snapshot(self) -> dict[str, float]:
        sample: dict[str, float] = {"t": time.monotonic()}
        for name, proxy in self.proxies.items():
            sample[name] = float(proxy.stats()["stats"]["forwarded"])
        return sample

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.snapshot())
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append(self.snapshot())


def per_interval(samples: list[dict[str, float]], key: str, interval: float) -> dict[str, Any]:
    """Requests counted under `key` per `interval`: over the whole span of the samples, and the
    fewest and most between two consecutive samples (about SAMPLE_SECONDS apart), scaled to
    one interval."""
    if len(samples) < 2:
        return {"total": 0, "seconds": 0.0, "per_interval": None, "min": None, "max": None}
    total = samples[-1][key] - samples[0][key]
    seconds = samples[-1]["t"] - samples[0]["t"]
    steps = [
        (b[key] - a[key]) * interval / (b["t"] - a["t"])
        for a, b in itertools.pairwise(samples)
        if b["t"] - a["t"] >= 0.5 * SAMPLE_SECONDS  # a short last step would say little
    ]
    return {
        "total": int(total),
        "seconds": round(seconds, 3),
        "per_interval": total * interval / seconds if seconds > 0 else None,
        "min": min(steps) if steps else None,
        "max": max(steps) if steps else None,
    }


def _killed_lines(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line.strip()[:300] for line in text.splitlines() if "SIGKILL" in line]


def phase(
    delay: int,
    pushgateway: Pushgateway,
    collector: OtelCollector,
    proxy: FaultProxyProcess,
    otlp: FaultProxyProcess,
    workdir: Path,
    budget: Budget,
    calls: int,
    warmup: int,
    seconds: float,
    interval: float = INTERVAL_SECONDS,
) -> dict[str, Any]:
    """One delay's LMI measurements for both configurations (see the module's docstring)."""
    proxy.set_delay(delay)
    otlp.set_delay(delay)
    job = f"healthz-lmi-{delay}"
    env = clean_env(
        PUSHGATEWAY_URL=proxy.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
        PUSHGATEWAY_JOB=job,
        OBSERVABILITY_EXPORT_INTERVAL_SECONDS=f"{interval:g}",
    )
    servers = [
        LocalRT(
            c.function, env, workdir, concurrency=1, max_concurrency=WORKERS, grace_seconds=None
        )
        for c in LMI_CONFIGS
    ]
    try:
        for rt in servers:
            rt.wait_listening()
            rt.stats()
        first_ms = [rt.timed_get() for rt in servers]  # the environment's cold start
        rounds = max(1, calls // CLIENTS)
        warm_rounds = max(1, warmup // CLIENTS)
        drive(servers, CLIENTS, warm_rounds, 0.02, budget)  # every worker past its first calls
        for rt in servers:
            rt.records(1 + warm_rounds * CLIENTS)
        proxies = {"pushgateway_puts": proxy, "otlp_posts": otlp}
        with Sampler(proxies, SAMPLE_SECONDS) as sampler:
            latencies = drive(servers, CLIENTS, rounds, seconds / rounds, budget)
        made = 1 + (warm_rounds + rounds) * CLIENTS  # calls to each configuration
        stats = [rt.stats() for rt in servers]
        records = [rt.records(made) for rt in servers]
        before_stop = sampler.snapshot()
        stops: list[dict[str, Any]] = []
        for rt in servers:
            began = time.monotonic()
            code = rt.stop()
            stops.append(
                {
                    "exit_code": code,
                    "stop_ms": (time.monotonic() - began) * 1000,
                    "sigkill_lines": _killed_lines(rt.log),
                }
            )
    finally:
        for rt in servers:
            rt.stop()
    ours_ids = {str(r["request_id"]) for r in records[1]}

    def delivered() -> int:
        return sum(
            1
            for s in collector.spans()
            if str(s.get("attributes", {}).get("faas.invocation_id")) in ours_ids
        )

    wait_for(lambda: delivered() >= made, 10, interval=0.1)
    spans = delivered()
    after_stop = sampler.snapshot()
    counted, groups = pushgateway.job_total(job)
    bare_ms = latencies[0]
    out: dict[str, Any] = {"delay_ms": delay, "job": job, "calls_made": made}
    for i, (config, ms) in enumerate(zip(LMI_CONFIGS, latencies, strict=True)):
        envs = stats[i]["environments"]
        out[config.key] = {
            "first_call_ms": first_ms[i],
            "client_ms": summary(ms),
            "client_samples_ms": [round(v, 3) for v in ms],
            "vs_bare_p50_ms": summary(ms)["p50"] - summary(bare_ms)["p50"],
            "vs_bare_p99_ms": summary(ms)["p99"] - summary(bare_ms)["p99"],
            "calls_at_least_delay": sum(1 for v in ms if delay and v >= delay),
            "calls_at_least_100ms": sum(1 for v in ms if v >= TARGET_DELAY_MS),
            "queued": sum(1 for r in records[i] if float(r.get("queue_ms") or 0) > 1.0),
            "environments": len(envs),
            "workers": [len(e["workers"]) if e.get("workers") else 1 for e in envs],
            "stop": stops[i],
        }
    out["ours-lmi"].update(
        {
            "measured_seconds": sampler.samples[-1]["t"] - sampler.samples[0]["t"],
            "interval_seconds": interval,
            "pushgateway_puts": per_interval(sampler.samples, "pushgateway_puts", interval),
            "otlp_posts": per_interval(sampler.samples, "otlp_posts", interval),
            "sigterm_puts": int(after_stop["pushgateway_puts"] - before_stop["pushgateway_puts"]),
            "sigterm_posts": int(after_stop["otlp_posts"] - before_stop["otlp_posts"]),
            "groups": groups,
            "calls_counted": counted,
            "spans_delivered": spans,
        }
    )
    return out


def run(
    delays: list[int],
    pushgateway: Pushgateway,
    collector: OtelCollector,
    proxy: FaultProxyProcess,
    otlp: FaultProxyProcess,
    workdir: Path,
    budget: Budget,
    calls: int,
    warmup: int,
    seconds: float,
    log: Any,
    interval: float = INTERVAL_SECONDS,
) -> dict[str, Any]:
    phases = []
    for delay in delays:
        budget.check("LMI phase")
        result = phase(
            delay,
            pushgateway,
            collector,
            proxy,
            otlp,
            workdir,
            budget,
            calls,
            warmup,
            seconds,
            interval,
        )
        ours, bare = result["ours-lmi"], result["bare-lmi"]
        log(
            f"LMI, delay {delay} ms: p50 {ours['client_ms']['p50']:.2f} vs bare "
            f"{bare['client_ms']['p50']:.2f} ms, p99 {ours['client_ms']['p99']:.2f} vs "
            f"{bare['client_ms']['p99']:.2f} ms; {ours['groups']} group(s), "
            f"{ours['calls_counted']:.0f} of {result['calls_made']} counted, "
            f"{ours['spans_delivered']} spans, at {budget.elapsed:.0f} s"
        )
        phases.append(result)
    return {
        "workers": WORKERS,
        "clients": CLIENTS,
        "interval_seconds": interval,
        "sample_seconds": SAMPLE_SECONDS,
        "calls": calls,
        "warmup": warmup,
        "seconds": seconds,
        "configs": [c.__dict__ for c in LMI_CONFIGS],
        "phases": phases,
    }


def targets(lmi: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's LMI targets, at 100 ms of backend delay (the delay an export would show)."""
    checks: list[dict[str, Any]] = []
    for result in lmi["phases"]:
        delay = result["delay_ms"]
        if delay != TARGET_DELAY_MS:
            continue
        ours, bare = result["ours-lmi"], result["bare-lmi"]
        made = result["calls_made"]
        p99 = ours["vs_bare_p99_ms"]
        checks += [
            {
                "target": f"warm p99 within {P99_MARGIN_MS:g} ms of bare-LMI",
                "delay_ms": delay,
                "value": f"{ours['client_ms']['p99']:.2f} vs {bare['client_ms']['p99']:.2f} ms "
                f"({p99:+.2f} ms)",
                "met": p99 <= P99_MARGIN_MS,
            },
            {
                "target": f"no call waits for an export (none of ours >= {delay} ms)",
                "delay_ms": delay,
                "value": f"{ours['calls_at_least_delay']} of {ours['client_ms']['n']} "
                f"(bare-LMI: {bare['calls_at_least_delay']})",
                "met": ours["calls_at_least_delay"] == 0,
            },
            {
                "target": "nothing lost at SIGTERM (calls counted, spans delivered)",
                "delay_ms": delay,
                "value": f"{ours['calls_counted']:.0f} and {ours['spans_delivered']} of {made}",
                "met": ours["calls_counted"] == made and ours["spans_delivered"] == made,
            },
            {
                "target": "one Pushgateway group per environment",
                "delay_ms": delay,
                "value": f"{ours['groups']} group(s), {ours['environments']} environment(s)",
                "met": ours["groups"] == ours["environments"] == 1,
            },
        ]
    return checks


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(lmi: dict[str, Any], checks: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Lambda Managed Instances",
        "",
        f"localrt `--concurrency 1 --max-concurrency {lmi['workers']}` (one environment, "
        f"{lmi['workers']} awslambdaric workers, never frozen), per delay a fresh environment "
        f"for each: its cold start, {lmi['warmup']} warm-up calls, then {lmi['calls']} measured "
        f"calls from {lmi['clients']} clients, bare-LMI and ours-LMI interleaved request by "
        f"request, paced over about {lmi['seconds']:g} s; then a graceful stop (SIGTERM to the "
        "environment's process group, SIGKILL 600 ms later). ours-LMI is the real function + "
        "layer (export mode async, which on LMI is the layer's timer thread per worker), "
        f"`OBSERVABILITY_EXPORT_INTERVAL_SECONDS={lmi['interval_seconds']:g}`, its own "
        "Pushgateway job per delay. Exports per interval: requests forwarded by each fault "
        "proxy during the measured calls, per interval (mean, and fewest-most over 1 s "
        "samples); bare-LMI sends nothing. After SIGTERM: `healthz_calls_total` summed over "
        "the job's groups and the spans the Collector received for ours-LMI's invocations, "
        "against every call made (cold start and warm-up included). *Calls that queued*: "
        "calls of the whole phase (warm-up included) that localrt held more than 1 ms for a "
        "free worker (one back in `/next`); their wait is in the client's time.",
        "",
        "| configuration | delay | client p50 ms (vs bare-LMI) | client p99 ms (vs bare-LMI) "
        "| calls >= delay | calls that queued in localrt | Pushgateway PUTs per interval (min-max) "
        "| OTLP POSTs per interval (min-max) | exports at SIGTERM (PUT / POST) "
        "| groups per environment | calls counted after SIGTERM | spans after SIGTERM |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {c["key"]: c["label"] for c in lmi["configs"]}
    for result in lmi["phases"]:
        delay = result["delay_ms"]
        for key in ("bare-lmi", "ours-lmi"):
            cell = result[key]
            ms = cell["client_ms"]
            at_delay = str(cell["calls_at_least_delay"]) if delay else "n/a"
            row = [
                labels[key],
                f"{delay} ms",
                f"{ms['p50']:.2f} ({cell['vs_bare_p50_ms']:+.2f})",
                f"{ms['p99']:.2f} ({cell['vs_bare_p99_ms']:+.2f})",
                at_delay,
                str(cell["queued"]),
            ]
            if key == "ours-lmi":
                puts, posts = cell["pushgateway_puts"], cell["otlp_posts"]
                row += [
                    f"{_num(puts['per_interval'])} ({_num(puts['min'], 0)}-{_num(puts['max'], 0)})",
                    f"{_num(posts['per_interval'])} "
                    f"({_num(posts['min'], 0)}-{_num(posts['max'], 0)})",
                    f"{cell['sigterm_puts']} / {cell['sigterm_posts']}",
                    f"{cell['groups']} / {cell['environments']}",
                    f"{cell['calls_counted']:.0f} of {result['calls_made']}",
                    f"{cell['spans_delivered']} of {result['calls_made']}",
                ]
            else:
                row += [""] * 6
            lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"### Targets (issue 18, at {TARGET_DELAY_MS} ms of backend delay)",
        "",
        "| target | delay | measured | met |",
        "|---|---:|---:|---|",
    ]
    for check in checks:
        met = "yes" if check["met"] else "**no**"
        lines.append(f"| {check['target']} | {check['delay_ms']} ms | {check['value']} | {met} |")
    stops = [
        f"{key} at {r['delay_ms']} ms: exit {r[key]['stop']['exit_code']}, "
        f"{r[key]['stop']['stop_ms']:.0f} ms"
        + (f", {len(r[key]['stop']['sigkill_lines'])} SIGKILL line(s)")
        for r in lmi["phases"]
        for key in ("bare-lmi", "ours-lmi")
    ]
    lines += ["", "Stops (localrt's exit, time to stop): " + "; ".join(stops) + "."]
    return lines
