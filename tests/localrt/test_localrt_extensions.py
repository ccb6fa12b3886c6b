"""External extensions (a layer's extensions/ folder) and the Telemetry API under localrt.

The extension is functions/extlayer/extensions/lrt-recorder, written from AWS's samples; it
writes what it got to $EXT_RECORD, one JSON line each.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from localrt.extensions import find_extensions
from localrt.template import dockerfile_extension_dirs, read_function
from tests.localrt.harness import (
    FUNCTIONS,
    ROOT,
    TEMPLATE,
    LocalRT,
    base_env,
    pid_alive,
    wait_until,
)

pytestmark = pytest.mark.integration
Start = Callable[..., LocalRT]
_REPORT = re.compile(
    r"REPORT RequestId: (\S+) .* Duration: ([\d.]+) ms Client: \S+ ms Billed Duration: (\d+) ms"
    r" Memory Size: (\d+) MB Max Memory Used: (\d+) MB(?: Init Duration: ([\d.]+) ms)?"
)
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_extension_folders_come_from_layers_and_the_dockerfile(tmp_path: Path) -> None:
    spec = read_function(TEMPLATE, "ExternalExtensionFunction")
    assert spec.extension_dirs == [FUNCTIONS / "extlayer" / "extensions"]
    assert find_extensions(spec.extension_dirs) == [spec.extension_dirs[0] / "lrt-recorder"]
    assert read_function(TEMPLATE, "EchoFunction").extension_dirs == [
        FUNCTIONS / "layer" / "extensions"  # TestLayer has none: nothing runs
    ]
    assert find_extensions(read_function(TEMPLATE, "EchoFunction").extension_dirs) == []
    # The health function's image copies nothing to /opt/extensions.
    assert read_function(ROOT / "template.yaml", "HealthzFunction").extension_dirs == []
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM public.ecr.aws/lambda/python:3.13\n"
        "COPY layers/x/python/ /opt/python/\n"
        "COPY layers/x/extensions/ /opt/extensions/\n"
        "COPY --chmod=755 tools/a.sh \\\n    tools/b /opt/extensions/\n"
    )
    assert dockerfile_extension_dirs(dockerfile, tmp_path) == [
        tmp_path / "layers/x/extensions",
        tmp_path / "tools/a.sh",
        tmp_path / "tools/b",
    ]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _recorder(start: Start, record: Path, *args: str, **env: str) -> LocalRT:
    record.write_text("")
    return start(
        "--function",
        "ExternalExtensionFunction",
        *args,
        env=base_env(EXT_RECORD=str(record), **env),
    )


def test_external_extension_gets_one_invoke_per_call_and_shutdown_at_stop(
    start_localrt: Start, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    rt = _recorder(start_localrt, record)
    for i in range(3):
        assert rt.get(f"/xext/call{i}").status_code == 200
    assert wait_until(rt.idle, 5)
    stats = rt.stats()
    (env,) = stats["environments"]
    (ext,) = env["external_extensions"]
    assert ext["name"] == "lrt-recorder" and env["extensions"] == ["lrt-recorder"]
    # Frozen with the environment: its own process group is stopped too.
    assert wait_until(lambda: rt.stats()["environments"][0]["frozen"], 5)
    assert psutil.Process(ext["pid"]).status() == psutil.STATUS_STOPPED
    # Started before the runtime, which started once the extension had registered.
    text = rt.text()
    assert text.index("extension lrt-recorder started") < text.index("env-1 started pid")
    t_stop = time.time()
    assert rt.stop() == 0
    assert wait_until(lambda: not pid_alive(ext["pid"]), 5)

    got = _records(record)
    assert got[0]["kind"] == "register" and got[0]["status"] == 200
    assert got[0]["body"]["functionName"] == "ExternalExtensionFunction"
    events = [r["event"] for r in got if r["kind"] == "event"]
    invokes = [e for e in events if e["eventType"] == "INVOKE"]
    assert [e["requestId"] for e in invokes] == [r["request_id"] for r in stats["invocations"]]
    assert all(e["invokedFunctionArn"].endswith(":ExternalExtensionFunction") for e in invokes)
    shutdown = events[-1]
    assert shutdown["eventType"] == "SHUTDOWN" and shutdown["shutdownReason"] == "spindown"
    assert 1500 < shutdown["deadlineMs"] - t_stop * 1000 < 2600  # Lambda's 2,000 ms
    assert got[-1]["kind"] == "exit"  # it ended by itself, within the budget
    assert "sigterm" not in {r["kind"] for r in got}  # extensions get SHUTDOWN, not SIGTERM
    assert "[env-1:lrt-recorder] lrt-recorder: SHUTDOWN" in rt.text()


def test_next_event_waits_for_the_external_extension(start_localrt: Start, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    # One environment: a busy one would make Lambda (and localrt) cold-start another.
    rt = _recorder(start_localrt, record, "--concurrency", "1", EXT_INVOKE_WORK_MS="300")
    rt.get("/xext/warm")
    assert wait_until(rt.idle, 5)
    t0 = time.monotonic()
    rt.get("/xext/first")
    answered = time.monotonic() - t0
    rt.get("/xext/second")
    both = time.monotonic() - t0
    assert answered < 0.2  # the answer does not wait for the extension's work...
    assert both >= 0.3  # ...the next event does
    assert wait_until(rt.idle, 5)
    records = rt.stats()["invocations"]
    assert all(r["post_response_ms"] >= 250 for r in records), records
    assert rt.stop() == 0


def test_extension_over_its_shutdown_budget_gets_sigkill(
    start_localrt: Start, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    rt = _recorder(start_localrt, record, EXT_SHUTDOWN_HANG="1")
    assert rt.get("/xext/one").status_code == 200
    (ext,) = rt.stats()["environments"][0]["external_extensions"]
    t0 = time.monotonic()
    assert rt.stop() == 0
    elapsed = time.monotonic() - t0
    assert 1.9 < elapsed < 4.0, elapsed  # the 2,000 ms budget, then SIGKILL
    assert not pid_alive(ext["pid"])
    assert [r["kind"] for r in _records(record)][-1] == "hang"
    rt.wait_line(lambda s: "still running after 2.0s grace: SIGKILL" in s)


def test_extension_that_exits_before_registering_fails_init(start_localrt: Start) -> None:
    rt = start_localrt("--function", "CrashingExtensionFunction")
    resp = rt.get("/crashext/x")
    assert resp.status_code == 502
    (env,) = rt.stats()["environments"]
    assert env["state"] == "dead" and env["pid"] is None  # the runtime never started
    assert "extension lrt-crasher exited with code 3 during init" in env["end_reason"]
    assert env["external_extensions"][0]["exit_code"] == 3
    rt.wait_line(lambda s: "giving up before registering" in s)


def test_extension_that_never_registers_fails_init(start_localrt: Start) -> None:
    rt = start_localrt("--function", "CrashingExtensionFunction", env=base_env(CRASHER_MODE="hang"))
    t0 = time.monotonic()
    resp = rt.get("/crashext/x", timeout=30)
    assert resp.status_code == 502
    assert 9.5 < time.monotonic() - t0 < 15  # Lambda's 10 s init limit
    (env,) = rt.stats()["environments"]
    assert "extensions ['lrt-crasher'] did not register" in env["end_reason"]
    pid = env["external_extensions"][0]["pid"]
    assert wait_until(lambda: not pid_alive(pid), 5)


def test_telemetry_api_delivers_platform_function_and_extension_records(
    start_localrt: Start, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    rt = _recorder(start_localrt, record, EXT_TELEMETRY_TYPES="platform,function,extension")
    for i in range(4):
        assert rt.get(f"/xext/tel{i}").status_code == 200
        time.sleep(0.1)  # frozen meanwhile: past the subscription's 25 ms timeoutMs
    assert wait_until(rt.idle, 5)
    stats = rt.stats()
    ids = [r["request_id"] for r in stats["invocations"]]
    assert rt.stop() == 0
    got = _records(record)

    probes = {r["probe"]: r for r in got if r["kind"] == "probe"}
    for name in ("maxItems", "maxBytes", "timeoutMs", "host"):
        assert probes[name]["status"] == 400, probes[name]
        assert json.loads(probes[name]["answer"])["errorType"] == "ValidationError"
    (sub,) = [r for r in got if r["kind"] == "subscribe"]
    assert sub["status"] == 200 and json.loads(sub["answer"]) == "OK"
    assert probes["after-init"]["status"] == 403
    assert json.loads(probes["after-init"]["answer"])["errorType"] == "Telemetry.SubscriptionClosed"

    batches = [r["batch"] for r in got if r["kind"] == "telemetry"]
    assert all(1 <= len(b) <= 1000 for b in batches)
    events = [e for b in batches for e in b]
    assert all(_TIME.match(e["time"]) for e in events)
    types = [e["type"] for e in events]
    init = ["platform.initStart", "platform.initRuntimeDone", "platform.initReport"]
    assert [t for t in types if t in init] == init  # initStart came before the subscription
    start = next(e["record"] for e in events if e["type"] == "platform.initStart")
    assert start["functionName"] == "ExternalExtensionFunction"
    assert start["initializationType"] == "on-demand" and start["phase"] == "init"
    assert "instanceId" not in start  # 2022-12-13
    extension = next(e["record"] for e in events if e["type"] == "platform.extension")
    assert extension == {"name": "lrt-recorder", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}
    for kind in ("platform.start", "platform.runtimeDone", "platform.report"):
        assert [e["record"]["requestId"] for e in events if e["type"] == kind] == ids, kind
    function_lines = [e["record"] for e in events if e["type"] == "function"]
    assert sum('"message": "invoked"' in line for line in function_lines) == 4
    extension_lines = [e["record"] for e in events if e["type"] == "extension"]
    assert sum(line.startswith("lrt-recorder: INVOKE") for line in extension_lines) == 4

    # Nothing leaves while frozen: each report leaves at the next thaw (the next event), the
    # last one at stop, before SHUTDOWN.
    shutdown_t = next(
        r["t"] for r in got if r["kind"] == "event" and r["event"]["eventType"] == "SHUTDOWN"
    )
    delivered = {
        e["record"]["requestId"]: r["t"]
        for r in got
        if r["kind"] == "telemetry"
        for e in r["batch"]
        if e["type"] == "platform.report"
    }
    assert all(delivered[i] < shutdown_t for i in ids)
    invoke_t = {
        r["event"]["requestId"]: r["t"]
        for r in got
        if r["kind"] == "event" and r["event"]["eventType"] == "INVOKE"
    }
    for done, following in itertools.pairwise(ids):
        # not 25 ms after the report (frozen then), but with the next event, before the freeze
        assert invoke_t[done] + 0.05 < delivered[done] < invoke_t[following] + 0.09

    # Each platform.report says what the REPORT line said.
    reports = {
        e["record"]["requestId"]: e["record"] for e in events if e["type"] == "platform.report"
    }
    lines = [m for m in map(_REPORT.search, rt.text().splitlines()) if m]
    assert [m.group(1) for m in lines] == ids
    for m in lines:
        report = reports[m.group(1)]
        metrics = report["metrics"]
        assert report["status"] == "success"
        assert abs(metrics["durationMs"] - float(m.group(2))) <= 0.0051  # 3 decimals vs %.2f
        assert metrics["billedDurationMs"] == math.ceil(metrics["durationMs"]) == int(m.group(3))
        assert metrics["memorySizeMB"] == int(m.group(4)) == 192
        assert metrics["maxMemoryUsedMB"] == int(m.group(5)) > 0
        if m.group(6) is None:
            assert "initDurationMs" not in metrics
        else:
            assert abs(metrics["initDurationMs"] - float(m.group(6))) <= 0.0051
    assert "initDurationMs" in reports[ids[0]]["metrics"]


def test_telemetry_schema_2025_01_29_and_platform_only(
    start_localrt: Start, tmp_path: Path
) -> None:
    record = tmp_path / "record.jsonl"
    rt = _recorder(
        start_localrt, record, EXT_TELEMETRY_TYPES="platform", EXT_TELEMETRY_SCHEMA="2025-01-29"
    )
    assert rt.get("/xext/one").status_code == 200
    (env,) = rt.stats()["environments"]
    (subscription,) = env["telemetry"]
    assert subscription["schemaVersion"] == "2025-01-29"
    assert subscription["buffering"] == {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
    assert rt.stop() == 0
    events = [e for r in _records(record) if r["kind"] == "telemetry" for e in r["batch"]]
    assert {e["type"].split(".")[0] for e in events} == {"platform"}
    start = next(e["record"] for e in events if e["type"] == "platform.initStart")
    assert start["instanceId"] == env["log_stream"]
    assert start["instanceMaxMemory"] == 192 * 1024 * 1024
    assert [e["type"] for e in events][-3:] == [
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    ]
