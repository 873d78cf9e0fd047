"""Model loading, metadata and the vocabulary (SmolLM2 and the tiny random model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mr import _native
from mr.engine import LLM, EngineOptions
from mr.errors import ContextLengthError, InvalidArgumentError, ModelLoadError


def test_metadata(smollm2) -> None:
    m = smollm2.model
    assert m.architecture == "llama"
    assert m.n_ctx_train == 8192
    assert m.n_embd == 576
    assert 130e6 < m.n_params < 140e6
    assert 50e6 < m.size_bytes < 100e6
    assert m.metadata["general.architecture"] == "llama"
    assert "<|im_start|>" in m.chat_template
    assert m.n_vocab == 49152


TEXTS = ["Hello, world!", "Crème brûlée à la française", "东京是日本的首都", "🐆 runs 🚀💨"]


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_round_trip(smollm2, text: str) -> None:
    tokens = smollm2.tokenize(text, add_special=False)
    assert tokens.dtype == np.int32
    assert 0 < len(tokens) <= len(text.encode("utf-8"))
    assert tokens.min() >= 0 and tokens.max() < smollm2.model.n_vocab
    assert smollm2.detokenize(tokens) == text
    pieces = b"".join(smollm2.model.token_to_piece(int(t)) for t in tokens)
    assert pieces.decode("utf-8") == text


def test_special_tokens(smollm2) -> None:
    m = smollm2.model
    assert m.is_eog(m.eos)
    assert m.eos in set(m.eog_tokens.tolist())
    im_end = smollm2.tokenize("<|im_end|>", add_special=False, parse_special=True)
    assert len(im_end) == 1 and m.is_eog(int(im_end[0]))
    as_text = smollm2.tokenize("<|im_end|>", add_special=False, parse_special=False)
    assert len(as_text) > 1  # user text containing special-token syntax stays text


def test_tiny_random_model_loads_and_generates(tiny_gguf: Path) -> None:
    from mr.engine import SamplingOptions

    with LLM(tiny_gguf, EngineOptions(n_ctx=256, n_slots=2)) as llm:
        assert llm.model.n_layer == 2 and llm.model.n_embd == 64
        stream = llm.generate("Hello", SamplingOptions(temperature=0), max_tokens=8, ignore_eos=True)
        stream.text()
        assert stream.n_generated == 8 and stream.finish_reason == "length"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"not found: nope\.gguf"):
        _native.Model(str(tmp_path / "nope.gguf"))


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("just some text, not a model\n")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        _native.Model(str(path))


def test_truncated_gguf(tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    for cut in (6, 4096, len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError):
            _native.Model(str(path))


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a regular file"):
        _native.Model(str(tmp_path))


@pytest.mark.parametrize("n_ctx", [0, -5])
def test_bad_context_size(smollm2, n_ctx: int) -> None:
    with pytest.raises(InvalidArgumentError, match="n_ctx"):
        _native.Engine(smollm2.model, _native.EngineParams(n_ctx=n_ctx))
    with pytest.raises(InvalidArgumentError, match="n_ctx"):
        LLM(smollm2.model.path, EngineOptions(n_ctx=n_ctx))


def test_token_ids_out_of_range(smollm2) -> None:
    n = smollm2.model.n_vocab
    with pytest.raises(InvalidArgumentError, match="out of range"):
        smollm2.model.token_to_piece(n)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        smollm2.model.detokenize(np.array([1, -1], dtype=np.int32))
    with pytest.raises(InvalidArgumentError, match="out of range"):
        smollm2.generate([1, 2, n + 7], max_tokens=2)
    with pytest.raises(InvalidArgumentError, match="logit_bias"):
        from mr.engine import SamplingOptions

        smollm2.generate("hi", SamplingOptions(logit_bias={n: 1.0}), max_tokens=2)


def test_invalid_text(smollm2) -> None:
    with pytest.raises(InvalidArgumentError, match="not valid Unicode"):
        smollm2.tokenize("bad \ud800 surrogate")


def test_prompt_too_long(smollm2) -> None:
    prompt = list(range(100, 100 + smollm2.n_ctx))
    with pytest.raises(ContextLengthError) as info:
        smollm2.generate(prompt, max_tokens=10)
    assert info.value.n_requested == smollm2.n_ctx + 10
    assert info.value.n_ctx == smollm2.n_ctx
    assert str(smollm2.n_ctx) in str(info.value)


def test_batch_smaller_than_slots_is_refused(smollm2) -> None:
    with pytest.raises(InvalidArgumentError, match="n_batch"):
        _native.Engine(smollm2.model, _native.EngineParams(n_ctx=512, n_slots=8, n_batch=4))
    with pytest.raises(InvalidArgumentError, match="n_batch"):
        EngineOptions(n_slots=8, n_batch=4).validate()
