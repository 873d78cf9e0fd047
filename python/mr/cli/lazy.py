"""A click group that imports each subcommand's module only when that subcommand runs."""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None,
                 help_groups: list[tuple[str, list[tuple[str, str]]]] | None = None,
                 aliases: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})
        self.help_groups = list(help_groups or [])  # (title, [(verb, one line)]) for --help
        self.aliases = dict(aliases or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                return None  # a verb whose module has not landed yet
            command = getattr(module, attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module_name}:{attr} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Reading each verb's help would import every module: the descriptions come from
        # help_groups; a verb missing there is still listed, by name.
        listed: set[str] = set()
        for title, rows in self.help_groups:
            present = [(n, text) for n, text in rows if n in self.lazy_commands]
            if present:
                with formatter.section(f"{title} commands"):
                    formatter.write_dl(present)
                listed.update(n for n, _ in present)
        rest = [n for n in self.list_commands(ctx) if n not in listed and n not in self.aliases]
        if rest:
            with formatter.section("Other commands" if listed else "Commands"):
                formatter.write_text(", ".join(rest))
