"""One SERVER span per invocation, with FaaS and HTTP semantic-convention attributes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from lambda_observability import metrics
from lambda_observability.export.otlp import OtlpGrpcSpanExporter, OtlpHttpSpanExporter
from lambda_observability.export.spans import SpanBackend, build_exporter, exporter_names
from lambda_observability.instrument import instrumentation
from lambda_observability.tracing import QueueSpanProcessor
from tests.conftest import ROOT, load_event
from tests.unit.conftest import FakeLambdaContext, SpanCapture, invoke


def test_one_server_span_with_semantic_attributes(
    context: FakeLambdaContext, spans: SpanCapture
) -> None:
    invoke(load_event("rest-get.json"), context)

    (span,) = spans.finished()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /healthz"
    attributes = dict(span.attributes or {})
    assert attributes["faas.invocation_id"] == context.aws_request_id
    assert attributes["faas.trigger"] == "http"
    assert isinstance(attributes["faas.coldstart"], bool)
    assert attributes["cloud.resource_id"] == context.invoked_function_arn
    assert attributes["cloud.account.id"] == "123456789012"
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/healthz"
    assert attributes["http.route"] == "/healthz"
    assert attributes["http.response.status_code"] == 200

    resource = dict(span.resource.attributes)
    assert resource["service.name"] == "healthz"
    assert resource["service.version"] == "1.0.0"
    assert resource["service.instance.id"] == metrics.INSTANCE_ID
    assert resource["faas.name"] == "healthz"
    assert resource["faas.version"] == "7"
    assert resource["cloud.region"] == "eu-west-1"
    assert resource["cloud.provider"] == "aws"
    assert resource["faas.max_memory"] == 256 * 1024 * 1024
    assert resource["faas.instance"]


def test_http_api_span(context: FakeLambdaContext, spans: SpanCapture) -> None:
    invoke(load_event("http-api-get.json"), context)
    (span,) = spans.finished()
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/healthz"
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200


def test_traceparent_sets_parent(context: FakeLambdaContext, spans: SpanCapture) -> None:
    invoke(load_event("rest-get-traceparent.json"), context)
    (span,) = spans.finished()
    assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.parent.is_remote


def test_error_status_on_5xx(
    context: FakeLambdaContext, spans: SpanCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import health

    monkeypatch.setattr(health, "health_document", lambda service_id: 1 / 0)
    invoke(load_event("rest-get.json"), context)
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 500


def test_query_string_never_reaches_span(context: FakeLambdaContext, spans: SpanCapture) -> None:
    event = load_event("rest-get.json")
    event["queryStringParameters"] = {"token": "s3cr3t-query-token"}
    event["multiValueQueryStringParameters"] = {"token": ["s3cr3t-query-token"]}
    invoke(event, context)
    (span,) = spans.finished()
    assert "s3cr3t-query-token" not in span.to_json()


def test_queue_is_bounded_and_counts_drops() -> None:
    class _Ctx:
        class trace_flags:  # noqa: N801 (mirrors the SDK attribute)
            sampled = True

    class _Span:
        context = _Ctx()

    queue = QueueSpanProcessor(max_size=2, on_drop=metrics.SPANS_DROPPED.inc)
    before = metrics.value("otel_spans_dropped_total") or 0.0
    for _ in range(5):
        queue.on_end(_Span())
    assert len(queue) == 2
    assert metrics.value("otel_spans_dropped_total") == before + 3
    drained = queue.drain()
    queue.requeue(drained + drained)  # a failed export put back: still bounded
    assert len(queue) == 2


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,zipkin,jaeger"}, ["otlp"]),
    ],
)
def test_exporter_choice(env: Mapping[str, str], expected: list[str]) -> None:
    assert exporter_names(env) == expected


def test_protocol_choice_builds_the_bounded_exporters() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}
    http = build_exporter("otlp", base)
    assert isinstance(http, OtlpHttpSpanExporter)
    assert http.endpoint == "http://127.0.0.1:4318/v1/traces"
    grpc = build_exporter(
        "otlp",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        },
    )
    assert isinstance(grpc, OtlpGrpcSpanExporter)
    assert isinstance(build_exporter("console", {}), ConsoleSpanExporter)
    # An unknown protocol is a warning and the default, never an error at export.
    odd = build_exporter("otlp", {**base, "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    assert isinstance(odd, OtlpHttpSpanExporter)


def test_otlp_settings_come_from_the_standard_variables() -> None:
    exporter = OtlpHttpSpanExporter(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom/path",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr3t,x-tenant=a%20b",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
        }
    )
    assert exporter.endpoint == "http://collector:4318/custom/path"
    assert exporter.headers["api-key"] == "s3cr3t"
    assert exporter.headers["x-tenant"] == "a b"
    assert exporter.headers["content-encoding"] == "gzip"
    assert exporter.timeout == 2.5
    assert OtlpHttpSpanExporter({}).timeout == 0.5  # not the SDK's 10 s


def _run_fresh(env: dict[str, str], event: str | Path) -> list[dict[str, object]]:
    """Invoke the handler in a fresh interpreter: OTEL_* variables are read at cold start."""
    script = (
        "import json, sys\n"
        "from tests.unit.conftest import FakeLambdaContext\n"
        "import app\n"
        f"app.handler(json.load(open({str(ROOT / 'events' / event)!r})), FakeLambdaContext())\n"
    )
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "layers/observability/python"), str(ROOT / "functions/healthz"), str(ROOT)]
        ),
        "OTEL_SERVICE_NAME": "healthz",
        **env,
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=full_env, capture_output=True, text=True, check=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_console_exporter_by_default_one_json_line_per_span() -> None:
    lines = _run_fresh({}, "rest-get.json")
    (span,) = [line for line in lines if "context" in line and "kind" in line]
    assert span["name"] == "GET /healthz"
    assert span["kind"] == "SpanKind.SERVER"


def test_xray_propagator_selectable(tmp_path: Path) -> None:
    event = load_event("rest-get.json")
    event["headers"]["X-Amzn-Trace-Id"] = (  # type: ignore[index]
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )
    path = tmp_path / "xray.json"
    path.write_text(json.dumps(event))
    lines = _run_fresh({"OTEL_PROPAGATORS": "xray"}, path)
    (span,) = [line for line in lines if "kind" in line]
    assert span["context"]["trace_id"] == "0x5759e988bd862e3fe1be46a994272793"  # type: ignore[index]
    assert span["parent_id"] == "0x53995c3f42cd8ad8"


def test_sampler_from_environment() -> None:
    lines = _run_fresh({"OTEL_TRACES_SAMPLER": "always_off"}, "rest-get.json")
    assert not [line for line in lines if "kind" in line]
    assert [line for line in lines if str(line.get("message")).startswith("Monitoring endpoint")]


def test_unknown_methods_are_reported_as_other(
    context: FakeLambdaContext, spans: SpanCapture
) -> None:
    event = load_event("rest-get.json")
    event["httpMethod"] = "BREW"
    before = metrics.value(
        "http_server_request_duration_seconds_count",
        {"method": "_OTHER", "route": "/healthz", "status_code": "405"},
    )
    invoke(event, context)
    (span,) = spans.finished()
    attributes = dict(span.attributes or {})
    assert span.name == "_OTHER /healthz"
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "BREW"
    after = metrics.value(
        "http_server_request_duration_seconds_count",
        {"method": "_OTHER", "route": "/healthz", "status_code": "405"},
    )
    assert after == (before or 0) + 1


def test_force_flush_exports_what_is_queued_or_reports_failure() -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lambda_observability.export.failures import FailureReporter
    from lambda_observability.tracing import Tracing, build_resource

    class Failing(InMemorySpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.FAILURE

    tracing = Tracing(build_resource("healthz", None), 16, install_global=False)
    spans = SpanBackend(tracing.queue, FailureReporter())
    received = InMemorySpanExporter()
    spans.use_exporter(received)
    with tracing.tracer.start_as_current_span("flushed"):
        pass
    assert tracing.provider.force_flush(1000) is True
    assert [s.name for s in received.get_finished_spans()] == ["flushed"]
    assert spans.pending() == 0
    spans.use_exporter(Failing())
    with tracing.tracer.start_as_current_span("kept"):
        pass
    assert tracing.provider.force_flush(1000) is False
    assert spans.pending() == 1  # kept for the next export, not lost


def test_unsupported_exporter_names_are_set_aside_once_at_cold_start() -> None:
    from lambda_observability import config

    env = {"OTEL_TRACES_EXPORTER": "otlp, zipkin,console", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}
    config.take_problems()
    assert exporter_names(env) == ["otlp", "console"]
    (problem,) = config.take_problems()
    assert (problem.variable, problem.value) == ("OTEL_TRACES_EXPORTER", "zipkin")


def test_a_raising_handler_records_its_exception_once_and_leaves_no_current_span(
    context: FakeLambdaContext, spans: SpanCapture
) -> None:
    from opentelemetry import trace

    from lambda_observability import observe

    seen: list[int] = []

    def broken(event: Any, ctx: Any) -> Any:
        seen.append(trace.get_current_span().get_span_context().span_id)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        observe(broken)(load_event("rest-get.json"), context)
    (span,) = spans.finished()
    assert seen == [span.context.span_id]  # the SERVER span was current inside the handler
    assert [e.name for e in span.events] == ["exception"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 500
    assert not trace.get_current_span().get_span_context().is_valid  # detached afterwards


@pytest.mark.parametrize("where", ["start", "end"])
def test_a_failing_span_step_still_ends_the_invocation_cleanly(
    context: FakeLambdaContext, spans: SpanCapture, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The extension must hear that the handler ended (else the invocation runs to its
    deadline), and no span or event reading may leak into the next invocation."""
    from opentelemetry import trace

    from lambda_observability import http_event

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{where} failed")

    state = instrumentation()
    ended: list[str] = []
    monkeypatch.setattr(state.flush, "after_invocation", lambda rid, left: ended.append(rid))
    if where == "start":
        monkeypatch.setattr(state.tracing, "start_span", failing)
    else:  # the span's end puts it in the queue
        monkeypatch.setattr(state.tracing.queue, "_put", failing)
    event = load_event("rest-get.json")
    with pytest.raises(RuntimeError, match=f"{where} failed"):
        invoke(event, context)
    assert ended == [context.aws_request_id]
    assert not trace.get_current_span().get_span_context().is_valid
    # Not left remembered: a reading now is a fresh one, without the function's routes.
    request = http_event.current(event)
    assert request is not None and request.matched_route is None
