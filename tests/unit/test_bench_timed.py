"""The bench's in-environment timer (bench/functions/timed/timed.py) still times every piece.

It wraps seams of the function and the layer by name; a rename there would leave a piece at
zero and `python -m bench.inenv` reporting nonsense, with nothing else noticing.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import fresh
from tests.conftest import ROOT

_SCRIPT = """
import json, sys, time
import timed
from bench.fresh import lambda_context

context = lambda_context()

event = json.load(open(sys.argv[1]))
for _ in range(10):
    assert timed.handler(event, context)["statusCode"] == 200
print(json.dumps(list(timed.PIECES)))
"""


def test_every_piece_is_timed_on_every_call(tmp_path: Path) -> None:
    pieces_file = tmp_path / "pieces.json"
    variables = {
        "OBSERVABILITY_EXPORT_MODE": "sync",
        "OTEL_TRACES_EXPORTER": "none",
        "BENCH_PIECES_FILE": str(pieces_file),
    }
    code_dir = ROOT / "bench/functions/timed"
    out = fresh.run(_SCRIPT, code_dir, [str(ROOT / "events/rest-get.json")], variables)
    pieces = json.loads(out.splitlines()[-1])
    calls = json.loads(pieces_file.read_text())
    assert sorted(calls) == sorted(pieces)
    for piece in pieces:
        assert len(calls[piece]) == 10 and all(ns > 0 for ns in calls[piece]), piece
    # Nested pieces are parts of the whole.
    for i in range(10):
        assert calls["whole"][i] >= calls["observe"][i] >= calls["function"][i]
        assert calls["function"][i] >= calls["log_line"][i]
