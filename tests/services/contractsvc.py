"""Three releases of one users service, for ``zmsg schema`` / ``zmsg check`` tests.

``CONTRACT_RELEASE`` picks one: ``current`` (the default: what runs now), ``older`` (a release
``current`` is compatible with) or ``breaking`` (one ``current`` breaks).
"""

import os

import msgspec

import zmsg

RELEASE = os.environ.get("CONTRACT_RELEASE", "current")


class NewUser(msgspec.Struct):
    name: str
    nick: str | None = None  # added in "current", optional: compatible


class NewUserOlder(msgspec.Struct):
    name: str


class User(msgspec.Struct):
    id: int
    name: str
    email: str | None = None  # a new reply field: compatible


class UserOlder(msgspec.Struct):
    id: int
    name: str


class UserBreaking(msgspec.Struct):
    id: int
    name: str
    age: int  # removed in "current": callers reading it break


for cls, name in ((NewUserOlder, "NewUser"), (UserOlder, "User"), (UserBreaking, "User")):
    cls.__name__ = cls.__qualname__ = name  # the same types, as an older release named them

service = zmsg.Service("users", version={"current": "2.0.0", "older": "1.1.0", "breaking": "1.0.0"}[RELEASE])

if RELEASE == "current":

    @service.message_pattern("get_user")
    def get_user(user_id: int) -> User:
        return User(user_id, "ada")

    @service.message_pattern("create_user")
    def create_user(user: NewUser) -> int:
        return 1

    @service.message_pattern("ping")  # new in "current"
    def ping() -> str:
        return "pong"

    @service.event_pattern("user_created")
    def created(user: User) -> None:
        pass

elif RELEASE == "older":

    @service.message_pattern("get_user")
    def get_user_older(user_id: int) -> UserOlder:
        return UserOlder(user_id, "ada")

    @service.message_pattern("create_user")
    def create_user_older(user: NewUserOlder) -> int:
        return 1

    @service.event_pattern("user_created")
    def created_older(user: UserOlder) -> None:
        pass

else:

    @service.message_pattern("get_user")
    def get_user_breaking(user_id: str) -> UserBreaking:  # took a string id
        return UserBreaking(1, "ada", 36)

    @service.message_pattern("create_user")
    def create_user_breaking(user: NewUser) -> int:
        return 1

    @service.message_pattern("delete_user")  # removed in "current"
    def delete_user(user_id: int) -> None:
        pass

    @service.event_pattern("user_created")
    def created_breaking(user: UserBreaking) -> None:
        pass
