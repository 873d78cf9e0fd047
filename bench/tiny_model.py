"""Tiny random-weights GGUFs with a real model's tokenizer: they load and generate (nonsense) in
microseconds per token. The serving-ceiling bench (bench/ceiling.py) uses one so that the HTTP
layer, not the kernels, is what is measured; the tests use them for fast engine mechanics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_tiny_llama(src: Path, dest: Path, n_layer: int = 2, n_embd: int = 64, seed: int = 0,
                     chat_template: str | None = None, pooling: int | None = None,
                     renamed_tokens: dict[int, str] | None = None) -> Path:
    """A 2-layer llama with random F16 weights and SmolLM2's real tokenizer (about 14 MB).

    It loads and generates (nonsense), which is all the fast engine-mechanics tests need.
    `chat_template` replaces SmolLM2's template in the file's metadata; `pooling` (llama.cpp's
    pooling type: 1 mean, 2 CLS, 3 last) marks it an embedding model. `renamed_tokens` gives some
    token ids another text (a vocabulary that is not SmolLM2's).
    """
    import gguf

    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(str(dest), arch="llama")
    _n_head, n_ff = tiny_header(writer, n_layer, n_embd, rms_eps=1e-5)
    if pooling is not None:
        writer.add_pooling_type(gguf.PoolingType(pooling))
    n_vocab = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer.") or (chat_template is not None
                                                   and name == "tokenizer.chat_template"):
            continue
        value = field.contents()
        if name == "tokenizer.ggml.tokens":
            n_vocab = len(value)
            value = [(renamed_tokens or {}).get(i, text) for i, text in enumerate(value)]
        if isinstance(value, list):
            writer.add_array(name, value)
        else:
            writer.add_key_value(name, value, field.types[0])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float16))

    tensor("token_embd.weight", n_vocab, n_embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    tensor("output.weight", n_vocab, n_embd)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        block_weights(tensor, i, n_embd, n_ff)
    return finish(writer, dest)


def tiny_header(writer: Any, n_layer: int, n_embd: int, rms_eps: float) -> tuple[int, int]:
    """The shape keys both tiny models share (4 heads, n_ff = 4 n_embd, 512 positions, F16);
    returns (n_head, n_ff)."""
    import gguf

    n_head, n_ff = 4, 4 * n_embd
    writer.add_context_length(512)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(rms_eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    return n_head, n_ff


def block_weights(tensor: Any, i: int, n_embd: int, n_ff: int) -> None:
    """Attention and feed-forward matrices of layer i (llama and Qwen3 share the names)."""
    for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
        tensor(f"blk.{i}.{part}.weight", n_embd, n_embd)
    tensor(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
    tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
    tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff)


def finish(writer: Any, dest: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dest


def copy_tokenizer(reader: object, writer: object) -> int:
    """Copies the tokenizer.* keys (not the chat template); returns the vocabulary size."""
    n_vocab = 0
    for name, field in reader.fields.items():  # type: ignore[attr-defined]
        if not name.startswith("tokenizer.") or name.startswith("tokenizer.chat_template"):
            continue
        value = field.contents()
        if name == "tokenizer.ggml.tokens":
            n_vocab = len(value)
        if isinstance(value, list):
            writer.add_array(name, value)  # type: ignore[attr-defined]
        else:
            writer.add_key_value(name, value, field.types[0])  # type: ignore[attr-defined]
    return n_vocab
