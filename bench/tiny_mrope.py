"""A tiny random-weights Qwen2-VL-style pair whose text model uses M-RoPE positions, for mr's tests.

    python -m bench.tiny_mrope DIR [--smollm2 PATH] [--seed N]

writes DIR/model.gguf, a 2-layer "qwen2vl" text model (llama.cpp's M-RoPE architecture: its
`qwen2vl.rope.dimension_sections` split each head's rotary pairs among time, height and width;
SmolLM2's real tokenizer and chat template, n_embd 64, Q/K/V biases as Qwen2 has them), and
DIR/mmproj.gguf, clip.cpp's "qwen2vl_merger" projector (the Qwen-VL type with the fewest loader
requirements: 2.5 needs a window-attention pattern, 3 deepstack layers). That is a Qwen2-VL ViT:
two conv2d patch embeddings (Qwen2-VL's Conv3D split in its two frames), no class token or learned
positions (2D M-RoPE inside the ViT), two blocks of width 64, a LayerNorm, then each 2x2 of
patches merged into one token by mm.0 -> GELU -> mm.2 into the text model's width.

An image is resized (keeping its ratio) to whole 2x2 groups of PATCH_SIZE-pixel patches, between
8 and 4096 tokens (clip.cpp's bounds for the type, not settable in the file): a W x H picture is
round(W/32) x round(H/32) tokens, so 64x64 and 96x96 are 3x3 = 9 and 128x64 is 4x2 = 8. Under
M-RoPE the image's chunk advances the text position by max(columns, rows), not by its token count:
9 tokens but n_pos 3 for a 96x96 square (`image_grid`). llama.cpp's sample test-1.jpeg (640x488)
is 20x15 = 300 tokens, n_pos 20. PATCH_SIZE is 16, not Qwen's 14, so a test image is a handful
of tokens; a larger one would shrink big images too but grow the warmup's compute buffer, which
clip.cpp sizes for 46x46 tokens whatever the file says.

Weights are random (std 0.02, norms 1, biases 0) and deterministic for a seed, as bench.tiny_vlm's.
The pair cannot see; it only shows that an image went through M-RoPE's path. llama-mtmd-cli and
llama-server from the vendored tree load it with `--mmproj`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.tiny_model import block_weights, copy_tokenizer, finish, tiny_header
from bench.tiny_vlm import CLIP_MEAN, CLIP_STD, MMPROJ, MODEL, TEXT_EMBD, WEIGHT_STD, _Tensors

ARCH, PROJECTOR_TYPE = "qwen2vl", "qwen2vl_merger"
TEXT_LAYERS = 2
# Qwen2-VL's [16, 24, 24, 0] for 64 rotary pairs, scaled to a head of 16 (8 pairs):
# time, height, width, (unused)
ROPE_SECTIONS = (2, 3, 3, 0)
ROPE_THETA = 1_000_000.0  # Qwen2's
RMS_EPS = 1e-6
PATCH_SIZE, MERGE = 16, 2  # clip.cpp's Qwen2-VL graph merges 2x2 patches, whatever the file says
V_WIDTH, V_FF, V_HEADS, V_BLOCKS = 64, 256, 4, 2  # n_ff != width, or clip.cpp swaps ffn up/down
IMAGE_SIZE = 64  # a required key; the dynamic resize ignores it
MIN_TOKENS, MAX_TOKENS = 8, 4096  # clip.cpp's set_limit_image_tokens for qwen2vl_merger


def write_tiny_mrope_vlm(dest: Path, smollm2: Path, seed: int = 0) -> tuple[Path, Path]:
    """Writes dest/model.gguf (qwen2vl, M-RoPE) and dest/mmproj.gguf (qwen2vl_merger); returns
    (model, mmproj). `smollm2` is the real SmolLM2 GGUF, whose tokenizer is copied."""
    dest.mkdir(parents=True, exist_ok=True)
    model = write_text_model(smollm2, dest / MODEL, seed=seed)
    return model, write_merger(dest / MMPROJ, TEXT_EMBD, seed=seed)


def image_grid(width: int, height: int) -> tuple[int, int]:
    """(columns, rows) of merged tokens clip.cpp makes of a width x height picture: its
    calc_size_preserved_ratio aligned to one merged token's side, within MIN/MAX_TOKENS."""
    side = PATCH_SIZE * MERGE
    # std::round rounds halves away from zero, Python's round to even
    cols, rows = (max(1, math.floor(n / side + 0.5)) for n in (width, height))
    if cols * rows > MAX_TOKENS:
        beta = math.sqrt(width * height / (MAX_TOKENS * side * side))
        cols, rows = (max(1, math.floor(n / beta / side)) for n in (width, height))
    elif cols * rows < MIN_TOKENS:
        beta = math.sqrt(MIN_TOKENS * side * side / (width * height))
        cols, rows = (math.ceil(n * beta / side) for n in (width, height))
    return cols, rows


def write_text_model(smollm2: Path, dest: Path, seed: int = 0) -> Path:
    """bench.tiny_model's 2-layer shape as a "qwen2vl" model: llama's tensors plus Q/K/V biases,
    and the M-RoPE sections that make llama.cpp (and libmtmd) use M-RoPE positions."""
    import gguf

    reader = gguf.GGUFReader(str(smollm2))
    writer = gguf.GGUFWriter(str(dest), arch=ARCH)
    writer.add_name("mr tiny random qwen2vl")
    _n_head, n_ff = tiny_header(writer, TEXT_LAYERS, TEXT_EMBD, rms_eps=RMS_EPS)
    writer.add_rope_dimension_sections(list(ROPE_SECTIONS))
    writer.add_rope_freq_base(ROPE_THETA)
    n_vocab = copy_tokenizer(reader, writer)
    template = reader.fields.get("tokenizer.chat_template")
    if template is not None:  # ChatML, as Qwen's
        writer.add_chat_template(template.contents())
    rng = np.random.default_rng(seed)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * WEIGHT_STD).astype(np.float16))

    tensor("token_embd.weight", n_vocab, TEXT_EMBD)
    writer.add_tensor("output_norm.weight", np.ones(TEXT_EMBD, dtype=np.float32))
    tensor("output.weight", n_vocab, TEXT_EMBD)
    for i in range(TEXT_LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(TEXT_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(TEXT_EMBD, dtype=np.float32))
        block_weights(tensor, i, TEXT_EMBD, n_ff)
        for part in ("attn_q", "attn_k", "attn_v"):
            writer.add_tensor(f"blk.{i}.{part}.bias", np.zeros(TEXT_EMBD, dtype=np.float32))
    return finish(writer, dest)


def write_merger(path: Path, n_embd: int, seed: int = 0) -> Path:
    """A qwen2vl_merger mmproj (general.architecture "clip") projecting into width `n_embd`."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="clip")
    writer.add_name("mr tiny random qwen2vl vision")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_audio_encoder", False)
    writer.add_string("clip.projector_type", PROJECTOR_TYPE)
    _keys(writer, n_embd)
    _tensors(_Tensors(writer, seed), n_embd)
    return finish(writer, path)


def _keys(writer: Any, n_embd: int) -> None:
    """What clip.cpp's load_hparams requires of a vision encoder (no GELU/SiLU key: Qwen2-VL's ViT
    uses quick GELU, clip.cpp's default)."""
    k = "clip.vision."
    writer.add_uint32(k + "embedding_length", V_WIDTH)
    writer.add_uint32(k + "feed_forward_length", V_FF)
    writer.add_uint32(k + "block_count", V_BLOCKS)
    writer.add_uint32(k + "attention.head_count", V_HEADS)
    writer.add_float32(k + "attention.layer_norm_epsilon", RMS_EPS)
    writer.add_uint32(k + "projection_dim", n_embd)
    writer.add_uint32(k + "image_size", IMAGE_SIZE)
    writer.add_uint32(k + "patch_size", PATCH_SIZE)
    writer.add_uint32(k + "spatial_merge_size", MERGE)
    writer.add_array(k + "image_mean", list(CLIP_MEAN))  # Qwen2-VL's processor uses CLIP's
    writer.add_array(k + "image_std", list(CLIP_STD))


def _tensors(t: _Tensors, n_embd: int) -> None:
    """Qwen2-VL's ViT and merger as the converter names them. clip.cpp's graph asserts there is no
    patch bias or class embedding, and adds Q/K/V biases unconditionally."""
    for name in ("v.patch_embd.weight", "v.patch_embd.weight.1"):  # the Conv3D's two frames
        t.random(name, V_WIDTH, 3, PATCH_SIZE, PATCH_SIZE)
    for i in range(V_BLOCKS):
        p = f"v.blk.{i}"
        t.norm(f"{p}.ln1", V_WIDTH)
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t.linear(f"{p}.{part}", V_WIDTH, V_WIDTH)
        t.norm(f"{p}.ln2", V_WIDTH)
        t.linear(f"{p}.ffn_up", V_FF, V_WIDTH)
        t.linear(f"{p}.ffn_down", V_WIDTH, V_FF)
    t.norm("v.post_ln", V_WIDTH)  # the merger's ln_q, before the 2x2 merge
    merged = V_WIDTH * MERGE * MERGE
    t.linear("mm.0", merged, merged)
    t.linear("mm.2", n_embd, merged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tiny_mrope", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="where model.gguf and mmproj.gguf go")
    parser.add_argument("--smollm2", type=Path, default=None,
                        help="SmolLM2 GGUF whose tokenizer is copied (default: mr's cached default model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    smollm2 = args.smollm2
    if smollm2 is None:
        from mr import default_model

        smollm2 = default_model.fetch()
    for path in write_tiny_mrope_vlm(args.dir, smollm2, seed=args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
