"""Metrics reach a real Pushgateway, one group per execution environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambda_observability.errors import TelemetryError
from stack.components import Pushgateway
from stack.net import free_port
from tests.conftest import EVENTS, ROOT
from tests.integration.direct import run_environment

pytestmark = pytest.mark.integration


def _groups(pushgateway: Pushgateway, job: str = "healthz") -> dict[str, dict[str, Any]]:
    """instance label -> metric family name -> family, for one job."""
    out: dict[str, dict[str, Any]] = {}
    for group in pushgateway.groups():
        labels = group["labels"]
        if labels.get("job") == job:
            out[labels["instance"]] = {k: v for k, v in group.items() if k != "labels"}
    return out


def _value(family: dict[str, Any], **labels: str) -> float:
    for metric in family["metrics"]:
        if all(metric.get("labels", {}).get(k) == v for k, v in labels.items()):
            return float(metric.get("value", metric.get("count", "nan")))
    raise AssertionError(f"no sample with {labels} in {family}")


def test_each_environment_pushes_its_own_group(pushgateway: Pushgateway) -> None:
    env = {"PUSHGATEWAY_URL": pushgateway.url}
    first = run_environment(env, ["rest-get.json"] * 3)
    second = run_environment(env, ["rest-get.json"] * 4 + ["rest-post.json"])
    assert [r["statusCode"] for r in first.responses] == [200] * 3
    assert [r["statusCode"] for r in second.responses] == [200] * 4 + [405]

    groups = _groups(pushgateway)
    assert len(groups) == 2  # never overwriting each other
    calls = sorted(_value(g["healthz_calls_total"]) for g in groups.values())
    assert calls == [3.0, 4.0]
    for group in groups.values():
        assert _value(group["lambda_cold_starts_total"]) == 1.0
        assert float(group["push_time_seconds"]["metrics"][0]["value"]) > 0
        assert float(group["push_failure_time_seconds"]["metrics"][0]["value"]) == 0
    durations = [g["http_server_request_duration_seconds"] for g in groups.values()]
    assert sorted(
        _value(d, method="GET", route="/healthz", status_code="200") for d in durations
    ) == [3.0, 4.0]
    assert (
        sum(
            _value(d, method="POST", route="/healthz", status_code="405")
            for d in durations
            if any(m["labels"].get("method") == "POST" for m in d["metrics"])
        )
        == 1.0
    )


def test_no_created_series_reach_the_gateway(pushgateway: Pushgateway) -> None:
    # prometheus-client would push a `*_created` gauge per counter and histogram child.
    run_environment({"PUSHGATEWAY_URL": pushgateway.url}, ["rest-get.json", "rest-post.json"])
    (group,) = _groups(pushgateway).values()
    assert "healthz_calls_total" in group and "http_server_request_duration_seconds" in group
    assert [name for name in group if name.endswith("_created")] == []
    metrics_text = urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5).read()
    assert b"_created" not in metrics_text  # nor in what Prometheus scrapes


def test_instance_label_matches_the_span_resource(pushgateway: Pushgateway) -> None:
    run = run_environment(
        {"PUSHGATEWAY_URL": pushgateway.url, "OTEL_TRACES_EXPORTER": "console"}, ["rest-get.json"]
    )
    (span,) = [line for line in run.logs if "resource" in line]
    (instance,) = _groups(pushgateway)
    assert span["resource"]["attributes"]["service.instance.id"] == instance


def test_job_is_configurable(pushgateway: Pushgateway) -> None:
    run_environment(
        {"PUSHGATEWAY_URL": pushgateway.url, "PUSHGATEWAY_JOB": "other"}, ["rest-get.json"]
    )
    assert len(_groups(pushgateway, job="other")) == 1
    assert _groups(pushgateway) == {}


# One environment driven an event at a time (``direct.run_environment`` runs a fixed list), so
# that the test can take the Pushgateway down and bring it back between invocations.
_STEPWISE = """
import json, sys
from tests.unit.conftest import FakeLambdaContext
import app
for i, line in enumerate(sys.stdin):
    event = json.load(open(line.strip()))
    response = app.handler(event, FakeLambdaContext(aws_request_id=f"req-{i}"))
    print("RESPONSE " + json.dumps(response), file=sys.stderr, flush=True)
"""


class _Environment:
    """One execution environment in a fresh interpreter; sync export, so when ``invoke``
    returns, that invocation's push has been made (or has failed)."""

    def __init__(self, pushgateway_url: str, log: Path) -> None:
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.pathsep.join(
                [
                    str(ROOT / "layers/observability/python"),
                    str(ROOT / "functions/healthz"),
                    str(ROOT),
                ]
            ),
            "AWS_LAMBDA_FUNCTION_NAME": "healthz",
            "AWS_REGION": "eu-west-1",
            "OTEL_SERVICE_NAME": "healthz",
            "OTEL_TRACES_EXPORTER": "none",
            "OBSERVABILITY_EXPORT_INTERVAL_SECONDS": "0",  # every invocation exports
            "PUSHGATEWAY_URL": pushgateway_url,
        }
        self.log = log
        self._stdout = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _STEPWISE],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            text=True,
        )

    def invoke(self, event: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stderr is not None
        self.process.stdin.write(f"{EVENTS / event}\n")
        self.process.stdin.flush()
        for line in self.process.stderr:
            if line.startswith("RESPONSE "):
                response: dict[str, Any] = json.loads(line.removeprefix("RESPONSE "))
                return response
        raise AssertionError(f"the environment exited: {self.process.wait()}")

    def close(self) -> list[dict[str, Any]]:
        """End the environment; its log lines."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
        self._stdout.close()
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def test_pushgateway_down_then_back_catches_up(tmp_path: Path) -> None:
    # A Pushgateway of its own: this test stops it, and a restarted one starts empty, as a
    # real one without persistence does.
    with Pushgateway(tmp_path) as gateway:
        environment = _Environment(gateway.url, tmp_path / "environment.log")
        try:
            for _ in range(2):
                assert environment.invoke("rest-get.json")["statusCode"] == 200
            ((instance, group),) = _groups(gateway).items()
            assert _value(group["healthz_calls_total"]) == 2.0

            gateway.stop()  # down: connection refused on its port
            for _ in range(3):
                assert environment.invoke("rest-get.json")["statusCode"] == 200

            gateway.start()  # back, on the same port, with no groups
            assert _groups(gateway) == {}
            assert environment.invoke("rest-get.json")["statusCode"] == 200
            # The next push carries the whole count, the calls made while it was down included.
            after = _groups(gateway)
            assert list(after) == [instance]
            assert _value(after[instance]["healthz_calls_total"]) == 6.0
            failures = after[instance]["telemetry_export_failures_total"]
            assert _value(failures, backend="pushgateway") == 3.0
            assert _value(after[instance]["lambda_cold_starts_total"]) == 1.0
        finally:
            logs = environment.close()
    failed = [line for line in logs if line["message"] == "telemetry export failed"]
    assert len(failed) == 1  # rate limited: not one per failed push
    assert failed[0]["backend"] == "pushgateway"
    assert failed[0]["suppressed_since_last_warning"] == 0
    (recovered,) = [line for line in logs if line["message"] == "telemetry export recovered"]
    assert recovered["backend"] == "pushgateway"
    assert recovered["suppressed_since_last_warning"] == 2


# --- basic auth, with the credentials in Secrets Manager (moto's server, real AWS protocol)


@pytest.fixture(scope="module")
def secrets_manager() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    workdir: Path = tmp_path_factory.mktemp("auth-pushgateway")
    hashed = bcrypt.hashpw(b"push-pass-9f2", bcrypt.gensalt(rounds=4)).decode()
    config = workdir / "web.yml"
    config.write_text(f"basic_auth_users:\n  pusher: {hashed}\n")
    with Pushgateway(
        workdir, web_config_file=config, basic_auth=("pusher", "push-pass-9f2")
    ) as pushgateway:
        yield pushgateway


def _create_secret(endpoint: str, name: str, value: dict[str, str]) -> str:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return str(client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"])


def test_basic_auth_from_secrets_manager(auth_gateway: Pushgateway, secrets_manager: str) -> None:
    auth_gateway.wipe()
    arn = _create_secret(
        secrets_manager, "pgw-good", {"username": "pusher", "password": "push-pass-9f2"}
    )
    run = run_environment(
        {
            "PUSHGATEWAY_URL": auth_gateway.url,
            "PUSHGATEWAY_AUTH_SECRET_ARN": arn,
            # The first push imports boto3 inside the lookup's deadline: these tests check
            # auth, not timing, so a loaded machine must not turn it into a timeout.
            "PUSHGATEWAY_TIMEOUT_SECONDS": "5",
            **_aws_env(secrets_manager),
        },
        ["rest-get.json"] * 2,
    )
    assert [r["statusCode"] for r in run.responses] == [200, 200]
    assert not [line for line in run.logs if line["message"] == "telemetry export failed"]
    (group,) = _groups(auth_gateway).values()
    assert _value(group["healthz_calls_total"]) == 2.0
    assert "push-pass-9f2" not in run.stdout


def test_wrong_credentials_are_contained_and_not_logged(
    auth_gateway: Pushgateway, secrets_manager: str
) -> None:
    auth_gateway.wipe()
    arn = _create_secret(secrets_manager, "pgw-bad", {"username": "pusher", "password": "wr0ng-pw"})
    run = run_environment(
        {
            "PUSHGATEWAY_URL": auth_gateway.url,
            "PUSHGATEWAY_AUTH_SECRET_ARN": arn,
            # The first push imports boto3 inside the lookup's deadline: these tests check
            # auth, not timing, so a loaded machine must not turn it into a timeout.
            "PUSHGATEWAY_TIMEOUT_SECONDS": "5",
            **_aws_env(secrets_manager),
        },
        ["rest-get.json"] * 3,
    )
    assert [r["statusCode"] for r in run.responses] == [200] * 3
    (warning,) = [line for line in run.logs if line["message"] == "telemetry export failed"]
    assert warning["backend"] == "pushgateway"
    assert "401" in warning["error"]
    assert "wr0ng-pw" not in run.stdout
    assert _groups(auth_gateway) == {}


# --- the push client: one kept-alive connection, recovered when the server drops it


def test_pushes_reuse_one_connection_and_survive_a_dropped_one(pushgateway: Pushgateway) -> None:
    from lambda_observability.export.pushgateway import push
    from stack.faultproxy import FaultProxy

    with FaultProxy(pushgateway.url) as proxy:
        for _ in range(5):
            push(proxy.url, "keepalive", time.monotonic() + 2)
        assert proxy.stats()["connections"] == 1
        proxy.refuse()  # the server goes away, closing the kept-alive connection
        proxy.passthrough()
        push(proxy.url, "keepalive", time.monotonic() + 2)  # reconnects instead of failing
        assert proxy.stats()["connections"] == 2
        proxy.status(401)
        with pytest.raises(TelemetryError, match="401"):
            push(proxy.url, "keepalive", time.monotonic() + 2)
    assert len(_groups(pushgateway, job="keepalive")) == 1


def test_a_restart_that_drops_every_idle_connection_costs_no_push(
    pushgateway: Pushgateway,
) -> None:
    """Two kept-alive connections go stale at once: the retry must not take the second."""
    from concurrent.futures import ThreadPoolExecutor

    from lambda_observability.export import http_client
    from lambda_observability.export.pushgateway import push
    from stack.faultproxy import FaultProxy

    http_client.close_all()
    with FaultProxy(pushgateway.url) as proxy:
        proxy.delay(300)  # two pushes at once: two connections, both kept afterwards
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: push(proxy.url, "restart", time.monotonic() + 3), range(2)))
        assert proxy.stats()["connections"] == 2
        proxy.refuse()  # the gateway restarts: both idle connections are closed
        proxy.passthrough()
        push(proxy.url, "restart", time.monotonic() + 2)
        assert proxy.stats()["connections"] == 3
    http_client.close_all()


def test_a_span_export_failure_is_in_the_same_invocations_push(pushgateway: Pushgateway) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lambda_observability import metrics
    from lambda_observability.config import Settings, gateways
    from lambda_observability.export import exporter_for
    from lambda_observability.export.failures import FailureReporter
    from lambda_observability.instrument import instrumentation

    class SlowFailing(InMemorySpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            time.sleep(0.2)  # the concurrent push has long read the registry by now
            return SpanExportResult.FAILURE

    tracing = instrumentation().tracing
    with tracing.tracer.start_as_current_span("lost"):
        pass
    instrumentation().spans.use_exporter(SlowFailing())
    settings = Settings("healthz", gateways(pushgateway.url), "failcount", 1.0, None)
    try:
        exporter = exporter_for(settings, tracing, FailureReporter())
        exporter.backends[0].use_exporter(SlowFailing())  # type: ignore[attr-defined]
        exporter.export(time.monotonic() + 2.0)
    finally:
        instrumentation().spans.use_exporter(None)
        tracing.queue.drain()
    local = metrics.value("telemetry_export_failures_total", {"backend": "otlp"})
    (group,) = _groups(pushgateway, job="failcount").values()
    assert _value(group["telemetry_export_failures_total"], backend="otlp") == local
