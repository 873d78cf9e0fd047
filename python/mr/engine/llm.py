"""LLM: a loaded model with its generation engine, embedder and chat template."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

import msgspec
import numpy as np

from mr import _native, config
from mr.engine import limits, logbridge
from mr.engine.chat import AsyncChatStream, ChatPrompt, ChatStream
from mr.engine.chatformat import ChatFormat
from mr.engine.media import MediaTokens, bitmaps, split, take_media, text_only
from mr.engine.options import RANDOM_SEED, EngineOptions, SamplingOptions
from mr.engine.prompt import SpecialGuard, check_roles
from mr.engine.pump import EventPump
from mr.engine.render import render
from mr.engine.stream import AsyncStream, Stream
from mr.engine.thinking import check_kwargs_text
from mr.engine.types import ChatOptions
from mr.engine.workers import placement_of
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON
from mr.media.types import MediaLimits
from mr.rpc import LayerPlacement

_log = logging.getLogger("mr.engine")

TextPrompt = str | Sequence[int] | np.ndarray
Prompt = TextPrompt | MediaTokens  # MediaTokens: a chat prompt with media (LLM.prepare_chat)
Frame = tuple[bytes, bytes, bool]  # head, tail, chunked: see LLM.agenerate
Wire = tuple[int, int]  # socket fd, log bytes: see LLM.agenerate


class LLM:
    """A GGUF model loaded for generation (continuous batching) and embeddings.

    >>> llm = LLM("model.gguf")
    >>> "".join(llm.generate("The capital of France is", SamplingOptions(temperature=0), max_tokens=8))
    """

    def __init__(self, path: str | PathLike[str], options: EngineOptions | None = None,
                 chat_template: str | None = None) -> None:
        logbridge.install()
        self.options = options or EngineOptions()
        self.options.validate()
        self.model = _native.Model(str(path), self.options.n_gpu_layers, self.options.use_mmap,
                                   self.options.repack_weights, list(self.options.rpc))
        o = self.options
        self.n_ctx = config.kv_cells(o.n_ctx or min(self.model.n_ctx_train or 4096, config.DEFAULT_CTX_CAP),
                                     o.n_slots if o.kv_per_slot else 1)
        # The multimodal projector (images, audio), when the model has one: loaded with the model,
        # so its weights and compute buffers count from the start.
        self.projector = (_native.Projector(self.model, o.mmproj, o.n_threads, o.n_gpu_layers != 0)
                          if o.mmproj else None)
        self._engine = _native.Engine(self.model, _engine_params(o, self.n_ctx), self._draft_model(),
                                      self.projector)
        if o.deterministic and not self._engine.deterministic:
            _log.warning("%s: the deterministic mode cannot hold here (a GPU or RPC workers compute with "
                         "kernels of their own): answers may vary with the batch", Path(path).name)
        self._pump = EventPump(self._engine)
        # Freed when dropped: the pump thread holds the engine, not this object, so the finalizer
        # (which must not hold `self` either) stops both once the last reference goes. It also
        # runs at interpreter exit, before Python finalises: a pump thread waking up in a
        # finalising interpreter would be killed inside native code (abort).
        self._finalizer = weakref.finalize(self, _shutdown, self._engine, self._pump)
        self._chat_override = chat_template or ""
        self._templates: _native.ChatTemplates | None = None
        self._embedder: _native.Embedder | None = None
        self._ranker: _native.Embedder | None = None  # rank pooling: a context of its own
        self._init_lock = threading.Lock()
        self._guard: SpecialGuard | None = None

    # ---- vocabulary ----

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> np.ndarray:
        return self.model.tokenize(_checked_text(text), add_special, parse_special)

    def detokenize(self, tokens: Sequence[int] | np.ndarray) -> str:
        return self.model.detokenize(np.asarray(tokens, dtype=np.int32)).decode("utf-8", "replace")

    # ---- generation ----

    def generate(self, prompt: Prompt, sampling: SamplingOptions | None = None, *,
                 max_tokens: int = -1, stop: Sequence[str] = (), stop_tokens: Sequence[int] = (),
                 ignore_eos: bool = False, parse_special: bool = False,
                 logprobs: int | None = None, prediction: TextPrompt | None = None) -> Stream:
        """Queue a completion of `prompt` (text or token ids); iterate the result for text.

        logprobs: None for none, 0 for the chosen tokens' log-probabilities, N (<= 20) to add
        the N most likely tokens at each step (`Stream.logprobs`).
        prediction: the expected answer (text or token ids; OpenAI's Predicted Outputs): the
        engine drafts from it, whatever EngineOptions.spec says. The answer is the model's own;
        only its speed changes (`Stream.spec` counts what was kept)."""
        request = self._request(prompt, sampling, max_tokens, stop, stop_tokens, ignore_eos, parse_special,
                                logprobs, prediction)
        n_prompt = len(request.prompt)
        request_id, route = self._pump.submit_sync(request)
        return Stream(request_id, route, request.stop_strings, self._pump.cancel, self._piece_of(logprobs),
                      n_prompt)

    def agenerate(self, prompt: Prompt, sampling: SamplingOptions | None = None, *,
                  max_tokens: int = -1, stop: Sequence[str] = (), stop_tokens: Sequence[int] = (),
                  ignore_eos: bool = False, parse_special: bool = False,
                  logprobs: int | None = None, frame: Frame | None = None,
                  wire: Wire | None = None, prediction: TextPrompt | None = None) -> AsyncStream:
        """Like generate(), for asyncio: call it on the running loop, then `async for` the result.

        frame: (head, tail, chunked): the engine also renders each piece of text as `head` + the
        text as a JSON string body + `tail` (an HTTP chunk if `chunked`), for AsyncStream.go_direct.
        wire: (socket fd, log bytes): the engine may send those frames to the socket itself, once
        go_direct(..., engine_writes=True) says so; it keeps `log bytes` of them for a log."""
        self._attach_current()
        request = self._request(prompt, sampling, max_tokens, stop, stop_tokens, ignore_eos, parse_special,
                                logprobs, prediction)
        if frame is not None:
            request.frame = _native.FrameFormat(*frame)
        if wire is not None:
            request.wire_fd, request.wire_log = wire
        decide = self._pump.decide_wire if wire is not None else None
        stream = AsyncStream(0, request.stop_strings, self._pump.cancel, self._piece_of(logprobs),
                             len(request.prompt), decide)
        stream.id = self._pump.submit(stream.put, request)
        return stream

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain this engine's events on `loop` (call on it). agenerate() attaches by itself; a
        server that submits from a worker thread (a grammar to compile) attaches first."""
        self._pump.attach(loop)

    def _attach_current(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: the loop the pump drains on takes the events
            if self._pump.loop is None or not self._pump.loop.is_running():
                raise RuntimeError("agenerate() needs a running event loop, or LLM.attach(loop) "
                                   "first") from None
            return
        self._pump.attach(loop)

    def chat(self, messages: list[JSON] | ChatPrompt, sampling: SamplingOptions | None = None, *,
             max_tokens: int = -1, stop: Sequence[str] = (), options: ChatOptions | None = None,
             logprobs: int | None = None, ignore_eos: bool = False,
             prediction: str | None = None) -> ChatStream:
        """Answer `messages` (OpenAI shape, or prepare_chat's result); iterate for ChatDelta objects."""
        prepared = self._prepared(messages, options)
        fmt = prepared.fmt.fresh()
        stream = self.generate(prepared.prompt, fmt.sampling(sampling), max_tokens=max_tokens,
                               stop=[*stop, *prepared.stops], logprobs=logprobs, ignore_eos=ignore_eos,
                               prediction=prediction)
        return ChatStream(stream, fmt)

    def achat(self, messages: list[JSON] | ChatPrompt, sampling: SamplingOptions | None = None, *,
              max_tokens: int = -1, stop: Sequence[str] = (), options: ChatOptions | None = None,
              logprobs: int | None = None, ignore_eos: bool = False,
              frame: Frame | None = None, wire: Wire | None = None,
              prediction: str | None = None) -> AsyncChatStream:
        """Like chat(), for asyncio (see agenerate). On a server, pass prepare_chat's result
        (computed in a worker thread): rendering and tokenizing must not run on the loop."""
        prepared = self._prepared(messages, options)
        fmt = prepared.fmt.fresh()
        stream = self.agenerate(prepared.prompt, fmt.sampling(sampling), max_tokens=max_tokens,
                                stop=[*stop, *prepared.stops], logprobs=logprobs, ignore_eos=ignore_eos,
                                frame=frame, wire=wire, prediction=prediction)
        return AsyncChatStream(stream, fmt)

    def prepare_chat(self, messages: list[JSON], options: ChatOptions | None = None,
                     media: MediaLimits | None = None) -> ChatPrompt:
        """Render, build the grammar and tokenize (blocking, thread-safe, size-bounded).
        Client text stays text: see mr.engine.prompt. Media parts (mr.media.source) are decoded
        here, within `media`'s bounds (default MediaLimits()), and placed by the projector."""
        messages, sources = take_media(messages)
        if sources and self.projector is None:
            raise text_only(sources[0])
        items = bitmaps(sources, self.projector, media or MediaLimits()) if self.projector and sources else []
        guard = self._special_guard()
        prompt, extra_stops, fmt = self._render(messages, options, guard)
        # as the client wrote it: a placeholder stands for a whole control-token text
        limits.check_text(guard.reveal(prompt), "rendered prompt", "messages")
        if not items or self.projector is None:
            return ChatPrompt(guard.tokens(prompt), extra_stops, fmt)
        segments = [guard.tokens(piece, i == 0) for i, piece in enumerate(split(prompt, len(items)))]
        built = _native.Request()
        self.projector.build(built, segments, items)
        return ChatPrompt(built.prompt, extra_stops, fmt, built.media)

    @property
    def accepts(self) -> frozenset[str]:
        """The media this model takes in prompts: "image", "audio" (none without a projector)."""
        p = self.projector
        if p is None:
            return frozenset()
        return frozenset(kind for kind, on in (("image", p.vision), ("audio", p.audio)) if on)

    def _prepared(self, messages: list[JSON] | ChatPrompt,
                  options: ChatOptions | None) -> ChatPrompt:
        return messages if isinstance(messages, ChatPrompt) else self.prepare_chat(messages, options)

    def _render(self, messages: list[JSON], options: ChatOptions | None,
                guard: SpecialGuard) -> tuple[str, list[str], ChatFormat]:
        check_roles(messages)
        limits.check_messages(messages)  # before protect() copies them
        if options is not None and options.tools:
            options = msgspec.structs.replace(options, tools=guard.protect(options.tools))
        if options is not None and options.chat_template_kwargs:
            limits.check_schema(options.chat_template_kwargs, "chat_template_kwargs")  # bounds find()
            check_kwargs_text(options.chat_template_kwargs, guard)
        return render(self._chat_templates(), guard.protect(messages), options)

    def render_chat(self, messages: list[JSON],
                    options: ChatOptions | None = None) -> tuple[str, list[str]]:
        """The prompt (and extra stop strings) that chat() would send for `messages`."""
        guard = self._special_guard()
        prompt, stops, _fmt = self._render(messages, options, guard)
        return guard.reveal(prompt), stops

    def _special_guard(self) -> SpecialGuard:
        with self._init_lock:
            if self._guard is None:
                self._guard = SpecialGuard(self.model)
            return self._guard

    def _chat_templates(self) -> _native.ChatTemplates:
        with self._init_lock:  # prepare_chat runs in worker threads
            if self._templates is None:
                # A template is code from the model's author: llama.cpp's renderer refuses one
                # that nests, loops or allocates past its bounds (vendor/patches/0008).
                self._templates = _native.ChatTemplates(self.model, self._chat_override)
            return self._templates

    # ---- embeddings ----

    def embed(self, texts: Sequence[str], normalize: bool = True, truncate: bool = False) -> np.ndarray:
        """One float32 row per text, shape (len(texts), n_embd)."""
        if isinstance(texts, str):
            raise InvalidArgumentError("embed() takes a list of texts")
        if not texts:
            raise InvalidArgumentError("input must not be empty")
        limits.check_texts(texts)
        matrix, _n_tokens = self._embedder_ctx().embed([_checked_text(t) for t in texts], normalize, truncate)
        return matrix

    def rerank(self, query: str, documents: Sequence[str],
               truncate: bool = False) -> tuple[np.ndarray, int, int]:
        """(one relevance score per document, tokens processed, batches run); pairs are packed
        many per batch. Needs a reranker (rank pooling and a classifier head)."""
        if isinstance(documents, str) or not documents:
            raise InvalidArgumentError("documents must be a non-empty list of texts")
        limits.check_texts([query, *documents], "query and documents")
        matrix, n_tokens, n_batches = self._ranker_ctx().rerank(
            _checked_text(query), [_checked_text(d) for d in documents], truncate)
        return matrix[:, 0].copy(), n_tokens, n_batches

    def embed_tokens(self, inputs: Sequence[Sequence[int] | np.ndarray], normalize: bool = True,
                     truncate: bool = False) -> tuple[np.ndarray, int]:
        """One row per token list, embedded as given; and the number of tokens embedded."""
        if not inputs:
            raise InvalidArgumentError("input must not be empty")
        lists = [[int(t) for t in ids] for ids in inputs]
        return self._embedder_ctx().embed_tokens(lists, normalize, truncate)

    def _ranker_ctx(self) -> _native.Embedder:
        with self._init_lock:  # one context, however many threads rerank at once
            if self._ranker is None:
                self._ranker = _native.Embedder(self.model, self.n_ctx, 32, self.options.n_threads, True)
            return self._ranker

    def cancel_embeddings(self, why: str) -> None:
        """End the embed and rerank calls running or waiting on this model (CutShortError, with
        `why`) within one compute step; later calls run as usual. Thread-safe."""
        with self._init_lock:
            contexts = [c for c in (self._embedder, self._ranker) if c is not None]
        for context in contexts:
            context.cancel(why)

    def _embedder_ctx(self) -> _native.Embedder:
        with self._init_lock:
            if self._embedder is None:
                self._embedder = _native.Embedder(self.model, self.n_ctx, 32, self.options.n_threads)
            return self._embedder

    # ---- lifecycle ----

    def stats(self) -> dict[str, int | float]:
        return self._engine.stats()

    def slot_requests(self) -> list[int]:
        """The engine's request id running in each slot, 0 where the slot is idle."""
        return self._engine.slot_requests()

    @property
    def request_context(self) -> int:
        """Tokens one request may use (prompt and answer): the whole context, or with
        EngineOptions.per_slot_kv its slot's share."""
        return self._engine.n_ctx

    @property
    def flash_attn(self) -> bool:
        """Whether this engine's context computes attention with flash attention."""
        return self._engine.flash_attn

    @property
    def deterministic(self) -> bool:
        """Whether the deterministic mode is on and holds (EngineOptions.deterministic; not where a
        GPU or RPC workers compute)."""
        return self._engine.deterministic

    @property
    def repacked(self) -> bool:
        """Whether the CPU backend repacked the weights (AMX tiles, interleaved SIMD blocks)."""
        return any(name in ("AMX", "CPU_REPACK", "CPU_KLEIDIAI") for name in self.model.weight_buffers)

    @property
    def placement(self) -> list[LayerPlacement]:
        """Where the layers live: this machine's devices and the RPC workers'."""
        return placement_of(self.model)

    @property
    def lost_worker(self) -> str:
        """Why an RPC worker's connection failed ("" while all are up, or without workers): the
        model's requests then end with that error until it is loaded again."""
        return self.model.lost_worker

    def close(self) -> None:
        """Stop the engine (running requests end as cut short, embeddings too) and its event
        pump. Idempotent."""
        self.cancel_embeddings("the model was closed")
        self._finalizer()

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, prompt: Prompt, sampling: SamplingOptions | None, max_tokens: int, stop: Sequence[str],
                 stop_tokens: Sequence[int], ignore_eos: bool, parse_special: bool, logprobs: int | None,
                 prediction: TextPrompt | None) -> _native.Request:
        """The engine's request; the engine checks what it holds (max_tokens, logprobs, ids)."""
        sampling = sampling or SamplingOptions()
        sampling.validate(self.model.n_vocab)
        request = _native.Request(sampling=_native_sampling(sampling), max_tokens=max_tokens,
                                  ignore_eos=ignore_eos, stop_tokens=list(stop_tokens),
                                  stop_strings=list(stop), n_logprobs=-1 if logprobs is None else logprobs)
        if isinstance(prompt, MediaTokens):  # placeholders and spans: the engine checks them
            request.prompt, request.media = prompt.tokens, prompt.media
        else:
            request.prompt = self.prompt_tokens(prompt, parse_special)
        predicted = self._prediction(prediction)
        if predicted is not None:
            request.prediction = predicted
        return request

    def _draft_model(self) -> _native.Model | None:
        """The draft model (EngineOptions.draft_model), placed as the model is."""
        o = self.options
        if o.draft_model is None:
            return None
        return _native.Model(o.draft_model, o.n_gpu_layers, o.use_mmap, o.repack_weights, [])

    def _prediction(self, prediction: TextPrompt | None) -> np.ndarray | None:
        """A predicted answer as token ids (text without a BOS: it continues the prompt)."""
        if prediction is None or (isinstance(prediction, str) and not prediction):
            return None
        if isinstance(prediction, str):
            limits.check_text(prediction, "prediction", "prediction")
            return self.tokenize(prediction, add_special=False, parse_special=False)
        return self.prompt_tokens(prediction)

    def _piece_of(self, logprobs: int | None) -> Callable[[int], bytes] | None:
        return None if logprobs is None else self.model.token_to_piece

    def prompt_tokens(self, prompt: TextPrompt, parse_special: bool = False) -> np.ndarray:
        """A text or token-id prompt as checked token ids (ids outside the vocabulary refused)."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, add_special=True, parse_special=parse_special)
        try:
            tokens = np.asarray(prompt)
        except (OverflowError, ValueError):
            tokens = np.asarray([], dtype=object)  # ragged or beyond 64 bits: refused below
        if tokens.ndim != 1 or (tokens.size and not np.issubdtype(tokens.dtype, np.integer)):
            raise InvalidArgumentError("prompt token ids must be a flat list of integers")
        # Checked before the int32 cast, which would wrap 4294977202 to a valid id silently.
        if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= self.model.n_vocab):
            bad = next(int(t) for t in tokens if not 0 <= int(t) < self.model.n_vocab)
            raise InvalidArgumentError(f"prompt token id {bad} is out of range [0, {self.model.n_vocab})")
        return tokens.astype(np.int32, copy=False)


def _shutdown(engine: _native.Engine, pump: EventPump) -> None:
    engine.shutdown()
    pump.close()


def _checked_text(text: str) -> str:
    """Text for the tokenizer: a str, valid Unicode, and not beyond limits.MAX_TEXT_CHARS."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"expected text, got {type(text).__name__}")
    limits.check_text(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"text is not valid Unicode (position {exc.start})") from None
    return text


def _engine_params(o: EngineOptions, n_ctx: int) -> _native.EngineParams:
    return _native.EngineParams(
        n_ctx=n_ctx, n_slots=o.n_slots, n_batch=o.n_batch, n_ubatch=o.n_ubatch, n_threads=o.n_threads,
        n_threads_batch=o.n_threads, max_queue=o.max_queue, prefill_chunk=o.prefill_chunk,
        flash_attn=o.native_flash_attn, idle_cache=o.idle_cache, per_slot_kv=o.per_slot_kv,
        deterministic=o.deterministic, spec=_native.Spec[o.spec.upper()], spec_max=o.spec_max)


def _native_sampling(s: SamplingOptions) -> _native.SamplingParams:
    p = _native.SamplingParams()
    p.temperature = s.temperature
    p.top_k = s.top_k
    p.top_p = s.top_p
    p.min_p = s.min_p
    p.seed = RANDOM_SEED if s.seed is None else s.seed
    p.repeat_penalty = s.repeat_penalty
    p.presence_penalty = s.presence_penalty
    p.frequency_penalty = s.frequency_penalty
    p.penalty_last_n = s.penalty_last_n
    p.logit_bias = list(s.logit_bias.items())
    p.grammar = s.grammar
    p.grammar_lazy = s.grammar_lazy
    p.trigger_patterns = list(s.trigger_patterns)
    p.trigger_tokens = list(s.trigger_tokens)
    p.grammar_prefill = s.grammar_prefill
    p.reasoning_budget = s.reasoning_budget
    p.reasoning_start = s.reasoning_start
    p.reasoning_end = list(s.reasoning_end)
    p.reasoning_prefill = s.reasoning_prefill
    return p
