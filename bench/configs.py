"""The configurations compared, each a function of bench/template.yaml run by localrt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TEMPLATE = BENCH_DIR / "template.yaml"
RESULTS = BENCH_DIR / "results"


@dataclass(frozen=True)
class Config:
    key: str  # short name used in the results
    function: str  # logical ID in bench/template.yaml
    label: str  # what the table says
    telemetry: str  # what it sends, for the reader


CONFIGS: tuple[Config, ...] = (
    Config("bare", "BareFunction", "1. bare handler (floor)", "nothing"),
    Config(
        "ours-sync",
        "OursSyncFunction",
        "2. this project, sync",
        "JSON logs + span (OTLP/HTTP) + Pushgateway push, before returning",
    ),
    Config(
        "ours-async",
        "OursAsyncFunction",
        "3. this project, async",
        "JSON logs + span (OTLP/HTTP) + Pushgateway push, after the response",
    ),
    Config(
        "otel-instrumentation",
        "OtelInstrumentationFunction",
        "4. opentelemetry-instrumentation-aws-lambda + push",
        "span (OTLP/HTTP, force_flush) + Pushgateway push, before returning; no logs",
    ),
    Config(
        "otel-lite-sync",
        "OtelLiteSyncFunction",
        "5a. lambda-otel-lite, sync",
        "span (OTLP/HTTP) before returning; no metrics, no logs",
    ),
    Config(
        "otel-lite-async",
        "OtelLiteAsyncFunction",
        "5b. lambda-otel-lite, async",
        "span (OTLP/HTTP) after the response; no metrics, no logs",
    ),
    Config(
        "otel-collector-ext",
        "OtelCollectorExtFunction",
        "6. (4) + the OTel Lambda collector extension",
        "span (OTLP/HTTP, force_flush) to the collector extension on localhost:4318 + "
        "Pushgateway push, before returning; the collector exports after the response "
        "(batch + decouple, before /next)",
    ),
)
BARE = CONFIGS[0]
DELAYS_MS: tuple[int, ...] = (0, 100)
