"""A model split over real `mr worker` processes (llama.cpp's RPC backend) on loopback ports: the
split answers as the local model does, and a worker that is down or dies is an error, never a
crash or a hang."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.engine.workers import probe
from mr.errors import EngineError, ModelLoadError
from support.models import write_tiny_llama
from support.workers import Worker, free_port

GREEDY = SamplingOptions(temperature=0)
# Longer than the engine's kFewColumns (64 tokens): with or without workers its last token then gets
# a decode step of its own (a short prompt computes it with the rest only on plain local CPU
# weights), so the split and the local model run the very same kernels.
PROMPT = " ".join(f"City {i} is a capital." for i in range(20)) + " The capital of France is"


@pytest.fixture(scope="module")
def six_layers(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model with enough layers to give every device some."""
    return write_tiny_llama(smollm2_path, tmp_path_factory.mktemp("rpc") / "six.gguf", n_layer=6)


def _options(workers: list[Worker]) -> EngineOptions:
    return EngineOptions(n_ctx=4096, n_slots=2, rpc=tuple(w.endpoint for w in workers))


def test_a_worker_down_at_load_is_a_load_error_naming_it(six_layers: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nobody listens there
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match=f"RPC worker at {endpoint}.*refused"):
        LLM(six_layers, EngineOptions(rpc=(endpoint,)))
    assert time.monotonic() - started < 10


def test_the_split_answers_as_the_local_model(six_layers: Path, workers: list[Worker]) -> None:
    with LLM(six_layers, EngineOptions(n_ctx=4096, n_slots=2)) as local:
        expected = local.generate(PROMPT, GREEDY, max_tokens=24, ignore_eos=True).text()
    with LLM(six_layers, _options(workers)) as split:
        placement = {p.host: p for p in split.placement}
        assert set(placement) == {"", workers[0].endpoint, workers[1].endpoint}
        assert all(p.layers > 0 for p in placement.values())
        assert sum(p.layers for p in placement.values()) == 6
        assert sum(p.output for p in placement.values()) == 1
        assert split.generate(PROMPT, GREEDY, max_tokens=24, ignore_eos=True).text() == expected
    # one connection per worker for the whole model: llama.cpp's queries and loads share it
    assert all(sum(line.endswith(" connected") for line in w.clients()) == 1 for w in workers)



def test_the_deterministic_mode_says_it_cannot_hold_with_workers(
        six_layers: Path, workers: list[Worker], caplog: pytest.LogCaptureFixture) -> None:
    # the workers compute their layers with their own kernels: no batch invariance to promise
    options = EngineOptions(n_ctx=1024, n_slots=2, deterministic=True, rpc=tuple(w.endpoint for w in workers))
    with caplog.at_level(logging.WARNING, logger="mr.engine"), LLM(six_layers, options) as split:
        assert not split.deterministic
        assert split.generate(PROMPT, GREEDY, max_tokens=4).text()
    assert "deterministic mode cannot hold" in caplog.text
    with LLM(six_layers, EngineOptions(n_ctx=1024, n_slots=2, deterministic=True)) as local:
        assert local.deterministic

def test_a_worker_killed_mid_generation_ends_the_request_with_an_error(
        six_layers: Path, workers: list[Worker], tmp_path: Path) -> None:
    llm = LLM(six_layers, _options(workers))
    stream = llm.generate(PROMPT, GREEDY, max_tokens=3000, ignore_eos=True)
    pieces = iter(stream)
    next(pieces)
    workers[1].kill()
    with pytest.raises(EngineError, match=f"lost the connection to the RPC worker at {workers[1].endpoint}"):
        for _ in pieces:
            pass
    assert workers[1].endpoint in llm.lost_worker
    started = time.monotonic()
    with pytest.raises(EngineError, match="lost the connection"):  # fails fast, never hangs
        llm.generate(PROMPT, GREEDY, max_tokens=4).text()
    assert time.monotonic() - started < 10
    # The worker comes back on its port: a new load uses it although the broken model still lives.
    with Worker(tmp_path, port=workers[1].port), LLM(six_layers, _options(workers)) as again:
        assert again.lost_worker == ""
        assert len(again.generate(PROMPT, GREEDY, max_tokens=4).text()) > 0
    llm.close()


CLIENT = """
import sys
from mr.engine import LLM, EngineOptions, SamplingOptions
llm = LLM(sys.argv[1], EngineOptions(n_ctx=4096, n_slots=1, rpc=(sys.argv[2],)))
for i, _ in enumerate(llm.generate("Tell me", SamplingOptions(temperature=0), max_tokens=int(sys.argv[3]),
                                   ignore_eos=True)):
    if i == 3:
        print("streaming", flush=True)
"""


def test_a_client_killed_mid_generation_leaves_the_worker_serving_the_next(
        six_layers: Path, tmp_path: Path) -> None:
    with Worker(tmp_path) as worker:
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(six_layers), worker.endpoint, "4000"],
                                  stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdout.readline().strip() == "streaming"
        client.kill()
        client.wait(timeout=30)
        again = subprocess.run([sys.executable, "-c", CLIENT, str(six_layers), worker.endpoint, "8"],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert worker.proc is not None and worker.proc.poll() is None
        assert sum(line.endswith(" connected") for line in worker.clients()) == 2


def test_a_worker_reports_the_memory_it_was_given(tmp_path: Path) -> None:
    with Worker(tmp_path, mem_mib=300) as w:
        (reported,) = probe([w.endpoint])
    assert reported.total == reported.free == 300 << 20
    assert reported.endpoint == w.endpoint and reported.device.startswith("RPC")
