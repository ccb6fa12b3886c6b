"""localrt's Lambda Managed Instances mode: several awslambdaric workers per environment.

End to end with the real awslambdaric (LmiFunction, whose template asks for 3 workers), and
the Runtime/Extensions API rules in process, each checked against AWS's emulator's code
(internal/lambda-managed-instances: rapi/handler/agentregister.go, core/registrations.go,
rapid/handlers.go, rapid/shutdown.go).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from localrt.lmi import MAX_EXTENSIONS, LmiRuntimeApi
from localrt.runtime_api import Invocation
from tests.localrt.harness import LocalRT, base_env, pid_alive, wait_until

REGISTER = "/2020-01-01/extension/register"
EVENT_NEXT = "/2020-01-01/extension/event/next"
RUNTIME_NEXT = "/2018-06-01/runtime/invocation/next"


def lmi_rt(start: Callable[..., LocalRT], sink: Path, *args: str, **env: str) -> LocalRT:
    variables = {"LMI_SINK": str(sink), **env}
    return start("--function", "LmiFunction", *args, env=base_env(**variables))


def served(rt: LocalRT, path: str = "/lmi/x", **params: str) -> dict[str, Any]:
    resp = rt.get(path, params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_workers_from_the_template_serve_concurrently_and_are_never_frozen(
    start_localrt: Callable[..., LocalRT], tmp_path: Path
) -> None:
    rt = lmi_rt(start_localrt, tmp_path, "--concurrency", "1")
    assert "Lambda Managed Instances: 3 workers per environment" in rt.text()
    with ThreadPoolExecutor(max_workers=3) as pool:
        bodies = list(pool.map(lambda _: served(rt, sleep="0.6"), range(3)))
    # Three workers of one environment, each its own process, all at once.
    assert len({b["pid"] for b in bodies}) == 3
    assert len({b["ppid"] for b in bodies}) == 1
    assert max(b["began"] for b in bodies) < min(b["ended"] for b in bodies)
    for body in bodies:
        assert body["env"] == {
            "AWS_LAMBDA_MAX_CONCURRENCY": "3",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
        }
    time.sleep(0.3)  # idle: an on-demand environment would be frozen by now
    stats = rt.stats()
    assert stats["max_concurrency"] == 3
    [env] = stats["environments"]
    assert env["frozen"] is False and env["frozen_ms"] == 0
    workers = env["workers"]
    assert len(workers) == 3
    assert {w["pid"] for w in workers} == {b["pid"] for b in bodies}
    assert {w["state"] for w in workers} == {"idle"}
    assert sum(w["invocations"] for w in workers) == 3
    # Registration closes when the first worker reaches /next (as in the emulator): a worker
    # slower to import may find it closed.
    assert 1 <= len(env["extensions"]) <= 3
    assert set(env["extensions"]) <= {f"lmi-{b['pid']}" for b in bodies}
    cold = [r["cold"] for r in stats["invocations"]]
    assert cold == [True, True, True]  # each worker imports the handler itself


def test_the_flag_sets_the_workers_and_a_request_beyond_them_waits(
    start_localrt: Callable[..., LocalRT], tmp_path: Path
) -> None:
    rt = lmi_rt(start_localrt, tmp_path, "--concurrency", "1", "--max-concurrency", "2")
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        bodies = list(pool.map(lambda _: served(rt, sleep="0.5"), range(3)))
    elapsed = time.monotonic() - began
    assert {b["env"]["AWS_LAMBDA_MAX_CONCURRENCY"] for b in bodies} == {"2"}
    assert len({b["pid"] for b in bodies}) == 2
    assert elapsed >= 1.0  # the third waited for a worker (Lambda would answer 429)
    # A record is complete once its worker is back in /next, a moment after the answer.
    assert wait_until(lambda: len(rt.stats()["invocations"]) == 3, 5)
    stats = rt.stats()
    assert len(stats["environments"]) == 1
    assert max(r["queue_ms"] for r in stats["invocations"]) >= 400


def test_registration_answers_are_lmis(
    start_localrt: Callable[..., LocalRT], tmp_path: Path
) -> None:
    rt = lmi_rt(start_localrt, tmp_path, "--max-concurrency", "1")
    answers = served(rt)["answers"]
    assert answers["invoke"] == [
        403,
        {
            "errorMessage": "No events allowed for internal extensions",
            "errorType": "Extension.InvalidEventType",
        },
    ]
    assert answers["empty"][0] == 200 and answers["empty"][1]["functionName"]
    assert answers["again"] == [
        403,
        {
            "errorMessage": "Extension with this name already registered",
            "errorType": "Extension.InvalidExtensionState",
        },
    ]
    # Once a worker has called /next, registration is closed.
    assert served(rt, "/lmi/late")["late_register"] == [
        403,
        {
            "errorMessage": "Extension registration closed already",
            "errorType": "Extension.RegistrationClosed",
        },
    ]


@pytest.mark.parametrize("extension", ["register", "none"])
def test_stop_sigterms_every_worker_only_when_an_extension_registered(
    start_localrt: Callable[..., LocalRT], tmp_path: Path, extension: str
) -> None:
    rt = lmi_rt(start_localrt, tmp_path, "--max-concurrency", "3", LMI_EXTENSION=extension)
    with ThreadPoolExecutor(max_workers=3) as pool:
        pids = {b["pid"] for b in pool.map(lambda _: served(rt, sleep="0.3"), range(3))}
    assert len(pids) == 3
    rt.stats()
    stopped = time.time()
    assert rt.stop() == 0
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 5)
    got = {int(p.name.split("-")[1]): float(p.read_text().split()[1]) for p in tmp_path.iterdir()}
    if extension == "register":
        # SIGTERM to the whole process group: every worker, not only awslambdaric's parent.
        assert set(got) == pids, rt.text()
        assert all(t - stopped < 2.0 for t in got.values()), got
    else:
        assert got == {}, got  # SIGKILL with no SIGTERM, as the emulator does
        assert "no extension registered: SIGKILL, no SIGTERM" in rt.text()


# ---- the APIs in process ----------------------------------------------------------------


class Api:
    """An LmiRuntimeApi with 2 workers, driven over HTTP like awslambdaric would."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.freed: list[Invocation] = []
        self.api = LmiRuntimeApi(
            "fn",
            "app.handler",
            2,
            on_ready=self.ready.set,
            on_fatal=lambda _why: None,
            on_slot_free=self.freed.append,
        )
        self.api.start()
        host, port = self.api.address.split(":")
        self.host, self.port = host, int(port)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None

    def register(self, name: str, events: list[str]) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", REGISTER, {"events": events}, {"Lambda-Extension-Name": name})

    def park_extension(self, ident: str) -> list[Any]:
        got: list[Any] = []

        def run() -> None:
            got.append(
                self.request("GET", EVENT_NEXT, None, {"Lambda-Extension-Identifier": ident})
            )

        threading.Thread(target=run, daemon=True).start()
        return got

    def park_runtime(self) -> list[Any]:
        got: list[Any] = []
        threading.Thread(
            target=lambda: got.append(self.request("GET", RUNTIME_NEXT)), daemon=True
        ).start()
        return got


@pytest.fixture
def api() -> Iterator[Api]:
    driver = Api()
    yield driver
    driver.api.abandon("crash", "test over")
    driver.api.close()


def test_any_event_is_refused_none_accepted_and_at_most_ten(api: Api) -> None:
    for events in (["INVOKE"], ["SHUTDOWN"], ["INVOKE", "SHUTDOWN"], ["NOPE"]):
        status, _, body = api.register("x", events)
        assert (status, body["errorType"]) == (403, "Extension.InvalidEventType")
        assert body["errorMessage"] == "No events allowed for internal extensions"
    assert api.register("", [])[2]["errorType"] == "Extension.InvalidExtensionName"
    for i in range(MAX_EXTENSIONS):
        status, headers, body = api.register(f"ext-{i}", [])
        assert status == 200 and headers["Lambda-Extension-Identifier"]
        assert body == {
            "functionName": "fn",
            "functionVersion": "$LATEST",
            "handler": "app.handler",
        }
    status, _, body = api.register("ext-10", [])
    assert (status, body) == (
        403,
        {
            "errorMessage": "Extension limit (10) reached",
            "errorType": "Extension.TooManyExtensions",
        },
    )


def test_init_waits_for_every_extension_then_event_next_blocks_for_good(api: Api) -> None:
    _, headers, _ = api.register("exporter", [])
    ident = headers["Lambda-Extension-Identifier"]
    api.park_runtime()
    assert wait_until(lambda: api.api.t_first_next is not None, 5)
    # A worker is in /next, but the extension is not in /event/next yet: init is not over.
    assert not api.ready.wait(0.3)
    assert api.api.extensions_not_ready() == ["exporter"]
    assert api.register("late", [])[2]["errorType"] == "Extension.RegistrationClosed"
    parked = api.park_extension(ident)
    assert api.ready.wait(5)
    # No event ever reaches an internal extension on LMI: /event/next stays parked while the
    # environment serves events.
    assert api.api.try_reserve()
    inv = Invocation(payload=b"{}", timeout_ms=3000, function_arn="arn")
    api.api.dispatch(inv)
    assert wait_until(lambda: bool(api.api.inflight()) and not api.api._queue, 5)
    status, _ = api.api.runtime_result(inv.request_id, "response", b'{"ok": 1}', None)
    assert status == 202 and inv.outcome == "response"
    time.sleep(0.3)
    assert parked == []


def test_each_parked_worker_is_one_slot(api: Api) -> None:
    _, headers, _ = api.register("exporter", [])
    api.park_extension(headers["Lambda-Extension-Identifier"])
    first, second = api.park_runtime(), api.park_runtime()
    assert api.ready.wait(5)
    assert wait_until(lambda: api.api._parked == 2, 5)
    assert api.api.try_reserve() and api.api.try_reserve()
    assert not api.api.try_reserve()  # two workers, two slots
    invs = [Invocation(payload=b"{}", timeout_ms=3000, function_arn="arn") for _ in range(2)]
    for inv in invs:
        api.api.dispatch(inv)
    assert wait_until(lambda: len(first) == 1 and len(second) == 1, 5)
    assert api.api.outstanding() == 2
    for inv in invs:
        assert api.api.runtime_result(inv.request_id, "response", b"{}", None)[0] == 202
    assert api.api.runtime_result(invs[0].request_id, "response", b"{}", None)[0] == 400


LMI_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Managed:
    Type: String
    Default: "true"
  Workers:
    Type: Number
    Default: 6
Conditions:
  IsManaged: !Equals [!Ref Managed, "true"]
Resources:
  Conditional:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: app.handler
      Runtime: python3.13
      CapacityProviderConfig: !If
        - IsManaged
        - Arn: arn:aws:lambda:us-east-1:123456789012:capacity-provider:x
          PerExecutionEnvironmentMaxConcurrency: !Ref Workers
        - !Ref AWS::NoValue
  Unmanaged:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: app.handler
      Runtime: python3.13
      CapacityProviderConfig: !If
        - IsManaged
        - !Ref AWS::NoValue
        - Arn: arn:aws:lambda:us-east-1:123456789012:capacity-provider:x
  DefaultWorkers:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: app.handler
      Runtime: python3.13
      CapacityProviderConfig:
        Arn: arn:aws:lambda:us-east-1:123456789012:capacity-provider:x
  OnDemand:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: app.handler
      Runtime: python3.13
"""


def test_the_worker_count_comes_from_the_template_as_sam_reads_it(tmp_path: Path) -> None:
    from localrt.template import read_function

    template = tmp_path / "template.yaml"
    template.write_text(LMI_TEMPLATE)
    workers = {
        name: read_function(template, name).max_concurrency
        for name in ("Conditional", "Unmanaged", "DefaultWorkers", "OnDemand")
    }
    # !If on a parameter's condition and !Ref resolved with their defaults; SAM's default 4.
    assert workers == {"Conditional": 6, "Unmanaged": None, "DefaultWorkers": 4, "OnDemand": None}


def test_an_event_past_its_deadline_fails_alone(
    start_localrt: Callable[..., LocalRT], tmp_path: Path
) -> None:
    rt = lmi_rt(start_localrt, tmp_path, "--concurrency", "1", "--max-concurrency", "2")
    served(rt)  # cold start
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(rt.get, "/lmi/x", params={"sleep": "3.6"})  # Timeout is 3 s
        time.sleep(0.2)
        quick = served(rt, sleep="0.1")
        resp = slow.result()
    assert resp.status_code == 502
    assert "Task timed out after 3.00 seconds" in rt.text()
    assert quick["pid"]
    # The environment was not killed: the late worker comes back to /next and serves again.
    assert wait_until(
        lambda: all(w["state"] == "idle" for w in rt.stats()["environments"][0]["workers"]), 5
    )
    assert {served(rt)["ppid"] for _ in range(3)} == {quick["ppid"]}
    stats = rt.stats()
    assert stats["summary"]["environments_started"] == 1
    assert [r["outcome"] for r in stats["invocations"]].count("timeout") == 1


def test_each_environment_has_a_tmp_of_its_own_shared_by_its_workers_and_removed_with_it(
    start_localrt: Callable[..., LocalRT], tmp_path: Path
) -> None:
    rt = lmi_rt(start_localrt, tmp_path, "--concurrency", "2", "--max-concurrency", "2")
    with ThreadPoolExecutor(max_workers=4) as pool:
        bodies = list(pool.map(lambda _: served(rt, "/lmi/tmp", sleep="0.5"), range(4)))
    by_env: dict[int, set[str]] = {}
    for body in bodies:
        by_env.setdefault(body["ppid"], set()).add(body["tmpdir"])
    assert len(by_env) == 2  # two environments, each one TMPDIR for both its workers
    dirs = [next(iter(d)) for d in by_env.values()]
    assert all(len(d) == 1 for d in by_env.values()) and dirs[0] != dirs[1]
    assert all(Path(d).is_dir() for d in dirs)
    assert rt.stop() == 0
    assert wait_until(lambda: not any(Path(d).exists() for d in dirs), 5)
