"""The blocking client's per-call work that is not the round trip itself.

Every ``SyncClientProxy.send`` first applies its socket's connection events (the fail-fast rule:
fail at once when every endpoint is known down). Measured beside pyzmq's own way of asking the
monitor socket whether an event waits (``Socket.poll(0)``, which builds a ``Poller`` per call).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from pytest_benchmark.fixture import BenchmarkFixture

from zmsg import SyncClientProxy


@pytest.fixture
def client() -> Iterator[SyncClientProxy]:
    # A peer that accepts the connection: after the first "connected" no more events arrive, as
    # between the calls of a client talking to a live service.
    router: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
    router.bind("tcp://127.0.0.1:0")
    proxy = SyncClientProxy(router.getsockopt_string(zmq.LAST_ENDPOINT), timeout=1.0)
    try:
        yield proxy
    finally:
        proxy.close()
        router.close(linger=0)


def test_sync_client_link_check(benchmark: BenchmarkFixture, client: SyncClientProxy) -> None:
    state: Any = client._open_thread_state()
    benchmark(state.down)


def test_raw_pyzmq_monitor_poll(benchmark: BenchmarkFixture, client: SyncClientProxy) -> None:
    state: Any = client._open_thread_state()
    benchmark(state.dealer._monitor.poll, 0)
