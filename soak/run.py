"""The soak: health requests as fast as ``concurrency`` clients can send them, for a bounded time.

The real function runs under localrt (``--concurrency N``, the template's settings, export mode
auto: async through the internal extension) against a real Pushgateway, Prometheus and OTLP
receiver, all on loopback. While the load runs, every environment's RSS (``VmRSS``) and open
file descriptors (``/proc/<pid>/fd``) are sampled once a second. Checks: zero 5xx, every call
counted by Prometheus, no RSS growth after warm-up, file descriptors stable, no environment
replaced, no planted secret in any output. Stops by itself: at ``seconds`` or ``max_requests``.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from stack import Stack
from tests import planted
from tests.localrt.harness import LocalRT, base_env, wait_until

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
JOB = "soak"
MAX_SECONDS = 600.0
# After warm-up (imports on first export, allocator arenas) RSS must stay flat: allow a little
# noise, not a trend.
RSS_GROWTH_LIMIT_KB = 4096
FD_GROWTH_LIMIT = 2


@dataclass
class EnvSample:
    pid: int
    rss_kb: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


@dataclass
class Report:
    seconds: float
    concurrency: int
    requests: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int]
    errors: int
    prometheus_calls: float | None
    environments: dict[str, dict[str, Any]]
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"soak: {self.requests} requests in {self.seconds:.1f} s at concurrency "
            f"{self.concurrency}: {self.throughput_rps:.0f} req/s",
            f"latency ms: p50 {self.p50_ms:.1f}  p99 {self.p99_ms:.1f}  max {self.max_ms:.1f}",
            f"statuses: {self.statuses}  client errors: {self.errors}  "
            f"Prometheus sum(healthz_calls_total): {self.prometheus_calls}",
        ]
        for tag, env in sorted(self.environments.items()):
            lines.append(
                f"{tag} pid {env['pid']}: invocations {env['invocations']}, RSS after warm-up "
                f"{env['rss_warm_kb']} kB -> end {env['rss_end_kb']} kB (max {env['rss_max_kb']}),"
                f" fds {env['fds_warm']} -> {env['fds_end']}"
            )
        lines.append("problems: " + ("; ".join(self.problems) if self.problems else "none"))
        return "\n".join(lines)


def _proc(pid: int) -> tuple[int, int] | None:
    """RSS in kB and open descriptors of a live process (None once it is gone)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return proc.memory_info().rss // 1024, proc.num_fds()
    except psutil.Error:
        return None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def run(
    seconds: float = 60.0, concurrency: int = 4, max_requests: int = 200_000, mode: str = "auto"
) -> Report:
    seconds = min(max(seconds, 1.0), MAX_SECONDS)
    problems: list[str] = []
    with Stack() as stack:
        env = {**stack.env(), "PUSHGATEWAY_JOB": JOB, "OBSERVABILITY_EXPORT_MODE": mode}
        rt = LocalRT("--concurrency", str(concurrency), template=TEMPLATE, env=base_env(**env))
        try:
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            errors = [0]
            lock = threading.Lock()
            stop = threading.Event()
            sent = [0]

            def client() -> None:
                session = requests.Session()
                while not stop.is_set():
                    with lock:
                        if sent[0] >= max_requests:
                            return
                        sent[0] += 1
                    started = time.perf_counter()
                    try:
                        response = session.get(
                            rt.url + "/healthz",
                            headers=planted.HEADERS,
                            params=planted.QUERY,
                            timeout=10,
                        )
                        code = response.status_code
                    except requests.RequestException:
                        with lock:
                            errors[0] += 1
                        continue
                    elapsed = (time.perf_counter() - started) * 1000
                    with lock:
                        latencies.append(elapsed)
                        statuses[code] = statuses.get(code, 0) + 1
                session.close()

            samples: dict[int, EnvSample] = {}

            def sample() -> None:
                for environment in rt.stats()["environments"]:
                    pid = environment["pid"]
                    if pid and environment["state"] != "dead":
                        got = _proc(pid)
                        if got is not None:
                            entry = samples.setdefault(pid, EnvSample(pid))
                            entry.rss_kb.append(got[0])
                            entry.fds.append(got[1])

            started = time.monotonic()
            threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            warm_until = started + max(2.0, seconds * 0.2)
            warm_marks: dict[int, int] = {}
            while (now := time.monotonic()) < started + seconds and sent[0] < max_requests:
                sample()
                if now >= warm_until and not warm_marks:
                    warm_marks = {pid: len(s.rss_kb) - 1 for pid, s in samples.items()}
                time.sleep(1.0)
            stop.set()
            for thread in threads:
                thread.join(15)
            elapsed = time.monotonic() - started
            wait_until(rt.idle, 10)
            sample()
            stats = rt.stats()
            stack.wait_for_scrape(after=time.time())
            calls = stack.query_value(f'sum(healthz_calls_total{{job="{JOB}"}})')
            groups = stack.pushgateway.groups()
        finally:
            rt.stop()
        output = rt.text()

    total = sum(statuses.values())
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    if server_errors:
        problems.append(f"{server_errors} 5xx answers")
    if errors[0]:
        problems.append(f"{errors[0]} requests failed on the client side")
    if total == 0:
        problems.append("no request completed")
    if calls != total:
        problems.append(f"Prometheus counted {calls} calls, clients got {total} answers")
    summary = stats["summary"]
    if summary["failures"] or summary["environments_started"] > concurrency:
        problems.append(f"environments failed or were replaced: {summary}")
    environments: dict[str, dict[str, Any]] = {}
    by_pid = {e["pid"]: e for e in stats["environments"]}
    for pid, entry in samples.items():
        described = by_pid.get(pid, {})
        warm = warm_marks.get(pid, 0)
        row = {
            "pid": pid,
            "invocations": described.get("invocations"),
            "rss_warm_kb": entry.rss_kb[warm],
            "rss_end_kb": entry.rss_kb[-1],
            "rss_max_kb": max(entry.rss_kb),
            "fds_warm": entry.fds[warm],
            "fds_end": entry.fds[-1],
            "samples": len(entry.rss_kb),
        }
        environments[str(described.get("tag", pid))] = row
        if row["rss_end_kb"] - row["rss_warm_kb"] > RSS_GROWTH_LIMIT_KB:
            problems.append(f"pid {pid}: RSS grew {row['rss_warm_kb']} -> {row['rss_end_kb']} kB")
        if row["fds_end"] - row["fds_warm"] > FD_GROWTH_LIMIT:
            problems.append(f"pid {pid}: file descriptors {row['fds_warm']} -> {row['fds_end']}")
    found = planted.leaks([output, groups])
    if found:
        problems.append(f"planted secrets leaked: {sorted({n for n, _ in found})}")
    return Report(
        seconds=round(elapsed, 2),
        concurrency=concurrency,
        requests=total,
        throughput_rps=round(total / elapsed, 1) if elapsed else 0.0,
        p50_ms=round(statistics.median(latencies), 2) if latencies else 0.0,
        p99_ms=round(_percentile(latencies, 0.99), 2),
        max_ms=round(max(latencies, default=0.0), 2),
        statuses=statuses,
        errors=errors[0],
        prometheus_calls=calls,
        environments=environments,
        problems=problems,
    )
