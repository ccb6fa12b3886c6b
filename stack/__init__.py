"""Local observability stack for the healthz function: Pushgateway, Prometheus, OpenTelemetry
Collector.

`python -m stack up` runs it in a terminal; `stack.Stack` runs it from Python/pytest.
"""

from stack._proc import StackError
from stack.components import (
    OtelCollector,
    OtlpReceiverProcess,
    Prometheus,
    Pushgateway,
    Sample,
    render_prometheus_config,
)
from stack.core import Stack

__all__ = [
    "OtelCollector",
    "OtlpReceiverProcess",
    "Prometheus",
    "Pushgateway",
    "Sample",
    "Stack",
    "StackError",
    "render_prometheus_config",
]
