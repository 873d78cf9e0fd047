"""Turn mr's errors into one line on stderr and the exit code of their class."""

from __future__ import annotations

import sys
import traceback

import click

from mr import config
from mr.errors import MrError


def run_cli(group: click.Group, argv: list[str] | None) -> int:
    if config.raw("_MR_COMPLETE"):  # shell completion: click's own entry point handles it
        return group.main(prog_name="mr", complete_var="_MR_COMPLETE")
    args = list(argv) if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    try:
        with group.make_context("mr", args) as ctx:
            group.invoke(ctx)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except MrError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
