"""Fault injection on the telemetry path: the real function under localrt, the real stack.

For each backend (Pushgateway, OTLP receiver over http/protobuf, Secrets Manager served by moto)
and each fault (connection refused, blackhole, slow beyond the timeout, HTTP 500, 401, 403,
malformed and truncated answers, DNS failure of an unresolvable host), in sync and async export
mode, every health request must answer 200 within its bound, the environment must survive
(same pid, no failed invocation), the failure must be logged once (not once per request) and
counted in telemetry_export_failures_total, and once the fault clears Prometheus must catch up
exactly, with no span lost unreported.

All scenarios run side by side in one module-scoped campaign (about a minute in all); the tests
then check what it recorded. Bounds: see tests/faults/campaign.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambda_observability.export.secrets import RETRY_AFTER_FAILURE_SECONDS
from stack import Stack
from stack.faultproxy import FaultProxy
from stack.net import free_port
from tests import planted
from tests.faults.campaign import (
    COLD_BOUND_S,
    DNS,
    DNS_HOSTS,
    FAULTS,
    Phase,
    Scenario,
    billed_bound,
    derived_template,
    iter_outputs,
    prometheus_value,
    pushgateway_value,
    record_catch_up,
    warm_bound,
)

pytestmark = pytest.mark.integration

MODES = ("sync", "async")
PROXIED_BACKENDS = ("pushgateway", "otlp")
REQUESTS_PER_FAULT = 3
DNS_REQUESTS = 5
DNS_QUEUE_SIZE = 2  # OTLP DNS scenarios: a tiny span queue, so that drops are seen and counted
SECRETS_FAULTS = ("refused", "blackhole", "slow", "trickle", "http-500", "http-403", "malformed")
SECRETS_ASYNC_FAULTS = ("blackhole", "trickle")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def _case(mode: str, backend: str, fault: str) -> str:
    return f"{mode}-{backend}-{fault}"


CASES: list[str] = [
    *(_case(m, b, f) for m in MODES for b in PROXIED_BACKENDS for f in FAULTS),
    *(_case(m, b, DNS) for m in MODES for b in PROXIED_BACKENDS),
    *(_case("sync", "secrets", f) for f in SECRETS_FAULTS),
    *(_case("async", "secrets", f) for f in SECRETS_ASYNC_FAULTS),
    _case("sync", "secrets", DNS),
]
SCENARIOS: list[str] = [
    *(f"{m}-proxied" for m in MODES),
    *(f"{m}-{b}-{DNS}" for m in MODES for b in PROXIED_BACKENDS),
    *(f"sync-secrets-{f}" for f in (*SECRETS_FAULTS, DNS)),
    *(f"async-secrets-{f}" for f in SECRETS_ASYNC_FAULTS),
]


@dataclass
class Campaign:
    scenarios: list[Scenario]
    cases: dict[str, tuple[Scenario, Phase]]
    spans: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# --- running the scenarios ---------------------------------------------------------------


def _run_proxied(stack: Stack, scenario: Scenario, proxies: dict[str, FaultProxy]) -> None:
    scenario.start()
    scenario.send("warm-up", 2)
    failures = dict.fromkeys(proxies, 0)
    for backend, proxy in proxies.items():
        for fault in FAULTS.values():
            phase = Phase(backend, fault.name)
            scenario.phases.append(phase)
            fault.apply(proxy)
            phase.requests = scenario.send(f"{backend}:{fault.name}", REQUESTS_PER_FAULT)
            proxy.passthrough()
            phase.recovery = scenario.send(f"{backend}:{fault.name}:recovery", 1)
            failures[backend] += REQUESTS_PER_FAULT
            phase.expected_calls = len(scenario.sent)
            phase.expected_failures = failures[backend]
            record_catch_up(stack, scenario, phase)


def _run_dns(stack: Stack, scenario: Scenario, backend: str) -> None:
    scenario.start()
    phase = Phase(backend, DNS)
    scenario.phases.append(phase)
    phase.requests = scenario.send(f"{backend}:{DNS}", DNS_REQUESTS)
    scenario.wait_idle()
    phase.expected_calls = phase.expected_failures = DNS_REQUESTS
    if backend == "otlp":  # the Pushgateway works: the counts are visible
        stack.wait_for_scrape(after=time.time())
        phase.pushgateway_calls = pushgateway_value(stack, scenario.job, "healthz_calls_total")
        phase.prometheus_calls = prometheus_value(stack, scenario.job, "healthz_calls_total")
        phase.prometheus_failures = prometheus_value(
            stack, scenario.job, "telemetry_export_failures_total", backend="otlp"
        )
        phase.extra["spans_dropped"] = prometheus_value(
            stack, scenario.job, "otel_spans_dropped_total"
        )


def _run_secrets(
    stack: Stack,
    scenario: Scenario,
    fault: str,
    proxy: FaultProxy | None,
    faulted: Callable[[], None],
) -> None:
    if proxy is not None:
        FAULTS[fault].apply(proxy)
    try:
        phase = Phase("secrets", fault)
        scenario.phases.append(phase)
        # Cold starts that import boto3 are CPU-heavy: a few at a time, or the function's 3 s
        # timeout is reached on a 2-CPU machine.
        with _COLD_STARTS:
            scenario.start()
            phase.requests = scenario.send(f"secrets:{fault}", 1)
        first_lookup_done = time.monotonic()
        phase.requests += scenario.send(f"secrets:{fault}", REQUESTS_PER_FAULT - 1)
    finally:
        faulted()
    if proxy is None:  # DNS: nothing clears it; no push ever happens (it waits for credentials)
        return
    proxy.passthrough()
    # A failed lookup is retried only RETRY_AFTER_FAILURE_SECONDS later: wait for that.
    time.sleep(max(first_lookup_done + RETRY_AFTER_FAILURE_SECONDS + 0.5 - time.monotonic(), 0))
    phase.recovery = scenario.send(f"secrets:{fault}:recovery", 1)
    phase.expected_calls = REQUESTS_PER_FAULT + 1
    phase.expected_failures = REQUESTS_PER_FAULT
    record_catch_up(stack, scenario, phase)


_COLD_STARTS = threading.Semaphore(3)


def _guarded(scenario: Scenario, run: Callable[[], None]) -> Scenario:
    started = time.monotonic()
    try:
        run()
    except BaseException as error:  # recorded; the tests report it
        scenario.error = f"{type(error).__name__}: {error}"
    finally:
        try:
            if scenario.rt is not None:
                scenario.finish()
        except BaseException as error:
            scenario.error = (scenario.error or "") + f" / finish: {error!r}"
            scenario.stop_quietly()
    scenario.seconds = time.monotonic() - started
    return scenario


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    started = time.monotonic()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    moto.start()
    moto_url = f"http://127.0.0.1:{moto._port}"
    proxies: list[FaultProxy] = []

    def proxy(target: str) -> FaultProxy:
        made = FaultProxy(target).start()
        proxies.append(made)
        return made

    try:
        with Stack() as stack:
            client = boto3.client(
                "secretsmanager",
                endpoint_url=moto_url,
                region_name="eu-west-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            template = derived_template(
                tmp_path_factory.mktemp("faults-template"), {"AWS_ENDPOINT_URL_SECRETS_MANAGER": ""}
            )
            secrets_runs: list[tuple[Scenario, Callable[[], None]]] = []
            secret_specs = [
                *(("sync", f) for f in SECRETS_FAULTS),
                *(("async", f) for f in SECRETS_ASYNC_FAULTS),
                ("sync", DNS),
            ]
            faulted = threading.Semaphore(0)
            for mode, fault in secret_specs:
                name = f"{mode}-secrets-{fault}"
                arn = client.create_secret(
                    Name=f"pgw-{name}", SecretString=json.dumps(planted.PUSHGATEWAY_SECRET)
                )["ARN"]
                sm_proxy = None if fault == DNS else proxy(moto_url)
                endpoint = DNS_HOSTS["secrets"] if sm_proxy is None else sm_proxy.url
                scenario = Scenario(
                    name,
                    mode,
                    {
                        **stack.env(),
                        **AWS_ENV,
                        "PUSHGATEWAY_AUTH_SECRET_ARN": str(arn),
                        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
                    },
                    template=template,
                )
                secrets_runs.append(
                    (
                        scenario,
                        partial(_run_secrets, stack, scenario, fault, sm_proxy, faulted.release),
                    )
                )
            other_runs: list[tuple[Scenario, Callable[[], None]]] = []
            for mode in MODES:
                pair = {
                    "pushgateway": proxy(stack.pushgateway_url),
                    "otlp": proxy(stack.otlp_http_endpoint),
                }
                scenario = Scenario(
                    f"{mode}-proxied",
                    mode,
                    {
                        **stack.env(),
                        "PUSHGATEWAY_URL": pair["pushgateway"].url,
                        "OTEL_EXPORTER_OTLP_ENDPOINT": pair["otlp"].url,
                    },
                )
                other_runs.append((scenario, partial(_run_proxied, stack, scenario, pair)))
                for backend in PROXIED_BACKENDS:
                    env = dict(stack.env())
                    if backend == "pushgateway":
                        env["PUSHGATEWAY_URL"] = DNS_HOSTS["pushgateway"]
                    else:
                        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = DNS_HOSTS["otlp"]
                        env["OTEL_BSP_MAX_QUEUE_SIZE"] = str(DNS_QUEUE_SIZE)
                    scenario = Scenario(f"{mode}-{backend}-dns", mode, env)
                    other_runs.append((scenario, partial(_run_dns, stack, scenario, backend)))
            runs = secrets_runs + other_runs
            with ThreadPoolExecutor(max_workers=len(runs)) as pool:
                futures = [pool.submit(_guarded, s, run) for s, run in secrets_runs]
                # The secrets scenarios then wait 30 s for the retry: start the rest once their
                # cold starts and fault phases are done, so that the CPU is not shared by all.
                for _ in secrets_runs:
                    faulted.acquire(timeout=120)
                futures += [pool.submit(_guarded, s, run) for s, run in other_runs]
                scenarios = [f.result() for f in futures]
            result = Campaign(scenarios, _index(scenarios))
            result.spans = stack.spans()
            result.groups = stack.pushgateway.groups()
            result.seconds = time.monotonic() - started
            print(render_table(result))  # the report, shown with -s
            yield result
    finally:
        for made in proxies:
            made.stop()
        moto.stop()


def _index(scenarios: list[Scenario]) -> dict[str, tuple[Scenario, Phase]]:
    out = {}
    for scenario in scenarios:
        for phase in scenario.phases:
            out[_case(scenario.mode, phase.backend, phase.fault)] = (scenario, phase)
    return out


def render_table(result: Campaign) -> str:
    rows = [
        f"fault campaign: {len(result.scenarios)} scenarios in {result.seconds:.1f} s: "
        + ", ".join(f"{s.name} {s.seconds:.0f} s" for s in result.scenarios),
        "| case | statuses | max warm client ms (bound) | cold ms | warnings | suppressed "
        "| failures counted | calls after recovery |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        if case not in result.cases:
            rows.append(f"| {case} | NOT RUN | | | | | | |")
            continue
        scenario, phase = result.cases[case]
        warm = [s.elapsed_s for s in phase.requests if not s.invocation.get("cold")]
        cold = [s.elapsed_s for s in phase.requests if s.invocation.get("cold")]
        bound = warm_bound(scenario.mode, phase.backend)
        statuses = Counter(s.status for s in phase.requests + phase.recovery)
        suppressed = [r.get("suppressed_since_last_warning") for r in phase.recovered]
        rows.append(
            f"| {case} | {dict(statuses)} | {max(warm, default=0) * 1000:.0f} ({bound * 1000:.0f})"
            f" | {max(cold, default=0) * 1000:.0f} | {len(phase.warnings)} | {suppressed}"
            f" | {phase.prometheus_failures}/{phase.expected_failures}"
            f" | {phase.prometheus_calls}/{phase.expected_calls} |"
        )
    return "\n".join(rows)


# --- the checks --------------------------------------------------------------------------


def _get(campaign: Campaign, case: str) -> tuple[Scenario, Phase]:
    errors = {s.name: s.error for s in campaign.scenarios if s.error}
    assert case in campaign.cases, f"{case} was not run: {errors}"
    return campaign.cases[case]


@pytest.mark.parametrize("case", CASES)
def test_health_answers_200_within_bound(campaign: Campaign, case: str) -> None:
    scenario, phase = _get(campaign, case)
    assert scenario.error is None, scenario.error
    sent = phase.requests + phase.recovery
    assert len(sent) >= REQUESTS_PER_FAULT
    for request in sent:
        assert request.status == 200, request.body
        assert json.loads(request.body)["status"] == "pass"
        if request.invocation["cold"]:
            assert request.elapsed_s <= COLD_BOUND_S, request
            continue
        # The function's own time: the client's, less the time localrt kept the request
        # queued for a busy environment (Lambda would have used another one).
        function_s = request.elapsed_s - request.invocation["queue_ms"] / 1000
        assert function_s <= warm_bound(scenario.mode, phase.backend), request
        if scenario.mode == "async":
            # The client did not wait; the environment exported after the response, bounded.
            billed_s = request.invocation["billed_ms"] / 1000
            client_s = (request.invocation["client_ms"] - request.invocation["queue_ms"]) / 1000
            assert client_s <= warm_bound("async", phase.backend)
            assert billed_s <= billed_bound(phase.backend), request.invocation


@pytest.mark.parametrize("case", CASES)
def test_failure_logged_once_and_counted(campaign: Campaign, case: str) -> None:
    scenario, phase = _get(campaign, case)
    assert scenario.error is None, scenario.error
    # Logged: one warning for this backend over the whole fault, not one per request.
    (warning,) = [w for w in phase.warnings if w["backend"] == phase.backend]
    assert warning["level"] == "WARNING"
    assert warning["error"]
    if phase.backend == "secrets":
        # The secret's reader names the lookup (and the error's type), never the secret's text.
        assert warning["error"].startswith("SecretError: cannot read secret"), warning
    elif phase.backend == "otlp":
        # The exporter's reason (from its silenced log line), and what became of the spans.
        assert warning["error"].startswith("SpanExportError: "), warning
        assert warning["error"].endswith("; spans kept for the next export"), warning
        assert len(warning["error"]) > len("SpanExportError: ; spans kept for the next export")
    elif phase.fault == DNS:
        assert "Name or service not known" in warning["error"], warning
    # Only the broken backend failed.
    assert {w["backend"] for w in phase.warnings} == {phase.backend}
    if phase.recovery:
        # Rate limited, yet every failure after the first was counted, and the recovery said so.
        (recovered,) = [r for r in phase.recovered if r["backend"] == phase.backend]
        assert recovered["suppressed_since_last_warning"] == len(phase.requests) - 1
        assert phase.pushgateway_failures == phase.expected_failures
    if phase.prometheus_failures is not None or phase.recovery:
        assert phase.prometheus_failures == phase.expected_failures
    else:
        # No push can succeed (the Pushgateway or its credentials are unreachable for good):
        # tests/faults/test_dns_counting.py checks the counter in process.
        assert phase.fault == DNS and phase.backend in ("pushgateway", "secrets")
        assert not [g for g in campaign.groups if g["labels"].get("job") == scenario.job]


@pytest.mark.parametrize("case", [c for c in CASES if not c.endswith(f"-{DNS}")])
def test_prometheus_catches_up_exactly_after_the_fault(campaign: Campaign, case: str) -> None:
    scenario, phase = _get(campaign, case)
    assert scenario.error is None, scenario.error
    assert phase.recovery and all(r.status == 200 for r in phase.recovery)
    # Counters are cumulative: the first push after the fault carries every call made during it.
    assert phase.pushgateway_calls == phase.expected_calls
    assert phase.prometheus_calls == phase.expected_calls


@pytest.mark.parametrize("mode", MODES)
def test_otlp_dns_span_loss_is_bounded_and_counted(campaign: Campaign, mode: str) -> None:
    scenario, phase = campaign.cases[_case(mode, "otlp", DNS)]
    assert scenario.error is None, scenario.error
    assert phase.prometheus_calls == DNS_REQUESTS
    # The queue keeps OTEL_BSP_MAX_QUEUE_SIZE spans for later; every other one is counted.
    assert phase.extra["spans_dropped"] == DNS_REQUESTS - DNS_QUEUE_SIZE
    assert spans_of_campaign(campaign, scenario) == []


def spans_of_campaign(campaign: Campaign, scenario: Scenario) -> list[dict[str, Any]]:
    return [
        s
        for s in campaign.spans
        if s.get("resource_attributes", {}).get("fault.scenario") == scenario.name
    ]


@pytest.mark.parametrize("mode", MODES)
def test_no_span_lost_after_otlp_faults(campaign: Campaign, mode: str) -> None:
    """Spans of failed exports are requeued and delivered once the receiver is back."""
    scenario = next(s for s in campaign.scenarios if s.name == f"{mode}-proxied")
    assert scenario.error is None, scenario.error
    spans = spans_of_campaign(campaign, scenario)
    delivered = Counter(s["attributes"]["faas.invocation_id"] for s in spans)
    assert set(delivered) == {s.request_id for s in scenario.sent}
    # At-least-once: only a "slow" or "trickle" receiver, which stored the batch and answered
    # too late, gets spans twice; no queue overflow happened.
    late = [p for p in scenario.phases if p.backend == "otlp" and p.fault in ("slow", "trickle")]
    assert len(late) == 2
    resent = {r.request_id for p in late for r in p.requests}
    assert {i for i, n in delivered.items() if n > 1} <= resent
    dropped = [
        g["otel_spans_dropped_total"]["metrics"][0]["value"]
        for g in campaign.groups
        if g["labels"].get("job") == scenario.job
    ]
    assert [float(d) for d in dropped] == [0.0]


@pytest.mark.parametrize("name", SCENARIOS)
def test_environment_never_recycled(campaign: Campaign, name: str) -> None:
    for scenario in campaign.scenarios:
        if scenario.name != name:
            continue
        assert scenario.error is None, f"{scenario.name}: {scenario.error}"
        summary = scenario.stats["summary"]
        # One environment served every request: same pid, no failure, no replacement.
        assert summary["environments_started"] == 1, scenario.name
        assert summary["environments_alive"] == 1, scenario.name
        assert summary["failures"] == 0, scenario.name
        assert summary["invocations"] == len(scenario.sent), scenario.name
        assert {s.invocation["env"] for s in scenario.sent} == {"env-1"}
        assert scenario.exit_code == 0, scenario.name
        # No exception escaped into the runtime, the extension thread never died.
        for line in scenario.json_lines():
            assert line["message"] not in ("handler raised", "unhandled error"), line
            assert line["message"] != "telemetry extension stopped", line
        assert "Traceback" not in "\n".join(scenario.env_lines), scenario.name
        assert scenario.stats["environments"][0]["exit_code"] in (0, None)


def test_every_line_an_environment_prints_is_one_json_object(campaign: Campaign) -> None:
    lines = [line for scenario in campaign.scenarios for line in scenario.env_lines]
    assert len(lines) > 100
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_no_planted_secret_in_any_output(campaign: Campaign) -> None:
    """Headers, query tokens and Pushgateway credentials never show in any output."""
    captured: list[Any] = [*iter_outputs(campaign.scenarios), campaign.spans, campaign.groups]
    assert sum(len(s.sent) for s in campaign.scenarios) > 100
    assert campaign.spans and campaign.groups  # the scan covers real output
    assert planted.leaks(captured) == []


def test_campaign_is_reasonably_fast(campaign: Campaign) -> None:
    assert campaign.seconds < 120, campaign.seconds


def test_scenarios_all_ran(campaign: Campaign) -> None:
    assert [s.name for s in campaign.scenarios if s.error] == []
    assert sorted(campaign.cases) == sorted(CASES)
