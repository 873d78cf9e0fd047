"""The one shape of every media refusal: a 400 that names the request field at fault."""

from __future__ import annotations

from mr.errors import InvalidArgumentError


def refusal(field: str, what: str) -> InvalidArgumentError:
    """An InvalidArgumentError whose message starts with the field and whose `param` is the field.

    `what` says what is wrong and, where there is one, the bound ("the image is 9000x9000 pixels,
    more than the 67108864 allowed")."""
    error = InvalidArgumentError(f"{field}: {what}")
    error.param = field
    return error


def size_text(n: int) -> str:
    """A byte count as people read it in an error message (exact bytes, with MiB when large)."""
    if n >= 1024 * 1024:
        return f"{n} bytes ({n / (1024 * 1024):.1f} MiB)"
    return f"{n} bytes"
