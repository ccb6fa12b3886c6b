"""The health answer alone, without any observability: what every benchmarked handler returns.

The same document (imported from functions/healthz/health.py) and status codes as
functions/healthz/app.py, with nothing but the standard library: the benchmark's floor.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# The real function's health document (functions/healthz/health.py, standard library only), so
# that every configuration answers with the same code.
sys.path.append(str(Path(__file__).resolve().parents[4] / "functions" / "healthz"))
from health import HEALTH_CONTENT_TYPE, health_document


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
