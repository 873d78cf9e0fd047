"""The settings every part shares: model, threads, slots, budgets, and where results go."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench import quiet
from bench.core import Deadline
from bench.results import Results

if TYPE_CHECKING:
    from bench.servers import ServerPool
    from mr.engine import EngineOptions


@dataclass(frozen=True)
class Budget:
    """How much each part measures. FULL is the README run; QUICK is CI's smoke run."""

    reps: int  # paired repetitions (A B A B ...)
    decode_reps: int  # single-stream decode repetitions
    tg_tokens: int  # single-stream decode length (llama-bench tg128)
    pp_tokens: int  # prefill length (llama-bench pp512)
    levels: tuple[int, ...]  # concurrent requests
    gen_tokens: int  # tokens generated per concurrent request
    prefix_tokens: int  # shared prefix length for the prefix-cache TTFT
    embed_inputs: int  # texts per embeddings call
    embed_tokens: int  # tokens per text
    memcpy_mib: int  # buffer for the host bandwidth measure
    part_seconds: float  # a part starts no new repetition after this
    quick: bool = False  # CI's smoke run: the parts with fixed shapes (ceiling, spec, vision) shrink them


FULL = Budget(reps=3, decode_reps=5, tg_tokens=128, pp_tokens=512, levels=(1, 4, 8, 16), gen_tokens=128,
              prefix_tokens=1000, embed_inputs=64, embed_tokens=32, memcpy_mib=512, part_seconds=120)
QUICK = Budget(reps=1, decode_reps=1, tg_tokens=16, pp_tokens=64, levels=(1, 2), gen_tokens=8,
               prefix_tokens=200, embed_inputs=8, embed_tokens=16, memcpy_mib=64, part_seconds=10,
               quick=True)


@dataclass
class Context:
    model: Path
    threads: int
    slots: int  # parallel sequences: mr's --parallel, llama-server's -np
    ctx_size: int  # total context shared by the slots
    n_batch: int
    budget: Budget
    results: Results
    endpoint: str = "chat"  # "chat" (/v1/chat/completions) or "completions"
    urls: list[tuple[str, str]] = field(default_factory=list)  # extra OpenAI-compatible (name, base URL)
    url_model: str = ""  # model name sent to the extra URLs
    http: bool = True  # run the HTTP comparisons (mr serve vs llama-server)
    build_tools: bool = True  # build missing llama.cpp tools (minutes); False: skip their comparisons
    quiet_wait: float = 0.0  # before each repetition, wait up to this long for the machine to go quiet
    # Flash attention on both sides of every comparison ("on", "off"; "auto": each side's own
    # default, which for mr on a CPU follows the context size and may differ from llama.cpp's).
    flash_attn: str = "on"
    spec: str = "auto"  # mr's speculative decoding (EngineOptions.spec, MR_SPEC); the spec part sets its own
    servers: ServerPool | None = None
    busy: list[float] = field(default_factory=list)  # other processes' busy cores, one per repetition

    @property
    def out(self) -> Path:
        return self.results.out

    def settle(self) -> None:
        """Before a repetition: wait (bounded by quiet_wait) for other work to stop; record the load."""
        self.busy.append(quiet.settle(self.quiet_wait))

    def deadline(self) -> Deadline:
        return Deadline(self.budget.part_seconds)

    def engine_options(self, slots: int | None = None, n_ctx: int | None = None,
                       repack: bool = True) -> EngineOptions:
        from mr.engine import EngineOptions

        return EngineOptions(n_ctx=n_ctx or self.ctx_size, n_slots=slots or self.slots, n_batch=self.n_batch,
                             n_ubatch=self.n_batch, n_threads=self.threads, repack=repack,
                             flash_attn=self.flash_attn, spec=self.spec)

    def pool(self) -> ServerPool:
        """The servers under test, started on first use and shared by the HTTP parts."""
        if self.servers is None:
            from bench.servers import ServerPool

            self.servers = ServerPool(self)
        return self.servers
