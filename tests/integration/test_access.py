"""Who may connect: secure by default, ``allow_from`` networks (ZAP for NULL), CURVE reload."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

import zmsg
from zmsg.endpoints import is_local_endpoint
from zmsg.errors import InsecureBindError
from zmsg.protocol import INFO_PATTERN, KIND_REPLY, KIND_REQUEST, BatchBuilder, parse_frames
from zmsg.transport.security import CurveClient, CurveServer, write_keypair

SERVICES_DIR = Path(__file__).parent.parent / "services"

pytestmark = pytest.mark.anyio


def _service(name: str = "guarded", **options: object) -> zmsg.Service:
    service = zmsg.Service(name, **options)  # type: ignore[arg-type]

    @service.message_pattern("echo")
    def echo(data: object) -> object:
        return data

    @service.event_pattern("noted")
    def noted(data: object) -> None:
        pass

    return service


def test_what_counts_as_local() -> None:
    for local in ("tcp://127.0.0.1:5555", "tcp://127.3.4.5:0", "tcp://[::1]:5555", "tcp://localhost:1",
                  "tcp://[::ffff:127.0.0.1]:1", "ipc:///tmp/x", "inproc://x"):
        assert is_local_endpoint(local), local
    for remote in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://[::]:5555", "tcp://10.0.0.1:5555",
                   "tcp://eth0:5555", "tcp://example.com:5555"):
        assert not is_local_endpoint(remote), remote


@pytest.mark.parametrize("endpoint, events", [
    ("tcp://0.0.0.0:0", None), ("tcp://*:0", None), ("tcp://127.0.0.1:0", "tcp://0.0.0.0:0"),
])
async def test_a_non_loopback_bind_without_curve_is_refused(endpoint: str, events: str | None) -> None:
    service = _service()
    with pytest.raises(InsecureBindError) as caught:
        await service.start(endpoint, events_endpoint=events)
    message = str(caught.value)
    assert "\n" not in message
    assert "--curve-secret-key" in message and "--curve-allow" in message and "--insecure" in message
    assert not service.running
    service.insecure = True
    await service.start(endpoint, events_endpoint=events)
    try:
        async with zmsg.ClientProxy(service.endpoint, timeout=10) as client:
            assert await client.send("echo", 1) == 1
    finally:
        await service.stop()


async def test_loopback_ipc_and_allow_from_need_no_insecure(tmp_path: Path) -> None:
    for endpoint, options in (("tcp://127.0.0.1:0", {}), (f"ipc://{tmp_path}/svc", {}),
                              ("tcp://0.0.0.0:0", {"allow_from": ["127.0.0.0/8"]})):
        service = _service(**options)
        await service.start(endpoint)
        try:
            async with zmsg.ClientProxy(service.endpoint, timeout=10) as client:
                assert await client.send("echo", 2) == 2
        finally:
            await service.stop()


def _zmsg_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zmsg", "serve", "mathsvc:service", *args], cwd=SERVICES_DIR,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_serve_refuses_a_wildcard_bind_without_curve_in_one_line_exit_2() -> None:
    done = _zmsg_serve("--bind", "tcp://0.0.0.0:0")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("zmsg: error:")]
    assert len(lines) == 1 and "refusing to bind tcp://0.0.0.0:0 without CURVE" in lines[0]
    assert "--insecure" in lines[0] and "--curve-secret-key" in lines[0]


@pytest.mark.parametrize("how", ["flag", "env", "toml"])
async def test_serve_binds_a_wildcard_when_told_insecure(serve_process, tmp_path: Path, how: str) -> None:
    args, env = ["--bind", "tcp://0.0.0.0:0"], {}
    if how == "flag":
        args.append("--insecure")
    elif how == "env":
        env["ZMSG_SERVE_INSECURE"] = "1"
    else:
        (tmp_path / "zmsg.toml").write_text("[serve]\ninsecure = true\n")
        args += ["--config", str(tmp_path / "zmsg.toml")]
    served = serve_process("mathsvc:service", *args, env=env)
    async with zmsg.ClientProxy(served.endpoint, timeout=10) as client:
        assert await client.send("pid") == served.pid


# -- allow_from ---------------------------------------------------------------------------------

def _monitored(kind: int, endpoint: str) -> tuple[zmq.Socket, zmq.Socket]:  # type: ignore[type-arg]
    ctx = zmq.Context.instance()
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    sock.connect(endpoint)
    return sock, monitor


async def _first_event(monitor: zmq.Socket, timeout: float = 20) -> int:  # type: ignore[type-arg]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if monitor.poll(0):
            return int(recv_monitor_message(monitor)["event"])
        await asyncio.sleep(0.01)
    raise AssertionError("no handshake event")


def _from(source: str, endpoint: str) -> str:
    """ZeroMQ's ``tcp://SOURCE:0;HOST:PORT`` form: connect from a chosen local address."""
    return f"tcp://{source}:0;{endpoint[len('tcp://'):]}"


async def test_allow_from_admits_only_those_networks_on_both_sockets() -> None:
    service = _service(allow_from=["127.0.0.2/32"])
    endpoint = await service.start("tcp://127.0.0.1:0")
    opened: list[zmq.Socket] = []  # type: ignore[type-arg]
    try:
        outcomes = {}
        for name, target in (("request", endpoint), ("events", service.events_endpoint)):
            for source in ("127.0.0.2", "127.0.0.1"):
                sock, monitor = _monitored(zmq.DEALER if name == "request" else zmq.XPUB, _from(source, target))
                opened += [sock, monitor]
                outcomes[name, source] = await _first_event(monitor)
        assert outcomes == {
            ("request", "127.0.0.2"): zmq.EVENT_HANDSHAKE_SUCCEEDED,
            ("request", "127.0.0.1"): zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            ("events", "127.0.0.2"): zmq.EVENT_HANDSHAKE_SUCCEEDED,
            ("events", "127.0.0.1"): zmq.EVENT_HANDSHAKE_FAILED_AUTH,
        }
        # The admitted peer is served; the refused ones are counted (by the loop, after the ZAP
        # thread's decision: ask until they show).
        dealer = opened[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        for cid in range(1, 10_000):
            batch = BatchBuilder()
            batch.add(KIND_REQUEST, 0, cid, 0, INFO_PATTERN.encode(), b"")
            dealer.send_multipart(batch.take())
            while not dealer.poll(0) and loop.time() < deadline:
                await asyncio.sleep(0.01)
            kind, _flags, got, _ttl, _pattern, body = parse_frames(dealer.recv_multipart(), 0)[0]
            assert (kind, got) == (KIND_REPLY, cid)
            if msgspec.msgpack.decode(body)["stats"]["auth_failures"] >= 2 or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert msgspec.msgpack.decode(body)["stats"]["auth_failures"] >= 2
        assert service.stats.auth_failures >= 2
        client = zmsg.ClientProxy(endpoint, timeout=10)
        try:
            with pytest.raises(zmsg.AuthenticationFailed):  # a ClientProxy from 127.0.0.1: a clear error
                await client.send("echo", 1)
        finally:
            await client.close()
    finally:
        for sock in opened:
            sock.close(linger=0)
        await service.stop()


def test_allow_from_is_validated() -> None:
    with pytest.raises(ValueError, match="not a network"):
        zmsg.Service("bad", allow_from=["10.0.0.0/33"])


# -- CURVE allow-list reload ---------------------------------------------------------------------

@pytest.fixture
def keyring(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    paths = {"server": write_keypair(tmp_path, "server")[1], "allowed": allowed}
    for name in ("stays", "leaves", "joins"):
        public, secret = write_keypair(allowed, name)
        paths[name] = secret.rename(tmp_path / secret.name)
        paths[name + ".key"] = public
    paths["joins.key"].rename(tmp_path / "joins.key")  # not allowed at first
    paths["joins.key"] = tmp_path / "joins.key"
    return paths


def _client(keyring: dict[str, Path], name: str, endpoint: str) -> zmsg.ClientProxy:
    return zmsg.ClientProxy(endpoint, timeout=5, security=CurveClient.create(keyring[name], keyring["server"]))


async def _refused(client: zmsg.ClientProxy) -> None:
    try:
        with pytest.raises(zmsg.AuthenticationFailed):
            await client.send("echo", "c")
    finally:
        await client.close()


async def test_reload_applies_to_new_handshakes_and_closes_removed_keys(keyring: dict[str, Path], caplog) -> None:
    service = _service(security=CurveServer.create(keyring["server"], [keyring["allowed"]]))
    endpoint = await service.start("tcp://127.0.0.1:0")
    stays, leaves = _client(keyring, "stays", endpoint), _client(keyring, "leaves", endpoint)
    try:
        assert await stays.send("echo", "a") == "a"
        assert await leaves.send("echo", "b") == "b"
        await _refused(_client(keyring, "joins", endpoint))
        keyring["leaves.key"].unlink()
        keyring["joins.key"].rename(keyring["allowed"] / "joins.key")
        assert service.reload_security() == {"allowed": 2, "added": 1, "removed": 1}
        failures = service.stats.auth_failures
        async with _client(keyring, "joins", endpoint) as joins:
            assert await joins.send("echo", "c") == "c"  # a new handshake uses the new list
        assert await stays.send("echo", "a") == "a"  # an established allowed connection is untouched
        # The removed key's connection is closed at its next request, which never runs; its
        # reconnect meets the new list.
        with pytest.raises((zmsg.ServiceUnavailable, zmsg.RequestTimeout)):
            await leaves.send("echo", "b")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:  # down (failing fast) until its reconnect is refused: then AuthenticationFailed
            try:
                await leaves.send("echo", "b")
            except zmsg.AuthenticationFailed:
                break
            except zmsg.ServiceUnavailable:
                assert loop.time() < deadline, "the removed key's reconnect was never refused"
                await asyncio.sleep(0.05)
        assert service.stats.auth_failures > failures
        assert "closed the connection of client key" in caplog.text
        assert await stays.send("echo", "a") == "a"
    finally:
        await stays.close()
        await leaves.close()
        await service.stop()


async def test_a_reload_that_cannot_read_the_list_changes_nothing(keyring: dict[str, Path]) -> None:
    service = _service(security=CurveServer.create(keyring["server"], [keyring["allowed"]]))
    before = service.security
    for key in keyring["allowed"].glob("*.key"):
        key.unlink()
    with pytest.raises(zmsg.ZmsgError, match="empty"):
        service.reload_security()
    assert service.security is before


async def test_sighup_reloads_the_allow_list_of_zmsg_serve(serve_process, keyring: dict[str, Path]) -> None:
    served = serve_process("mathsvc:service", "--curve-secret-key", str(keyring["server"]),
                           "--curve-allow", str(keyring["allowed"]))
    await _refused(_client(keyring, "joins", served.endpoint))
    keyring["joins.key"].rename(keyring["allowed"] / "joins.key")
    os.kill(served.pid, signal.SIGHUP)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # the signal is handled asynchronously: retry until the new list is in use
        joins = _client(keyring, "joins", served.endpoint)
        try:
            assert await joins.send("pid") == served.pid
            break
        except zmsg.AuthenticationFailed:
            if loop.time() > deadline:
                raise
        finally:
            await joins.close()
        await asyncio.sleep(0.1)
    assert served.terminate() == 0
    assert "CURVE allow-list reloaded: 3 key(s) allowed, 1 added, 0 removed" in served.output()
