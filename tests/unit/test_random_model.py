"""bench/random_model.py, the GPU run's model: SmolLM2's exact shape and tokenizer, random weights.

Proven here on the CPU with a 2-layer cut of the shape (seconds); the GPU run makes all 30 layers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.random_model import TENSORS_KEY, read_source, write_header, write_random_model


@pytest.fixture(scope="module")
def header(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_header(smollm2_path, tmp_path_factory.mktemp("header") / "smollm2-header.gguf")


def test_header_is_small_and_keeps_shape_and_tokenizer(smollm2_path: Path, header: Path) -> None:
    real, copy = read_source(smollm2_path), read_source(header)
    assert header.stat().st_size < 4 << 20  # it has to travel in the 64 MiB carry
    assert copy.tensors == real.tensors  # names, GGML shapes, source types: all 272
    assert TENSORS_KEY not in copy.fields
    assert {k: v[0] for k, v in copy.fields.items()} == {k: v[0] for k, v in real.fields.items()}
    assert copy.fields["tokenizer.ggml.token_type"][1] == real.fields["tokenizer.ggml.token_type"][1]


def test_two_layer_cut_loads_and_generates_on_cpu(smollm2_path: Path, header: Path, tmp_path: Path) -> None:
    from mr.engine import LLM, EngineOptions, SamplingOptions

    model = write_random_model(header, tmp_path / "smollm2-random-2l.gguf", n_layer=2)
    with LLM(smollm2_path, EngineOptions(n_ctx=256, n_slots=1)) as real:
        real_tokens = real.tokenize("The capital of France is").tolist()
        real_prompt = real.render_chat([{"role": "user", "content": "hi"}])[0]
    with LLM(model, EngineOptions(n_ctx=256, n_slots=2)) as llm:
        m = llm.model
        assert (m.architecture, m.n_layer, m.n_embd, m.n_vocab) == ("llama", 2, 576, 49152)
        assert m.metadata["llama.attention.head_count"] == "9"
        assert m.metadata["llama.attention.head_count_kv"] == "3"
        assert m.metadata["llama.feed_forward_length"] == "1536"
        assert m.metadata["general.file_type"] == "7"  # MOSTLY_Q8_0
        assert llm.tokenize("The capital of France is").tolist() == real_tokens
        assert llm.render_chat([{"role": "user", "content": "hi"}])[0] == real_prompt
        stream = llm.generate("Hello", SamplingOptions(temperature=0), max_tokens=8, ignore_eos=True)
        stream.text()
        assert stream.n_generated == 8 and stream.finish_reason == "length"


def test_full_shape_counts_as_the_real_model(smollm2_path: Path, header: Path) -> None:
    # Header only (no weights written): the 30-layer tensor list has the real parameter count.
    real = read_source(smollm2_path)
    n_params = sum(_count(t.shape) for t in read_source(header).tensors)
    assert n_params == sum(_count(t.shape) for t in real.tensors) == 134_515_008
    assert read_source(header).n_layer == 30


def test_rejects_bad_arguments(header: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="qtype"):
        write_random_model(header, tmp_path / "x.gguf", qtype="q4_0")
    with pytest.raises(ValueError, match="n_layer"):
        write_random_model(header, tmp_path / "x.gguf", n_layer=31)


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
