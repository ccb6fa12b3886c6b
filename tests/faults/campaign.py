"""The fault campaign: the real function under localrt, each telemetry backend broken in turn.

A *scenario* is one `python -m localrt start-api` (one execution environment, concurrency 1)
with its own Pushgateway job, so that scenarios can run side by side against one shared stack.
A scenario sends health requests in *phases*: a fault is switched on at a `FaultProxy` in front
of one backend, requests are sent, then the fault clears and a recovery request follows.
Everything observed (client latencies, localrt's per-invocation timings, the environment's log
lines, Pushgateway and Prometheus values after each recovery) is recorded for the tests to
assert on, and for the secret scan.

Bounds come from the layer's defaults: a backend call is bounded by a hard deadline
(``PUSHGATEWAY_TIMEOUT_SECONDS`` 0.5 s, OTLP 0.5 s; the Secrets Manager lookup shares the push's
deadline), plus an allowance for the local runtime on a small CI machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambda_observability.config import DEFAULT_PUSH_TIMEOUT_SECONDS
from lambda_observability.export.otlp import DEFAULT_TIMEOUT_SECONDS as DEFAULT_OTLP_TIMEOUT_SECONDS
from stack import Stack
from stack.faultproxy import FaultProxy
from tests import planted
from tests.conftest import ROOT
from tests.localrt.harness import LocalRT, base_env, wait_until

TEMPLATE = ROOT / "template.yaml"

# --- bounds --------------------------------------------------------------------------------
# Time each backend may take, from the layer's defaults: a deadline for the whole call, not a
# per-read timeout (the "trickle" fault would defeat that). The secret lookup and the push
# share the push's deadline.
BACKEND_TIMEOUT_S = {
    "pushgateway": DEFAULT_PUSH_TIMEOUT_SECONDS,
    "otlp": DEFAULT_OTLP_TIMEOUT_SECONDS,
    "secrets": DEFAULT_PUSH_TIMEOUT_SECONDS,
}
# What localrt, the HTTP hops and a busy 2-CPU machine may add (a healthy warm request takes
# ~5 ms in async mode, ~40 ms in sync mode).
OVERHEAD_S = 0.35
# Async mode: the client must not wait for the export at all, so its bound is well below any
# backend timeout.
ASYNC_CLIENT_BOUND_S = 0.25
# A cold start (first request of an environment, imports included) is bounded by the
# function's own Timeout in template.yaml.
COLD_BOUND_S = 3.0


def warm_bound(mode: str, backend: str) -> float:
    """Client latency bound of a warm request while ``backend`` fails."""
    if mode == "async":
        return ASYNC_CLIENT_BOUND_S
    return BACKEND_TIMEOUT_S[backend] + OVERHEAD_S


def billed_bound(backend: str) -> float:
    """Async mode: the environment is busy exporting after the response, within the timeout."""
    return BACKEND_TIMEOUT_S[backend] + OVERHEAD_S


# --- faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str  # as in the report table
    apply: Callable[[FaultProxy], object]


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("refused", lambda p: p.refuse()),
        Fault("blackhole", lambda p: p.blackhole(hold_s=3.0)),
        Fault("slow", lambda p: p.slow(3000)),
        # The answer one byte every 200 ms: no socket read ever times out, only a deadline.
        Fault("trickle", lambda p: p.trickle(200)),
        Fault("http-500", lambda p: p.status(500)),
        Fault("http-401", lambda p: p.status(401)),
        Fault("http-403", lambda p: p.status(403)),
        Fault("malformed", lambda p: p.malformed("garbage")),
        Fault("truncated", lambda p: p.malformed("truncated")),
    )
}
DNS = "dns"  # not a proxy mode: the configured host name cannot be resolved


def unresolvable(service: str) -> str:
    """A host name that fails to resolve without a DNS query leaving the machine.

    A plain `.invalid` name is still sent to the configured resolver (seen with strace); a name
    longer than DNS's 253 characters is refused by the C library itself, with the same
    ``EAI_NONAME`` ("Name or service not known") a real lookup failure gives.
    """
    return ".".join([service[:20].ljust(60, "x")] * 5) + ".invalid"


DNS_HOSTS = {
    "pushgateway": f"http://{unresolvable('pushgateway')}:9091",
    "otlp": f"http://{unresolvable('otlp')}:4318",
    "secrets": f"http://{unresolvable('secretsmanager')}:4566",
}


# --- records ---------------------------------------------------------------------------------


@dataclass
class Sent:
    phase: str
    status: int
    elapsed_s: float
    body: str
    invocation: dict[str, Any] = field(default_factory=dict)  # localrt's record, filled at end

    @property
    def request_id(self) -> str:
        return str(self.invocation.get("request_id", ""))


@dataclass
class Phase:
    backend: str
    fault: str
    requests: list[Sent] = field(default_factory=list)
    recovery: list[Sent] = field(default_factory=list)
    # cumulative values expected and observed once the fault has cleared
    expected_calls: int = 0
    expected_failures: int = 0
    pushgateway_calls: float | None = None
    pushgateway_failures: float | None = None
    prometheus_calls: float | None = None
    prometheus_failures: float | None = None
    extra: dict[str, float | None] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    recovered: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scenario:
    name: str
    mode: str
    env: dict[str, str]
    template: Path = TEMPLATE
    phases: list[Phase] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    first_pid: int | None = None
    output: str = ""
    env_lines: list[str] = field(default_factory=list)
    exit_code: int | None = None
    error: str | None = None
    seconds: float = 0.0
    rt: LocalRT | None = None

    @property
    def job(self) -> str:
        return f"faults_{self.name.replace('-', '_')}"

    # -- running

    def start(self) -> None:
        env = {
            **self.env,
            "OBSERVABILITY_EXPORT_MODE": self.mode,
            "PUSHGATEWAY_JOB": self.job,
            "OTEL_RESOURCE_ATTRIBUTES": f"fault.scenario={self.name}",
        }
        self.rt = LocalRT("--concurrency", "1", template=self.template, env=base_env(**env))

    def wait_idle(self, timeout: float = 10.0) -> None:
        assert self.rt is not None
        assert wait_until(self.rt.idle, timeout, 0.01), f"{self.name}: environment never idle"

    def send(self, phase: str, count: int) -> list[Sent]:
        assert self.rt is not None
        out = []
        for _ in range(count):
            response = self.rt.get("/healthz", headers=planted.HEADERS, params=planted.QUERY)
            sent = Sent(
                phase, response.status_code, response.elapsed.total_seconds(), response.text
            )
            self.sent.append(sent)
            out.append(sent)
            # One request at a time, and its export (async: after the response) done before the
            # next request or fault switch: each export is attributed to its own phase.
            self.wait_idle()
        return out

    def finish(self) -> None:
        """Record localrt's view, stop it (SIGTERM: final flush) and keep its output."""
        assert self.rt is not None
        if self.sent:
            self.wait_idle()
        self.stats = self.rt.stats()
        invocations = self.stats["invocations"]
        for sent, record in zip(self.sent, invocations, strict=False):
            sent.invocation = record
        self.pids = [e["pid"] for e in self.stats["environments"]]
        self.exit_code = self.rt.stop()
        self.output = self.rt.text()
        self.env_lines = [raw for _, raw in self.rt.tagged()]
        self.rt = None
        self._attribute_logs()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.env_lines if line.startswith("{")]

    def _attribute_logs(self) -> None:
        """Give each phase the layer's warnings between its first request and its recovery.

        The environment's lines come in order; each invocation logs (the function's line, or
        the layer's "request completed" for a refused request) before its export, so a window
        starts at the first line of a request and ends at the next request's.
        """
        lines = self.json_lines()
        starts: dict[Any, int] = {}
        for i, line in enumerate(lines):
            starts.setdefault(line.get("function_request_id"), i)

        def window(first: Sent, last: Sent) -> list[dict[str, Any]]:
            begin = starts.get(first.request_id, len(lines))
            index = self.sent.index(last)
            nxt = self.sent[index + 1] if index + 1 < len(self.sent) else None
            end = starts.get(nxt.request_id, len(lines)) if nxt else len(lines)
            return lines[begin:end]

        for phase in self.phases:
            if phase.requests:
                faulty = window(phase.requests[0], phase.requests[-1])
                phase.warnings = [x for x in faulty if x["message"] == "telemetry export failed"]
            if phase.recovery:
                after = window(phase.recovery[0], phase.recovery[-1])
                phase.recovered = [x for x in after if x["message"] == "telemetry export recovered"]

    def stop_quietly(self) -> None:
        if self.rt is not None:
            try:
                self.rt.stop()
            finally:
                self.rt = None


# --- reading the stack -----------------------------------------------------------------------


def pushgateway_value(stack: Stack, job: str, metric: str, **labels: str) -> float | None:
    for group in stack.pushgateway.groups():
        # The Pushgateway API lists each family under its exposed name (counters: _total).
        if group["labels"].get("job") != job or metric not in group:
            continue
        for sample in group[metric]["metrics"]:
            if all(sample.get("labels", {}).get(k) == v for k, v in labels.items()):
                return float(sample["value"])
    return None


def prometheus_value(stack: Stack, job: str, metric: str, **labels: str) -> float | None:
    selector = ",".join([f'job="{job}"', *(f'{k}="{v}"' for k, v in labels.items())])
    return stack.query_value(f"sum({metric}{{{selector}}})")


def record_catch_up(stack: Stack, scenario: Scenario, phase: Phase) -> None:
    """After the recovery: the group's cumulative values, at the Pushgateway and in Prometheus."""
    scenario.wait_idle()  # async mode: the recovery export runs after the response
    labels = {"backend": phase.backend}
    phase.pushgateway_calls = pushgateway_value(stack, scenario.job, "healthz_calls_total")
    phase.pushgateway_failures = pushgateway_value(
        stack, scenario.job, "telemetry_export_failures_total", **labels
    )
    stack.wait_for_scrape(after=time.time())
    phase.prometheus_calls = prometheus_value(stack, scenario.job, "healthz_calls_total")
    phase.prometheus_failures = prometheus_value(
        stack, scenario.job, "telemetry_export_failures_total", **labels
    )


def spans_of(stack: Stack, scenario: Scenario) -> list[dict[str, Any]]:
    return [
        s
        for s in stack.spans()
        if s.get("resource_attributes", {}).get("fault.scenario") == scenario.name
    ]


def derived_template(directory: Path, extra_variables: dict[str, str]) -> Path:
    """template.yaml with more declared variables (localrt, like sam local, passes only those).

    ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` must reach the function to point it at moto; paths are
    made absolute so that the copy works from ``directory``.
    """
    text = TEMPLATE.read_text()
    anchors = {
        "DockerContext: .\n": f"DockerContext: {ROOT}\n",
        "ContentUri: layers/observability\n": f"ContentUri: {ROOT}/layers/observability\n",
    }
    mode_line = "          OBSERVABILITY_EXPORT_MODE: !Ref ExportMode\n"
    added = "".join(f'          {k}: "{v}"\n' for k, v in extra_variables.items())
    anchors[mode_line] = mode_line + added
    for old, new in anchors.items():
        assert text.count(old) == 1, f"template.yaml changed: {old!r} not found exactly once"
        text = text.replace(old, new)
    path = directory / "template.yaml"
    path.write_text(text)
    return path


def iter_outputs(scenarios: list[Scenario]) -> Iterator[str]:
    for scenario in scenarios:
        yield scenario.output
        for sent in scenario.sent:
            yield sent.body
