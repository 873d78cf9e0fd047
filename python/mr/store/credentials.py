"""Registry credentials from the Docker config file (`$DOCKER_CONFIG/config.json` or
`~/.docker/config.json`): inline `auths`, `credHelpers` and `credsStore` (Docker's credential
helper programs, `docker-credential-<name> get`). Returns base64 `user:password` for Basic auth or
a token request, never logs it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import subprocess
from pathlib import Path

from oras.auth.utils import get_basic_auth

from mr.jsontypes import JSON
from mr.store.reference import DOCKER_HUB

log = logging.getLogger("mr.store")

HELPER_TIMEOUT_S = 60  # a helper may ask the desktop's keyring, which may ask the user
HUB_KEYS = ["https://index.docker.io/v1/", "index.docker.io", "docker.io",
            "registry-1.docker.io", "https://registry-1.docker.io"]


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _load() -> JSON:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _candidates(registry: str, wire_host: str) -> list[str]:
    if registry == DOCKER_HUB:
        return HUB_KEYS
    keys = []
    for host in dict.fromkeys([registry, wire_host]):
        keys += [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
        if host.startswith("localhost"):
            keys.append(host.replace("localhost", "127.0.0.1", 1))
        elif host.startswith("127.0.0.1"):
            keys.append(host.replace("127.0.0.1", "localhost", 1))
    return keys


def _valid_basic(value: str) -> bool:
    try:
        return ":" in base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False


def lookup(registry: str, wire_host: str) -> str | None:
    """Base64 `user:password` for the registry, or None when the config has nothing."""
    cfg = _load()
    keys = _candidates(registry, wire_host)
    auths = cfg.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        inline = entry.get("auth")
        if isinstance(inline, str) and _valid_basic(inline):
            return inline
        user, password = entry.get("username"), entry.get("password")
        if isinstance(user, str) and isinstance(password, str) and user:
            return str(get_basic_auth(user, password))
    helpers = cfg.get("credHelpers")
    helpers = helpers if isinstance(helpers, dict) else {}
    helper_keys = [(helpers[k], k) for k in keys if isinstance(helpers.get(k), str)]
    store = cfg.get("credsStore")
    if isinstance(store, str) and store:
        helper_keys += [(store, k) for k in keys[:1]]
    for helper, key in helper_keys:
        if not all(c.isalnum() or c in "-_." for c in helper):
            continue  # a helper name becomes a program name: keep it plain
        found = from_helper(helper, key)
        if found:
            return found
    return None


def from_helper(helper: str, key: str) -> str | None:
    """Base64 `user:password` from `docker-credential-<helper> get` for the server `key`, or None
    when the helper is missing, fails or knows nothing of it."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=key.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT_S, check=False)
        reply = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        log.warning("credential helper %s failed; going on without its credentials", program)
        return None
    if not isinstance(reply, dict):
        return None
    user, secret = reply.get("Username"), reply.get("Secret")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return str(get_basic_auth(user, secret))
    return None
