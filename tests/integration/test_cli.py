"""The ``zmsg`` command end to end: real processes, real sockets, exit codes and messages."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import zmsg
from tests.conftest import free_endpoint
from zmsg.commands import ExitCode

SERVICES_DIR = Path(__file__).parent.parent / "services"
_READY = re.compile(r"serving '(?P<name>[^']*)' on (?P<endpoint>\S+) \(events on (?P<events>\S+)\)")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's ZMSG_* settings, so each test states its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMSG_") or k == "ZMSG_NO_EXTENSIONS"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def zmsg_cmd(*args: str, cwd: Path = SERVICES_DIR, env: dict[str, str] | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zmsg ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "zmsg", *args], cwd=cwd, env=env or _clean_env(), input=stdin,
        capture_output=True, text=True, timeout=120,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert text in lines[0], lines[0]


# -- serve, call, emit, info, health ---------------------------------------------------------------


def test_console_script_calls_a_served_service(math_service) -> None:
    script = shutil.which("zmsg", path=str(Path(sys.executable).parent))
    assert script is not None, "the zmsg console script is not installed beside this Python"
    result = subprocess.run([script, "call", math_service.endpoint, '{"cmd": "sum"}', "[1, 2, 3]"],
                            env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 6


def test_call_prints_the_reply_as_json(math_service) -> None:
    result = zmsg_cmd("call", math_service.endpoint, "echo", '{"a": [1, "x", null], "b": 1.5}')
    assert result.returncode == ExitCode.OK, result.stderr
    assert json.loads(result.stdout) == {"a": [1, "x", None], "b": 1.5}
    assert zmsg_cmd("call", math_service.endpoint, "pid").stdout.strip().isdigit()  # no payload: null


def test_call_reads_the_payload_from_stdin(math_service) -> None:
    result = zmsg_cmd("call", math_service.endpoint, '{"cmd":"sum"}', "-", stdin="[20, 22]")
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.strip() == "42"


def test_emit_reaches_the_event_handler(math_service) -> None:
    def seen() -> int:
        return int(zmsg_cmd("call", math_service.endpoint, "events_seen", '"user_created"').stdout)

    before = seen()
    result = zmsg_cmd("emit", math_service.endpoint, "user_created", '{"user_id": "u1", "email": "a@b.c"}')
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout == ""
    # emit returns once the event was handed over; handling is asynchronous, so look a few times.
    for _ in range(100):
        if seen() == before + 1:
            break
    assert seen() == before + 1


def test_info_lists_name_version_patterns_and_uptime(math_service) -> None:
    text = zmsg_cmd("info", math_service.endpoint)
    assert text.returncode == ExitCode.OK, text.stderr
    assert "service   math 0.0.0" in text.stdout
    messages = next(line for line in text.stdout.splitlines() if line.startswith("messages  "))
    assert {"echo", "pid", "sleep", '{"cmd":"sum"}'} <= set(messages.split("  ", 1)[1].split(", "))
    assert "events    config_changed, user_created" in text.stdout
    assert re.search(r"status    serving, up \d", text.stdout)
    raw = zmsg_cmd("info", math_service.endpoint, "--json")
    info = json.loads(raw.stdout)
    assert info["service"] == "math" and info["version"] == "0.0.0" and info["zmsg"] == zmsg.__version__
    assert info["event_patterns"] == ["config_changed", "user_created"]
    assert info["uptime"] >= 0 and info["endpoint"] == math_service.endpoint


def test_health_exits_zero_when_serving(math_service) -> None:
    result = zmsg_cmd("health", math_service.endpoint)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.strip() == "math: serving"


def test_endpoint_may_be_a_client_name_from_the_environment(math_service) -> None:
    env = _clean_env(ZMSG_CLIENTS_MATH_ENDPOINTS=math_service.endpoint)
    result = zmsg_cmd("call", "MATH", '{"cmd":"sum"}', "[2, 3]", env=env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.strip() == "5"


# -- error paths: one line, the documented exit code -----------------------------------------------


def test_rpc_exception_prints_the_error_object_on_stderr(serve_process) -> None:
    users = serve_process("usersvc:service")
    result = zmsg_cmd("call", users.endpoint, "get_user", '{"user_id": 7}')
    assert result.returncode == ExitCode.RPC_ERROR
    assert result.stdout == ""
    assert json.loads(result.stderr) == {"status": 404, "message": "User 7 not found"}
    unknown = zmsg_cmd("call", users.endpoint, "no_such_pattern")
    assert unknown.returncode == ExitCode.RPC_ERROR
    assert json.loads(unknown.stderr)["status"] == 404


def test_timeout(math_service) -> None:
    result = zmsg_cmd("call", math_service.endpoint, "sleep", "5", "--timeout", "0.2")
    _one_line_error(result, ExitCode.TIMEOUT, "no reply to 'sleep' within 0.2 s")


def test_unreachable_service() -> None:
    endpoint = free_endpoint()
    for command in (["call", endpoint, "echo", "1"], ["emit", endpoint, "x"], ["info", endpoint],
                    ["health", endpoint]):
        result = zmsg_cmd(*command, "--timeout", "0.3")
        _one_line_error(result, ExitCode.UNAVAILABLE, f"no zmsg service answered at {endpoint}")


def test_invalid_json(math_service) -> None:
    endpoint = math_service.endpoint
    _one_line_error(zmsg_cmd("call", endpoint, "echo", "{oops"), ExitCode.USAGE, "invalid JSON in DATA")
    _one_line_error(zmsg_cmd("call", endpoint, '{"cmd": sum}'), ExitCode.USAGE,
                    "invalid JSON in PATTERN")
    _one_line_error(zmsg_cmd("emit", endpoint, "x", "[1,"), ExitCode.USAGE, "invalid JSON in DATA")


def test_malformed_endpoint() -> None:
    _one_line_error(zmsg_cmd("call", "tcp://localhost", "echo"), ExitCode.USAGE,
                    "malformed endpoint 'tcp://localhost'")
    _one_line_error(zmsg_cmd("health", "NOT_DECLARED"), ExitCode.USAGE, "neither an endpoint")
    _one_line_error(zmsg_cmd("serve", "mathsvc:service", "--bind", "tcp://127.0.0.1"), ExitCode.USAGE,
                    "invalid value for --bind: malformed endpoint")


def test_serve_unknown_module_attribute_and_non_service() -> None:
    _one_line_error(zmsg_cmd("serve", "nosuchmodule:service"), ExitCode.ERROR,
                    "cannot import module 'nosuchmodule': not found")
    _one_line_error(zmsg_cmd("serve", "mathsvc:nothing"), ExitCode.ERROR,
                    "module 'mathsvc' has no attribute 'nothing'")
    _one_line_error(zmsg_cmd("serve", "mathsvc:events"), ExitCode.ERROR,
                    "mathsvc:events is a dict, not a zmsg.Service")
    _one_line_error(zmsg_cmd("serve", "mathsvc:UserCreated"), ExitCode.ERROR,
                    "is the class UserCreated, not a zmsg.Service")
    _one_line_error(zmsg_cmd("serve", "mathsvc"), ExitCode.USAGE, "expected MODULE:ATTR")
    _one_line_error(zmsg_cmd("serve"), ExitCode.USAGE, "nothing to serve")


def test_serve_endpoint_in_use(math_service) -> None:
    result = zmsg_cmd("serve", "mathsvc:service", "--bind", math_service.endpoint)
    assert result.returncode == ExitCode.ERROR
    assert "Traceback" not in result.stderr
    assert f"zmsg: error: cannot bind {math_service.endpoint}: address already in use" in result.stderr


def test_bad_arguments_exit_2() -> None:
    assert zmsg_cmd("call").returncode == ExitCode.USAGE
    assert zmsg_cmd("serve", "mathsvc:service", "--log-level", "loud").returncode == ExitCode.USAGE
    assert zmsg_cmd("serve", "mathsvc:service", "--reply-hwm", "0").returncode == ExitCode.USAGE
    assert zmsg_cmd("call", "tcp://127.0.0.1:1", "x", "--timeout", "-1").returncode == ExitCode.USAGE
    assert zmsg_cmd("frobnicate").returncode == ExitCode.USAGE


def test_invalid_setting_from_the_environment_names_it() -> None:
    result = zmsg_cmd("serve", "mathsvc:service", env=_clean_env(ZMSG_SERVE_GRACE="soon"))
    _one_line_error(result, ExitCode.USAGE, "ZMSG_SERVE_GRACE")
    result = zmsg_cmd("call", "tcp://127.0.0.1:1", "x", env=_clean_env(ZMSG_CLIENT_TIMEOUT="0"))
    _one_line_error(result, ExitCode.USAGE, "ZMSG_CLIENT_TIMEOUT")


@pytest.mark.parametrize("command", ["serve", "call", "emit", "info", "health"])
def test_help_with_examples_for_every_subcommand(command: str) -> None:
    result = zmsg_cmd(command, "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert f"zmsg {command} " in result.stdout.split("examples:", 1)[1]


# -- serve from a zmsg.toml, JSON logs --------------------------------------------------------------


def test_serve_takes_its_settings_from_zmsg_toml(tmp_path: Path) -> None:
    (tmp_path / "zmsg.toml").write_text(
        '[serve]\napp = "mathsvc:service"\nbind = "tcp://127.0.0.1:0"\n'
        'log_format = "json"\nlog_level = "info"\n'
    )
    env = _clean_env(PYTHONPATH=str(SERVICES_DIR))
    proc = subprocess.Popen([sys.executable, "-m", "zmsg", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        match = _READY.search(proc.stdout.readline())
        assert match is not None and match["name"] == "math"
        assert zmsg_cmd("call", match["endpoint"], '{"cmd":"sum"}', "[1, 1]").stdout.strip() == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["message"].startswith("signal SIGTERM: draining") for r in records)


# -- graceful drain ---------------------------------------------------------------------------------


async def _wait_in_flight(client: zmsg.ClientProxy, count: int) -> None:
    while (await client.send("$zmsg.info"))["in_flight"] < count:
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_sigterm_drains_every_request_already_received(serve_process) -> None:
    served = serve_process("mathsvc:service")
    async with zmsg.ClientProxy(served.endpoint, timeout=60) as client:
        requests = [asyncio.ensure_future(client.send("sleep", 1.5)) for _ in range(50)]
        await _wait_in_flight(client, 50)  # the service holds all 50: they were sent before the signal
        served.proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*requests, return_exceptions=True)
    assert results == [1.5] * 50
    assert served.proc.wait(30) == 0
    assert "signal SIGTERM: draining" in served.output()


@pytest.mark.anyio
async def test_second_signal_exits_at_once(serve_process) -> None:
    served = serve_process("mathsvc:service", "--grace", "120")
    async with zmsg.ClientProxy(served.endpoint, timeout=120) as client:
        stuck = asyncio.ensure_future(client.send("sleep", 120))
        await _wait_in_flight(client, 1)
        served.proc.send_signal(signal.SIGINT)  # first: drain, which would wait for the sleeper
        while (await client.send("$zmsg.health"))["status"] != "draining":
            await asyncio.sleep(0.02)
        served.proc.send_signal(signal.SIGTERM)  # second: leave now
        assert served.proc.wait(30) == 1
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
    assert "second signal: exiting at once" in served.output()
