"""bench.tiny_vlm: the tiny random vision model (and audio projector) the multimodal tests share.

The fast tests read what was written with gguf's reader: the projector types, the shapes clip.cpp
loads, the projection into the text model's width. The slow ones hand the pair to llama.cpp's own
llama-mtmd-cli and llama-server from the vendored tree (skipped until `python bench/llama_tools.py
llama-mtmd-cli llama-server` has built them)."""

from __future__ import annotations

import base64
import io
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gguf
import httpx
import numpy as np
import pytest
from bench.tiny_vlm import (
    AUDIO_TOKENS,
    IMAGE_TOKENS,
    MMPROJ_AUDIO,
    STACK,
    TEXT_EMBD,
    write_projector,
    write_tiny_vlm,
)
from PIL import Image

from mr.store.gguf_meta import read_header

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "bench" / "build" / "bin"
SAMPLES = ROOT / "vendor" / "llama.cpp" / "tools" / "mtmd"


@pytest.fixture(scope="module")
def pair(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"), smollm2_path, audio=True)


def fields(path: Path) -> tuple[dict[str, Any], dict[str, gguf.ReaderTensor]]:
    """A projector's metadata and tensors, as gguf's reader sees them."""
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items()}, {t.name: t for t in reader.tensors}


def ne(tensor: gguf.ReaderTensor) -> list[int]:
    """GGML's shape (ne): ne[0] is a linear layer's input width, ne[1] its output."""
    return [int(d) for d in tensor.shape]


def test_pair_is_a_llava_projector_into_the_text_model(pair: tuple[Path, Path]) -> None:
    model, mmproj = pair
    assert (model.name, mmproj.name) == ("model.gguf", "mmproj.gguf")
    # mr's header reader skips the tokenizer arrays gguf's would decode (seconds for SmolLM2's)
    text = read_header(model).kv
    assert (text["general.architecture"], text["llama.embedding_length"]) == ("llama", str(TEXT_EMBD))
    meta, tensors = fields(mmproj)
    assert meta["general.architecture"] == "clip"
    assert meta["clip.projector_type"] == "mlp"
    assert meta["clip.has_vision_encoder"] and not meta["clip.has_audio_encoder"]
    # what clip.cpp's mtmd_init checks: the projector's output width is the text model's
    assert ne(tensors["mm.2.weight"])[1] == meta["clip.vision.projection_dim"] == TEXT_EMBD
    width, size, patch = (meta[f"clip.vision.{k}"] for k in ("embedding_length", "image_size", "patch_size"))
    assert (size // patch) ** 2 == IMAGE_TOKENS <= 64  # tens of tokens, not hundreds
    assert ne(tensors["v.patch_embd.weight"]) == [patch, patch, 3, width]
    assert ne(tensors["v.position_embd.weight"]) == [width, IMAGE_TOKENS + 1]  # + the class token
    assert ne(tensors["mm.0.weight"]) == [width, TEXT_EMBD]
    n_ff = meta["clip.vision.feed_forward_length"]
    for i in range(meta["clip.vision.block_count"]):
        for part in ("ln1", "ln2", "attn_q", "attn_k", "attn_v", "attn_out"):
            assert f"v.blk.{i}.{part}.weight" in tensors
        # clip.cpp swaps up and down when ffn_down's input width equals the encoder's
        assert ne(tensors[f"v.blk.{i}.ffn_down.weight"]) == [n_ff, width] and n_ff != width
    assert len(meta["clip.vision.image_mean"]) == len(meta["clip.vision.image_std"]) == 3
    assert all(np.isfinite(np.asarray(t.data, dtype=np.float32)).all() for t in tensors.values())


def test_audio_projector_is_ultravox_into_the_text_model(pair: tuple[Path, Path]) -> None:
    meta, tensors = fields(pair[1].parent / MMPROJ_AUDIO)
    assert meta["clip.projector_type"] == "ultravox"
    assert meta["clip.has_audio_encoder"] and not meta["clip.has_vision_encoder"]
    assert ne(tensors["mm.a.mlp.2.weight"])[1] == meta["clip.audio.projection_dim"] == TEXT_EMBD
    width = meta["clip.audio.embedding_length"]
    assert meta["clip.audio.projector.stack_factor"] == STACK
    assert ne(tensors["mm.a.mlp.1.weight"])[0] == width * STACK  # stacked frames in
    assert ne(tensors["a.conv1d.1.weight"]) == [3, meta["clip.audio.num_mel_bins"], width]
    assert ne(tensors["a.position_embd.weight"])[1] >= 1500  # whisper's positions per 30 s chunk
    assert "a.blk.0.attn_k.bias" not in tensors and "a.blk.0.attn_q.bias" in tensors  # clip.cpp asserts both
    assert AUDIO_TOKENS < 64


def test_one_projector_can_carry_both_encoders(tmp_path: Path) -> None:
    meta, tensors = fields(write_projector(tmp_path / "omni.gguf", TEXT_EMBD, vision=True, audio=True))
    assert "clip.projector_type" not in meta  # two encoders name their types per modality
    assert (meta["clip.vision.projector_type"], meta["clip.audio.projector_type"]) == ("mlp", "ultravox")
    assert {"mm.2.weight", "mm.a.mlp.2.weight"} <= tensors.keys()
    with pytest.raises(ValueError):
        write_projector(tmp_path / "none.gguf", TEXT_EMBD, vision=False)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def written(name: str, seed: int, audio: bool = False) -> Path:
        return write_projector(tmp_path / name, TEXT_EMBD, seed=seed, audio=audio)

    assert written("a.gguf", 7).read_bytes() == written("b.gguf", 7).read_bytes()
    assert written("c.gguf", 8).read_bytes() != written("a.gguf", 7).read_bytes()
    # adding the audio encoder leaves a seed's vision weights as they were
    vision_only, omni = fields(written("a.gguf", 7))[1], fields(written("d.gguf", 7, audio=True))[1]
    assert np.array_equal(vision_only["mm.0.weight"].data, omni["mm.0.weight"].data)


def needs(tool: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (TOOLS / tool).exists(),
                              reason=f"{tool} not built (python bench/llama_tools.py {tool})")


@pytest.mark.slow
@needs("llama-mtmd-cli")
def test_llama_mtmd_cli_encodes_an_image_and_audio(smollm2_path: Path, tmp_path: Path) -> None:
    """The command line writes the pair; llama.cpp's own CLI encodes the sample image into
    IMAGE_TOKENS embeddings, the sample MP3 into AUDIO_TOKENS, and generates after each."""
    write = [sys.executable, "-m", "bench.tiny_vlm", str(tmp_path), "--smollm2", str(smollm2_path), "--audio"]
    out = subprocess.run(write, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for flag, sample, projector, n in (("--image", "test-1.jpeg", "mmproj.gguf", IMAGE_TOKENS),
                                       ("--audio", "test-2.mp3", MMPROJ_AUDIO, AUDIO_TOKENS)):
        run = [str(TOOLS / "llama-mtmd-cli"), "-m", str(tmp_path / "model.gguf"), "--mmproj",
               str(tmp_path / projector), flag, str(SAMPLES / sample), "-p", "describe", "-n", "8",
               "--temp", "0", "-t", "1", "-lv", "4"]  # greedy: the same nonsense every run
        cli = subprocess.run(run, capture_output=True, text=True, timeout=300)
        said = f"rc {cli.returncode}\nstdout: {cli.stdout[-500:]!r}\nstderr: {cli.stderr[-3000:]}"
        assert cli.returncode == 0, said
        assert f"n_tokens_batch = {n}" in cli.stderr, said
        assert cli.stdout.strip(), said  # nonsense, but generated


@pytest.mark.slow
@needs("llama-server")
def test_llama_server_answers_an_image(pair: tuple[Path, Path]) -> None:
    """llama-server with --mmproj answers OpenAI chat requests carrying images as data URLs, counts
    the image's tokens, and a red and a blue square lead to different logits (the image reaches the
    model; a random model cannot say which colour it saw)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model, mmproj = pair
    proc = subprocess.Popen([str(TOOLS / "llama-server"), "-m", str(model), "--mmproj", str(mmproj), "--host",
                             "127.0.0.1", "--port", str(port), "-t", "1", "-c", "1024", "-np", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        assert httpx.get(f"{base}/props").json()["modalities"]["vision"] is True
        red, blue = (chat(base, square(colour)) for colour in ((255, 0, 0), (0, 0, 255)))
        text_only = chat(base, None)
        assert red["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"] >= IMAGE_TOKENS
        assert red["choices"][0]["message"]["content"]
        assert first_logprobs(red) != first_logprobs(blue)
    finally:
        proc.terminate()
        proc.wait(10)


def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"llama-server did not come up (exit {proc.poll()})")


def square(rgb: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), rgb).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chat(base: str, image: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What colour is this?"}]
    if image is not None:
        parts.append({"type": "image_url", "image_url": {"url": image}})
    body = {"max_tokens": 2, "temperature": 0, "logprobs": True, "top_logprobs": 5,
            "messages": [{"role": "user", "content": parts}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def first_logprobs(answer: dict[str, Any]) -> list[tuple[str, float]]:
    top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    return [(t["token"], t["logprob"]) for t in top]
