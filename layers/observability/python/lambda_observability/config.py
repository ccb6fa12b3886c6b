"""Settings read once per execution environment from environment variables.

OpenTelemetry reads its own ``OTEL_*`` variables and Powertools its ``POWERTOOLS_*`` ones; this
module holds what neither covers, each with an explicit default, and the one way the layer
reads any variable: a value it cannot use is a *problem* (a warning at cold start, logged by
``instrument``) and the default, never an init failure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

DEFAULT_PUSH_TIMEOUT_SECONDS = 0.5
# Chosen by measurement (bench/results/policy.md): see the README, "When telemetry leaves".
DEFAULT_EXPORT_INTERVAL_SECONDS = 20.0
DEFAULT_EXPORT_SPARSE_GAP_SECONDS = 1.0
EXPORT_MODES = ("auto", "async", "sync")
SWITCH = ("on", "off")


# NamedTuples, not dataclasses, for the records made at cold start: a dataclass's creation
# imports inspect and compiles its methods (bench/results/importtime.md).
class Problem(NamedTuple):
    """A variable whose value was not used; ``value`` is None where it may hold a secret."""

    variable: str
    reason: str
    default: str
    value: str | None = None

    def as_log(self) -> dict[str, str]:
        fields = {"variable": self.variable, "reason": self.reason, "using": self.default}
        if self.value is not None:
            fields["value"] = repr(self.value[:40])
        return fields


_problems: list[Problem] = []


def problem(item: Problem) -> None:
    if item not in _problems:
        _problems.append(item)


def take_problems() -> list[Problem]:
    """The problems found so far, each handed out once (logged once per environment)."""
    taken = list(_problems)
    _problems.clear()
    return taken


def number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    inclusive: bool = False,
    integer: bool = False,
    maximum: float | None = None,
) -> float:
    """A number above ``minimum`` (or equal, if ``inclusive``) and at most ``maximum``, else
    ``default`` and a problem.

    ASCII digits only: ``str.isdigit`` accepts ``²``, which ``int`` refuses.
    """
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        if not raw.isascii():
            raise ValueError
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        problem(Problem(name, f"not {kind}", str(default), raw))
        return default
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf
        problem(Problem(name, "not a finite number", str(default), raw))
        return default
    if value < minimum or (value == minimum and not inclusive):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        problem(Problem(name, f"must be {bound}", str(default), raw))
        return default
    if maximum is not None and value > maximum:
        problem(Problem(name, f"must be <= {maximum:g}", str(default), raw))
        return default
    return value


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive), else the first and a problem."""
    raw = (env.get(name) or "").strip()
    value = raw.lower()
    if not value:
        return choices[0]
    if value not in choices:
        problem(Problem(name, f"not one of {', '.join(choices)}", choices[0], raw))
        return choices[0]
    return value


class Gateway(NamedTuple):
    """One Pushgateway: its URL without credentials (safe to log), and the credentials."""

    url: str
    credentials: tuple[str, str] | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"Gateway(url={self.url!r})"


def gateways(raw: str | None, variable: str = "PUSHGATEWAY_URL") -> tuple[Gateway, ...]:
    """The gateways of ``PUSHGATEWAY_URL``: one URL or a comma-separated list, in order.

    ``user:password@`` in a URL becomes basic auth (percent-encode ``#``, ``/``, ``?`` or ``@``
    in a password). Blanks and repeats are dropped: a repeated URL would take a double share
    of the groups. A URL that cannot be used is left out, with a problem that never quotes it.
    """
    found: dict[str, Gateway] = {}
    for position, part in enumerate((raw or "").split(","), start=1):
        text = part.strip()
        if not text:
            continue
        gateway = _gateway(text)
        if isinstance(gateway, str):
            problem(Problem(f"{variable} (entry {position})", gateway, "left out"))
            continue
        found.setdefault(gateway.url, gateway)
    return tuple(found.values())


def _gateway(text: str) -> Gateway | str:
    if "://" not in text:
        text = f"http://{text}"  # as prometheus-client reads a bare host:port
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError, quoting the netloc: never shown
    except ValueError:
        return "not a valid URL (percent-encode # / ? @ in a password)"
    if parts.scheme not in ("http", "https"):
        return "scheme must be http or https"
    if not parts.hostname:
        return "no host"
    if parts.fragment or parts.query:
        return "a query or fragment is not allowed (percent-encode # and ? in a password)"
    credentials = None
    if parts.username is not None:
        credentials = (unquote(parts.username), unquote(parts.password or ""))
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port is not None else "")
    return Gateway(f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}", credentials)


class Settings(NamedTuple):
    service_name: str
    pushgateways: tuple[Gateway, ...]
    pushgateway_job: str
    pushgateway_timeout: float
    pushgateway_auth_secret_arn: str | None
    export_mode: str = "auto"
    runtime_api: str | None = None
    export_interval: float = DEFAULT_EXPORT_INTERVAL_SECONDS
    export_sparse_gap: float = DEFAULT_EXPORT_SPARSE_GAP_SECONDS
    telemetry_api: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        service = service_name(env)
        return cls(
            service_name=service,
            pushgateways=gateways(env.get("PUSHGATEWAY_URL")),
            pushgateway_job=env.get("PUSHGATEWAY_JOB") or service,
            pushgateway_timeout=number(
                env, "PUSHGATEWAY_TIMEOUT_SECONDS", DEFAULT_PUSH_TIMEOUT_SECONDS
            ),
            pushgateway_auth_secret_arn=env.get("PUSHGATEWAY_AUTH_SECRET_ARN") or None,
            export_mode=choice(env, "OBSERVABILITY_EXPORT_MODE", EXPORT_MODES),
            runtime_api=env.get("AWS_LAMBDA_RUNTIME_API") or None,
            export_interval=number(
                env,
                "OBSERVABILITY_EXPORT_INTERVAL_SECONDS",
                DEFAULT_EXPORT_INTERVAL_SECONDS,
                inclusive=True,  # 0: export after every invocation
            ),
            export_sparse_gap=number(
                env,
                "OBSERVABILITY_EXPORT_SPARSE_GAP_SECONDS",
                DEFAULT_EXPORT_SPARSE_GAP_SECONDS,
                inclusive=True,
            ),
            telemetry_api=choice(env, "OBSERVABILITY_TELEMETRY_API", SWITCH) == "on",
        )


def service_name(env: Mapping[str, str] = os.environ) -> str:
    """One service name for logs, spans and metrics, whichever standard variable sets it."""
    return (
        env.get("OTEL_SERVICE_NAME")
        or env.get("POWERTOOLS_SERVICE_NAME")
        or env.get("AWS_LAMBDA_FUNCTION_NAME")
        or "unknown_service"
    )
