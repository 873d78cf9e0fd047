"""Every integer field of every request schema, at 2**31, 2**63 and -1, answers 200 or a 4xx, never
a 5xx, and the server stays healthy (RELIABILITY.md 21 and 33, issue 29: a 32-bit engine field
that was not bounded at validation reached C++ and answered 500).

The schemas and their integer fields are found from the running app's routes (each handler's
`data` Struct, walked through nested Structs, lists, dicts and unions), so a new field is walked
without a change here; a new schema with integer fields needs a valid seed body below, and fails
until it has one. The model thinks (a reasoning template), so the thinking budgets reach the
sampler rather than being dropped for a model that has no thinking block."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from msgspec import inspect as mi

from support.serving import make_settings, serve_client

THINK = "ai/tiny-think"
TEMPLATE = Path(__file__).parents[1] / "data" / "think.jinja"
EXTREMES = (2**31, 2**63, -1)
Path_ = tuple[str | int, ...]  # a field's place in a body: keys and list indexes

_CHAT = {"model": THINK, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
_OLLAMA = {"model": THINK, "stream": False, "options": {"num_predict": 2}}
# A valid body per schema (by class name): the walked field is set into it, so the value reaches
# the code behind validation. Nested Structs with required fields are present for the same reason.
SEEDS: dict[str, dict[str, Any]] = {
    "ChatCompletionRequest": _CHAT,
    "CompletionRequest": {"model": THINK, "prompt": "hi", "max_tokens": 2},
    "EmbeddingRequest": {"model": THINK, "input": "hi"},
    "MessagesRequest": {**_CHAT, "thinking": {"type": "enabled", "budget_tokens": 1}},
    "CountTokensRequest": {"model": THINK, "messages": _CHAT["messages"],
                           "thinking": {"type": "enabled", "budget_tokens": 1}},
    "ResponseRequest": {"model": THINK, "input": "hi", "max_output_tokens": 2, "store": False},
    "ChatRequest": {**_OLLAMA, "messages": _CHAT["messages"]},
    "GenerateRequest": {**_OLLAMA, "prompt": "hi"},
    "EmbedRequest": {"model": THINK, "input": "hi"},
    "LegacyEmbeddingsRequest": {"model": THINK, "prompt": "hi"},
    "RerankRequest": {"model": THINK, "query": "q", "documents": ["a", "b"]},
    "DetokenizeRequest": {"model": THINK, "tokens": [1]},
    "ConfigureRequest": {"model": THINK},
}


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[httpx.Client]:
    """A server of its own: the walk configures its model and sets its keep-alive. A small
    context: -1 asks some fields for no limit, and the random model then talks until it is full."""
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("int-store")
    package_gguf(Store(root), tiny_gguf, THINK, chat_template=TEMPLATE)
    with serve_client(root, tmp_path_factory.mktemp("int-home"), ctx_size=128) as client:
        yield client


def request_schemas(home: Path) -> list[tuple[type[msgspec.Struct], str, str]]:
    """(Struct, method, path) for each request Struct a route decodes, state-changing ones last."""
    from mr.server import create_app
    from mr.server.exposure import is_mutating

    app = create_app(make_settings(home, home))
    found: dict[type[msgspec.Struct], tuple[str, str]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            kind = data.annotation if data is not None else None
            if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
                found.setdefault(kind, (sorted(handler.http_methods)[0], route.path))
    return sorted(((cls, m, p) for cls, (m, p) in found.items()), key=lambda s: is_mutating(s[1], s[2]))


def int_paths(info: mi.Type, path: Path_ = (), seen: frozenset[type] = frozenset()) -> Iterator[Path_]:
    """Where an integer can go in a body of this type."""
    if isinstance(info, mi.IntType):
        yield path
    elif isinstance(info, mi.StructType) and info.cls not in seen:
        for f in info.fields:
            yield from int_paths(f.type, (*path, f.encode_name), seen | {info.cls})
    elif isinstance(info, mi.UnionType):
        for member in info.types:
            yield from int_paths(member, path, seen)
    elif isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        yield from int_paths(info.item_type, (*path, 0), seen)
    elif isinstance(info, mi.DictType):
        yield from int_paths(info.value_type, (*path, "1"), seen)


def with_value(seed: dict[str, Any], path: Path_, value: int) -> dict[str, Any]:
    """A copy of `seed` with `value` at `path` (containers made, or replaced, on the way)."""
    body = copy.deepcopy(seed)
    node: Any = body
    for step, after in itertools.pairwise(path):
        want = list if isinstance(after, int) else dict
        child = _get(node, step)
        if not isinstance(child, want):
            child = want()
            _put(node, step, child)
        node = child
    _put(node, path[-1], value)
    return body


def _get(node: Any, step: str | int) -> Any:
    if isinstance(node, list):
        return node[step] if isinstance(step, int) and step < len(node) else None
    return node.get(step)


def _put(node: Any, step: str | int, value: Any) -> None:
    if isinstance(node, list) and not node:
        node.append(value)
    else:
        node[step] = value


def _label(path: Path_) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")


def test_every_integer_field_at_its_extremes(walked: httpx.Client, tmp_path: Path) -> None:
    schemas = [(cls, m, p, sorted(set(int_paths(mi.type_info(cls)))))
               for cls, m, p in request_schemas(tmp_path)]
    schemas = [s for s in schemas if s[3]]
    assert {"ChatCompletionRequest", "MessagesRequest", "ChatRequest"} <= {s[0].__name__ for s in schemas}
    assert not (missing := [s[0].__name__ for s in schemas if s[0].__name__ not in SEEDS]), missing
    failures = []
    for cls, method, route, paths in schemas:
        for path in paths:
            for value in EXTREMES:
                body = with_value(SEEDS[cls.__name__], path, value)
                r = walked.request(method, route, json=body)
                if r.status_code >= 500:
                    failures.append(f"{route} {_label(path)}={value}: {r.status_code} {r.text[:200]}")
                assert walked.get("/health").status_code == 200, (route, path, value)
    assert not failures, "\n".join(failures)
    ok = walked.post("/v1/chat/completions", json=SEEDS["ChatCompletionRequest"])
    assert ok.status_code == 200, ok.text


def test_the_thinking_budgets_are_refused_by_name(walked: httpx.Client) -> None:
    """The fields the audit found: a 400 naming the param; -1 (no cap) still works."""
    for field in ("reasoning_budget_tokens", "thinking_budget_tokens"):
        for value in (2**31, 2**63):
            r = walked.post("/v1/chat/completions", json={**_CHAT, field: value})
            assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
        assert walked.post("/v1/chat/completions", json={**_CHAT, field: -1}).status_code == 200
    body = with_value(SEEDS["MessagesRequest"], ("thinking", "budget_tokens"), 2**31)
    r = walked.post("/v1/messages", json=body)
    assert r.status_code == 400 and "thinking.budget_tokens" in r.text, r.text
