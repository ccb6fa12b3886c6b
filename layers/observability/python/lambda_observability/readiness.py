"""Is telemetry getting out? A readiness document built from what the layer already recorded.

``document()`` answers ``application/health+json`` (draft-inadarei-api-health-check) with one
check per telemetry backend in use: ``pushgateway:push``, ``otlp:export`` and, when a secret is
configured, ``secrets:credentials``, as each backend names them. It never contacts a backend:
it reads the outcome of the latest attempts (``export.failures``). Trouble is ``warn``, never
``fail``: the draft makes warn a 2xx, and telemetry trouble must not make a function look down
or flap a probe.

``output`` holds only the kind of the last failure (``refused``, ``timeout``, ``dns``,
``http 503``, ``malformed``, ...), never a URL, host, header, credential or exception text.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from . import export
from .export.failures import BackendState, FailureReporter, reporter

NOT_TRIED = "not tried yet in this environment"
CONTENT_TYPE = "application/health+json"


def checks_in_use() -> dict[str, str]:
    """Check name -> backend name (as in ``telemetry_export_failures_total``), from each
    backend of this environment's exporter; none before ``@observe`` has built it."""
    exporter = export.current()
    out: dict[str, str] = {}
    for backend in exporter.backends if exporter is not None else ():
        out.update(backend.checks())
    return out


def document(source: FailureReporter = reporter) -> dict[str, Any]:
    """The readiness document of this execution environment; its ``status`` is pass or warn."""
    states = source.states()
    now = time.monotonic()
    checks = {name: [_check(states.get(backend), now)] for name, backend in checks_in_use().items()}
    warn = any(c[0]["status"] == "warn" for c in checks.values())
    return {
        "status": "warn" if warn else "pass",
        "description": "whether this execution environment's telemetry is getting out",
        "checks": checks,
    }


def _check(state: BackendState | None, now: float) -> dict[str, Any]:
    if state is None:
        return {"status": "pass", "output": NOT_TRIED}
    check: dict[str, Any] = {
        "status": "warn" if state.failing else "pass",
        "time": datetime.datetime.fromtimestamp(state.last_attempt_wall, datetime.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
    }
    if state.last_success is not None:
        check["observedValue"] = round(now - state.last_success, 3)
        check["observedUnit"] = "s"
    if state.failing:
        check["output"] = state.failure_kind
    return check
