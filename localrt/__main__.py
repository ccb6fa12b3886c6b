"""`python -m localrt start-api | invoke`: sam local without Docker."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from localrt.environment import LogSink, RuntimeSettings, require_loopback
from localrt.pool import Pool
from localrt.template import (
    FunctionSpec,
    TemplateError,
    function_variables,
    load_env_vars_file,
    read_function,
)
from stack.net import on_stop_signals

LOG = logging.getLogger("localrt")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localrt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--template",
            "-t",
            default="template.yaml",
            type=Path,
            help="SAM template (default: template.yaml)",
        )
        p.add_argument(
            "--function",
            help="logical ID of the function (default: the one with Api/HttpApi events)",
        )
        p.add_argument(
            "--env-vars",
            "-n",
            type=Path,
            help='JSON like sam: {"Parameters": {...}, "LogicalId": {...}}',
        )
        p.add_argument(
            "--grace-seconds",
            type=float,
            default=None,
            help="SIGTERM -> SIGKILL delay on stop (default 2, on LMI 0.6)",
        )
        p.add_argument(
            "--max-concurrency",
            type=int,
            default=None,
            metavar="N",
            help="run as Lambda Managed Instances with N workers per environment (default: "
            "the template's CapacityProviderConfig.PerExecutionEnvironmentMaxConcurrency, "
            "if any; else on-demand)",
        )
        p.add_argument(
            "--no-freeze",
            dest="freeze",
            action="store_false",
            help="keep idle environments running (default: SIGSTOP them, as Lambda freezes)",
        )
        p.add_argument("--debug", action="store_true", help="log Runtime API traffic")

    api = sub.add_parser("start-api", help="serve the template's routes like `sam local start-api`")
    common(api)
    api.add_argument(
        "--host", default="127.0.0.1", help="loopback address only (default 127.0.0.1)"
    )
    api.add_argument(
        "--port", "-p", type=int, default=3000, help="0 picks a free port (default 3000)"
    )
    api.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="max execution environments (default 4)",
    )

    inv = sub.add_parser(
        "invoke", help="invoke once and print the response like `sam local invoke -e`"
    )
    common(inv)
    inv.add_argument("--event", "-e", help="event JSON file, '-' for stdin (default: {})")
    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace) -> RuntimeSettings:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    spec: FunctionSpec = read_function(args.template, args.function, region)
    env_file = load_env_vars_file(args.env_vars, spec) if args.env_vars else None
    max_concurrency = args.max_concurrency or spec.max_concurrency
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise TemplateError("--max-concurrency must be >= 1")
    return RuntimeSettings(
        spec=spec,
        variables=function_variables(spec, env_file),
        region=region,
        freeze=args.freeze,
        max_concurrency=max_concurrency,
    )


def _on_stop_signals(stop: Callable[[], None]) -> None:
    def stopping(sig: signal.Signals) -> None:
        LOG.info("%s received: stopping", sig.name)
        stop()

    on_stop_signals(stopping)


def start_api(args: argparse.Namespace) -> int:
    require_loopback(args.host)  # before ~2 s of flask + samcli imports that `invoke` skips
    from localrt.server import serve

    settings = build_settings(args)
    spec = settings.spec
    if not spec.routes:
        LOG.error("%s has no Api/HttpApi events: nothing to serve", spec.logical_id)
        return 2
    pool = Pool(settings, args.concurrency, LogSink())
    server = serve(spec, pool, args.host, args.port)
    _on_stop_signals(server.shutdown)
    base = f"http://{args.host}:{server.server_port}"
    for route in spec.routes:
        kind = (
            "REST"
            if route.event_type == "Api"
            else f"HttpApi payload {route.payload_format_version or '2.0'}"
        )
        LOG.info(
            "Mounted %s %s [%s] (%s)",
            spec.logical_id,
            base + route.path,
            ",".join(route.methods),
            kind,
        )
    LOG.info(
        "handler %s, code %s, timeout %ss, memory %s MB, concurrency %s, %s",
        spec.handler,
        spec.code_dir,
        spec.timeout,
        spec.memory_size,
        args.concurrency,
        (
            f"Lambda Managed Instances: {settings.max_concurrency} workers per environment, "
            "never frozen"
            if settings.lmi
            else f"on-demand, freeze {'on' if settings.freeze else 'off'}"
        ),
    )
    LOG.info("listening on %s (stats: %s/__localrt/stats)", base, base)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        pool.shutdown(args.grace_seconds)
        LOG.info("stopped")
    return 0


def invoke(args: argparse.Namespace) -> int:
    settings = build_settings(args)
    if args.event in (None, ""):
        payload = b"{}"
    elif args.event == "-":
        payload = sys.stdin.buffer.read()
    else:
        payload = Path(args.event).read_bytes()
    pool = Pool(settings, 1, LogSink())
    # Ctrl-C mid-invoke: SIGTERM the environment (grace applies), the event fails.
    _on_stop_signals(lambda: pool.shutdown(args.grace_seconds))
    try:
        inv = pool.invoke(payload)
    finally:
        pool.shutdown(args.grace_seconds)
    sys.stdout.buffer.write(inv.body + b"\n")
    sys.stdout.flush()
    return 0 if inv.outcome == "response" else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        format="[localrt] %(message)s",
        level=logging.DEBUG if args.debug else logging.INFO,
    )
    try:
        return start_api(args) if args.command == "start-api" else invoke(args)
    except TemplateError as exc:
        LOG.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
