"""The .pyi stub must describe the extension exactly: names, members and parameter names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mr
from mr import _native

STUB = Path(mr.__file__).with_name("_native.pyi")


def _stub_tree() -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    """(functions -> params, classes -> {member -> params}) as written in the stub."""
    tree = ast.parse(STUB.read_text())
    functions: dict[str, list[str]] = {}
    classes: dict[str, dict[str, list[str]]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            members: dict[str, list[str]] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members[item.name] = [a.arg for a in item.args.args][1:]
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members[item.target.id] = []
            classes[node.name] = members
    return functions, classes


def _runtime_params(func: object) -> list[str]:
    """Parameter names from pybind11's signature line, e.g. 'f(self: X, a: int = 1) -> None'."""
    first = (getattr(func, "__doc__", "") or "").splitlines()[0]
    inside = first[first.index("(") + 1 : first.rindex(")")]
    names = re.findall(r"(?:^|,\s*)(\w+):", inside)
    return [n for n in names if n != "self"]


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_stub_lists_every_function_and_class() -> None:
    functions, classes = _stub_tree()
    runtime = {n for n in _public(_native) if not isinstance(getattr(_native, n), type(_native))}
    assert runtime == set(functions) | set(classes)


def test_stub_function_parameters_match() -> None:
    functions, _ = _stub_tree()
    for name, params in functions.items():
        assert _runtime_params(getattr(_native, name)) == params, name


def test_stub_class_members_match() -> None:
    _, classes = _stub_tree()
    for cls_name, members in classes.items():
        cls = getattr(_native, cls_name)
        assert _public(cls) == {m for m in members if not m.startswith("_")}, cls_name
        for member, params in members.items():
            attr = getattr(cls, member)
            if isinstance(attr, property) or not callable(attr):
                continue
            if member == "__init__":
                # pybind11 lists overloads; the first line of the doc holds the signature
                assert _runtime_params(attr) == params, f"{cls_name}.__init__"
            else:
                assert _runtime_params(attr) == params, f"{cls_name}.{member}"
