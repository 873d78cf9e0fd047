"""`mr show MODEL` (a summary, like `docker model show` / `ollama show`) and `mr purge`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from mr.jsontypes import JSON

if TYPE_CHECKING:
    from mr.store import Store


def _store() -> Store:
    from mr.store import Store

    return Store()


def _human(info: JSON) -> str:
    rows = [("architecture", info["architecture"]), ("parameters", info["parameters"]),
            ("quantization", info["quantization"]), ("size", info["size"]),
            ("context length", info["context_length"]), ("embedding length", info["embedding_length"]),
            ("mode", info["mode"])]
    lines = [f"  Model {info['name']}  ({info['id'][7:19]})"]
    lines += [f"    {k:<18}{v}" for k, v in rows if v not in (None, "")]
    lines += ["", "  Capabilities"] + [f"    {c}" for c in info["capabilities"]]
    if info.get("params"):  # an Ollama artifact's defaults, applied when a request says nothing
        lines += ["", "  Parameters"]
        lines += [f"    {k:<18}{json.dumps(v)}" for k, v in info["params"].items()]
    if info.get("system"):
        lines += ["", "  System"] + [f"    {line}".rstrip() for line in info["system"].splitlines()[:20]]
    if info["licenses"] or info["license_name"]:
        lines += ["", "  License"]
        texts = info["licenses"] or [info["license_name"]]
        for text in texts:
            lines += [f"    {line}".rstrip() for line in text.strip().splitlines()[:20]]
            if len(text.strip().splitlines()) > 20:
                lines.append("    ...")
    return "\n".join(lines)


@click.command()
@click.argument("model")
@click.option("--template", is_flag=True, help="Print the chat template only.")
@click.option("--license", "license_only", is_flag=True, help="Print the license text(s) only.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def show(model: str, template: bool, license_only: bool, as_json: bool) -> None:
    """Show a model's summary: architecture, size, capabilities, license."""
    from mr.store.summary import summarize

    info = summarize(_store().resolve(model))
    if template:
        click.echo(info["chat_template"] or "(this model has no chat template)")
    elif license_only:
        click.echo("\n\n".join(info["licenses"]) or info["license_name"] or "(no license in this package)")
    elif as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(_human(info))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask first.")
def purge(force: bool) -> None:
    """Remove every model from the store."""
    from mr.store.purge import purge as purge_store

    store = _store()
    count = len(store.list())
    if count == 0:
        click.echo("No models to remove.")
        return
    if not force:
        if not sys.stdin.isatty():
            raise click.UsageError(f"this removes all {count} models: confirm with --force")
        click.confirm(f"Remove all {count} models from {store.root}?", abort=True, err=True)
    for line in purge_store(store):
        click.echo(line)
    click.echo(f"Removed {count} model{'s' if count != 1 else ''}.")
