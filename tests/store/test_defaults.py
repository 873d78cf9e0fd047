"""An Ollama artifact's `.params` and `.system` are the model's defaults: applied where a request
says nothing, never over what it says; DMR models have none."""

from __future__ import annotations

from types import SimpleNamespace

from mr.engine import SamplingOptions
from mr.runner.source import from_local_model
from mr.store import Store, package_gguf
from mr.store.defaults import ModelDefaults
from mr.store.pull import pull
from support.ollama_push import layers_for, push

PARAMS = {"stop": ["<|im_end|>"], "temperature": 0.2, "top_k": 7, "repeat_last_n": 33,
          "num_predict": 3, "mirostat": 2}


def test_defaults_fill_only_what_the_request_left_out() -> None:
    d = ModelDefaults.of(PARAMS, "Be terse.")
    assert d is not None
    assert d.sampling == {"temperature": 0.2, "top_k": 7, "penalty_last_n": 33}
    base = SamplingOptions(temperature=0.9)
    said = d.apply_sampling(base, SimpleNamespace(temperature=0.9, top_k=None))
    assert (said.temperature, said.top_k, said.penalty_last_n) == (0.9, 7, 33)
    silent = d.apply_sampling(SamplingOptions(), None)
    assert (silent.temperature, silent.top_k) == (0.2, 7)
    assert d.apply_stop([]) == ["<|im_end|>"] and d.apply_stop(["X"]) == ["X"]
    assert d.apply_max_tokens(-1) == 3 and d.apply_max_tokens(50) == 50
    user = [{"role": "user", "content": "hi"}]
    assert d.apply_messages(user) == [{"role": "system", "content": "Be terse."}, *user]
    own = [{"role": "system", "content": "Mine."}, *user]
    assert d.apply_messages(own) == own
    assert ModelDefaults.of({}, None) is None


def test_the_runner_sees_an_ollama_models_defaults(registry, store: Store, make_gguf) -> None:
    push(registry.host, "library/d", "v1",
         layers_for(make_gguf(rows=16).read_bytes(), params=PARAMS, system="Be terse."))
    model = pull(store, f"{registry.host}/library/d:v1").model
    resolved = from_local_model(model, f"{registry.host}/library/d:v1")
    assert resolved.defaults == ModelDefaults.of(PARAMS, "Be terse.")
    dmr = package_gguf(store, make_gguf(rows=16), "test/dmr:v1")
    assert from_local_model(dmr, "test/dmr:v1").defaults is None


def test_mr_run_applies_num_predict(registry, store: Store, tiny_gguf) -> None:
    """In-process `mr run`: the model's num_predict bounds an answer the user did not bound."""
    from mr.cli.backends import LocalBackend, RunOptions

    push(registry.host, "library/tiny", "v1",
         layers_for(tiny_gguf.read_bytes(), template=None, params={"num_predict": 3}))
    ref = f"{registry.host}/library/tiny:v1"
    pull(store, ref)
    backend = LocalBackend(ref)
    try:
        reply = backend.chat([{"role": "user", "content": "hi"}],
                             RunOptions(temperature=0, ignore_eos=True, ctx_size=256))
        "".join(piece for piece, _ in reply.pieces)
        assert reply.completion_tokens == 3
    finally:
        backend.close()
