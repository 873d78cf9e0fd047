"""mr's settings: every environment variable mr reads, in one table, and the accessors that read them.

Each variable has a name, a type, a default and a one-line description (`VARS`); no other module
reads an MR_* variable from the environment: they call `raw`, `text`, `number` or a named accessor
here, which refuse a name the table does not declare. `mr serve`'s variables are twins of its flags
(mr.server.settings maps them onto its Settings); a setting without a variable is a flag only.
The README's configuration table is generated from `VARS`:

    python -m mr.config --markdown          # print it
    python -m mr.config --readme README.md  # rewrite it between the settings markers
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from mr.errors import InvalidArgumentError

DEFAULT_PORT = 12434  # Docker Model Runner's port
DEFAULT_HOST = "127.0.0.1"

# Who reads a variable (the README's "read by" column).
EVERY, CLIENT, SERVE, STORE, BUILD, EXTERNAL = "mr", "CLI", "mr serve", "store", "build", "external"


@dataclass(frozen=True)
class Var:
    name: str
    read_by: str  # EVERY, CLIENT, SERVE, STORE, BUILD or EXTERNAL
    type: str  # how its value is written
    default: str  # as a user would write it; "": unset (the help says what that means)
    help: str  # one line


VARS: dict[str, Var] = {v.name: v for v in (
    Var("MR_HOME", EVERY, "path", "~/.mr",
        "where mr keeps its data: the store, the history, logs, per-model settings"),
    Var("MR_MODELS_DIR", EVERY, "path", "$MR_HOME/models",
        "the model store (Docker Model Runner's layout: `~/.docker/models` reuses DMR's)"),
    Var("MR_LOG_LEVEL", EVERY, "level", "WARNING",
        "level of mr's and llama.cpp's logs (`mr serve` logs at INFO unless this is set)"),
    Var("MR_HOST", EVERY, "host[:port] or URL", f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
        "the server the CLI talks to; the address `mr serve` binds (a wildcard host reaches loopback)"),
    Var("MR_API_KEY", EVERY, "text", "",
        "the key `mr serve` requires (`--api-key`) and the CLI sends"),
    Var("MR_CA_CERT", CLIENT, "path", "",
        "the CLI's `--ca-cert`: the CA that signed an `https://` server's certificate"),
    Var("MR_PORT", SERVE, "int", str(DEFAULT_PORT),
        "`mr serve --port` (wins over a port in `MR_HOST`)"),
    Var("MR_PARALLEL", SERVE, "int", "4",
        "`mr serve --parallel`: slots per model, requests decoded together"),
    Var("MR_CTX_SIZE", SERVE, "int", "",
        "`mr serve --ctx-size`: context per model (default: the package's, else the model's training "
        "context capped at 8192)"),
    Var("MR_KEEP_ALIVE", SERVE, "duration", "5m",
        "`mr serve --keep-alive`: idle time before a model unloads (`0`: at once, `-1`: never)"),
    Var("MR_MEMORY_BUDGET", SERVE, "size", "",
        "`mr serve --memory-budget`: memory for loaded models (default: 80% of RAM, 90% of VRAM with a GPU)"),
    Var("MR_FLASH_ATTN", SERVE, "auto, on, off", "auto",
        "`mr serve --flash-attn`"),
    Var("MR_PER_SLOT_KV", SERVE, "bool", "0",
        "`mr serve --per-slot-kv`: one KV cache per slot of ctx-size / parallel tokens instead of one "
        "shared"),
    Var("MR_DETERMINISTIC", SERVE, "bool", "0",
        "`mr serve --deterministic`: batch-invariant answers (CPU only)"),
    Var("MR_SPEC", SERVE, "auto, ngram, off", "auto",
        "`mr serve --spec`: speculative decoding"),
    Var("MR_TLS_CERT", SERVE, "path", "",
        "`mr serve --tls-cert`: serve HTTPS with this PEM certificate (chain)"),
    Var("MR_TLS_KEY", SERVE, "path", "",
        "`mr serve --tls-key`: the certificate's PEM private key"),
    Var("MR_TRUSTED_PROXIES", SERVE, "list", "",
        "`mr serve --trusted-proxy`: balancers (addresses or networks) whose `X-Forwarded-For` / "
        "`Forwarded` name the client"),
    Var("MR_CORS_ORIGINS", SERVE, "list", "",
        "`mr serve --cors-origin`: extra browser origins allowed (`*` for any)"),
    Var("MR_ALLOW_REMOTE_MEDIA", SERVE, "bool", "0",
        "`mr serve --allow-remote-media`: fetch the `http(s)` image and audio URLs of requests (size and "
        "time capped); off, they are refused"),
    Var("MR_DEFAULT_REGISTRY", STORE, "host", "index.docker.io",
        "the registry for model names without one"),
    Var("MR_REGISTRY_MIRRORS", STORE, "list", "",
        "mirrors asked before a registry, `REGISTRY=MIRROR,...` (e.g. `hf.co=127.0.0.1:5000`)"),
    Var("MR_INSECURE_REGISTRIES", STORE, "list", "",
        "registries reached over plain HTTP besides loopback and `*.local` (credentials go over plain HTTP "
        "only to loopback and these)"),
    Var("MR_REGISTRY_CONNECT_TIMEOUT", STORE, "seconds", "15",
        "how long a registry connection may take"),
    Var("MR_REGISTRY_READ_TIMEOUT", STORE, "seconds", "60",
        "how long a registry may stay silent mid-response"),
    Var("MR_PULL_DEADLINE", STORE, "seconds", "",
        "a transfer past this fails (default: 6 h for the server's pulls, none for the CLI's)"),
    Var("MR_PULL_MIN_RATE", STORE, "bytes/s", "1024",
        "a transfer slower than this over the rate window fails"),
    Var("MR_PULL_RATE_WINDOW", STORE, "seconds", "30",
        "the window the minimum rate is measured over"),
    Var("MR_CUDA", BUILD, "bool", "0",
        "`pip install` time: `1` builds llama.cpp's CUDA backend"),
    Var("MR_NATIVE", BUILD, "ON, OFF", "ON",
        "`pip install` time: `OFF` builds for a generic CPU (portable wheels)"),
    Var("HF_TOKEN", EXTERNAL, "text", "",
        "Hugging Face's token, sent (as Bearer) to Hugging Face only"),
    Var("HF_ENDPOINT", EXTERNAL, "URL", "https://hf.co",
        "another host serving Hugging Face's registry endpoint"),
    Var("DOCKER_CONFIG", EXTERNAL, "path", "~/.docker",
        "where registry credentials are read (Docker's `config.json`)"),
    Var("XDG_CACHE_HOME", EXTERNAL, "path", "~/.cache",
        "downloads that are not models of the store go to its `mr/`"),
    Var("_MR_COMPLETE", EXTERNAL, "text", "",
        "click's shell completion: `eval \"$(_MR_COMPLETE=bash_source mr)\"`"),
)}


# ---- reading ----

def raw(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, stripped; None when unset or blank. Only names in VARS."""
    if name not in VARS:
        raise KeyError(f"{name} is not in mr.config.VARS: declare it there first")
    value = (os.environ if env is None else env).get(name, "").strip()
    return value or None


def text(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    value = raw(name, env)
    return default if value is None else value


def number(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """A number; `default` when unset or not a number (a bad value must not stop a transfer)."""
    try:
        return float(raw(name, env) or default)
    except ValueError:
        return default


def items(name: str, env: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list, each item stripped, empty ones left out."""
    return [part.strip() for part in text(name, env=env).split(",") if part.strip()]


def switch(value: str) -> bool:
    """A boolean variable's value: everything but 0, false, no, off and "" is on."""
    return value.strip().lower() not in ("0", "false", "no", "off", "")


# ---- named accessors ----

def home() -> Path:
    return Path(raw("MR_HOME") or Path.home() / ".mr")


def models_dir() -> Path:
    override = raw("MR_MODELS_DIR")
    return Path(override) if override else home() / "models"


def cache_dir() -> Path:
    """Downloads that are not models in the store (e.g. the embedded default model's wheel)."""
    return Path(raw("XDG_CACHE_HOME") or Path.home() / ".cache") / "mr"


def default_registry() -> str:
    return text("MR_DEFAULT_REGISTRY", "index.docker.io")


def log_level(default: str = "WARNING") -> str:
    return text("MR_LOG_LEVEL", default).upper()


def api_key() -> str | None:
    return raw("MR_API_KEY")


# ---- MR_HOST: one parser for the CLI (a URL to reach) and the server (an address to bind) ----

class Address(NamedTuple):
    scheme: str | None  # "http" or "https" when written as a URL
    host: str | None
    port: int | None


def parse_host(value: str) -> Address:
    """ "0.0.0.0", "host:8080", "[::1]:8080", "::1" or "https://host:8443/" -> its parts (each None
    when not written). InvalidArgumentError (a ValueError) when the port is not a port."""
    value = value.strip().rstrip("/")
    if not value:
        return Address(None, None, None)
    if "://" in value:
        parts = urlsplit(value)
        try:
            return Address(parts.scheme, parts.hostname, parts.port)
        except ValueError:
            raise _bad_port(value) from None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise _bad_port(value)
    return Address(None, host or None, int(port) if port else None)


def _bad_port(value: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"MR_HOST {value!r}: the port must be a number from 1 to 65535")


def server_url(env: Mapping[str, str] | None = None) -> str:
    """MR_HOST as the base URL the CLI uses: a URL as written, else http://HOST:PORT (a wildcard
    bind address reaches the server over loopback; the port defaults to DEFAULT_PORT)."""
    value = text("MR_HOST", env=env)
    if "://" in value:
        return value.rstrip("/")
    address = parse_host(value)
    host = address.host or DEFAULT_HOST
    if host in ("0.0.0.0", "::"):
        host = DEFAULT_HOST
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{address.port or DEFAULT_PORT}"


def bind_address(env: Mapping[str, str] | None = None) -> tuple[str | None, int | None]:
    """(host, port) `mr serve` binds from MR_HOST, each None when not written."""
    address = parse_host(text("MR_HOST", env=env))
    return address.host, address.port


# ---- sizes the engine, the runner and the server agree on ----

# Context size used when neither the user nor the model's package says otherwise:
# the model's training context, capped so a small machine is not asked for a huge KV cache.
DEFAULT_CTX_CAP = 8192

KV_CELL_STEP = 256  # llama.cpp allocates a context's KV cache in steps of this many cells


def kv_cells(n_ctx: int, n_streams: int = 1) -> int:
    """The context llama.cpp really allocates for a requested `n_ctx` split into `n_streams` KV
    streams (one per slot with EngineOptions.per_slot_kv): each a multiple of 256 cells. Asking
    for exactly that keeps mr's context, the engine's batch cap and llama.cpp's own in agreement
    (sequences may fill every allocated cell anyway)."""
    per_stream = -(-n_ctx // n_streams)
    return n_streams * (-(-per_stream // KV_CELL_STEP) * KV_CELL_STEP)


# ---- the README's table ----

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def markdown() -> str:
    """The README's configuration table, generated from VARS."""
    rows = ["| variable | read by | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for var in VARS.values():
        default = f"`{var.default}`" if var.default else ""
        rows.append(f"| `{var.name}` | {var.read_by} | {var.type} | {default} | {var.help} |")
    return "\n".join(rows) + "\n"


def with_table(readme: str) -> str:
    """`readme` with the text between the settings markers replaced by the generated table."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {BEGIN} ... {END} markers")
    return readme[:start + len(BEGIN)] + "\n" + markdown() + readme[end:]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    if argv[:1] == ["--readme"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stderr.write("usage: python -m mr.config --markdown | --readme README.md\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
