"""DNS failure of an unresolvable host (campaign.unresolvable), which no push can report.

The campaign (test_telemetry_faults.py) shows the function answering and logging once; here the
layer's own exporter runs against the same unresolvable hosts and the counter is read directly.
"""

from __future__ import annotations

import time

import pytest

from lambda_observability import metrics
from lambda_observability.config import Settings, gateways
from lambda_observability.export import Exporter, exporter_for
from lambda_observability.export.failures import FailureReporter
from lambda_observability.tracing import Tracing, build_resource
from tests.faults.campaign import BACKEND_TIMEOUT_S, DNS_HOSTS, OVERHEAD_S


def _failures(backend: str) -> float:
    return metrics.value("telemetry_export_failures_total", {"backend": backend}) or 0.0


def _exporter(**settings: str) -> Exporter:
    config = Settings(
        service_name="healthz",
        pushgateways=gateways(settings.get("url")),
        pushgateway_job="faults_dns",
        pushgateway_timeout=0.5,
        pushgateway_auth_secret_arn=settings.get("arn"),
        export_mode="sync",
    )
    tracing = Tracing(build_resource("healthz", None), 8, install_global=False)
    exporter = exporter_for(config, tracing, FailureReporter())
    exporter.backends[0].use_exporter(None)  # type: ignore[attr-defined]
    return exporter


@pytest.mark.parametrize("exports", [1, 5])
def test_pushgateway_dns_failure_counted_per_export(exports: int) -> None:
    exporter = _exporter(url=DNS_HOSTS["pushgateway"])
    before = _failures("pushgateway")
    for _ in range(exports):
        started = time.monotonic()
        exporter.export(time.monotonic() + 2.5)
        assert time.monotonic() - started <= BACKEND_TIMEOUT_S["pushgateway"] + OVERHEAD_S
    assert _failures("pushgateway") - before == exports


def test_secrets_dns_failure_counted_and_no_push(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", DNS_HOSTS["secrets"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgw-dns-AbCdEf"
    exporter = _exporter(url="http://127.0.0.1:9", arn=arn)
    before_secrets, before_push = _failures("secrets"), _failures("pushgateway")
    for _ in range(3):
        exporter.export(time.monotonic() + 2.5)
    # The first lookup fails on DNS, the next two wait for the retry interval: all counted, and
    # no push is attempted without credentials.
    assert _failures("secrets") - before_secrets == 3
    assert _failures("pushgateway") == before_push
