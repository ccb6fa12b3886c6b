"""Where the cold start goes: ``python -X importtime`` of each handler module, and the
installed size of the layer's dependencies for Lambda's platform.

    python -m bench.importtime [--runs 5] [--top 15] [--out bench/results] [--skip-size]

For each handler (this project's functions/healthz/app.py, the bare handler, and the two peers)
it imports the module in a fresh interpreter, ``--runs`` times, the way the runtime does (the
code and layer directories on PYTHONPATH, Lambda-like variables; ours in async mode, its
extension registering with a Runtime API of localrt's own), and prints the top cumulative
imports of the median run.

Then **init** (issue 21): ``import awslambdaric.bootstrap, app``, what the runtime imports at
init, timed in the process for the bare handler, the Logger floor (bare + the layer's
Powertools Logger alone: the least any design keeping the seed's log line can import), and
ours in async mode, interleaved run by run, with psutil hidden as it is in the image. Ratios
are against the bare handler in the same run. Then it installs
layers/observability/requirements.txt for manylinux2014 x86_64 / CPython 3.13 into a temporary
directory (``pip install --target --platform ... --only-binary=:all:``) and measures it.
Writes ``importtime.md`` and ``importtime.json`` into the results directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.configs import BENCH_DIR, REPO, RESULTS

LAYER = REPO / "layers" / "observability"
PIP_PLATFORM = [
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
]


@dataclass(frozen=True)
class Handler:
    key: str
    label: str
    path: list[Path]  # PYTHONPATH: code directory first, then layers
    env: dict[str, str]
    runtime_api: bool = False  # a Runtime API to register an extension with (async mode)


HEALTH_LAYER = BENCH_DIR / "functions" / "health" / "python"


HANDLERS = (
    Handler(
        "bare",
        "bare handler (bench/functions/bare)",
        [BENCH_DIR / "functions" / "bare", BENCH_DIR / "functions" / "health" / "python"],
        {},
    ),
    Handler(
        "ours",
        "this project, async (functions/healthz/app.py + layer)",
        [REPO / "functions" / "healthz", LAYER / "python"],
        {"POWERTOOLS_SERVICE_NAME": "healthz", "OBSERVABILITY_EXPORT_MODE": "async"},
        runtime_api=True,
    ),
    Handler(
        "otel-instrumentation",
        "opentelemetry-instrumentation-aws-lambda + prometheus-client",
        [
            BENCH_DIR / "functions" / "otel_instrumentation",
            BENCH_DIR / "functions" / "health" / "python",
        ],
        {},
    ),
    Handler(
        "otel-lite",
        "lambda-otel-lite + OTLP/HTTP exporter",
        [BENCH_DIR / "functions" / "otel_lite", BENCH_DIR / "functions" / "health" / "python"],
        {"LAMBDA_EXTENSION_SPAN_PROCESSOR_MODE": "sync"},
    ),
)


@dataclass(frozen=True)
class Import:
    self_us: int
    cumulative_us: int
    depth: int
    name: str


def parse(stderr: str) -> list[Import]:
    """Lines ``import time: self [us] | cumulative | imported package`` (nesting by indent)."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        _, rest = line.split(":", 1)
        parts = rest.split("|")
        if len(parts) != 3:
            continue
        name_field = parts[2].rstrip()
        stripped = name_field.lstrip()
        depth = (len(name_field) - len(stripped) - 1) // 2
        out.append(Import(int(parts[0]), int(parts[1]), depth, stripped))
    return out


FLOOR = Handler(
    "logger-floor",
    "Logger floor: bare + the layer's Powertools Logger alone (bench/functions/logger_floor)",
    [BENCH_DIR / "functions" / "logger_floor", LAYER / "python", HEALTH_LAYER],
    {"POWERTOOLS_SERVICE_NAME": "healthz"},
)
# psutil is in the dev venv (for the benches), not in the image: hidden, as there.
_HIDE_PSUTIL = """import sys
class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name == "psutil" or name.startswith("psutil."):
            raise ImportError("psutil is not in the image")
sys.meta_path.insert(0, _Hidden())
"""


@contextlib.contextmanager
def runtime_api(handler: Handler) -> Iterator[dict[str, str]]:
    """The variables for one fresh runtime: a Runtime API of its own if it registers."""
    if not handler.runtime_api:
        yield {}
        return
    from localrt.runtime_api import RuntimeApi

    api = RuntimeApi("healthz", "app.handler", on_ready=lambda: None, on_fatal=lambda _: None)
    api.start()
    try:
        yield {"AWS_LAMBDA_RUNTIME_API": api.address}
    finally:
        api.close()


def handler_env(handler: Handler, hide: Path | None = None) -> dict[str, str]:
    path = [hide, *handler.path] if hide is not None else handler.path
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(str(p) for p in path),
        "AWS_LAMBDA_FUNCTION_NAME": "healthz",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_REGION": "us-east-1",
        "OTEL_SERVICE_NAME": "healthz",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "PUSHGATEWAY_URL": "http://127.0.0.1:9091",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(handler.env)
    return env


def measure(handler: Handler, runs: int) -> dict[str, Any]:
    samples: list[tuple[float, list[Import], float, dict[str, str]]] = []
    for _ in range(runs):
        with runtime_api(handler) as api:
            proc = subprocess.run(
                # os._exit: skip atexit hooks (an exporter flushing to a backend not there)
                [sys.executable, "-X", "importtime", "-c", "import app, os; os._exit(0)"],
                cwd=handler.path[0],
                env={**handler_env(handler), **api},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(f"{handler.key}: import app failed:\n{proc.stderr[-2000:]}")
        imports = parse(proc.stderr)
        parents = _parents(imports)
        app_us = next(i.cumulative_us for i in imports if i.name == "app" and i.depth == 0)
        total_us = sum(i.cumulative_us for i in imports if i.depth == 0)
        samples.append((app_us / 1000, imports, total_us / 1000, parents))
    samples.sort(key=lambda s: s[0])
    median_app, imports, total_ms, parents = samples[len(samples) // 2]
    baseline = _interpreter_ms(runs)
    return {
        "key": handler.key,
        "label": handler.label,
        "app_import_ms_runs": [round(s[0], 2) for s in samples],
        "app_import_ms": round(median_app, 2),
        "all_imports_ms": round(total_ms, 2),
        "modules": len(imports),
        "interpreter_ms": baseline,
        "top": [
            {
                "name": i.name,
                "depth": i.depth,
                "cumulative_ms": round(i.cumulative_us / 1000, 2),
                "self_ms": round(i.self_us / 1000, 2),
                "imported_by": parents.get(i.name),
            }
            for i in sorted(imports, key=lambda i: i.cumulative_us, reverse=True)
        ],
    }


_INIT_SCRIPT = """import os, sys, time
started = time.perf_counter()
import awslambdaric.bootstrap, app  # what the runtime imports at init
elapsed = time.perf_counter() - started
heavy = [m for m in ("opentelemetry", "opentelemetry.sdk", "prometheus_client") if m in sys.modules]
print("INIT", elapsed * 1000, len(sys.modules), ",".join(heavy), flush=True)
os._exit(0)
"""
INIT_TARGET_RATIO = 1.6  # issue 21: ours (async) at most 1.6x bare


def init_import(runs: int, hide: Path) -> dict[str, Any]:
    """``import awslambdaric.bootstrap, app`` for bare, the Logger floor and ours (async),
    interleaved (the order rotates each run) so that the machine's load hits all alike."""
    handlers = [HANDLERS[0], FLOOR, HANDLERS[1]]
    compile_code(handlers)
    samples: dict[str, list[tuple[float, int, str]]] = {h.key: [] for h in handlers}
    for run in range(runs):
        shift = run % len(handlers)
        for handler in handlers[shift:] + handlers[:shift]:
            with runtime_api(handler) as api:
                proc = subprocess.run(
                    [sys.executable, "-c", _INIT_SCRIPT],
                    cwd=handler.path[0],
                    env={**handler_env(handler, hide), **api},
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("INIT ")), None)
            if proc.returncode != 0 or line is None:
                raise RuntimeError(f"{handler.key}: init import failed:\n{proc.stderr[-2000:]}")
            _, ms, modules, *heavy = line.split(" ")
            samples[handler.key].append((float(ms), int(modules), heavy[0] if heavy else ""))
    bare = statistics.median(ms for ms, _, _ in samples["bare"])
    bare_min = min(ms for ms, _, _ in samples["bare"])
    bare_runs = [ms for ms, _, _ in samples["bare"]]
    rows = []
    for handler in handlers:
        values = samples[handler.key]
        p50 = statistics.median(ms for ms, _, _ in values)
        rows.append(
            {
                "key": handler.key,
                "label": handler.label,
                "ms_p50": round(p50, 2),
                "ms_min": round(min(ms for ms, _, _ in values), 2),
                "ratio_min": round(min(ms for ms, _, _ in values) / bare_min, 2),
                "ms_runs": sorted(round(ms, 2) for ms, _, _ in values),
                "ratio": round(p50 / bare, 2),
                # Each run against the bare handler's of the same round: the steadiest figure
                # on a shared machine, and the one the target is checked on.
                "ratio_paired": round(
                    statistics.median(
                        ms / b for (ms, _, _), b in zip(values, bare_runs, strict=True)
                    ),
                    2,
                ),
                "modules": values[0][1],
                "heavy_imported": sorted({h for _, _, hs in values for h in hs.split(",") if h}),
            }
        )
    return {"runs": runs, "rows": rows, "target_ratio": INIT_TARGET_RATIO}


def compile_code(handlers: list[Handler] | tuple[Handler, ...]) -> None:
    """Bytecode for the handlers' own directories, as the image has it (its Dockerfile runs
    compileall; the packages were compiled by pip): no run may pay for a compile."""
    dirs = sorted({str(p) for h in handlers for p in h.path})
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=True, timeout=120)


def _parents(imports: list[Import]) -> dict[str, str]:
    """Who imported each module: importtime lists children first, then their parent, shallower."""
    parents: dict[str, str] = {}
    for index, child in enumerate(imports):
        for later in imports[index + 1 :]:
            if later.depth < child.depth:
                parents[child.name] = later.name
                break
    return parents


# Why each heavy import of this project is needed before its first response (issue 10). A
# module takes the reason of its longest listed prefix; one without falls back on its importer's.
ACCOUNTED = {
    "app": "the function",
    "health": "the health document",
    "lambda_observability": "the layer",
    "aws_lambda_powertools": "Powertools Logger (kept, issue 10); the package `__init__` (its "
    "Metrics and Tracer) runs on first use only (`lazy.py`, issue 21)",
    "jmespath": "Powertools Logger's module imports it (correlation id paths); deferred to first "
    "use (`lazy.py`): the layer sets the correlation id from its own reading of the event",
    "botocore": "`botocore/__init__` only, for Powertools' user agent; no session, no client",
    "prometheus_client": "prometheus-client: made at the first export since issue 21 (a response "
    "adds to plain numbers, metrics.py); listed here only if something imported it at init",
    "prometheus_client.exposition": "the push only: `metrics.py` loads prometheus-client's "
    "metric modules without the package `__init__`, which imports this one",
    "prometheus_client.decorator": "prometheus-client's metrics (its timing decorators)",
    "opentelemetry": "the OpenTelemetry API: not at init since issue 21 (the invocation's span "
    "is plain data, tracing.py); listed here only if something imported it",
    "typing_extensions": "the OpenTelemetry API's `deprecated`: not at init since issue 21",
    "inspect": "Powertools' formatter calls `inspect.getfullargspec` as it is imported (with "
    "`ast`, `dis`, `tokenize`): part of the Logger floor",
    "opentelemetry.baggage": "the W3C baggage propagator (OTEL_PROPAGATORS)",
    "opentelemetry.trace.propagation": "the W3C trace-context propagator (OTEL_PROPAGATORS)",
    "http.client": "the layer's HTTP client for exports, on first use (the Extensions API "
    "client speaks HTTP/1.1 itself)",
    "psutil": "optional in `opentelemetry.sdk.resources`; installed here by the dev "
    "requirements, not by the layer's, so it is not in the image",
    "uuid": "the environment's instance id (grouping key, service.instance.id)",
    "json": "events and answers",
    "logging": "Powertools Logger",
    "typing": "everything",
}
HEAVY_MS = 3.0


def account(entry: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> str | None:
    """Why ``entry`` is imported: its own reason, or "for" its nearest importer that has one;
    None if it was not imported on behalf of the handler (the interpreter's own start)."""
    name: str | None = entry["name"]
    while name is not None:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            reason = ACCOUNTED.get(".".join(parts[:cut]))
            if reason:
                return reason if name == entry["name"] else f"for `{name}`"
        name = by_name.get(name, {}).get("imported_by")
    return None


_BASELINE: list[float] = []


def _interpreter_ms(runs: int) -> float:
    """Wall time of ``python -c pass`` (the interpreter alone), measured once."""
    if not _BASELINE:
        walls = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=30)
            walls.append((time.perf_counter() - started) * 1000)
        _BASELINE.append(round(statistics.median(walls), 2))
    return _BASELINE[0]


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def layer_size(requirements: list[Path]) -> dict[str, Any]:
    """Install for Lambda's platform into a temp dir; sizes per top-level entry, in bytes."""
    with tempfile.TemporaryDirectory(prefix="layer-size-") as tmp:
        target = Path(tmp) / "python"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        cmd += ["--target", str(target), *PIP_PLATFORM]
        for req in requirements:
            cmd += ["-r", str(req)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            return {"error": proc.stderr[-2000:], "command": " ".join(cmd)}
        for cache in target.rglob("__pycache__"):
            for f in cache.iterdir():
                f.unlink()
        entries = {p.name: _du(p) if p.is_dir() else p.stat().st_size for p in target.iterdir()}
        du = subprocess.run(["du", "-sk", str(target)], capture_output=True, text=True, check=False)
        return {
            "command": " ".join(cmd)
            .replace(str(target), "<tmp>/python")
            .replace(sys.executable, "python")
            .replace(f"{REPO}/", ""),
            "bytes": sum(entries.values()),
            "du_kib": int(du.stdout.split()[0]) if du.returncode == 0 else None,
            "entries": dict(sorted(entries.items(), key=lambda kv: kv[1], reverse=True)),
        }


def init_markdown(init: dict[str, Any]) -> list[str]:
    lines = [
        "## Import at init (issue 21)",
        "",
        "`import awslambdaric.bootstrap, app`, as the runtime imports at init, timed inside a "
        f"fresh interpreter; {init['runs']} runs of each, interleaved (the order rotates each "
        "run); psutil hidden, as in the image; ours in async mode, its extension registered "
        "with a Runtime API of localrt's own. Ratios against the bare handler in the same run.",
        "",
        "| handler | p50 ms | x bare | min ms | x bare (min) | x bare, paired (p50 of each "
        "round's ratio) | modules | imported at init (of opentelemetry, its SDK, "
        "prometheus_client) | all runs ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in init["rows"]:
        runs = ", ".join(f"{v:.1f}" for v in row["ms_runs"])
        heavy = ", ".join(row["heavy_imported"]) or "none"
        lines.append(
            f"| {row['label']} | {row['ms_p50']:.1f} | {row['ratio']:.2f}x | {row['ms_min']:.1f} "
            f"| {row['ratio_min']:.2f}x | {row['ratio_paired']:.2f}x | {row['modules']} | {heavy} "
            f"| {runs} |"
        )
    ours = next(r for r in init["rows"] if r["key"] == "ours")
    floor = next(r for r in init["rows"] if r["key"] == "logger-floor")
    met = ours["ratio_paired"] <= init["target_ratio"] and not ours["heavy_imported"]
    lines += [
        "",
        f"Target: ours at most {init['target_ratio']:g}x bare (paired), importing neither the "
        f"SDK nor prometheus-client: {ours['ratio_paired']:.2f}x, "
        f"{', '.join(ours['heavy_imported']) or 'neither'} imported: "
        f"**{'met' if met else 'not met'}**. The Logger floor alone is "
        f"{floor['ratio_paired']:.2f}x: what is left to any design that keeps the seed's log "
        "line on Powertools' Logger at init is "
        f"{init['target_ratio'] - floor['ratio_paired']:.2f}x of bare for everything else (ours "
        f"uses {ours['ratio_paired'] - floor['ratio_paired']:.2f}x).",
        "",
    ]
    return lines


def markdown(
    results: list[dict[str, Any]],
    sizes: dict[str, Any],
    top: int,
    init: dict[str, Any] | None = None,
) -> str:
    lines = [
        "# Cold-start imports and layer size",
        "",
        *(init_markdown(init) if init is not None else []),
        "## `import app` alone, and what it imports",
        "",
        "`python -X importtime -c 'import app'` in a fresh interpreter per handler, the code and "
        "layer directories on PYTHONPATH as localrt sets them (median of "
        f"{len(results[0]['app_import_ms_runs'])} runs; the interpreter alone, `python -c pass`, "
        f"takes {results[0]['interpreter_ms']:.1f} ms wall).",
        "",
        "| handler | `import app` ms (cumulative) | all runs ms | modules imported |",
        "|---|---:|---|---:|",
    ]
    for r in results:
        runs = ", ".join(f"{v:.1f}" for v in r["app_import_ms_runs"])
        lines.append(f"| {r['label']} | {r['app_import_ms']:.1f} | {runs} | {r['modules']} |")
    for r in results:
        lines += [
            "",
            f"## Top {top} cumulative imports: {r['label']}",
            "",
            "| module | depth | cumulative ms | self ms |",
            "|---|---:|---:|---:|",
        ]
        for i in r["top"][:top]:
            lines.append(
                f"| `{i['name']}` | {i['depth']} | {i['cumulative_ms']:.1f} | {i['self_ms']:.1f} |"
            )
    ours = next((r for r in results if r["key"] == "ours"), None)
    if ours is not None:
        by_name = {i["name"]: i for i in ours["top"]}
        heavy = [i for i in ours["top"] if i["cumulative_ms"] >= HEAVY_MS and i["depth"] > 0]
        lines += [
            "",
            f"## Every import of this project over {HEAVY_MS:g} ms, and why it comes before the "
            "first response",
            "",
            "The same median run. Imported only when first used, after the response in async mode "
            "(a test fails if any is loaded earlier, `tests/unit/test_cold_imports.py`): the OTLP "
            "exporter and protobuf, the layer's HTTP client with `http.client`, `email` and `ssl`, "
            "prometheus-client's exposition with `http.server`, `wsgiref` and `urllib.request`, "
            "boto3 and Powertools' parameters (the Pushgateway secret), "
            "`opentelemetry.propagate` and `importlib.metadata`; never: Powertools' event "
            "handler, asyncio, requests.",
            "",
            "| module | cumulative ms | imported by | why before the first response |",
            "|---|---:|---|---|",
        ]
        for i in heavy:
            why = account(i, by_name)
            if why is not None:
                lines.append(
                    f"| `{i['name']}` | {i['cumulative_ms']:.1f} | `{i['imported_by']}` | {why} |"
                )
    lines += ["", "## Installed size of the layer's dependencies (manylinux2014 x86_64, cp313)", ""]
    for name, size in sizes.items():
        if "error" in size:
            lines += [f"{name}: pip failed: `{size['error'][-300:]}`", ""]
            continue
        lines += [
            f"**{name}**: {size['bytes'] / 1024 / 1024:.1f} MiB "
            f"(`du -sk`: {size['du_kib']} KiB), `{size['command']}`",
            "",
            "| entry | KiB |",
            "|---|---:|",
        ]
        for entry, nbytes in list(size["entries"].items())[:15]:
            lines.append(f"| `{entry}` | {nbytes / 1024:.0f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.importtime", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-size", action="store_true", help="no pip install")
    parser.add_argument("--init-runs", type=int, default=21, help="interleaved init imports")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="importtime-") as hide:
        (Path(hide) / "sitecustomize.py").write_text(_HIDE_PSUTIL)
        init = init_import(args.init_runs, Path(hide))
    for row in init["rows"]:
        print(
            f"init {row['key']}: {row['ms_p50']:.1f} ms, {row['ratio']:.2f}x bare "
            f"(min {row['ratio_min']:.2f}x, paired {row['ratio_paired']:.2f}x)"
        )
    compile_code(HANDLERS)
    results = [measure(h, args.runs) for h in HANDLERS]
    for r in results:
        print(f"\n{r['label']}: import app {r['app_import_ms']:.1f} ms, {r['modules']} modules")
        for i in r["top"][: args.top]:
            print(f"  {i['cumulative_ms']:8.1f} ms  {'  ' * i['depth']}{i['name']}")
    sizes: dict[str, Any] = {}
    if not args.skip_size:
        sizes["layers/observability/requirements.txt"] = layer_size([LAYER / "requirements.txt"])
        sizes["with requirements-grpc.txt (optional gRPC exporter)"] = layer_size(
            [LAYER / "requirements.txt", LAYER / "requirements-grpc.txt"]
        )
        for name, size in sizes.items():
            if "bytes" in size:
                print(f"\n{name}: {size['bytes'] / 1024 / 1024:.1f} MiB installed")
            else:
                print(f"\n{name}: pip failed: {size['error'][-500:]}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "importtime.json").write_text(
        json.dumps({"init": init, "imports": results, "layer_size": sizes}, indent=2) + "\n"
    )
    (args.out / "importtime.md").write_text(markdown(results, sizes, args.top, init))
    print(f"\nwrote {args.out / 'importtime.md'} and importtime.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
