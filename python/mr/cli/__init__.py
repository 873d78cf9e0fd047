"""The `mr` command line: a click group whose verbs are imported only when invoked.

`mr --help` must stay fast, so nothing here imports the engine, the store or the server.
Each verb family lives in its own module, registered by name in COMMANDS.
"""

from __future__ import annotations

import sys

import click

from mr.cli.help import ALIASES, GROUPS
from mr.cli.lazy import LazyGroup

# verb -> "module:attribute". Store verbs live in mr.cli.store_cmds.
COMMANDS: dict[str, str] = {
    "run": "mr.cli.run:run",
    "version": "mr.cli.info:version",
    "pull": "mr.cli.store_cmds:pull",
    "push": "mr.cli.store_cmds:push",
    "package": "mr.cli.store_cmds:package",
    "tag": "mr.cli.store_cmds:tag",
    "rm": "mr.cli.store_cmds:rm",
    "list": "mr.cli.store_cmds:list_models",
    "ls": "mr.cli.store_cmds:list_models",
    "inspect": "mr.cli.store_cmds:inspect",
    "df": "mr.cli.store_cmds:df",
    "serve": "mr.cli.serve:serve",
    "worker": "mr.cli.worker:worker",
    "ps": "mr.cli.runtime_cmds:ps",
    "unload": "mr.cli.runtime_cmds:unload",
    "configure": "mr.cli.runtime_cmds:configure",
    "status": "mr.cli.runtime_cmds:status",
    "bench": "mr.cli.bench_cmd:bench",
    "logs": "mr.cli.logs_cmd:logs",
    "requests": "mr.cli.requests_cmd:requests",
    "show": "mr.cli.show_cmd:show",
    "purge": "mr.cli.show_cmd:purge",
}


def _version() -> str:
    from mr import __version__

    return __version__


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, help_groups=GROUPS, aliases=ALIASES,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=_version(), prog_name="mr", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("--ca-cert", type=click.Path(dir_okay=False), default=None,
              help="CA certificate (PEM) that signed an https:// MR_HOST's certificate [MR_CA_CERT].")
@click.pass_context
def cli(ctx: click.Context, debug: bool, ca_cert: str | None) -> None:
    """mr: run language models locally (Docker Model Runner compatible).

    Models come from Docker Hub's ai/ namespace (or any OCI registry); `mr run ai/smollm2`
    pulls and chats. Run `mr COMMAND --help` for a command's options.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if ca_cert:
        from mr.cli import tls

        tls.use_ca_cert(ca_cert)  # every verb's HTTP client trusts it


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a distinct exit code."""
    from mr.cli.errors import run_cli

    sys.exit(run_cli(cli, argv))
