"""The ``zmsg`` command: argument parsing and output only; the work lives in the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from zmsg import commands
from zmsg.commands import ExitCode, exit_code_for
from zmsg.config import CONFIG_ENV, CONFIG_FILE, Config, load_config
from zmsg.errors import ConfigError, RpcException, ZmsgError
from zmsg.serving import Ready, load_service, serve
from zmsg.transport import validate_endpoint
from zmsg.transport.security import write_keypair

__all__ = ["main", "load_service", "build_parser", "ExitCode"]


class CliError(Exception):
    """A problem to report as one line, without a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _config(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def _cmd_serve(args: argparse.Namespace) -> int:
    flags = {"app": "MODULE:ATTR"}
    settings = _config(args).serve({
        "app": args.target, "bind": args.bind, "events_bind": args.events_bind, "log_level": args.log_level,
        "log_format": args.log_format, "grace": args.grace, "loop": args.loop,
        "max_message_size": args.max_message_size, "max_concurrency": args.max_concurrency,
        "max_peer_buffer": args.max_peer_buffer, "reply_hwm": args.reply_hwm,
        "curve_secret_key": args.curve_secret_key, "curve_allow": args.curve_allow,
        "insecure": args.insecure, "allow_from": args.allow_from, "workers": args.workers,
        "metrics_bind": args.metrics_bind, "otel": args.otel or None, "access_log": args.access_log or None,
    }, flags=flags)

    def ready(info: Ready) -> None:
        # tests/conftest.py and process managers parse this line: keep its format.
        workers = f" with {info.workers} workers" if info.workers > 1 else ""
        print(f"zmsg: serving {info.name!r} on {info.endpoint} (events on {info.events}){workers}", flush=True)

    def metrics(url: str) -> None:
        print(f"zmsg: metrics on {url}", flush=True)

    serve(settings, on_ready=ready, on_metrics=metrics)
    return ExitCode.OK


def _with_client(args: argparse.Namespace, work: Any) -> Any:
    overrides = {"timeout": args.timeout, "connect_timeout": args.connect_timeout,
                 "curve_secret_key": args.curve_secret_key, "curve_server_key": args.curve_server_key}
    client = commands.open_client(args.endpoint, _config(args), overrides)
    try:
        return work(client)
    finally:
        client.close()


def _metadata(args: argparse.Namespace) -> dict[str, str] | None:
    """``--metadata KEY=VALUE`` pairs: the call's metadata, over the configured client's."""
    return dict(args.metadata) if args.metadata else None


def _metadata_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _cmd_call(args: argparse.Namespace) -> int:
    pattern, data = commands.parse_pattern(args.pattern), commands.parse_data(args.data)
    reply = _with_client(args, lambda client: commands.call(client, pattern, data, _metadata(args)))
    print(commands.to_json(reply), flush=True)
    return ExitCode.OK


def _cmd_emit(args: argparse.Namespace) -> int:
    pattern, data = commands.parse_pattern(args.pattern), commands.parse_data(args.data)
    _with_client(args, lambda client: commands.emit(client, pattern, data, _metadata(args)))
    return ExitCode.OK


def _cmd_info(args: argparse.Namespace) -> int:
    if args.schema:
        document = _with_client(args, commands.schema)
        print(_dump(document, args.yaml), flush=True)
        return ExitCode.OK
    if args.yaml:
        raise CliError("--yaml goes with --schema", ExitCode.USAGE)
    answer = _with_client(args, commands.info)
    print(commands.to_json(answer) if args.json else commands.format_info(answer), flush=True)
    return ExitCode.OK


def _dump(document: dict[str, Any], yaml: bool) -> str:
    from zmsg import contract

    try:
        return contract.dumps(document, yaml=yaml)
    except ImportError:
        raise CliError("--yaml needs PyYAML, which is not installed (pip install 'zmsg[yaml]'); "
                       "the default output is JSON") from None


def _cmd_schema(args: argparse.Namespace) -> int:
    from zmsg import contract

    service = load_service(args.target)
    endpoint = None
    if args.endpoint is not None:
        try:
            endpoint = validate_endpoint(args.endpoint)
        except ZmsgError as exc:
            raise ConfigError(str(exc)) from None
    print(_dump(contract.service_document(service, endpoint), args.yaml), flush=True)
    return ExitCode.OK


def _cmd_check(args: argparse.Namespace) -> int:
    from zmsg import contract

    saved = contract.load_document(args.file)
    current = _with_client(args, commands.schema)
    changes = contract.compare(saved, current)
    breaking = [c for c in changes if c.breaking]
    for change in sorted(changes, key=lambda c: not c.breaking):
        print(change, flush=True)
    name = current.get("info", {}).get("title", "?")
    if breaking:
        print(f"zmsg: {name!r} at {args.endpoint} is INCOMPATIBLE with {args.file}: "
              f"{len(breaking)} incompatible change(s), {len(changes) - len(breaking)} compatible", file=sys.stderr)
        return ExitCode.INCOMPATIBLE
    print(f"zmsg: {name!r} at {args.endpoint} is compatible with {args.file} "
          f"({len(changes)} compatible change(s))", file=sys.stderr)
    return ExitCode.OK


def _cmd_health(args: argparse.Namespace) -> int:
    answer = _with_client(args, commands.health)
    print(f"{answer.get('service')}: {answer.get('status')}", flush=True)
    return ExitCode.OK


# -- parser ------------------------------------------------------------------------------------

_SERVE_EPILOG = """\
examples:
  zmsg serve users:service --bind tcp://127.0.0.1:5555
  zmsg serve app:make_service --bind 'tcp://*:5555' --events-bind 'tcp://*:5556' --insecure
  ZMSG_SERVE_BIND=tcp://0.0.0.0:5555 zmsg serve users:service --allow-from 10.1.0.0/16

Binding an address other hosts can reach (anything but 127.0.0.0/8 and ::1 for TCP; ipc and
inproc are local) needs CURVE (--curve-secret-key with --curve-allow), --allow-from, or
--insecure; otherwise serve exits 2 with a one-line error. SIGHUP re-reads the CURVE allow-list.

Every option can also be set as ZMSG_SERVE_<OPTION> (e.g. ZMSG_SERVE_LOG_LEVEL=debug) or in the
[serve] table of zmsg.toml (app = "users:service"); flags win over the environment, the
environment over the file. SIGTERM/SIGINT drain: new requests get a 503 error, in-flight ones
finish (up to --grace seconds) and are answered, then the process exits 0. A second signal
exits at once.
"""

_CLIENT_NOTE = """
ENDPOINT is tcp://HOST:PORT (or ipc://, inproc://), or the NAME of a client declared in
zmsg.toml ([clients.NAME]) or the environment (ZMSG_CLIENTS_NAME_ENDPOINTS).
Timeouts also come from ZMSG_CLIENT_TIMEOUT / ZMSG_CLIENT_CONNECT_TIMEOUT or [client].
exit codes: 0 ok, 1 error, 2 bad arguments, 3 RpcException (error JSON on stderr),
4 timeout, 5 service unreachable.
"""

_CALL_EPILOG = """\
examples:
  zmsg call tcp://127.0.0.1:5555 '{"cmd":"sum"}' '[1, 2, 3]'
  zmsg call tcp://127.0.0.1:5555 get_user '{"id": 7}' --timeout 2
  echo '{"id": 7}' | zmsg call BILLING_SERVICE get_invoice -
  zmsg call tcp://127.0.0.1:5555 whoami -m "authorization=Bearer s3cret" -m trace-id=t1
""" + _CLIENT_NOTE

_EMIT_EPILOG = """\
examples:
  zmsg emit tcp://127.0.0.1:5555 user_created '{"user_id": "u1", "email": "a@b.c"}'
  zmsg emit NOTIFICATIONS_SERVICE '{"event":"ping"}'
""" + _CLIENT_NOTE

_INFO_EPILOG = """\
examples:
  zmsg info tcp://127.0.0.1:5555
  zmsg info tcp://127.0.0.1:5555 --json | jq .message_patterns
""" + _CLIENT_NOTE

_CHECK_EPILOG = """\
examples:
  zmsg schema users:service > users.asyncapi.json        # at release time, kept in the repository
  zmsg check tcp://127.0.0.1:5555 users.asyncapi.json    # in CI, against the new build
""" + _CLIENT_NOTE.replace("5 service unreachable.", "5 service unreachable, 6 incompatible change.")

_HEALTH_EPILOG = """\
examples:
  zmsg health tcp://127.0.0.1:5555 && echo up
  zmsg health tcp://127.0.0.1:5555 --timeout 1    # as a container health probe

Exits 0 when the service answers its built-in $zmsg.health pattern with "serving", 5 when it
is unreachable or draining.
""" + _CLIENT_NOTE


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"need at least 1 worker, not {value}")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH",
                        help=f"settings file (default: ${CONFIG_ENV}, else ./{CONFIG_FILE} when present)")
    return common


def _add_serve(sub: Any, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve", parents=[common],
        help="run a Service from MODULE:ATTR",
        description="Import a zmsg.Service (or a factory returning one) and serve it until SIGINT/SIGTERM.",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("target", nargs="?", metavar="MODULE:ATTR",
                       help="the Service, e.g. users:service (env ZMSG_SERVE_APP, [serve] app)")
    serve.add_argument("--bind", metavar="ENDPOINT",
                       help="request endpoint; port 0 picks a free port (default tcp://127.0.0.1:0)")
    serve.add_argument("--events-bind", metavar="ENDPOINT",
                       help="event endpoint (default: same host as --bind, a free port)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    serve.add_argument("--log-format", choices=["text", "json"], help="default text")
    serve.add_argument("--grace", type=_positive_float, metavar="SECONDS",
                       help="how long a drain waits for in-flight handlers (default 10)")
    serve.add_argument("--loop", choices=["auto", "asyncio", "uvloop"],
                       help="event loop (default auto: uvloop when installed)")
    serve.add_argument("--max-message-size", type=int, metavar="BYTES",
                       help="largest frame accepted (default: the Service's, 64 MiB)")
    serve.add_argument("--max-concurrency", type=int, metavar="N",
                       help="async handlers running at once; more wait in order (default: the Service's)")
    serve.add_argument("--max-peer-buffer", type=int, metavar="BYTES",
                       help="unread reply bytes one client may have before its requests are refused "
                            "(default: the Service's, 64 MiB)")
    serve.add_argument("--reply-hwm", type=int, metavar="N",
                       help="reply messages ZeroMQ queues per client before zmsg's own backlog takes "
                            "them (default: the Service's, 16; more trades memory for latency)")
    serve.add_argument("--curve-secret-key", metavar="FILE",
                       help="turn CURVE on with this secret key file (see zmsg keygen)")
    serve.add_argument("--curve-allow", metavar="KEY|FILE|DIR", action="append",
                       help="a client public key allowed in (Z85, .key file, or directory of them); repeatable")
    serve.add_argument("--insecure", action="store_true", default=None,
                       help="allow binding an address other hosts can reach without CURVE "
                            "(refused otherwise; loopback, ipc and inproc need nothing)")
    serve.add_argument("--allow-from", metavar="CIDR", action="append",
                       help="admit only peers from this network (e.g. 10.1.0.0/16) on both sockets; repeatable")
    serve.add_argument("--metrics-bind", metavar="HOST:PORT",
                       help="serve Prometheus /metrics there (port 0 picks one; needs zmsg[metrics])")
    serve.add_argument("--otel", action="store_true",
                       help="trace every call with OpenTelemetry (needs zmsg[otel] and a tracer provider)")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per handled call: pattern, outcome, duration")
    serve.add_argument("--workers", type=_workers, metavar="N|auto",
                       help="worker processes behind the one endpoint (auto: one per CPU); default 1")
    serve.set_defaults(func=_cmd_serve)


def _add_client_command(sub: Any, common: argparse.ArgumentParser, name: str, help: str, description: str,
                        epilog: str, func: Any, *, pattern: bool) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT", help="tcp://HOST:PORT, or a declared client NAME")
    if pattern:
        parser.add_argument("pattern", metavar="PATTERN",
                            help="a string, or a JSON object such as '{\"cmd\":\"sum\"}'")
        parser.add_argument("data", metavar="JSON", nargs="?", default=None,
                            help="the payload as JSON ('-' reads stdin; default null)")
        parser.add_argument("--metadata", "-m", metavar="KEY=VALUE", action="append", type=_metadata_pair,
                            help="metadata sent with it (repeatable), over the client's configured metadata")
    parser.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                        help="reply timeout (default 10)")
    parser.add_argument("--connect-timeout", type=_positive_float, metavar="SECONDS",
                        help="how long to wait for the service to answer the handshake (default: --timeout)")
    parser.add_argument("--curve-secret-key", metavar="FILE", help="this client's CURVE secret key file")
    parser.add_argument("--curve-server-key", metavar="KEY|FILE", help="the service's CURVE public key")
    parser.set_defaults(func=func)
    return parser


def _add_client_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_client_command(sub, common, "call", "send a request and print the reply as JSON",
                        "Send one request (ClientProxy.send) and print the reply as JSON on stdout.",
                        _CALL_EPILOG, _cmd_call, pattern=True)
    _add_client_command(sub, common, "emit", "publish one event",
                        "Publish one event (ClientProxy.emit) to the service's event handlers.",
                        _EMIT_EPILOG, _cmd_emit, pattern=True)
    info = _add_client_command(sub, common, "info", "describe a running service",
                               "Print a running service's name, version, patterns, uptime and counters "
                               "(its built-in $zmsg.info pattern).", _INFO_EPILOG, _cmd_info, pattern=False)
    info.add_argument("--json", action="store_true", help="print the raw $zmsg.info answer as JSON")
    info.add_argument("--schema", action="store_true",
                      help="print the service's AsyncAPI 3.0 document instead (its $zmsg.schema pattern)")
    info.add_argument("--yaml", action="store_true", help="with --schema: YAML instead of JSON (needs PyYAML)")
    check = _add_client_command(
        sub, common, "check", "compare a running service with a saved contract",
        "Ask a running service for its AsyncAPI document ($zmsg.schema) and compare it with FILE (saved "
        "with `zmsg schema` or `zmsg info --schema`). Prints every change; exits 6 when one can break "
        "existing callers (removed pattern, new or newly required request field, changed type, removed "
        "reply field...), 0 when all are compatible (new patterns, new optional fields).",
        _CHECK_EPILOG, _cmd_check, pattern=False)
    check.add_argument("file", metavar="FILE", help="the saved AsyncAPI document (JSON, or YAML with PyYAML)")
    _add_client_command(sub, common, "health", "check that a service answers",
                        "Ask a service's built-in $zmsg.health pattern; exit 0 when it is serving.",
                        _HEALTH_EPILOG, _cmd_health, pattern=False)


def _add_schema(sub: Any) -> None:
    schema = sub.add_parser(
        "schema", help="print a Service's AsyncAPI 3.0 document",
        description="Import MODULE:ATTR (as zmsg serve does) and print its contract as an AsyncAPI 3.0 "
                    "document: every message pattern with its request and reply schemas, every event "
                    "pattern with its payload schema, from the handlers' annotations.",
        epilog="examples:\n"
               "  zmsg schema users:service > users.asyncapi.json\n"
               "  zmsg schema users:service --endpoint tcp://users.internal:5555 --yaml\n"
               "  zmsg info --schema tcp://127.0.0.1:5555        # the same, asked of a running service",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schema.add_argument("target", metavar="MODULE:ATTR", help="the Service, e.g. users:service")
    schema.add_argument("--endpoint", metavar="ENDPOINT", help="the server's endpoint to put in the document")
    schema.add_argument("--yaml", action="store_true", help="YAML instead of JSON (needs PyYAML: zmsg[yaml])")
    schema.set_defaults(func=_cmd_schema)


def _cmd_keygen(args: argparse.Namespace) -> int:
    public, secret = write_keypair(args.dir, args.name)
    print(f"public key (share it): {public}")
    print(f"secret key (keep it private, mode 600): {secret}")
    return ExitCode.OK


def _add_keygen(sub: Any) -> None:
    keygen = sub.add_parser(
        "keygen", help="write a CURVE key pair",
        description="Write NAME.key (public) and NAME.key_secret (secret, mode 600) into DIR.",
        epilog="examples:\n"
               "  zmsg keygen server --dir keys/            # the service's pair\n"
               "  zmsg keygen web --dir keys/clients/       # a client's pair; allow it with\n"
               "  zmsg serve app:service --curve-secret-key keys/server.key_secret --curve-allow keys/clients/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keygen.add_argument("name", help="base name of the two files")
    keygen.add_argument("--dir", default=".", help="where to write them (default: current directory)")
    keygen.set_defaults(func=_cmd_keygen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zmsg", description="Brokerless messaging over ZeroMQ.",
        epilog="exit codes: 0 ok, 1 error, 2 bad arguments, 3 RpcException, 4 timeout, 5 service "
               "unreachable, 6 incompatible contract (check), 130 interrupted. Run 'zmsg COMMAND --help' "
               "for examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = _common()
    _add_serve(sub, common)
    _add_client_commands(sub, common)
    _add_schema(sub)
    _add_keygen(sub)

    from zmsg.bench.cli import add_parser as add_bench_parser  # its own package: imported lazily inside

    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with a usage line on bad arguments
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        print(f"zmsg: error: {exc}", file=sys.stderr)
        return exc.code
    except RpcException as exc:
        # The service's own error object, unchanged, for scripts to parse.
        print(commands.to_json(exc.error), file=sys.stderr)
        return ExitCode.RPC_ERROR
    except (ZmsgError, ConfigError) as exc:
        print(f"zmsg: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # e.g. `zmsg info ... | head -1`
        sys.stderr.close()
        return ExitCode.OK
