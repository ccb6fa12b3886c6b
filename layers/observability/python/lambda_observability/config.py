"""Settings read once per execution environment from environment variables.

OpenTelemetry reads its own ``OTEL_*`` variables and Powertools its ``POWERTOOLS_*`` ones; this
module holds only what neither covers, each with an explicit default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PUSH_TIMEOUT_SECONDS = 0.5
# Chosen by measurement (bench/results/policy.md): see the README, "When telemetry leaves".
DEFAULT_EXPORT_INTERVAL_SECONDS = 20.0
DEFAULT_EXPORT_SPARSE_GAP_SECONDS = 1.0
EXPORT_MODES = ("auto", "async", "sync")


@dataclass(frozen=True)
class Settings:
    service_name: str
    # One Pushgateway URL, or several separated by commas (see ``pushgateway_urls``).
    pushgateway_url: str | None
    pushgateway_job: str
    pushgateway_timeout: float
    pushgateway_auth_secret_arn: str | None
    export_mode: str = "auto"
    runtime_api: str | None = None
    export_interval: float = DEFAULT_EXPORT_INTERVAL_SECONDS
    export_sparse_gap: float = DEFAULT_EXPORT_SPARSE_GAP_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        # One service name for logs, spans and metrics, whichever standard variable sets it.
        service = (
            env.get("OTEL_SERVICE_NAME")
            or env.get("POWERTOOLS_SERVICE_NAME")
            or env.get("AWS_LAMBDA_FUNCTION_NAME")
            or "unknown_service"
        )
        return cls(
            service_name=service,
            pushgateway_url=",".join(pushgateway_urls(env.get("PUSHGATEWAY_URL"))) or None,
            pushgateway_job=env.get("PUSHGATEWAY_JOB") or service,
            pushgateway_timeout=_positive_float(
                env.get("PUSHGATEWAY_TIMEOUT_SECONDS"), DEFAULT_PUSH_TIMEOUT_SECONDS
            ),
            pushgateway_auth_secret_arn=env.get("PUSHGATEWAY_AUTH_SECRET_ARN") or None,
            export_mode=_choice(env.get("OBSERVABILITY_EXPORT_MODE"), EXPORT_MODES),
            runtime_api=env.get("AWS_LAMBDA_RUNTIME_API") or None,
            export_interval=_non_negative_float(
                env.get("OBSERVABILITY_EXPORT_INTERVAL_SECONDS"), DEFAULT_EXPORT_INTERVAL_SECONDS
            ),
            export_sparse_gap=_non_negative_float(
                env.get("OBSERVABILITY_EXPORT_SPARSE_GAP_SECONDS"),
                DEFAULT_EXPORT_SPARSE_GAP_SECONDS,
            ),
        )


def pushgateway_urls(raw: str | None) -> tuple[str, ...]:
    """The gateways of ``PUSHGATEWAY_URL``: one URL or a comma-separated list, in order.

    Blanks and repeats are dropped: a repeated URL would take a double share of the groups.
    """
    parts = (part.strip() for part in (raw or "").split(","))
    return tuple(dict.fromkeys(part for part in parts if part))


def _positive_float(raw: str | None, default: float) -> float:
    # A typo in a timeout must not take the function down: fall back to the default.
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def _non_negative_float(raw: str | None, default: float) -> float:
    # 0 is meaningful here (export after every invocation); a typo falls back to the default.
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value >= 0 else default


def _choice(raw: str | None, choices: tuple[str, ...]) -> str:
    value = (raw or "").strip().lower()
    return value if value in choices else choices[0]
