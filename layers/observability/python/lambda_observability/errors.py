"""The layer's one error base, and the kind of any failure in a word or two.

Every failure the layer reports is named by a *kind* (``refused``, ``timeout``, ``dns``,
``http 503``, ``malformed``, ``too large``, ...): the label readiness shows and the warning
logs. A kind never quotes a host, URL, header or credential, so it is safe anywhere.
"""

from __future__ import annotations

import re
import sys

from .sockets import gaierror


class TelemetryError(Exception):
    """A telemetry failure; ``kind`` says what went wrong, the message says more (redacted).

    ``causes`` holds the errors one failure summarises (one per span exporter, say).
    """

    kind: str = "error"

    def __init__(
        self, message: str, kind: str | None = None, causes: tuple[BaseException, ...] = ()
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.causes = causes


class DeadlineError(TelemetryError, TimeoutError):
    """The deadline passed before the work was complete."""

    kind = "timeout"


def failure_kind(error: BaseException | str) -> str:
    """What went wrong: the kind of the first error in the chain of causes that names one."""
    current: BaseException | None = error if isinstance(error, BaseException) else None
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _kind_of(current)
        if kind:
            return kind
        current = current.__cause__ or current.__context__
    return "error"


def _kind_of(error: BaseException) -> str | None:
    if isinstance(error, TelemetryError):
        if error.kind == TelemetryError.kind and error.causes:
            return failure_kind(error.causes[0])
        return error.kind
    if isinstance(error, gaierror):
        return "dns"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, TimeoutError):
        return "timeout"
    # An HTTPException exists only once http.client is loaded: do not import it for this.
    client = sys.modules.get("http.client")
    if client is not None and isinstance(error, client.HTTPException):
        return "malformed"
    if isinstance(error, ConnectionError):
        return "connection lost"
    return None


_secrets: set[str] = set()
_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")


def keep_secret(value: str | None) -> None:
    """Never show ``value`` in a message this layer writes (``describe`` masks it)."""
    if value and len(value) >= 3:  # shorter ones would mask ordinary words
        _secrets.add(value)


def describe(error: BaseException | str, limit: int = 500) -> str:
    """Type and message of ``error``, with every kept secret and URL credential masked."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub("//***@", text)[:limit]
