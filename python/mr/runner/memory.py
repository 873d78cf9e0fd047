"""How much memory a model will take, estimated from its GGUF header before anything is loaded,
and how much the machine lets mr use.

estimate = weights (the GGUF files, mapped) + KV cache (f16 K and V for every layer over the whole
context, which all slots share) + a compute allowance (activations and logits for one batch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mr import config as mr_config
from mr.units import human_bytes

MIB = 1 << 20
KV_BYTES = 2  # f16 cache cells
BASE_OVERHEAD = 48 * MIB


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int
    n_ctx: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute

    def plus(self, other: MemoryEstimate) -> MemoryEstimate:
        """This model and another loaded with it (a draft model), at this one's context."""
        return MemoryEstimate(weights=self.weights + other.weights, kv_cache=self.kv_cache + other.kv_cache,
                              compute=self.compute + other.compute, n_ctx=self.n_ctx)

    def describe(self) -> str:
        return (f"{human_bytes(self.total)} (weights {human_bytes(self.weights)} "
                f"+ KV cache {human_bytes(self.kv_cache)} "
                f"for {self.n_ctx} tokens + compute {human_bytes(self.compute)})")


def _int(kv: dict[str, str], key: str, default: int = 0) -> int:
    """A GGUF integer, or the largest of an integer array ("4, 4, 8" per layer)."""
    raw = kv.get(key)
    if raw is None:
        return default
    try:
        return max(int(float(part)) for part in raw.split(","))
    except ValueError:
        return default


def default_context(kv: dict[str, str]) -> int:
    """The context the engine picks when none is configured (see mr.engine.llm.LLM)."""
    arch = kv.get("general.architecture", "")
    trained = _int(kv, f"{arch}.context_length")
    return min(trained or 4096, mr_config.DEFAULT_CTX_CAP)


def estimate(gguf_paths: list[Path], n_ctx: int | None, n_ubatch: int = 512,
             n_streams: int = 1) -> MemoryEstimate:
    """Estimate from the headers (milliseconds; nothing is loaded)."""
    from mr.store.gguf_meta import read_model

    info = read_model(gguf_paths)
    kv = info.kv
    arch = info.architecture
    n_ctx = mr_config.kv_cells(n_ctx or default_context(kv), n_streams)  # what the engine will allocate
    n_layer = _int(kv, f"{arch}.block_count")
    n_embd = _int(kv, f"{arch}.embedding_length")
    n_head = max(_int(kv, f"{arch}.attention.head_count", 1), 1)
    n_head_kv = _int(kv, f"{arch}.attention.head_count_kv", n_head) or n_head
    k_len = _int(kv, f"{arch}.attention.key_length", n_embd // n_head)
    v_len = _int(kv, f"{arch}.attention.value_length", n_embd // n_head)
    kv_cache = n_ctx * n_layer * n_head_kv * (k_len + v_len) * KV_BYTES
    n_vocab = _int(kv, f"{arch}.vocab_size") or 32000
    compute = BASE_OVERHEAD + n_ubatch * (n_vocab + 16 * n_embd) * 4
    return MemoryEstimate(weights=info.size, kv_cache=kv_cache, compute=compute, n_ctx=n_ctx)


def projector_estimate(path: Path) -> MemoryEstimate:
    """A multimodal projector's share: its weights, and its compute buffers for one picture (the
    activations of a block over every patch, in f32, and one head's attention matrix per head).
    An audio-only projector's keys are absent: the defaults (a 224-pixel ViT) bound it."""
    from mr.store.gguf_meta import read_model

    info = read_model([path])
    kv = info.kv
    side = _int(kv, "clip.vision.image_size", 224) // max(_int(kv, "clip.vision.patch_size", 14), 1)
    width = _int(kv, "clip.vision.embedding_length", 1024)
    heads = max(_int(kv, "clip.vision.attention.head_count", 16), 1)
    n = side * side
    compute = BASE_OVERHEAD + n * width * 4 * 16 + heads * n * n * 4
    return MemoryEstimate(weights=info.size, kv_cache=0, compute=compute, n_ctx=0)


def system_memory() -> int:
    """Physical memory, or the cgroup limit when that is lower (containers)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            total = int(raw)
    return total


def gpu_memory() -> int | None:
    """Total VRAM of the first NVIDIA GPU when the engine was built with CUDA, else None."""
    from mr import _native

    if "CUDA" not in _native.system_info() or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        return int(out.split()[0]) * MIB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def default_budget(fraction: float = 0.8) -> tuple[int, int | None]:
    """(RAM budget, VRAM budget or None): a fraction of what the machine has."""
    vram = gpu_memory()
    return int(system_memory() * fraction), (int(vram * 0.9) if vram else None)


def parse_size(text: str | int | None) -> int | None:
    """"8GiB", "512M", "2g", 1073741824 -> bytes; None or "" or "auto" -> None."""
    if text is None or isinstance(text, int):
        return text
    raw = text.strip().lower().replace(" ", "")
    if raw in ("", "auto"):
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    number = raw.rstrip("bi")
    factor = 1
    if number and number[-1] in units:
        factor = units[number[-1]]
        number = number[:-1]
    try:
        value = float(number) * factor
    except ValueError:
        raise ValueError(f"not a size: {text!r} (try 8GiB or 512MiB)") from None
    if value <= 0:
        raise ValueError(f"a memory budget must be positive, got {text!r}")
    return int(value)
