"""The layer without the OpenTelemetry API, and joined to it once something imports it (issue 21).

- ``propagation.w3c_parent`` reads ``traceparent``/``tracestate`` as the API's W3C propagator
  does: held to the same answers on hand-picked and mutated headers.
- ``lazy.when_imported`` runs code right after a module's body, once, and never breaks the
  import.
- A handler that imports the API in the middle of its first call still gets the invocation's
  span as the current span, its own spans as children, baggage, and log lines with the child's
  ids (a fresh interpreter: the API must not be loaded before).
"""

from __future__ import annotations

import json
import logging
import random
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bench import fresh
from lambda_observability import lazy, tracing
from lambda_observability.otel_api import HEADER_GETTER
from lambda_observability.propagation import w3c_parent
from tests.conftest import ROOT

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = [
    {},
    {"traceparent": VALID},
    {"traceparent": VALID.replace("-01", "-00")},
    {"traceparent": " \t" + VALID + "\t "},
    {"traceparent": VALID + "\n"},
    {"traceparent": VALID + "-extra"},
    {"traceparent": "01" + VALID[2:] + "-future"},
    {"traceparent": "ff" + VALID[2:]},
    {"traceparent": VALID.upper()},
    {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01"},
    {"traceparent": ""},
    {"traceparent": "garbage"},
    {"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
    {"traceparent": VALID, "tracestate": ""},
    {"traceparent": VALID, "tracestate": "not a valid member"},
    {"traceparent": VALID, "tracestate": "a=1,a=2"},
    {"traceparent": VALID, "tracestate": "k=" + "v" * 600},
    {"traceparent": VALID, "tracestate": ",, a=1 ,\tb=2,"},
]


def _api_answer(headers: dict[str, str]) -> tuple[int, int, int, object] | None:
    context = TraceContextTextMapPropagator().extract(headers, getter=HEADER_GETTER)
    found = trace.get_current_span(context).get_span_context()
    if not found.is_valid:
        return None
    return found.trace_id, found.span_id, int(found.trace_flags), found.trace_state


def _light_answer(headers: dict[str, str]) -> tuple[int, int, int, object] | None:
    parent = w3c_parent(headers)
    if parent is None:
        return None
    return parent.trace_id, parent.span_id, parent.flags, tracing.trace_state(parent.trace_state)


def _mutations(count: int) -> list[dict[str, str]]:
    """Single-character edits of a valid header: a bounded, seeded corpus."""
    rng = random.Random(21)  # noqa: S311  (a test corpus, not a secret)
    alphabet = "0123456789abcdefABCDEF- \t\nxz"
    out: list[dict[str, str]] = []
    for _ in range(count):
        chars = list(VALID)
        position = rng.randrange(len(chars) + 1)
        action = rng.choice(("replace", "insert", "delete"))
        if action == "replace" and position < len(chars):
            chars[position] = rng.choice(alphabet)
        elif action == "insert":
            chars.insert(position, rng.choice(alphabet))
        elif position < len(chars):
            del chars[position]
        out.append({"traceparent": "".join(chars)})
    return out


@pytest.mark.parametrize("headers", HEADERS + _mutations(400))
def test_w3c_parent_agrees_with_the_apis_propagator(headers: dict[str, str]) -> None:
    assert _light_answer(headers) == _api_answer(headers)


def test_the_corpus_has_both_answers() -> None:
    answers = [_light_answer(h) for h in HEADERS + _mutations(400)]
    assert sum(a is None for a in answers) > 50
    assert sum(a is not None for a in answers) > 50


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    """A module ``name`` with ``body``, importable from ``tmp_path`` for this test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{name}.py").write_text(body)


def test_when_imported_runs_after_the_body_once_and_keeps_the_real_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _module(tmp_path, monkeypatch, "hooked_one", "VALUE = 42\n")
    seen: list[int] = []
    lazy.when_imported("hooked_one", lambda module: seen.append(module.VALUE))
    assert seen == []
    import hooked_one  # type: ignore[import-not-found]

    assert seen == [42]
    assert type(hooked_one.__loader__).__name__ == "SourceFileLoader"
    assert type(hooked_one.__spec__.loader).__name__ == "SourceFileLoader"
    # Already imported: at once. And the finder is gone once nothing is hooked.
    lazy.when_imported("hooked_one", lambda module: seen.append(-module.VALUE))
    assert seen == [42, -42]
    assert not any(type(f).__name__ == "_PostImportFinder" for f in sys.meta_path)
    del sys.modules["hooked_one"]


def test_a_failing_hook_never_fails_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _module(tmp_path, monkeypatch, "hooked_two", "VALUE = 7\n")

    def broken(module: object) -> None:
        raise RuntimeError("hook broke")

    lazy.when_imported("hooked_two", broken)
    with caplog.at_level(logging.WARNING, logger="lambda_observability"):
        import hooked_two  # type: ignore[import-not-found]

    assert hooked_two.VALUE == 7
    assert "hook after importing hooked_two failed" in caplog.text
    del sys.modules["hooked_two"]


def test_a_module_whose_body_fails_is_hooked_at_its_next_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _module(tmp_path, monkeypatch, "hooked_three", "raise ImportError('not yet')\n")
    seen: list[str] = []
    lazy.when_imported("hooked_three", lambda module: seen.append(module.__name__))
    with pytest.raises(ImportError):
        import hooked_three  # type: ignore[import-not-found]  # noqa: F401
    assert seen == []
    _module(tmp_path, monkeypatch, "hooked_three", "VALUE = 1\n")
    sys.modules.pop("hooked_three", None)
    import importlib

    importlib.invalidate_caches()
    importlib.import_module("hooked_three")
    assert seen == ["hooked_three"]
    del sys.modules["hooked_three"]


_LATE = """
import json, sys
from bench.fresh import lambda_context
from lambda_observability import logger, observe
from lambda_observability.instrument import instrumentation

@observe(routes=("/work",))
def handler(event, context):
    from opentelemetry import baggage, trace  # the API's first import, in the first call

    server = trace.get_current_span().get_span_context()
    with trace.get_tracer("user").start_as_current_span("child") as child:
        logger.info("inside the child span")
        ids = child.get_span_context()
    return {
        "statusCode": 200,
        "server": [server.trace_id, server.span_id],
        "child": [ids.trace_id, ids.span_id],
        "baggage": baggage.get_baggage("tenant"),
    }

before = "opentelemetry.trace" in sys.modules
event = {
    "version": "2.0", "rawPath": "/work", "routeKey": "GET /work",
    "headers": {"traceparent": sys.argv[1], "baggage": "tenant=blue"},
    "requestContext": {"http": {"method": "GET", "path": "/work"}, "requestId": "r-1"},
}
answer = handler(event, lambda_context())
from opentelemetry import trace
after = trace.get_current_span().get_span_context().is_valid
print(json.dumps({"before": before, "after": after, "answer": answer}))
"""


def test_a_handler_that_imports_the_api_in_its_first_call_joins_the_invocation() -> None:
    out = fresh.run(
        _LATE,
        ROOT / "functions/healthz",
        [VALID],
        # Sync mode: the spans are exported before the answer, one JSON line each.
        {"POWERTOOLS_SERVICE_NAME": "late", "OTEL_TRACES_EXPORTER": "console"},
    )
    lines = out.splitlines()
    result = json.loads(lines[-1])
    exported = [json.loads(x) for x in lines if x.startswith('{"name"')]
    result["spans"] = {
        s["name"]: [
            int(s["context"]["trace_id"], 16),
            int(s["context"]["span_id"], 16),
            int(s["parent_id"], 16) if s["parent_id"] else None,
        ]
        for s in exported
    }
    assert result["before"] is False  # the layer itself did not import the API
    assert result["after"] is False  # the invocation's span left the API's context
    trace_id, parent_id = int(VALID[3:35], 16), int(VALID[36:52], 16)
    server = result["spans"]["GET /work"]
    child = result["spans"]["child"]
    assert server == [trace_id, server[1], parent_id]
    assert result["answer"]["server"] == server[:2]
    assert child == [trace_id, result["answer"]["child"][1], server[1]]
    assert result["answer"]["baggage"] == "blue"
    (inside,) = [json.loads(x) for x in lines if "inside the child span" in x]
    assert inside["span_id"] == format(child[1], "016x")
    assert inside["trace_id"] == format(trace_id, "032x")
