"""`mr run MODEL [PROMPT]`: stream an answer from a model to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mr.engine import Timings, Usage


def _read_piped_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.read()


def resolve_model(model: str) -> tuple[Path, str | None]:
    """(GGUF path, chat template override) for a .gguf path or a store reference.

    A store reference that is not present yet is pulled first, with progress on a terminal."""
    path = Path(model).expanduser()
    if path.suffix == ".gguf" or path.exists():
        return path, None
    from mr.errors import ModelNotFoundError
    from mr.store import Store

    store = Store()
    try:
        local = store.resolve(model)
    except ModelNotFoundError:
        click.echo(f"Unable to find model '{model}' locally. Pulling from the server.", err=True)
        local = store.pull(model, progress=sys.stderr.isatty()).model
    template = local.chat_template_path
    return local.gguf_path, template.read_text(encoding="utf-8") if template else None


@click.command()
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--temperature", type=float, default=None, help="Sampling temperature (0 = greedy).")
@click.option("--seed", type=int, default=None, help="Random seed for reproducible sampling.")
@click.option("--max-tokens", type=int, default=-1, show_default=True, help="-1: until the model stops.")
@click.option("--ctx-size", type=int, default=None, help="Context size in tokens.")
@click.option("--system", default=None, help="A system message.")
@click.option("--verbose", is_flag=True, help="Print prompt and generation speed after the answer.")
def run(model: str, prompt: tuple[str, ...], temperature: float | None, seed: int | None,
        max_tokens: int, ctx_size: int | None, system: str | None, verbose: bool) -> None:
    """Run MODEL (a store name or a .gguf path) on PROMPT and stream the answer."""
    text = " ".join(prompt)
    piped = _read_piped_stdin()
    if piped:
        text = f"{text}\n\n{piped}" if text else piped
    if not text.strip():
        raise click.UsageError("give a prompt (interactive mode is not available yet)")

    from mr.engine import LLM, EngineOptions, SamplingOptions

    defaults = SamplingOptions()
    sampling = SamplingOptions(
        temperature=defaults.temperature if temperature is None else temperature, seed=seed
    )
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    path, template = resolve_model(model)
    with LLM(path, EngineOptions(n_ctx=ctx_size, n_slots=1), chat_template=template) as llm:
        stream = llm.chat(messages, sampling, max_tokens=max_tokens)
        for delta in stream:
            click.echo(delta.content, nl=False)
        click.echo()
        if verbose:
            _print_timings(stream.usage, stream.timings)


def _print_timings(usage: Usage, timings: Timings) -> None:
    computed = usage.prompt_tokens - usage.cached_tokens
    prefill_tps = computed * 1000.0 / timings.prefill_ms if timings.prefill_ms > 0 else 0.0
    click.echo(f"prompt: {usage.prompt_tokens} tokens ({usage.cached_tokens} cached), "
               f"{prefill_tps:.1f} tokens/s", err=True)
    click.echo(f"generation: {usage.completion_tokens} tokens, "
               f"{timings.tokens_per_second(usage.completion_tokens):.1f} tokens/s", err=True)
