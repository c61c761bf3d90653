"""The ``zmsg`` command: argument parsing and output only; the work lives in the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from zmsg.errors import EndpointError
from zmsg.service import Service

__all__ = ["main", "load_service", "build_parser"]

EXIT_OK = 0
EXIT_USAGE = 2


class CliError(Exception):
    """A problem to report as one line, without a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def load_service(target: str) -> Service:
    """Import ``MODULE:ATTR`` (the current directory on the path, as uvicorn does) to a Service."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR (for example users:service), got {target!r}", EXIT_USAGE)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CliError(f"cannot import module {module_name!r}: not found") from None
        raise CliError(f"importing {module_name!r} failed: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Service) and callable(obj):
        obj = obj()
    if not isinstance(obj, Service):
        raise CliError(f"{target} is {type(obj).__name__}, not a zmsg.Service (or a factory returning one)")
    return obj


def _cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = load_service(args.target)

    def ready(endpoint: str) -> None:
        print(f"zmsg: serving {service.name!r} on {endpoint} (events on {service.events_endpoint})", flush=True)

    try:
        service.run(args.bind, events_endpoint=args.events_bind, on_ready=ready)
    except EndpointError as exc:
        raise CliError(str(exc)) from None
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zmsg", description="Brokerless messaging over ZeroMQ.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run a Service from MODULE:ATTR",
        description="Import a zmsg.Service (or a factory returning one) and serve it until SIGINT/SIGTERM.",
        epilog="example: zmsg serve users:service --bind tcp://127.0.0.1:5555",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("target", help="MODULE:ATTR of the Service, e.g. users:service")
    serve.add_argument("--bind", default="tcp://127.0.0.1:0", help="request endpoint (port 0: pick a free port)")
    serve.add_argument("--events-bind", default=None, help="event endpoint (default: beside --bind, free port)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        print(f"zmsg: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
