"""Settings resolution: flags > environment > zmsg.toml > defaults, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

import zmsg
from zmsg.config import ClientSettings, Config, ServeSettings, load_config
from zmsg.errors import ConfigError


def test_defaults_without_any_source() -> None:
    config = Config(environ={})
    assert config.serve() == ServeSettings()
    assert config.serve().bind == "tcp://127.0.0.1:0"
    assert config.client() == ClientSettings()
    assert config.client().timeout == zmsg.DEFAULT_TIMEOUT


def test_flags_beat_environment_beat_file() -> None:
    data = {"serve": {"bind": "tcp://127.0.0.1:5001", "grace": 1, "log_level": "debug", "log_format": "json"}}
    environ = {"ZMSG_SERVE_BIND": "tcp://127.0.0.1:5002", "ZMSG_SERVE_GRACE": "2.5"}
    config = Config(data, environ=environ)
    settings = config.serve({"bind": "tcp://127.0.0.1:5003", "grace": None})
    assert settings.bind == "tcp://127.0.0.1:5003"  # flag
    assert settings.grace == 2.5  # environment (the flag was not given)
    assert settings.log_level == "debug"  # file
    assert settings.log_format == "json"  # file
    assert settings.loop == "auto"  # default


def test_every_serve_option_reads_its_environment_variable() -> None:
    environ = {
        "ZMSG_SERVE_APP": "users:service",
        "ZMSG_SERVE_BIND": "tcp://127.0.0.1:6000",
        "ZMSG_SERVE_EVENTS_BIND": "tcp://127.0.0.1:6001",
        "ZMSG_SERVE_LOG_LEVEL": "warning",
        "ZMSG_SERVE_LOG_FORMAT": "json",
        "ZMSG_SERVE_GRACE": "30",
        "ZMSG_SERVE_LOOP": "asyncio",
        "ZMSG_SERVE_MAX_PEER_BUFFER": "1048576",
        "ZMSG_SERVE_REPLY_HWM": "64",
    }
    assert Config(environ=environ).serve() == ServeSettings(
        app="users:service", bind="tcp://127.0.0.1:6000", events_bind="tcp://127.0.0.1:6001",
        log_level="warning", log_format="json", grace=30.0, loop="asyncio", max_peer_buffer=1 << 20,
        reply_hwm=64,
    )


def test_every_client_option_reads_its_environment_variable() -> None:
    environ = {
        "ZMSG_CLIENT_TIMEOUT": "3",
        "ZMSG_CLIENT_CONNECT_TIMEOUT": "0.5",
        "ZMSG_CLIENT_EMIT_TIMEOUT": "4",
        "ZMSG_CLIENT_RETRIES": "2",
        "ZMSG_CLIENT_RETRY_BACKOFF": "0.2",
        "ZMSG_CLIENT_MAX_IN_FLIGHT": "500",
        "ZMSG_CLIENT_MAX_MESSAGE_SIZE": "1024",
        "ZMSG_CLIENT_HEARTBEAT": "2.5",
        "ZMSG_CLIENT_FLUSH_AT": "8",
    }
    settings = Config(environ=environ).client()
    assert settings == ClientSettings(
        timeout=3.0, connect_timeout=0.5, emit_timeout=4.0, retries=2, retry_backoff=0.2, max_in_flight=500,
        max_message_size=1024, heartbeat=2.5, flush_at=8,
    )
    # Every field is a ClientProxy option, under the same name.
    proxy = zmsg.ClientProxy("tcp://127.0.0.1:1", **settings.proxy_options())
    assert (proxy.retries, proxy.max_in_flight, proxy.heartbeat, proxy.flush_at) == (2, 500, 2.5, 8)
    sync = zmsg.SyncClientProxy("tcp://127.0.0.1:1", **settings.sync_proxy_options())
    assert (sync.timeout, sync.emit_timeout, sync.heartbeat) == (3.0, 4.0, 2.5)
    sync.close()


@pytest.mark.parametrize("text", ["", "off", "None"])
def test_heartbeat_can_be_turned_off(text: str) -> None:
    assert Config(environ={"ZMSG_CLIENT_HEARTBEAT": text}).client().heartbeat is None
    assert Config({"client": {"heartbeat": "off"}}, environ={}).client().heartbeat is None


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ZMSG_SERVE_GRACE": "soon"}, "ZMSG_SERVE_GRACE"),
        ({"ZMSG_SERVE_GRACE": "-1"}, "ZMSG_SERVE_GRACE"),
        ({"ZMSG_SERVE_LOG_FORMAT": "xml"}, "ZMSG_SERVE_LOG_FORMAT"),
        ({"ZMSG_SERVE_LOG_LEVEL": "loud"}, "ZMSG_SERVE_LOG_LEVEL"),
        ({"ZMSG_SERVE_LOOP": "trio"}, "ZMSG_SERVE_LOOP"),
        ({"ZMSG_SERVE_REPLY_HWM": "0"}, "ZMSG_SERVE_REPLY_HWM"),
        ({"ZMSG_SERVE_BIND": "localhost:5555"}, "ZMSG_SERVE_BIND"),
        ({"ZMSG_SERVE_EVENTS_BIND": "tcp://h:99999"}, "ZMSG_SERVE_EVENTS_BIND"),
    ],
)
def test_invalid_serve_values_are_rejected_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config(environ=environ).serve()


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ZMSG_CLIENT_TIMEOUT": "0"}, "ZMSG_CLIENT_TIMEOUT"),
        ({"ZMSG_CLIENT_CONNECT_TIMEOUT": "x"}, "ZMSG_CLIENT_CONNECT_TIMEOUT"),
        ({"ZMSG_CLIENT_MAX_MESSAGE_SIZE": "1.5"}, "ZMSG_CLIENT_MAX_MESSAGE_SIZE"),
        ({"ZMSG_CLIENT_FLUSH_AT": "0"}, "ZMSG_CLIENT_FLUSH_AT"),
        ({"ZMSG_CLIENT_RETRIES": "-1"}, "ZMSG_CLIENT_RETRIES"),
        ({"ZMSG_CLIENT_HEARTBEAT": "often"}, "ZMSG_CLIENT_HEARTBEAT"),
        ({"ZMSG_CLIENT_MAX_IN_FLIGHT": "0"}, "ZMSG_CLIENT_MAX_IN_FLIGHT"),
    ],
)
def test_invalid_client_values_are_rejected_naming_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config(environ=environ).client()


def test_invalid_file_value_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "zmsg.toml"
    path.write_text('[serve]\ngrace = "later"\n')
    config = load_config(path, environ={})
    with pytest.raises(ConfigError, match=r"serve\.grace in .*zmsg\.toml"):
        config.serve()


def test_invalid_flag_value_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--bind"):
        Config(environ={}).serve({"bind": "tcp://nowhere"})


def test_unknown_keys_and_tables_in_the_file_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serve\.bnd"):
        Config({"serve": {"bnd": "tcp://127.0.0.1:1"}}, environ={})
    with pytest.raises(ConfigError, match="servce"):
        Config({"servce": {}}, environ={})
    with pytest.raises(ConfigError, match=r"client\.endpoints"):
        Config({"client": {"endpoints": ["tcp://127.0.0.1:1"]}}, environ={})


def test_malformed_toml_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "zmsg.toml"
    path.write_text("[serve\nbind = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path, environ={})


def test_config_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zmsg.toml").write_text('[serve]\nlog_level = "error"\n')
    other = tmp_path / "other.toml"
    other.write_text('[serve]\nlog_level = "debug"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).serve().log_level == "error"  # ./zmsg.toml
    assert load_config(environ={"ZMSG_CONFIG": str(other)}).serve().log_level == "debug"  # $ZMSG_CONFIG
    assert load_config(other, environ={}).serve().log_level == "debug"  # explicit path
    with pytest.raises(ConfigError, match="ZMSG_CONFIG"):
        load_config(environ={"ZMSG_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "missing.toml", environ={})
    monkeypatch.chdir(tmp_path.parent)
    assert load_config(environ={}).path is None  # no file anywhere: defaults


def test_named_client_layers_from_code_to_environment() -> None:
    data = {
        "client": {"timeout": 2},
        "clients": {"BILLING_SERVICE": {"endpoints": "tcp://billing.dev:5555", "flush_at": 4}},
    }
    environ = {
        "ZMSG_CLIENT_CONNECT_TIMEOUT": "1",
        "ZMSG_CLIENTS_BILLING_SERVICE_ENDPOINTS": "tcp://10.0.0.1:5555, tcp://10.0.0.2:5555",
    }
    config = Config(data, environ=environ)
    settings = config.client("billing_service", declared={"endpoints": ["tcp://127.0.0.1:5555"], "timeout": 9,
                                                          "max_message_size": 4096})
    assert settings.endpoints == ("tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555")  # environment beats file
    assert settings.timeout == 2.0  # [client] beats the code's default
    assert settings.connect_timeout == 1.0  # ZMSG_CLIENT_* applies to every client
    assert settings.max_message_size == 4096  # from code: nothing overrides it
    assert settings.flush_at == 4  # [clients.BILLING_SERVICE]
    assert config.client_names() == ["BILLING_SERVICE"]


def test_client_names_are_identifiers() -> None:
    with pytest.raises(ConfigError, match="invalid client name"):
        Config(environ={}).client("billing-service")


def test_registry_resolves_lazily_and_caches_by_name() -> None:
    registry = zmsg.ClientRegistry(Config(environ={"ZMSG_CLIENTS_PAYMENTS_ENDPOINTS": "tcp://127.0.0.1:7000"}))
    registry.register("billing_service", "tcp://127.0.0.1:6000", timeout=3, retries=1)
    assert registry.names() == ["BILLING_SERVICE", "PAYMENTS"]
    assert "billing_service" in registry and "nope" not in registry
    billing = registry.get("BILLING_SERVICE")
    assert isinstance(billing, zmsg.ClientProxy)
    assert billing is registry.get("billing_service")
    assert billing.endpoints == ["tcp://127.0.0.1:6000"] and billing.timeout == 3.0 and billing.retries == 1
    with pytest.raises(TypeError, match="colour"):
        registry.register("OTHER", "tcp://127.0.0.1:6001", colour="blue")
    payments = registry.get_sync("payments")
    assert isinstance(payments, zmsg.SyncClientProxy)
    assert payments.endpoints == ["tcp://127.0.0.1:7000"]
    with pytest.raises(RuntimeError, match="already in use"):
        registry.register("BILLING_SERVICE", "tcp://127.0.0.1:6001")
    registry.close()
    assert payments.closed


def test_registry_errors_name_what_to_set() -> None:
    registry = zmsg.ClientRegistry(Config(environ={}))
    with pytest.raises(ConfigError, match="ZMSG_CLIENTS_BILLING_ENDPOINTS"):
        registry.get("BILLING")
    registry.register("AUDIT")  # declared in code, endpoints expected from the environment
    with pytest.raises(ConfigError, match="ZMSG_CLIENTS_AUDIT_ENDPOINTS"):
        registry.get_sync("AUDIT")


def test_default_registry_is_exported() -> None:
    assert isinstance(zmsg.clients, zmsg.ClientRegistry)
    for name in ("SyncClientProxy", "ClientRegistry", "clients", "ConfigError", "load_config"):
        assert name in zmsg.__all__


def test_workers_from_every_layer_and_auto() -> None:
    assert Config().serve().worker_count() == 1
    assert Config({"serve": {"workers": 3}}).serve().workers == 3
    assert Config(environ={"ZMSG_SERVE_WORKERS": "2"}).serve().workers == 2
    auto = Config(environ={"ZMSG_SERVE_WORKERS": "auto"}).serve()
    assert auto.workers == "auto" and auto.worker_count() >= 1
    assert Config(environ={"ZMSG_SERVE_WORKERS": "2"}).serve({"workers": 4}).workers == 4
    with pytest.raises(ConfigError, match="ZMSG_SERVE_WORKERS"):
        Config(environ={"ZMSG_SERVE_WORKERS": "0"}).serve()
