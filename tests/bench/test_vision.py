"""The bench's vision part (bench/vision.py, bench/vision_load.py): its model, its pictures, its
trials on mr's engine with the tiny random vision model (fast), and a --quick run of the part
against llama-server (slow). No timing is asserted: only that the figures exist and are sane."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import pytest
from bench.tiny_vlm import BENCH, IMAGE_TOKENS, write_projector, write_tiny_vlm
from bench.vision_load import EngineClient, picture, text_message
from PIL import Image

from bench import vision_load as load
from mr.engine import LLM, EngineOptions
from support.bench_cli import run_bench

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "bench" / "build" / "bin"


def test_the_bench_projector_is_a_256_token_vit_into_smollm2(smollm2_path: Path, tmp_path: Path) -> None:
    model, mmproj = write_tiny_vlm(tmp_path, smollm2_path, size="bench")
    assert model.resolve() == smollm2_path.resolve()  # the text side is SmolLM2 itself
    reader = gguf.GGUFReader(str(mmproj))
    meta = {k: f.contents() for k, f in reader.fields.items()}
    tensors = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    assert (meta["clip.vision.image_size"], meta["clip.vision.patch_size"]) == (224, 14)
    assert BENCH.tokens == (224 // 14) ** 2 == 256
    assert meta["clip.vision.embedding_length"] == BENCH.width
    assert meta["clip.vision.block_count"] == BENCH.n_block
    assert tensors["v.position_embd.weight"] == [BENCH.width, BENCH.tokens + 1]
    # its output is SmolLM2-135M's width
    assert meta["clip.vision.projection_dim"] == tensors["mm.2.weight"][1] == 576


def test_the_tiny_projector_is_unchanged_by_default(tmp_path: Path) -> None:
    meta = gguf.GGUFReader(str(write_projector(tmp_path / "p.gguf", 64))).fields
    assert meta["clip.vision.image_size"].contents() == 64
    assert meta["clip.vision.block_count"].contents() == 2


def test_pictures_are_photo_sized_jpegs_one_per_seed() -> None:
    first = picture(1)
    assert first == picture(1) and first != picture(2)
    with Image.open(io.BytesIO(first)) as img:
        assert (img.format, img.size) == ("JPEG", (640, 480))
    assert len(first) < 200_000  # a data URL well under any body limit


@pytest.fixture(scope="module")
def engine(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[EngineClient, asyncio.AbstractEventLoop]]:
    model, mmproj = write_tiny_vlm(tmp_path_factory.mktemp("vlm"), smollm2_path)
    llm = LLM(model, EngineOptions(n_ctx=1024, n_slots=2, mmproj=str(mmproj)))
    loop = asyncio.new_event_loop()  # the engine attaches to one loop for its life
    yield EngineClient(llm), loop
    llm.close()
    loop.close()


def test_a_picture_sent_again_comes_from_the_cache(engine: tuple[EngineClient, asyncio.AbstractEventLoop]
                                                    ) -> None:
    client, loop = engine
    jpeg = picture(7)
    cold = loop.run_until_complete(load.wave(client, [client.image_message(jpeg, "What is it? (1)")]))
    again = loop.run_until_complete(load.wave(client, [client.image_message(jpeg, "And now? (2)")]))
    text = loop.run_until_complete(load.wave(client, [text_message("What is it? (1)")]))
    (c,), (a,), (t,) = cold.traces, again.traces, text.traces
    assert c.prompt_tokens >= t.prompt_tokens + IMAGE_TOKENS  # the picture's tokens are counted
    assert c.cached_tokens < IMAGE_TOKENS <= a.cached_tokens  # and reused the second time
    assert c.tokens == a.tokens == 1 and math.isfinite(c.ttft) and math.isfinite(a.ttft)


def test_a_stall_trial_reads_the_running_stream_around_the_admission(
        engine: tuple[EngineClient, asyncio.AbstractEventLoop]) -> None:
    client, loop = engine
    stream = text_message("Write a long story about a river.")
    for intruder in (client.image_message(picture(8), "Describe it."), text_message("river " * 20)):
        out = loop.run_until_complete(load.stall(client, stream, intruder, stream_tokens=300, warm_tokens=4))
        assert out.intruder.tokens == 1
        assert math.isfinite(out.before) and out.before > 0
        assert out.gap > 0  # the stream was running while the intruder was admitted
    deadline = time.monotonic() + 10  # the engine applies a cancel at its next step
    while client.llm.stats()["busy_slots"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.llm.stats()["busy_slots"] == 0  # the cancelled streams freed their slots


def test_the_image_intruder_and_its_text_twin_are_the_same_length(
        engine: tuple[EngineClient, asyncio.AbstractEventLoop]) -> None:
    from bench.vision import ASK, _calibrate
    from bench.workload import words

    client, loop = engine
    filler = _calibrate(client.llm)
    image = loop.run_until_complete(load.wave(client, [client.image_message(picture(9), ASK.format(0))]))
    text = loop.run_until_complete(load.wave(client, [text_message(
        f"{words(filler, client.llm.model, seed=3)}\n{ASK.format(0)}")]))
    assert abs(image.traces[0].prompt_tokens - text.traces[0].prompt_tokens) <= 3


@pytest.mark.slow
@pytest.mark.skipif(not (TOOLS / "llama-mtmd-cli").exists(), reason="llama-mtmd-cli not built")
def test_llama_mtmd_cli_times_are_read_from_its_log(smollm2_path: Path, tmp_path: Path) -> None:
    from bench.vision import mtmd_cli_times

    model, mmproj = write_tiny_vlm(tmp_path, smollm2_path)
    image = tmp_path / "p.jpg"
    image.write_bytes(picture(3))
    encode, decode = mtmd_cli_times(TOOLS / "llama-mtmd-cli", model, mmproj, image, 1, "on")
    assert encode >= 0 and decode >= 0 and math.isfinite(encode + decode)


@pytest.mark.slow
def test_quick_vision_part(smollm2_path: Path, tmp_path: Path) -> None:
    """`python -m bench vision --quick`: mr's engine, mr serve and (where built) llama-server each
    give every figure, the ratios carry the issue's targets, and mr reuses a picture sent again."""
    args = ["vision", "--quick", "--no-build", "--model", str(smollm2_path), "--out", str(tmp_path)]
    proc = run_bench(args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["kind"] == "note" and "FAILED" in r["text"]]
    measures = {(r["system"], r["name"]): r for r in records if r["kind"] == "measure"}
    systems = ["mr-engine", "mr-serve"] + (["llama-server"] if (TOOLS / "llama-server").exists() else [])
    for system in systems:
        for name in ("ttft cold@1", "ttft cached@1", "ttft cold@4", "ttft cached@4", "images/s@4",
                     "media tok/s@4", "stall image", "stall text"):
            assert (system, name) in measures, (system, name)
    for key, m in measures.items():
        assert m["unit"] in {"ms", "inputs/s", "tok/s"}, key
        assert math.isfinite(m["median"]) and (m["median"] > 0 or key[1].startswith("step ")), key
    usage: dict[str, Any] = measures[("mr-serve", "ttft cached@1")]["params"]
    assert usage["cached tokens@1"][0] >= IMAGE_TOKENS  # the picture came from the cache
    ratios = {r["name"]: r for r in records if r["kind"] == "ratio"}
    assert ratios["mr-serve ttft cached / cold@1"]["target"] == "<= 0.25"
    if "llama-server" in systems:
        assert ratios["mr-serve / llama-server ttft cold@1"]["target"] == "<= 1.00"
