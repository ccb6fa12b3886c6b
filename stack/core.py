"""`Stack`: Pushgateway + Prometheus + the OpenTelemetry Collector on loopback, as one context
manager."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

from stack._proc import Service, StackError
from stack.components import (
    FaultProxyProcess,
    OtelCollector,
    Prometheus,
    Pushgateway,
    Sample,
)


class Stack(Service):
    """The local observability stack.

        with Stack() as s:          # every port 0: free ports chosen automatically
            os.environ.update(s.env())
            ...                     # invoke the function
            s.wait_for_scrape()
            s.query_value("sum(healthz_calls_total)")

    Everything started is stopped on exit (also at interpreter exit if the caller forgot),
    and the temp dir (logs, TSDB, the Collector's span files) is removed unless keep_workdir=True.
    """

    def __init__(
        self,
        pushgateway_port: int = 0,
        prometheus_port: int = 0,
        otlp_grpc_port: int = 0,
        otlp_http_port: int = 0,
        delay_ms: int = 0,
        fail_status: int | None = None,
        otlp_fault_proxy: bool = False,
        workdir: Path | str | None = None,
        keep_workdir: bool = False,
    ) -> None:
        # A fault proxy in front of OTLP/HTTP only where a fault is wanted (set_fault needs it
        # from the start, as clients are given its URL): the Collector itself has no faults.
        want_proxy = otlp_fault_proxy or delay_ms > 0 or fail_status is not None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="healthz-stack-"))
        self.keep_workdir = keep_workdir
        try:
            # Resolving the binaries here makes a missing one fail before anything starts.
            self.pushgateway = Pushgateway(self.workdir, port=pushgateway_port)
            self.prometheus = Prometheus(self.workdir, pushgateway_port=0, port=prometheus_port)
            self.collector = OtelCollector(
                self.workdir,
                grpc_port=otlp_grpc_port,
                http_port=0 if want_proxy else otlp_http_port,
            )
        except StackError:
            self._remove_workdir()
            raise
        self._fault = (delay_ms, fail_status)
        self.otlp_proxy: FaultProxyProcess | None = None
        self._otlp_proxy_port = otlp_http_port if want_proxy else None
        self._started = False

    # -- lifecycle
    def start(self) -> Self:
        atexit.register(self.stop)
        try:
            self.collector.start()
            if self._otlp_proxy_port is not None:
                target = self.collector.http_endpoint
                proxy = FaultProxyProcess(
                    target, self.workdir, "otlp-faultproxy", self._otlp_proxy_port
                )
                self.otlp_proxy = proxy.start()
                self.set_fault(*self._fault)
            self.pushgateway.start()
            self.prometheus.pushgateway_port = self.pushgateway.port
            self.prometheus.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop everything that was started (idempotent), Prometheus first."""
        atexit.unregister(self.stop)
        errors: list[BaseException] = []
        for component in (self.prometheus, self.pushgateway, self.otlp_proxy, self.collector):
            if component is None:
                continue
            try:
                component.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self._started = False
        if not self.keep_workdir:
            self._remove_workdir()
        if errors:
            raise StackError(f"errors while stopping the stack: {errors}")

    def _remove_workdir(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- addresses
    @property
    def pushgateway_url(self) -> str:
        return self.pushgateway.url

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    @property
    def otlp_http_endpoint(self) -> str:
        """Base URL for OTEL_EXPORTER_OTLP_ENDPOINT with http/protobuf (the fault proxy's, if any;
        `collector.http_endpoint` is the Collector's own)."""
        return self.otlp_proxy.url if self.otlp_proxy is not None else self.collector.http_endpoint

    @property
    def otlp_grpc_endpoint(self) -> str:
        return self.collector.grpc_endpoint

    @property
    def pids(self) -> list[int]:
        """PIDs of the running children (tests check none is left behind)."""
        comps = (self.pushgateway, self.prometheus, self.collector, self.otlp_proxy)
        return [c.process.pid for c in comps if c is not None and c.process is not None]

    def env(self, protocol: str = "http/protobuf") -> dict[str, str]:
        """Environment variables that point the function at this stack."""
        endpoint = self.otlp_grpc_endpoint if protocol == "grpc" else self.otlp_http_endpoint
        return {
            "PUSHGATEWAY_URL": self.pushgateway_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        }

    # -- helpers for tests
    def query(self, promql: str) -> float | list[Sample]:
        return self.prometheus.query(promql)

    def query_value(self, promql: str) -> float | None:
        return self.prometheus.query_value(promql)

    def wait_for_scrape(self, after: float | None = None, timeout: float = 20.0) -> float:
        return self.prometheus.wait_for_scrape(after=after, timeout=timeout)

    def alerts(self) -> list[dict[str, Any]]:
        return self.prometheus.alerts()

    def spans(self, **filters: str) -> list[dict[str, Any]]:
        return self.collector.spans(**filters)

    def clear_spans(self) -> int:
        return self.collector.clear_spans()

    def set_fault(self, delay_ms: int = 0, fail_status: int | None = None) -> None:
        """OTLP/HTTP exports delayed, or answered `fail_status`, at the fault proxy (needs
        `otlp_fault_proxy=True`, or a `delay_ms`/`fail_status` at construction); every other
        fault is `otlp_proxy.set_mode`. OTLP/gRPC is never proxied: the proxy speaks HTTP/1.1."""
        if self.otlp_proxy is None:
            raise StackError("this stack has no OTLP fault proxy (otlp_fault_proxy=False)")
        if fail_status is not None:
            self.otlp_proxy.set_mode("status", status=fail_status)
        else:
            self.otlp_proxy.set_delay(delay_ms)

    def reset(self) -> None:
        """Forget pushed groups and received spans (between tests sharing one stack)."""
        self.pushgateway.wipe()
        self.collector.clear_spans()
