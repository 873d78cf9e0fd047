"""Pushes Ollama-format artifacts to a real registry (only this uploader is the tests' own).

The manifest is what `ollama push` writes: a Docker schema 2 manifest whose config is
`application/vnd.docker.container.image.v1+json` (model_format, model_family, model_type,
file_type, rootfs) and whose layers are `application/vnd.ollama.image.*` blobs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import requests

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
P = "application/vnd.ollama.image."

CHATML_GO = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(host: str, repo: str, data: bytes) -> str:
    """A monolithic blob upload (POST a session, PUT with ?digest=)."""
    digest = sha256(data)
    r = requests.post(f"http://{host}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    r = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=60,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def config_json(layers: Sequence[tuple[str, bytes]], **fields: Any) -> bytes:
    cfg = {"model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
           "model_type": "135M", "file_type": "F32", "architecture": "amd64", "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": [sha256(d) for _, d in layers]}}
    cfg.update(fields)
    return json.dumps(cfg).encode()


def manifest_json(layers: Sequence[tuple[str, bytes]], config: bytes,
                  sizes: dict[int, int] | None = None) -> bytes:
    """`sizes` overrides the declared size of layer i (a lying manifest)."""
    descs = [{"mediaType": t, "digest": sha256(d), "size": (sizes or {}).get(i, len(d))}
             for i, (t, d) in enumerate(layers)]
    return json.dumps({"schemaVersion": 2, "mediaType": DOCKER_V2,
                       "config": {"mediaType": CONFIG, "digest": sha256(config),
                                  "size": len(config)},
                       "layers": descs}).encode()


def push(host: str, repo: str, tag: str, layers: Sequence[tuple[str, bytes]],
         config: bytes | None = None, sizes: dict[int, int] | None = None) -> str:
    """Upload the blobs and PUT the manifest; returns the manifest digest (the model ID)."""
    config = config if config is not None else config_json(layers)
    for _, data in layers:
        upload(host, repo, data)
    upload(host, repo, config)
    manifest = manifest_json(layers, config, sizes)
    r = requests.put(f"http://{host}/v2/{repo}/manifests/{tag}", data=manifest, timeout=30,
                     headers={"Content-Type": DOCKER_V2})
    assert r.status_code == 201, r.text
    return sha256(manifest)


def layers_for(gguf: bytes, *, template: str | None = CHATML_GO, system: str | None = None,
               params: dict[str, Any] | None = None, license_text: str | None = "MIT",
               projector: bytes | None = None) -> list[tuple[str, bytes]]:
    """The layers of a typical library model, in Ollama's order."""
    layers = [(P + "model", gguf)]
    if projector is not None:
        layers.append((P + "projector", projector))
    if template is not None:
        layers.append((P + "template", template.encode()))
    if system is not None:
        layers.append((P + "system", system.encode()))
    if license_text is not None:
        layers.append((P + "license", license_text.encode()))
    if params is not None:
        layers.append((P + "params", json.dumps(params).encode()))
    return layers
