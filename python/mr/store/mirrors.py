"""Registry mirrors (Docker's `registry-mirrors` semantics): a pull asks the mirror first and
falls back to the source; the model keeps its source name.

    MR_REGISTRY_MIRRORS="hf.co=127.0.0.1:5000,docker.io=mirror.example:5000"

A registry may have several mirrors (`docker.io=a:5000,docker.io=b:5000`), asked in order. A
mirror is reached like any registry: HTTPS unless loopback or listed in MR_INSECURE_REGISTRIES,
with its own credentials from the Docker config. The source's credentials (HF_TOKEN included)
never go to a mirror.
"""

from __future__ import annotations

from mr import config
from mr.errors import InvalidArgumentError
from mr.store.reference import _DOMAIN, _normalise_registry

ENV = "MR_REGISTRY_MIRRORS"


def _fail(item: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{ENV}: {item[:100]!r} {why} (want REGISTRY=MIRROR,...)")


def parse(text: str) -> dict[str, list[str]]:
    """Source registry (stored form) -> its mirrors' hosts, in the order given."""
    out: dict[str, list[str]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        source, sep, mirror = (s.strip().lower() for s in item.partition("="))
        if not sep or not source or not mirror:
            raise _fail(item, "is not REGISTRY=MIRROR")
        mirror = mirror.removeprefix("https://").removeprefix("http://").rstrip("/")
        for host in (source, mirror):
            if not _DOMAIN.fullmatch(host):
                raise _fail(item, f"names a bad host {host[:100]!r}")
        mirrors = out.setdefault(_normalise_registry(source), [])
        if mirror not in mirrors:
            mirrors.append(mirror)
    return out


def for_registry(registry: str) -> list[str]:
    """The mirrors to ask before `registry` (a stored registry name), from MR_REGISTRY_MIRRORS."""
    return parse(config.text(ENV)).get(registry, [])
