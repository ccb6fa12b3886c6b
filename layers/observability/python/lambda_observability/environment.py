"""This execution environment: who it is, how Lambda started it, and whether a call is cold.

One truth for logs, spans and metrics. A *cold start* is an invocation that waited for this
environment's initialisation: the first one of an on-demand or SnapStart environment.
Environments that Lambda initialises before routing traffic to them never have one: provisioned
concurrency (Powertools' Logger agrees) and Lambda Managed Instances, whose init finishes before
the first request is sent.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

# Made once per process; also the OpenTelemetry resource's service.instance.id.
INSTANCE_ID = uuid.uuid4().hex

MANAGED_INSTANCES = "lambda-managed-instances"
_INITIALISED_AHEAD = ("provisioned-concurrency", MANAGED_INSTANCES)


def initialization_type(env: Mapping[str, str] = os.environ) -> str:
    """on-demand, provisioned-concurrency, snap-start or lambda-managed-instances."""
    return (env.get("AWS_LAMBDA_INITIALIZATION_TYPE") or "on-demand").strip().lower()


def is_managed_instances(env: Mapping[str, str] = os.environ) -> bool:
    """Lambda Managed Instances: several workers, never frozen, no per-millisecond billing."""
    return initialization_type(env) == MANAGED_INSTANCES or bool(
        (env.get("AWS_LAMBDA_MAX_CONCURRENCY") or "").strip()
    )


def first_call_is_cold(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this environment's first invocation waited for its init."""
    return initialization_type(env) not in _INITIALISED_AHEAD and not is_managed_instances(env)
