"""A service's contract as an AsyncAPI 3.0 document, and the compatibility check between two.

The document is built from the handlers' annotations alone (the payload parameter's type is the
request or event schema, the return type the reply schema), with msgspec's JSON Schema
generator; it is what ``zmsg schema`` prints and what the built-in ``$zmsg.schema`` answers.
Layout, so that another team's tooling and ``zmsg check`` can read it:

- one channel per pattern (``address``: the pattern; ``null`` for dict patterns, whose braces
  AsyncAPI would read as parameters; ``x-zmsg-pattern``: the canonical pattern either way, and
  ``x-zmsg-kind``: ``message`` or ``event``);
- a message pattern's channel holds a ``request`` and a ``reply`` message and one ``receive``
  operation whose ``reply`` names the reply message and zmsg's error object; an event pattern's
  channel holds an ``event`` message and a ``receive`` operation;
- named types (msgspec Structs, enums...) live once in ``components/schemas``.

Compatibility (``compare``) reads the saved document as what callers rely on and the new one as
what the service now does. What the service *reads* (requests, events) must still accept every
value it accepted: a new required field, an optional field made required, a narrowed type or a
removed field under ``forbid_unknown_fields`` break callers. What it *writes* (replies) must still
be readable: a removed field, a required field made optional or a changed type break them.
Removed patterns break; added patterns and added optional fields do not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from zmsg.codec import pattern_repr
from zmsg.errors import ConfigError
from zmsg.protocol import VERSION

if TYPE_CHECKING:
    from zmsg.service.handlers import Handler
    from zmsg.service.service import Service

__all__ = [
    "ASYNCAPI_VERSION",
    "CONTENT_TYPE",
    "build_document",
    "service_document",
    "Change",
    "compare",
    "load_document",
    "dumps",
]

ASYNCAPI_VERSION = "3.0.0"
CONTENT_TYPE = "application/msgpack"
_REF_TEMPLATE = "#/components/schemas/{name}"
_ERROR_MESSAGE = "zmsgError"
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RpcException's error object (zmsg's own errors always carry status and message).",
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
}
_NO_PAYLOAD = object()


# -- building ---------------------------------------------------------------------------------


def service_document(service: Service, endpoint: str | None = None) -> dict[str, Any]:
    """The AsyncAPI document of ``service``; ``endpoint`` (default: where it is bound) as its server."""
    if endpoint is None and service.running:
        endpoint = service.endpoint
    events = service.events_endpoint if service.running else None
    # The one place outside the service that reads its handler tables.
    return build_document(service.name, service.version, service._message_handlers, service._event_handlers,
                          endpoint=endpoint, events_endpoint=events)


def build_document(
    name: str,
    version: str,
    message_handlers: Mapping[bytes, Handler],
    event_handlers: Mapping[bytes, Sequence[Handler]],
    *,
    endpoint: str | None = None,
    events_endpoint: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of these handlers (see the module docstring for its layout)."""
    messages = sorted(message_handlers.items(), key=lambda item: pattern_repr(item[0]))
    events = sorted(event_handlers.items(), key=lambda item: pattern_repr(item[0]))
    types: list[Any] = []
    for _route, handler in messages:
        types.append(_payload_type(handler))
        types.append(handler.return_type)
    for _route, handlers in events:
        types.extend(_payload_type(h) for h in handlers)
    schemas, components = _schemas(types)
    position = iter(schemas)

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    ids: set[str] = set()
    for route, handler in messages:
        request, reply = next(position), next(position)
        cid = _unique_id(route, ids)
        channels[cid] = {
            **_address(route, "message"),
            "description": f"Request-reply, answered by {handler.name}.",
            "messages": {"request": _message(f"{cid}.request", request), "reply": _message(f"{cid}.reply", reply)},
        }
        operations[cid] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/request"}],
            "reply": {
                "channel": {"$ref": f"#/channels/{cid}"},
                "messages": [{"$ref": f"#/channels/{cid}/messages/reply"}],
            },
        }
    for route, handlers in events:
        payloads = [next(position) for _ in handlers]
        cid = _unique_id(route, ids)
        payload = _all_of(payloads)
        channels[cid] = {
            **_address(route, "event"),
            "description": "Event, handled by " + ", ".join(h.name for h in handlers) + ".",
            "messages": {"event": _message(f"{cid}.event", payload)},
        }
        operations[cid] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/event"}],
        }
    for cid, channel in channels.items():
        if channel["x-zmsg-kind"] == "message":
            channel["messages"]["error"] = {"$ref": f"#/components/messages/{_ERROR_MESSAGE}"}
            operations[cid]["reply"]["messages"].append({"$ref": f"#/channels/{cid}/messages/error"})

    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": name,
            "version": version,
            "description": f"zmsg service {name!r} (zmsg protocol {VERSION}; payloads are MessagePack).",
        },
        "defaultContentType": CONTENT_TYPE,
    }
    if endpoint is not None:
        document["servers"] = {"zmsg": _server(endpoint, events_endpoint)}
    document["channels"] = channels
    document["operations"] = operations
    document["components"] = {
        "schemas": components,
        "messages": {_ERROR_MESSAGE: {"name": _ERROR_MESSAGE, "title": "RpcException error object",
                                      "contentType": CONTENT_TYPE, "payload": _ERROR_SCHEMA}},
    }
    return document


def _payload_type(handler: Handler) -> Any:
    return handler.payload_type if handler.payload_param is not None else _NO_PAYLOAD


def _schemas(types: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """JSON Schemas of ``types`` with shared named components; a type msgspec cannot describe
    becomes ``{}`` (any value) with a note, rather than no document at all."""
    real = [tp for tp in types if tp is not _NO_PAYLOAD]
    try:
        schemas, components = msgspec.json.schema_components(real, ref_template=_REF_TEMPLATE)
        found = iter(schemas)
        out = [dict(next(found)) if tp is not _NO_PAYLOAD else {} for tp in types]
        return out, dict(components)
    except (TypeError, ValueError):
        pass
    out, components = [], {}
    for tp in types:
        if tp is _NO_PAYLOAD:
            out.append({})
            continue
        try:
            (schema,), more = msgspec.json.schema_components([tp], ref_template=_REF_TEMPLATE)
        except (TypeError, ValueError):
            out.append({"description": f"no JSON Schema for {tp!r}: any value"})
            continue
        out.append(dict(schema))
        components.update(more)
    return out, components


def _all_of(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    distinct = [s for i, s in enumerate(schemas) if s not in schemas[:i]]
    return distinct[0] if len(distinct) == 1 else {"allOf": distinct}  # every handler decodes it


def _message(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "contentType": CONTENT_TYPE, "payload": payload}


def _address(route: bytes, kind: str) -> dict[str, Any]:
    pattern = pattern_repr(route)
    return {"address": None if pattern.startswith("{") else pattern, "x-zmsg-pattern": pattern, "x-zmsg-kind": kind}


def _unique_id(route: bytes, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_\-]+", "_", pattern_repr(route)).strip("_") or "pattern"
    cid, n = base, 2
    while cid in taken:
        cid, n = f"{base}_{n}", n + 1
    taken.add(cid)
    return cid


def _server(endpoint: str, events_endpoint: str | None) -> dict[str, Any]:
    scheme, _, host = endpoint.partition("://")
    server: dict[str, Any] = {
        "host": host or endpoint,
        "protocol": "zmsg",
        "protocolVersion": str(VERSION),
        "description": f"zmsg request endpoint {endpoint} ({scheme or 'tcp'}); clients learn the event "
                       "endpoint in the $zmsg.hello handshake.",
        "x-zmsg-endpoint": endpoint,
    }
    if events_endpoint is not None:
        server["x-zmsg-events-endpoint"] = events_endpoint
    return server


def dumps(document: Mapping[str, Any], *, yaml: bool = False) -> str:
    """The document as JSON (indented), or YAML when PyYAML is installed (ImportError if not)."""
    if yaml:
        import yaml as pyyaml  # type: ignore[import-untyped,unused-ignore]  # optional: the `yaml` extra

        text: str = pyyaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
        return text
    return json.dumps(document, indent=2, ensure_ascii=False)


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a saved document (JSON, or YAML for ``.yaml``/``.yml`` with PyYAML); ``ConfigError`` if bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml as pyyaml  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                raise ConfigError(f"reading {path} needs PyYAML (pip install 'zmsg[yaml]')") from None
            document = pyyaml.safe_load(text)
        else:
            document = json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise ConfigError(f"{path} is not a valid document: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("channels", {}), dict):
        raise ConfigError(f"{path} is not an AsyncAPI document (no channels)")
    if not str(document.get("asyncapi", "")).startswith("3."):
        raise ConfigError(f"{path} is not an AsyncAPI 3 document (asyncapi: {document.get('asyncapi')!r})")
    return document


# -- comparing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between two documents; ``breaking`` when it can fail existing callers."""

    breaking: bool
    where: str
    what: str

    def __str__(self) -> str:
        return f"{'incompatible' if self.breaking else 'compatible'}: {self.where}: {self.what}"


_ACCEPT = "accept"  # the service reads it: the new schema must accept all the old one did
_PRODUCE = "produce"  # the service writes it: what the new schema allows must fit the old one


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """The changes from ``old`` (saved, relied on) to ``new`` (what the service now serves)."""
    changes: list[Change] = []
    old_channels, new_channels = _by_pattern(old), _by_pattern(new)
    for pattern, (kind, old_channel) in old_channels.items():
        where = f"{kind} {pattern}"
        if pattern not in new_channels:
            changes.append(Change(True, where, "pattern removed"))
            continue
        new_kind, new_channel = new_channels[pattern]
        if new_kind != kind:
            changes.append(Change(True, where, f"is now a {new_kind} pattern"))
            continue
        parts = (("request", _ACCEPT), ("reply", _PRODUCE)) if kind == "message" else (("event", _ACCEPT),)
        for part, mode in parts:
            old_schema = _payload(old, old_channel, part)
            new_schema = _payload(new, new_channel, part)
            _Comparer(old, new, mode, changes).schema(old_schema, new_schema, f"{where} {part}")
    for pattern, (kind, _channel) in new_channels.items():
        if pattern not in old_channels:
            changes.append(Change(False, f"{kind} {pattern}", "pattern added"))
    return changes


def _by_pattern(document: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for cid, channel in (document.get("channels") or {}).items():
        if not isinstance(channel, Mapping):
            continue
        pattern = channel.get("x-zmsg-pattern") or channel.get("address") or cid
        kind = channel.get("x-zmsg-kind") or ("message" if "request" in (channel.get("messages") or {}) else "event")
        found[str(pattern)] = (str(kind), channel)
    return found


def _payload(document: Mapping[str, Any], channel: Mapping[str, Any], part: str) -> Any:
    message = _resolve(document, (channel.get("messages") or {}).get(part, {}))
    return message.get("payload", {}) if isinstance(message, Mapping) else {}


def _resolve(document: Mapping[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 64:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = document
        for key in ref[2:].split("/"):
            key = key.replace("~1", "/").replace("~0", "~")
            target = target.get(key, {}) if isinstance(target, Mapping) else {}
        node, seen = target, seen + 1
    return node


_JSON_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


class _Comparer:
    """Walks two JSON Schemas side by side; what it cannot reason about, it reports if different."""

    def __init__(self, old_doc: Mapping[str, Any], new_doc: Mapping[str, Any], mode: str,
                 changes: list[Change]) -> None:
        self.old_doc, self.new_doc, self.mode, self.changes = old_doc, new_doc, mode, changes
        self.seen: set[tuple[str | None, str | None]] = set()

    def schema(self, old: Any, new: Any, where: str) -> None:
        refs = (_ref(old), _ref(new))
        if refs != (None, None):
            if refs in self.seen:
                return  # already compared (or being compared: a recursive type)
            self.seen.add(refs)
        old, new = _resolve(self.old_doc, old), _resolve(self.new_doc, new)
        if old == new and "$ref" not in json.dumps(old):
            return
        for combinator in ("anyOf", "oneOf", "allOf"):
            old_list, new_list = (old.get(combinator) if isinstance(old, Mapping) else None,
                                  new.get(combinator) if isinstance(new, Mapping) else None)
            if isinstance(old_list, list) and isinstance(new_list, list) and len(old_list) == len(new_list) \
                    and _types(old) is None and set(old) == set(new):
                for index, (o, n) in enumerate(zip(old_list, new_list, strict=True)):
                    self.schema(o, n, f"{where} ({combinator}[{index}])")
                return
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            self.changes.append(Change(True, where, "schema changed"))
            return
        if new == {} or old == {}:
            # {} is any value: accepting anything is compatible; a reply that may now be anything is not.
            widened = new == {}
            breaking = widened if self.mode == _PRODUCE else not widened
            self.changes.append(Change(breaking, where, f"type changed from {_describe(old)} to {_describe(new)}"))
            return
        old_types, new_types = _types(old), _types(new)
        if old_types is None or new_types is None:
            self.changes.append(Change(True, where, f"schema changed from {_describe(old)} to {_describe(new)}"))
            return
        if old_types != new_types:
            wider = _covers(new_types, old_types)
            narrower = _covers(old_types, new_types)
            ok = wider if self.mode == _ACCEPT else narrower
            self.changes.append(Change(not ok, where, f"type changed from {_describe(old)} to {_describe(new)}"))
            if not ok:
                return
        self._enum(old, new, where)
        if "object" in old_types and "object" in new_types:
            self._object(old, new, where)
        if "array" in old_types and "array" in new_types:
            self._array(old, new, where)

    def _enum(self, old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
        old_values = old.get("enum", [old["const"]] if "const" in old else None)
        new_values = new.get("enum", [new["const"]] if "const" in new else None)
        if old_values == new_values:
            return
        if old_values is None or new_values is None:
            breaking = (new_values is not None) if self.mode == _ACCEPT else (old_values is not None)
            self.changes.append(Change(breaking, where, "allowed values changed"))
            return
        removed = [v for v in old_values if v not in new_values]
        added = [v for v in new_values if v not in old_values]
        if removed:
            self.changes.append(Change(self.mode == _ACCEPT, where, f"values no longer allowed: {removed}"))
        if added:
            self.changes.append(Change(self.mode == _PRODUCE, where, f"new values: {added}"))

    def _object(self, old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
        old_props: Mapping[str, Any] = old.get("properties") or {}
        new_props: Mapping[str, Any] = new.get("properties") or {}
        old_req, new_req = set(old.get("required") or ()), set(new.get("required") or ())
        closed = new.get("additionalProperties") is False
        for name in old_props:
            field = f"{where}: field {name!r}"
            if name not in new_props:
                if self.mode == _PRODUCE:
                    self.changes.append(Change(True, field, "removed"))
                else:
                    self.changes.append(Change(closed, field, "removed" + (" and unknown fields are refused"
                                                                           if closed else " (now ignored)")))
                continue
            if self.mode == _ACCEPT and name in new_req and name not in old_req:
                self.changes.append(Change(True, field, "is now required"))
            if self.mode == _PRODUCE and name in old_req and name not in new_req:
                self.changes.append(Change(True, field, "is no longer always present"))
            self.schema(old_props[name], new_props[name], field)
        for name in new_props:
            if name in old_props:
                continue
            field = f"{where}: field {name!r}"
            if self.mode == _ACCEPT and name in new_req:
                self.changes.append(Change(True, field, "added, required"))
            else:
                self.changes.append(Change(False, field, "added" + ("" if name in new_req else ", optional")))

    def _array(self, old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
        if "items" in old or "items" in new:
            self.schema(old.get("items", {}), new.get("items", {}), f"{where}[]")
        if old.get("prefixItems") != new.get("prefixItems"):
            self.changes.append(Change(True, where, "tuple items changed"))


def _ref(node: Any) -> str | None:
    return node["$ref"] if isinstance(node, Mapping) and isinstance(node.get("$ref"), str) else None


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The JSON types a schema allows, when it says so plainly (``type``, or ``anyOf`` of such)."""
    if "type" in schema:
        declared = schema["type"]
        return frozenset([declared] if isinstance(declared, str) else declared)
    if "anyOf" in schema and all(isinstance(s, Mapping) and set(s) <= {"type"} for s in schema["anyOf"]):
        found: set[str] = set()
        for alternative in schema["anyOf"]:
            declared = alternative["type"]
            found.update([declared] if isinstance(declared, str) else declared)
        return frozenset(found)
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return frozenset(_json_type(v) for v in values)
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    """Every type in ``narrow`` is allowed by ``wide`` (a ``number`` takes integers)."""
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _describe(schema: Any) -> str:
    if not isinstance(schema, Mapping) or not schema:
        return "any"
    types = _types(schema)
    if types is not None:
        return " | ".join(t for t in _JSON_TYPES if t in types) or "nothing"
    if "title" in schema:
        return str(schema["title"])
    return json.dumps(schema, sort_keys=True)[:80]
