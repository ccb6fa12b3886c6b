"""`python -m stack up|check`: run the local observability stack, or check its rules."""

from __future__ import annotations

import argparse
import sys

from stack._proc import StackError
from stack.core import Stack
from stack.net import port_in_use, stop_event
from stack.promtool import run_all


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", help="start the Pushgateway, Prometheus and the OpenTelemetry Collector"
    )
    up.add_argument("--pushgateway-port", type=int, default=9091, help="0 = any free port")
    up.add_argument("--prometheus-port", type=int, default=9090, help="0 = any free port")
    up.add_argument("--otlp-grpc-port", type=int, default=4317, help="0 = any free port")
    up.add_argument("--otlp-http-port", type=int, default=4318, help="0 = any free port")
    up.add_argument(
        "--delay-ms", type=int, default=0, help="OTLP/HTTP: delay per export (at a fault proxy)"
    )
    up.add_argument(
        "--fail-status",
        type=int,
        default=None,
        help="OTLP/HTTP: answer every export with this HTTP status (at a fault proxy)",
    )
    up.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp dir (logs, TSDB, the span files) after stopping",
    )
    sub.add_parser("check", help="promtool check config, check rules and test rules")
    return p


def _check() -> int:
    failed = 0
    for result in run_all():
        print(f"== promtool {result.name}: {'ok' if result.ok else 'FAILED'}")
        print(result.output.rstrip())
        failed += not result.ok
    return 1 if failed else 0


def _up(args: argparse.Namespace) -> int:
    ports = {
        "--pushgateway-port": args.pushgateway_port,
        "--prometheus-port": args.prometheus_port,
        "--otlp-grpc-port": args.otlp_grpc_port,
        "--otlp-http-port": args.otlp_http_port,
    }
    busy = [f"{flag} {port}" for flag, port in ports.items() if port and port_in_use(port)]
    if busy:
        print(
            f"error: port(s) in use on 127.0.0.1: {', '.join(busy)} (pass 0 to pick a free port)",
            file=sys.stderr,
        )
        return 2

    stop = stop_event()
    stack = Stack(
        pushgateway_port=args.pushgateway_port,
        prometheus_port=args.prometheus_port,
        otlp_grpc_port=args.otlp_grpc_port,
        otlp_http_port=args.otlp_http_port,
        delay_ms=args.delay_ms,
        fail_status=args.fail_status,
        keep_workdir=args.keep,
    )
    with stack:
        if stop.is_set():
            return 130
        env = stack.env()
        print(f"Pushgateway:         {stack.pushgateway_url}")
        print(f"Prometheus:          {stack.prometheus_url}")
        print(f"Collector OTLP/HTTP: {stack.otlp_http_endpoint}/v1/traces")
        print(f"Collector OTLP/gRPC: {stack.otlp_grpc_endpoint}")
        files = ", ".join(str(p) for p in stack.collector.span_files.values())
        print(f"Spans (OTLP/JSON lines, the Collector's file exporter): {files}")
        print(f"Logs:                {stack.workdir}")
        print("\n# export these for the function:")
        for key, value in env.items():
            print(f"export {key}={value}")
        print(
            f"# for OTLP/gRPC instead: export OTEL_EXPORTER_OTLP_ENDPOINT="
            f"{stack.otlp_grpc_endpoint} OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
        )
        print("\nCtrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            watched = (stack.pushgateway, stack.prometheus, stack.collector, stack.otlp_proxy)
            dead = [
                c.name
                for c in watched
                if c is not None and (c.process is None or not c.process.running())
            ]
            if dead:
                print(f"error: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
        print("stopping...", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check()
        return _up(args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
