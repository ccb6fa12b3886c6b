"""Pushgateway basic-auth credentials from AWS Secrets Manager, through Powertools Parameters.

The secret is JSON ``{"username": "...", "password": "..."}``; its ARN comes from
``PUSHGATEWAY_AUTH_SECRET_ARN``. Credentials never come from plain template text, and neither
they nor the secret's body ever appear in an error message.

botocore bounds each socket read, not the call, and has no public way to hand its request to
another client without breaking in-process mocks (every ``before-send`` handler runs). So the
lookup runs in a thread of its own, one at a time, and the caller waits for it only until its
deadline: a Secrets Manager endpoint that trickles its answer costs the push, never the
invocation, and never a second thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import TelemetryError, failure_kind, keep_secret

CACHE_SECONDS = 300  # one Secrets Manager call per environment per 5 minutes
RETRY_AFTER_FAILURE_SECONDS = 30.0  # a failed lookup is retried 30 s after it began
# A lookup still unanswered after this (boto3's import, connect and read included) is given up.
GIVE_UP_SECONDS = 5.0


class SecretError(TelemetryError):
    """Raised with a message that never includes the secret's value."""

    backend = "secrets"  # the failure is the credentials', not the push's


class _Lookup:
    """One lookup in flight: its thread, then its value or error."""

    def __init__(self, fetch: Callable[[], Any], started: float) -> None:
        self.started = started
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(fetch,), name="secret-lookup", daemon=True).start()

    def _run(self, fetch: Callable[[], Any]) -> None:
        try:
            self.value = fetch()
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()


class BasicAuthSecret:
    def __init__(
        self,
        arn: str,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._arn = arn
        self._timeout = timeout
        self._clock = clock
        self._provider: Any = None
        self._lock = threading.Lock()  # guards the fields below; never held across I/O
        self._cached: tuple[tuple[str, str], float] | None = None
        self._failed_at: float | None = None
        self._failed_kind = "error"
        self._lookup: _Lookup | None = None

    def credentials(self, deadline: float | None = None) -> tuple[str, str]:
        """The credentials, cached, or looked up by ``deadline`` (``time.monotonic``)."""
        now = self._clock()
        with self._lock:
            if self._cached is not None and now < self._cached[1]:
                return self._cached[0]
            lookup = self._lookup
            if lookup is not None and now - lookup.started > GIVE_UP_SECONDS:
                # Stuck (an endpoint that trickles its answer): abandon it, as a failure that
                # happened when it began. Its thread ends with botocore's connection.
                self._failed_at, self._lookup, lookup = lookup.started, None, None
                self._failed_kind = "timeout"
            if self._failed_at is not None and now - self._failed_at < RETRY_AFTER_FAILURE_SECONDS:
                raise SecretError(
                    "secret lookup failed recently; retrying later", self._failed_kind
                )
            if lookup is None:
                lookup = self._lookup = _Lookup(self._fetch, now)
        wait = (deadline if deadline is not None else time.monotonic() + self._timeout) - (
            time.monotonic()
        )
        if not lookup.done.wait(max(wait, 0.0)):
            raise SecretError(
                f"cannot read secret {self._arn}: no answer by the deadline", "timeout"
            )
        with self._lock:
            if self._lookup is lookup:
                self._lookup = None
                if lookup.error is not None:
                    self._failed_at = lookup.started
                    self._failed_kind = failure_kind(lookup.error)
        if lookup.error is not None:
            raise SecretError(
                f"cannot read secret {self._arn}: {lookup.error}", failure_kind(lookup.error)
            )
        credentials = _parse(self._arn, lookup.value)
        keep_secret(credentials[1])
        with self._lock:
            self._failed_at = None
            self._cached = (credentials, self._clock() + CACHE_SECONDS)
        return credentials

    def _fetch(self) -> Any:
        if self._provider is None:
            # boto3 costs hundreds of milliseconds to import: only functions that use auth
            # pay it, and only at their first push.
            from aws_lambda_powertools.utilities.parameters import SecretsProvider
            from botocore.config import Config

            # Short timeouts and one attempt: a failed lookup is retried by a later push.
            config = Config(
                connect_timeout=self._timeout,
                read_timeout=self._timeout,
                retries={"max_attempts": 1, "mode": "standard"},
            )
            self._provider = SecretsProvider(boto_config=config)
        try:
            return self._provider.get(self._arn, max_age=CACHE_SECONDS, transform="json")
        except Exception as error:
            raise _summary(error) from None


def _summary(error: Exception) -> SecretError:
    """botocore's and Powertools' error as a kind and type names only: a transform error's
    message could quote the secret's text."""
    from aws_lambda_powertools.utilities.parameters.exceptions import TransformParameterError
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

    cause = error.__cause__ or error.__context__
    names = type(error).__name__ + (f" ({type(cause).__name__})" if cause else "")
    chain = [error, cause] if cause is not None else [error]
    kind = "error"
    for item in chain:
        if isinstance(item, ConnectTimeoutError | ReadTimeoutError):
            kind = "timeout"
        elif isinstance(item, TransformParameterError):
            kind = "malformed"
        elif isinstance(item, ClientError):
            status = item.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            kind = f"http {status}" if isinstance(status, int) else "error"
        else:
            kind = failure_kind(item)
        if kind != "error":
            break
    return SecretError(names, kind)


def _parse(arn: str, value: Any) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise SecretError(f"secret {arn} is not a JSON object", "malformed")
    username, password = value.get("username"), value.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise SecretError(f"secret {arn} needs string fields username and password", "malformed")
    return username, password
