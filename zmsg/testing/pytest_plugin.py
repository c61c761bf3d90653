"""zmsg's pytest plugin (entry point ``pytest11``): the ``zmsg_serve`` fixture.

``proxy = await zmsg_serve(service)`` starts ``service`` in this process on an ephemeral
loopback TCP port and returns a connected ``ClientProxy``; both are closed at teardown. It runs
on the test's own event loop, under anyio's pytest plugin (``@pytest.mark.anyio``, asyncio or
uvloop backend) or under pytest-asyncio (strict or auto mode).

pytest imports this module in every run once zmsg is installed, so it imports only pytest at
module level and defines no hooks: zmq, msgspec and the rest of zmsg load when a test first uses
the fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from zmsg.client import ClientProxy
    from zmsg.service import Service

__all__ = ["zmsg_serve"]

ServeFactory = Callable[..., Awaitable["ClientProxy"]]


async def _serving() -> AsyncIterator[ServeFactory]:
    from zmsg.client import ClientProxy

    services: list[Service] = []
    proxies: list[ClientProxy] = []

    async def serve(service: Service, endpoint: str = "tcp://127.0.0.1:0", **client_options: Any) -> ClientProxy:
        """Start ``service`` on ``endpoint`` (a free loopback port by default) and return a
        ``ClientProxy`` connected to it; ``client_options`` go to the proxy (``timeout=...``)."""
        await service.start(endpoint)
        services.append(service)
        proxy = ClientProxy(service.endpoint, **client_options)
        proxies.append(proxy)
        await proxy.connect()
        return proxy

    try:
        yield serve
    finally:
        for proxy in reversed(proxies):
            await proxy.close()
        for service in reversed(services):
            await service.stop(grace=1.0)


@pytest.fixture
async def _zmsg_serve_anyio() -> AsyncIterator[ServeFactory]:
    async for serve in _serving():
        yield serve


try:
    import pytest_asyncio  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pytest-asyncio is optional
    pass
else:

    @pytest_asyncio.fixture  # type: ignore[untyped-decorator,unused-ignore]
    async def _zmsg_serve_asyncio() -> AsyncIterator[ServeFactory]:
        async for serve in _serving():
            yield serve


@pytest.fixture
def zmsg_serve(request: pytest.FixtureRequest) -> ServeFactory:
    """``proxy = await zmsg_serve(service)``: the service served in-process over real TCP, and a
    connected ``ClientProxy``; both closed when the test ends."""
    # The async part must run on the loop of whichever plugin runs the test.
    if "anyio_backend" in request.fixturenames:
        return request.getfixturevalue("_zmsg_serve_anyio")  # type: ignore[no-any-return]
    if request.config.pluginmanager.has_plugin("asyncio") and "_zmsg_serve_asyncio" in globals():
        return request.getfixturevalue("_zmsg_serve_asyncio")  # type: ignore[no-any-return]
    raise pytest.UsageError(
        "zmsg_serve needs an async test run by anyio (@pytest.mark.anyio) or pytest-asyncio "
        "(@pytest.mark.asyncio, or asyncio_mode = auto)"
    )
