"""The health document (draft-inadarei-api-health-check), standard library only.

Kept apart from the handler so that the benchmark's bare floor answers exactly the same
document without importing any observability.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

VERSION = "1.0.0"
HEALTH_CONTENT_TYPE = "application/health+json"
_STARTED = time.monotonic()  # this execution environment's cold start


def health_document(service_id: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "status": "pass",
        "version": VERSION,
        # The deployed code version: a number behind the alias, $LATEST locally.
        "releaseId": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        "serviceId": service_id,
        "description": "health of the healthz Lambda function",
        "checks": {
            "uptime": [
                {
                    "componentType": "system",
                    "observedValue": round(time.monotonic() - _STARTED, 3),
                    "observedUnit": "s",
                    "status": "pass",
                    "time": now,
                }
            ]
        },
    }
