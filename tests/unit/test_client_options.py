"""Every option a client takes works, with the same validation and default, from every source.

The options are enumerated from ``ClientProxy``'s own signature, so a new keyword that is not
declared in ``zmsg.client_core.ClientOptions`` (and hence not in ``ClientSettings``, the
registry, ``ZMSG_CLIENT_*``, ``ZMSG_CLIENTS_*`` and ``zmsg.toml``) fails here at once.
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

import zmsg
from zmsg.client_core import DEFAULTS, SYNC_CLIENT_OPTIONS, ClientOptions
from zmsg.config import ClientSettings, Config

EP = "tcp://127.0.0.1:1"
# the address, CURVE (curve_* paths in settings) and middleware (code, not configuration)
NOT_OPTIONS = {"endpoints", "security", "middleware"}


def _keywords(cls: type) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {n: p for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n not in NOT_OPTIONS}


ASYNC_OPTIONS = _keywords(zmsg.ClientProxy)
# A value for each option that is valid and differs from its default, as Python and as text.
SAMPLE: dict[str, tuple[Any, str]] = {
    "timeout": (7.5, "7.5"),
    "connect_timeout": (2.5, "2.5"),
    "emit_timeout": (3.5, "3.5"),
    "retries": (4, "4"),
    "retry_backoff": (0.25, "0.25"),
    "max_in_flight": (77, "77"),
    "max_message_size": (4096, "4096"),
    "heartbeat": (0.75, "0.75"),
    "event_hwm": (10, "10"),
    "flush_at": (5, "5"),
    "stream_window": (16, "16"),
    # a TOML inline table, in the file and in the environment alike
    "metadata": ({"authorization": "Bearer x", "tenant": "t1"}, '{ authorization = "Bearer x", tenant = "t1" }'),
    "wait_for_ready": (True, "true"),
    "transport": ("libzmq", "\"libzmq\""),
}


def test_every_clientproxy_option_is_declared_once_with_its_default() -> None:
    assert set(ASYNC_OPTIONS) == set(ClientOptions.__struct_fields__)
    for name, param in ASYNC_OPTIONS.items():
        assert param.default == getattr(DEFAULTS, name), name
    assert set(SAMPLE) == set(ASYNC_OPTIONS), "give the new option a sample value"


def test_the_sync_client_takes_the_declared_subset_with_the_same_defaults() -> None:
    sync = _keywords(zmsg.SyncClientProxy)
    assert set(sync) == SYNC_CLIENT_OPTIONS
    for name, param in sync.items():
        assert param.default == ASYNC_OPTIONS[name].default, name


def test_settings_and_defaults_agree() -> None:
    settings = ClientSettings()
    for name in ASYNC_OPTIONS:
        assert getattr(settings, name) == getattr(DEFAULTS, name)


def _env(text: str) -> str:
    """The environment's spelling of a TOML value: plain text, so a string loses its quotes."""
    return text[1:-1] if text.startswith('"') else text


SOURCES: dict[str, Callable[[str, Any, str], tuple[Config, dict[str, Any]]]] = {
    "register": lambda n, v, t: (Config(environ={}), {n: v}),
    "ZMSG_CLIENT_": lambda n, v, t: (Config(environ={f"ZMSG_CLIENT_{n.upper()}": _env(t)}), {}),
    "ZMSG_CLIENTS_NAME_": lambda n, v, t: (Config(environ={f"ZMSG_CLIENTS_SVC_{n.upper()}": _env(t)}), {}),
    "[client]": lambda n, v, t: (Config(tomllib.loads(f"[client]\n{n} = {t}\n"), environ={}), {}),
    "[clients.SVC]": lambda n, v, t: (Config(tomllib.loads(f"[clients.SVC]\n{n} = {t}\n"), environ={}), {}),
}


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("name", list(SAMPLE))
def test_each_option_works_from_each_source(name: str, source: str) -> None:
    value, text = SAMPLE[name]
    config, declared = SOURCES[source](name, value, text)
    registry = zmsg.ClientRegistry(config)
    registry.register("SVC", EP, **declared)
    assert getattr(registry.settings("SVC"), name) == value
    proxy = registry.get("SVC")
    assert getattr(proxy.options, name) == value
    if name in SYNC_CLIENT_OPTIONS:
        assert getattr(registry.get_sync("SVC").options, name) == value
    registry.close()


@pytest.mark.parametrize("name", list(SAMPLE))
def test_each_option_is_validated_the_same_everywhere(name: str) -> None:
    bad = -1
    with pytest.raises(ValueError, match=name):
        zmsg.ClientProxy(EP, **{name: bad})
    if name in SYNC_CLIENT_OPTIONS:
        with pytest.raises(ValueError, match=name):
            zmsg.SyncClientProxy(EP, **{name: bad})
    with pytest.raises(zmsg.ConfigError, match=f"ZMSG_CLIENT_{name.upper()}"):
        Config(environ={f"ZMSG_CLIENT_{name.upper()}": str(bad)}).client()
    registry = zmsg.ClientRegistry(Config(environ={}))
    registry.register("X", EP, **{name: bad})
    with pytest.raises(zmsg.ConfigError, match=name):
        registry.settings("X")


def test_registering_an_unknown_option_names_it() -> None:
    with pytest.raises(TypeError, match="colour"):
        zmsg.ClientRegistry(Config(environ={})).register("X", EP, colour="blue")
