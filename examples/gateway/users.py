"""The users service: owns user records and answers requests about them.

Run it with ``zmsg serve users:service --bind tcp://127.0.0.1:5555`` from this directory.
"""

from __future__ import annotations

import itertools

import msgspec

import zmsg

service = zmsg.Service("users", version="1.0.0")


class NewUser(msgspec.Struct):
    """What a caller must send to create a user; anything else is rejected with a 400."""

    name: str
    email: str


class User(msgspec.Struct):
    id: int
    name: str
    email: str


# An in-memory store keeps the example self-contained; a real service would use a database.
_users: dict[int, User] = {}
_ids = itertools.count(1)


@service.message_pattern({"cmd": "get_user"})
def get_user(user_id: int) -> User:
    user = _users.get(user_id)
    if user is None:
        # Travels to the caller unchanged: the gateway turns it into an HTTP 404.
        raise zmsg.RpcException({"status": 404, "message": f"User {user_id} not found"})
    return user


@service.message_pattern({"cmd": "create_user"})
def create_user(new: NewUser) -> User:
    if any(user.email == new.email for user in _users.values()):
        raise zmsg.RpcException({"status": 409, "message": f"A user with email {new.email} already exists"})
    user = User(id=next(_ids), name=new.name, email=new.email)
    _users[user.id] = user
    return user
