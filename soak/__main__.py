"""``python -m soak --seconds 60 --concurrency 4``: prints the report, exits 1 on any problem."""

from __future__ import annotations

import argparse
import json
import sys

from soak.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (max 600)")
    parser.add_argument("--concurrency", type=int, default=4, help="execution environments")
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard request cap")
    parser.add_argument("--mode", choices=("auto", "async", "sync"), default="auto")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run(args.seconds, args.concurrency, args.max_requests, mode=args.mode)
    out = json.dumps(report.as_dict(), indent=2) if args.json else report.text()
    sys.stdout.write(out + "\n")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
