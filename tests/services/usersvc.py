"""Error, typing, context and event-fan-out behaviour, served by ``zmsg serve`` in tests."""

from __future__ import annotations

import msgspec

import zmsg


class UserCreated(msgspec.Struct):
    user_id: str
    email: str


class GetUser(msgspec.Struct):
    user_id: int


class UsersController:
    """A NestJS-style controller: methods marked with module-level decorators."""

    def __init__(self) -> None:
        self.calls = 0
        self.welcomed: list[str] = []
        self.audited: list[str] = []

    @zmsg.message_pattern("get_user")
    def get_user(self, query: GetUser) -> dict[str, object]:
        self.calls += 1
        if query.user_id == 7:
            raise zmsg.RpcException({"status": 404, "message": "User 7 not found"})
        return {"id": query.user_id, "name": f"user{query.user_id}"}

    @zmsg.message_pattern("explode")
    async def explode(self, data: object) -> None:
        raise KeyError("secret-internal-detail")

    @zmsg.message_pattern("calls")
    def count_calls(self) -> int:
        return self.calls

    @zmsg.message_pattern("whoami")
    def whoami(self, ctx: zmsg.Context) -> dict[str, object]:
        return {"pattern": ctx.pattern, "service": ctx.service, "cid": ctx.correlation_id, "peer": ctx.peer}

    @zmsg.event_pattern("user_created")
    def welcome(self, event: UserCreated) -> None:
        self.welcomed.append(event.user_id)

    @zmsg.event_pattern("user_created")
    async def audit(self, event: UserCreated) -> None:
        self.audited.append(event.user_id)

    @zmsg.event_pattern("user_created")
    def flaky(self, event: UserCreated) -> None:
        raise RuntimeError(f"flaky handler failed on {event.user_id}")

    @zmsg.message_pattern("seen")
    def seen(self) -> dict[str, list[str]]:
        return {"welcomed": self.welcomed, "audited": self.audited}


service = zmsg.Service("users")
controller = service.include(UsersController())
