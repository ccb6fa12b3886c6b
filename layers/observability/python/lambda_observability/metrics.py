"""Prometheus metrics in a registry of their own (pushed by ``export/pushgateway.py``), made
when first needed.

A response only adds to numbers; prometheus-client is needed once they leave. So the
instruments here record into plain numbers until the registry is made: at the first export
(async mode: after the first response, in the extension's thread), or when code reads
``REGISTRY``, ``value()`` or an attribute this module does not offer (``.time()``). Then the
real metrics are made in the order they were declared, what was recorded is replayed into
them, and every later call goes straight to them. Importing prometheus-client is then not part
of init (bench/results/importtime.md). Names, label names and buckets are checked when an
instrument is declared, so that a mistake still fails where it is made.

prometheus-client's package ``__init__`` imports its exposition module, and with it
``http.server``, ``wsgiref``, ``urllib.request`` and ``ssl``, for code a push needs only
after the response: the registry loads the metric classes without it (``lazy.defer``).

No ``*_created`` series: prometheus-client exposes one per counter and histogram (child), and
the Pushgateway turns each into a gauge series of its own in every group. Nothing here reads
them, and every environment's group is new anyway, so they are switched off for the process.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import lazy, workers
from .environment import INSTANCE_ID as INSTANCE_ID  # the group's instance label

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

# On Lambda Managed Instances the workers' values go to one shared directory (workers.py),
# which prometheus-client reads from PROMETHEUS_MULTIPROC_DIR when it is imported.
SHARED_DIRECTORY = workers.prepare()

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# One lock for recording before the registry exists and for making it: a call either records
# a number, or finds the real metric made (replayed, and used from then on outside the lock).
_lock = threading.Lock()
_declared: list[_Instrument] = []
_names: set[str] = set()
_registry: CollectorRegistry | None = None


class _Child:
    """One label set: a number until the registry is made, then the real child."""

    __slots__ = ("_family", "_key", "_pending", "_real", "value")

    def __init__(self, family: _Instrument, key: tuple[str, ...]) -> None:
        self._family = family
        self._key = key
        self._pending: list[float] = []
        self._real: Any = None
        self.value = 0.0  # a counter's value, read by ``total`` on the request path

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._record(amount, "inc")

    def observe(self, amount: float) -> None:
        self._record(amount, "observe")

    def _record(self, amount: float, operation: str) -> None:
        if operation != self._family.operation:
            raise AttributeError(f"a {self._family.kind} has no {operation}()")
        with _lock:
            self.value += amount
            real = self._real
            if real is None:
                self._pending.append(amount)
                return
        getattr(real, operation)(amount)

    def _make(self, real_family: Any) -> None:  # under _lock
        self._real = real_family.labels(*self._key) if self._key else real_family
        for amount in self._pending:
            getattr(self._real, self._family.operation)(amount)
        self._pending.clear()

    def __getattr__(self, name: str) -> Any:  # the rest of prometheus-client's child API
        registry()
        return getattr(self._real, name)


class _Instrument:
    kind = ""
    operation = ""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], **kwargs: Any
    ) -> None:
        exposed = name.removesuffix("_total") if self.kind == "counter" else name
        if not _NAME.fullmatch(exposed):
            raise ValueError(f"Invalid metric name: {name}")
        self.labelnames = tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"Invalid label metric name: {label}")
        buckets = kwargs.get("buckets")
        if buckets is not None and list(buckets) != sorted(buckets):
            raise ValueError("Buckets not in sorted order")
        self.name = name
        self._documentation = documentation
        self._kwargs = kwargs
        self._children: dict[tuple[str, ...], _Child] = {}
        self._real: Any = None
        with _lock:
            if exposed in _names:
                raise ValueError(f"Duplicated timeseries in CollectorRegistry: {exposed}")
            _names.add(exposed)
            _declared.append(self)
            made = _registry
        if made is not None:
            self._make(made, _classes())
        if not self.labelnames:
            self._children[()] = self._child(())

    def labels(self, *values: Any, **named: Any) -> _Child:
        if values and named:
            raise ValueError("Can't pass both *args and **kwargs")
        if named:
            if sorted(named) != sorted(self.labelnames):
                raise ValueError("Incorrect label names")
            values = tuple(named[label] for label in self.labelnames)
        if not self.labelnames:
            raise ValueError(f"No label names were set when constructing {self.name}")
        if len(values) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        key = tuple(str(value) for value in values)
        child = self._children.get(key)
        return child if child is not None else self._child(key)

    def _child(self, key: tuple[str, ...]) -> _Child:
        with _lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = _Child(self, key)
                if self._real is not None:
                    child._make(self._real)
        return child

    def _unlabelled(self) -> _Child:
        child = self._children.get(())
        if child is None:
            raise ValueError(f"{self.name} has labels: use .labels(...) first")
        return child

    def _make(self, made: CollectorRegistry, classes: dict[str, type]) -> None:
        real = classes[self.kind](
            self.name, self._documentation, self.labelnames, registry=made, **self._kwargs
        )
        with _lock:
            self._real = real
            for child in self._children.values():
                child._make(real)

    def __getattr__(self, name: str) -> Any:  # the rest of prometheus-client's metric API
        registry()
        return getattr(self._real, name)


class Counter(_Instrument):
    kind = "counter"
    operation = "inc"

    def inc(self, amount: float = 1.0) -> None:
        self._unlabelled().inc(amount)


class Histogram(_Instrument):
    kind = "histogram"
    operation = "observe"

    def observe(self, amount: float) -> None:
        self._unlabelled().observe(amount)


def _classes() -> dict[str, type]:
    from prometheus_client.metrics import Counter as RealCounter
    from prometheus_client.metrics import Histogram as RealHistogram

    return {"counter": RealCounter, "histogram": RealHistogram}


def registry() -> CollectorRegistry:
    """The registry, made (and every instrument with it) on the first call."""
    global _registry
    if _registry is not None:
        return _registry
    # The package's body on first use only; ``values`` and the default registry's collectors
    # now, as importing the package would (``prometheus_client.metrics`` asks for ``values``).
    preload = ("values", "gc_collector", "platform_collector", "process_collector")
    lazy.defer("prometheus_client", preload)
    for name in preload:
        importlib.import_module(f"prometheus_client.{name}")
    from prometheus_client.metrics import disable_created_metrics
    from prometheus_client.registry import CollectorRegistry

    # Read when a registry is collected, so this covers the function's own metrics too.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    classes = _classes()
    with _lock:
        if _registry is not None:  # another thread made it meanwhile
            return _registry
        made = CollectorRegistry(auto_describe=False)
        declared = list(_declared)
    for instrument in declared:
        instrument._make(made, classes)
    with _lock:
        _registry = made
    return made


def made() -> bool:
    """Whether the registry exists (prometheus-client is imported)."""
    return _registry is not None


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # made on first use, as it always was to readers
        return registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests handled by the function, by method, route and status code.",
    ["method", "route", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COLD_STARTS = Counter("lambda_cold_starts", "Cold starts of this execution environment.", ())
EXPORT_FAILURES = Counter(
    "telemetry_export_failures",
    "Failed telemetry exports, by backend (pushgateway, otlp, secrets).",
    ["backend"],
)
SPANS_DROPPED = Counter(
    "otel_spans_dropped", "Finished spans dropped because the export queue was full.", ()
)


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter in the pushed registry. ``name`` may end in ``_total`` as exposed."""
    return Counter(name, documentation, labelnames)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), **kwargs: Any
) -> Histogram:
    """A histogram in the pushed registry (``buckets=...`` as prometheus-client takes it)."""
    return Histogram(name, documentation, labelnames, **kwargs)


def value(name: str, labels: dict[str, str] | None = None) -> float | None:
    """Current value of a sample, e.g. ``value("healthz_calls_total")``.

    This makes and collects the whole registry; on a request path, read a counter with ``total``.
    """
    return registry().get_sample_value(name, labels)


def total(counter: Counter) -> float:
    """A counter's current value (no labels), without prometheus-client: for a request path."""
    return counter._unlabelled().value


def environment_registry() -> tuple[CollectorRegistry, str]:
    """What this environment pushes, and its group's instance id.

    One worker's registry and its instance id; on Lambda Managed Instances, the sum of every
    worker's values (prometheus-client's multiprocess mode) and the environment's id.
    """
    if SHARED_DIRECTORY is None:
        return registry(), INSTANCE_ID
    registry()  # this worker's values reach the shared files from now on
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import CollectorRegistry

    summed = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(summed, str(SHARED_DIRECTORY))  # type: ignore[no-untyped-call]
    return summed, workers.environment_id(SHARED_DIRECTORY)
