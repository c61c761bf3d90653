"""A CURVE-protected service: its key pair and allowed client keys come from files named in env."""

import os

import zmsg
from zmsg.transport.security import CurveServer

service = zmsg.Service(
    "vault",
    security=CurveServer.create(os.environ["VAULT_SECRET_KEY_FILE"], [os.environ["VAULT_ALLOWED_CLIENTS"]]),
)
calls: list[str] = []


@service.message_pattern("store")
def store(secret: str) -> int:
    calls.append(secret)
    return len(secret)


@service.message_pattern("calls")
def count() -> int:
    return len(calls)
