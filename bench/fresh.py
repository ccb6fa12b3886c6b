"""Run the function's handler in a fresh interpreter, as the runtime loads it.

``bench.percall`` and the tests that check imports or the bench's timers call the handler in a
process of their own: a measurement of imports must start from nothing, and a test's conftest
cannot be imported there (it would bring pytest into the measurement). The script gets the
function's directory, the layer and this repository (for ``lambda_context``) on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from awslambdaric.lambda_context import LambdaContext

REPO = Path(__file__).resolve().parent.parent
LAYER = REPO / "layers" / "observability" / "python"
REQUEST_ID = "0f1e2d3c-0000-4000-8000-000000000001"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:healthz"


def lambda_context() -> LambdaContext:
    """One invocation's context: awslambdaric's own class, as the runtime builds it, with
    Lambda's longest timeout ahead; name and version come from the environment."""
    from awslambdaric.lambda_context import LambdaContext

    return LambdaContext(REQUEST_ID, None, None, int(time.time() * 1000) + 900_000, FUNCTION_ARN)


def run(
    script: str,
    code_dir: Path,
    args: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    extra_paths: Sequence[Path] = (),
    timeout: float = 60,
) -> str:
    """``python -c script *args`` with the function in ``code_dir``; its standard output."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(str(p) for p in [code_dir, LAYER, *extra_paths, REPO]),
        "AWS_LAMBDA_FUNCTION_NAME": "healthz",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/healthz",
        "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
        "AWS_REGION": "eu-west-1",
        **(variables or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout
