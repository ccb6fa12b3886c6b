"""Observability for any Python Lambda function: structured logs (Powertools Logger),
OpenTelemetry traces and Prometheus metrics pushed to a Pushgateway.

    from lambda_observability import logger, metrics, observe

    CALLS = metrics.counter("orders_total", "Orders received.")

    @observe
    def handler(event, context): ...
"""

from . import metrics
from .instrument import observe
from .logs import logger

__all__ = ["logger", "metrics", "observe"]
