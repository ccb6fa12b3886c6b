"""The layer on Lambda Managed Instances: workers that share one directory, one group, a leader,
and a timer that never exports on the request path (the e2e proof runs it on AWS's emulator:
tests/e2e/test_runtimes_proof.py)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from lambda_observability import environment, workers
from lambda_observability.export import Exporter
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.policy import ExportPolicy
from lambda_observability.export.timer import TimerFlush

LMI = {"AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances"}


def test_lmi_is_told_by_either_variable() -> None:
    assert environment.is_managed_instances(LMI)
    assert environment.is_managed_instances({"AWS_LAMBDA_MAX_CONCURRENCY": "4"})
    assert not environment.is_managed_instances({"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"})
    assert workers.shared_directory({}) is None


def _id_of(directory: str, out: multiprocessing.Queue[str]) -> None:
    out.put(workers.environment_id(Path(directory)))


def test_workers_agree_on_one_environment_id(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # as awslambdaric forks its workers
    out: multiprocessing.Queue[str] = context.Queue()
    processes = [context.Process(target=_id_of, args=(str(tmp_path), out)) for _ in range(6)]
    for process in processes:
        process.start()
    ids = {out.get(timeout=10) for _ in processes}
    for process in processes:
        process.join(10)
    assert len(ids) == 1 and len(ids.pop()) == 32


def _lead(directory: str, out: multiprocessing.Queue[bool], hold: float) -> None:
    out.put(workers.Leader(Path(directory)).held())
    time.sleep(hold)


def test_one_leader_at_a_time_and_another_once_it_is_gone(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[bool] = context.Queue()
    first = context.Process(target=_lead, args=(str(tmp_path), out, 1.0))
    first.start()
    assert out.get(timeout=10) is True
    assert workers.Leader(tmp_path).held() is False  # held by the first worker
    first.join(10)
    assert workers.Leader(tmp_path).held() is True  # released when it ended


class SlowExporter(Exporter):
    def __init__(self) -> None:
        super().__init__([], FailureReporter())
        self.exported = threading.Event()

    def export(self, deadline: float, final: bool = False) -> None:
        time.sleep(0.3)  # a backend 300 ms away
        self.exported.set()


def test_the_timer_exports_in_the_background_never_on_the_request_path() -> None:
    exporter = SlowExporter()
    flush = TimerFlush(exporter, ExportPolicy(0, 1.0))
    assert flush.start(None, FailureReporter()) == "no Extensions API"
    started = time.perf_counter()
    flush.after_invocation("req-1", 3.0)
    assert time.perf_counter() - started < 0.05  # the call returned; the export did not run
    assert exporter.exported.wait(5)


def test_a_busy_worker_exports_once_per_interval() -> None:
    exporter = SlowExporter()
    policy = ExportPolicy(0.5, 10.0)
    flush = TimerFlush(exporter, policy)
    flush.start(None, FailureReporter())
    for _ in range(12):  # a new environment's first calls export at once
        policy.started()
        flush.after_invocation("warm-up", 3.0)
    time.sleep(1.0)
    before = flush.exports
    end = time.monotonic() + 1.6
    while time.monotonic() < end:  # busy: calls every 10 ms for 1.6 s
        policy.started()
        flush.after_invocation("busy", 3.0)
        time.sleep(0.01)
    assert 1 <= flush.exports - before <= 4  # about one per 0.5 s interval (+ 0.3 s export)
