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

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

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

    @classmethod
    def create(cls, keypair: KeyPair | str | os.PathLike[str],
               allowed_clients: Iterable[str | bytes | os.PathLike[str]]) -> CurveServer:
        """``allowed_clients``: Z85 keys, certificate files, or directories of ``*.key`` files."""
        pair = load_keypair(keypair)
        if pair.secret is None:
            raise SecurityError("a CURVE server needs its secret key")
        allowed = _public_keys(allowed_clients)
        if not allowed:
            raise SecurityError("a CURVE server needs at least one allowed client public key")
        return cls(pair, allowed)

    def apply(self, sock: zmq.Socket[Any], domain: str) -> None:
        _require_curve()
        _ZapRegistry.instance().register(domain, self.allowed_clients)
        sock.setsockopt_string(zmq.ZAP_DOMAIN, domain)
        sock.curve_server = True
        sock.curve_secretkey = self.keypair.secret
        sock.curve_publickey = self.keypair.public

    @staticmethod
    def release(domain: str) -> None:
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


class _ZapRegistry:
    """One ZAP handler per process, answering from each domain's allow-list."""

    _instance: _ZapRegistry | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._allowed: dict[str, frozenset[bytes]] = {}
        self._auth: ThreadAuthenticator | None = None

    @classmethod
    def instance(cls) -> _ZapRegistry:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def register(self, domain: str, allowed: frozenset[bytes]) -> None:
        with self._lock:
            self._allowed[domain] = allowed
            if self._auth is None:
                self._auth = ThreadAuthenticator(zmq.Context.instance(), log=_quiet_logger())
                self._auth.start()
            self._auth.configure_curve_callback(domain=domain, credentials_provider=self)

    def unregister(self, domain: str) -> None:
        with self._lock:
            self._allowed.pop(domain, None)

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the ZAP thread for each CURVE handshake with the client's Z85 public key."""
        allowed = self._allowed.get(domain)
        return allowed is not None and key in allowed


def _quiet_logger() -> logging.Logger:
    return logging.getLogger("zmsg.security")
