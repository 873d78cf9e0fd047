"""`@path` in the interactive chat: a line that starts with @FILE sends that file's text, followed
by the rest of the line (`@notes.txt Summarise this.`)."""

from __future__ import annotations

from pathlib import Path

from mr.units import human_bytes

MAX_FILE = 1 << 20  # a chat message, not a corpus


class AttachError(ValueError):
    """The file named after @ cannot be read (said to the user; the session goes on)."""


def expand(line: str) -> str:
    """The message for `line`: unchanged unless it starts with @FILE."""
    stripped = line.lstrip()
    if not stripped.startswith("@") or len(stripped) == 1:
        return line
    name, _, rest = stripped[1:].partition(" ")
    path = Path(name).expanduser()
    try:
        if path.stat().st_size > MAX_FILE:
            raise AttachError(f"{name} is larger than {human_bytes(MAX_FILE)}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AttachError(f"{name} is not a UTF-8 text file") from None
    except OSError as exc:
        raise AttachError(f"cannot read {name}: {exc.strerror or exc}") from None
    rest = rest.strip()
    return f"{text.rstrip()}\n\n{rest}" if rest else text
