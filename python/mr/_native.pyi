"""Typed stub of mr's native extension (kept true by tests/native/test_stub.py)."""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

def llama_commit() -> str: ...
def system_info() -> str: ...
def default_threads() -> int: ...
# x (n, k) times `rows` rows of ggml type `type` (raw blocks), through ggml's CPU mul_mat
def cpu_mul_mat(
    type: int, weights: bytes, rows: int, x: npt.ArrayLike, threads: int = 1, reference: bool = False
) -> npt.NDArray[np.float32]: ...
# x (rows, k) quantized to ggml type `type` by ggml's own quantizer (raw blocks)
def cpu_quantize(type: int, x: npt.ArrayLike) -> bytes: ...
# ggml's CPU flash attention, K and V as f16: q (heads, n_q, d), k/v (kv_heads, n_kv, d), mask (n_q, n_kv)
def cpu_flash_attn(
    q: npt.ArrayLike, k: npt.ArrayLike, v: npt.ArrayLike, mask: npt.ArrayLike, threads: int = 1,
    reference: bool = False,
) -> npt.NDArray[np.float32]: ...
# the index of the first largest value (greedy decoding's pick over the logits)
def first_argmax(values: npt.ArrayLike) -> int: ...
def set_log_handler(handler: Callable[[int, str], None], min_level: int) -> None: ...
def set_log_level(min_level: int) -> None: ...
def clear_log_handler() -> None: ...

# (endpoint, device name, free bytes, total bytes) per device of each RPC worker
WorkerDevice = tuple[str, str, int, int]

def probe_workers(endpoints: list[str]) -> list[WorkerDevice]: ...
def serve_worker(
    host: str,
    port: int,
    n_threads: int,
    mem_limit: int,
    idle_timeout_ms: int,
    on_client: Callable[[str, bool, str], None],
) -> None: ...

class Model:
    def __init__(
        self,
        path: str,
        n_gpu_layers: int = -1,
        use_mmap: bool = True,
        repack: bool = True,
        rpc_workers: list[str] = ...,
    ) -> None: ...
    @property
    def weight_buffers(self) -> dict[str, float]: ...
    # (device, worker "host:port" or "" for this machine, repeating layers, holds the output layer)
    @property
    def placement(self) -> list[tuple[str, str, int, bool]]: ...
    @property
    def workers(self) -> list[WorkerDevice]: ...
    @property
    def lost_worker(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    @property
    def description(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def chat_template(self) -> str: ...
    @property
    def n_ctx_train(self) -> int: ...
    @property
    def n_embd(self) -> int: ...
    @property
    def n_layer(self) -> int: ...
    @property
    def n_params(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def bos(self) -> int: ...
    @property
    def eos(self) -> int: ...
    @property
    def eot(self) -> int: ...
    @property
    def eog_tokens(self) -> npt.NDArray[np.int32]: ...
    def is_eog(self, token: int) -> bool: ...
    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> npt.NDArray[np.int32]: ...
    def detokenize(
        self, tokens: npt.ArrayLike, remove_special: bool = False, unparse_special: bool = False
    ) -> bytes: ...
    def token_to_piece(self, token: int, special: bool = False) -> bytes: ...

class SamplingParams:
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    seed: int
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    penalty_last_n: int
    logit_bias: list[tuple[int, float]]
    grammar: str
    grammar_lazy: bool
    trigger_patterns: list[str]
    trigger_tokens: list[int]
    grammar_prefill: str
    reasoning_budget: int
    reasoning_start: str
    reasoning_end: list[str]
    reasoning_prefill: str
    def __init__(self) -> None: ...

# (id, token, text, frame, finish, logprob, end):
# token: -1 when the event only finishes the request or only carries frames a wire gave back,
# Engine.REST_OF_FRAME (-2) when its frame is the unsent end of one the engine began writing to
# the request's wire; text: output ready to emit (whole UTF-8
# characters, stop strings cut; may be ""); frame: `text` rendered by the request's frame format
# (head + JSON string body + tail, as an HTTP chunk if asked), None without one or without text;
# finish: 0 none, 1 stop, 2 length, 3 cancelled, 4 error;
# logprob: (logprob, top, piece) when logprobs were asked for, top [(token, logprob), ...] best
# first or None, piece the token's own bytes; end: set on the finishing event, (n_prompt,
# n_generated, n_cached, error, queue_ms, prefill_ms, decode_ms, stop_index, wire), wire being
# (send times in time.perf_counter() seconds, logged payload, payload bytes) for a request that
# had a wire, else None.
Top = list[tuple[int, float]] | None
Logprob = tuple[float, Top, bytes]
WireEnd = tuple[list[float], bytes, int]
SpecEnd = tuple[int, int, int, int]  # drafted, accepted, prediction accepted, prediction rejected
End = tuple[int, int, int, str, float, float, float, int, WireEnd | None, SpecEnd]
RawEvent = tuple[int, int, str, bytes | None, int, Logprob | None, End | None]

class TextAssembler:
    """Token bytes in, text out: whole UTF-8 characters (invalid bytes as U+FFFD, as Python's
    "replace" decoding), cut before the first stop string; what may begin one is held back."""

    def __init__(self, stops: list[str] = ...) -> None: ...
    def feed(self, piece: bytes) -> str: ...
    def flush(self, cut: bool = False) -> str: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def matched(self) -> int: ...

def render_frame(head: bytes, tail: bytes, chunked: bool, text: str) -> bytes:
    """`head` + `text` as a JSON string body + `tail`; with `chunked`, as one HTTP/1.1 chunk."""

class Engine:
    def __init__(
        self,
        model: Model,
        n_ctx: int = 4096,
        n_slots: int = 4,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_threads: int = 0,
        max_queue: int = 64,
        prefill_chunk: int = 0,
        flash_attn: int = -1,
        idle_cache: float = 0.0,
        per_slot_kv: bool = False,
        deterministic: bool = False,
        spec: int = 1,  # 0 off, 1 auto, 2 ngram
        spec_max: int = 64,
        draft: Model | None = None,
    ) -> None: ...
    def submit(
        self,
        prompt: npt.ArrayLike,
        sampling: SamplingParams,
        max_tokens: int = -1,
        ignore_eos: bool = False,
        stop_tokens: list[int] = ...,
        n_logprobs: int = -1,
        stop_strings: list[str] = ...,
        frame_head: bytes = b"",
        frame_tail: bytes = b"",
        frame_chunked: bool = False,
        wire_fd: int = -1,
        wire_log: int = 0,
        prediction: npt.ArrayLike = ...,
    ) -> int: ...
    def cancel(self, id: int) -> None: ...
    def decide_wire(self, id: int, open: bool) -> None: ...
    REST_OF_FRAME: int
    def poll(self, timeout_ms: int = 0) -> list[RawEvent]: ...
    @property
    def event_fd(self) -> int: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_slots(self) -> int: ...
    @property
    def flash_attn(self) -> bool: ...
    @property
    def deterministic(self) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def slot_requests(self) -> list[int]: ...
    def shutdown(self) -> None: ...

class Embedder:
    def __init__(
        self, model: Model, n_ctx: int = 2048, n_seq_max: int = 32, n_threads: int = 0, rank: bool = False
    ) -> None: ...
    def embed(
        self, texts: list[str], normalize: bool = True, truncate: bool = False
    ) -> tuple[npt.NDArray[np.float32], int]: ...
    def rerank(
        self, query: str, documents: list[str], truncate: bool = False
    ) -> tuple[npt.NDArray[np.float32], int, int]: ...
    @property
    def rank(self) -> bool: ...
    def embed_tokens(
        self, inputs: list[list[int]], normalize: bool = True, truncate: bool = False
    ) -> tuple[npt.NDArray[np.float32], int]: ...
    def cancel(self, why: str) -> None:
        """End every call running or waiting on this embedder with CutShortError(why)."""
    @property
    def pooling_type(self) -> int: ...
    @property
    def n_ctx(self) -> int:
        """The longest input: the context asked for, rounded up to what llama.cpp allocates."""

class ChatParser:
    def parse(self, text: str, partial: bool) -> str: ...

class ChatPrompt:
    @property
    def prompt(self) -> str: ...
    @property
    def additional_stops(self) -> list[str]: ...
    @property
    def grammar(self) -> str: ...
    @property
    def grammar_lazy(self) -> bool: ...
    @property
    def trigger_patterns(self) -> list[str]: ...
    @property
    def trigger_tokens(self) -> list[int]: ...
    @property
    def generation_prompt(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def supports_thinking(self) -> bool: ...
    @property
    def thinking_start_tag(self) -> str: ...
    @property
    def thinking_end_tags(self) -> list[str]: ...
    @property
    def parser(self) -> ChatParser: ...

class ChatTemplates:
    def __init__(self, model: Model, override_template: str = "") -> None: ...
    @property
    def source(self) -> str: ...
    @property
    def caps(self) -> dict[str, bool]: ...
    def apply(
        self,
        messages_json: str,
        tools_json: str = "",
        tool_choice: str = "auto",
        parallel_tool_calls: bool = False,
        json_schema: str = "",
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template_kwargs_json: str = "",
    ) -> ChatPrompt: ...

def json_schema_to_grammar(schema_json: str) -> str: ...
