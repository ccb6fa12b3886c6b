"""The health answer alone, without any observability: what every benchmarked handler returns.

The same document and status codes as functions/healthz/app.py (draft-inadarei-api-health-check),
with nothing but the standard library: the benchmark's floor.
"""

from __future__ import annotations

import json
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


def _answer(status: int, content_type: str, body: str, **headers: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, **headers},
        "body": body,
        "isBase64Encoded": False,
    }


def respond(event: Any) -> dict[str, Any]:
    """GET/HEAD /healthz answers health+json; other methods 405, other paths 404."""
    if not isinstance(event, dict):
        return _answer(400, "application/json", '{"statusCode": 400, "message": "Bad request"}')
    method = str(event.get("httpMethod") or "").upper()
    path = str(event.get("path") or "")
    if path != "/healthz":
        return _answer(404, "application/json", '{"statusCode": 404, "message": "Not found"}')
    if method not in ("GET", "HEAD"):
        body = '{"statusCode": 405, "message": "Method not allowed"}'
        return _answer(405, "application/json", body, Allow="GET, HEAD")
    service = os.environ.get("OTEL_SERVICE_NAME") or "healthz"
    body = "" if method == "HEAD" else json.dumps(health_document(service))
    return _answer(200, HEALTH_CONTENT_TYPE, body)
