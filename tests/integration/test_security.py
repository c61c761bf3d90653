"""CURVE: only allowed clients get in, and nothing travels in clear text."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import zmsg
from zmsg.transport.security import CurveClient, CurveServer, SecurityError, load_keypair, write_keypair

pytestmark = pytest.mark.anyio

SECRET = "TOP-SECRET-PAYLOAD-4242"


class Relay:
    """A TCP relay on loopback that records every byte between client and service."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.captured = bytearray()
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.captured += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (asyncio.ensure_future(self._pipe(reader, up_writer)),
                     asyncio.ensure_future(self._pipe(up_reader, writer))):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    paths = {
        "server": write_keypair(tmp_path, "server")[1],
        "client": write_keypair(allowed, "client")[1],
        "intruder": write_keypair(tmp_path / "others", "intruder")[1],
    }
    (allowed / "client.key_secret").rename(tmp_path / "client.key_secret")  # only public keys stay allowed
    paths["client"] = tmp_path / "client.key_secret"
    paths["allowed"] = allowed
    return paths


def _secure_service(serve_process, keys: dict[str, Path]):
    return serve_process("securesvc:service", env={
        "VAULT_SECRET_KEY_FILE": str(keys["server"]), "VAULT_ALLOWED_CLIENTS": str(keys["allowed"])})


async def _through_relay(endpoint: str, security: CurveClient | None) -> tuple[object, bytes]:
    relay = Relay(int(endpoint.rsplit(":", 1)[1]))
    port = await relay.start()
    try:
        client = zmsg.ClientProxy(f"tcp://127.0.0.1:{port}", timeout=10, security=security)
        try:
            result = await client.send("store" if security else "echo", SECRET)
        finally:
            await client.close()
    finally:
        await relay.close()
    return result, bytes(relay.captured)


async def test_allowed_client_talks_and_nothing_is_in_clear_text(serve_process, keys) -> None:
    vault = _secure_service(serve_process, keys)
    security = CurveClient.create(keys["client"], keys["server"])
    result, captured = await _through_relay(vault.endpoint, security)
    assert result == len(SECRET)
    assert len(captured) > 0 and SECRET.encode() not in captured and b"store" not in captured


async def test_without_curve_the_same_capture_shows_the_payload(math_service) -> None:
    result, captured = await _through_relay(math_service.endpoint, None)
    assert result == SECRET
    assert SECRET.encode() in captured  # the capture itself works


async def test_a_client_whose_key_is_not_allowed_gets_a_clear_error_and_no_reply(serve_process, keys) -> None:
    vault = _secure_service(serve_process, keys)
    intruder = CurveClient.create(keys["intruder"], keys["server"])
    async with asyncio.timeout(20):
        client = zmsg.ClientProxy(vault.endpoint, timeout=10, security=intruder)
        try:
            with pytest.raises(zmsg.AuthenticationFailed, match="refused this client's CURVE credentials"):
                await client.send("store", SECRET)
        finally:
            await client.close()
    allowed = zmsg.ClientProxy(vault.endpoint, security=CurveClient.create(keys["client"], keys["server"]))
    try:
        assert await allowed.send("calls") == 0  # the intruder's request never reached a handler
    finally:
        await allowed.close()


async def test_a_client_without_curve_is_refused_clearly(serve_process, keys) -> None:
    vault = _secure_service(serve_process, keys)
    async with asyncio.timeout(20):
        client = zmsg.ClientProxy(vault.endpoint, timeout=10)
        try:
            with pytest.raises(zmsg.ServiceUnavailable):
                await client.send("store", SECRET)
        finally:
            await client.close()


async def test_events_are_encrypted_and_authenticated_too(serve_process, keys) -> None:
    vault = _secure_service(serve_process, keys)
    security = CurveClient.create(keys["client"], keys["server"])
    async with zmsg.ClientProxy(vault.endpoint, security=security) as client:
        await client.emit("anything", SECRET)  # connect() completed the handshake on both sockets
        assert await client.send("calls") == 0


def test_bad_keys_are_reported_clearly(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="cannot load"):
        load_keypair(tmp_path / "missing.key_secret")
    public, _secret = write_keypair(tmp_path, "only")
    with pytest.raises(SecurityError, match="secret key"):
        load_keypair(public)
    with pytest.raises(SecurityError, match="cannot load a CURVE public key from not-a-key"):
        CurveServer.create(_secret, ["not-a-key"])
    with pytest.raises(SecurityError, match="not valid Z85"):
        CurveServer.create(_secret, ["~" * 40])


def _zmsg(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zmsg", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_cli_keygen_serve_and_call_with_curve(serve_process, tmp_path: Path) -> None:
    assert _zmsg("keygen", "server", "--dir", str(tmp_path)).returncode == 0
    made = _zmsg("keygen", "web", "--dir", str(tmp_path / "clients"))
    assert made.returncode == 0 and "public key" in made.stdout
    assert (tmp_path / "clients" / "web.key_secret").stat().st_mode & 0o077 == 0  # private
    served = serve_process("mathsvc:service", "--curve-secret-key", str(tmp_path / "server.key_secret"),
                           "--curve-allow", str(tmp_path / "clients"))
    ok = _zmsg("call", served.endpoint, '{"cmd":"sum"}', "[1, 2, 3]",
               "--curve-secret-key", str(tmp_path / "clients" / "web.key_secret"),
               "--curve-server-key", str(tmp_path / "server.key"))
    assert (ok.returncode, ok.stdout.strip()) == (0, "6"), ok.stderr
    plain = _zmsg("call", served.endpoint, '{"cmd":"sum"}', "[1]", "--timeout", "1")
    assert plain.returncode == 5 and "no zmsg service answered" in plain.stderr
    half = _zmsg("call", served.endpoint, "x", "--curve-secret-key", str(tmp_path / "clients" / "web.key_secret"))
    assert half.returncode != 0 and "curve_server_key" in half.stderr


def test_serve_refuses_half_a_curve_configuration(tmp_path: Path) -> None:
    write_keypair(tmp_path, "server")
    result = _zmsg("serve", "mathsvc:service", "--curve-secret-key", str(tmp_path / "server.key_secret"),
                   cwd=Path(__file__).parent.parent / "services")
    assert result.returncode != 0 and "curve_allow is empty" in result.stderr


def test_a_secret_key_can_come_as_z85_text(tmp_path: Path) -> None:
    """As from an environment variable: the public key is derived from the secret."""
    from_file = load_keypair(write_keypair(tmp_path, "svc")[1])
    assert from_file.secret is not None
    from_text = load_keypair(from_file.secret.decode())
    assert from_text == from_file
