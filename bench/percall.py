"""What each piece of a warm invocation costs, in process: ``python -m bench.percall``.

    python -m bench.percall [--calls 2000] [--repeats 9] [--out bench/results]

A fresh interpreter imports the real function and layer as the runtime would (sync mode, no
backend: nothing is exported, so only the per-call work is timed), logs to /dev/null, and times
each piece of a ``GET /healthz`` invocation on its own, ``--calls`` times, in ``--repeats``
interleaved rounds, keeping the fastest round: the whole invocation, Powertools' and the
layer's wrappers around a handler that does nothing, the function alone, a log line, the span,
the histogram, the counter, the event's parse and the health document, against the bare
handler's whole invocation. Writes ``percall.md`` and ``percall.json``.

Absolute figures move with the machine's load; the ratios within one run are what to read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import fresh
from bench.configs import BENCH_DIR, REPO, RESULTS

_CHILD = r"""
import json, os, sys, time
from bench.fresh import lambda_context

calls, repeats = int(sys.argv[1]), int(sys.argv[2])
import app, health
from health_logic import respond
from lambda_observability import http_event, logger, metrics
from lambda_observability.instrument import instrumentation
from lambda_observability.metrics import REQUEST_DURATION

logger.registered_handler.setStream(open(os.devnull, "w"))
event = json.load(open(os.environ["BENCH_EVENT"]))


context = lambda_context()


state = instrumentation()
tracer = state.tracing.tracer
function = app.handler.__wrapped__.__wrapped__  # without Powertools' and the layer's wrappers
answered = {"statusCode": 200, "headers": {}, "body": "", "isBase64Encoded": False}
powertools_only = logger.inject_lambda_context(
    lambda event, context: answered,
    correlation_id_path="requestContext.requestId",
    clear_state=True,
)


def span():
    with tracer.start_as_current_span("GET /healthz", attributes={"http.route": "/healthz"}):
        pass
    state.tracing.queue.drain()


PIECES = {
    "invocation: bare handler (the floor)": lambda: respond(event),
    "invocation: this project, whole": lambda: app.handler(event, context),
    "  Powertools inject_lambda_context (context keys, correlation id)": lambda: powertools_only(
        event, context
    ),
    "  @observe around a handler that does nothing": lambda: state.invoke(
        lambda event, context: answered, event, context, app.ROUTES
    ),
    "  the function (routing, counter, seed's log line, document)": lambda: function(
        event, context
    ),
    "piece: one log line (the seed's, with the invocation's keys)": lambda: logger.info(
        "Monitoring endpoint invoked! Counter was incremented!",
        extra={"healthz_calls_total": 1.0},
    ),
    "piece: the SERVER span (start, attributes, end, queue)": span,
    "piece: the duration histogram (labels + observe)": lambda: REQUEST_DURATION.labels(
        method="GET", route="/healthz", status_code="200"
    ).observe(0.001),
    "piece: the calls counter (inc + read)": lambda: (app.CALLS.inc(), metrics.total(app.CALLS)),
    "piece: reading the event (http_event.parse)": lambda: http_event.parse(event, app.ROUTES),
    "piece: the health document (dict + json.dumps)": lambda: json.dumps(
        health.health_document("healthz")
    ),
}
# The keys every line of an invocation carries (Powertools' context keys, the request's).
app.handler(event, context)
logger.append_keys(http_method="GET", path="/healthz", source_ip="127.0.0.1", user_agent="x")

for piece in PIECES.values():
    piece()  # warm up: first calls build caches
# Interleaved rounds, the fastest of each: the least disturbed by other load on the machine.
best = {name: float("inf") for name in PIECES}
for _ in range(repeats):
    for name, piece in PIECES.items():
        started = time.perf_counter()
        for _ in range(calls):
            piece()
        best[name] = min(best[name], (time.perf_counter() - started) / calls * 1e6)
print(json.dumps(best))
"""


def measure(calls: int, repeats: int, event: Path) -> dict[str, float]:
    out = fresh.run(
        _CHILD,
        REPO / "functions" / "healthz",
        [str(calls), str(repeats)],
        {
            "POWERTOOLS_SERVICE_NAME": "healthz",
            "OTEL_PROPAGATORS": "tracecontext,baggage",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_TRACES_EXPORTER": "none",
            "OBSERVABILITY_EXPORT_MODE": "sync",
            "BENCH_EVENT": str(event),
        },
        extra_paths=[BENCH_DIR / "functions" / "health" / "python"],
        timeout=600,
    )
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def report(results: dict[str, float], calls: int, repeats: int) -> str:
    floor = results["invocation: bare handler (the floor)"]
    lines = [
        "# Per-call cost of each piece of a warm invocation",
        "",
        f"`python -m bench.percall`: in process, `GET /healthz` (events/rest-get.json), each piece "
        f"timed on its own {calls} times, fastest of {repeats} interleaved rounds; sync mode "
        "with no backend, so nothing is exported and only per-call work is timed; logs go to "
        "/dev/null. Absolute figures move with the machine's load: read the ratios within the "
        "run.",
        "",
        "| piece | µs per call | x bare invocation |",
        "|---|---:|---:|",
    ]
    for name, micros in results.items():
        label = name.strip()
        indent = "&nbsp;&nbsp;" if name.startswith("  ") else ""
        lines.append(f"| {indent}{label} | {micros:.1f} | {micros / floor:.1f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = measure(args.calls, args.repeats, REPO / "events" / "rest-get.json")
    text = report(results, args.calls, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "percall.md").write_text(text)
    payload: dict[str, Any] = {"calls": args.calls, "repeats": args.repeats, "us": results}
    (args.out / "percall.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
