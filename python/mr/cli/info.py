"""`mr version`: the package version and the pinned llama.cpp it was built with."""

from __future__ import annotations

import click


@click.command()
def version() -> None:
    """Show mr's version and the llama.cpp commit it carries."""
    from mr import __version__
    from mr._native import llama_commit, system_info

    click.echo(f"mr {__version__}")
    click.echo(f"llama.cpp {llama_commit()}")
    click.echo(system_info())
