"""The proof on four runtimes: localrt and AWS's own emulator, each classic and LMI.

For each runtime the real function (functions/healthz + the layer, awslambdaric on the venv's
Python) takes 120 calls, 4 at a time, each with its own W3C traceparent, while the OTLP backend
is 100 ms away (a fault proxy's delay) and the layer exports after every call
(OBSERVABILITY_EXPORT_INTERVAL_SECONDS=0); then the runtime is stopped gracefully (SIGTERM).

(a) exact totals: healthz_calls_total summed over every group of the job is the calls made;
(b) every span arrives, once, with the traceparent's span id as its parent;
(c) nothing waits for an export on the request path: warm calls stay below the 100 ms delay.
    The bound is on the function's own time, not on a queue: under localrt, localrt's client
    time minus its queue time (waiting for an environment that is still exporting); under the
    classic emulator, its INVOKE RTDONE duration (it holds the HTTP answer until the extension
    has finished, which real Lambda does not do: README, "How localrt behaves"); under the
    LMI emulator, the client's time of the attempt that was served ("no idle runtimes" refusals
    retried, client concurrency = workers). Cold calls (faas.coldstart) are left out.

The runtimes:
* localrt-classic: `python -m localrt start-api --concurrency 4` (4 on-demand environments);
* localrt-lmi: `--concurrency 1 --max-concurrency 4` (one environment, 4 awslambdaric workers);
* rie-classic: 4 aws-lambda-rie processes (each one environment), a call on a free one;
* rie-lmi: one aws-lambda-rie in LMI mode, AWS_LAMBDA_MAX_CONCURRENCY=4.
"""

from __future__ import annotations

import copy
import json
import queue
import re
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from stack import Stack
from stack.components import Pushgateway
from stack.rie import Rie
from tests.conftest import EVENTS, ROOT
from tests.localrt.harness import LocalRT, base_env, pid_alive, wait_until

pytestmark = pytest.mark.integration

CALLS = 120
CLIENTS = 4  # = environments (classic) = workers (LMI): no request ever queues for a runtime
DELAY_MS = 100
TEMPLATE = ROOT / "template.yaml"
CODE_DIR = ROOT / "functions" / "healthz"
LAYER_DIR = ROOT / "layers" / "observability" / "python"
RUNTIMES = ["localrt-classic", "rie-classic", "localrt-lmi", "rie-lmi"]
_RTDONE = re.compile(r"INVOKE RTDONE\(status: \w+, produced bytes: \d+, duration: ([\d.]+)ms\)")
_START = re.compile(r"INVOKE START\(requestId: ([0-9a-f-]+)\)")


@dataclass
class Call:
    trace_id: str
    parent_id: str
    status: int = 0
    client_ms: float = 0.0
    refusals: int = 0


@dataclass
class Run:
    name: str
    calls: list[Call] = field(default_factory=list)
    function_ms: dict[str, float] = field(default_factory=dict)  # by invocation id
    cold: set[str] = field(default_factory=set)  # invocation ids of cold starts
    notes: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The OTLP receiver behind a fault proxy that delays every export by 100 ms."""
    with Stack(delay_ms=DELAY_MS) as running:
        yield running


def function_env(
    stack: Stack, gateway: Pushgateway, job: str, interval: str = "0"
) -> dict[str, str]:
    return {
        "PUSHGATEWAY_URL": gateway.url,
        "PUSHGATEWAY_JOB": job,
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.otlp_http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "healthz",
        # "0": an export after every call; "600": everything held back until the SIGTERM flush
        "OBSERVABILITY_EXPORT_INTERVAL_SECONDS": interval,
    }


def traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def rest_event(header: str) -> dict[str, Any]:
    """events/rest-get-traceparent.json with a traceparent of its own."""
    event: dict[str, Any] = copy.deepcopy(BASE_EVENT)
    event["headers"]["traceparent"] = header
    event["multiValueHeaders"]["traceparent"] = [header]
    event["requestContext"]["requestId"] = secrets.token_hex(8)
    return event


BASE_EVENT: dict[str, Any] = json.loads((EVENTS / "rest-get-traceparent.json").read_text())


def drive(run: Run, call_once: Any) -> None:
    """CALLS calls, CLIENTS at a time, bounded in time."""
    deadline = time.monotonic() + 90

    def one(_i: int) -> Call:
        header, trace_id, parent_id = traceparent()
        call = Call(trace_id, parent_id)
        if time.monotonic() < deadline:
            call_once(call, header)
        return call

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        run.calls = list(pool.map(one, range(CALLS)))


def run_localrt(name: str, stack: Stack, gateway: Pushgateway, interval: str) -> Run:
    run = Run(name)
    args = ["--concurrency", str(CLIENTS)]
    if name == "localrt-lmi":
        args = ["--concurrency", "1", "--max-concurrency", str(CLIENTS)]
    env = base_env(**function_env(stack, gateway, f"healthz-{name}", interval))
    rt = LocalRT(*args, template=TEMPLATE, env=env)
    try:

        def call_once(call: Call, header: str) -> None:
            began = time.perf_counter()
            resp = rt.get("/healthz", headers={"traceparent": header})
            call.client_ms = (time.perf_counter() - began) * 1000
            call.status = resp.status_code

        drive(run, call_once)
        # An invocation's record is complete once its environment or worker is ready again,
        # a moment after the answer (classic: after the extension's export).
        wait_until(lambda: len(rt.stats()["invocations"]) >= CALLS, 10)
        stats = rt.stats()
        for rec in stats["invocations"]:
            if rec["client_ms"] is not None:
                run.function_ms[rec["request_id"]] = rec["client_ms"] - rec["queue_ms"]
            if rec["cold"]:
                run.cold.add(rec["request_id"])
        envs = stats["environments"]
        run.notes.append(
            f"{len(envs)} environment(s), workers "
            f"{[len(e['workers']) if e['workers'] is not None else 1 for e in envs]}, "
            f"extensions {[e['extensions'] for e in envs]}"
        )
    finally:
        code = rt.stop()
    assert code == 0, rt.text()[-3000:]
    assert wait_until(lambda: not any(pid_alive(p) for p in rt.seen_pids), 5)
    run.notes += [line for line in rt.text().splitlines() if "SIGKILL" in line]
    run.cold |= cold_invocations([raw for _, raw in rt.tagged()])
    return run


def run_rie(name: str, stack: Stack, gateway: Pushgateway, interval: str) -> Run:
    run = Run(name)
    env = function_env(stack, gateway, f"healthz-{name}", interval)
    if name == "rie-lmi":
        ries = [Rie(CODE_DIR, [LAYER_DIR], env=env, max_concurrency=CLIENTS)]
        slots = ries * CLIENTS  # one emulator, four workers
    else:
        ries = [Rie(CODE_DIR, [LAYER_DIR], env=env) for _ in range(CLIENTS)]
        slots = list(ries)  # four environments, one event each at a time
    free: queue.Queue[Rie] = queue.Queue()
    try:
        for rie in ries:
            rie.start()
        for slot in slots:
            free.put(slot)

        def call_once(call: Call, header: str) -> None:
            rie = free.get(timeout=30)
            try:
                result = rie.invoke(rest_event(header), timeout=30)
            finally:
                free.put(rie)
            call.status = json.loads(result.body).get("statusCode", result.status)
            call.client_ms = result.latency_ms
            call.refusals = result.refusals

        drive(run, call_once)
    finally:
        for rie in ries:
            rie.stop()
    for rie in ries:
        assert rie.exit_code == 0, rie.text()[-3000:]
        assert rie.outlived() == [], rie.outlived()
        if name == "rie-classic":
            run.function_ms.update(rtdone_durations(rie.lines))
        run.cold |= cold_invocations(rie.lines)
        run.notes += [f"stop {rie.stop_ms:.0f} ms"] if rie.stop_ms is not None else []
        run.notes += [line for line in rie.lines if "SIGKILL" in line or "registered" in line]
    refusals = sum(c.refusals for c in run.calls)
    run.notes.append(f"'no idle runtimes' refusals retried: {refusals}")
    return run


def cold_invocations(lines: list[str]) -> set[str]:
    """Invocation ids of each process's first event: its log line says cold_start, or counts
    its process's first call (healthz_calls_total 1: on LMI the layer does not call a worker's
    first event cold, its init being off the request path, but it is still its first)."""
    found: set[str] = set()
    for line in lines:
        start = line.find("{")
        if start < 0 or '"function_request_id"' not in line:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and (
            record.get("cold_start") is True or record.get("healthz_calls_total") == 1.0
        ):
            found.add(str(record.get("function_request_id")))
    return found


def rtdone_durations(lines: list[str]) -> dict[str, float]:
    """The classic emulator's INVOKE RTDONE duration (the runtime posted its response), by
    request id: one event at a time per emulator, so each RTDONE follows its START."""
    found: dict[str, float] = {}
    current: str | None = None
    for line in lines:
        if start := _START.search(line):
            current = start.group(1)
        elif (done := _RTDONE.search(line)) and current is not None:
            found[current] = float(done.group(1))
            current = None
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_lock = threading.Lock()


def proof_run(
    runtime: str, stack: Stack, gateway: Pushgateway, interval: str
) -> tuple[Run, list[dict[str, Any]], float, int, float]:
    """Drive the runtime, stop it; its calls, the spans of its calls, the job's total."""
    stack.reset()
    began = time.monotonic()
    if runtime.startswith("localrt"):
        run = run_localrt(runtime, stack, gateway, interval)
    else:
        run = run_rie(runtime, stack, gateway, interval)
    elapsed = time.monotonic() - began
    assert len(run.calls) == CALLS
    assert Counter(c.status for c in run.calls) == {200: CALLS}, Counter(
        c.status for c in run.calls
    )
    sent = {c.trace_id for c in run.calls}

    def ours() -> list[dict[str, Any]]:
        return [
            s for s in stack.spans() if s["trace_id"] in sent and s["kind"] == "SPAN_KIND_SERVER"
        ]

    wait_until(lambda: len(ours()) >= CALLS, 15)
    spans = ours()
    total, groups = gateway.job_total(f"healthz-{runtime}")
    return run, spans, total, groups, elapsed


def check_counts_and_spans(
    run: Run, spans: list[dict[str, Any]], total: float, report: Any
) -> None:
    sent = {c.trace_id: c for c in run.calls}
    # (a) exact totals, summed over every group of the job (one per environment or worker)
    assert total == CALLS, report
    # (b) every span, once, parented on the caller's span
    assert len(spans) == CALLS, report
    assert Counter(s["trace_id"] for s in spans) == Counter(list(sent)), report
    assert all(s["parent_span_id"] == sent[s["trace_id"]].parent_id for s in spans), report


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_held_back_telemetry_arrives_at_the_graceful_stop(
    runtime: str, stack: Stack, pushgateway: Pushgateway
) -> None:
    """The export policy holds counts and spans back (an interval of 600 s): what has not
    been exported when the runtime is stopped is delivered by the SIGTERM flush, on every
    runtime (on LMI within the 600 ms before SIGKILL, and only if SIGTERM is sent at all)."""
    run, spans, total, groups, elapsed = proof_run(runtime, stack, pushgateway, "600")
    report = {
        "runtime": runtime,
        "held_back": True,
        "counted": total,
        "groups": groups,
        "spans": len(spans),
        "seconds": round(elapsed, 1),
        "notes": run.notes,
    }
    with _lock:
        print("\nPROOF " + json.dumps(report))
    check_counts_and_spans(run, spans, total, report)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_counts_spans_and_latency_under_concurrency_then_graceful_stop(
    runtime: str, stack: Stack, pushgateway: Pushgateway
) -> None:
    run, spans, total, groups, elapsed = proof_run(runtime, stack, pushgateway, "0")
    sent = {c.trace_id: c for c in run.calls}

    warm: list[float] = []
    client_warm: list[float] = []
    by_trace = {s["trace_id"]: s for s in spans}
    for call in run.calls:
        span = by_trace.get(call.trace_id)
        if span is None:
            continue
        invocation = span["attributes"]["faas.invocation_id"]
        if span["attributes"].get("faas.coldstart") or invocation in run.cold:
            continue
        client_warm.append(call.client_ms)
        if runtime == "rie-lmi":
            warm.append(call.client_ms)
        elif invocation in run.function_ms:
            warm.append(run.function_ms[invocation])
    report = {
        "runtime": runtime,
        "calls": CALLS,
        "counted": total,
        "groups": groups,
        "spans": len(spans),
        "parents_kept": sum(
            1 for s in spans if s["parent_span_id"] == sent[s["trace_id"]].parent_id
        ),
        "cold": sum(1 for c in spans if c["attributes"]["faas.invocation_id"] in run.cold),
        "warm": len(warm),
        "warm_p50_ms": round(statistics.median(warm), 2) if warm else None,
        "warm_p99_ms": round(percentile(warm, 0.99), 2) if warm else None,
        "warm_max_ms": round(max(warm), 2) if warm else None,
        "client_warm_p50_ms": round(statistics.median(client_warm), 2) if client_warm else None,
        "client_warm_p99_ms": round(percentile(client_warm, 0.99), 2) if client_warm else None,
        "seconds": round(elapsed, 1),
        "notes": run.notes,
    }
    with _lock:
        print("\nPROOF " + json.dumps(report))

    check_counts_and_spans(run, spans, total, report)
    # (c) at least 100 warm calls measured (each process's first call left out), and they did
    # not wait for the 100 ms export: an export on the request path costs every call >= 100 ms;
    # a busy machine's scheduler may stall a few (5 in 100 allowed: seen up to 3 with a load
    # average of 7 on 2 CPUs, under the LMI emulator), and the median stays far below.
    assert len(warm) >= CALLS - 2 * CLIENTS, report
    slow = [ms for ms in warm if ms >= DELAY_MS]
    assert len(slow) <= 5 * len(warm) // 100, report
    assert statistics.median(warm) < DELAY_MS / 2, report
