"""A header the propagators cannot encode starts a new trace instead of failing the request."""

from __future__ import annotations

from typing import Any

from tests.badinput.test_hostile_events import assert_clean_logs, invoke
from tests.conftest import load_event


def test_unencodable_baggage_header_is_contained() -> None:
    event: dict[str, Any] = load_event("rest-get.json")
    event["headers"] = {"baggage": "\ud800"}  # JSON "\ud800": a lone surrogate
    response, lines, _ = invoke(event)
    assert response["statusCode"] == 200
    assert_clean_logs(lines)
