"""Bugs the two clients' copies of one rule grew, each now fixed once in zmsg.client_core.

Each test failed before the core existed (the blocking client had its own handshake ttl and no
size limit from the hello) and passes with both clients as drivers over the one core.
"""

from __future__ import annotations

from typing import Any

import pytest

import zmsg

pytestmark = pytest.mark.anyio


def test_sync_handshake_caps_a_huge_connect_timeout(math_service: Any) -> None:
    # 5e6 s does not fit the header's u32 ttl: no deadline is sent, instead of a raw ValueError.
    with zmsg.SyncClientProxy(math_service.endpoint, connect_timeout=5e6) as client:
        assert client.send({"cmd": "sum"}, [1, 2]) == 3
        client.emit("user_created", {"user_id": "u", "email": "e"})


async def test_async_handshake_caps_a_huge_connect_timeout(math_service: Any) -> None:
    async with zmsg.ClientProxy(math_service.endpoint, connect_timeout=5e6) as client:
        assert await client.send({"cmd": "sum"}, [1, 2]) == 3


def test_sync_client_takes_the_services_size_limit_from_the_hello(serve_process: Any) -> None:
    limited = serve_process("limitedsvc:service")  # max_message_size = 1 MiB
    with zmsg.SyncClientProxy(limited.endpoint) as client:
        assert client.max_message_size == 1024 * 1024
        with pytest.raises(zmsg.MessageTooLarge, match="max_message_size=1048576"):
            client.send("size", b"x" * (2 * 1024 * 1024))
        with pytest.raises(zmsg.MessageTooLarge):
            client.emit("tick", b"x" * (2 * 1024 * 1024))
        # Nothing was sent, so the connection is intact.
        assert client.send("size", b"x" * 1000) == 1000


async def test_async_client_takes_the_services_size_limit_from_the_hello(serve_process: Any) -> None:
    limited = serve_process("limitedsvc:service")
    async with zmsg.ClientProxy(limited.endpoint) as client:
        assert client.max_message_size == 1024 * 1024
        with pytest.raises(zmsg.MessageTooLarge):
            await client.send("size", b"x" * (2 * 1024 * 1024))
        assert await client.send("size", b"x" * 1000) == 1000


def test_proxies_of_different_services_fail_at_connect(serve_process: Any) -> None:
    math = serve_process("mathsvc:service")
    limited = serve_process("limitedsvc:service")
    with pytest.raises(zmsg.ProtocolError, match="one proxy is one service"):
        zmsg.SyncClientProxy([math.endpoint, limited.endpoint]).connect()


async def test_async_proxy_of_different_services_fails_at_connect(serve_process: Any) -> None:
    math = serve_process("mathsvc:service")
    limited = serve_process("limitedsvc:service")
    client = zmsg.ClientProxy([math.endpoint, limited.endpoint])
    try:
        with pytest.raises(zmsg.ProtocolError, match="one proxy is one service"):
            await client.connect()
    finally:
        await client.close()
