"""`mr run MODEL [PROMPT]`: one answer, or an interactive chat when no prompt is given."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mr.cli.backends import Backend, RunOptions


def open_backend(model: str, local: bool, rpc: tuple[str, ...] = (), deterministic: bool = False) -> Backend:
    """A running server when one answers at MR_HOST (the model stays warm), else in-process.
    A .gguf path always runs in-process: the server only serves models from its store; so does a
    run with RPC workers (they are this process's: the server has its own, `mr serve --rpc`) or
    in the deterministic mode (the server's mode is its own, `mr serve --deterministic`)."""
    from mr.cli.backends import LocalBackend, RemoteBackend, server_url

    is_file = model.endswith(".gguf") or Path(model).expanduser().exists()
    url = None if (local or is_file or rpc or deterministic) else server_url()
    return RemoteBackend(url, model) if url else LocalBackend(model, rpc, deterministic)


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
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The chat's line history file [default: $MR_HOME/history].")
def run(model: str, prompt: tuple[str, ...], temperature: float | None, seed: int | None,
        max_tokens: int, ctx_size: int | None, ignore_eos: bool, system: str | None, local: bool,
        verbose: bool, detach: bool, rpc: str | None, deterministic: bool, history: Path | None) -> None:
    """Run MODEL (a store name or a .gguf path): answer PROMPT, or chat when there is none.

    Piped input is appended to the prompt: cat notes.txt | mr run ai/smollm2 "Summarise:"
    """
    from mr.cli.session import Session, stream_reply

    if detach:
        preload(model)
        return
    text = " ".join(prompt)
    piped = _read_piped_stdin()
    if piped:
        text = f"{text}\n\n{piped}" if text else piped
    options = RunOptions(temperature=temperature, seed=seed, max_tokens=max_tokens, ctx_size=ctx_size,
                         ignore_eos=ignore_eos)
    from mr.rpc import parse_endpoints

    backend = open_backend(model, local, parse_endpoints(rpc), deterministic)
    try:
        if text.strip():
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": text}]
            stream_reply(backend.chat(messages, options), verbose, interrupt_exits=True)
        else:
            Session(backend, options, system, verbose, model, history).run()
    finally:
        backend.close()
