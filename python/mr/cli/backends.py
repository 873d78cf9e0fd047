"""Where `mr run` gets its answers: a running mr server (the model stays warm between calls) or
the engine in this process. Both yield the same ChatDelta stream."""

from __future__ import annotations

import json
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, NamedTuple, Protocol

import click

from mr import config
from mr.cli.media_files import media_of, media_refused, openai_messages
from mr.errors import CutShortError, ModelNotFoundError, MrError
from mr.jsontypes import JSON

if TYPE_CHECKING:
    import httpx

    from mr.engine import LLM
    from mr.media import MediaSource
    from mr.store.defaults import ModelDefaults


@dataclass
class RunOptions:
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int = -1
    ctx_size: int | None = None
    ignore_eos: bool = False  # generate max_tokens tokens whatever the model says (benchmarks, tests)
    extra: dict[str, float] = field(default_factory=dict)  # /set parameter NAME VALUE


@dataclass
class Reply:
    """One answer: iterate for (content, reasoning) pieces; counts and speed when done."""

    pieces: Iterator[tuple[str, str]]
    close: Callable[[], object]
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0


class Backend(Protocol):
    def chat(self, messages: list[JSON], options: RunOptions) -> Reply: ...
    def close(self) -> None: ...


def server_url() -> str | None:
    """The base URL of a running mr server at MR_HOST (mr.config.server_url), or None (a quick
    probe)."""
    import httpx

    from mr.cli import tls

    base = config.server_url()
    try:
        response = httpx.get(f"{base}/version", timeout=0.3, verify=verify_for(base))
    except httpx.HTTPError as exc:
        if tls.is_cert_failure(exc):
            raise tls.cert_error(base, exc) from None  # a server is there: do not run locally instead
        return None
    return base if response.status_code == 200 else None


def verify_for(url: str) -> ssl.SSLContext | bool:
    """httpx's `verify` for `url`: the CLI's trust store for https, unused for http."""
    from mr.cli import tls

    return tls.ssl_context() if url.startswith("https://") else True


class Resolved(NamedTuple):
    """What loads a model: its GGUF, a chat template that replaces the GGUF's own, and its
    multimodal projector (a store model's mmproj layer)."""

    path: Path
    template: str | None = None
    mmproj: Path | None = None


def is_gguf_path(model: str) -> bool:
    """Whether `mr run MODEL` names a file rather than a store model."""
    path = Path(model).expanduser()
    return path.suffix == ".gguf" or path.exists()


def resolve_model(model: str) -> Resolved:
    """What loads a .gguf path or a store reference (a bare GGUF has no projector of its own:
    `mr run --mmproj` names one).

    A store reference that is not present yet is pulled first, with progress on a terminal."""
    if is_gguf_path(model):
        return Resolved(Path(model).expanduser())
    from mr.store import Store
    from mr.store.pull import pull

    store = Store()
    try:
        local = store.resolve(model)
    except ModelNotFoundError:
        click.echo(f"Unable to find model '{model}' locally. Pulling from the server.", err=True)
        local = pull(store, model, progress=sys.stderr.isatty()).model
    template = local.chat_template_path
    return Resolved(local.gguf_path, template.read_text(encoding="utf-8") if template else None,
                    local.mmproj_path)


def model_defaults(model: str) -> ModelDefaults | None:
    """The store model's own request defaults (an Ollama artifact's params and system prompt),
    None for a .gguf path or a model without any."""
    if is_gguf_path(model):
        return None
    from mr.store import Store

    try:
        return Store().resolve(model).defaults
    except ModelNotFoundError:
        return None


class LocalBackend:
    """The engine in this process; reloads the model when the context size changes.

    mmproj: a multimodal projector (GGUF) for a model that does not bring its own (`--mmproj`)."""

    def __init__(self, model: str, rpc: tuple[str, ...] = (), deterministic: bool = False,
                 mmproj: Path | None = None) -> None:
        self._model = model
        self._rpc = rpc
        self._deterministic = deterministic
        self._mmproj = mmproj
        self._resolved: Resolved | None = None
        self._llm: LLM | None = None
        self._ctx: int | None = None
        self._defaults: ModelDefaults | None = None

    def chat(self, messages: list[JSON], options: RunOptions) -> Reply:
        import msgspec

        from mr.engine import SamplingOptions

        media = media_of(messages)
        if media:  # before the model loads: a text-only model is refused at once
            self._check_projector(media)
        llm = self._load(options.ctx_size)
        if media:
            self._check_accepts(llm, media)
        defaults = SamplingOptions()
        params = {k: v for k, v in options.extra.items() if k in SamplingOptions.__struct_fields__}
        temperature = defaults.temperature if options.temperature is None else options.temperature
        sampling = msgspec.structs.replace(SamplingOptions(temperature=temperature, seed=options.seed),
                                           **params)
        max_tokens = options.max_tokens
        stop: list[str] = []
        own = self._defaults  # the model's own (Ollama's params, system), where the user said nothing
        if own is not None:
            asked = SimpleNamespace(**params, temperature=options.temperature, seed=options.seed)
            sampling, messages = own.apply_sampling(sampling, asked), own.apply_messages(messages)
            max_tokens, stop = own.apply_max_tokens(max_tokens), own.apply_stop(stop)
        stream = llm.chat(messages, sampling, max_tokens=max_tokens, stop=stop, ignore_eos=options.ignore_eos)
        reply = Reply(pieces=iter(()), close=stream.close)

        def pieces() -> Iterator[tuple[str, str]]:
            for delta in stream:
                yield delta.content, delta.reasoning_content
            usage, timings = stream.usage, stream.timings
            reply.prompt_tokens, reply.cached_tokens = usage.prompt_tokens, usage.cached_tokens
            reply.completion_tokens = usage.completion_tokens
            reply.prefill_s, reply.decode_s = timings.prefill_ms / 1000, timings.decode_ms / 1000

        reply.pieces = pieces()
        return reply

    def _resolve(self) -> Resolved:
        if self._resolved is None:
            resolved = resolve_model(self._model)
            if self._mmproj is not None:  # --mmproj: this projector, whatever the model brings
                resolved = resolved._replace(mmproj=self._mmproj)
            self._resolved = resolved
        return self._resolved

    def _check_projector(self, media: list[MediaSource]) -> None:
        if self._resolve().mmproj is None:
            hint = " (name its projector with --mmproj FILE)" if is_gguf_path(self._model) else ""
            raise media_refused(media, f"{self._model} has no multimodal projector: it takes text only{hint}")

    def _check_accepts(self, llm: LLM, media: list[MediaSource]) -> None:
        """A projector may take images and not audio (or the reverse): said with the model's name."""
        refused = [s for s in media if s.kind not in llm.accepts]
        if refused:
            takes = " and ".join(sorted(llm.accepts)) or "no media"
            raise media_refused(refused, f"{self._model}'s projector takes {takes}, not {refused[0].kind}")

    def _load(self, ctx_size: int | None) -> LLM:
        if self._llm is None or ctx_size != self._ctx:
            from mr.engine import LLM, EngineOptions

            if self._llm is not None:
                self._llm.close()
            path, template, mmproj = self._resolve()
            self._defaults = model_defaults(self._model)
            options = EngineOptions(n_ctx=ctx_size, n_slots=1, rpc=self._rpc,
                                    deterministic=self._deterministic,
                                    mmproj=str(mmproj) if mmproj is not None else None)
            self._llm = LLM(path, options, chat_template=template)
            self._ctx = ctx_size
        return self._llm

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()


class RemoteBackend:
    """A running mr server, through its OpenAI endpoint (streaming)."""

    def __init__(self, base_url: str, model: str) -> None:
        import httpx

        self._model = model
        self._pulled = False  # one pull per session, then a missing model is an error
        key = config.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(600, connect=5),
                                    verify=verify_for(base_url))

    def chat(self, messages: list[JSON], options: RunOptions) -> Reply:
        body: JSON = {"model": self._model, "messages": openai_messages(messages), "stream": True,
                                "stream_options": {"include_usage": True}, **options.extra}
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.seed is not None:
            body["seed"] = options.seed
        if options.max_tokens > 0:
            body["max_tokens"] = options.max_tokens
        if options.ignore_eos:
            body["ignore_eos"] = True
        context = self._client.stream("POST", "/v1/chat/completions", json=body)
        response = context.__enter__()
        if response.status_code == 404 and not self._pulled:
            context.__exit__(None, None, None)
            self._pull()
            return self.chat(messages, options)
        if response.status_code != 200:
            response.read()
            context.__exit__(None, None, None)
            raise _error(response)
        reply = Reply(pieces=iter(()), close=lambda: context.__exit__(None, None, None))
        reply.pieces = self._pieces(response, reply, context)
        return reply

    def _pieces(self, response: httpx.Response, reply: Reply,
                context: AbstractContextManager[httpx.Response]) -> Iterator[tuple[str, str]]:
        import httpx

        start = first = time.perf_counter()
        got_first = done = False
        try:
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    done = True
                    continue
                if not line.startswith("data: "):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise _stream_error(chunk["error"])
                if chunk.get("usage"):
                    _usage(reply, chunk["usage"])
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    content, reasoning = delta.get("content") or "", delta.get("reasoning_content") or ""
                    if (content or reasoning) and not got_first:
                        first, got_first = time.perf_counter(), True
                    if content or reasoning:
                        yield content, reasoning
            if not done:  # the connection ended mid-answer: never pass that off as complete
                raise CutShortError("the server ended the answer before it was complete")
        except httpx.HTTPError as exc:
            raise CutShortError(f"the connection to the server was lost mid-answer ({type(exc).__name__})"
                                ) from None
        finally:
            end = time.perf_counter()
            reply.prefill_s, reply.decode_s = first - start, end - first
            context.__exit__(None, None, None)

    def load(self) -> None:
        """Load the model on the server without chatting (`mr run --detach`), pulling it first
        if the store lacks it. Ollama's empty generate request is the server's load call."""
        response = self._client.post("/api/generate", json={"model": self._model})
        if response.status_code == 404 and not self._pulled:
            self._pull()
            response = self._client.post("/api/generate", json={"model": self._model})
        if response.status_code != 200:
            raise _error(response)

    def _pull(self) -> None:
        """The API never pulls by itself; the CLI asks the server to (POST /models/create)."""
        self._pulled = True
        click.echo(f"Unable to find model '{self._model}' locally. Pulling from the server.", err=True)
        with self._client.stream("POST", "/models/create", json={"from": self._model}) as response:
            if response.status_code != 200:
                response.read()
                raise _error(response)
            for line in response.iter_lines():
                event = json.loads(line) if line.strip() else {}
                if event.get("type") == "error":
                    raise MrError(event.get("message", "pull failed"))

    def close(self) -> None:
        self._client.close()


def _usage(reply: Reply, usage: JSON) -> None:
    reply.prompt_tokens = usage.get("prompt_tokens", 0)
    reply.completion_tokens = usage.get("completion_tokens", 0)
    reply.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)


def _stream_error(error: object) -> MrError:
    """An error event inside a stream, as the mr error of its code."""
    from mr import errors

    message = error.get("message", "") if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    by_code = {"cut_short": errors.CutShortError, "context_length_exceeded": errors.ContextLengthError,
               "model_not_found": errors.ModelNotFoundError}
    kind = by_code.get(code, errors.EngineError) if isinstance(code, str) else errors.EngineError
    return kind(message or "the answer failed")


def _error(response: httpx.Response) -> MrError:
    """The server's OpenAI error envelope as the mr error of the same class."""
    from mr import errors

    try:
        error = response.json()["error"]
        if isinstance(error, str):  # Ollama's shape (/api/*)
            error = {"message": error}
        message, code = error.get("message", ""), error.get("code")
    except Exception:
        message, code = f"the server answered {response.status_code}", None
    if code == "context_length_exceeded":
        return errors.ContextLengthError(message)
    by_status = {404: errors.ModelNotFoundError, 400: errors.InvalidArgumentError,
                 503: errors.OverloadedError, 422: errors.ModelLoadError}
    return by_status.get(response.status_code, MrError)(message)
