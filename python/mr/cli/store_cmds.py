"""The store verbs: pull, push, package, tag, rm, list/ls, inspect, df.

Only click is imported at module level (`mr --help` stays fast); mr.store loads inside each verb.
Errors are mr.errors.MrError subclasses: the CLI wrapper prints one line and exits with the code.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mr.store import LocalModel, Store


def _store() -> Store:
    from mr.store import Store

    return Store()


def _tty() -> bool:
    return sys.stderr.isatty()


@click.command()
@click.argument("model")
def pull(model: str) -> None:
    """Pull a model from a registry (Docker Hub by default)."""
    from mr.store.pull import pull as pull_model
    from mr.store.reference import parse

    name = parse(model).display
    result = pull_model(_store(), model, progress=_tty())
    if result.downloaded:
        click.echo("Model pulled successfully")
    else:
        click.echo(f"Model {name} is already present and up to date")


@click.command()
@click.argument("model")
def push(model: str) -> None:
    """Push a local model to its registry."""
    from mr.store.push import push as push_model

    push_model(_store(), model, progress=_tty())
    click.echo("Model pushed successfully")


@click.command()
@click.option("--gguf", "gguf", required=True, type=click.Path(dir_okay=False),
              help="GGUF file (the first shard of a split model).")
@click.option("--license", "licenses", multiple=True, type=click.Path(dir_okay=False),
              help="License file to include (repeatable).")
@click.option("--chat-template", type=click.Path(dir_okay=False),
              help="Jinja chat template overriding the GGUF's own.")
@click.option("--mmproj", type=click.Path(dir_okay=False), help="Multimodal projector (GGUF).")
@click.option("--context-size", type=click.IntRange(min=1), help="Default context size.")
@click.option("--push", "do_push", is_flag=True, help="Push to the registry after packaging.")
@click.argument("target")
def package(gguf: str, licenses: tuple[str, ...], chat_template: str | None, mmproj: str | None,
            context_size: int | None, do_push: bool, target: str) -> None:
    """Package a GGUF file into a model artifact tagged TARGET."""
    from mr.store.package import package_gguf
    from mr.store.push import push as push_model

    store = _store()
    model = package_gguf(store, gguf, target, licenses=licenses, chat_template=chat_template,
                         context_size=context_size, mmproj=mmproj)
    click.echo(f"Model packaged successfully: {model.name} ({model.short_id})")
    if do_push:
        push_model(store, target, progress=_tty())
        click.echo("Model pushed successfully")


@click.command()
@click.argument("source")
@click.argument("target")
def tag(source: str, target: str) -> None:
    """Create a tag TARGET that refers to the model SOURCE."""
    _store().tag(source, target)
    click.echo(f'Model "{source}" tagged successfully with "{target}"')


@click.command()
@click.option("-f", "--force", is_flag=True, help="Delete a model ID that several tags name.")
@click.argument("models", nargs=-1, required=True)
def rm(force: bool, models: tuple[str, ...]) -> None:
    """Remove models (untag; delete the model with its last tag)."""
    from mr.errors import MrError

    store = _store()
    errors: list[MrError] = []
    for name in models:
        try:
            for line in store.remove(name, force=force):
                click.echo(line)
        except MrError as exc:
            errors.append(exc)
    for error in errors[:-1]:
        click.echo(f"Error: {error}", err=True)
    if errors:
        raise errors[-1]


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON: [{id, tags, created, config}].")
@click.option("--openai", is_flag=True, help="OpenAI's model list format.")
@click.option("-q", "--quiet", is_flag=True, help="Only model IDs.")
def list_models(as_json: bool, openai: bool, quiet: bool) -> None:
    """List the models in the store."""
    models = _store().list()
    if as_json:
        click.echo(json.dumps([m.to_dict() for m in models], indent=2))
    elif openai:
        data = [dict(m.to_openai(), id=_openai_id(m, t))
                for m in models for t in (m.tags if m.tags else [None])]
        click.echo(json.dumps({"object": "list", "data": data}, indent=2))
    elif quiet:
        for short in dict.fromkeys(m.short_id for m in models):
            click.echo(short)
    else:
        from mr.store.display import list_table

        click.echo(list_table(models))


def _openai_id(model: LocalModel, tag: str | None) -> str:
    from mr.store.reference import familiar

    return familiar(tag) if tag else str(model.id)


@click.command()
@click.option("--openai", is_flag=True, help="OpenAI's model object format.")
@click.argument("model")
def inspect(openai: bool, model: str) -> None:
    """Show a model's details as JSON."""
    found = _store().resolve(model)
    click.echo(json.dumps(found.to_openai() if openai else found.to_dict(), indent=2))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Byte counts as JSON.")
def df(as_json: bool) -> None:
    """Show the disk space the model store uses."""
    from mr.store.display import table
    from mr.units import human_bytes

    usage = _store().df()
    if as_json:
        click.echo(json.dumps(usage.to_dict(), indent=2))
        return
    rows = [
        ["Models", str(usage.models), human_bytes(usage.models_bytes + usage.manifests_bytes),
         human_bytes(usage.unreferenced_bytes)],
        ["Partial downloads", "", human_bytes(usage.partial_bytes),
         human_bytes(usage.partial_bytes)],
    ]
    click.echo(table(("TYPE", "TOTAL", "SIZE", "RECLAIMABLE"), rows))
    click.echo(f"\nTotal: {human_bytes(usage.total_bytes)}")
