"""The secret's reader under a Secrets Manager that never finishes its answer.

botocore bounds each socket read, not the call: an endpoint that trickles its answer would hold
a push for minutes. The reader waits only until the caller's deadline, keeps one lookup in
flight at a time, and gives up a lookup that is stuck.
"""

from __future__ import annotations

import threading
import time

import pytest

from lambda_observability.export.secrets import (
    GIVE_UP_SECONDS,
    RETRY_AFTER_FAILURE_SECONDS,
    BasicAuthSecret,
    SecretError,
)
from tests.unit.test_flush import FakeClock

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgw-AbCdEf"


class StuckFetch:
    """A lookup that blocks until released, counting calls and threads."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        self.release.wait(10)
        return {"username": "pusher", "password": "pw-123"}


def _secret(fetch: StuckFetch, clock: FakeClock) -> BasicAuthSecret:
    secret = BasicAuthSecret(ARN, timeout=0.2, clock=clock)
    secret._fetch = fetch  # type: ignore[method-assign]
    return secret


def test_a_stuck_lookup_costs_each_caller_its_deadline_and_one_thread() -> None:
    clock, fetch = FakeClock(), StuckFetch()
    secret = _secret(fetch, clock)
    threads_before = threading.active_count()
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(SecretError, match="no answer by the deadline") as error:
            secret.credentials(time.monotonic() + 0.1)
        assert time.monotonic() - started < 0.5
        assert ARN in str(error.value)
    # One lookup in flight, shared by every caller: no thread piles up.
    assert fetch.calls == 1
    assert threading.active_count() == threads_before + 1
    fetch.release.set()
    # Once it answers, the value serves every caller from the cache.
    assert secret.credentials(time.monotonic() + 1) == ("pusher", "pw-123")
    assert secret.credentials(time.monotonic() + 1) == ("pusher", "pw-123")
    assert fetch.calls == 1


def test_a_stuck_lookup_is_given_up_and_retried_after_the_backoff() -> None:
    clock, fetch = FakeClock(), StuckFetch()
    secret = _secret(fetch, clock)
    began = clock.now
    with pytest.raises(SecretError, match="no answer by the deadline"):
        secret.credentials(time.monotonic() + 0.05)
    clock.now = began + GIVE_UP_SECONDS + 1
    # Given up: it counts as a failure from when it began, so no new lookup yet.
    with pytest.raises(SecretError, match="failed recently"):
        secret.credentials(time.monotonic() + 0.05)
    assert fetch.calls == 1
    clock.now = began + RETRY_AFTER_FAILURE_SECONDS + 0.1
    fetch.release.set()  # the endpoint is healthy again
    assert secret.credentials(time.monotonic() + 1) == ("pusher", "pw-123")
    assert fetch.calls == 2


def test_cached_credentials_expire() -> None:
    clock, fetch = FakeClock(), StuckFetch()
    fetch.release.set()
    secret = _secret(fetch, clock)
    assert secret.credentials(time.monotonic() + 1) == ("pusher", "pw-123")
    clock.now += 299
    secret.credentials(time.monotonic() + 1)
    assert fetch.calls == 1
    clock.now += 2
    secret.credentials(time.monotonic() + 1)
    assert fetch.calls == 2
