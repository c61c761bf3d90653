"""Checked by mypy in tests/typing/test_send_types.py (never run): what ``send`` returns, as typed."""

from __future__ import annotations

from typing import Any, assert_type

import msgspec

import zmsg


class Invoice(msgspec.Struct):
    id: int
    total: float


async def typed(client: zmsg.ClientProxy, sync: zmsg.SyncClientProxy) -> None:
    assert_type(await client.send("invoice", 1, response_type=Invoice), Invoice)
    assert_type(await client.send("numbers", 3, response_type=list[int]), list[int])
    assert_type(await client.send("anything"), Any)
    assert_type(client.send("invoice", 1, response_type=Invoice), zmsg.PendingRequest[Invoice])
    assert_type(sync.send("invoice", 1, response_type=Invoice), Invoice)
    assert_type(sync.send("anything", metadata={"k": "v"}), Any)
    await client.emit("audit", "x", metadata={"trace": "abc"})


async def wrong(client: zmsg.ClientProxy, sync: zmsg.SyncClientProxy) -> None:
    invoice = await client.send("invoice", 1, response_type=Invoice)
    text: str = invoice  # E: incompatible
    other: str = sync.send("invoice", 1, response_type=Invoice)  # E: incompatible
    print(text, other)
