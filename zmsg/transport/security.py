"""CURVE encryption and client authentication, from libzmq, configured per socket.

A service holds a key pair and an allow-list of client public keys; a client holds its own key
pair and the service's public key. libzmq encrypts every frame (CurveZMQ); the allow-list is
enforced by one ZAP handler per process (pyzmq's ``ThreadAuthenticator``), which looks up the
allow-list of the socket's ZAP domain, so services in one process keep separate lists. A client
whose key is not allowed completes no handshake: it never gets a reply, and its socket monitor
reports the refusal, which the client turns into a clear error.

Keys are Z85 text (40 characters). They load from pyzmq certificate files (``zmsg keygen``
writes them), from Z85 strings, or from environment variables.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from zmsg.endpoints import parse_networks
from zmsg.errors import SecurityError

__all__ = [
    "KeyPair",
    "CurveServer",
    "CurveClient",
    "SecurityError",
    "generate_keypair",
    "write_keypair",
    "load_keypair",
    "load_public_key",
    "AccessPolicy",
    "parse_networks",
    "apply_policy",
    "KeyGuard",
    "release_policy",
]


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as Z85 bytes. ``secret`` may be None for a public-only certificate."""

    public: bytes
    secret: bytes | None = field(repr=False, default=None)


def _z85(key: str | bytes, what: str) -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    raw = raw.strip()
    if len(raw) != 40:
        raise SecurityError(f"{what} must be a 40-character Z85 CURVE key, got {len(raw)} characters")
    try:
        zmq.utils.z85.decode(raw)
    except (ValueError, KeyError):
        raise SecurityError(f"{what} is not valid Z85 text") from None
    return raw


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise SecurityError("this libzmq was built without CURVE support")


def generate_keypair() -> KeyPair:
    _require_curve()
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def write_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, shareable) and ``NAME.key_secret`` (keep private)."""
    _require_curve()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def load_keypair(source: str | os.PathLike[str] | KeyPair) -> KeyPair:
    """A key pair from a ``.key_secret`` certificate file, a Z85 secret key (e.g. from an
    environment variable; the public key is derived from it) or an existing KeyPair."""
    if isinstance(source, KeyPair):
        return source
    if isinstance(source, str) and len(source.strip()) == 40 and not Path(source).exists():
        _require_curve()
        z85_secret = _z85(source, "secret key")
        return KeyPair(zmq.curve_public(z85_secret), z85_secret)
    path = Path(source)
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot load a CURVE key pair from {path}: {exc}") from None
    if secret is None:
        raise SecurityError(f"{path} holds only a public key; a secret key file (.key_secret) is needed")
    return KeyPair(_z85(public, f"public key in {path}"), _z85(secret, f"secret key in {path}"))


def load_public_key(source: str | bytes | os.PathLike[str]) -> bytes:
    """A public key from Z85 text or from a certificate file (``.key`` or ``.key_secret``)."""
    if isinstance(source, (str, bytes)) and len(source.strip()) == 40 and not Path(os.fsdecode(source)).exists():
        return _z85(source, "public key")
    path = Path(os.fsdecode(source))
    try:
        public, _secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot load a CURVE public key from {path}: {exc}") from None
    return _z85(public, f"public key in {path}")


def _public_keys(keys: Iterable[str | bytes | os.PathLike[str]]) -> frozenset[bytes]:
    found: set[bytes] = set()
    for key in keys:
        path = Path(os.fsdecode(key)) if not isinstance(key, bytes) else None
        if path is not None and path.is_dir():
            found.update(load_public_key(p) for p in sorted(path.glob("*.key")))
        else:
            found.add(load_public_key(key))
    return frozenset(found)


@dataclass(frozen=True)
class CurveServer:
    """Service-side CURVE: its key pair, and the only client public keys it accepts."""

    keypair: KeyPair
    allowed_clients: frozenset[bytes]
    sources: tuple[str | bytes | os.PathLike[str], ...] = ()
    """Where ``allowed_clients`` came from (keys, files, directories): what ``reloaded`` re-reads."""

    @classmethod
    def create(cls, keypair: KeyPair | str | os.PathLike[str],
               allowed_clients: Iterable[str | bytes | os.PathLike[str]]) -> CurveServer:
        """``allowed_clients``: Z85 keys, certificate files, or directories of ``*.key`` files."""
        pair = load_keypair(keypair)
        if pair.secret is None:
            raise SecurityError("a CURVE server needs its secret key")
        sources = tuple([allowed_clients] if isinstance(allowed_clients, (str, bytes)) else allowed_clients)
        allowed = _public_keys(sources)
        if not allowed:
            raise SecurityError("a CURVE server needs at least one allowed client public key")
        return cls(pair, allowed, sources)

    def reloaded(self) -> CurveServer:
        """The same key pair with the allow-list read again from its sources (files may have
        been added or removed); raises SecurityError, and changes nothing, if it cannot be read."""
        if not self.sources:
            return self
        allowed = _public_keys(self.sources)
        if not allowed:
            raise SecurityError("the reloaded allow-list is empty: no client could connect")
        return CurveServer(self.keypair, allowed, self.sources)

    def apply(self, sock: zmq.Socket[Any], domain: str) -> None:
        """CURVE server options; the domain's access policy is registered by ``apply_policy``."""
        _require_curve()
        sock.setsockopt_string(zmq.ZAP_DOMAIN, domain)
        sock.curve_server = True
        sock.curve_secretkey = self.keypair.secret
        sock.curve_publickey = self.keypair.public

    @staticmethod
    def release(domain: str) -> None:
        release_policy(domain)


class KeyGuard:
    """Re-checks, per message, the CURVE key of the connection it came from; the connection of
    a key no longer allowed is closed (``shutdown`` of its descriptor: libzmq sees the peer
    hang up and the client's reconnect meets the new allow-list) and the message discarded.

    libzmq has no call to close one peer of a ROUTER, so this is how a reload reaches
    connections already established: it acts on their next message. An idle connection of a
    removed key stays open until then, able to do nothing. Used as ``Channel.inspect``.

    The descriptor comes from the message (ZMQ_SRCFD). Should libzmq have closed that connection
    and reused the number for a new one while the message waited in the queue, the new
    connection would be the one shut down; its client simply reconnects.
    """

    def __init__(self, allowed: frozenset[bytes], on_revoked: Callable[[str], None]) -> None:
        self.allowed = allowed
        self._on_revoked = on_revoked

    def __call__(self, frame: zmq.Frame) -> bool:
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            return True  # no ZAP user id (not a CURVE connection): nothing to re-check
        if not user or str(user).encode() in self.allowed:
            return True
        try:
            fd = int(frame.get(zmq.SRCFD))
            if fd >= 0:
                with socket.socket(fileno=os.dup(fd)) as conn:
                    conn.shutdown(socket.SHUT_RDWR)
        except (zmq.ZMQError, OSError, ValueError):
            pass  # already gone
        try:
            self._on_revoked(str(user))
        except Exception:
            _log().exception("revoked-key callback failed")
        return False


def apply_policy(domain: str, policy: AccessPolicy) -> None:
    """Register (or replace) what the process's ZAP handler admits for ``domain``."""
    _ZapRegistry.instance().register(domain, policy)


def release_policy(domain: str) -> None:
    _ZapRegistry.instance().unregister(domain)


@dataclass(frozen=True)
class CurveClient:
    """Client-side CURVE: its key pair and the public key of the service it talks to."""

    keypair: KeyPair
    server_key: bytes

    @classmethod
    def create(cls, keypair: KeyPair | str | os.PathLike[str], server_key: str | bytes | os.PathLike[str]) -> CurveClient:
        pair = load_keypair(keypair)
        if pair.secret is None:
            raise SecurityError("a CURVE client needs its secret key")
        return cls(pair, load_public_key(server_key))

    def apply(self, sock: zmq.Socket[Any]) -> None:
        _require_curve()
        sock.curve_serverkey = self.server_key
        sock.curve_secretkey = self.keypair.secret
        sock.curve_publickey = self.keypair.public


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AccessPolicy:
    """What the ZAP handler admits on the sockets of one domain (one service).

    ``networks``: peer addresses admitted (empty: any). ``keys``: CURVE client keys admitted
    (None: the sockets use NULL, no key to check). ``on_refused(address, reason)`` is called
    from the ZAP thread for every refused handshake.
    """

    networks: tuple[Network, ...] = ()
    keys: frozenset[bytes] | None = None
    on_refused: Callable[[str, str], None] | None = None

    @classmethod
    def create(cls, allow_from: Iterable[str] = (), curve: CurveServer | None = None,
               on_refused: Callable[[str, str], None] | None = None) -> AccessPolicy:
        networks = tuple(ipaddress.ip_network(n, strict=False) for n in parse_networks(allow_from))
        return cls(networks, curve.allowed_clients if curve is not None else None, on_refused)

    def check(self, address: str, mechanism: bytes, credentials: list[bytes]) -> tuple[bool, str, bytes]:
        """(admitted, reason, user id) for one handshake; the user id is the client's Z85 key."""
        if self.networks:
            try:
                peer = ipaddress.ip_address(address.strip("[]"))
            except ValueError:
                return False, f"address {address!r} not allowed", b""
            if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
                peer = peer.ipv4_mapped
            if not any(peer in network for network in self.networks if network.version == peer.version):
                return False, f"address {address} not allowed", b""
        if mechanism == b"CURVE":
            if self.keys is None or not credentials:
                return False, "CURVE not expected", b""
            key = zmq.utils.z85.encode(credentials[0])
            if key not in self.keys:
                return False, "client key not allowed", b""
            return True, "OK", key
        if mechanism == b"NULL" and self.keys is None:
            return True, "OK", b""
        return False, f"mechanism {mechanism.decode('ascii', 'replace')} not allowed", b""


def is_admitted(policy: AccessPolicy, address: str, mechanism: bytes, key: bytes = b"") -> bool:
    """The same decision as the ZAP handler's, for a key already in Z85 (used to re-check
    established connections after a reload)."""
    credentials = [zmq.utils.z85.decode(key)] if key else []
    return policy.check(address, mechanism, credentials)[0]


class _ZapRegistry:
    """One ZAP handler per process (libzmq allows one per context), answering per domain.

    libzmq asks it about every handshake on a socket whose ZAP_DOMAIN is set: CURVE sockets,
    and NULL sockets with an ``allow_from`` list. A domain nobody registered is refused.
    """

    _instance: _ZapRegistry | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._policies: dict[str, AccessPolicy] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: str | None = None

    @classmethod
    def instance(cls) -> _ZapRegistry:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def register(self, domain: str, policy: AccessPolicy) -> None:
        """Set (or replace: a reload) the policy of ``domain``; new handshakes use it at once."""
        with self._lock:
            self._policies[domain] = policy
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, args=(zmq.Context.instance(),),
                                                name="zmsg-zap", daemon=True)
                self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise SecurityError(self._failure)

    def unregister(self, domain: str) -> None:
        with self._lock:
            self._policies.pop(domain, None)

    def policy(self, domain: str) -> AccessPolicy | None:
        return self._policies.get(domain)

    def _serve(self, ctx: zmq.Context[Any]) -> None:
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind("inproc://zeromq.zap.01")
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._failure = f"cannot start zmsg's ZAP handler (is another one bound in this process?): {exc}"
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                try:
                    request = sock.recv_multipart()
                except zmq.ContextTerminated:
                    return
                try:
                    sock.send_multipart(self._answer(request))
                except zmq.ContextTerminated:
                    return
        finally:
            sock.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6 or request[0] != b"1.0":
            request_id = request[1] if len(request) > 1 else b""
            return [b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""]
        _version, request_id, raw_domain, raw_address, _identity, mechanism = request[:6]
        domain = raw_domain.decode("utf-8", "replace")
        address = raw_address.decode("utf-8", "replace")
        policy = self._policies.get(domain)
        if policy is None:
            admitted, reason, user = False, "unknown ZAP domain", b""
        else:
            admitted, reason, user = policy.check(address, mechanism, request[6:])
        if admitted:
            return [b"1.0", request_id, b"200", b"OK", user, b""]
        if policy is not None and policy.on_refused is not None:
            try:
                policy.on_refused(address, reason)
            except Exception:  # never let a callback stop the handler of every socket
                _log().exception("ZAP refusal callback failed")
        return [b"1.0", request_id, b"400", reason.encode(), b"", b""]


def _log() -> logging.Logger:
    return logging.getLogger("zmsg.security")
