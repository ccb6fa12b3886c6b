"""`python -m localrt invoke`, variable precedence, and a cross-check against AWS's own emulator."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import samcli

from stack.net import free_port
from tests.localrt.harness import FUNCTIONS, ROOT, TEMPLATE, base_env, wait_until

pytestmark = pytest.mark.integration
RIE = Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"


def invoke(
    event: Any, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    cmd = [sys.executable, "-m", "localrt", "invoke", "-t", str(TEMPLATE), "-e", str(event_file)]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env or base_env(), capture_output=True, timeout=60
    )


def test_invoke_prints_only_the_response_on_stdout(tmp_path: Path) -> None:
    proc = invoke({"path": "/rest/x", "hello": "world"}, tmp_path, "--function", "EchoFunction")
    assert proc.returncode == 0, proc.stderr
    response = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["event"] == {"path": "/rest/x", "hello": "world"}
    stderr = proc.stderr.decode()
    assert '[env-1] {"level": "INFO", "message": "invoked"' in stderr  # logs go to stderr
    assert "REPORT RequestId:" in stderr


def test_invoke_function_error_exits_nonzero(tmp_path: Path) -> None:
    proc = invoke({"path": "/rest/error"}, tmp_path, "--function", "EchoFunction")
    assert proc.returncode == 1
    error = json.loads(proc.stdout)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "boom"


def test_invoke_timeout_and_init_error(tmp_path: Path) -> None:
    timed_out = invoke(
        {"path": "/rest/sleep", "queryStringParameters": {"ms": "3000"}},
        tmp_path,
        "--function",
        "EchoFunction",
    )
    assert timed_out.returncode == 1
    error = json.loads(timed_out.stdout)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")

    broken = invoke({}, tmp_path, "--function", "BrokenFunction")
    assert broken.returncode == 1
    error = json.loads(broken.stdout)
    assert error["errorType"] == "Runtime.InitError"
    assert "lrt_no_such_module" in error["errorMessage"]  # the runtime's own init error


def test_variable_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {"FILE_WINS": "file-params", "SHELL_WINS": "file", "UNDECLARED": "x"},
                "EchoFunction": {"FILE_WINS": "file-function", "FROM_GETATT": "from-file"},
                "ExtensionFunction": {"TEMPLATE_ONLY": "other function"},
            }
        )
    )
    shell = base_env(SHELL_WINS="shell", NOT_DECLARED_IN_TEMPLATE="leak?")
    proc = invoke(
        {"path": "/rest/env"},
        tmp_path,
        "--function",
        "EchoFunction",
        "--env-vars",
        str(env_file),
        env=shell,
    )
    assert proc.returncode == 0, proc.stderr
    env = json.loads(json.loads(proc.stdout)["body"])["env"]
    assert env["TEMPLATE_ONLY"] == "template"  # template value
    assert env["FILE_WINS"] == "file-function"  # file beats template; function beats Parameters
    assert env["SHELL_WINS"] == "shell"  # shell beats file for declared variables
    assert env["FROM_PARAM"] == "hello"  # !Ref parameter -> its Default
    assert env["FROM_SUB"] == "hello-eu-west-1"  # !Sub with parameter and pseudo parameter
    assert env["FROM_GETATT"] == "from-file"  # unresolvable in the template, set by the file
    assert "FROM_NO_DEFAULT" not in env  # unresolvable and not overridden: dropped
    assert "UNDECLARED" not in env and "NOT_DECLARED_IN_TEMPLATE" not in env  # like sam local
    # TMPDIR: the environment's own /tmp (removed with it)
    assert set(env) - _RESERVED - _DECLARED <= {"PATH", "HOME", "LC_CTYPE", "TMPDIR"}
    assert "FROM_GETATT: Fn::GetAtt has no local value" in proc.stderr.decode()


_RESERVED = {
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "AWS_EXECUTION_ENV",
    "TZ",
    "PYTHONPATH",
}
_DECLARED = {
    "FROM_GLOBALS",
    "TEMPLATE_ONLY",
    "FILE_WINS",
    "SHELL_WINS",
    "FROM_PARAM",
    "FROM_SUB",
    "FROM_GETATT",
    "SIGTERM_MARKER",
    "SIGTERM_IGNORE",
}


def _rie_invoke(events: list[Any]) -> list[bytes]:
    """Run lrt_handlers.plain under aws-lambda-rie (AWS's emulator), as facts.md describes."""
    api_port, rie_port = free_port(), free_port()
    env = base_env(
        PYTHONPATH=str(FUNCTIONS),
        AWS_LAMBDA_FUNCTION_NAME="EchoFunction",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="192",
    )
    proc = subprocess.Popen(
        [
            str(RIE),
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{rie_port}",
            sys.executable,
            "-m",
            "awslambdaric",
            "lrt_handlers.plain",
        ],
        cwd=FUNCTIONS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{rie_port}/2015-03-31/functions/function/invocations"
    try:

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", rie_port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(up, 10)
        return [requests.post(url, data=json.dumps(e), timeout=10).content for e in events]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_same_response_as_aws_runtime_interface_emulator(tmp_path: Path) -> None:
    ok_event = {"path": "/x", "numbers": [1, 2.5, None], "nested": {"é": "ü"}}
    fail_event = {"fail": "intentional"}
    rie_ok, rie_fail = _rie_invoke([ok_event, fail_event])

    template = tmp_path / "template.yaml"
    template.write_text(
        (
            TEMPLATE.read_text().replace(
                "Handler: lrt_handlers.handler", "Handler: lrt_handlers.plain"
            )
        )
        .replace("CodeUri: .", f"CodeUri: {FUNCTIONS}")
        .replace("ContentUri: layer", f"ContentUri: {FUNCTIONS / 'layer'}")
    )
    ours_ok = invoke(ok_event, tmp_path, "-t", str(template), "--function", "EchoFunction")
    ours_fail = invoke(fail_event, tmp_path, "-t", str(template), "--function", "EchoFunction")

    assert ours_ok.returncode == 0, ours_ok.stderr
    assert json.loads(ours_ok.stdout) == json.loads(rie_ok)
    assert json.loads(ours_ok.stdout) == {
        "echo": ok_event,
        "function": "EchoFunction",
        "memory": "192",
    }
    theirs, mine = json.loads(rie_fail), json.loads(ours_fail.stdout)
    assert theirs.pop("requestId") and mine.pop("requestId")  # differ by nature
    assert mine == theirs
    assert theirs["errorType"] == "RuntimeError"
