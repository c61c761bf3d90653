"""examples/gateway end to end: two ``zmsg serve`` processes behind a uvicorn HTTP gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_MISSING = "the gateway example needs the 'gateway' extra: pip install 'zmsg[gateway]'"
pytest.importorskip("starlette", reason=_MISSING)
pytest.importorskip("uvicorn", reason=_MISSING)
httpx = pytest.importorskip("httpx", reason=_MISSING)

import zmsg  # noqa: E402  (after the skips: a missing extra is a skip, not an error)
from tests.conftest import free_port  # noqa: E402

GATEWAY_DIR = Path(__file__).resolve().parents[2] / "examples" / "gateway"
USERS_TIMEOUT = 2.0  # the gateway's reply timeout for the users service (the 503 case waits this long)


@pytest.fixture
def gateway(serve_process: Any) -> Iterator[dict[str, Any]]:
    """Start users, notifications and the ASGI gateway; yield their addresses; stop all three."""
    users = serve_process("users:service", cwd=GATEWAY_DIR)
    notifications = serve_process("notifications:service", cwd=GATEWAY_DIR)
    port = free_port()
    env = {
        **os.environ,
        "ZMSG_CLIENTS_USERS_SERVICE_ENDPOINTS": users.endpoint,
        "ZMSG_CLIENTS_USERS_SERVICE_TIMEOUT": str(USERS_TIMEOUT),
        "ZMSG_CLIENTS_NOTIFICATIONS_SERVICE_ENDPOINTS": notifications.endpoint,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=GATEWAY_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # ready once the lifespan has connected the clients and /health answers
            assert proc.poll() is None, f"uvicorn exited:\n{proc.communicate()[0]}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.1)
        yield {"base": base, "users": users, "notifications": notifications, "proc": proc}
    finally:
        os.kill(users.pid, signal.SIGCONT)  # in case a test left it stopped
        proc.send_signal(signal.SIGTERM)
        try:
            output = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate(timeout=5)[0]
        # Recent uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit.
        assert proc.returncode in (0, -signal.SIGTERM), output
        assert "Application shutdown complete" in output  # the lifespan closed clients and service


def _notifications(endpoint: str) -> list[dict[str, Any]]:
    with zmsg.SyncClientProxy(endpoint, timeout=10) as client:
        result: list[dict[str, Any]] = client.send({"cmd": "list_notifications"})
        return result


def test_http_api_over_zmsg_services(gateway: dict[str, Any]) -> None:
    base = gateway["base"]
    with httpx.Client(base_url=base, timeout=30) as http:
        missing = http.get("/users/1")
        assert missing.status_code == 404  # RpcException({"status": 404}) from the users service
        assert missing.json() == {"status": 404, "message": "User 1 not found"}

        created = http.post("/users", json={"name": "Ada", "email": "ada@example.com"})
        assert created.status_code == 201
        user = created.json()
        assert user == {"id": 1, "name": "Ada", "email": "ada@example.com"}
        assert http.get(f"/users/{user['id']}").json() == user

        conflict = http.post("/users", json={"name": "Ada", "email": "ada@example.com"})
        assert conflict.status_code == 409
        invalid = http.post("/users", json={"name": "no email"})
        assert invalid.status_code == 400

    # The notifications service received the user_created event (asynchronously: poll it).
    expected = [{"user_id": 1, "to": "ada@example.com", "subject": "Welcome, Ada!"}]
    deadline = time.monotonic() + 15
    endpoint = gateway["notifications"].endpoint
    while (sent := _notifications(endpoint)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent == expected


def test_hybrid_gateway_answers_zmsg_requests_too(gateway: dict[str, Any]) -> None:
    with httpx.Client(base_url=gateway["base"], timeout=30) as http:
        http.get("/users/5")
        endpoint = http.get("/health").json()["zmsg_endpoint"]
    with zmsg.SyncClientProxy(endpoint, timeout=10) as client:
        assert client.send({"cmd": "stats"}) == {"GET /users/{id}": 1}
        assert client.send("$zmsg.health") == {"status": "serving", "service": "gateway"}


def test_a_service_that_does_not_answer_in_time_is_a_503(gateway: dict[str, Any]) -> None:
    users = gateway["users"]
    os.kill(users.pid, signal.SIGSTOP)  # alive but unresponsive: the request times out
    try:
        with httpx.Client(base_url=gateway["base"], timeout=30) as http:
            response = http.get("/users/1")
        assert response.status_code == 503
        assert "no reply to" in response.json()["message"]
    finally:
        os.kill(users.pid, signal.SIGCONT)
