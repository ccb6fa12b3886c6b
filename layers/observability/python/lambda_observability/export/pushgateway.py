"""The metrics backend: this environment's registry, PUT to a Pushgateway as one group.

A Lambda environment has no long-running port for Prometheus to scrape, so each environment
pushes its registry under its own grouping key (job + an ``instance`` made at cold start): a
shared key would let concurrent environments overwrite each other's counters. Counters stay
cumulative, so a push that fails is made good by the next one.

Several gateways (``PUSHGATEWAY_URL`` as a comma-separated list) share the groups: each
environment pushes to the one its instance id hashes to, always the same, so a group is never
split between gateways.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import metrics
from ..config import Gateway, Settings
from ..config import gateways as read_gateways
from ..environment import INSTANCE_ID
from ..errors import DeadlineError, keep_secret
from .failures import FailureReporter
from .secrets import BasicAuthSecret

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

PushHandler = Callable[[str, str, float | None, list[tuple[str, str]], bytes], Callable[[], None]]


def gateway_for[T](gateways: Sequence[T], instance: str = INSTANCE_ID) -> T:
    """The gateway of ``gateways`` (``Gateway``s or URLs) that holds ``instance``'s group.

    A hash that every process computes alike (``hash()`` is salted per process), so that the
    janitor, a test or a person can tell where a group lives from its instance id.
    """
    import hashlib  # on first use: its import is a few ms of init (importtime.md)

    if not gateways:
        raise ValueError("no Pushgateway URL")
    digest = hashlib.sha256(instance.encode()).digest()
    return gateways[int.from_bytes(digest[:8], "big") % len(gateways)]


def push_handler(credentials: tuple[str, str] | None, deadline: float | None = None) -> PushHandler:
    """prometheus-client's push handler protocol over the layer's HTTP client; raises a
    ``TelemetryError`` on any answer but a 2xx. Without ``deadline``, each request gets
    prometheus-client's ``timeout`` as its overall deadline."""
    import base64

    from .http_client import request

    authorization = None
    if credentials is not None:
        keep_secret(credentials[1])
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        authorization = f"Basic {token}"
        keep_secret(token)

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def send() -> None:
            all_headers = dict(headers)
            if authorization is not None:
                all_headers["Authorization"] = authorization
            end = deadline if deadline is not None else time.monotonic() + (timeout or 30.0)
            request(url, method, end, all_headers, data)

        return send

    return handler


def push_code() -> tuple[Callable[..., None], Callable[..., PushHandler]]:
    """prometheus-client's push and the layer's handler for it.

    Imported on first use, not at cold start: a push comes after the response in async mode.
    Loaded before a push's deadline starts (``PushgatewayBackend.prepare``), so that the
    deadline bounds the network and not an import of tens of milliseconds.
    """
    from prometheus_client.exposition import push_to_gateway

    from . import http_client  # noqa: F401  (loaded now, not inside the deadline)

    return push_to_gateway, push_handler


def push(
    gateways: str | Sequence[Gateway],
    job: str,
    deadline: float,
    credentials: tuple[str, str] | None = None,
    *,
    registry: CollectorRegistry | None = None,
    instance: str = INSTANCE_ID,
) -> None:
    """PUT this environment's whole group by ``deadline`` (monotonic); raises on any failure.

    ``gateways``: ``PUSHGATEWAY_URL`` as configured, or its reading (``config.gateways``).
    ``credentials`` default to the chosen gateway's own (``user:password@`` in its URL).
    ``registry`` and ``instance`` default to this environment's; the scale benchmark passes
    its simulated environments' own.
    """
    push_to_gateway, handler = push_code()
    gateway = gateway_for(
        read_gateways(gateways) if isinstance(gateways, str) else gateways, instance
    )
    push_to_gateway(
        gateway.url,
        job=job,
        registry=registry if registry is not None else metrics.registry(),
        grouping_key={"instance": instance},
        timeout=None,
        handler=handler(credentials or gateway.credentials, deadline),
    )


class PushgatewayBackend:
    """Pushes the registry ``source`` makes as the group ``instance``; with ``leader``, only
    while it says so, except for the final push (every LMI worker sends the environment's sum
    at SIGTERM, so that the last one to finish carries every count).

    ``source`` runs at the first export, not at cold start: it makes the registry, and with
    it imports prometheus-client (``metrics.py``)."""

    name = "pushgateway"
    carries_failures = True

    def __init__(
        self,
        settings: Settings,
        reporter: FailureReporter,
        source: Callable[[], CollectorRegistry] = metrics.registry,
        instance: str = INSTANCE_ID,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._reporter = reporter
        self._source = source
        self._registry: CollectorRegistry | None = None
        self.instance = instance
        self._leader = leader
        self._secret = (
            BasicAuthSecret(settings.pushgateway_auth_secret_arn, settings.pushgateway_timeout)
            if settings.pushgateway_auth_secret_arn
            else None
        )

    def checks(self) -> dict[str, str]:
        checks = {"pushgateway:push": self.name}
        if self._secret is not None:
            checks["secrets:credentials"] = "secrets"
        return checks

    def prepare(self) -> None:
        push_code()
        if self._registry is None:
            self._registry = self._source()

    def send(self, deadline: float, final: bool = False) -> bool:
        if self._leader is not None and not final and not self._leader():
            return False  # another worker pushes the environment's group
        deadline = min(deadline, time.monotonic() + self._settings.pushgateway_timeout)
        credentials = None
        if self._secret is not None:
            credentials = self._secret.credentials(deadline)  # SecretError names "secrets"
            self._reporter.succeeded("secrets")
        if deadline <= time.monotonic():
            raise DeadlineError("no time left to push")
        push(
            self._settings.pushgateways,
            self._settings.pushgateway_job,
            deadline,
            credentials,
            registry=self._registry if self._registry is not None else self._source(),
            instance=self.instance,
        )
        return True
