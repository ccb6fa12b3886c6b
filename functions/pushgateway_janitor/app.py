"""Pushgateway janitor: delete the groups of dead Lambda execution environments.

Each execution environment pushes its metrics to its own group
(job=<service>, instance=<uuid made at cold start>). Environments die silently and the
Pushgateway never forgets a group, so Prometheus would keep scraping their last values
forever. This deletes the groups of one job whose last push is older than a TTL.

With several gateways (``PUSHGATEWAY_URL`` a comma-separated list, as the function reads it)
every one is swept; a gateway that cannot be listed is reported and the others still swept.

Lambda: handler ``app.handler`` (run it on a schedule). Configuration by environment:
  PUSHGATEWAY_URL                 e.g. http://pushgateway.internal:9091 (required), or
                                  several separated by commas
  PUSHGATEWAY_JOB                 job whose groups are swept (default healthz)
  PUSHGATEWAY_GROUP_TTL_SECONDS   delete groups idle longer than this (default 3600)
  PUSHGATEWAY_AUTH_SECRET_ARN     optional Secrets Manager secret {"username", "password"}
                                  for the gateway's basic auth
The event may carry {"dry_run": true} to only report.

CLI (with the layer on the path: ``PYTHONPATH=layers/observability/python``):
``python functions/pushgateway_janitor/app.py --url URL --ttl-seconds N [--dry-run]``
(flags default to the same environment variables); prints the result as JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.exposition import delete_from_gateway

from lambda_observability.config import Gateway, gateways, take_problems
from lambda_observability.errors import TelemetryError, describe
from lambda_observability.export import http_client
from lambda_observability.export.pushgateway import push_handler

DEFAULT_JOB = "healthz"
DEFAULT_TTL_SECONDS = 3600.0
# A janitor run must finish well inside its Lambda timeout even if the gateway hangs.
HTTP_TIMEOUT_SECONDS = 5.0
# The listing holds every group: about 1 KiB each, 10,000 groups (docs/scaling.md) and room.
MAX_LISTING_BYTES = 64 * 1024 * 1024

logger = logging.getLogger("pushgateway_janitor")


class JanitorError(RuntimeError):
    """Configuration errors, or deletions that failed."""


@dataclass(frozen=True)
class Group:
    labels: dict[str, str]
    # Last time the environment talked to the gateway: a rejected push is still a sign
    # of life, so the later of push_time_seconds and push_failure_time_seconds.
    last_push: float


@dataclass
class SweepResult:
    job: str
    ttl_seconds: float
    now: float
    dry_run: bool
    deleted: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, other: SweepResult) -> None:
        self.deleted += other.deleted
        self.kept += other.kept
        self.errors += other.errors


@dataclass(frozen=True)
class Config:
    url: str  # one gateway, or several separated by commas
    job: str = DEFAULT_JOB
    ttl_seconds: float = DEFAULT_TTL_SECONDS
    auth_secret_arn: str | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        """The gateways' URLs, credentials removed (``gateway`` reads them back)."""
        return tuple(g.url for g in self.gateways)

    @property
    def entries(self) -> tuple[str, ...]:
        """The usable entries of ``url`` as written (credentials in them kept for the sweep)."""
        parts = dict.fromkeys(p.strip() for p in self.url.split(","))
        usable = tuple(p for p in parts if p and gateways(p))
        take_problems()
        return usable

    @property
    def gateways(self) -> tuple[Gateway, ...]:
        found = gateways(self.url)
        for item in take_problems():  # never quotes the URL
            logger.warning(json.dumps({"message": "configuration value ignored", **item.as_log()}))
        return found


# ---------------------------------------------------------------------------
# Pushgateway API


def gateway(url: str) -> Gateway:
    """``url`` read as the layer reads PUSHGATEWAY_URL: its credentials apart from the URL,
    which is then safe to log."""
    found = gateways(url)
    take_problems()
    if not found:
        raise JanitorError("not a usable Pushgateway URL (see PUSHGATEWAY_URL in the README)")
    return found[0]


def _auth_headers(auth: tuple[str, str] | None) -> dict[str, str]:
    if auth is None:
        return {}
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _metric_value(group: Mapping[str, Any], name: str) -> float:
    """A per-group gauge from the /api/v1/metrics JSON (0 if absent)."""
    try:
        return float(group[name]["metrics"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0


def list_groups(
    url: str, auth: tuple[str, str] | None = None, timeout: float = HTTP_TIMEOUT_SECONDS
) -> list[Group]:
    """All groups the gateway holds (`GET /api/v1/metrics`); only a 2xx answer counts (a
    redirect is an error, not a listing)."""
    target = gateway(url)
    headers = {"Accept": "application/json", **_auth_headers(auth or target.credentials)}
    answer = http_client.request(
        f"{target.url}/api/v1/metrics",
        "GET",
        time.monotonic() + timeout,
        headers,
        max_body=MAX_LISTING_BYTES,
    )
    try:
        body = json.loads(answer.body)
    except ValueError:
        raise JanitorError("Pushgateway listing is not JSON") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        raise JanitorError("Pushgateway listing failed: status is not success")
    return [
        Group(
            labels=dict(g["labels"]),
            last_push=max(
                _metric_value(g, "push_time_seconds"), _metric_value(g, "push_failure_time_seconds")
            ),
        )
        for g in body["data"]
    ]


def delete_group(
    url: str,
    labels: Mapping[str, str],
    auth: tuple[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> None:
    """DELETE /metrics/job/<job>/<label>/<value>...; prometheus_client base64-encodes
    values containing '/' (`instance@base64/...`)."""
    target = gateway(url)
    grouping_key = {k: v for k, v in labels.items() if k != "job"}
    delete_from_gateway(
        target.url,
        job=labels["job"],
        grouping_key=grouping_key,
        timeout=timeout,
        handler=push_handler(auth or target.credentials),
    )


# ---------------------------------------------------------------------------
# the sweep


def _check_ttl(ttl_seconds: float) -> None:
    if ttl_seconds <= 0:
        raise JanitorError(f"ttl_seconds must be positive, got {ttl_seconds}")


def sweep(
    url: str,
    job: str = DEFAULT_JOB,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    auth: tuple[str, str] | None = None,
    now: float | None = None,
    dry_run: bool = False,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> SweepResult:
    """Delete `job`'s groups idle for more than `ttl_seconds`; other jobs are never touched.

    `now` is injectable so tests need not sleep through a TTL.
    """
    _check_ttl(ttl_seconds)
    now = time.time() if now is None else now
    result = SweepResult(job=job, ttl_seconds=ttl_seconds, now=now, dry_run=dry_run)
    for group in list_groups(url, auth=auth, timeout=timeout):
        if group.labels.get("job") != job:
            continue
        age = now - group.last_push
        entry = {
            "gateway": gateway(url).url,  # never its credentials
            "labels": group.labels,
            "last_push": group.last_push,
            "age_seconds": age,
        }
        if age <= ttl_seconds:
            result.kept.append(entry)
            continue
        if not dry_run:
            try:
                delete_group(url, group.labels, auth=auth, timeout=timeout)
            except (OSError, TelemetryError) as exc:  # keep going with the other groups
                result.errors.append({**entry, "error": describe(exc)})
                continue
        result.deleted.append(entry)
    return result


# ---------------------------------------------------------------------------
# configuration


def load_auth(secret_arn: str) -> tuple[str, str]:
    """Basic-auth credentials from a Secrets Manager JSON secret {"username","password"}."""
    # The observability layer's reader (Powertools Parameters, cached, short timeouts).
    from lambda_observability.export.secrets import BasicAuthSecret, SecretError

    try:
        return BasicAuthSecret(secret_arn).credentials()
    except SecretError as error:
        raise JanitorError(str(error)) from None


def config_from_env(env: Mapping[str, str]) -> Config:
    url = env.get("PUSHGATEWAY_URL", "").strip()
    if not url:
        raise JanitorError("PUSHGATEWAY_URL is not set")
    raw_ttl = env.get("PUSHGATEWAY_GROUP_TTL_SECONDS", "").strip()
    try:
        ttl = float(raw_ttl) if raw_ttl else DEFAULT_TTL_SECONDS
    except ValueError as exc:
        raise JanitorError(f"PUSHGATEWAY_GROUP_TTL_SECONDS={raw_ttl!r} is not a number") from exc
    return Config(
        url=url,
        job=env.get("PUSHGATEWAY_JOB", "").strip() or DEFAULT_JOB,
        ttl_seconds=ttl,
        auth_secret_arn=env.get("PUSHGATEWAY_AUTH_SECRET_ARN", "").strip() or None,
    )


def sweep_all(
    urls: Sequence[str],
    job: str = DEFAULT_JOB,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    auth: tuple[str, str] | None = None,
    now: float | None = None,
    dry_run: bool = False,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> SweepResult:
    """``sweep`` every gateway by one clock. One that cannot be listed is an error of the
    result, not the end of the run: the others' stale groups are still deleted."""
    _check_ttl(ttl_seconds)
    now = time.time() if now is None else now
    result = SweepResult(job=job, ttl_seconds=ttl_seconds, now=now, dry_run=dry_run)
    for url in urls:
        try:
            result.add(sweep(url, job, ttl_seconds, auth, now, dry_run, timeout))
        except (
            OSError,
            ValueError,
            JanitorError,
            TelemetryError,
        ) as exc:  # unreachable, unreadable
            shown = gateway(url).url if gateways(url) else "(unusable URL)"
            take_problems()
            result.errors.append({"gateway": shown, "error": describe(exc)})
    return result


def run(config: Config, now: float | None = None, dry_run: bool = False) -> SweepResult:
    if not config.urls:
        raise JanitorError("PUSHGATEWAY_URL names no gateway")
    auth = load_auth(config.auth_secret_arn) if config.auth_secret_arn else None
    result = sweep_all(config.entries, config.job, config.ttl_seconds, auth, now, dry_run)
    logger.info(json.dumps({"message": "pushgateway janitor sweep", **result.to_dict()}))
    return result


# ---------------------------------------------------------------------------
# entry points


def handler(event: Mapping[str, Any] | None, context: Any) -> dict[str, Any]:
    """Lambda entry point (scheduled). Raises if any deletion failed, so it shows as an error."""
    logging.getLogger().setLevel(logging.INFO)
    dry_run = bool((event or {}).get("dry_run", False))
    result = run(config_from_env(os.environ), dry_run=dry_run)
    if result.errors:
        raise JanitorError(
            f"{len(result.errors)} deletion(s) or listing(s) failed: {result.errors}"
        )
    return result.to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=env.get("PUSHGATEWAY_URL", ""))
    p.add_argument("--job", default=env.get("PUSHGATEWAY_JOB", DEFAULT_JOB))
    p.add_argument(
        "--ttl-seconds",
        type=float,
        default=float(env.get("PUSHGATEWAY_GROUP_TTL_SECONDS") or DEFAULT_TTL_SECONDS),
    )
    p.add_argument("--auth-secret-arn", default=env.get("PUSHGATEWAY_AUTH_SECRET_ARN"))
    p.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    args = p.parse_args(argv)
    if not args.url:
        p.error("--url (or PUSHGATEWAY_URL) is required")
    config = Config(
        url=args.url,
        job=args.job,
        ttl_seconds=args.ttl_seconds,
        auth_secret_arn=args.auth_secret_arn or None,
    )
    try:
        result = run(config, dry_run=args.dry_run)
    except (JanitorError, OSError, TelemetryError) as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2))
    for error in result.errors:
        print(f"error: {error['gateway']}: {error['error']}", file=sys.stderr)
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
