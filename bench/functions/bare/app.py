"""Configuration 1, the floor: the health answer, no logs, no traces, no metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.functions.health.python.health_logic import respond
else:  # at run time the layer's python/ directory is on the path, as /opt/python is on Lambda
    from health_logic import respond


def handler(event: Any, context: Any) -> dict[str, Any]:
    return respond(event)
