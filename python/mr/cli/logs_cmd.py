"""`mr logs [-f]`: the server's log ($MR_HOME/logs/server.log)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mr import config


def log_path() -> Path:
    return config.home() / "logs" / "server.log"


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl+C to stop).")
@click.option("-n", "--lines", default=200, show_default=True, help="How many of the last lines to show.")
def logs(follow: bool, lines: int) -> None:
    """Show the log of `mr serve`."""
    path = log_path()
    if not path.exists():
        # No absolute paths in errors: name it relative to MR_HOME, as the docs do.
        raise click.ClickException("no server log yet ($MR_HOME/logs/server.log is written by `mr serve`)")
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f.readlines()[-lines:] if lines > 0 else []:
            click.echo(line, nl=False)
        if not follow:
            return
        try:
            while True:
                line = f.readline()
                if line:
                    click.echo(line, nl=False)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return
