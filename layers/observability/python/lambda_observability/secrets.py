"""Pushgateway basic-auth credentials from AWS Secrets Manager, through Powertools Parameters.

The secret is JSON ``{"username": "...", "password": "..."}``; its ARN comes from
``PUSHGATEWAY_AUTH_SECRET_ARN``. Credentials never come from plain template text, and neither
they nor the secret's body ever appear in an error message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

CACHE_SECONDS = 300  # Powertools' cache: one Secrets Manager call per environment per 5 minutes
RETRY_AFTER_FAILURE_SECONDS = 30.0  # a failing lookup is not retried on every push


class SecretError(Exception):
    """Raised with a message that never includes the secret's value."""


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
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def credentials(self) -> tuple[str, str]:
        with self._lock:
            failed_at = self._failed_at
            if failed_at is not None and self._clock() - failed_at < RETRY_AFTER_FAILURE_SECONDS:
                raise SecretError("secret lookup failed recently; retrying later")
            try:
                value = self._fetch()
            except Exception as error:
                self._failed_at = self._clock()
                # Types only (Powertools' error and its cause, e.g. ConnectTimeoutError): a
                # transform error's message could quote the secret's text.
                cause = error.__cause__ or error.__context__
                kind = type(error).__name__ + (f" ({type(cause).__name__})" if cause else "")
                raise SecretError(f"cannot read secret {self._arn}: {kind}") from None
            self._failed_at = None
        if not isinstance(value, dict):
            raise SecretError(f"secret {self._arn} is not a JSON object")
        username, password = value.get("username"), value.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise SecretError(f"secret {self._arn} needs string fields username and password")
        return username, password

    def _fetch(self) -> Any:
        if self._provider is None:
            # boto3 costs hundreds of milliseconds to import: only functions that use auth pay it,
            # and only at their first push.
            from aws_lambda_powertools.utilities.parameters import SecretsProvider
            from botocore.config import Config

            # Short timeouts and no retries: a slow Secrets Manager must not stall the flush.
            config = Config(
                connect_timeout=self._timeout,
                read_timeout=self._timeout,
                retries={"max_attempts": 1, "mode": "standard"},
            )
            self._provider = SecretsProvider(boto_config=config)
        return self._provider.get(self._arn, max_age=CACHE_SECONDS, transform="json")
