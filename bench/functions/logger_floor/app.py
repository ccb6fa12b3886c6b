"""The floor of any design that keeps the seed's log line on Powertools' Logger (issue 21).

The bare handler plus the layer's logger module alone: Powertools' Logger as the layer builds
it (its package ``__init__`` and jmespath deferred, the span-id filter), and nothing else of
the layer: no span, no metrics, no extension, no export. ``bench.importtime`` measures its
import at init beside the bare handler's and ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lambda_observability.logs import logger

if TYPE_CHECKING:
    from bench.functions.health.python.health_logic import respond
else:  # the health layer's python/ directory is on the path, as /opt/python is on Lambda
    from health_logic import respond


def handler(event: Any, context: Any) -> dict[str, Any]:
    logger.info("Monitoring endpoint invoked! Counter was incremented!")
    return respond(event)
