"""The readiness document and the failure kinds it reports, from real failures on loopback.

Each failure is produced by the layer's own clients against a real socket (refused, silent,
answering 503, answering garbage) or an unresolvable name; what the document may say about it
is its kind only, never a host, port, URL, header or credential.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest

from lambda_observability import export, readiness
from lambda_observability.config import gateways
from lambda_observability.errors import TelemetryError, failure_kind
from lambda_observability.export.failures import FailureReporter
from lambda_observability.export.pushgateway import push_handler
from lambda_observability.export.secrets import SecretError
from lambda_observability.instrument import instrumentation
from stack.net import free_port
from tests import planted
from tests.faults.campaign import unresolvable
from tests.loopback import answering, fixed


def _server(answer: bytes | None) -> contextlib.AbstractContextManager[int]:
    """A loopback server that reads a request, then answers ``answer`` (None: stays silent)."""
    return answering(fixed(answer) if answer is not None else lambda conn: time.sleep(2))


def _push_error(url: str) -> BaseException:
    handler = push_handler(None, time.monotonic() + 0.3)
    with pytest.raises(TelemetryError) as caught:
        handler(url, "PUT", 0.3, [("Content-Type", "text/plain")], b"x 1\n")()
    return caught.value


def test_refused_timeout_dns_http_status_and_malformed_are_told_apart() -> None:
    refused = _push_error(f"http://127.0.0.1:{free_port()}/metrics")
    dns = _push_error(f"http://{unresolvable('pushgateway')}:9091/metrics")
    with _server(None) as port:
        timeout = _push_error(f"http://127.0.0.1:{port}/metrics")
    with _server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n") as port:
        http_503 = _push_error(f"http://127.0.0.1:{port}/metrics")
    with _server(b"not http at all\r\n\r\n") as port:
        malformed = _push_error(f"http://127.0.0.1:{port}/metrics")
    assert failure_kind(refused) == "refused"
    assert failure_kind(dns) == "dns"
    assert failure_kind(timeout) == "timeout"
    assert failure_kind(http_503) == "http 503"
    assert failure_kind(malformed) == "malformed"
    assert failure_kind(SecretError("secret lookup failed recently", "timeout")) == "timeout"
    assert failure_kind("something odd") == "error"


def _document(reporter: FailureReporter) -> dict[str, Any]:
    return readiness.document(reporter)


def _configure(monkeypatch: pytest.MonkeyPatch, url: str, secret_arn: str | None) -> None:
    """This environment's exporter, as if the Pushgateway (and a secret) were configured."""
    state = instrumentation()
    settings = state.settings._replace(
        pushgateways=gateways(url), pushgateway_auth_secret_arn=secret_arn
    )
    monkeypatch.setattr(export, "_current", export.exporter_for(settings, state.tracing))


def test_the_document_passes_warns_and_passes_again(monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(monkeypatch, "http://user:pw@127.0.0.1:9/x", "arn:planted")
    reporter = FailureReporter()
    first = _document(reporter)
    assert first["status"] == "pass"
    assert first["checks"] == {
        "pushgateway:push": [{"status": "pass", "output": readiness.NOT_TRIED}],
        "secrets:credentials": [{"status": "pass", "output": readiness.NOT_TRIED}],
    }
    reporter.succeeded("secrets")
    reporter.failed("pushgateway", ConnectionRefusedError(111, "Connection refused"))
    during = _document(reporter)
    assert during["status"] == "warn"
    (push,) = during["checks"]["pushgateway:push"]
    assert push["status"] == "warn" and push["output"] == "refused"
    assert "observedValue" not in push  # never succeeded in this environment
    (secret,) = during["checks"]["secrets:credentials"]
    assert secret["status"] == "pass" and secret["observedUnit"] == "s"
    time.sleep(0.05)
    reporter.succeeded("pushgateway")
    after = _document(reporter)
    assert after["status"] == "pass"
    (push,) = after["checks"]["pushgateway:push"]
    assert push["status"] == "pass" and 0 <= push["observedValue"] < 1
    assert "output" not in push


def test_output_never_holds_a_url_host_or_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    secret_url = f"http://{planted.PUSHGATEWAY_USER}:{planted.PUSHGATEWAY_PASSWORD}@127.0.0.1:9"
    _configure(monkeypatch, secret_url, None)
    reporter = FailureReporter()
    # Errors whose text names the URL, the host and the credentials.
    reporter.failed("pushgateway", OSError(f"error talking to {secret_url}: 401 Unauthorized"))
    text = json.dumps(_document(reporter))
    assert "127.0.0.1" not in text and "http://" not in text and "401" not in text
    assert planted.leaks([text]) == []
