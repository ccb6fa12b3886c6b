"""Where the cold start goes: ``python -X importtime`` of each handler module, and the
installed size of the layer's dependencies for Lambda's platform.

    python -m bench.importtime [--runs 5] [--top 15] [--out bench/results] [--skip-size]

For each handler (this project's functions/healthz/app.py, the bare handler, and the two peers)
it imports the module in a fresh interpreter, ``--runs`` times, the way the runtime does (the
code and layer directories on PYTHONPATH, Lambda-like variables, no Runtime API so no
extension), and prints the top cumulative imports of the median run. Then it installs
layers/observability/requirements.txt for manylinux2014 x86_64 / CPython 3.13 into a temporary
directory (``pip install --target --platform ... --only-binary=:all:``) and measures it.
Writes ``importtime.md`` and ``importtime.json`` into the results directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
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


HANDLERS = (
    Handler(
        "bare",
        "bare handler (bench/functions/bare)",
        [BENCH_DIR / "functions" / "bare", BENCH_DIR / "functions" / "health" / "python"],
        {},
    ),
    Handler(
        "ours",
        "this project (functions/healthz/app.py + layer)",
        [REPO / "functions" / "healthz", LAYER / "python"],
        {"POWERTOOLS_SERVICE_NAME": "healthz", "OBSERVABILITY_EXPORT_MODE": "sync"},
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


def handler_env(handler: Handler) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(str(p) for p in handler.path),
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
    samples: list[tuple[float, list[Import], float]] = []
    for _ in range(runs):
        proc = subprocess.run(
            # os._exit: skip atexit hooks (an exporter flushing to a backend that is not there)
            [sys.executable, "-X", "importtime", "-c", "import app, os; os._exit(0)"],
            cwd=handler.path[0],
            env=handler_env(handler),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{handler.key}: import app failed:\n{proc.stderr[-2000:]}")
        imports = parse(proc.stderr)
        app_us = next(i.cumulative_us for i in imports if i.name == "app" and i.depth == 0)
        total_us = sum(i.cumulative_us for i in imports if i.depth == 0)
        samples.append((app_us / 1000, imports, total_us / 1000))
    samples.sort(key=lambda s: s[0])
    median_app, imports, total_ms = samples[len(samples) // 2]
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
            }
            for i in sorted(imports, key=lambda i: i.cumulative_us, reverse=True)
        ],
    }


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


def markdown(results: list[dict[str, Any]], sizes: dict[str, Any], top: int) -> str:
    lines = [
        "# Cold-start imports and layer size",
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
    args = parser.parse_args(argv)
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
        json.dumps({"imports": results, "layer_size": sizes}, indent=2) + "\n"
    )
    (args.out / "importtime.md").write_text(markdown(results, sizes, args.top))
    print(f"\nwrote {args.out / 'importtime.md'} and importtime.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
