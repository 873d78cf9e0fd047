"""Schemathesis against a server with SmolLM2 loaded (issue 12, fuzzing suite): every operation
of the OpenAPI schema, the pulls included (their registry is a local one), with model names
steered to models that exist so that fuzzed bodies reach the engine. No 5xx, ever.

Generation lengths are capped (and set where a body has none) so a case stays short on a 2-core
CI; MR_FUZZ_EXAMPLES raises the examples per operation (scripts/fuzz.sh runs a longer pass).
Fuzzed `/engines/configure` calls stay in: they found the context sizes that made llama.cpp abort
(tests/server/test_configured_context_sizes.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from support.registry_stub import StubRegistry
from support.serving import SMOL, TINY, serve

EXAMPLES = int(os.environ.get("MR_FUZZ_EXAMPLES", "5"))
# `scripts/fuzz.sh --long`: schema-breaking inputs too (Schemathesis's negative mode: integers past
# every bound, wrong types), generation lengths of up to 256 tokens instead of 16, and lengths
# beyond 32 bits (or negative) sent as generated: they must be refused, never a 5xx.
LONG = os.environ.get("MR_FUZZ_LONG") == "1"
CAP = 256 if LONG else 16
MODELS = (SMOL, TINY)
TRIED: dict[str, int] = {"cases": 0, "engine": 0}
_LENGTHS = ("max_tokens", "max_completion_tokens", "num_predict", "max_output_tokens")


@pytest.fixture(scope="module")
def registry(store_root: Path) -> Iterator[StubRegistry]:
    from mr.store import Store

    stub = StubRegistry()
    stub.add_from_store(Store(store_root), TINY, "ai/tiny", "latest")
    try:
        yield stub
    finally:
        stub.close()


@pytest.fixture(scope="module")
def loaded_schema(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, tiny_gguf: Path,
                  registry: StubRegistry) -> Iterator[schemathesis.BaseSchema]:
    """A private store (fuzzed DELETEs must not touch the shared one) with both models, SmolLM2
    loaded before the first case."""
    import httpx

    from mr.store import Store, package_gguf

    home = tmp_path_factory.mktemp("fuzz-loaded")
    store = Store(home / "store")
    package_gguf(store, smollm2_path, SMOL)
    package_gguf(store, tiny_gguf, TINY)
    try:
        with serve(home / "store", home, ctx_size=1024, keep_alive=600.0) as server:
            body = {"model": SMOL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            assert httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).status_code == 200
            schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
            if LONG:
                schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
            yield schema
    finally:
        print(f"\nfuzz (model loaded): {TRIED['cases']} inputs tried, {TRIED['engine']} reached a model")


def _steer(case: schemathesis.Case, registry: StubRegistry) -> None:
    """Point fuzzed bodies at models that exist and keep generation short; the rest is fuzzed."""
    body = case.body
    if not isinstance(body, dict):
        return
    n = TRIED["cases"]
    if "model" in body and case.path not in ("/api/pull", "/api/delete"):
        body["model"] = MODELS[n % 2]
        TRIED["engine"] += 1
    # Pulls go to the local registry: every other one a model it has, the rest a fuzzed name
    # under its host (invalid, or missing there), never the network.
    for path, key in (("/api/pull", "model"), ("/models/create", "from")):
        if case.path == path:
            fuzzed = body.get(key) if isinstance(body.get(key), str) else ""
            body[key] = f"{registry.host}/ai/tiny" if n % 2 == 0 else f"{registry.host}/{fuzzed}"
    for key in _LENGTHS:
        if key in body:
            body[key] = _capped(body[key])
    _cap_missing_length(case.path, body)
    options = body.get("options")
    if isinstance(options, dict) and "num_predict" in options:
        options["num_predict"] = _capped(options["num_predict"])
    if isinstance(body.get("n"), int) and (not LONG or 0 < body["n"] < 2**31):
        body["n"] = min(body["n"], 4)


def _capped(value: object) -> object:
    """A generated length, at most CAP; in the long run, one beyond 32 bits or negative as it is."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= CAP:
        return value
    return value if LONG and value >= 2**31 else CAP


def _cap_missing_length(path: str, body: dict) -> None:
    """A generation without a length runs until the context is full: a minute and more for
    SmolLM2 on a busy 2-core machine, past the case's timeout. Cap it like a given length."""
    if path.endswith("/completions") and not any(isinstance(body.get(k), int) for k in _LENGTHS):
        body["max_tokens"] = CAP
    elif path.endswith("/responses") and not isinstance(body.get("max_output_tokens"), int):
        body["max_output_tokens"] = CAP
    elif path.endswith(("/api/generate", "/api/chat")):
        options = body.setdefault("options", {})
        if isinstance(options, dict) and not isinstance(options.get("num_predict"), int):
            options["num_predict"] = CAP


fuzzed = schemathesis.pytest.from_fixture("loaded_schema")


@pytest.mark.slow
@fuzzed.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error_with_a_model_loaded(case: schemathesis.Case,
                                                            registry: StubRegistry) -> None:
    _steer(case, registry)
    TRIED["cases"] += 1
    response = case.call(timeout=300 if LONG else 60)
    case.validate_response(response, checks=[not_a_server_error])

