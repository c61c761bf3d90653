"""Settings for ``zmsg serve`` and for clients: command line > ``ZMSG_*`` environment > ``zmsg.toml``.

Theory of operation: a ``Config`` holds the two outer layers (the parsed ``zmsg.toml`` and a
snapshot of the environment). Resolving a setting walks the layers from weakest to strongest,
converts each value with msgspec against the field's annotated type (so ``"2.5"`` from the
environment becomes a float and ``-1`` fails ``> 0``), and remembers where each value came
from, so an invalid one is rejected with a ``ConfigError`` that names the flag, variable or
file key to fix. Names, one place (see docs/cli.md):

- ``zmsg serve``: ``[serve]`` in the file, ``ZMSG_SERVE_<OPTION>`` in the environment.
- Defaults for every client: ``[client]``, ``ZMSG_CLIENT_<OPTION>``.
- Named clients (the registry): ``[clients.<NAME>]``, ``ZMSG_CLIENTS_<NAME>_<OPTION>``.
- The file: ``--config``, else ``ZMSG_CONFIG``, else ``./zmsg.toml`` when it exists.

Text values (the environment) of list options are comma-separated; of mapping options (the
client's ``metadata``) a TOML inline table, ``{ authorization = "Bearer x" }``, the same
syntax as the file.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args, get_origin

import msgspec

from zmsg.client_core import ClientOptions, PositiveFloat
from zmsg.endpoints import parse_networks, validate_endpoint
from zmsg.errors import ConfigError, EndpointError, SecurityError

if TYPE_CHECKING:  # the transport (and zmq) load only when security is actually asked for
    from zmsg.transport.security import CurveClient, CurveServer

__all__ = [
    "Config",
    "ServeSettings",
    "ClientSettings",
    "load_config",
    "normalise_client_name",
    "CONFIG_FILE",
    "CONFIG_ENV",
    "ENV_PREFIX",
]

ENV_PREFIX = "ZMSG_"
CONFIG_FILE = "zmsg.toml"
CONFIG_ENV = "ZMSG_CONFIG"


class ServeSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Everything ``zmsg serve`` can be told; each field is also a flag, a variable and a key."""

    app: str | None = None
    """MODULE:ATTR of the Service (or of a factory returning one)."""
    bind: str = "tcp://127.0.0.1:0"
    events_bind: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    grace: PositiveFloat = 10.0
    """Seconds a drain waits for in-flight handlers before cancelling them."""
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    max_message_size: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """Overrides the Service's own limit on one frame (bytes)."""
    max_concurrency: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Overrides the Service's cap on async handlers running at once."""
    max_peer_buffer: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Overrides the Service's budget of unread reply bytes per client (then its requests are refused)."""
    reply_hwm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Overrides the Service's count of reply messages ZeroMQ itself queues per client."""
    curve_secret_key: str | None = None
    """Path of the service's CURVE secret key file (``zmsg keygen`` writes one); turns CURVE on."""
    curve_allow: tuple[str, ...] = ()
    """Allowed client public keys: Z85 keys, ``.key`` files or directories of them."""
    insecure: bool = False
    """Allow binding an address other hosts can reach without CURVE (refused otherwise)."""
    allow_from: tuple[str, ...] = ()
    """Networks (CIDR) whose peers may connect; others complete no handshake (both sockets)."""
    metrics_bind: str | None = None
    """HOST:PORT to serve Prometheus ``/metrics`` on (port 0 picks one); needs the ``metrics`` extra."""
    otel: bool = False
    """Trace every call with OpenTelemetry (the application configures the tracer provider)."""
    access_log: bool = False
    """Log one line per handled call (pattern, outcome, duration) on the ``zmsg.access`` logger."""
    workers: Annotated[int, msgspec.Meta(ge=1)] | Literal["auto"] = 1
    """Worker processes (``auto``: one per CPU this process may use); 1 serves in this process."""

    def worker_count(self) -> int:
        if self.workers == "auto":
            try:
                return max(1, len(os.sched_getaffinity(0)))
            except AttributeError:  # not Linux
                return max(1, os.cpu_count() or 1)
        return self.workers

    def security(self) -> CurveServer | None:
        from zmsg.transport.security import CurveServer

        if self.curve_secret_key is None:
            if self.curve_allow:
                raise ConfigError("curve_allow is set but curve_secret_key is not: CURVE needs the service's key")
            return None
        if not self.curve_allow:
            raise ConfigError("curve_secret_key is set but curve_allow is empty: no client could connect")
        try:
            return CurveServer.create(self.curve_secret_key, self.curve_allow)
        except SecurityError as exc:
            raise ConfigError(f"CURVE settings: {exc}") from None


class ClientSettings(ClientOptions, kw_only=True, frozen=True):
    """One client's settings: every ``ClientOptions`` field (the same names, types, defaults and
    constraints), plus its endpoints and CURVE keys as paths or text."""

    endpoints: tuple[str, ...] = ()
    curve_secret_key: str | None = None
    """Path of this client's CURVE secret key file (or Z85 text); with curve_server_key, turns CURVE on."""
    curve_server_key: str | None = None
    """The service's public key: Z85 text or a ``.key`` file."""

    def security(self) -> CurveClient | None:
        from zmsg.transport.security import CurveClient

        if (self.curve_secret_key is None) != (self.curve_server_key is None):
            raise ConfigError("CURVE needs both curve_secret_key and curve_server_key")
        if self.curve_secret_key is None or self.curve_server_key is None:
            return None
        try:
            return CurveClient.create(self.curve_secret_key, self.curve_server_key)
        except SecurityError as exc:
            raise ConfigError(f"CURVE settings: {exc}") from None

    def proxy_options(self) -> dict[str, Any]:
        """Keyword arguments for ``ClientProxy``: every option, and the security they describe."""
        return {**{name: getattr(self, name) for name in CLIENT_OPTIONS}, "security": self.security()}

    def sync_proxy_options(self) -> dict[str, Any]:
        """Keyword arguments for ``SyncClientProxy`` (the options that apply to one blocking
        request per thread; see ``zmsg.client_core.SYNC_CLIENT_OPTIONS``)."""
        from zmsg.client_core import SYNC_CLIENT_OPTIONS

        return {**{name: getattr(self, name) for name in CLIENT_OPTIONS if name in SYNC_CLIENT_OPTIONS},
                "security": self.security()}


CLIENT_OPTIONS: tuple[str, ...] = ClientOptions.__struct_fields__
"""The names of the options every client takes, in declaration order."""


S = TypeVar("S", ServeSettings, ClientSettings)

_ENDPOINT_FIELDS = frozenset({"bind", "events_bind", "endpoints"})


def _fields_where(test: Any) -> frozenset[str]:
    """Field names of both settings classes whose annotated type passes ``test`` (derived from
    the declarations, so a new option is handled like its kind without being listed here)."""
    found = set()
    for cls in (ServeSettings, ClientSettings):
        for name, tp in _field_types(cls).items():
            if test(tp):
                found.add(name)
    return frozenset(found)


def _admits_none(tp: Any) -> bool:
    return type(None) in get_args(tp)


def _is_sequence(tp: Any) -> bool:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return get_origin(tp) in (tuple, list)


def _is_mapping(tp: Any) -> bool:
    return any(get_origin(arg) is dict or arg is dict for arg in (tp, *get_args(tp)))


_NONE_WORDS = frozenset({"", "off", "none"})
_NULLABLE: frozenset[str]
_LIST_FIELDS: frozenset[str]
_MAPPING_FIELDS: frozenset[str]
_SERVE_KEYS = frozenset(ServeSettings.__struct_fields__)
_CLIENT_KEYS = frozenset(ClientSettings.__struct_fields__) - {"endpoints"}
_NAMED_CLIENT_KEYS = frozenset(ClientSettings.__struct_fields__)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalise_client_name(name: str) -> str:
    """Client names are case-insensitive identifiers; the canonical form is upper case."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid client name {name!r}: use letters, digits and underscores (e.g. BILLING_SERVICE)"
        )
    return name.upper()


@dataclass(frozen=True)
class _Layer:
    """Values from one source, and how to name each one in an error message."""

    values: Mapping[str, Any]
    describe: Mapping[str, str]
    from_text: bool = False  # environment values are strings: lists are comma-separated


def _resolve(cls: type[S], layers: list[_Layer]) -> S:
    values: dict[str, Any] = {}
    for layer in layers:  # weakest first: later layers win
        for key, raw in layer.values.items():
            where = layer.describe[key]
            value = raw
            if key in _LIST_FIELDS:
                if isinstance(raw, str):
                    parts = raw.split(",") if layer.from_text else [raw]
                    value = [part.strip() for part in parts if part.strip()]
            elif key in _NULLABLE and isinstance(raw, str) and raw.strip().lower() in _NONE_WORDS:
                value = None  # an empty variable (or "off" / "none") means "not set" / "off"
            elif key in _MAPPING_FIELDS and layer.from_text and isinstance(raw, str):
                try:
                    value = tomllib.loads(f"value = {raw}")["value"]
                except tomllib.TOMLDecodeError:
                    raise ConfigError(
                        f"invalid value {raw!r} for {where}: expected a TOML inline table, "
                        '{ key = "value", ... }'
                    ) from None
            try:
                value = msgspec.convert(value, _field_types(cls)[key], strict=False)
            except msgspec.ValidationError as exc:
                raise ConfigError(f"invalid value {raw!r} for {where}: {_lower_first(str(exc))}") from None
            if key == "allow_from":
                try:
                    value = parse_networks(value)
                except SecurityError as exc:
                    raise ConfigError(f"invalid value for {where}: {exc}") from None
            if key in _ENDPOINT_FIELDS and value is not None:
                for endpoint in value if key == "endpoints" else (value,):
                    try:
                        validate_endpoint(endpoint)
                    except EndpointError as exc:
                        raise ConfigError(f"invalid value for {where}: {exc}") from None
            values[key] = value
    return cls(**values)


@functools.cache
def _field_types(cls: type[Any]) -> dict[str, Any]:
    # Resolved once per settings class (annotations are strings under future annotations).
    return typing.get_type_hints(cls, include_extras=True)


_NULLABLE = _fields_where(_admits_none)
_LIST_FIELDS = _fields_where(_is_sequence)
_MAPPING_FIELDS = _fields_where(_is_mapping)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


class Config:
    """The ``zmsg.toml`` and environment layers that settings are resolved from.

    Built by ``load_config()`` (or directly, in tests, from a dict and a fake environment).
    Reading the file and the environment once keeps every later resolution consistent.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        path: Path | None = None,
    ) -> None:
        self.path = path
        self.environ: dict[str, str] = dict(os.environ if environ is None else environ)
        self._where = f"{path}" if path is not None else "config"
        data = dict(data or {})
        unknown = set(data) - {"serve", "client", "clients"}
        if unknown:
            raise ConfigError(
                f"unknown table(s) {', '.join(sorted(unknown))} in {self._where}: "
                "expected [serve], [client], [clients.NAME]"
            )
        self._serve = self._table(data, "serve", _SERVE_KEYS)
        self._client = self._table(data, "client", _CLIENT_KEYS)
        clients = data.get("clients", {})
        if not isinstance(clients, dict):
            raise ConfigError(f"[clients] in {self._where} must be a table of [clients.NAME] tables")
        self._clients: dict[str, dict[str, Any]] = {}
        for name in clients:
            canonical = normalise_client_name(name)
            self._clients[canonical] = self._table(clients, name, _NAMED_CLIENT_KEYS, prefix="clients.")

    def _table(
        self, data: Mapping[str, Any], key: str, allowed: frozenset[str], prefix: str = ""
    ) -> dict[str, Any]:
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{prefix}{key} in {self._where} must be a table")
        unknown = set(table) - allowed
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(f'{prefix}{key}.{u}' for u in sorted(unknown))} "
                f"in {self._where}; "
                f"known: {', '.join(sorted(allowed))}"
            )
        return dict(table)

    # -- layers ----------------------------------------------------------------------------

    def _file_layer(self, table: Mapping[str, Any], section: str) -> _Layer:
        return _Layer(table, {k: f"{section}.{k} in {self._where}" for k in table})

    def _env_layer(self, prefix: str, keys: frozenset[str]) -> _Layer:
        values = {}
        describe = {}
        for key in keys:
            var = f"{prefix}{key.upper()}"
            if var in self.environ:
                values[key] = self.environ[var]
                describe[key] = var
        return _Layer(values, describe, from_text=True)

    @staticmethod
    def _flag_layer(overrides: Mapping[str, Any], flags: Mapping[str, str] | None) -> _Layer:
        given = {k: v for k, v in overrides.items() if v is not None}
        describe = {k: (flags or {}).get(k, "--" + k.replace("_", "-")) for k in given}
        return _Layer(given, describe)

    # -- resolution ------------------------------------------------------------------------

    def serve(
        self, overrides: Mapping[str, Any] | None = None, *, flags: Mapping[str, str] | None = None
    ) -> ServeSettings:
        """Settings for ``zmsg serve``; ``overrides`` are command-line values (None = not given)."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - _SERVE_KEYS
        if unknown:
            raise TypeError(f"unknown serve option(s): {', '.join(sorted(unknown))}")
        return _resolve(ServeSettings, [
            self._file_layer(self._serve, "serve"),
            self._env_layer(f"{ENV_PREFIX}SERVE_", _SERVE_KEYS),
            self._flag_layer(overrides, flags),
        ])

    def client(
        self,
        name: str | None = None,
        *,
        declared: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        flags: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Settings for one client, strongest last: defaults, ``declared`` (code), ``[client]``,
        ``[clients.NAME]``, ``ZMSG_CLIENT_*``, ``ZMSG_CLIENTS_NAME_*``, ``overrides`` (flags).
        """
        layers: list[_Layer] = []
        if declared:
            layers.append(_Layer({k: v for k, v in declared.items() if v is not None},
                                 {k: f"{k} (declared for {name or 'the client'})" for k in declared}))
        layers.append(self._file_layer(self._client, "client"))
        canonical = normalise_client_name(name) if name is not None else None
        if canonical is not None:
            layers.append(self._file_layer(self._clients.get(canonical, {}), f"clients.{canonical}"))
        layers.append(self._env_layer(f"{ENV_PREFIX}CLIENT_", _CLIENT_KEYS))
        if canonical is not None:
            layers.append(self._env_layer(f"{ENV_PREFIX}CLIENTS_{canonical}_", _NAMED_CLIENT_KEYS))
        if overrides:
            layers.append(self._flag_layer(overrides, flags))
        return _resolve(ClientSettings, layers)

    def client_names(self) -> list[str]:
        """Names of the clients this configuration declares (file tables and environment)."""
        names = set(self._clients)
        prefix, suffix = f"{ENV_PREFIX}CLIENTS_", "_ENDPOINTS"
        for var in self.environ:
            if var.startswith(prefix) and var.endswith(suffix) and len(var) > len(prefix) + len(suffix):
                names.add(var[len(prefix):-len(suffix)])
        return sorted(names)

    def declares(self, name: str) -> bool:
        return normalise_client_name(name) in self.client_names()


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read ``path`` (else ``$ZMSG_CONFIG``, else ``./zmsg.toml`` when present) and the environment."""
    env = dict(os.environ if environ is None else environ)
    explicit = path if path is not None else (env.get(CONFIG_ENV) or None)
    if explicit is not None:
        file = Path(explicit)
        if not file.is_file():
            source = "--config" if path is not None else CONFIG_ENV
            raise ConfigError(f"config file {str(file)!r} (from {source}) does not exist")
    else:
        file = Path.cwd() / CONFIG_FILE
        if not file.is_file():
            return Config(environ=env)
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    return Config(data, environ=env, path=file)
