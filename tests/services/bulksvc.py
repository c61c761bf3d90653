"""A service with a tiny per-client reply budget, so a reading client meets its refusals.

ZeroMQ queues one reply message per client (``reply_hwm=1``) and zmsg at most 256 KiB more, so
any client with a few large replies in flight has requests refused (429, not run) and re-sends
them; ``refuse`` answers every call with such a refusal, ``rate_limited`` with a handler's own
429 (an answer, never re-sent).
"""

import zmsg
from zmsg.codec import refusal_object

service = zmsg.Service("bulk", reply_hwm=1, max_peer_buffer=256 * 1024)
calls = {"refuse": 0, "rate_limited": 0}


@service.message_pattern("blob")
def blob(size: int) -> bytes:
    return b"x" * size


@service.message_pattern("refuse")
def refuse(_: object) -> None:
    calls["refuse"] += 1
    raise zmsg.RpcException(refusal_object(503, "warming up: nothing was done, send it again"))


@service.message_pattern("rate_limited")
def rate_limited(_: object) -> None:
    calls["rate_limited"] += 1
    raise zmsg.RpcException({"status": 429, "message": "slow down"})


@service.message_pattern("calls")
def count_calls(name: str) -> int:
    return calls[name]
