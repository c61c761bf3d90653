"""An HTTP API in front of two zmsg services, and a zmsg service itself (a hybrid app).

    GET  /users/{id}   -> users service, request-reply      ({"cmd": "get_user"})
    POST /users        -> users service, request-reply      ({"cmd": "create_user"})
                          then notifications, an event      ("user_created")
    GET  /health       -> this process's own state

Errors cross the boundary by meaning, not by type: a service's ``RpcException`` carries an HTTP
status in its error object (404 stays 404), and a service that does not answer in time is a
503, as it would be behind any reverse proxy. The clients come from the registry (endpoints
from ``zmsg.toml`` or ``ZMSG_CLIENTS_*`` variables); the lifespan connects them at start-up and
closes them at shutdown, and starts and stops this process's own zmsg ``Service`` (NestJS's
hybrid application: HTTP and a microservice listener in one process, on one event loop).

Run from this directory: ``uvicorn app:app --port 8000`` (with the two services running).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import zmsg

# Declared once, by name; hosts and ports come from configuration, never from this code.
clients = zmsg.ClientRegistry()
clients.register("USERS_SERVICE")
clients.register("NOTIFICATIONS_SERVICE")

# The hybrid part: this HTTP process also answers zmsg requests (here: its own counters).
gateway = zmsg.Service("gateway", version="1.0.0")
http_requests: Counter[str] = Counter()


@gateway.message_pattern({"cmd": "stats"})
def stats() -> dict[str, int]:
    return dict(http_requests)


async def get_user(request: Request) -> Response:
    http_requests["GET /users/{id}"] += 1
    user = await clients.get("USERS_SERVICE").send({"cmd": "get_user"}, request.path_params["user_id"])
    return JSONResponse(user)


async def create_user(request: Request) -> Response:
    http_requests["POST /users"] += 1
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"status": 400, "message": "the body must be JSON"}, status_code=400)
    user = await clients.get("USERS_SERVICE").send({"cmd": "create_user"}, body)
    # Fire-and-forget: the HTTP caller does not wait for the welcome message to be sent.
    await clients.get("NOTIFICATIONS_SERVICE").emit(
        "user_created", {"user_id": user["id"], "name": user["name"], "email": user["email"]}
    )
    return JSONResponse(user, status_code=201)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "zmsg_endpoint": gateway.endpoint if gateway.running else None})


async def rpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, zmsg.RpcException)
    status = exc.status if exc.status is not None and 400 <= exc.status < 600 else 502
    error: Any = exc.error if isinstance(exc.error, dict) else {"status": status, "message": exc.error}
    return JSONResponse(error, status_code=status)


async def unavailable(request: Request, exc: Exception) -> Response:
    # Covers RequestTimeout and ServiceUnavailable: the dependency is not answering right now.
    return JSONResponse({"status": 503, "message": str(exc)}, status_code=503)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Connecting now (handshake, event subscriptions) means the first request pays nothing
    # and a missing service stops the start-up instead of failing the first user.
    await clients.connect()
    await gateway.start(os.environ.get("GATEWAY_ZMSG_BIND", "tcp://127.0.0.1:0"))
    try:
        yield
    finally:
        await gateway.stop()  # drains its in-flight requests
        await clients.aclose()


app = Starlette(
    routes=[
        Route("/users/{user_id:int}", get_user, methods=["GET"]),
        Route("/users", create_user, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ],
    exception_handlers={
        zmsg.RpcException: rpc_error,
        zmsg.RequestTimeout: unavailable,
        zmsg.ServiceUnavailable: unavailable,
    },
    lifespan=lifespan,
)
