"""Nothing the first response does not need is imported before it (issue 10).

A fresh interpreter imports the function as the runtime does and answers one request; the
modules loaded by the time the response is ready (just before the export step) must not
include the export path, the secret's AWS SDK or a web framework. Each of these cost cold
start when it was imported early; bench/results/importtime.md accounts for what is left.
"""

from __future__ import annotations

import json

import pytest

from bench import fresh
from tests.conftest import ROOT
from tests.unit.test_extension_client import REGISTERED, Reply, ScriptedApi

# Imported only when telemetry leaves (after the response in async mode) or never.
NOT_BEFORE_THE_FIRST_RESPONSE = (
    "opentelemetry.exporter",  # OTLP encoders and protobuf
    "opentelemetry.proto",
    "google.protobuf",
    "grpc",
    "lambda_observability.export.otlp",
    "lambda_observability.export.http_client",  # the push and OTLP/HTTP client
    "boto3",  # Secrets Manager, for the Pushgateway's credentials
    "botocore.session",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.event_handler",  # routing is the layer's reading of the event
    "aws_lambda_powertools.utilities.data_classes",
    "asyncio",
    "requests",
    "urllib3",
    "opentelemetry.propagate",  # scans every installed package's entry points when imported
    "importlib.metadata",
    "prometheus_client.exposition",  # the push; prometheus_client's __init__ imports it
    "http.server",
    "wsgiref",
    "urllib.request",
    "http.client",  # the extension speaks HTTP/1.1 itself; http.client parses with email
    "email",
    "ssl",
    # Issue 21: the SDK span and the registry are made after the response (tracing.py,
    # metrics.py); Powertools' Metrics, Tracer and jmespath run on first use (lazy.py).
    "opentelemetry.sdk",
    "prometheus_client",
    # Nor the OpenTelemetry API itself: the invocation's span is plain data until something
    # imports the API (tracing.py, otel_api.py); typing_extensions and inspect came with it.
    "opentelemetry",
    "typing_extensions",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "jmespath",
)

_SCRIPT = """
import json, sys, time
import app
from bench.fresh import lambda_context
from lambda_observability.instrument import instrumentation

context = lambda_context()
flush = instrumentation().flush
assert flush.mode == "sync" or flush.asking.wait(5)  # init's end, as the runtime's /next waits

seen = []
# The export step comes after the response (async mode) or just before returning it (sync):
# what is loaded when it starts is what the response needed.
instrumentation().flush.after_invocation = lambda *args: seen.append(sorted(sys.modules))
response = app.handler(json.load(open(sys.argv[1])), context)
print(json.dumps({"status": response["statusCode"], "modules": seen[0]}))
"""


_INIT = """
import json, sys
import awslambdaric.bootstrap, app  # what the runtime imports at init
from lambda_observability.instrument import instrumentation

# The extension subscribes from its thread, then asks for its first event: init's end.
assert instrumentation().flush.asking.wait(5)
print(json.dumps(sorted(sys.modules)))
"""
# The classic emulator's answer to a subscription.
_NOT_SUPPORTED_BODY = b'{"errorType":"Telemetry.NotSupported","errorMessage":"not supported"}'
NOT_SUPPORTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_NOT_SUPPORTED_BODY),
    _NOT_SUPPORTED_BODY,
)


def test_init_imports_neither_the_sdk_nor_prometheus_client() -> None:
    api = ScriptedApi([Reply(REGISTERED), Reply(NOT_SUPPORTED), Reply(b"", silent=True)])
    variables = {
        "POWERTOOLS_SERVICE_NAME": "healthz",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "PUSHGATEWAY_URL": "http://127.0.0.1:9",
        "OBSERVABILITY_EXPORT_MODE": "async",
        "AWS_LAMBDA_RUNTIME_API": api.address,
    }
    out = fresh.run(_INIT, ROOT / "functions/healthz", [], variables)
    api.close()
    modules = json.loads(out.splitlines()[-1])
    assert '"export_mode":"async"' in out
    heavy = ("opentelemetry", "prometheus_client", "jmespath", "aws_lambda_powertools.metrics")
    assert [m for m in modules if m.split(".")[0] in heavy or m.startswith(heavy)] == []
    # The Extensions and Telemetry APIs are spoken with _socket (sockets.py): socket's enums
    # and selectors were 5 ms of init.
    assert {"socket", "selectors"} & set(modules) == set()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("event", ["rest-get.json", "function-url-get.json", "alb-get.json"])
def test_first_response_imports_nothing_it_does_not_need(event: str, mode: str) -> None:
    # async: the extension registers with an Extensions API at cold start, as on Lambda.
    api = (
        ScriptedApi([Reply(REGISTERED), Reply(NOT_SUPPORTED), Reply(b"", silent=True)])
        if mode == "async"
        else None
    )
    variables = {
        "POWERTOOLS_SERVICE_NAME": "healthz",
        # Every backend configured, as deployed: exporters exist, but are built on first use.
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "PUSHGATEWAY_URL": "http://127.0.0.1:9",
        "PUSHGATEWAY_AUTH_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
        "OTEL_PROPAGATORS": "tracecontext,baggage",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OBSERVABILITY_EXPORT_MODE": mode,
    }
    if api is not None:
        variables["AWS_LAMBDA_RUNTIME_API"] = api.address
    out = fresh.run(_SCRIPT, ROOT / "functions/healthz", [str(ROOT / "events" / event)], variables)
    result = json.loads(out.splitlines()[-1])
    assert result["status"] == 200
    if api is not None:
        api.close()
        assert api.requests[0].startswith(b"POST /2020-01-01/extension/register")
        assert '"export_mode":"async"' in out
    early = [
        name
        for name in result["modules"]
        if any(name == p or name.startswith(p + ".") for p in NOT_BEFORE_THE_FIRST_RESPONSE)
    ]
    assert early == []
