"""``zmsg schema``, ``zmsg info --schema`` and ``zmsg check`` end to end, and ``$zmsg.schema``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import zmsg
from zmsg.commands import ExitCode

SERVICES_DIR = Path(__file__).parent.parent / "services"
ASYNCAPI_SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "asyncapi-3.0.0.schema.json").read_text())


def zmsg_cmd(*args: str, release: str = "current", block_yaml: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMSG_") or k == "ZMSG_NO_EXTENSIONS"}
    env["CONTRACT_RELEASE"] = release
    prelude = "import sys; sys.modules['yaml'] = None; " if block_yaml else ""  # as if PyYAML were absent
    code = prelude + "import sys; from zmsg.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=SERVICES_DIR, env=env,
                          capture_output=True, text=True, timeout=120)


def _saved(tmp_path: Path, release: str) -> Path:
    result = zmsg_cmd("schema", "contractsvc:service", release=release)
    assert result.returncode == 0, result.stderr
    path = tmp_path / f"{release}.json"
    path.write_text(result.stdout)
    return path


def test_schema_prints_a_valid_asyncapi_document_with_the_endpoint() -> None:
    result = zmsg_cmd("schema", "contractsvc:service", "--endpoint", "tcp://users.internal:5555")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, ASYNCAPI_SCHEMA)
    assert document["info"] == {"title": "users", "version": "2.0.0", "description": document["info"]["description"]}
    assert document["servers"]["zmsg"]["host"] == "users.internal:5555"
    assert set(document["channels"]) == {"get_user", "create_user", "ping", "user_created"}
    assert document["components"]["schemas"]["NewUser"]["required"] == ["name"]


def test_schema_in_yaml_and_a_clear_error_without_pyyaml() -> None:
    yaml = pytest.importorskip("yaml")
    result = zmsg_cmd("schema", "contractsvc:service", "--yaml")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == json.loads(zmsg_cmd("schema", "contractsvc:service").stdout)
    missing = zmsg_cmd("schema", "contractsvc:service", "--yaml", block_yaml=True)
    assert missing.returncode == ExitCode.ERROR
    assert missing.stderr.strip() == ("zmsg: error: --yaml needs PyYAML, which is not installed "
                                      "(pip install 'zmsg[yaml]'); the default output is JSON")


def test_schema_errors_are_one_line() -> None:
    result = zmsg_cmd("schema", "nosuchmodule:service")
    assert result.returncode == ExitCode.ERROR and "cannot import module 'nosuchmodule'" in result.stderr
    result = zmsg_cmd("schema", "contractsvc:service", "--endpoint", "tcp://nowhere")
    assert result.returncode == ExitCode.USAGE and "malformed endpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_running_service_answers_the_same_document(serve_process) -> None:
    served = serve_process("contractsvc:service")
    result = zmsg_cmd("info", "--schema", served.endpoint)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, ASYNCAPI_SCHEMA)
    offline = json.loads(zmsg_cmd("schema", "contractsvc:service", "--endpoint", served.endpoint).stdout)
    assert document["servers"]["zmsg"].pop("x-zmsg-events-endpoint") == served.events_endpoint
    assert document == offline


def test_check_passes_a_compatible_service_and_fails_an_incompatible_one(serve_process, tmp_path: Path) -> None:
    served = serve_process("contractsvc:service")  # the "current" release

    same = zmsg_cmd("check", served.endpoint, str(_saved(tmp_path, "current")))
    assert same.returncode == ExitCode.OK, same.stdout + same.stderr
    assert same.stdout == ""

    compatible = zmsg_cmd("check", served.endpoint, str(_saved(tmp_path, "older")))
    assert compatible.returncode == ExitCode.OK, compatible.stdout + compatible.stderr
    assert compatible.stdout.splitlines() == [
        "compatible: message create_user request: field 'nick': added, optional",
        "compatible: message get_user reply: field 'email': added, optional",
        "compatible: event user_created event: field 'email': added, optional",
        "compatible: message ping: pattern added",
    ]
    assert "is compatible with" in compatible.stderr

    broken = zmsg_cmd("check", served.endpoint, str(_saved(tmp_path, "breaking")))
    assert broken.returncode == ExitCode.INCOMPATIBLE == 6, broken.stdout + broken.stderr
    lines = broken.stdout.splitlines()
    assert [line for line in lines if line.startswith("incompatible")] == [
        "incompatible: message delete_user: pattern removed",
        "incompatible: message get_user request: type changed from string to integer",
        "incompatible: message get_user reply: field 'age': removed",
    ]
    assert "compatible: event user_created event: field 'age': removed (now ignored)" in lines
    assert "INCOMPATIBLE" in broken.stderr and "3 incompatible change(s)" in broken.stderr


def test_check_errors(serve_process, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    served = serve_process("contractsvc:service")
    result = zmsg_cmd("check", served.endpoint, str(bad))
    assert result.returncode == ExitCode.USAGE and "not an AsyncAPI document" in result.stderr
    result = zmsg_cmd("check", "tcp://127.0.0.1:1", str(_saved(tmp_path, "current")), "--timeout", "0.5")
    assert result.returncode == ExitCode.UNAVAILABLE, result.stderr


@pytest.mark.anyio
async def test_the_builtin_schema_pattern_over_the_wire(zmsg_serve) -> None:
    service = zmsg.Service("tiny")

    @service.message_pattern("double")
    def double(x: int) -> int:
        return 2 * x

    client = await zmsg_serve(service)
    document = await client.send("$zmsg.schema")
    jsonschema.validate(document, ASYNCAPI_SCHEMA)
    assert document["channels"]["double"]["messages"]["request"]["payload"] == {"type": "integer"}
    assert document["servers"]["zmsg"]["x-zmsg-endpoint"] == service.endpoint
