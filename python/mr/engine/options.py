"""Engine and sampling options, validated in Python before anything reaches native code."""

from __future__ import annotations

import math

import msgspec

from mr.errors import InvalidArgumentError

RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: draw a random seed


class SamplingOptions(msgspec.Struct, kw_only=True, frozen=True):
    """Per-request sampling. Defaults are llama.cpp's; temperature 0 means greedy."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    seed: int | None = None
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    logit_bias: dict[int, float] = msgspec.field(default_factory=dict)
    grammar: str = ""  # GBNF
    grammar_lazy: bool = False  # the grammar applies once a trigger appears (tool calls)
    trigger_patterns: list[str] = msgspec.field(default_factory=list)
    trigger_tokens: list[int] = msgspec.field(default_factory=list)
    grammar_prefill: str = ""  # the prompt's tail a chat grammar starts with (set by chat formats)
    # A cap on thinking tokens (-1: none); the tags and the prompt's tail are set by chat formats.
    reasoning_budget: int = -1
    reasoning_start: str = ""
    reasoning_end: list[str] = msgspec.field(default_factory=list)
    reasoning_prefill: str = ""

    def validate(self, n_vocab: int) -> None:
        _check("temperature", math.isfinite(self.temperature) and 0 <= self.temperature <= 100, "in [0, 100]")
        _check("top_k", 0 <= self.top_k <= n_vocab, f"in [0, {n_vocab}]")
        _check("top_p", math.isfinite(self.top_p) and 0 <= self.top_p <= 1, "in [0, 1]")
        _check("min_p", math.isfinite(self.min_p) and 0 <= self.min_p <= 1, "in [0, 1]")
        _check("seed", self.seed is None or 0 <= self.seed < RANDOM_SEED, "in [0, 2**32 - 1)")
        _check("repeat_penalty", math.isfinite(self.repeat_penalty) and self.repeat_penalty > 0, "> 0")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            _check(name, math.isfinite(value) and -2 <= value <= 2, "in [-2, 2]")
        _check("penalty_last_n", 0 <= self.penalty_last_n <= 1 << 20, ">= 0")
        _check("grammar", len(self.grammar) <= 1 << 20, "at most 1 MiB")
        _check("reasoning_budget", self.reasoning_budget >= -1, ">= 0 (or -1 for no cap)")
        for token in self.trigger_tokens:
            _check("trigger_tokens", 0 <= token < n_vocab, f"token ids in [0, {n_vocab})")
        for token, bias in self.logit_bias.items():
            _check("logit_bias", 0 <= token < n_vocab, f"token ids in [0, {n_vocab})")
            _check("logit_bias", not math.isnan(bias), "numbers")


class EngineOptions(msgspec.Struct, kw_only=True, frozen=True):
    """How a model is run: context, parallel slots, batch sizes, threads."""

    n_ctx: int | None = None  # None: the model's training context, capped by config.DEFAULT_CTX_CAP
    n_slots: int = 4
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int = 0  # 0: llama.cpp's count of math cores
    max_queue: int = 64
    prefill_chunk: int = 0  # 0: n_batch
    n_gpu_layers: int = -1
    use_mmap: bool = True
    repack: bool = True  # let the CPU backend repack weights (AMX, AVX-512 layouts), as llama.cpp does
    flash_attn: str = "auto"  # "auto", "on" or "off" (see native_flash_attn)
    # The share of the KV cells idle slots' caches may keep once another request starts (while
    # a single one runs, the last idle cache is kept besides when it is long; the engine's
    # trim_idle_caches says why): 0 keeps no other, 1 keeps them until the cache is full.
    idle_cache: float = 0.0
    # One KV cache per slot of n_ctx / n_slots cells (llama-server's default layout) instead of
    # one shared by all: each sequence attends over its own cells only, but each request may use
    # only its slot's share of the context (EngineParams::per_slot_kv in cpp/include/mr/engine.hpp).
    per_slot_kv: bool = False
    rpc: tuple[str, ...] = ()  # llama.cpp RPC workers ("host:port") that hold a share of the layers
    # Batch invariance (EngineParams::deterministic in cpp/include/mr/engine.hpp): at temperature 0,
    # or with a seed, an answer depends only on the model, the prompt and the sampling options,
    # not on other requests, the prefix cache, n or streaming. Implies per_slot_kv, flash
    # attention and plain (not repacked) weights; holds only where the CPU computes every step.
    deterministic: bool = False
    # Speculative decoding (EngineParams::spec in cpp/include/mr/engine.hpp): "auto" drafts from
    # each request's own prompt and answer (n-gram lookup) when the measured step costs say it
    # pays, "ngram" always, "off" never (a request's `prediction` still drafts). Lossless: the
    # answer is the model's own. spec_max: the longest draft (after a match of 16 tokens or more,
    # a text being copied, or from a prediction; drafts after shorter matches stop at 8).
    spec: str = "auto"
    spec_max: int = 64
    # A smaller GGUF with the same vocabulary that drafts where n-gram lookup finds nothing
    # (greedy drafts, verified as any other: the answer stays the model's own).
    draft_model: str | None = None
    # The model's multimodal projector (an mmproj GGUF): images and audio in prompts. A store
    # model brings its own (its mmproj layer); this names one for a bare GGUF.
    mmproj: str | None = None

    def validate(self) -> None:
        _check("n_ctx", self.n_ctx is None or 0 < self.n_ctx <= 1 << 20, "in [1, 1048576]")
        _check("n_slots", 1 <= self.n_slots <= 256, "in [1, 256]")
        _check("n_batch", self.n_slots <= self.n_batch <= 1 << 16, "in [n_slots, 65536]")
        _check("n_ubatch", 1 <= self.n_ubatch <= 1 << 16, "in [1, 65536]")
        _check("n_threads", 0 <= self.n_threads <= 1024, "in [0, 1024]")
        _check("max_queue", 0 <= self.max_queue <= 1 << 16, "in [0, 65536]")
        _check("prefill_chunk", 0 <= self.prefill_chunk <= 1 << 16, "in [0, 65536]")
        _check("n_gpu_layers", self.n_gpu_layers >= -1, ">= -1")
        _check("flash_attn", self.flash_attn in FLASH_ATTN, "one of auto, on, off")
        _check("idle_cache", 0.0 <= self.idle_cache <= 1.0, "in [0, 1]")
        _check("spec", self.spec in SPEC, "one of auto, ngram, off")
        _check("spec_max", 0 <= self.spec_max <= 64, "in [0, 64]")
        _check("flash_attn", not (self.deterministic and self.flash_attn == "off"),
               "on or auto in the deterministic mode")
        from mr.rpc import parse_endpoints

        parse_endpoints(self.rpc)  # raises on a malformed or repeated endpoint

    @property
    def kv_per_slot(self) -> bool:
        """Whether each slot gets a KV stream of its own (asked for, or implied by the
        deterministic mode)."""
        return self.per_slot_kv or self.deterministic

    @property
    def repack_weights(self) -> bool:
        """Whether to let the CPU backend repack weights: never in the deterministic mode, whose
        reference kernels read ggml's plain layout."""
        return self.repack and not self.deterministic

    @property
    def native_flash_attn(self) -> int:
        """The engine's flash-attention switch: -1 auto (on wherever the backend supports it),
        0 off, 1 on.

        `auto` is decided by the engine (EngineParams::flash_attn): where CPUs compute, on for a
        request context of up to 1,024 tokens and off above (on a CPU it is faster while the
        context is short and slower as it fills); with a GPU, llama.cpp's choice (on). The
        deterministic mode always computes with it."""
        return 1 if self.deterministic else FLASH_ATTN[self.flash_attn]


FLASH_ATTN = {"off": 0, "on": 1, "auto": -1}
SPEC = ("off", "auto", "ngram")  # EngineParams::Spec


def _check(param: str, ok: bool, expected: str) -> None:
    if not ok:
        raise InvalidArgumentError(f"{param} must be {expected}")
