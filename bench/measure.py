"""The measurements: cold starts over fresh environments, paced warm requests, peak RSS.

Cold start: localrt has no idle environment, the client sends GET /healthz and times it until
the answer (localrt spawns ``python -m awslambdaric``, which initialises, takes the event and
answers). Once the environment is ready again it is SIGKILLed, so that the next request
cold-starts a fresh one.

Warm: after a warm-up, sequential GETs on one environment per configuration, the
configurations interleaved request by request. In async modes the environment is
busy after the response until its extension has exported (that is the point), and a request
arriving meanwhile would wait in localrt (real Lambda would start another environment). So
requests are paced: after each answer the client waits ``gap`` ms, calibrated during the
warm-up from the environment's slowest post-response time (x1.2 + 3 ms), and the number of
requests that still queued is reported. What the client sees is then the latency of a
request that finds its environment ready, as it does in Lambda.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.driver import BenchError, LocalRT, vm_hwm_kib


@dataclass
class Budget:
    """The whole run's deadline: every loop checks it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def check(self, what: str) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BenchError(f"time budget of {self.seconds:.0f} s exhausted during {what}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in [0, 100])."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values) if values else math.nan,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


@dataclass
class ColdSample:
    client_ms: float  # measured by the client: request sent -> answer received
    init_ms: float | None  # localrt: spawn -> runtime's first /next
    localrt_client_ms: float | None  # localrt: request received -> answer sent
    billed_ms: float | None  # localrt: event delivered -> environment ready again
    peak_rss_kib: int | None  # VmHWM right before the kill


def cold_start(rt: LocalRT) -> ColdSample:
    if rt.live_pid() is not None:
        raise BenchError(f"{rt.function}: an environment is still alive before a cold start")
    rt.reset_stats()
    client_ms = rt.timed_get()
    (record,) = rt.records(1)[:1]
    if not record["cold"]:
        raise BenchError(f"{rt.function}: expected a cold start, got {record}")
    pid = rt.live_pid()
    if pid is None:
        raise BenchError(f"{rt.function}: environment died after its first answer")
    rss = vm_hwm_kib(pid)
    rt.kill_environment(pid)
    return ColdSample(
        client_ms, record.get("init_ms"), record.get("client_ms"), record.get("billed_ms"), rss
    )


@dataclass
class WarmResult:
    client_ms: list[float]  # measured by the client
    records: list[dict[str, Any]]  # localrt's per-invocation records
    gap_ms: float  # pause after each answer
    peak_rss_kib: int | None
    idle_ms: list[float]  # from each answer to this environment's next request

    def record_values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.records if r.get(key) is not None]

    @property
    def queued(self) -> int:
        """Requests that still waited for their environment (pacing too short)."""
        return sum(1 for r in self.records if float(r.get("queue_ms") or 0) > 1.0)

    @property
    def cold(self) -> int:
        return sum(1 for r in self.records if r.get("cold"))


def warm_up(rt: LocalRT, n_warmup: int, budget: Budget) -> float:
    """Start one environment and warm it up; returns the pause (ms) to keep after each answer."""
    rt.reset_stats()
    rt.timed_get()  # the cold start of this phase's environment
    rt.records(1)
    for i in range(n_warmup):
        budget.check(f"{rt.function} warm-up")
        rt.timed_get()
        rt.records(i + 2)  # wait until the environment is ready again
    post = [
        float(r["post_response_ms"])
        for r in rt.stats()["invocations"]
        if not r["cold"] and r.get("post_response_ms") is not None
    ]
    rt.reset_stats()
    # The slowest warm-up post-response time, with a margin: few requests should ever queue.
    return min(max(max(post, default=0.0) * 1.2 + 3.0, 3.0), 1000.0)


def warm(
    servers: list[LocalRT],
    n_warmup: int,
    n_requests: int,
    budget: Budget,
    on_started: Callable[[], None] | None = None,
) -> list[WarmResult]:
    """Warm requests to every server, interleaved: one request each per cycle, in a rotating
    order, each followed by its own pause. Every environment then idles about as long between
    its requests (one cycle), load from other processes hits all configurations alike, and no
    environment's post-response work overlaps another's request."""
    gaps = [warm_up(rt, n_warmup, budget) for rt in servers]
    if on_started is not None:  # every environment of this phase has started
        on_started()
    client: list[list[float]] = [[] for _ in servers]
    idle: list[list[float]] = [[] for _ in servers]
    answered: list[float | None] = [None for _ in servers]
    for i in range(n_requests):
        budget.check("warm requests")
        for j in range(len(servers)):
            k = (i + j) % len(servers)
            last = answered[k]
            if last is not None:
                idle[k].append((time.perf_counter() - last) * 1000)
            client[k].append(servers[k].timed_get())
            answered[k] = time.perf_counter()
            time.sleep(gaps[k] / 1000)
    results = []
    for rt, latencies, gap, idles in zip(servers, client, gaps, idle, strict=True):
        records = rt.records(n_requests)
        pid = rt.live_pid()
        if pid is None:
            raise BenchError(f"{rt.function}: environment died during the warm phase")
        rss = vm_hwm_kib(pid)
        rt.kill_environment(pid)
        results.append(WarmResult(latencies, records, gap, rss, idles))
    return results
