"""Embeddings throughput: inputs/s of mr's `LLM.embed` vs llama.cpp's `llama-embedding` on the
same texts (mean pooling, normalised, same context and threads), A B A B.

llama-embedding loads the model on every run, so its time is the run over all the texts minus a
run over one short text (load and start-up cancel; slightly in its favour). Run it with
`python -m bench embeddings`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.core import Measure, paired, ratio
from bench.llama_runs import available, embedding_seconds
from bench.workload import words

if TYPE_CHECKING:
    from bench.context import Context

PART = "embeddings"
N_CTX = 2048


def run(ctx: Context) -> None:
    from mr.engine import LLM

    b, res = ctx.budget, ctx.results
    exe = available("llama-embedding", ctx.build_tools)
    llm = LLM(ctx.model, ctx.engine_options(slots=1, n_ctx=N_CTX))
    try:
        texts = [words(b.embed_tokens, llm.model, seed=100 + i) for i in range(b.embed_inputs)]
        llm.embed(texts[:2])  # warm-up (creates the embedder)

        def ours() -> float:
            start = time.perf_counter()
            llm.embed(texts)
            return len(texts) / (time.perf_counter() - start)

        def theirs() -> float:
            assert exe is not None
            full = embedding_seconds(exe, ctx.model, ctx.threads, texts, N_CTX)
            base = embedding_seconds(exe, ctx.model, ctx.threads, texts[:1], N_CTX)
            return (len(texts) - 1) / max(full - base, 1e-6)

        out = paired([theirs, ours] if exe else [ours], b.reps, ctx.deadline(), ctx.settle)
    finally:
        llm.close()
    params = {"inputs": len(texts), "tokens_per_input": b.embed_tokens, "n_ctx": N_CTX,
              "threads": ctx.threads}
    mine = res.add(Measure(PART, "embed", "mr-engine", "inputs/s", out[-1], params))
    if exe is None:
        res.note(PART, "llama-embedding is not built: mr figures only")
        return
    other = res.add(Measure(PART, "embed", "llama-embedding", "inputs/s", out[0], params,
                            note="(inputs - 1) / (run over all inputs - run over one input)"))
    res.add_ratio(ratio(PART, "mr-engine / llama-embedding inputs/s", mine, other, ">= 1.00"))
