"""bench spec: its workloads are pinned, and a server that fails is recorded as failed at that
level and started again for the next one, so one failure does not end the run."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from bench.context import QUICK, Context
from bench.results import Results
from bench.servers import package_mr, start_mr

from bench import spec

# The four prompts' digest. A change to bench/spec_workloads.json makes every earlier spec table
# incomparable: change this only with a new table.
PINNED = "bc41c3546c1938a4"


def test_the_workloads_are_pinned_in_bench() -> None:
    loaded = spec.workloads()
    assert list(loaded) == ["code-edit", "rag-quote", "json-extract", "free-writing"]
    # The passages and the file are text in bench/, not read from the tree at run time.
    assert "./scripts/quickstart.sh" in loaded["rag-quote"]
    assert "MAX_SCHEMA_DEPTH = 32" in loaded["code-edit"]
    text = json.dumps(loaded, sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == PINNED


def test_llama_server_gets_a_batch_that_holds_eight_drafts(tmp_path: Path) -> None:
    ctx = _context(Path("model.gguf"), tmp_path)
    server = spec._llama_server(ctx, Path("/bin/true"), "ngram-mod")  # only its command matters
    server.stop()
    args = server.proc.args if server.proc is not None else []
    batch = int(args[args.index("-b") + 1])
    assert batch >= 8 * (1 + 64) and args[args.index("-ub") + 1] == str(ctx.n_batch)


@pytest.mark.slow
def test_a_server_that_exits_is_recorded_as_failed_and_started_again(tiny_gguf: Path, tmp_path: Path) -> None:
    ctx = _context(tiny_gguf, tmp_path)
    home = tmp_path / "home"
    package_mr(ctx, home)
    starters = [lambda: start_mr(ctx, home, spec.MR_OFF, {"MR_SPEC": "off"})]
    servers = [spec._started(starters[0])]
    try:
        assert servers[0].proc is not None
        servers[0].proc.kill()  # as llama-server aborts mid-run
        servers[0].proc.wait()
        failed = spec._wave(servers[0], "Say hello.", 1, 8)
        assert math.isnan(failed[0])
        spec._record(ctx, "free-writing", 1, servers, [[failed]])
        assert any("failed at free-writing@1" in note for note in ctx.results.notes)
        spec._revive(ctx, servers, starters, "free-writing@4")
        assert servers[0].proc is not None and servers[0].proc.poll() is None
        assert any("started again before free-writing@4" in note for note in ctx.results.notes)
        rate, _ = spec._wave(servers[0], "Say hello.", 2, 8)
        assert rate > 0
    finally:
        for server in servers:
            server.stop()


def _context(model: Path, out: Path) -> Context:
    return Context(model=model, threads=1, slots=8, ctx_size=2048, n_batch=512, budget=QUICK,
                   results=Results(out, {"device": {"runs_on": "cpu"}}, echo=False))
