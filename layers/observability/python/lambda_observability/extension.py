"""A client of the Lambda Extensions API, for an internal extension (a thread of the runtime).

Registering an extension changes Lambda's lifecycle in the two ways async export needs: an
invocation ends only when every extension asks for its next event, so work done between the
runtime's response and that request runs after the client has its answer; and the runtime
process gets SIGTERM before shutdown.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

EXTENSION_NAME = "lambda_observability"
_API_VERSION = "2020-01-01"


class ExtensionError(Exception):
    pass


class ExtensionClient:
    def __init__(self, runtime_api: str, register_timeout: float = 1.0) -> None:
        host, _, port = runtime_api.partition(":")
        self._host = host
        self._port = int(port or 80)
        self._register_timeout = register_timeout
        self._identifier: str | None = None

    def register(self) -> str:
        """Register for INVOKE events (internal extensions may not ask for SHUTDOWN)."""
        status, headers, body = self._request(
            "POST",
            f"/{_API_VERSION}/extension/register",
            {"Lambda-Extension-Name": EXTENSION_NAME},
            json.dumps({"events": ["INVOKE"]}).encode(),
            timeout=self._register_timeout,
        )
        identifier = headers.get("lambda-extension-identifier")
        if status != 200 or not identifier:
            raise ExtensionError(f"register answered {status}: {body[:200]!r}")
        self._identifier = identifier
        return identifier

    def next_event(self) -> dict[str, Any]:
        """Block until the next event: this also tells Lambda the previous one is done."""
        if self._identifier is None:
            raise ExtensionError("not registered")
        # No timeout: the call legitimately blocks while the environment is frozen.
        status, _, body = self._request(
            "GET",
            f"/{_API_VERSION}/extension/event/next",
            {"Lambda-Extension-Identifier": self._identifier},
            None,
            timeout=None,
        )
        if status != 200:
            raise ExtensionError(f"event/next answered {status}: {body[:200]!r}")
        event: dict[str, Any] = json.loads(body)
        return event

    def _request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()
