"""Typed stub of mr's native extension (kept true by tests/native/test_stub.py)."""

import enum
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

def llama_commit() -> str: ...
def system_info() -> str: ...
def default_threads() -> int: ...
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
    def __init__(self, **fields: object) -> None: ...

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

class FrameFormat:
    """How a request's text is also rendered as wire bytes: `head` + the text as a JSON string
    body + `tail`; with `chunked`, as one HTTP/1.1 chunk."""

    def __init__(self, head: bytes = b"", tail: bytes = b"", chunked: bool = False) -> None: ...
    @property
    def head(self) -> bytes: ...
    @property
    def tail(self) -> bytes: ...
    @property
    def chunked(self) -> bool: ...
    def render(self, text: str) -> bytes: ...

class Spec(enum.Enum):
    """Speculative decoding (EngineParams::Spec)."""

    OFF = 0
    AUTO = 1
    NGRAM = 2

class EngineParams:
    """The engine's parameters (EngineParams in mr/engine.hpp); keyword arguments set fields."""

    n_ctx: int
    n_slots: int
    n_batch: int
    n_ubatch: int
    n_threads: int
    n_threads_batch: int
    max_queue: int
    prefill_chunk: int
    flash_attn: int  # -1 auto, 0 off, 1 on
    idle_cache: float
    per_slot_kv: bool
    deterministic: bool
    spec: Spec
    spec_max: int
    def __init__(self, **fields: object) -> None: ...

class Request:
    """One generation request (Request in mr/engine.hpp); keyword arguments set fields."""

    prompt: npt.NDArray[np.int32]
    sampling: SamplingParams
    max_tokens: int  # -1: until end-of-generation or the context is full
    ignore_eos: bool
    stop_tokens: list[int]
    stop_strings: list[str]
    n_logprobs: int  # -1 none, 0 the chosen token's, N also the N most likely
    frame: FrameFormat
    wire_fd: int  # the client's socket for the engine to write the frames to; -1: none
    wire_log: int
    prediction: npt.NDArray[np.int32]
    media: list[MediaSpan]  # set with the prompt by Projector.build
    def __init__(self, **fields: object) -> None: ...

class MediaSpan:
    """Where one media chunk sits in a request's prompt (its placeholders)."""

    @property
    def start(self) -> int: ...
    @property
    def n_tokens(self) -> int: ...
    @property
    def audio(self) -> bool: ...

class Bitmap:
    """Decoded pixels (8-bit RGB, row-major) or samples (mono float32 at the projector's rate),
    keyed by the content digest for the prefix cache."""

    @staticmethod
    def image(width: int, height: int, rgb: bytes, digest: str) -> Bitmap: ...
    @staticmethod
    def audio(samples: npt.NDArray[np.float32], digest: str) -> Bitmap: ...
    @property
    def digest(self) -> str: ...
    @property
    def is_audio(self) -> bool: ...

class Projector:
    """A model's multimodal projector (an mmproj GGUF, llama.cpp's libmtmd)."""

    def __init__(self, model: Model, path: str, n_threads: int = 0, use_gpu: bool = False) -> None: ...
    @property
    def vision(self) -> bool: ...
    @property
    def audio(self) -> bool: ...
    @property
    def audio_sample_rate(self) -> int: ...
    def build(self, request: Request, segments: list[npt.NDArray[np.int32]], media: list[Bitmap]) -> None:
        """Sets request.prompt and request.media: the text segments with each bitmap between two."""

class Finish(enum.IntEnum):
    NONE = 0
    STOP = 1
    LENGTH = 2
    CANCELLED = 3
    ERROR = 4

class SpecCounts:
    @property
    def drafted(self) -> int: ...
    @property
    def accepted(self) -> int: ...
    @property
    def prediction_accepted(self) -> int: ...
    @property
    def prediction_rejected(self) -> int: ...

class Event:
    """Something that happened to one request in an engine step.

    token: -1 when the event only finishes the request or only carries frames a wire gave back,
    Engine.REST_OF_FRAME when its frame is the unsent end of one the engine began writing; text:
    output ready to emit (whole UTF-8 characters, stop strings cut; may be ""); frame: `text`
    rendered by the request's FrameFormat, None without one or without text. The fields from
    n_prompt on are set on the finishing event; logprob, top and piece when logprobs were asked
    for; the wire fields on the finish of a request the engine wrote to itself (has_wire)."""

    @property
    def id(self) -> int: ...
    @property
    def token(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def frame(self) -> bytes | None: ...
    @property
    def finished(self) -> bool: ...
    @property
    def finish(self) -> Finish: ...
    @property
    def stop_index(self) -> int: ...
    @property
    def n_prompt(self) -> int: ...
    @property
    def n_generated(self) -> int: ...
    @property
    def n_cached(self) -> int: ...
    @property
    def error(self) -> str: ...
    @property
    def queue_ms(self) -> float: ...
    @property
    def prefill_ms(self) -> float: ...
    @property
    def decode_ms(self) -> float: ...
    @property
    def spec(self) -> SpecCounts: ...
    @property
    def logprob(self) -> float | None: ...
    @property
    def top(self) -> list[tuple[int, float]]: ...
    @property
    def piece(self) -> bytes: ...
    @property
    def has_wire(self) -> bool: ...
    @property
    def wire_times(self) -> list[float]: ...
    @property
    def wire_log(self) -> bytes: ...
    @property
    def wire_bytes(self) -> int: ...

class Engine:
    def __init__(self, model: Model, params: EngineParams = ..., draft: Model | None = None,
                 projector: Projector | None = None) -> None: ...
    def submit(self, request: Request) -> int: ...
    def cancel(self, id: int) -> None: ...
    def decide_wire(self, id: int, open: bool) -> None: ...
    REST_OF_FRAME: int
    def poll(self, timeout_ms: int = 0) -> list[Event]: ...
    @property
    def event_fd(self) -> int: ...
    @property
    def params(self) -> EngineParams: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def flash_attn(self) -> bool: ...
    @property
    def deterministic(self) -> bool: ...
    def stats(self) -> dict[str, int | float]: ...
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

class testing:
    """ggml's CPU kernels called directly, for mr's tests (not part of mr's API)."""

    # x (n, k) times `rows` rows of ggml type `type` (raw blocks), through ggml's CPU mul_mat
    @staticmethod
    def cpu_mul_mat(
        type: int, weights: bytes, rows: int, x: npt.ArrayLike, threads: int = 1, reference: bool = False
    ) -> npt.NDArray[np.float32]: ...
    # x (rows, k) quantized to ggml type `type` by ggml's own quantizer (raw blocks)
    @staticmethod
    def cpu_quantize(type: int, x: npt.ArrayLike) -> bytes: ...
    # the index of the first largest value (greedy decoding's pick over the logits)
    @staticmethod
    def first_argmax(values: npt.ArrayLike) -> int: ...
    # a slot's acceptance rate from `prior` after these drafts, (drafted, kept) each
    @staticmethod
    def acceptance_rate(prior: float, drafts: list[tuple[int, int]]) -> float: ...
    # the draft planner's estimate (us) of a step after `steps` (tokens, sequences, prompt tokens, us)
    # were recorded
    @staticmethod
    def step_cost_estimate(
        steps: list[tuple[int, int, int, float]], n_tokens: int, n_seqs: int, max_tokens: int = 512
    ) -> float: ...
    # the draft lengths the planner picks after `steps`, for slots drafting at these acceptance rates
    # (`kept`: the tokens each slot's count has seen kept)
    @staticmethod
    def draft_plan(
        steps: list[tuple[int, int, int, float]],
        rates: list[float],
        k_max: list[int],
        n_tokens: int,
        room: int,
        kept: list[int] = ...,
    ) -> list[int]: ...
    # the draft recalled for `seq` from other sequences' tokens, and how many tokens agree before it
    @staticmethod
    def recall_draft(sources: list[list[int]], seq: list[int], k: int) -> tuple[list[int], int]: ...
    # the cell of each position of each sequence after `steps` of (sequence, tokens) groups decode in one
    # shared cache, paged as the engine's or not
    @staticmethod
    def kv_cell_layout(
        model: Model, n_ctx: int, steps: list[list[tuple[int, int]]], paged: bool = True
    ) -> dict[int, list[int]]: ...
    # ggml's CPU flash attention, K and V as f16: q (heads, n_q, d), k/v (kv_heads, n_kv, d), mask (n_q, n_kv)
    @staticmethod
    def cpu_flash_attn(
        q: npt.ArrayLike, k: npt.ArrayLike, v: npt.ArrayLike, mask: npt.ArrayLike, threads: int = 1,
        reference: bool = False,
    ) -> npt.NDArray[np.float32]: ...
