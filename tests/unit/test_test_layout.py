"""The tests are laid out like the code: one folder per layer, helpers shared through the `support`
package (never a conftest module, never a path edit), and every layer has tests outside `slow`, so
`pytest -m "not slow"` still reaches it. Read from the source, so it runs in a blink."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
LAYERS = ["native", "engine", "runner", "store", "server", "cli", "deploy", "bench", "unit"]
# Changes in flight elsewhere that still import from conftest; they leave this list when they move.
PATH_EDIT = re.compile(r"sys\.path\.(insert|append|extend)\(|sys\.path\s*\+?=")
CONFTEST_IMPORTERS = {"server/test_soak.py", "server/test_tool_call_parity.py"}


def _sources() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_test_edits_the_import_path() -> None:
    # pyproject's pytest `pythonpath` puts the root and tests/ there, for every folder alike
    edits = [str(p.relative_to(TESTS)) for p in _sources() if PATH_EDIT.search(p.read_text())]
    assert edits == []


def test_no_test_imports_a_conftest_module() -> None:
    # which `conftest` module a name resolves to depends on the folders collected alongside
    offenders = {str(p.relative_to(TESTS)) for p in _sources() if "conftest" in _imports(p)}
    assert offenders <= CONFTEST_IMPORTERS, offenders - CONFTEST_IMPORTERS


def test_private_helpers_are_imported_only_in_their_own_folder() -> None:
    # a `_name` module is one folder's own; what two folders share lives in tests/support
    strays = [f"{p.relative_to(TESTS)}: {name}" for p in _sources() for name in _imports(p)
              if name.startswith("_") and name != "__future__" and not (p.parent / f"{name}.py").exists()]
    assert strays == []


def _marked_slow(node: ast.expr | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    marks = [node] if isinstance(node, ast.expr) else node.decorator_list
    return any("mark.slow" in ast.unparse(mark) for mark in marks)


def _tests(body: list[ast.stmt]) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    functions = [f for f in body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
    return [f for f in functions if f.name.startswith("test")]


def _fast_tests(path: Path) -> list[str]:
    """The test functions of `path` that no `slow` mark (module, class or function) covers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_marks = [n.value for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)]
    if any(_marked_slow(mark) for mark in module_marks):
        return []
    classes = [c for c in tree.body if isinstance(c, ast.ClassDef) and not _marked_slow(c)]
    tests = _tests(tree.body) + [f for c in classes for f in _tests(c.body)]
    return [f.name for f in tests if not _marked_slow(f)]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_has_fast_tests(layer: str) -> None:
    assert any(_fast_tests(p) for p in (TESTS / layer).glob("test_*.py")), f"tests/{layer}: all slow"


def test_the_fast_set_reads_slow_marks_as_pytest_does() -> None:
    # the reading above, held against pytest's own: a module marked slow as a whole has no fast test
    marked = TESTS / "bench" / "test_bench_smoke.py"
    assert "pytestmark = pytest.mark.slow" in marked.read_text() and _fast_tests(marked) == []
    assert _fast_tests(Path(__file__)) != []


@pytest.mark.slow
def test_the_folders_collect_in_one_session() -> None:
    # what a conftest import or a path edit breaks: folders that pass alone fail together (a file of
    # each layer, in a session that has them all: importing the whole suite takes long)
    files = [str(min((TESTS / layer).glob("test_*.py"), key=lambda p: p.stat().st_size)) for layer in LAYERS]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *files], capture_output=True, text=True, timeout=600, cwd=TESTS.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert {i.split("/")[1] for i in ids} == set(LAYERS)
