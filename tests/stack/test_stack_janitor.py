"""The Pushgateway janitor against a real Pushgateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from moto import mock_aws
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.exposition import basic_auth_handler, default_handler

from lambda_observability.errors import TelemetryError
from stack import Pushgateway

REPO = Path(__file__).resolve().parents[2]
JANITOR_PATH = REPO / "functions" / "pushgateway_janitor" / "app.py"

# bcrypt("janitor-test-password", cost 5), precomputed: no bcrypt module is needed here.
USER, PASSWORD = "janitor", "janitor-test-password"
PASSWORD_BCRYPT = "$2b$05$2jMTsF6bdGSSKIFkbGoC/OGfEVbZwsYwWbx0NIyhkDM5LXwqQr8je"


def push(pg_url: str, job: str, instance: str, auth: tuple[str, str] | None = None) -> None:
    registry = CollectorRegistry()
    Counter("healthz_calls", "calls", registry=registry).inc()

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        if auth is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, *auth)

    push_to_gateway(
        pg_url,
        job=job,
        registry=registry,
        grouping_key={"instance": instance},
        timeout=5,
        handler=handler,
    )


def push_times(pg: Pushgateway) -> dict[tuple[str, str], float]:
    out = {}
    for g in pg.groups():
        labels = g["labels"]
        out[(labels["job"], labels.get("instance", ""))] = float(
            g["push_time_seconds"]["metrics"][0]["value"]
        )
    return out


def instances(pg: Pushgateway, job: str) -> set[str]:
    return {g["labels"].get("instance", "") for g in pg.groups() if g["labels"]["job"] == job}


def test_deletes_only_idle_groups_of_its_job(pushgateway: Pushgateway, janitor: ModuleType) -> None:
    url = pushgateway.url
    push(url, "healthz", "old-env")
    push(url, "healthz", "slash/env")  # needs the instance@base64 form to delete
    push(url, "other", "old-other")
    time.sleep(0.3)
    push(url, "healthz", "fresh-env")
    times = push_times(pushgateway)
    # Clock injection: "now" is 0.1 s after the fresh push, TTL 0.2 s, so the groups
    # pushed 0.3 s earlier are idle and the fresh one is in use.
    now = times[("healthz", "fresh-env")] + 0.1

    result = janitor.sweep(url, job="healthz", ttl_seconds=0.2, now=now)

    deleted = {e["labels"]["instance"] for e in result.deleted}
    kept = {e["labels"]["instance"] for e in result.kept}
    assert deleted == {"old-env", "slash/env"}
    assert kept == {"fresh-env"}
    assert result.errors == []
    assert instances(pushgateway, "healthz") == {"fresh-env"}
    assert instances(pushgateway, "other") == {"old-other"}  # other jobs untouched
    assert all(e["age_seconds"] > 0.2 for e in result.deleted)


def test_sweeps_every_gateway_of_a_list(
    pushgateways: tuple[Pushgateway, Pushgateway],
    janitor: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = pushgateways
    push(first.url, "healthz", "old-1")
    push(second.url, "healthz", "old-2")
    push(second.url, "other", "old-other")
    time.sleep(0.05)
    monkeypatch.setenv("PUSHGATEWAY_URL", f"{first.url}, {second.url}")
    monkeypatch.setenv("PUSHGATEWAY_GROUP_TTL_SECONDS", "0.01")
    monkeypatch.delenv("PUSHGATEWAY_JOB", raising=False)
    monkeypatch.delenv("PUSHGATEWAY_AUTH_SECRET_ARN", raising=False)

    out = janitor.handler({}, None)

    deleted = {(e["gateway"], e["labels"]["instance"]) for e in out["deleted"]}
    assert deleted == {(first.url, "old-1"), (second.url, "old-2")}
    assert instances(first, "healthz") == instances(second, "healthz") == set()
    assert instances(second, "other") == {"old-other"}


def test_an_unreachable_gateway_does_not_spare_the_others(
    pushgateway: Pushgateway, janitor: ModuleType
) -> None:
    push(pushgateway.url, "healthz", "old")
    time.sleep(0.05)
    down = "http://127.0.0.1:1"
    result = janitor.sweep_all([down, pushgateway.url], ttl_seconds=0.01)
    assert [e["labels"]["instance"] for e in result.deleted] == ["old"]
    assert [e["gateway"] for e in result.errors] == [down]
    assert instances(pushgateway, "healthz") == set()
    proc = _cli("--url", f"{down},{pushgateway.url}", "--ttl-seconds", "0.01")
    assert proc.returncode == 1  # the unreachable gateway shows as a failed run
    assert f"error: {down}:" in proc.stderr


def test_dry_run_deletes_nothing(pushgateway: Pushgateway, janitor: ModuleType) -> None:
    push(pushgateway.url, "healthz", "a")
    result = janitor.sweep(pushgateway.url, ttl_seconds=60, now=time.time() + 3600, dry_run=True)
    assert [e["labels"]["instance"] for e in result.deleted] == ["a"]
    assert instances(pushgateway, "healthz") == {"a"}


def test_failed_push_counts_as_activity(pushgateway: Pushgateway, janitor: ModuleType) -> None:
    push(pushgateway.url, "healthz", "a")
    push(pushgateway.url, "healthz", "b")
    before = push_times(pushgateway)[("healthz", "a")]
    time.sleep(0.3)
    # A push the gateway rejects (a counter turned gauge, inconsistent with group b)
    # updates only push_failure_time_seconds: the environment is still alive.
    registry = CollectorRegistry()
    Gauge("healthz_calls_total", "calls", registry=registry).set(1)
    with pytest.raises(urllib.error.HTTPError):
        pushadd_to_gateway(
            pushgateway.url,
            job="healthz",
            registry=registry,
            grouping_key={"instance": "a"},
            timeout=5,
        )
    group = next(g for g in janitor.list_groups(pushgateway.url) if g.labels["instance"] == "a")
    assert group.last_push > before + 0.2
    result = janitor.sweep(pushgateway.url, ttl_seconds=0.2, now=before + 0.35)
    assert [e["labels"]["instance"] for e in result.kept] == ["a"]
    assert [e["labels"]["instance"] for e in result.deleted] == ["b"]


def test_handler_reads_env(
    pushgateway: Pushgateway, janitor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(pushgateway.url, "svc", "a")
    push(pushgateway.url, "healthz", "b")
    monkeypatch.setenv("PUSHGATEWAY_URL", pushgateway.url)
    monkeypatch.setenv("PUSHGATEWAY_JOB", "svc")
    monkeypatch.setenv("PUSHGATEWAY_GROUP_TTL_SECONDS", "3600")
    monkeypatch.delenv("PUSHGATEWAY_AUTH_SECRET_ARN", raising=False)

    out = janitor.handler({"source": "aws.events"}, None)
    assert out["job"] == "svc" and out["ttl_seconds"] == 3600
    assert [e["labels"]["instance"] for e in out["kept"]] == ["a"]
    assert out["deleted"] == []
    json.dumps(out)  # the Lambda result must serialise

    time.sleep(0.05)
    monkeypatch.setenv("PUSHGATEWAY_GROUP_TTL_SECONDS", "0.01")
    out = janitor.handler({}, None)
    assert [e["labels"]["instance"] for e in out["deleted"]] == ["a"]
    assert instances(pushgateway, "svc") == set()
    assert instances(pushgateway, "healthz") == {"b"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PUSHGATEWAY_URL is not set"),
        (
            {"PUSHGATEWAY_URL": "http://127.0.0.1:1", "PUSHGATEWAY_GROUP_TTL_SECONDS": "soon"},
            "not a number",
        ),
    ],
)
def test_config_errors(janitor: ModuleType, env: dict[str, str], message: str) -> None:
    with pytest.raises(janitor.JanitorError, match=message):
        janitor.config_from_env(env)


def test_config_defaults(janitor: ModuleType) -> None:
    config = janitor.config_from_env({"PUSHGATEWAY_URL": "127.0.0.1:9091"})
    assert (config.job, config.ttl_seconds, config.auth_secret_arn) == ("healthz", 3600.0, None)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # As on Lambda, where the layer is /opt/python, the layer's package is on the path.
    env = {**os.environ, "PYTHONPATH": str(REPO / "layers/observability/python")}
    return subprocess.run(
        [sys.executable, str(JANITOR_PATH), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_cli(pushgateway: Pushgateway) -> None:
    push(pushgateway.url, "healthz", "a")
    push(pushgateway.url, "other", "b")
    time.sleep(0.05)
    proc = _cli("--url", pushgateway.url, "--ttl-seconds", "0.01")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [e["labels"]["instance"] for e in out["deleted"]] == ["a"]
    assert instances(pushgateway, "other") == {"b"}


def test_unreachable_gateway_fails_cli() -> None:
    proc = _cli("--url", "http://127.0.0.1:1")
    assert proc.returncode == 1
    assert "error:" in proc.stderr


# -- basic auth through a Secrets Manager secret


@pytest.fixture(scope="module")
def auth_pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    workdir = tmp_path_factory.mktemp("pushgateway-auth")
    web_config = workdir / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  {USER}: '{PASSWORD_BCRYPT}'\n")
    with Pushgateway(workdir, web_config_file=web_config, basic_auth=(USER, PASSWORD)) as pg:
        yield pg


def test_auth_from_secrets_manager(
    auth_pushgateway: Pushgateway, janitor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = auth_pushgateway.url
    push(url, "healthz", "a", auth=(USER, PASSWORD))
    with pytest.raises(TelemetryError) as unauthorized:
        janitor.list_groups(url)  # the gateway really enforces auth
    assert unauthorized.value.kind == "http 401"

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="pushgateway-janitor-test",
            SecretString=json.dumps({"username": USER, "password": PASSWORD}),
        )["ARN"]
        monkeypatch.setenv("PUSHGATEWAY_URL", url)
        monkeypatch.setenv("PUSHGATEWAY_AUTH_SECRET_ARN", arn)
        monkeypatch.setenv("PUSHGATEWAY_GROUP_TTL_SECONDS", "0.01")
        time.sleep(0.05)
        out = janitor.handler({}, None)

    assert [e["labels"]["instance"] for e in out["deleted"]] == ["a"]
    assert [g for g in auth_pushgateway.groups() if g["labels"]["job"] == "healthz"] == []


def test_secret_without_credentials_is_rejected(
    janitor: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="pushgateway-janitor-bad",
            SecretString=json.dumps({"user": "x"}),
        )["ARN"]
        with pytest.raises(janitor.JanitorError, match="username and password"):
            janitor.load_auth(arn)
