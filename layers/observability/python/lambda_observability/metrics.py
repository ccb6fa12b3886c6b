"""Prometheus metrics in a registry of their own, pushed to a Pushgateway.

A Lambda environment has no long-running port for Prometheus to scrape, so each environment
pushes its registry under its own grouping key (job + an ``instance`` made at cold start): a
shared key would let concurrent environments overwrite each other's counters. Counters stay
cumulative, so a push that fails is made good by the next one.

Several gateways (``PUSHGATEWAY_URL`` as a comma-separated list) share the groups: each
environment pushes to the one its instance id hashes to, always the same, so a group is never
split between gateways.

No ``*_created`` series: prometheus-client exposes one per counter and histogram (child), and
the Pushgateway turns each into a gauge series of its own in every group. Nothing here reads
them, and every environment's group is new anyway, so they are switched off for the process.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from .config import pushgateway_urls

# Read when a registry is collected, so this covers the function's own metrics too
# (prometheus-client leaves the function unannotated).
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=False)

# Made once per execution environment; also the OpenTelemetry resource's service.instance.id.
INSTANCE_ID = uuid.uuid4().hex

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests handled by the function, by method, route and status code.",
    ["method", "route", "status_code"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COLD_STARTS = Counter(
    "lambda_cold_starts", "Cold starts of this execution environment.", registry=REGISTRY
)
EXPORT_FAILURES = Counter(
    "telemetry_export_failures",
    "Failed telemetry exports, by backend (pushgateway, otlp, secrets).",
    ["backend"],
    registry=REGISTRY,
)
SPANS_DROPPED = Counter(
    "otel_spans_dropped",
    "Finished spans dropped because the export queue was full.",
    registry=REGISTRY,
)


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter in the pushed registry. ``name`` may end in ``_total`` as exposed."""
    return Counter(name, documentation, labelnames, registry=REGISTRY)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), **kwargs: Any
) -> Histogram:
    """A histogram in the pushed registry."""
    return Histogram(name, documentation, labelnames, registry=REGISTRY, **kwargs)


def value(name: str, labels: dict[str, str] | None = None) -> float | None:
    """Current value of a sample, e.g. ``value("healthz_calls_total")``.

    This collects the whole registry; on a request path, read one metric with ``total``.
    """
    return REGISTRY.get_sample_value(name, labels)


def total(counter: Counter) -> float:
    """A counter's current value, collecting only that counter (no labels)."""
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                return sample.value
    return 0.0


def gateway_for(urls: Sequence[str], instance: str = INSTANCE_ID) -> str:
    """The gateway of ``urls`` that holds ``instance``'s group.

    A hash that every process computes alike (``hash()`` is salted per process), so that the
    janitor, a test or a person can tell where a group lives from its instance id.
    """
    if not urls:
        raise ValueError("no Pushgateway URL")
    digest = hashlib.sha256(instance.encode()).digest()
    return urls[int.from_bytes(digest[:8], "big") % len(urls)]


def push(
    url: str,
    job: str,
    deadline: float,
    credentials: tuple[str, str] | None = None,
    *,
    registry: CollectorRegistry = REGISTRY,
    instance: str = INSTANCE_ID,
) -> None:
    """PUT this environment's whole group by ``deadline`` (monotonic); raises on any failure.

    ``url`` is ``PUSHGATEWAY_URL`` as configured: one gateway, or a comma-separated list of
    which ``gateway_for`` picks one. ``registry`` and ``instance`` default to this
    environment's; the scale benchmark passes its simulated environments' own.
    """
    # Imported here, not at cold start: the push code is needed only after a response.
    from prometheus_client.exposition import push_to_gateway

    from .http_client import push_handler

    push_to_gateway(
        gateway_for(pushgateway_urls(url), instance),
        job=job,
        registry=registry,
        grouping_key={"instance": instance},
        timeout=None,
        handler=push_handler(credentials, deadline),
    )
