"""Observability for any Python Lambda function: structured logs (Powertools Logger),
OpenTelemetry traces and Prometheus metrics pushed to a Pushgateway.

    from lambda_observability import logger, metrics, observe

    CALLS = metrics.counter("orders_total", "Orders received.")

    @observe
    def handler(event, context): ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import metrics
    from .instrument import observe
    from .logs import logger

__all__ = ["logger", "metrics", "observe"]
# Where each name lives: imported on first use (PEP 562), so that one module of the layer
# (logs, say) can be imported without the rest.
_EXPORTS = {"logger": ".logs", "metrics": ".metrics", "observe": ".instrument"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name], __name__)
    value = module if name == "metrics" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
