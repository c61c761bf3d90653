"""The AsyncAPI document of a service, validated against the AsyncAPI 3.0 JSON Schema, and the
compatibility rules of ``zmsg check``."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

import zmsg
from zmsg import contract
from zmsg.testing import SyncTestClient

ASYNCAPI_SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "asyncapi-3.0.0.schema.json").read_text())


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(msgspec.Struct):
    city: str
    zip: str | None = None


class User(msgspec.Struct):
    id: int
    name: str
    address: Address | None = None
    color: Color = Color.RED


class Tree(msgspec.Struct):  # recursive
    value: int
    children: list[Tree] = []


def _rich_service() -> zmsg.Service:
    service = zmsg.Service("users", version="1.2.0")

    @service.message_pattern("get_user")
    def get_user(user_id: int) -> User:
        raise NotImplementedError

    @service.message_pattern({"cmd": "sum"})
    async def accumulate(data: list[int]) -> int:
        return sum(data)

    @service.message_pattern("ping")
    def ping(ctx: zmsg.Context) -> None:
        return None

    @service.message_pattern("tree")
    def tree(t: Tree) -> dict[str, Any]:
        return {}

    @service.message_pattern("anything")
    def anything(x, y=1):  # type: ignore[no-untyped-def]
        return x

    @service.event_pattern("user_created")
    def created(user: User) -> None:
        pass

    @service.event_pattern("user_created")
    def audited(user: User) -> None:
        pass

    return service


def test_the_document_is_valid_asyncapi_3() -> None:
    document = contract.service_document(_rich_service(), "tcp://127.0.0.1:5555")
    jsonschema.validate(document, ASYNCAPI_SCHEMA)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "users" and document["info"]["version"] == "1.2.0"
    assert document["servers"]["zmsg"]["host"] == "127.0.0.1:5555"
    # It survives a trip through JSON (what zmsg schema prints) and through MessagePack ($zmsg.schema).
    assert json.loads(contract.dumps(document)) == document
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(document)) == document


def test_the_document_without_an_endpoint_and_in_yaml_is_valid_too() -> None:
    yaml = pytest.importorskip("yaml")
    document = contract.service_document(_rich_service())
    assert "servers" not in document
    jsonschema.validate(yaml.safe_load(contract.dumps(document, yaml=True)), ASYNCAPI_SCHEMA)


def test_an_invalid_document_is_caught_by_the_schema() -> None:
    # The validation is not vacuous: a document missing a required part fails.
    document = contract.service_document(_rich_service())
    del document["operations"]["get_user"]["action"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, ASYNCAPI_SCHEMA)


def test_every_pattern_has_its_request_reply_and_event_schemas() -> None:
    document = contract.service_document(_rich_service())
    channels = document["channels"]
    schemas = document["components"]["schemas"]
    get_user = channels["get_user"]
    assert get_user["address"] == "get_user" and get_user["x-zmsg-kind"] == "message"
    assert get_user["messages"]["request"]["payload"] == {"type": "integer"}
    assert get_user["messages"]["reply"]["payload"] == {"$ref": "#/components/schemas/User"}
    assert set(schemas["User"]["required"]) == {"id", "name"}
    assert schemas["Address"]["properties"]["city"] == {"type": "string"}
    assert "Color" in schemas and "Tree" in schemas
    total = channels["cmd_sum"]
    assert total["address"] is None and total["x-zmsg-pattern"] == '{"cmd":"sum"}'
    assert total["messages"]["request"]["payload"] == {"type": "array", "items": {"type": "integer"}}
    assert channels["ping"]["messages"]["request"]["payload"] == {}  # takes no payload
    assert channels["ping"]["messages"]["reply"]["payload"] == {"type": "null"}
    assert channels["anything"]["messages"]["reply"]["payload"] == {}  # unannotated: any value
    event = channels["user_created"]
    assert event["x-zmsg-kind"] == "event"
    assert event["messages"]["event"]["payload"] == {"$ref": "#/components/schemas/User"}
    assert document["operations"]["user_created"]["action"] == "receive"
    assert "reply" not in document["operations"]["user_created"]
    reply_refs = [m["$ref"] for m in document["operations"]["get_user"]["reply"]["messages"]]
    assert reply_refs == ["#/channels/get_user/messages/reply", "#/channels/get_user/messages/error"]


def test_the_same_document_answers_zmsg_schema() -> None:
    with SyncTestClient(_rich_service()) as client:  # the real built-in, in memory
        document = client.send("$zmsg.schema")
    assert document.pop("servers")["zmsg"]["x-zmsg-endpoint"].startswith("memory://")
    assert document == contract.service_document(_rich_service())


# -- compatibility --------------------------------------------------------------------------


def _doc(register: Any) -> dict[str, Any]:
    service = zmsg.Service("svc")
    register(service)
    return contract.service_document(service)


def _changes(old: Any, new: Any) -> list[str]:
    return [str(c) for c in contract.compare(_doc(old), _doc(new))]


def _breaking(old: Any, new: Any) -> list[str]:
    return [str(c) for c in contract.compare(_doc(old), _doc(new)) if c.breaking]


def _with(request: Any, reply: Any = None, pattern: str = "p") -> Any:
    def register(service: zmsg.Service) -> None:
        def handler(data):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        handler.__annotations__ = {"data": request, "return": reply}
        service.message_pattern(pattern)(handler)

    return register


class V1(msgspec.Struct):
    name: str


class V2Optional(msgspec.Struct):
    name: str
    nick: str | None = None


class V2Required(msgspec.Struct):
    name: str
    nick: str


class V2Typed(msgspec.Struct):
    name: int


class V1Closed(msgspec.Struct, forbid_unknown_fields=True):
    other: str | None = None


class V1Both(msgspec.Struct):
    name: str
    other: str | None = None


def test_identical_documents_have_no_changes() -> None:
    assert contract.compare(_doc(_with(V1, V1)), _doc(_with(V1, V1))) == []
    rich = contract.service_document(_rich_service())
    assert contract.compare(rich, json.loads(json.dumps(rich))) == []


def test_removed_and_added_patterns() -> None:
    assert _breaking(_with(int, int, "old"), _with(int, int, "new")) == ["incompatible: message old: pattern removed"]
    assert "compatible: message new: pattern added" in _changes(_with(int, int, "old"), _with(int, int, "new"))

    def event(service: zmsg.Service) -> None:
        service.event_pattern("old")(lambda x: None)

    assert _breaking(event, _with(int, int, "x")) == ["incompatible: event old: pattern removed"]


def test_request_fields() -> None:
    assert _breaking(_with(V1), _with(V2Optional)) == []
    assert _changes(_with(V1), _with(V2Optional)) == ["compatible: message p request: field 'nick': added, optional"]
    assert _breaking(_with(V1), _with(V2Required)) == ["incompatible: message p request: field 'nick': added, required"]
    assert _breaking(_with(V2Optional), _with(V2Required)) == [
        "incompatible: message p request: field 'nick': is now required",
        "incompatible: message p request: field 'nick': type changed from null | string to string"]
    assert _breaking(_with(V2Required), _with(V2Optional)) == []  # required -> optional: still accepted
    assert _breaking(_with(V1), _with(V2Typed)) == [
        "incompatible: message p request: field 'name': type changed from string to integer"]
    # A removed request field is ignored by msgspec, unless unknown fields are refused.
    assert _breaking(_with(V1Both), _with(V1)) == []
    assert _breaking(_with(V1Both), _with(V1Closed)) == [
        "incompatible: message p request: field 'name': removed and unknown fields are refused"]


def test_reply_fields() -> None:
    assert _breaking(_with(int, V1), _with(int, V2Optional)) == []  # a new reply field: callers ignore it
    assert _breaking(_with(int, V2Optional), _with(int, V1)) == ["incompatible: message p reply: field 'nick': removed"]
    assert _breaking(_with(int, V2Required), _with(int, V2Optional)) == [
        "incompatible: message p reply: field 'nick': is no longer always present",
        "incompatible: message p reply: field 'nick': type changed from string to null | string"]
    assert _breaking(_with(int, int), _with(int, str)) == [
        "incompatible: message p reply: type changed from integer to string"]
    assert _breaking(_with(int, int), _with(int, float)) == [
        "incompatible: message p reply: type changed from integer to number"]
    assert _breaking(_with(int, float), _with(int, int)) == []  # integers are numbers


def test_request_types_may_widen_but_not_narrow() -> None:
    assert _breaking(_with(int), _with(float)) == []
    assert _breaking(_with(int), _with(int | None)) == []
    assert _breaking(_with(int | None), _with(int)) == [
        "incompatible: message p request: type changed from null | integer to integer"]
    assert _breaking(_with(int), _with(Any)) == []
    assert _breaking(_with(int, int), _with(int, Any)) == [
        "incompatible: message p reply: type changed from integer to any"]


def _renamed(cls: Any, name: str) -> Any:
    cls.__name__ = cls.__qualname__ = name  # the same component name, for two versions of a type
    return cls


class Inner(msgspec.Struct):
    city: str


class InnerMore(msgspec.Struct):
    city: str
    zip: str


class Outer(msgspec.Struct):
    inner: Inner
    many: list[Inner] = []


class OuterMore(msgspec.Struct):
    inner: InnerMore
    many: list[InnerMore] = []


_renamed(InnerMore, "Inner")
_renamed(OuterMore, "Outer")


def test_nested_and_referenced_structs_are_compared_through_their_refs() -> None:
    # A changed component is reported once, where it is first reached.
    assert _breaking(_with(Outer), _with(OuterMore)) == [
        "incompatible: message p request: field 'inner': field 'zip': added, required",
    ]
    # Recursive types terminate.
    assert contract.compare(_doc(_with(Tree, Tree)), _doc(_with(Tree, Tree))) == []


class Small(enum.Enum):
    A = "a"


class Large(enum.Enum):
    A = "a"
    B = "b"


_renamed(Large, "Small")


def test_enums() -> None:
    assert _breaking(_with(Small, int), _with(Large, int)) == []
    assert _breaking(_with(Large, int), _with(Small, int)) == [
        "incompatible: message p request: values no longer allowed: ['b']"]
    assert _breaking(_with(int, Small), _with(int, Large)) == ["incompatible: message p reply: new values: ['b']"]


def test_load_document_rejects_what_is_not_a_contract(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(zmsg.ConfigError, match="not a valid document"):
        contract.load_document(bad)
    bad.write_text('{"openapi": "3.1.0", "channels": {}}')
    with pytest.raises(zmsg.ConfigError, match="not an AsyncAPI 3 document"):
        contract.load_document(bad)
    with pytest.raises(zmsg.ConfigError, match="cannot read"):
        contract.load_document(tmp_path / "missing.json")
    good = tmp_path / "good.json"
    good.write_text(contract.dumps(_doc(_with(int, int))))
    assert contract.load_document(good) == _doc(_with(int, int))
