"""Contexts of any size and slot count never abort in llama.cpp (RELIABILITY 13).

llama.cpp pads a context to a multiple of 256 cells, caps its batch at the size asked for, and
reserves its compute graph with the micro-batch rounded up to a multiple of the sequences per
batch. Sizes that break one of those (a micro-batch that is no multiple of the sequence count:
mean pooling then multiplies mismatched matrices, GGML_ASSERT(ggml_can_mul_mat(a, b)); a batch
longer than the cap: GGML_ASSERT(n_tokens_all <= n_batch)) used to abort the process. Each case
runs in a child process, so an abort is a failure here rather than the end of the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.models import write_tiny_reranker

# (n_ctx, inputs per batch): multiples and non-multiples of 32 and 256, below and above 512.
EMBEDDERS = [(1000, 32), (300, 7), (1, 3), (777, 256), (2049, 5), (512, 32)]

CHILD = r"""
import json, sys
from mr import _native
from mr.engine import LLM, EngineOptions
from mr.errors import ContextLengthError
tiny, reranker, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = _native.Model(tiny)
out = {}
for n_ctx, n_seq in cases:
    e = _native.Embedder(model, n_ctx, n_seq, 0)
    longest = e.n_ctx
    rows, n_tokens = e.embed_tokens([[100] * longest] + [[101, 102]] * (n_seq + 1), True, False)
    try:
        e.embed_tokens([[100] * (longest + 1)], True, False)
        too_long = "accepted"
    except ContextLengthError:
        too_long = "refused"
    cut, n_cut = e.embed_tokens([[100] * (longest + 9)], True, True)
    out[f"{n_ctx}/{n_seq}"] = [longest, rows.shape[0], n_tokens, too_long, n_cut]
rank = _native.Embedder(_native.Model(reranker), 300, 32, 0, True)
out["rank"] = list(rank.rerank("q", ["a document"] * 40, False)[0].shape)
# The engine: a context below the 512-token batch, fed one long prompt and two at once.
llm = LLM(tiny, EngineOptions(n_ctx=300, n_slots=2))
long_one = llm.generate([100 + i % 500 for i in range(llm.n_ctx - 4)], max_tokens=2, ignore_eos=True)
long_one.text()
out["engine"] = [llm.n_ctx, long_one.n_generated]
pair = [llm.generate([200 + i % 500 for i in range(llm.n_ctx // 2 - 4)], max_tokens=2, ignore_eos=True)
        for _ in range(2)]
out["engine"] += [(s.text(), s.n_generated)[1] for s in pair]
print(json.dumps(out))
"""


def test_any_context_size_embeds_and_generates_without_an_abort(tiny_gguf: Path, smollm2_path: Path,
                                                                tmp_path: Path) -> None:
    reranker = write_tiny_reranker(smollm2_path, tmp_path / "rr.gguf")
    args = [str(tiny_gguf), str(reranker), json.dumps(EMBEDDERS)]
    result = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300)
    aborted = [line for line in result.stderr.splitlines() if "GGML_ASSERT" in line]
    assert result.returncode == 0, aborted or result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for n_ctx, n_seq in EMBEDDERS:
        longest, n_rows, n_tokens, too_long, n_cut = out[f"{n_ctx}/{n_seq}"]
        assert longest >= n_ctx  # never less than asked for
        assert (n_rows, n_tokens) == (n_seq + 2, longest + 2 * (n_seq + 1))
        assert too_long == "refused" and n_cut == longest  # the limit is the real one
    assert out["rank"] == [40, 2]
    n_ctx, *lengths = out["engine"]
    assert n_ctx >= 300 and lengths == [2, 2, 2]
