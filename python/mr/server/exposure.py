"""What a server bound beyond loopback lets the network do.

Off loopback, mr refuses to start without an API key unless `--no-auth` says so; even then the
routes that change the store or the runtime (pull, push, tag, delete, unload, configure) answer
only to loopback clients, so a LAN peer cannot retag a model into the user's registry namespace
and push it with the user's credentials. With an API key every route needs the key instead.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

MUTATING_POSTS = frozenset({"/engines/unload", "/engines/configure", "/engines/_configure",
                            "/api/pull", "/api/push", "/api/copy", "/api/create", "/api/delete"})
MUTATING_PREFIXES = ("/models/",)  # /models/create, /models/NAME/tag, /models/NAME/push
WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})


def is_mutating(method: str, path: str) -> bool:
    if method in ("DELETE", "PUT", "PATCH"):
        return True
    return method == "POST" and (path in MUTATING_POSTS or path.startswith(MUTATING_PREFIXES))


def is_loopback_client(client: Sequence[object] | None) -> bool:
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def machine_names(bind: str) -> set[str]:
    """Host header values a client may use for this machine: the bind address, and for a
    wildcard bind the machine's own name and the addresses it resolves to (best effort;
    others, such as a LAN address, need --allowed-host)."""
    names = {bind.strip("[]").lower()}
    if bind in WILDCARDS:
        try:
            hostname = socket.gethostname()
            names |= {hostname.lower(), socket.getfqdn(hostname).lower()}
            names |= {str(info[4][0]) for info in socket.getaddrinfo(hostname, None)}
        except OSError:
            pass
    return names - WILDCARDS
