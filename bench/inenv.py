"""What each piece of a warm invocation costs inside a warm environment: ``python -m bench.inenv``.

    python -m bench.inenv [--warm 300] [--out bench/results]

``bench.percall`` times the pieces in a hot loop. A Lambda environment runs one call at a time,
with idle time between calls in which other processes use the CPU, and every piece then runs
slower. This runs the real function under localrt three ways, interleaved request by request
as ``python -m bench`` does (the real Pushgateway and OTLP receiver on loopback, no delay):
the bare handler, this project in sync mode, and the same with each piece timed inside the
environment (``bench/functions/timed/timed.py``). Writes ``inenv.md`` and ``inenv.json``, with
each piece's in-process figure from ``percall.json`` of the same directory when there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.configs import RESULTS
from bench.driver import LocalRT, clean_env
from bench.measure import Budget, percentile, warm
from stack.components import OtlpReceiverProcess, Pushgateway

FUNCTIONS = {
    "BareFunction": "bare handler (the floor)",
    "OursSyncFunction": "this project, sync",
    "OursTimedFunction": "this project, sync, pieces timed",
}
# The keys bench/functions/timed/timed.py records (that module imports the function, so it is
# not imported here).
PIECES = {
    "whole": "invocation: whole (Powertools' wrapper, @observe, the function)",
    "observe": "  @observe (span, log keys, histogram, flush) and the function",
    "function": "  the function (routing, counter, seed's log line, document)",
    "log_line": "piece: one log line (the seed's)",
    "span": "piece: the SERVER span (start + end)",
    "parse": "piece: reading the event (http_event.parse)",
}
# The in-process figure (percall.json) of the same piece, for the slow-down column.
IN_PROCESS = {
    "whole": "invocation: this project, whole",
    "function": "  the function (routing, counter, seed's log line, document)",
    "log_line": "piece: one log line (the seed's, with the invocation's keys)",
    "span": "piece: the SERVER span (start, attributes, end, queue)",
    "parse": "piece: reading the event (http_event.parse)",
}


def run(warm_requests: int, warmup: int, budget_seconds: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="healthz-inenv-"))
    pieces_file = workdir / "pieces.json"
    budget = Budget(budget_seconds)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        pushgateway = Pushgateway(workdir).start()
        stack.callback(pushgateway.stop)
        receiver = OtlpReceiverProcess(workdir).start()
        stack.callback(receiver.stop)
        env = clean_env(
            PUSHGATEWAY_URL=pushgateway.url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
            BENCH_PIECES_FILE=str(pieces_file),
        )
        servers = []
        for function in FUNCTIONS:
            rt = LocalRT(function, env, workdir)
            stack.callback(rt.stop)
            servers.append(rt)
        for rt in servers:
            rt.wait_listening()
        results = warm(servers, warmup, warm_requests, budget)
        calls: dict[str, list[int]] = json.loads(pieces_file.read_text())
    client = {
        label: percentile(result.client_ms, 50)
        for label, result in zip(FUNCTIONS.values(), results, strict=True)
    }
    # Left out: the phase's cold start and its warm-up calls. The wrapper writes its figures
    # every 10 calls, so the last few measured calls may be missing: the report says how many.
    skip = 1 + warmup
    measured = calls["whole"][skip:]
    pieces = {key: percentile([v / 1000 for v in calls[key][skip:]], 50) for key in PIECES}
    return {"warm": warm_requests, "calls": len(measured), "client_p50_ms": client, "us": pieces}


def report(data: dict[str, Any], in_process: dict[str, float]) -> str:
    bare = data["client_p50_ms"][FUNCTIONS["BareFunction"]]
    lines = [
        "# Per-call cost of each piece, inside a warm environment",
        "",
        f"`python -m bench.inenv`: {data['warm']} warm `GET /healthz` per function under "
        "localrt (freezing on), interleaved request by request; p50 of each piece over the "
        f"{data['calls']} measured calls of the timed function. In process: the same piece "
        "in `python -m bench.percall`'s hot loop (percall.md).",
        "",
        "| function | client p50 ms | vs bare |",
        "|---|---:|---:|",
    ]
    for label, p50 in data["client_p50_ms"].items():
        lines.append(f"| {label} | {p50:.2f} | {p50 - bare:+.2f} |")
    lines += [
        "",
        "| piece | µs per call, in the environment (p50) | µs in process | x |",
        "|---|---:|---:|---:|",
    ]
    for key, label in PIECES.items():
        inside = data["us"][key]
        hot = in_process.get(IN_PROCESS.get(key, ""))
        indent = "&nbsp;&nbsp;" if label.startswith("  ") else ""
        ratio = f"{inside / hot:.1f}x" if hot else ""
        hot_text = f"{hot:.1f}" if hot else ""
        lines.append(f"| {indent}{label.strip()} | {inside:.1f} | {hot_text} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--budget", type=float, default=180.0, help="seconds for the run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data = run(args.warm, args.warmup, args.budget)
    percall = args.out / "percall.json"
    in_process = json.loads(percall.read_text())["us"] if percall.exists() else {}
    text = report(data, in_process)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inenv.md").write_text(text)
    (args.out / "inenv.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
