"""How far one Pushgateway carries: `make bench-scale` (`python -m bench.scale`, about 5 minutes).

Simulated execution environments push through the layer's own code (``metrics.push`` over
``http_client``) into one real Pushgateway, scraped by one real Prometheus. Each environment
has its own registry and instance id, holding what a real environment holds after
``GET /healthz``: the layer's metrics plus ``healthz_calls_total``, with its counter advancing
at every push. At each level of groups (1,000, 2,000, 5,000, 10,000):

- grow: the new environments push once each (their cold-start push), with the gateway's
  consistency check off so that growing to 10,000 takes seconds, not many minutes;
- then, with the gateway as shipped (``default``) and with ``--push.disable-consistency-check``
  (a restart in between; the groups persist in a file):
- paced: every environment pushes once per ``--interval`` (the layer's export interval),
  spread evenly: the load a gateway must carry at that many busy environments;
- saturated: the workers push back to back: the most PUTs/s the gateway takes at that size.

Then the janitor sweeps the 10,000 groups as stale. Push latency is the client's (the whole
``push`` call); RSS and CPU are read from /proc; Prometheus' own numbers come from its API
(``scrape_duration_seconds``, ``scrape_samples_scraped``) and its /metrics
(``prometheus_tsdb_head_series``). Pushers run in ``--workers`` processes of ``--threads``
threads, on the same 2 CPUs as the gateway and Prometheus: the client's CPU is reported too.
Results: bench/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.measure import percentile
from stack.components import Prometheus, Pushgateway

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers/observability/python"
RESULTS = ROOT / "bench/results"
JANITOR = ROOT / "functions/pushgateway_janitor/app.py"
JOB = "healthz"
PUSH_TIMEOUT_SECONDS = 5.0  # generous: the bench measures latency, it does not cut it off

if str(LAYER) not in sys.path:
    sys.path.insert(0, str(LAYER))


# ---------------------------------------------------------------------------
# one simulated execution environment (runs in the worker processes)


class _Environment:
    """A registry of its own, with an instance id of its own, as a cold start makes."""

    def __init__(self, families: list[Any]) -> None:
        from prometheus_client import CollectorRegistry

        self.instance = uuid.uuid4().hex
        self.calls = 0
        self._families = families
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # a collector: it has collect()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        for family in self._families:
            if family.name == "healthz_calls":
                yield CounterMetricFamily("healthz_calls", family.documentation, self.calls)
            else:
                yield family

    def push(self, url: str) -> float:
        from lambda_observability.export.pushgateway import push

        self.calls += 1
        start = time.perf_counter()
        push(
            url,
            JOB,
            time.monotonic() + PUSH_TIMEOUT_SECONDS,
            registry=self.registry,
            instance=self.instance,
        )
        return time.perf_counter() - start


def _one_environment_families() -> list[Any]:
    """What a real environment's registry holds after one GET /healthz: the layer's own
    metrics, recorded the way ``@observe`` and the handler record them."""
    from lambda_observability import metrics

    calls = metrics.counter("healthz_calls_total", "Total number of calls to the healthz endpoint.")
    calls.inc()
    metrics.COLD_STARTS.inc()
    metrics.REQUEST_DURATION.labels(method="GET", route="/healthz", status_code="200").observe(
        0.002
    )
    return list(metrics.REGISTRY.collect())


@dataclass
class _Phase:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    elapsed: float = 0.0

    def record(self, push: Any) -> None:
        try:
            self.latencies.append(push())
        except Exception as error:  # counted and reported; the bench goes on
            self.errors += 1
            self.first_error = self.first_error or repr(error)


def _in_threads(threads: int, next_push: Any) -> _Phase:
    """Run ``threads`` threads that each call ``next_push()`` for the next environment's push
    (None when done) and record it."""
    phase = _Phase()
    lock = threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                push = next_push()
            if push is None:
                return
            phase.record(push)

    start = time.perf_counter()
    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    phase.elapsed = time.perf_counter() - start
    return phase


def _grow(new: list[_Environment], url: str, threads: int) -> _Phase:
    """Each new environment pushes once: its cold start."""
    queue = iter(new)

    def next_push() -> Any:
        env = next(queue, None)
        return None if env is None else (lambda: env.push(url))

    return _in_threads(threads, next_push)


def _paced(envs: list[_Environment], url: str, threads: int, rate: float, seconds: float) -> _Phase:
    """Open loop: push k is due at start + k / rate and waits for it; a late one goes at once,
    until ``seconds`` are over: a gateway that cannot keep up shows as fewer PUTs/s than the
    rate (the pushes it was late for are never sent)."""
    slots = itertools.count()
    start = time.perf_counter() + 0.05

    def next_push() -> Any:
        k = next(slots)
        due = start + k / rate
        if due - start >= seconds or time.perf_counter() - start >= seconds:
            return None
        env = envs[k % len(envs)]

        def push() -> float:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            return env.push(url)

        return push

    phase = _in_threads(threads, next_push)
    phase.elapsed = time.perf_counter() - start
    return phase


def _saturate(envs: list[_Environment], url: str, threads: int, seconds: float) -> _Phase:
    """Closed loop: every thread pushes back to back."""
    order = itertools.cycle(envs)
    end = time.perf_counter() + seconds

    def next_push() -> Any:
        if time.perf_counter() >= end:
            return None
        env = next(order)
        return lambda: env.push(url)

    return _in_threads(threads, next_push)


def _worker(index: int, workers: int, url: str, threads: int, conn: Connection) -> None:
    families = _one_environment_families()
    envs: list[_Environment] = []
    made = 0  # environments made so far, over all workers
    while True:
        command, args = conn.recv()
        if command == "stop":
            return
        if command == "grow":
            total = int(args["total"])
            new = [_Environment(families) for i in range(made, total) if i % workers == index]
            made = total
            envs.extend(new)
            conn.send(_grow(new, url, threads))
        elif command == "paced":
            rate = float(args["rate"]) / workers
            conn.send(_paced(envs, url, threads, rate, float(args["seconds"])))
        elif command == "saturate":
            conn.send(_saturate(envs, url, threads, float(args["seconds"])))
        elif command == "reconnect":
            # After a gateway restart: the kept-alive connections are dead (in Lambda a
            # frozen environment's are, and the first push after it pays a reconnect).
            from lambda_observability.export.http_client import close_all

            close_all()
            conn.send(_Phase())


# ---------------------------------------------------------------------------
# the driver (main process)


def _proc_cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _proc_rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class _Usage:
    """CPU (share of one core) and peak RSS of some processes over a phase, sampled at 5 Hz."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.peak_rss: dict[str, float] = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _total(self, name: str, read: Any) -> float:
        return float(sum(read(pid) for pid in self.pids[name]))

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for name in self.pids:
                self.peak_rss[name] = max(self.peak_rss[name], self._total(name, _proc_rss_mib))

    def __enter__(self) -> _Usage:
        self._cpu0 = {name: self._total(name, _proc_cpu_seconds) for name in self.pids}
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = time.perf_counter() - self._t0
        self.cpu = {
            name: (self._total(name, _proc_cpu_seconds) - self._cpu0[name]) / wall
            for name in self.pids
        }
        for name in self.pids:
            self.peak_rss[name] = max(self.peak_rss[name], self._total(name, _proc_rss_mib))


class _Workers:
    def __init__(self, url: str, workers: int, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for index in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_worker, args=(index, workers, url, threads, child), daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs if proc.pid is not None]

    def run(self, command: str, **args: float) -> dict[str, Any]:
        for conn in self.conns:
            conn.send((command, args))
        phases: list[_Phase] = [conn.recv() for conn in self.conns]
        latencies = sorted(lat for phase in phases for lat in phase.latencies)
        elapsed = max(phase.elapsed for phase in phases)
        errors = sum(phase.errors for phase in phases)
        return {
            "pushes": len(latencies),
            "errors": errors,
            "first_error": next((p.first_error for p in phases if p.first_error), None),
            "seconds": round(elapsed, 3),
            "puts_per_second": round(len(latencies) / elapsed, 1) if elapsed else None,
            "latency_ms": {
                "p50": round(percentile(latencies, 50) * 1000, 2),
                "p99": round(percentile(latencies, 99) * 1000, 2),
                "max": round(latencies[-1] * 1000, 2),
            }
            if latencies
            else None,
        }

    def stop(self) -> None:
        for conn in self.conns:
            conn.send(("stop", {}))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def _prometheus_numbers(prometheus: Prometheus, window_seconds: int) -> dict[str, Any]:
    selector = '{job="pushgateway"}'
    window = f"[{window_seconds}s]"

    def value(promql: str) -> float | None:
        return prometheus.query_value(promql)

    with urllib.request.urlopen(f"{prometheus.url}/metrics", timeout=10) as resp:
        own = resp.read().decode()
    head_series = next(
        sample.value
        for family in text_string_to_metric_families(own)
        for sample in family.samples
        if sample.name == "prometheus_tsdb_head_series"
    )
    return {
        "scrape_duration_seconds_last": value(f"scrape_duration_seconds{selector}"),
        "scrape_duration_seconds_max": value(
            f"max_over_time(scrape_duration_seconds{selector}{window})"
        ),
        "scrape_samples_scraped": value(f"scrape_samples_scraped{selector}"),
        "failed_scrapes": value(
            f"count_over_time(up{selector}{window}) - sum_over_time(up{selector}{window})"
        ),
        "tsdb_head_series": head_series,
        "pushed_groups_seen": value(f'count(push_time_seconds{{job="{JOB}"}})'),
    }


def _load_janitor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pushgateway_janitor_app", JANITOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {
            "levels": args.levels,
            "interval_seconds": args.interval,
            "phase_seconds": args.seconds,
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "scrape_interval": args.scrape_interval,
        },
        "levels": [],
    }
    # Groups survive the gateway's restarts (between modes) in a persistence file.
    gateway = Pushgateway(workdir, persistence_file=workdir / "groups.db")
    with (
        gateway,
        Prometheus(workdir, gateway.port, scrape_interval=args.scrape_interval) as prometheus,
    ):
        results["versions"] = _versions(gateway, prometheus)
        workers = _Workers(gateway.url, args.workers, args.threads)
        try:
            for level in args.levels:
                results["levels"].append(_level(level, args, workers, gateway, prometheus))
            _restart(gateway, workers, consistency_check=True)  # as shipped
            results["janitor"] = _sweep(gateway, len(gateway.groups()))
        finally:
            workers.stop()
    return results


def _restart(gateway: Pushgateway, workers: _Workers, consistency_check: bool) -> None:
    if gateway.consistency_check != consistency_check:
        gateway.stop()  # persists every group to its file, which the next start loads
        gateway.consistency_check = consistency_check
        gateway.start()
        workers.run("reconnect")


def _pids(gateway: Pushgateway, prometheus: Prometheus, workers: _Workers) -> dict[str, list[int]]:
    assert gateway.process is not None and prometheus.process is not None
    return {
        "pushgateway": [gateway.process.pid],
        "prometheus": [prometheus.process.pid],
        "client": workers.pids,
    }


def _level(
    groups: int,
    args: argparse.Namespace,
    workers: _Workers,
    gateway: Pushgateway,
    prometheus: Prometheus,
) -> dict[str, Any]:
    # Growing is not what is measured: new groups are pushed without the consistency check,
    # which makes each push cost grow with every group the gateway holds (see the results).
    _restart(gateway, workers, consistency_check=False)
    _log(f"{groups} groups: grow")
    grow = workers.run("grow", total=groups)
    level: dict[str, Any] = {"groups": groups, "grow": grow}
    rate = groups / args.interval
    for mode, check in (("default", True), ("no_consistency_check", False)):
        _restart(gateway, workers, consistency_check=check)
        started = time.time()
        pids = _pids(gateway, prometheus, workers)
        _log(f"{groups} groups, {mode}: paced at {rate:.0f} PUTs/s for {args.seconds} s")
        with _Usage(pids) as paced_usage:
            paced = workers.run("paced", rate=rate, seconds=args.seconds)
        _log(f"{groups} groups, {mode}: saturated for {args.seconds} s")
        with _Usage(pids) as saturated_usage:
            saturated = workers.run("saturate", seconds=args.seconds)
        level[mode] = {
            "paced": {
                **paced,
                "target_puts_per_second": rate,
                "cpu_cores": _rounded(paced_usage.cpu),
            },
            "saturated": {**saturated, "cpu_cores": _rounded(saturated_usage.cpu)},
            "rss_mib": _rounded(saturated_usage.peak_rss),
        }
        if mode == "default":
            # Scrapes of the gateway at its full size, none of them across a restart.
            prometheus.wait_for_scrape(timeout=60)
            prometheus.wait_for_scrape(timeout=60)
            level["prometheus"] = _prometheus_numbers(prometheus, math.ceil(time.time() - started))
    level["groups_held"] = len(gateway.groups())
    _log(json.dumps(level))
    return level


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in values.items()}


def _sweep(gateway: Pushgateway, groups: int) -> dict[str, Any]:
    """The janitor's real sweep (list, then one DELETE per group), every group stale."""
    janitor = _load_janitor()
    _log(f"janitor: sweeping {groups} stale groups")
    start = time.perf_counter()
    result = janitor.sweep(gateway.url, job=JOB, ttl_seconds=60, now=time.time() + 3600)
    seconds = time.perf_counter() - start
    return {
        "groups": groups,
        "deleted": len(result.deleted),
        "errors": len(result.errors),
        "seconds": round(seconds, 2),
        "deletes_per_second": round(len(result.deleted) / seconds, 1),
        "groups_left": len(gateway.groups()),
    }


def _versions(gateway: Pushgateway, prometheus: Prometheus) -> dict[str, str]:
    out = {"prometheus_client": importlib.metadata.version("prometheus-client")}
    for name, url in (("pushgateway", gateway.url), ("prometheus", prometheus.url)):
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            for family in text_string_to_metric_families(text):
                if family.name.endswith("_build_info"):
                    out[name] = family.samples[0].labels.get("version", "?")
                    break
        except OSError:
            out[name] = "?"
    return out


# ---------------------------------------------------------------------------
# report


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    v = results["versions"]
    lines = [
        "# One Pushgateway at scale (`make bench-scale`)",
        "",
        f"Run {results['when']} on {results['machine']['cpus']} CPUs (a shared machine). "
        f"Pushgateway {v.get('pushgateway')}, Prometheus {v.get('prometheus')}, "
        f"prometheus-client {v.get('prometheus_client')}. Pushers: {s['workers']} processes x "
        f"{s['threads_per_worker']} threads through the layer's `metrics.push`, on the same "
        f"CPUs. Paced: every group pushed once per {s['interval_seconds']:g} s; saturated: "
        f"back to back; {s['phase_seconds']:g} s each. `default` is the gateway as shipped; "
        "`no_consistency_check` runs it with `--push.disable-consistency-check`. Prometheus "
        f"scrapes every {s['scrape_interval']}. How it measures: [bench/scale.py](../scale.py); "
        "what it means: [docs/scaling.md](../../docs/scaling.md).",
        "",
        "| groups | gateway | paced: target / achieved PUTs/s | paced p50 / p99 ms "
        "| saturated PUTs/s | saturated p50 / p99 ms | gateway CPU (cores) paced / saturated "
        "| gateway RSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in results["levels"]:
        for mode in ("default", "no_consistency_check"):
            m = level[mode]
            paced, sat = m["paced"], m["saturated"]
            lines.append(
                f"| {level['groups']:,} | {mode} | {paced['target_puts_per_second']:,.0f} / "
                f"{paced['puts_per_second']:,.0f} | {_ms(paced)} | "
                f"{sat['puts_per_second']:,.0f} | {_ms(sat)} | "
                f"{paced['cpu_cores']['pushgateway']:.2f} / "
                f"{sat['cpu_cores']['pushgateway']:.2f} | {m['rss_mib']['pushgateway']:,.0f} |"
            )
    lines += [
        "",
        "Prometheus scraping the gateway (default mode, over the level's window):",
        "",
        "| groups | scrape duration s, last / max | samples per scrape | TSDB head series "
        "| failed scrapes | Prometheus RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for level in results["levels"]:
        prom = level["prometheus"]
        lines.append(
            f"| {level['groups']:,} | {_num(prom['scrape_duration_seconds_last'], 3)} / "
            f"{_num(prom['scrape_duration_seconds_max'], 3)} | "
            f"{_num(prom['scrape_samples_scraped'], 0)} | {_num(prom['tsdb_head_series'], 0)} | "
            f"{_num(prom['failed_scrapes'], 0)} | "
            f"{level['default']['rss_mib']['prometheus']:,.0f} |"
        )
    janitor = results["janitor"]
    errors = [
        f"{level['groups']:,} groups {mode} {phase}: {level[mode][phase]['errors']} "
        f"({level[mode][phase]['first_error']})"
        for level in results["levels"]
        for mode in ("default", "no_consistency_check")
        for phase in ("paced", "saturated")
        if level[mode][phase]["errors"]
    ]
    lines += [
        "",
        f"Janitor: {janitor['deleted']:,} stale groups of {janitor['groups']:,} deleted in "
        f"{janitor['seconds']:g} s ({janitor['deletes_per_second']:,.0f} DELETEs/s, "
        f"{janitor['errors']} errors, {janitor['groups_left']} groups left).",
        "",
        "CPU (cores) of the pushers and of Prometheus while saturated, default / "
        "no_consistency_check: "
        + "; ".join(
            f"{level['groups']:,} groups: pushers "
            f"{level['default']['saturated']['cpu_cores']['client']:.2f} / "
            f"{level['no_consistency_check']['saturated']['cpu_cores']['client']:.2f}, "
            f"Prometheus {level['default']['saturated']['cpu_cores']['prometheus']:.2f} / "
            f"{level['no_consistency_check']['saturated']['cpu_cores']['prometheus']:.2f}"
            for level in results["levels"]
        )
        + ".",
        "",
        f"Push errors: {'; '.join(errors) if errors else 'none'}.",
        "",
    ]
    return "\n".join(lines)


def _ms(phase: dict[str, Any]) -> str:
    latency = phase["latency_ms"]
    return f"{latency['p50']:.1f} / {latency['p99']:.1f}" if latency else "-"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    p.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between an environment's pushes (paced)",
    )
    p.add_argument(
        "--seconds", type=float, default=12.0, help="length of the paced and saturated phases"
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=8, help="per worker process")
    p.add_argument("--scrape-interval", default="5s")
    p.add_argument("--out", type=Path, default=RESULTS / "scale")
    p.add_argument(
        "--quick", action="store_true", help="100 and 500 groups, 3 s phases: a smoke run"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.levels, args.seconds = [100, 500], 3.0
        if args.out == RESULTS / "scale":
            args.out = Path(tempfile.mkdtemp(prefix="bench-scale-quick-")) / "scale"
    args.levels = sorted(args.levels)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    _log(f"wrote {args.out.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
