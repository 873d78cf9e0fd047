"""A tiny random-weights vision model (and an audio projector) for mr's multimodal tests and bench.

    python -m bench.tiny_vlm DIR [--smollm2 PATH] [--seed N] [--audio] [--size tiny|bench]

writes DIR/model.gguf, bench.tiny_model's 2-layer llama (SmolLM2's real tokenizer, n_embd 64), and
DIR/mmproj.gguf, a LLaVA-1.5-style projector: clip.cpp's "mlp" type, the simplest one it loads. It
is a CLIP ViT (class embedding, 16x16 patches of a 64x64 image, learned positions, a pre-norm, two
blocks of width 64) and a two-layer MLP (mm.0, GELU, mm.2) into the text model's embeddings. An
image is IMAGE_TOKENS (16) tokens and encodes in about a millisecond. llama-mtmd-cli and
llama-server from the vendored tree load the pair with `--mmproj`.

With --audio, DIR/mmproj-audio.gguf too: clip.cpp's "ultravox" type, a whisper encoder (two conv1d
layers, 1500 learned positions, two blocks of width 64) whose frames are stacked by 32 before the
projector, so a clip of up to 30 s is AUDIO_TOKENS (47) tokens. `write_projector(..., vision=True,
audio=True)` puts both encoders in one file, for a server that takes images and audio at once.

The weights are random (std 0.02, layer norms 1 and biases 0), small enough that every activation
stays finite: the model cannot say what is in a picture or a sound, only that it was given one.
Everything is deterministic for a seed (same seed, same bytes). Only numpy and the gguf package are
used; the CLI imports mr only to find SmolLM2 when --smollm2 is not given.

`--size bench` (size="bench") is the vision bench's model (bench/vision.py): an image is a
realistic BENCH.tokens (256) tokens and its encoder does real work. The projector is the same
kind at BENCH's shape: a 224x224 image in 14x14 patches, seven blocks of width 512 (six run), into
SmolLM2-135M's width; DIR/model.gguf is then a link to SmolLM2 itself, whose text side is real
(the pair still cannot see: its projector is random).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.tiny_model import finish, write_tiny_llama

MODEL, MMPROJ, MMPROJ_AUDIO = "model.gguf", "mmproj.gguf", "mmproj-audio.gguf"
TEXT_EMBD = 64  # the text model's width: the projectors' output size must equal it
WEIGHT_STD = 0.02



@dataclass(frozen=True)
class VisionShape:
    """A CLIP ViT as LLaVA-1.5 has it: image and patch sizes, width, feed-forward width (never the
    width, or clip.cpp swaps ffn up/down), heads and blocks (clip.cpp runs all but the last)."""

    image_size: int
    patch_size: int
    width: int
    n_ff: int
    n_head: int
    n_block: int

    @property
    def tokens(self) -> int:
        """Image tokens: one per patch (LLaVA drops the class token after the ViT)."""
        return (self.image_size // self.patch_size) ** 2


TINY = VisionShape(image_size=64, patch_size=16, width=64, n_ff=256, n_head=4, n_block=2)
# the vision bench's: ViT-S (width 384, 6 heads) in 14-pixel patches of 224 (256 tokens), 7 of its 12 blocks
BENCH = VisionShape(image_size=224, patch_size=14, width=384, n_ff=1536, n_head=6, n_block=7)
SIZES = {"tiny": TINY, "bench": BENCH}

# the tiny shape's figures, which the tests use
IMAGE_SIZE, PATCH_SIZE = TINY.image_size, TINY.patch_size
V_WIDTH, V_FF, V_HEADS, V_BLOCKS = TINY.width, TINY.n_ff, TINY.n_head, TINY.n_block
IMAGE_TOKENS = TINY.tokens
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# audio: whisper encoder + Ultravox projector. clip.cpp feeds whisper 3000 mel frames (30 s, padded)
# per chunk; conv2 halves them to 1500 positions, stacking groups STACK of them into one token.
MEL_BINS, A_WIDTH, A_FF, A_HEADS, A_BLOCKS = 128, 64, 256, 4, 2
A_POSITIONS, STACK = 1500, 32
AUDIO_TOKENS = math.ceil(A_POSITIONS / STACK)  # per 30-second chunk
NORM_EPS = 1e-5


def write_tiny_vlm(dest: Path, smollm2: Path, seed: int = 0, audio: bool = False,
                   size: str = "tiny") -> tuple[Path, Path]:
    """Writes dest/model.gguf and dest/mmproj.gguf (and dest/mmproj-audio.gguf with `audio`);
    returns (model, mmproj). `smollm2` is the real SmolLM2 GGUF, whose tokenizer is copied; with
    size="bench", dest/model.gguf links to it and the projector has BENCH's shape."""
    shape = SIZES[size]
    dest.mkdir(parents=True, exist_ok=True)
    if shape == TINY:
        model, n_embd = write_tiny_llama(smollm2, dest / MODEL, n_embd=TEXT_EMBD, seed=seed), TEXT_EMBD
    else:
        model, n_embd = dest / MODEL, embedding_length(smollm2)
        model.unlink(missing_ok=True)
        os.symlink(smollm2.resolve(), model)
    mmproj = write_projector(dest / MMPROJ, n_embd, seed=seed, shape=shape)
    if audio:
        write_projector(dest / MMPROJ_AUDIO, n_embd, seed=seed, vision=False, audio=True)
    return model, mmproj


def embedding_length(model: Path) -> int:
    """A text model's width (its `<arch>.embedding_length`): a projector's output size."""
    import gguf

    reader = gguf.GGUFReader(str(model))
    arch = reader.fields["general.architecture"].contents()
    return int(reader.fields[f"{arch}.embedding_length"].contents())


def write_projector(path: Path, n_embd: int, seed: int = 0, vision: bool = True,
                    audio: bool = False, shape: VisionShape = TINY) -> Path:
    """An mmproj GGUF (general.architecture "clip") with a vision encoder of `shape`, an audio
    encoder or both, projecting into a text model of width `n_embd`."""
    import gguf

    if not (vision or audio):
        raise ValueError("a projector needs a vision or an audio encoder")
    writer = gguf.GGUFWriter(str(path), arch="clip")
    modalities = [m for m, on in (("vision", vision), ("audio", audio)) if on]
    writer.add_name("mr tiny random " + " and ".join(modalities))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_bool("clip.has_vision_encoder", vision)
    writer.add_bool("clip.has_audio_encoder", audio)

    def type_key(modality: str) -> str:
        # one encoder names its type in clip.projector_type; two name theirs per modality
        return f"clip.{modality}.projector_type" if len(modalities) == 2 else "clip.projector_type"

    if vision:
        _vision(writer, _Tensors(writer, seed), n_embd, type_key("vision"), shape)
    if audio:
        # another stream, so that adding audio leaves the vision weights of a seed unchanged
        _audio(writer, _Tensors(writer, seed + 1), n_embd, type_key("audio"))
    return finish(writer, path)


class _Tensors:
    """Adds tensors to a writer: matrices random (F16, as the converter writes 2-D weights), norms
    and biases F32. Shapes are numpy's, the reverse of GGML's ne (a linear layer is (out, in))."""

    def __init__(self, writer: Any, seed: int) -> None:
        self.writer = writer
        self.rng = np.random.default_rng(seed)

    def random(self, name: str, *shape: int, dtype: type = np.float16) -> None:
        self.writer.add_tensor(name, (self.rng.standard_normal(shape) * WEIGHT_STD).astype(dtype))

    def ones(self, name: str, n: int) -> None:
        self.writer.add_tensor(name, np.ones(n, dtype=np.float32))

    def zeros(self, name: str, *shape: int) -> None:
        self.writer.add_tensor(name, np.zeros(shape, dtype=np.float32))

    def norm(self, name: str, n: int, bias: bool = True) -> None:
        self.ones(f"{name}.weight", n)
        if bias:
            self.zeros(f"{name}.bias", n)

    def linear(self, name: str, n_out: int, n_in: int, bias: bool = True) -> None:
        self.random(f"{name}.weight", n_out, n_in)
        if bias:
            self.zeros(f"{name}.bias", n_out)


def _encoder_keys(writer: Any, modality: str, width: int, n_ff: int, n_head: int, n_block: int,
                  n_embd: int) -> None:
    """The clip.{vision,audio}.* shape keys clip.cpp's load_hparams requires."""
    k = f"clip.{modality}."
    writer.add_uint32(k + "embedding_length", width)
    writer.add_uint32(k + "feed_forward_length", n_ff)
    writer.add_uint32(k + "block_count", n_block)
    writer.add_uint32(k + "attention.head_count", n_head)
    writer.add_float32(k + "attention.layer_norm_epsilon", NORM_EPS)
    writer.add_uint32(k + "projection_dim", n_embd)


def _blocks(t: _Tensors, prefix: str, n_block: int, width: int, n_ff: int, k_bias: bool) -> None:
    """Pre-norm transformer blocks as clip.cpp names them (whisper has no bias on attn_k)."""
    for i in range(n_block):
        p = f"{prefix}.blk.{i}"
        t.norm(f"{p}.ln1", width)
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t.linear(f"{p}.{part}", width, width, bias=k_bias or part != "attn_k")
        t.norm(f"{p}.ln2", width)
        t.linear(f"{p}.ffn_up", n_ff, width)
        t.linear(f"{p}.ffn_down", width, n_ff)


def _vision(writer: Any, t: _Tensors, n_embd: int, type_key: str, v: VisionShape) -> None:
    """LLaVA-1.5: CLIP ViT (clip.cpp runs all but the last block, as LLaVA takes the
    second-to-last layer's features), then mm.0 -> GELU -> mm.2."""
    writer.add_string(type_key, "mlp")
    _encoder_keys(writer, "vision", v.width, v.n_ff, v.n_head, v.n_block, n_embd)
    writer.add_uint32("clip.vision.image_size", v.image_size)
    writer.add_uint32("clip.vision.patch_size", v.patch_size)
    writer.add_array("clip.vision.image_mean", list(CLIP_MEAN))
    writer.add_array("clip.vision.image_std", list(CLIP_STD))
    t.random("v.class_embd", v.width, dtype=np.float32)
    t.random("v.patch_embd.weight", v.width, 3, v.patch_size, v.patch_size)  # conv2d, no bias (CLIP)
    t.random("v.position_embd.weight", v.tokens + 1, v.width, dtype=np.float32)  # + class token
    t.norm("v.pre_ln", v.width)
    _blocks(t, "v", v.n_block, v.width, v.n_ff, k_bias=True)
    t.linear("mm.0", n_embd, v.width)
    t.linear("mm.2", n_embd, n_embd)


def _audio(writer: Any, t: _Tensors, n_embd: int, type_key: str) -> None:
    """Ultravox: whisper encoder, frames stacked by STACK, RMS-norm, mm.a.mlp.1 -> SwiGLU ->
    RMS-norm -> mm.a.mlp.2 (no biases in the projector)."""
    writer.add_string(type_key, "ultravox")
    _encoder_keys(writer, "audio", A_WIDTH, A_FF, A_HEADS, A_BLOCKS, n_embd)
    writer.add_uint32("clip.audio.num_mel_bins", MEL_BINS)
    writer.add_uint32("clip.audio.projector.stack_factor", STACK)
    # conv1d kernels (out, in, 3); their biases broadcast over time as (out, 1)
    t.random("a.conv1d.1.weight", A_WIDTH, MEL_BINS, 3)
    t.zeros("a.conv1d.1.bias", A_WIDTH, 1)
    t.random("a.conv1d.2.weight", A_WIDTH, A_WIDTH, 3)
    t.zeros("a.conv1d.2.bias", A_WIDTH, 1)
    t.random("a.position_embd.weight", A_POSITIONS, A_WIDTH, dtype=np.float32)
    _blocks(t, "a", A_BLOCKS, A_WIDTH, A_FF, k_bias=False)
    t.norm("a.post_ln", A_WIDTH)
    stacked, hidden = A_WIDTH * STACK, n_embd
    t.ones("mm.a.norm_pre.weight", stacked)
    t.linear("mm.a.mlp.1", 2 * hidden, stacked, bias=False)  # SwiGLU halves it
    t.ones("mm.a.norm_mid.weight", hidden)
    t.linear("mm.a.mlp.2", n_embd, hidden, bias=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tiny_vlm", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="where model.gguf and mmproj.gguf go")
    parser.add_argument("--smollm2", type=Path, default=None,
                        help="SmolLM2 GGUF whose tokenizer is copied (default: mr's cached default model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio", action="store_true", help="also write mmproj-audio.gguf (Ultravox)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="tiny: the tests' pair; bench: the vision bench's (SmolLM2 and a 256-token ViT)")
    args = parser.parse_args(argv)
    smollm2 = args.smollm2
    if smollm2 is None:
        from mr import default_model

        smollm2 = default_model.fetch()
    model, mmproj = write_tiny_vlm(args.dir, smollm2, seed=args.seed, audio=args.audio, size=args.size)
    for path in (model, mmproj, *([args.dir / MMPROJ_AUDIO] if args.audio else [])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
