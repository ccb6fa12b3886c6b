"""Execution environments: deadlines, crashes, concurrency, extensions, shutdown."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.localrt.harness import (
    ROOT,
    TEMPLATE,
    LocalRT,
    base_env,
    body_json,
    pid_alive,
    wait_until,
)

pytestmark = pytest.mark.integration
Start = Callable[..., LocalRT]


def test_timeout_kills_and_replaces_environment(start_localrt: Start) -> None:
    rt = start_localrt("--function", "EchoFunction")
    first = body_json(rt.get("/rest/warm"))["pid"]
    t0 = time.monotonic()
    resp = rt.get("/rest/sleep?ms=5000")  # Timeout: 1
    elapsed = time.monotonic() - t0
    assert resp.status_code == 502
    assert resp.json() == {"message": "Internal server error"}
    assert 0.9 < elapsed < 2.0
    # SIGKILL was sent before the 502; generous for a loaded machine.
    assert wait_until(lambda: not pid_alive(first), 10)
    rt.wait_line(lambda s: "Task timed out after 1.00 seconds" in s)
    replacement = body_json(rt.get("/rest/after"))["pid"]
    assert replacement != first
    envs = rt.stats()["environments"]
    assert [e["end_reason"] for e in envs if e["pid"] == first] == ["timeout"]


def test_parallel_requests_cold_start_new_environments(start_localrt: Start) -> None:
    rt = start_localrt("--function", "EchoFunction", "--concurrency", "3")
    # Back-to-back sequential requests keep reusing one warm environment...
    first = {body_json(rt.get("/rest/seq"))["pid"] for _ in range(5)}
    assert len(first) == 1
    assert len(rt.stats()["environments"]) == 1

    def slow(_: int) -> int:
        resp = requests.get(rt.url + "/rest/sleep?ms=400", timeout=10)
        assert resp.status_code == 200, resp.text
        pid: int = body_json(resp)["pid"]
        return pid

    with ThreadPoolExecutor(3) as pool:
        pids = set(pool.map(slow, range(3)))
    assert len(pids) == 3 and first <= pids  # ...parallel ones need an environment each
    time.sleep(0.1)  # let every environment get back to /next
    sequential = {body_json(rt.get("/rest/seq"))["pid"] for _ in range(5)}
    assert sequential <= pids  # warm reuse, no new environment
    stats = rt.stats()
    assert len(stats["environments"]) == 3
    assert sum(r["cold"] for r in stats["invocations"]) == 3


def test_requests_beyond_concurrency_wait(start_localrt: Start) -> None:
    rt = start_localrt("--function", "EchoFunction", "--concurrency", "1")
    rt.get("/rest/warm")

    def slow(_: int) -> tuple[int, float]:
        t0 = time.monotonic()
        resp = requests.get(rt.url + "/rest/sleep?ms=300", timeout=10)
        assert resp.status_code == 200
        return body_json(resp)["pid"], time.monotonic() - t0

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(slow, range(2)))
    assert len({pid for pid, _ in results}) == 1  # never more than one environment
    assert max(t for _, t in results) >= 0.55  # the second one queued behind the first
    assert len(rt.stats()["environments"]) == 1


def test_response_before_extension_finishes(start_localrt: Start) -> None:
    # One environment, as in the brief's scenario: with more allowed, Lambda (and localrt after
    # 50 ms) would cold-start another environment instead of waiting for the busy one.
    rt = start_localrt("--function", "ExtensionFunction", "--concurrency", "1")
    rt.get("/ext")  # cold start
    time.sleep(0.5)  # the extension's post-invoke work for the cold request is over
    t0 = time.monotonic()
    first = body_json(rt.get("/ext"))
    first_latency = time.monotonic() - t0
    t1 = time.monotonic()
    second = body_json(rt.get("/ext"))
    second_latency = time.monotonic() - t1

    assert first_latency < 0.15, first_latency  # the client did not wait for the 300 ms work
    assert first["pid"] == second["pid"]  # same environment...
    # ...which took the next event only after the extension finished the previous one.
    assert second["extension"]["finished"] == first["extension"]["finished"] + 1
    assert second["started"] - first["started"] >= 0.29
    assert second_latency >= 0.2
    assert first["extension"]["register"] == {
        "functionName": "ExtensionFunction",
        "functionVersion": "$LATEST",
        "handler": "lrt_extension.handler",
    }
    # The third event waits for the extension to finish the second: its INVOKE is complete.
    third = body_json(rt.get("/ext"))
    event = third["extension"]["events"][second["request_id"]]
    assert event["eventType"] == "INVOKE"
    assert event["requestId"] == second["request_id"]
    assert event["deadlineMs"] - second["started"] * 1000 == pytest.approx(2000, abs=100)
    assert event["invokedFunctionArn"].endswith(":function:ExtensionFunction")
    assert event["deadlineMs"] > time.time() * 1000 - 5000

    records = rt.stats()["invocations"]
    warm = next(r for r in records if not r["cold"])
    assert warm["client_ms"] < 150 and warm["billed_ms"] >= 290
    assert rt.stats()["environments"][0]["extensions"] == ["slow-exporter"]


def test_extension_overrunning_the_deadline_is_killed(start_localrt: Start) -> None:
    # Timeout: 2 covers the extension's post-invoke work too; 10 s of it ends the environment.
    env = base_env(EXT_WORK_S="10")
    rt = start_localrt("--function", "ExtensionFunction", "--concurrency", "1", env=env)
    t0 = time.monotonic()
    first = body_json(rt.get("/ext"))
    assert time.monotonic() - t0 < 1.5  # answered at once, as before
    assert wait_until(lambda: not pid_alive(first["pid"]), 4)
    second = body_json(rt.get("/ext"))  # a fresh environment took over
    assert second["pid"] != first["pid"]
    envs = rt.stats()["environments"]
    assert envs[0]["end_reason"] == "timeout" and envs[1]["state"] == "busy"
    record = rt.stats()["invocations"][0]
    assert record["outcome"] == "response" and 1900 < record["billed_ms"] < 2500


def test_sigterm_gives_function_grace_to_flush(start_localrt: Start, tmp_path: Path) -> None:
    marker = tmp_path / "flushed.txt"
    rt = start_localrt("--function", "EchoFunction", env=base_env(SIGTERM_MARKER=str(marker)))
    pid = body_json(rt.get("/rest/hello"))["pid"]
    assert rt.stop(signal.SIGTERM) == 0
    assert marker.read_text() == f"flushed {pid}\n"
    tagged = [json.loads(line) for _, line in rt.tagged() if line.startswith("{")]
    assert {"level": "INFO", "message": "sigterm flushed"} in tagged


def test_grace_expiry_sigkills(start_localrt: Start) -> None:
    rt = start_localrt(
        "--function", "EchoFunction", "--grace-seconds", "0.5", env=base_env(SIGTERM_IGNORE="1")
    )
    pid = body_json(rt.get("/rest/hello"))["pid"]
    t0 = time.monotonic()
    rt.stop(signal.SIGINT)  # Ctrl-C takes the same path
    assert 0.4 < time.monotonic() - t0 < 5
    assert wait_until(lambda: not pid_alive(pid), 3)
    rt.wait_line(lambda s: "SIGKILL" in s)


def test_no_orphans_when_localrt_is_killed(start_localrt: Start) -> None:
    rt = start_localrt("--function", "EchoFunction")
    pid = body_json(rt.get("/rest/hello"))["pid"]
    rt.stop(signal.SIGKILL)  # no chance to clean up: the kernel must do it (PDEATHSIG)
    assert wait_until(lambda: not pid_alive(pid), 5)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10"])
def test_only_loopback(host: str) -> None:
    cmd = [sys.executable, "-m", "localrt", "start-api", "-t", str(TEMPLATE), "--host", host]
    proc = subprocess.run(cmd, cwd=ROOT, env=base_env(), capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"only loopback addresses are allowed" in proc.stderr
