"""bench.tiny_mrope: the tiny random Qwen2-VL-style pair whose text model uses M-RoPE positions.

The fast tests read what was written: the text model's architecture and rope sections (what makes
llama.cpp and libmtmd use M-RoPE), the qwen2vl_merger projector's keys and tensor shapes as
clip.cpp loads them, and its output width against the text model's. The slow one hands the pair to
llama.cpp's own llama-mtmd-cli from the vendored tree (skipped until `python bench/llama_tools.py
llama-mtmd-cli` has built it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from bench.tiny_mrope import (
    MERGE,
    PROJECTOR_TYPE,
    ROPE_SECTIONS,
    image_grid,
    write_merger,
    write_tiny_mrope_vlm,
)
from bench.tiny_vlm import TEXT_EMBD
from PIL import Image

from mr.store.gguf_meta import read_header

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "bench" / "build" / "bin"
SAMPLE = ROOT / "vendor" / "llama.cpp" / "tools" / "mtmd" / "test-1.jpeg"  # 640x488


@pytest.fixture(scope="module")
def pair(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_mrope_vlm(tmp_path_factory.mktemp("tiny-mrope"), smollm2_path)


def fields(path: Path) -> tuple[dict[str, Any], dict[str, gguf.ReaderTensor]]:
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items()}, {t.name: t for t in reader.tensors}


def ne(tensor: gguf.ReaderTensor) -> list[int]:
    """GGML's shape (ne): ne[0] is a linear layer's input width, ne[1] its output."""
    return [int(d) for d in tensor.shape]


def test_text_model_is_qwen2vl_with_mrope_sections(pair: tuple[Path, Path]) -> None:
    model, mmproj = pair
    assert (model.name, mmproj.name) == ("model.gguf", "mmproj.gguf")
    kv = read_header(model).kv  # mr's reader: skips the tokenizer arrays gguf's would decode
    # llama.cpp gives "qwen2vl" rope type MROPE, and libmtmd then M-RoPE positions to images
    assert kv["general.architecture"] == "qwen2vl"
    sections = [int(s) for s in kv["qwen2vl.rope.dimension_sections"].split(",")]
    assert sections == list(ROPE_SECTIONS) and sections[1] > 0 and sections[2] > 0  # height, width
    n_embd, n_head = int(kv["qwen2vl.embedding_length"]), int(kv["qwen2vl.attention.head_count"])
    assert n_embd == TEXT_EMBD
    # the sections share out each head's rotary pairs
    assert 2 * sum(sections) == int(kv["qwen2vl.rope.dimension_count"]) == n_embd // n_head
    assert kv["tokenizer.ggml.model"] == "gpt2" and "tokenizer.chat_template" in kv


def test_projector_is_a_qwen2vl_merger_into_the_text_model(pair: tuple[Path, Path]) -> None:
    meta, tensors = fields(pair[1])
    assert meta["general.architecture"] == "clip"
    assert meta["clip.projector_type"] == PROJECTOR_TYPE == "qwen2vl_merger"
    assert meta["clip.has_vision_encoder"] and not meta["clip.has_audio_encoder"]
    # what mtmd_init checks: the merger's output width is the text model's
    assert ne(tensors["mm.2.weight"])[1] == meta["clip.vision.projection_dim"] == TEXT_EMBD
    width, patch = meta["clip.vision.embedding_length"], meta["clip.vision.patch_size"]
    # Qwen2-VL's Conv3D as two conv2d frames; clip.cpp's graph needs both and asserts no
    # patch bias or class token (positions are rotary, so no learned ones either)
    for name in ("v.patch_embd.weight", "v.patch_embd.weight.1"):
        assert ne(tensors[name]) == [patch, patch, 3, width]
    assert not {"v.patch_embd.bias", "v.class_embd", "v.position_embd.weight"} & tensors.keys()
    # 2x2 patches are merged into one token before mm.0
    assert meta["clip.vision.spatial_merge_size"] == MERGE == 2
    assert ne(tensors["mm.0.weight"]) == [width * 4, width * 4]
    assert ne(tensors["mm.2.weight"]) == [width * 4, TEXT_EMBD]
    assert "v.post_ln.weight" in tensors  # the merger's LayerNorm
    n_ff = meta["clip.vision.feed_forward_length"]
    for i in range(meta["clip.vision.block_count"]):
        for part in ("attn_q", "attn_k", "attn_v"):  # the graph adds these biases unconditionally
            assert f"v.blk.{i}.{part}.bias" in tensors
        # clip.cpp swaps up and down when ffn_down's input width equals the encoder's
        assert ne(tensors[f"v.blk.{i}.ffn_down.weight"]) == [n_ff, width] and n_ff != width
    assert len(meta["clip.vision.image_mean"]) == len(meta["clip.vision.image_std"]) == 3
    assert all(np.isfinite(np.asarray(t.data, dtype=np.float32)).all() for t in tensors.values())


def test_image_tokens_and_positions() -> None:
    """A test picture is a handful of tokens, and advances the position by fewer than that."""
    assert image_grid(640, 488) == (20, 15)  # the sample: 300 tokens, n_pos 20
    assert image_grid(96, 96) == (3, 3)  # 9 tokens, n_pos 3
    assert image_grid(128, 64) == (4, 2)
    assert image_grid(96, 64) == (4, 3)  # 3x2 is under clip.cpp's 8, so it is scaled up
    assert image_grid(16, 16) == (3, 3)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def written(name: str, seed: int) -> bytes:
        return write_merger(tmp_path / name, TEXT_EMBD, seed=seed).read_bytes()

    assert written("a.gguf", 7) == written("b.gguf", 7) != written("c.gguf", 8)


@pytest.mark.slow
@pytest.mark.skipif(not (TOOLS / "llama-mtmd-cli").exists(),
                    reason="llama-mtmd-cli not built (python bench/llama_tools.py llama-mtmd-cli)")
def test_llama_mtmd_cli_encodes_an_image_with_mrope(smollm2_path: Path, tmp_path: Path) -> None:
    """The command line writes the pair; llama.cpp's own CLI loads the text model with M-RoPE,
    encodes the sample photo and a small picture into image_grid's tokens, and generates."""
    write = [sys.executable, "-m", "bench.tiny_mrope", str(tmp_path), "--smollm2", str(smollm2_path)]
    out = subprocess.run(write, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    small = tmp_path / "small.png"
    Image.new("RGB", (96, 64), (30, 30, 220)).save(small)
    for image, (cols, rows) in ((SAMPLE, image_grid(640, 488)), (small, image_grid(96, 64))):
        run = [str(TOOLS / "llama-mtmd-cli"), "-m", str(tmp_path / "model.gguf"), "--mmproj",
               str(tmp_path / "mmproj.gguf"), "--image", str(image), "-p", "describe", "-n", "8",
               "--temp", "0", "-t", "1", "-lv", "4"]
        cli = subprocess.run(run, capture_output=True, text=True, timeout=300)
        said = f"rc {cli.returncode}\nstdout: {cli.stdout[-500:]!r}\nstderr: {cli.stderr[-3000:]}"
        assert cli.returncode == 0, said
        assert "rope type             = 8" in cli.stderr, said  # LLAMA_ROPE_TYPE_MROPE
        assert "mrope sections        = [2, 3, 3, 0]" in cli.stderr, said
        assert "projector:          qwen2vl_merger" in cli.stderr, said
        assert f"n_tokens_batch = {cols * rows}" in cli.stderr, said
        assert cli.stdout.strip(), said  # nonsense, but generated
