"""The public API: the lazy export table, what type checkers see, and where exceptions live."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import zmsg
import zmsg.errors

INIT = Path(zmsg.__file__)


def _type_checking_imports() -> tuple[dict[str, str], list[str]]:
    tree = ast.parse(INIT.read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    names: dict[str, str] = {}
    modules: list[str] = []
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        modules.append(node.module)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} must be re-exported as itself"
            names[alias.name] = node.module
    return names, modules


def test_type_checking_block_matches_the_lazy_export_table() -> None:
    names, modules = _type_checking_imports()
    assert names == zmsg._EXPORTS
    assert len(modules) == len(set(modules)), "one import per module"
    assert sorted(zmsg.__all__) == sorted(zmsg._EXPORTS)


def test_every_export_resolves_to_what_its_module_defines() -> None:
    for name, module in zmsg._EXPORTS.items():
        value = getattr(zmsg, name)
        assert value is getattr(__import__(module, fromlist=[name]), name)


def test_every_public_exception_lives_in_zmsg_errors() -> None:
    for name in zmsg.__all__:
        value = getattr(zmsg, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert value.__module__ == "zmsg.errors", f"{name} is defined in {value.__module__}"
    for name in zmsg.errors.__all__:
        assert issubclass(getattr(zmsg.errors, name), zmsg.ZmsgError)
