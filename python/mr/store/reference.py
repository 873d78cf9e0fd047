"""Model references: Docker Model Runner's normalisation, its display form and the wire host.

`smollm2` -> `docker.io/ai/smollm2:latest`; a name without `/` and without a registry gets the
`ai/` namespace; the repository is lower-cased, the tag keeps its case; `hf.co` means
`huggingface.co`; `ollama.com/NAME` means Ollama's library, `registry.ollama.ai/library/NAME`;
`name@sha256:...` pins a digest. Display strips the defaults again (and shows Ollama's library
as `ollama.com/NAME`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mr import config
from mr.store import digest as digests
from mr.store.errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_WIRE = "index.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
HUGGING_FACE = "huggingface.co"
HUGGING_FACE_WIRE = "hf.co"  # the host of Hugging Face's registry endpoint (Ollama's too)
OLLAMA = "registry.ollama.ai"
OLLAMA_SHORT = "ollama.com"
OLLAMA_LIBRARY = "library"
_REGISTRY_ALIASES = {"hf.co": HUGGING_FACE, OLLAMA_SHORT: OLLAMA}
DEFAULT_NAMESPACE = "ai"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DOMAIN = re.compile(
    r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])(?:\.(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9]))*"
    r"(?::[0-9]{1,5})?|\[[0-9a-f:]+\](?::[0-9]{1,5})?"
)
_MAX_NAME = 255


def _normalise_registry(host: str) -> str:
    host = host.lower()
    host = _REGISTRY_ALIASES.get(host, host)
    return DOCKER_HUB if host in _HUB_ALIASES else host


def default_registry() -> str:
    """The registry (stored form) for references that name none."""
    return _normalise_registry(config.default_registry())


def hf_endpoint() -> str | None:
    """HF_ENDPOINT's host (Hugging Face's own variable: a self-hosted hub), if set."""
    from urllib.parse import urlsplit

    value = config.text("HF_ENDPOINT")
    return urlsplit(value).netloc.lower() or None if value else None


def wire_host(registry: str) -> str:
    """The host to talk to for a stored registry name (Docker Hub: index.docker.io)."""
    if registry == HUGGING_FACE:
        return hf_endpoint() or HUGGING_FACE_WIRE
    if registry != DOCKER_HUB:
        return registry
    configured = config.default_registry().lower()
    return configured if configured in _HUB_ALIASES else DOCKER_HUB_WIRE


def _host_only(registry: str) -> str:
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def is_loopback(netloc: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1, with or without a port."""
    host = _host_only(netloc.lower())
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_listed_insecure(netloc: str) -> bool:
    """The user named this host (or host:port) in MR_INSECURE_REGISTRIES."""
    allowed = {item.lower() for item in config.items("MR_INSECURE_REGISTRIES")}
    netloc = netloc.lower()
    return netloc in allowed or _host_only(netloc) in allowed


def is_insecure(registry: str) -> bool:
    """Plain HTTP for loopback, `*.local` and registries listed in MR_INSECURE_REGISTRIES."""
    host = _host_only(registry)
    if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".local"):
        return True
    return is_listed_insecure(registry)


@dataclass(frozen=True)
class Reference:
    """A normalised reference. `tag` is None only when pinned by digest without a tag."""

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def stored(self) -> str:
        """The form kept in models.json: `docker.io/ai/smollm2:latest` or `name@sha256:...`."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"

    @property
    def display(self) -> str:
        """Defaults stripped: `docker.io/ai/gemma3:latest` -> `gemma3`."""
        if self.registry == OLLAMA and self.repository.startswith(f"{OLLAMA_LIBRARY}/"):
            text = f"{OLLAMA_SHORT}/{self.repository[len(OLLAMA_LIBRARY) + 1:]}"
        elif self.registry != default_registry():
            text = self.name
        elif self.repository.count("/") == 1 and self.repository.startswith("ai/"):
            text = self.repository[len(DEFAULT_NAMESPACE) + 1 :]
        else:
            text = self.repository
        return self._suffixed(text)

    @property
    def familiar(self) -> str:
        """Only the default registry and `:latest` stripped: `ai/smollm2` (OpenAI model id)."""
        text = self.repository if self.registry == default_registry() else self.name
        return self._suffixed(text)

    def _suffixed(self, text: str) -> str:
        if self.digest:
            return f"{text}@{self.digest}"
        if self.tag and self.tag != DEFAULT_TAG:
            return f"{text}:{self.tag}"
        return text

    @property
    def remote_ref(self) -> str:
        """What goes after /manifests/ on the wire: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def wire_registry(self) -> str:
        return wire_host(self.registry)

    @property
    def insecure(self) -> bool:
        return is_insecure(self.registry)

    def __str__(self) -> str:
        return self.stored


def _fail(text: str, why: str) -> InvalidReferenceError:
    shown = text if len(text) <= 100 else text[:97] + "..."
    return InvalidReferenceError(f"invalid reference {shown!r}: {why}")


def parse(text: str) -> Reference:
    """Parse and normalise a user's model reference (not a model ID)."""
    if not isinstance(text, str):
        raise _fail(repr(text), "not a string")
    raw = text.strip()
    if not raw or len(raw) > 2 * _MAX_NAME:
        raise _fail(raw, "empty or too long")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise _fail(raw, "contains whitespace or control characters")
    if digests.is_valid(raw) or raw.startswith(("sha256:", "sha512:")):
        raise _fail(raw, "a model ID, not a name")
    name, at, pinned = raw.partition("@")
    digest = None
    if at:
        try:
            digest = digests.validate(pinned)
        except Exception as exc:
            raise _fail(raw, "bad digest") from exc
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _fail(raw, "bad tag")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first.lower() == "localhost"):
        registry = first.lower()
        if not _DOMAIN.fullmatch(registry):
            raise _fail(raw, "bad registry host")
        registry = _normalise_registry(registry)
        repository = rest.lower()
        if registry == OLLAMA and "/" not in repository:
            repository = f"{OLLAMA_LIBRARY}/{repository}"  # `ollama.com/smollm2`
    else:
        registry = default_registry()
        repository = name.lower()
        if "/" not in repository:
            repository = f"{DEFAULT_NAMESPACE}/{repository}"
    components = repository.split("/")
    if not all(_COMPONENT.fullmatch(c) for c in components):
        raise _fail(raw, "bad repository name")
    if len(registry) + 1 + len(repository) > _MAX_NAME:
        raise _fail(raw, "name too long")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def normalise(text: str) -> str:
    """`smollm2` -> `docker.io/ai/smollm2:latest`."""
    return parse(text).stored


def display(stored: str) -> str:
    """Display form of a stored tag string; unparseable strings are shown as they are."""
    try:
        return parse(stored).display
    except InvalidReferenceError:
        return stored


def familiar(stored: str) -> str:
    try:
        return parse(stored).familiar
    except InvalidReferenceError:
        return stored
