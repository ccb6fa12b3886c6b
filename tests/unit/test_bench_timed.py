"""The bench's in-environment timer (bench/functions/timed/timed.py) still times every piece.

It wraps seams of the function and the layer by name; a rename there would leave a piece at
zero and `python -m bench.inenv` reporting nonsense, with nothing else noticing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

_SCRIPT = """
import json, sys
import timed

class Context:
    aws_request_id = "0f1e2d3c-0000-4000-8000-000000000001"
    function_name = "healthz"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:healthz"
    log_group_name = "/aws/lambda/healthz"
    log_stream_name = "stream"
    def get_remaining_time_in_millis(self):
        return 3000

event = json.load(open(sys.argv[1]))
for _ in range(10):
    assert timed.handler(event, Context())["statusCode"] == 200
print(json.dumps(list(timed.PIECES)))
"""


def test_every_piece_is_timed_on_every_call(tmp_path: Path) -> None:
    pieces_file = tmp_path / "pieces.json"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "bench/functions/timed"), str(ROOT / "layers/observability/python")]
        ),
        "AWS_LAMBDA_FUNCTION_NAME": "healthz",
        "AWS_REGION": "eu-west-1",
        "OBSERVABILITY_EXPORT_MODE": "sync",
        "OTEL_TRACES_EXPORTER": "none",
        "BENCH_PIECES_FILE": str(pieces_file),
    }
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(ROOT / "events/rest-get.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    pieces = json.loads(out.splitlines()[-1])
    calls = json.loads(pieces_file.read_text())
    assert sorted(calls) == sorted(pieces)
    for piece in pieces:
        assert len(calls[piece]) == 10 and all(ns > 0 for ns in calls[piece]), piece
    # Nested pieces are parts of the whole.
    for i in range(10):
        assert calls["whole"][i] >= calls["observe"][i] >= calls["function"][i]
        assert calls["function"][i] >= calls["log_line"][i]
