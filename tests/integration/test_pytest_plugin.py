"""The ``zmsg_serve`` fixture of zmsg's pytest plugin, loaded by its entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import zmsg

pytest_plugins = ["pytester"]


def _math() -> zmsg.Service:
    service = zmsg.Service("plugged")
    seen: list[int] = []

    @service.message_pattern({"cmd": "sum"})
    def accumulate(data: list[int]) -> int:
        return sum(data)

    @service.event_pattern("tick")
    def tick(n: int) -> None:
        seen.append(n)

    @service.message_pattern("seen")
    def seen_events() -> list[int]:
        return seen

    return service


@pytest.mark.anyio
async def test_zmsg_serve_serves_in_process_over_tcp_and_returns_a_connected_proxy(zmsg_serve) -> None:
    service = _math()
    proxy = await zmsg_serve(service, timeout=5)
    assert isinstance(proxy, zmsg.ClientProxy) and proxy.timeout == 5
    assert service.running and service.endpoint.startswith("tcp://127.0.0.1:")
    assert proxy.endpoints == [service.endpoint]
    assert await proxy.send({"cmd": "sum"}, [1, 2, 3]) == 6
    await proxy.emit("tick", 1)  # connected: the event subscription is in place already
    for _ in range(2000):
        if await proxy.send("seen") == [1]:
            break
    assert await proxy.send("seen") == [1]
    other = await zmsg_serve(_math())  # several services in one test
    assert await other.send({"cmd": "sum"}, [4]) == 4


def test_the_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("zmsg")
    assert plugin is not None and plugin.__name__ == "zmsg.testing.pytest_plugin"


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = ("import sys, zmsg.testing.pytest_plugin; "
            "print(sorted(m for m in ('zmq', 'msgspec', 'asyncio', 'zmsg.client', 'zmsg.service') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_service_and_the_proxy_are_closed_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent("""
        import asyncio

        import pytest
        import zmsg

        made = []

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_serve(zmsg_serve):
            service = zmsg.Service("inner")

            @service.message_pattern("ping")
            def ping() -> str:
                return "pong"

            proxy = await zmsg_serve(service)
            assert await proxy.send("ping") == "pong"
            made.append((service, proxy))

        def test_after():
            (service, proxy), = made
            assert not service.running
            async def ping():
                return await proxy.send("ping")

            with pytest.raises(zmsg.ServiceUnavailable, match="closed"):
                asyncio.run(ping())

        def test_a_sync_test_gets_a_clear_error(zmsg_serve):
            pass
    """))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*zmsg_serve needs an async test run by anyio*"])
