"""Named clients, declared once and resolved lazily: zmsg's NestJS ``ClientsModule``.

Application code asks for a client by name (``clients.get("BILLING_SERVICE")``) and never
hard-codes a host or port. A name is declared in code (``register``), in ``zmsg.toml``
(``[clients.BILLING_SERVICE]``) or in the environment (``ZMSG_CLIENTS_BILLING_SERVICE_ENDPOINTS``);
its settings are resolved from all of those (see ``zmsg.config``) only when first asked for, so
a registry can be declared at import time, before the environment is complete. The proxy made
for a name is cached: every caller shares its sockets and batching.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Self

from zmsg.client import ClientProxy
from zmsg.config import ClientSettings, Config, load_config, normalise_client_name
from zmsg.errors import ConfigError
from zmsg.sync_client import SyncClientProxy

__all__ = ["ClientRegistry", "clients"]


class ClientRegistry:
    """Named ``ClientProxy`` / ``SyncClientProxy`` instances with settings from config.

    ``config`` defaults to ``load_config()`` (``zmsg.toml`` and the environment), read on first
    use. Close what it made with ``await registry.aclose()`` (or ``async with registry``), or
    ``registry.close()`` in synchronous programs; the registry can be used again afterwards.
    """

    def __init__(self, config: Config | None = None) -> None:
        self._config = config
        self._declared: dict[str, dict[str, Any]] = {}
        self._async: dict[str, ClientProxy] = {}
        self._sync: dict[str, SyncClientProxy] = {}
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config()
        return self._config

    def register(
        self,
        name: str,
        endpoints: str | Sequence[str] | None = None,
        **options: Any,
    ) -> str:
        """Declare a client; returns its canonical (upper-case) name.

        ``options`` are ``ClientProxy``'s keyword options (``timeout=``, ``retries=``, ...).

        The values given here are defaults: ``zmsg.toml`` and the environment override them, so
        the code can name a development endpoint and a deployment can point elsewhere.
        """
        canonical = normalise_client_name(name)
        unknown = set(options) - set(ClientSettings.__struct_fields__)
        if unknown:
            raise TypeError(f"register() got unknown client option(s): {', '.join(sorted(unknown))}")
        declared: dict[str, Any] = {
            "endpoints": [endpoints] if isinstance(endpoints, str) else list(endpoints or []) or None,
            **options,
        }
        with self._lock:
            if canonical in self._async or canonical in self._sync:
                raise RuntimeError(f"client {canonical} is already in use; register it before asking for it")
            self._declared[canonical] = {k: v for k, v in declared.items() if v is not None}
        return canonical

    def names(self) -> list[str]:
        """Every client name known from code, the config file and the environment."""
        return sorted(set(self._declared) | set(self.config.client_names()))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return normalise_client_name(name) in self.names()
        except ConfigError:
            return False

    def settings(self, name: str) -> ClientSettings:
        """The resolved settings of ``name``; ConfigError when it is unknown or has no endpoints."""
        canonical = normalise_client_name(name)
        if canonical not in self._declared and not self.config.declares(canonical):
            raise ConfigError(
                f"no client named {canonical}: declare it with register(), [clients.{canonical}] in "
                f"zmsg.toml or ZMSG_CLIENTS_{canonical}_ENDPOINTS"
            )
        settings = self.config.client(canonical, declared=self._declared.get(canonical))
        if not settings.endpoints:
            raise ConfigError(
                f"client {canonical} has no endpoints: set ZMSG_CLIENTS_{canonical}_ENDPOINTS "
                f"or endpoints in [clients.{canonical}]"
            )
        return settings

    def get(self, name: str) -> ClientProxy:
        """The async client named ``name``, created on first request (not connected yet)."""
        canonical = normalise_client_name(name)
        with self._lock:
            proxy = self._async.get(canonical)
            if proxy is None:
                settings = self.settings(canonical)
                proxy = ClientProxy(list(settings.endpoints), **settings.proxy_options())
                self._async[canonical] = proxy
        return proxy

    def get_sync(self, name: str) -> SyncClientProxy:
        """The blocking client named ``name``, created on first request; safe across threads."""
        canonical = normalise_client_name(name)
        with self._lock:
            proxy = self._sync.get(canonical)
            if proxy is None:
                settings = self.settings(canonical)
                proxy = SyncClientProxy(list(settings.endpoints), **settings.sync_proxy_options())
                self._sync[canonical] = proxy
        return proxy

    async def connect(self) -> None:
        """Connect every declared async client now, so the first request pays no handshake
        (NestJS's advice to connect in ``onApplicationBootstrap``)."""
        for name in self.names():
            await self.get(name).connect()

    async def aclose(self) -> None:
        """Close every client this registry made, async and blocking."""
        with self._lock:
            async_proxies, self._async = list(self._async.values()), {}
        for proxy in async_proxies:
            await proxy.close()
        self.close()

    def close(self) -> None:
        """Close the blocking clients (async ones need ``aclose``, which closes both)."""
        with self._lock:
            sync_proxies, self._sync = list(self._sync.values()), {}
        for proxy in sync_proxies:
            proxy.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClientRegistry declared={sorted(self._declared)}>"


clients = ClientRegistry()
"""The process-wide registry: declare with ``zmsg.clients.register(...)``, ask with ``get``."""
