"""The .pyi stub must describe the extension exactly: names, members and parameter names."""

from __future__ import annotations

import ast
import enum
import re
import types
from pathlib import Path

import mr
from mr import _native

STUB = Path(mr.__file__).with_name("_native.pyi")


def _params(node: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in node.args.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    return names if static else names[1:]


def _members(node: ast.ClassDef) -> dict[str, list[str]]:
    """Methods (-> params), attributes and enum values (-> []) of a stub class."""
    members: dict[str, list[str]] = {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            members[item.name] = _params(item)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members[item.target.id] = []
        elif isinstance(item, ast.Assign):
            members.update({t.id: [] for t in item.targets if isinstance(t, ast.Name)})
    return members


def _stub_tree() -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    """(functions -> params, classes -> {member -> params}) as written in the stub; a submodule
    (mr._native.testing) is written as a class of static methods."""
    tree = ast.parse(STUB.read_text())
    functions: dict[str, list[str]] = {}
    classes: dict[str, dict[str, list[str]]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = [a.arg for a in node.args.args]
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = _members(node)
    return functions, classes


def _runtime_params(func: object) -> list[str]:
    """Parameter names from pybind11's signature line, e.g. 'f(self: X, a: int = 1) -> None'."""
    first = (getattr(func, "__doc__", "") or "").splitlines()[0]
    inside = first[first.index("(") + 1 : first.rindex(")")]
    names = re.findall(r"(?:^|,\s*)(\w+):", inside)
    return [n for n in names if n != "self"]


def _public(obj: object) -> set[str]:
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        return set(obj.__members__)
    return {n for n in dir(obj) if not n.startswith("_")}


def test_stub_lists_every_function_class_and_submodule() -> None:
    functions, classes = _stub_tree()
    assert _public(_native) == set(functions) | set(classes)


def test_test_kernels_live_in_the_testing_submodule() -> None:
    assert isinstance(_native.testing, types.ModuleType)
    assert {"cpu_mul_mat", "cpu_flash_attn", "cpu_quantize", "first_argmax"} <= _public(_native.testing)
    assert not {"cpu_mul_mat", "cpu_flash_attn", "cpu_quantize", "first_argmax"} & _public(_native)


def test_stub_function_parameters_match() -> None:
    functions, _ = _stub_tree()
    for name, params in functions.items():
        assert _runtime_params(getattr(_native, name)) == params, name


def test_stub_class_members_match() -> None:
    _, classes = _stub_tree()
    for cls_name, members in classes.items():
        cls = getattr(_native, cls_name)
        assert _public(cls) == {m for m in members if not m.startswith("_")}, cls_name
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            continue  # its values' names are compared above
        for member, params in members.items():
            attr = getattr(cls, member)
            if isinstance(attr, property) or not callable(attr):
                continue
            # pybind11 lists an __init__'s overloads; the first line of the doc holds the signature
            assert _runtime_params(attr) == params, f"{cls_name}.{member}"
