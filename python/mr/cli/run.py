"""`mr run MODEL [PROMPT]`: one answer, or an interactive chat when no prompt is given."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mr.cli.backends import Backend, RunOptions

if TYPE_CHECKING:
    from mr.media import MediaSource

# --image, --audio, --mmproj: a file that exists (click's usage error, exit 2, names it otherwise)
MEDIA_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def open_backend(model: str, local: bool, rpc: tuple[str, ...] = (), deterministic: bool = False,
                 mmproj: Path | None = None) -> Backend:
    """A running server when one answers at MR_HOST (the model stays warm), else in-process.
    A .gguf path always runs in-process: the server only serves models from its store; so does a
    run with RPC workers (they are this process's: the server has its own, `mr serve --rpc`), in
    the deterministic mode (the server's mode is its own, `mr serve --deterministic`) or with a
    projector named by --mmproj (the server's models bring their own)."""
    from mr.cli.backends import LocalBackend, RemoteBackend, is_gguf_path, server_url

    in_process = local or is_gguf_path(model) or rpc or deterministic or mmproj is not None
    url = None if in_process else server_url()
    return RemoteBackend(url, model) if url else LocalBackend(model, rpc, deterministic, mmproj)


def preload(model: str) -> None:
    """`--detach`: the server loads the model (it stays warm for its keep-alive)."""
    from mr.cli.backends import RemoteBackend, server_url
    from mr.errors import InvalidArgumentError, ServerNotRunningError

    if model.endswith(".gguf"):
        raise InvalidArgumentError("--detach loads a model of the server's store, not a .gguf file")
    url = server_url()
    if url is None:
        raise ServerNotRunningError("--detach needs a running server (start one with `mr serve`)")
    backend = RemoteBackend(url, model)
    try:
        backend.load()
    finally:
        backend.close()
    click.echo(f"Model {model} is loaded on the server at {url}.", err=True)


def read_media_options(images: tuple[Path, ...], audio: tuple[Path, ...]) -> list[MediaSource]:
    """--image and --audio files, images first, each named by its option in any refusal."""
    from mr.cli.media_files import read_media

    return ([read_media(p, "image", f"--image {p}") for p in images]
            + [read_media(p, "audio", f"--audio {p}") for p in audio])


def _read_piped_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.read()


@click.command()
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--temperature", type=float, default=None, help="Sampling temperature (0 = greedy).")
@click.option("--seed", type=int, default=None, help="Random seed for reproducible sampling.")
@click.option("--max-tokens", type=int, default=-1, show_default=True, help="-1: until the model stops.")
@click.option("--ctx-size", type=int, default=None, help="Context size in tokens.")
@click.option("--ignore-eos", is_flag=True, help="Generate --max-tokens tokens, past the model's end too.")
@click.option("--system", default=None, help="A system message.")
@click.option("--local", is_flag=True, help="Run in this process even when a server is running.")
@click.option("--verbose", is_flag=True, help="Print prompt and generation speed after each answer.")
@click.option("-d", "--detach", is_flag=True, help="Load MODEL into the running server and return (no chat).")
@click.option("--rpc", default=None,
              help="Split MODEL's layers with these llama.cpp RPC workers (`mr worker`), "
                   "HOST:PORT[,HOST:PORT...]; runs in this process.")
@click.option("--deterministic", is_flag=True,
              help="Batch-invariant kernels: the same prompt, options and seed give the same answer "
                   "every time (CPU only); runs in this process.")
@click.option("--image", "images", multiple=True, type=MEDIA_FILE,
              help="Send this image (PNG, JPEG, WebP, GIF) with the prompt; repeatable. The model "
                   "needs a multimodal projector.")
@click.option("--audio", "audio", multiple=True, type=MEDIA_FILE,
              help="Send this audio clip (WAV, MP3, FLAC) with the prompt; repeatable.")
@click.option("--mmproj", type=MEDIA_FILE, default=None,
              help="The multimodal projector (GGUF) of a .gguf MODEL; runs in this process. A store "
                   "model brings its own.")
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The chat's line history file [default: $MR_HOME/history].")
def run(model: str, prompt: tuple[str, ...], temperature: float | None, seed: int | None,
        max_tokens: int, ctx_size: int | None, ignore_eos: bool, system: str | None, local: bool,
        verbose: bool, detach: bool, rpc: str | None, deterministic: bool, images: tuple[Path, ...],
        audio: tuple[Path, ...], mmproj: Path | None, history: Path | None) -> None:
    """Run MODEL (a store name or a .gguf path): answer PROMPT, or chat when there is none.

    Piped input is appended to the prompt: cat notes.txt | mr run ai/smollm2 "Summarise:"

    With --image or --audio, the files go with the prompt: mr run ai/gemma3 "What is this?" --image cat.png
    """
    from mr.cli.media_files import user_message
    from mr.cli.session import Session, stream_reply

    if detach:
        preload(model)
        return
    text = " ".join(prompt)
    piped = _read_piped_stdin()
    if piped:
        text = f"{text}\n\n{piped}" if text else piped
    media = read_media_options(images, audio)  # before a model loads: a bad file fails at once
    options = RunOptions(temperature=temperature, seed=seed, max_tokens=max_tokens, ctx_size=ctx_size,
                         ignore_eos=ignore_eos)
    from mr.rpc import parse_endpoints

    backend = open_backend(model, local, parse_endpoints(rpc), deterministic, mmproj)
    try:
        if text.strip() or media:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                user_message(text, media)]
            stream_reply(backend.chat(messages, options), verbose, interrupt_exits=True)
        else:
            Session(backend, options, system, verbose, model, history).run()
    finally:
        backend.close()
