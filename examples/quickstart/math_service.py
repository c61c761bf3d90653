"""The service of the quick start: served by `zmsg serve math_service:service`."""

import msgspec

import zmsg

service = zmsg.Service("math")


class UserCreated(msgspec.Struct):
    user_id: str
    email: str


welcomed: list[str] = []


@service.message_pattern({"cmd": "sum"})
def accumulate(data: list[int]) -> int:
    return sum(data)


@service.message_pattern({"cmd": "get_user"})
async def get_user(user_id: int) -> dict[str, object]:
    if user_id != 1:
        raise zmsg.RpcException({"status": 404, "message": f"User {user_id} not found"})
    return {"id": 1, "email": "ada@example.com"}


@service.event_pattern("user_created")
async def welcome(event: UserCreated) -> None:
    welcomed.append(event.email)


@service.message_pattern("welcomed")
def list_welcomed() -> list[str]:
    return welcomed
