"""The notifications service: reacts to ``user_created`` events by sending a welcome message.

Run it with ``zmsg serve notifications:service --bind tcp://127.0.0.1:5556`` from this directory.
The emitter never waits for this handler; a failure here stays here (logged and counted).
"""

from __future__ import annotations

import logging

import msgspec

import zmsg

service = zmsg.Service("notifications", version="1.0.0")
log = logging.getLogger("notifications")


class UserCreated(msgspec.Struct):
    user_id: int
    name: str
    email: str


class Notification(msgspec.Struct):
    user_id: int
    to: str
    subject: str


# What was "sent": a real service would hand these to a mail or push provider.
_sent: list[Notification] = []


@service.event_pattern("user_created")
async def welcome(event: UserCreated) -> None:
    notification = Notification(user_id=event.user_id, to=event.email, subject=f"Welcome, {event.name}!")
    _sent.append(notification)
    log.info("sent %r to %s", notification.subject, notification.to)


@service.message_pattern({"cmd": "list_notifications"})
def list_notifications() -> list[Notification]:
    """Lets operators (and the example's test) see what was sent."""
    return _sent
