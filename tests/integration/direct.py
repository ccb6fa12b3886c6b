"""Run the health function in a fresh interpreter, as a cold execution environment would.

The layer reads its configuration at cold start, so each call here is a new environment; the
handler is called directly with a Lambda-like context (the local runtime tests go through
awslambdaric instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tests.conftest import EVENTS, ROOT

_SCRIPT = """
import json, sys
from tests.unit.conftest import FakeLambdaContext
import app
for i, name in enumerate(sys.argv[1:]):
    event = json.load(open(name))
    context = FakeLambdaContext(aws_request_id=f"req-{i}")
    print("RESPONSE " + json.dumps(app.handler(event, context)), file=sys.stderr)
"""


@dataclass
class Run:
    responses: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    stdout: str


def run_environment(env: dict[str, str], events: list[str], timeout: float = 60) -> Run:
    full_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "layers/observability/python"), str(ROOT / "functions/healthz"), str(ROOT)]
        ),
        "AWS_LAMBDA_FUNCTION_NAME": "healthz",
        "AWS_REGION": "eu-west-1",
        "OTEL_SERVICE_NAME": "healthz",
        "OTEL_TRACES_EXPORTER": "none",
        # These tests check what each invocation exports (the policy is tested in tests/e2e).
        "OBSERVABILITY_EXPORT_INTERVAL_SECONDS": "0",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *[str(EVENTS / name) for name in events]],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        cwd=ROOT,
    )
    responses = [
        json.loads(line.removeprefix("RESPONSE "))
        for line in done.stderr.splitlines()
        if line.startswith("RESPONSE ")
    ]
    logs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return Run(responses, logs, done.stdout)
