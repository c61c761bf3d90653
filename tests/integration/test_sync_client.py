"""SyncClientProxy: the same semantics as ClientProxy without an event loop, from many threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import zmsg
from tests.conftest import free_endpoint


def _eventually(probe: Any, expected: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_send_returns_the_handler_result(math_service) -> None:
    with zmsg.SyncClientProxy(math_service.endpoint, timeout=10) as client:
        assert client.send({"cmd": "sum"}, [1, 2, 3]) == 6
        assert client.send("echo", {"a": [1, "x"], "b": b"\x00\xff"}) == {"a": [1, "x"], "b": b"\x00\xff"}
        big = "x" * 100_000  # travels as an external body frame, both ways
        assert client.send("echo", big) == big
        assert client.service_name == "math"


def test_send_works_without_connect(math_service) -> None:
    client = zmsg.SyncClientProxy(math_service.endpoint)
    try:
        assert client.send({"cmd": "sum"}, [40, 2]) == 42
    finally:
        client.close()


def test_errors_are_the_async_clients_errors(math_service, serve_process) -> None:
    users = serve_process("usersvc:service")
    with zmsg.SyncClientProxy(users.endpoint) as client:
        with pytest.raises(zmsg.RpcException) as info:
            client.send("get_user", {"user_id": 7})
        assert info.value.error == {"status": 404, "message": "User 7 not found"}
        with pytest.raises(zmsg.RpcException) as info:
            client.send("explode", None)
        assert info.value.error == {"status": 500, "message": "Internal server error"}
        with pytest.raises(zmsg.RpcException) as info:
            client.send("no-such-pattern")
        assert info.value.status == 404


def test_timeout_raises_request_timeout_and_the_late_reply_is_dropped(math_service) -> None:
    with zmsg.SyncClientProxy(math_service.endpoint, timeout=10) as client:
        with pytest.raises(zmsg.RequestTimeout) as info:
            client.send("sleep", 0.5, timeout=0.05)
        assert isinstance(info.value, TimeoutError)
        assert client.timeouts == 1
        # The late reply to the timed-out request arrives on this thread's socket later: the
        # requests after it must skip it (counted) and still get their own replies.
        assert client.send("echo", "mine") == "mine"
        assert _eventually(lambda: client.send("echo", 0) == 0 and client.late_replies, 1) == 1


def test_unreachable_service_is_service_unavailable() -> None:
    client = zmsg.SyncClientProxy(free_endpoint(), timeout=0.3)
    with pytest.raises(zmsg.ServiceUnavailable, match="no zmsg service answered"):
        client.connect()
    # send fails fast once this thread's socket saw the refused connect, else it times out;
    # asked to wait for the service, it times out.
    with pytest.raises((zmsg.RequestTimeout, zmsg.ServiceUnavailable)):
        client.send("echo", 1)
    with pytest.raises(zmsg.RequestTimeout):
        client.send("echo", 1, wait_for_ready=True)
    client.close()


def test_many_threads_share_one_proxy(math_service) -> None:
    with zmsg.SyncClientProxy(math_service.endpoint, timeout=10) as client:

        def work(i: int) -> list[int]:
            return [client.send({"cmd": "sum"}, [i, j]) for j in range(50)]

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(work, range(16)))
        assert results == [[i + j for j in range(50)] for i in range(16)]


def test_emit_reaches_the_service_from_several_threads(math_service) -> None:
    with zmsg.SyncClientProxy(math_service.endpoint) as client:
        before = client.send("events_seen", "user_created")

        def emit(i: int) -> None:
            for j in range(10):
                client.emit("user_created", {"user_id": f"u{i}-{j}", "email": "x@example.com"})

        threads = [threading.Thread(target=emit, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = before + 40
        assert _eventually(lambda: client.send("events_seen", "user_created"), expected) == expected
        # Numbered like ClientProxy's events: the service saw no gap in this emitter's sequence.
        stats = client.send("$zmsg.info")["stats"]
        assert stats.get("events_missed", 0) == 0 and stats.get("events_out_of_order", 0) == 0


def test_events_with_large_bodies_leave_as_whole_messages(math_service) -> None:
    """A body past the external threshold is a frame of its own: the blocking publisher sends
    the batch and its body frames as one message, and small events around it are unaffected."""
    with zmsg.SyncClientProxy(math_service.endpoint) as client:
        before = client.send("events_seen", "user_created")
        for i in range(12):
            client.emit("user_created", {"user_id": str(i), "email": "e" * (100_000 if i % 3 == 0 else 10)})
        expected = before + 12
        assert _eventually(lambda: client.send("events_seen", "user_created"), expected) == expected
        stats = client.send("$zmsg.info")["stats"]
        assert stats.get("events_missed", 0) == 0 and stats["malformed_messages"] == 0


def test_first_emit_after_connect_is_not_lost(math_service) -> None:
    # The slow-joiner gap: an event published before the subscription arrived would vanish.
    for _ in range(3):
        with zmsg.SyncClientProxy(math_service.endpoint) as client:
            before = client.send("events_seen", "user_created")
            client.emit("user_created", {"user_id": "first", "email": "f@example.com"})
            assert _eventually(lambda: client.send("events_seen", "user_created"), before + 1) == before + 1


def test_closed_proxy_refuses_work(math_service) -> None:
    client = zmsg.SyncClientProxy(math_service.endpoint)
    assert client.send("echo", 1) == 1
    client.close()
    client.close()  # idempotent
    with pytest.raises(zmsg.ServiceUnavailable):
        client.send("echo", 1)
    with pytest.raises(zmsg.ServiceUnavailable):
        client.emit("user_created", None)


def test_a_thread_that_ends_releases_its_socket(math_service) -> None:
    client = zmsg.SyncClientProxy(math_service.endpoint)
    try:
        for _ in range(20):
            thread = threading.Thread(target=client.send, args=("echo", 1))
            thread.start()
            thread.join()
        assert len([f for f in client._finalizers if f.alive]) <= 1
    finally:
        client.close()


def test_argument_validation() -> None:
    with pytest.raises(zmsg.EndpointError):
        zmsg.SyncClientProxy("localhost:5555")
    with pytest.raises(ValueError):
        zmsg.SyncClientProxy("tcp://127.0.0.1:1", timeout=0)
    client = zmsg.SyncClientProxy("tcp://127.0.0.1:1", max_message_size=10)
    try:
        with pytest.raises(zmsg.MessageTooLarge):
            client.send("echo", "x" * 100)
        with pytest.raises(ValueError):
            client.send("echo", 1, timeout=-1)
    finally:
        client.close()


def test_builtin_patterns_answer_health_and_info(math_service) -> None:
    with zmsg.SyncClientProxy(math_service.endpoint) as client:
        assert client.send("$zmsg.health") == {"status": "serving", "service": "math"}
        info = client.send("$zmsg.info")
        assert info["service"] == "math"
        assert info["zmsg"] == zmsg.__version__
        assert info["endpoint"] == math_service.endpoint
        assert info["events"] == math_service.events_endpoint
        assert '{"cmd":"sum"}' in info["message_patterns"] and "sleep" in info["message_patterns"]
        assert info["event_patterns"] == ["config_changed", "user_created"]
        assert info["uptime"] >= 0 and info["stats"]["requests"] >= 1
