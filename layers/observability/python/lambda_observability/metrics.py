"""Prometheus metrics in a registry of their own (pushed by ``export/pushgateway.py``).

prometheus-client's package ``__init__`` imports its exposition module, and with it
``http.server``, ``wsgiref``, ``urllib.request`` and ``ssl``: about a third of this layer's
import time, for code a push needs only after the response. ``_defer_package_init`` lets
the metric classes load without it (see there).

No ``*_created`` series: prometheus-client exposes one per counter and histogram (child), and
the Pushgateway turns each into a gauge series of its own in every group. Nothing here reads
them, and every environment's group is new anyway, so they are switched off for the process.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import workers


def _defer_package_init(name: str = "prometheus_client") -> None:
    """Register ``name`` as a package whose ``__init__`` runs on first attribute access.

    Its submodules (``prometheus_client.metrics``, ``.registry``, ``.exposition``) then import
    on their own, without the ``__init__`` that imports all of them. Code that uses the package
    itself (``from prometheus_client import start_http_server``, ``hasattr``, ``dir`` after a
    lookup) still gets all of it: the first name looked up on the package and not found runs
    the real ``__init__`` in place, once it succeeds, and the submodules already loaded are the
    ones it binds. Nothing happens if the package is already imported, or is not installed.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)
    lock = threading.RLock()
    running: list[bool] = []

    def load_on_first_use(attribute: str) -> Any:  # the package's __getattr__ (PEP 562)
        with lock:  # other threads wait for the one running __init__
            # While __init__ runs, a miss is a submodule it is about to import: not found yet.
            if not running and "__getattr__" in package.__dict__:
                running.append(True)
                try:
                    loader.exec_module(package)
                    del package.__getattr__  # only once it succeeded: a failure can be retried
                finally:
                    running.clear()
        return object.__getattribute__(package, attribute)

    package.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    sys.modules[name] = package
    # Bound on the package before prometheus_client.metrics asks for it (``from . import
    # values``), so that the lookup finds it instead of running __init__.
    importlib.import_module(f"{name}.values")
    # What __init__ adds to the default registry, as importing the package would (~2 ms).
    for collector in ("gc_collector", "platform_collector", "process_collector"):
        importlib.import_module(f"{name}.{collector}")


# On Lambda Managed Instances the workers' values go to one shared directory (workers.py),
# which prometheus-client reads from PROMETHEUS_MULTIPROC_DIR when it is imported.
SHARED_DIRECTORY = workers.prepare()
_defer_package_init()

from prometheus_client.metrics import (  # noqa: E402  (after the deferral above)
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.registry import CollectorRegistry  # noqa: E402

from .environment import INSTANCE_ID as INSTANCE_ID  # noqa: E402  (the group's instance label)

# Read when a registry is collected, so this covers the function's own metrics too
# (prometheus-client leaves the function unannotated).
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=False)

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


def environment_registry() -> tuple[CollectorRegistry, str]:
    """What this environment pushes, and its group's instance id.

    One worker's registry and its instance id; on Lambda Managed Instances, the sum of every
    worker's values (prometheus-client's multiprocess mode) and the environment's id.
    """
    if SHARED_DIRECTORY is None:
        return REGISTRY, INSTANCE_ID
    from prometheus_client.multiprocess import MultiProcessCollector

    summed = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(summed, str(SHARED_DIRECTORY))  # type: ignore[no-untyped-call]
    return summed, workers.environment_id(SHARED_DIRECTORY)
