"""Distinctive secret values planted in every request the reliability suites send.

Each suite sends these as ``Authorization``, ``Cookie`` and ``X-Api-Key`` headers and as query
tokens, and stores the Pushgateway's basic-auth credentials in (moto's) Secrets Manager; then it
scans everything it captured (runtime output, spans, response bodies, Pushgateway groups) with
``leaks``. A value that shows up anywhere is a leak.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

AUTHORIZATION = "Bearer planted-authz-7c1e9f03"
COOKIE = "session=planted-cookie-4b2d81aa; theme=dark"
API_KEY = "planted-apikey-93fa0c55"
QUERY_TOKEN = "planted-qtoken-5e6d2719"
QUERY_ACCESS_TOKEN = "planted-qaccess-0d3b8c46"
PUSHGATEWAY_USER = "pusher-planted-u-61c0"
PUSHGATEWAY_PASSWORD = "planted-pgwpass-d41f6a2e"

HEADERS: dict[str, str] = {
    "Authorization": AUTHORIZATION,
    "Cookie": COOKIE,
    "X-Api-Key": API_KEY,
}
QUERY: dict[str, str] = {"token": QUERY_TOKEN, "access_token": QUERY_ACCESS_TOKEN}
PUSHGATEWAY_SECRET: dict[str, str] = {
    "username": PUSHGATEWAY_USER,
    "password": PUSHGATEWAY_PASSWORD,
}

# What must never appear: the distinctive core of each value, and the basic-auth header the
# Pushgateway push carries (base64 of user:password).
NEEDLES: tuple[str, ...] = (
    "planted-authz-7c1e9f03",
    "planted-cookie-4b2d81aa",
    "planted-apikey-93fa0c55",
    "planted-qtoken-5e6d2719",
    "planted-qaccess-0d3b8c46",
    "pusher-planted-u-61c0",
    "planted-pgwpass-d41f6a2e",
    base64.b64encode(f"{PUSHGATEWAY_USER}:{PUSHGATEWAY_PASSWORD}".encode()).decode(),
)


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def leaks(captured: Iterable[Any]) -> list[tuple[str, str]]:
    """(needle, excerpt) for every planted value found in the captured texts or JSON values."""
    found: list[tuple[str, str]] = []
    for item in captured:
        text = as_text(item)
        for needle in NEEDLES:
            at = text.find(needle)
            if at >= 0:
                found.append((needle, text[max(at - 120, 0) : at + 120]))
    return found
