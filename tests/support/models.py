"""Test models: a tiny random-weights GGUF (llama or reranker), and how an answer starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench.tiny_model import block_weights, copy_tokenizer, finish, tiny_header, write_tiny_llama

from mr.engine import LLM, SamplingOptions

__all__ = ["answer_start", "write_tiny_llama", "write_tiny_reranker"]


def answer_start(llm: LLM, prompt: list[int]) -> tuple[list[tuple[int, float]], int, int]:
    """A greedy answer's first token to `prompt`: its top-5 logprobs, the prompt tokens taken
    from the cache, and the engine steps it took."""
    steps = llm.stats()["steps"]
    stream = llm.generate(prompt, SamplingOptions(temperature=0), max_tokens=1, logprobs=5)
    stream.text()
    top = [(t.token, t.logprob) for t in stream.logprobs[0].top]
    return top, stream.n_cached, llm.stats()["steps"] - steps


def write_tiny_reranker(src: Path, dest: Path, n_layer: int = 2, n_embd: int = 64, seed: int = 1,
                        rerank_template: str | None = None) -> Path:
    """A 2-layer Qwen3 reranker with random weights: rank pooling, a yes/no classifier head
    (llama.cpp's layout for Qwen3-Reranker), SmolLM2's tokenizer. Scores mean nothing; shapes,
    order and batching are real."""
    import gguf

    reader = gguf.GGUFReader(str(src))
    writer = gguf.GGUFWriter(str(dest), arch="qwen3")
    n_head, n_ff = tiny_header(writer, n_layer, n_embd, rms_eps=1e-6)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_classifier_output_labels(["yes", "no"])
    n_vocab = copy_tokenizer(reader, writer)
    if rerank_template is not None:
        writer.add_key_value("tokenizer.chat_template.rerank", rerank_template, gguf.GGUFValueType.STRING)
    rng = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.5).astype(np.float16))

    def ones(name: str, n: int) -> None:
        writer.add_tensor(name, np.ones(n, dtype=np.float32))

    tensor("token_embd.weight", n_vocab, n_embd)
    ones("output_norm.weight", n_embd)
    tensor("cls.output.weight", 2, n_embd)
    head = n_embd // n_head
    for i in range(n_layer):
        norms = (("attn_norm", n_embd), ("ffn_norm", n_embd), ("attn_q_norm", head), ("attn_k_norm", head))
        for norm, n in norms:
            ones(f"blk.{i}.{norm}.weight", n)
        block_weights(tensor, i, n_embd, n_ff)
    return finish(writer, dest)
