"""The export policy, proven under Lambda's freeze: nothing lost, fresh, and cheap.

The real function runs in localrt, which freezes idle environments (SIGSTOP) as Lambda does,
against a real Pushgateway (behind a FaultProxy that counts its PUTs) and the Collector.
The interval is short here (``INTERVAL_S``) so that the suite stays short; the mechanism is the
one every interval uses. The figures at the real defaults are in ``make bench``
(bench/results/policy.md).
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from lambda_observability.export.policy import GAP_WINDOW
from stack import Stack
from stack.faultproxy import FaultProxy
from tests.e2e.test_proof import TEMPLATE
from tests.localrt.harness import LocalRT, base_env, wait_until

pytestmark = pytest.mark.integration

INTERVAL_S = 2.0
ENVIRONMENTS = 4


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as running:
        yield running


@dataclass
class Run:
    rt: LocalRT
    stack: Stack
    gateway: FaultProxy
    done_at: list[float] = field(default_factory=list)  # monotonic time each call answered
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self) -> None:
        response = self.rt.get("/healthz")
        assert response.status_code == 200, response.text
        with self.lock:
            self.done_at.append(time.monotonic())

    def counted(self) -> float:
        return sum(
            float(g["healthz_calls_total"]["metrics"][0]["value"])
            for g in self.stack.pushgateway.groups()
            if g["labels"].get("job") == "healthz" and "healthz_calls_total" in g
        )


@pytest.fixture
def run(stack: Stack) -> Iterator[Run]:
    stack.reset()
    with FaultProxy(stack.pushgateway_url) as gateway:
        env = {
            **stack.env(),
            "PUSHGATEWAY_URL": gateway.url,
            "OBSERVABILITY_EXPORT_MODE": "async",
            "OBSERVABILITY_EXPORT_INTERVAL_SECONDS": str(INTERVAL_S),
        }
        rt = LocalRT("--concurrency", str(ENVIRONMENTS), template=TEMPLATE, env=base_env(**env))
        try:
            yield Run(rt, stack, gateway)
        finally:
            rt.stop()


def _steady(run: Run, seconds: float, per_second: float) -> None:
    """``per_second`` calls/s from ``ENVIRONMENTS`` closed-loop clients, for ``seconds``."""
    end = time.monotonic() + seconds
    period = ENVIRONMENTS / per_second

    def client() -> None:
        next_at = time.monotonic()
        while next_at < end:
            run.call()
            next_at += period
            time.sleep(max(next_at - time.monotonic(), 0))

    with ThreadPoolExecutor(ENVIRONMENTS) as pool:
        for future in [pool.submit(client) for _ in range(ENVIRONMENTS)]:
            future.result()


def _sparse(run: Run) -> None:
    for _ in range(5):
        run.call()
        # Each call of sparse traffic shows at once, not an interval later.
        assert wait_until(lambda: run.counted() == len(run.done_at), 1.0), run.counted()
        time.sleep(2.0)


def _bursts(run: Run) -> None:
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: run.call(), range(40)))
        time.sleep(3.0)


def _stop_and_check_totals(run: Run) -> None:
    calls = len(run.done_at)
    assert run.rt.stop() == 0
    # SIGTERM's final flush sent whatever the interval held back.
    assert run.counted() == calls
    spans = run.stack.spans()
    assert len({s["attributes"]["faas.invocation_id"] for s in spans}) == calls == len(spans)


SHAPES: dict[str, Callable[[Run], None]] = {
    "sparse": _sparse,
    "steady": lambda run: _steady(run, seconds=6.0, per_second=24.0),
    "bursts": _bursts,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_exact_totals_after_a_graceful_stop(run: Run, shape: str) -> None:
    SHAPES[shape](run)
    _stop_and_check_totals(run)


def test_steady_traffic_is_fresh_and_pushes_once_per_interval(run: Run) -> None:
    seen: list[tuple[float, float]] = []  # (monotonic time, total counted)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append((time.monotonic(), run.counted()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # A new environment exports after each of its first GAP_WINDOW calls: past those, it is
    # busy. Every environment must be past them before the measured window (on a loaded
    # machine one of them may have taken few of the warm-up's calls), within 10 s more.
    _steady(run, seconds=3.0, per_second=24.0)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and any(
        e["invocations"] < GAP_WINDOW for e in run.rt.stats()["environments"]
    ):
        _steady(run, seconds=1.0, per_second=24.0)
    assert all(e["invocations"] >= GAP_WINDOW for e in run.rt.stats()["environments"])
    puts_before, calls_before = run.gateway.stats()["requests"], len(run.done_at)
    started = time.monotonic()
    _steady(run, seconds=10.0, per_second=24.0)
    seconds = time.monotonic() - started
    calls = len(run.done_at) - calls_before
    assert calls / seconds >= 20
    puts = run.gateway.stats()["requests"] - puts_before
    stop.set()
    watcher.join()
    # Freshness while traffic flows: the k-th call answered is counted once the total first
    # reaches k. The last interval's calls wait for their environment's next call or its
    # SIGTERM flush (a frozen environment cannot export), so they are left out here and
    # checked by the graceful-stop totals.
    flowing = [t for t in sorted(run.done_at) if t <= started + seconds - INTERVAL_S - 1.0]
    lags = []
    for k, answered in enumerate(flowing, start=1):  # warm-up calls included
        shown = next((t for t, total in seen if total >= k and t >= answered), None)
        assert shown is not None, (k, len(flowing))
        lags.append(shown - answered)
    p99 = statistics.quantiles(lags, n=100)[98]
    print(f"steady: {calls} calls in {seconds:.1f} s, {puts} PUTs, freshness p99 {p99:.2f} s")
    assert p99 <= INTERVAL_S + 1.0
    # At most one PUT per busy environment per interval (plus one where an interval began
    # just before the measured window).
    environments = run.rt.stats()["summary"]["environments_started"]
    assert puts <= environments * (seconds / INTERVAL_S + 1), (puts, environments)
    assert puts < calls / 5  # and far fewer than one per call


def test_a_kill_loses_at_most_what_came_since_the_last_export(run: Run) -> None:
    seconds = 5.0
    _steady(run, seconds=seconds, per_second=24.0)
    victim = max(run.rt.stats()["environments"], key=lambda e: e["invocations"])
    os.kill(victim["pid"], signal.SIGKILL)  # frozen or not: SIGKILL needs no thaw
    assert wait_until(
        lambda: any(
            e["pid"] == victim["pid"] and e["state"] == "dead"
            for e in run.rt.stats()["environments"]
        ),
        10,
    )
    calls = len(run.done_at)
    assert run.rt.stop() == 0  # the survivors' final flush
    lost = calls - run.counted()
    # Only the victim's calls since its last export are lost: at most one interval of them.
    victim_calls = victim["invocations"]
    bound = victim_calls / seconds * (INTERVAL_S + 0.5)
    print(f"SIGKILL: lost {lost:.0f} of the victim's {victim_calls} calls (bound {bound:.0f})")
    assert 0 <= lost <= min(victim_calls, bound)
