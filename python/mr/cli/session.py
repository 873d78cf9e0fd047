"""The interactive `mr run MODEL` session: a `> ` prompt with line editing and history."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import ModuleType

import click

from mr import config
from mr.cli.attach import AttachError, expand
from mr.cli.backends import Backend, Reply, RunOptions
from mr.cli.media_files import read_media, take_attachments, user_message
from mr.errors import MrError
from mr.jsontypes import JSON

HELP = """Available commands:
  /set system <text>            set the system message
  /set num_ctx <n>              set the context size (reloads the model)
  /set parameter <name> <value> set a sampling parameter (temperature, top_k, top_p, min_p, seed, ...)
  /clear                        forget the conversation
  /bye                          exit (Ctrl+D works too)
  /?                            this help
Use \"\"\" to begin and end a multi-line message. Ctrl+C stops an answer.
Start a line with @FILE to send that file's text (then the rest of the line).
An @FILE word naming an image (PNG, JPEG, WebP, GIF) or audio (WAV, MP3, FLAC) attaches it."""

WELCOME = "Chatting with {model}. Type /? for help, /bye or Ctrl+D to leave; @FILE sends a file or an image."

INT_PARAMS = {"top_k", "seed", "num_predict", "penalty_last_n"}


class Session:
    def __init__(self, backend: Backend, options: RunOptions, system: str | None, verbose: bool,
                 model: str = "the model", history_file: Path | None = None) -> None:
        self.backend = backend
        self.history_file = history_file or config.home() / "history"
        self.model = model
        self.options = options
        self.system = system
        self.verbose = verbose
        self.history: list[JSON] = []

    def run(self) -> None:
        _enable_line_editing(self.history_file)
        click.echo(WELCOME.format(model=self.model))
        while True:
            try:
                text = self._read()
            except EOFError:
                click.echo()
                return
            except KeyboardInterrupt:
                click.echo("\nUse Ctrl+D or /bye to exit.")
                continue
            if text is None or not text.strip():
                continue
            if text.startswith("/"):
                if self.command(text.strip()) == "bye":
                    return
                continue
            try:
                message = self.message(text)
            except (AttachError, MrError) as exc:
                click.echo(f"Error: {exc}")
                continue
            try:
                self.ask(message)
            except KeyboardInterrupt:  # before the answer started (e.g. while loading)
                click.echo()
            except MrError as exc:  # e.g. an @FILE too long for the context: the session goes on
                self.history.pop()
                click.echo(f"Error: {exc}")

    def message(self, line: str) -> JSON:
        """The user's turn for `line`: its @ images and audio attached (said, one line each),
        then a leading @FILE's text (mr.cli.attach)."""
        text, attachments = take_attachments(line)
        media = [read_media(a.path, a.kind, f"@{a.name}") for a in attachments]
        for a in attachments:
            click.echo(f"(attached {a.name})")
        return user_message(expand(text) if text.strip() else "", media)

    def ask(self, message: JSON) -> None:
        self.history.append(message)
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + self.history
        reply = self.backend.chat(messages, self.options)
        answer = stream_reply(reply, self.verbose)
        self.history.append({"role": "assistant", "content": answer})

    def command(self, line: str) -> str | None:
        parts = line.split(maxsplit=3)
        name = parts[0]
        if name in ("/bye", "/exit", "/quit"):
            return "bye"
        if name in ("/?", "/help"):
            click.echo(HELP)
        elif name == "/clear":
            self.history.clear()
            click.echo("Cleared session context.")
        elif name == "/set" and len(parts) >= 3:
            self._set(parts[1], line.split(maxsplit=2)[2])
        else:
            click.echo(f"Unknown command '{line}'. Type /? for help.")
        return None

    def _set(self, what: str, value: str) -> None:
        if what == "system":
            self.system = value
            click.echo("Set system message.")
        elif what == "num_ctx" and value.isdigit() and int(value) > 0:
            self.options.ctx_size = int(value)
            click.echo(f"Set context size to {value}.")
        elif what == "parameter" and len(value.split()) == 2:
            name, raw = value.split()
            try:
                number: float = int(raw) if name in INT_PARAMS else float(raw)
            except ValueError:
                click.echo(f"Invalid value for {name}: {raw}")
                return
            if name == "temperature":
                self.options.temperature = float(number)
            elif name == "seed":
                self.options.seed = int(number)
            elif name == "num_predict":
                self.options.max_tokens = int(number)
            else:
                self.options.extra[name] = number
            click.echo(f"Set parameter '{name}' to '{raw}'.")
        else:
            click.echo("Usage: /set system <text> | /set num_ctx <n> | /set parameter <name> <value>")

    def _read(self) -> str | None:
        line = input("> ")
        if not line.strip().startswith('"""'):
            return line
        # multi-line: everything up to a closing """
        first = line.strip()[3:]
        if first.endswith('"""'):
            return first[:-3]
        lines = [first] if first else []
        while True:
            more = input(". ")
            if more.rstrip().endswith('"""'):
                lines.append(more.rstrip()[:-3])
                return "\n".join(lines)
            lines.append(more)


def stream_reply(reply: Reply, verbose: bool, interrupt_exits: bool = False) -> str:
    """Print an answer as it comes (reasoning dimmed, apart from it); Ctrl+C stops it (the
    request is cancelled at once). With `interrupt_exits` (a one-shot `mr run`) the interrupt
    then propagates, so the command exits 130 rather than as if the answer were complete."""
    answer: list[str] = []
    thinking = False
    try:
        for content, reasoning in reply.pieces:
            if reasoning:
                if not thinking:
                    click.secho("Thinking...", dim=True)
                    thinking = True
                click.secho(reasoning, nl=False, dim=True)
            if content:
                if thinking:
                    click.echo("\n")
                    thinking = False
                answer.append(content)
                click.echo(content, nl=False)
    except KeyboardInterrupt:
        reply.close()
        click.echo()
        if interrupt_exits:
            raise
        return "".join(answer)
    click.echo()
    if verbose:
        print_speed(reply)
    return "".join(answer)


def print_speed(reply: Reply) -> None:
    computed = reply.prompt_tokens - reply.cached_tokens
    prefill = computed / reply.prefill_s if reply.prefill_s > 0 else 0.0
    decode = (reply.completion_tokens - 1) / reply.decode_s if reply.decode_s > 0 else 0.0
    click.echo(f"prompt: {reply.prompt_tokens} tokens ({reply.cached_tokens} cached), "
               f"{prefill:.1f} tokens/s", err=True)
    click.echo(f"generation: {reply.completion_tokens} tokens, {decode:.1f} tokens/s", err=True)


def _enable_line_editing(path: Path) -> None:
    """readline gives line editing and a history file when the platform has it."""
    try:
        import readline
    except ImportError:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)
    import atexit

    atexit.register(lambda: _save_history(readline, path))


def _save_history(readline: ModuleType, path: Path) -> None:
    with contextlib.suppress(OSError):
        readline.write_history_file(path)
