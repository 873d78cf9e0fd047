"""Manifest and config parsing: DMR's format, CNCF ModelPack, and refusals."""

from __future__ import annotations

import json

import pytest

from mr.store import artifact
from mr.store.errors import InvalidManifestError

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def manifest(**over) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": artifact.OCI_MANIFEST,
        "config": {"mediaType": artifact.CONFIG_DOCKER, "digest": D1, "size": 10},
        "layers": [{"mediaType": artifact.GGUF, "digest": D2, "size": 100}],
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_parses_dmr_manifest() -> None:
    m = artifact.parse_manifest(manifest())
    assert [d.digest for d in m.weights] == [D2]
    assert [d.digest for d in m.blobs] == [D2, D1]  # layers, then config (DMR's files order)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (manifest(schemaVersion=1), "schemaVersion"),
        (manifest(mediaType=artifact.OCI_INDEX), "index"),
        (manifest(mediaType="application/x-weird"), "media type"),
        (manifest(layers=[]), "no layers"),
        (manifest(layers=[{"mediaType": artifact.LICENSE, "digest": D2, "size": 1}]), "no GGUF"),
        (manifest(layers=[{"mediaType": artifact.GGUF, "digest": "sha256:../../x", "size": 1}]),
         "invalid digest"),
        (manifest(layers=[{"mediaType": artifact.GGUF, "digest": D2, "size": -1}]), "size"),
        (manifest(layers=[{"mediaType": artifact.GGUF, "digest": D2, "size": 1 << 50}]), "size"),
        (manifest(layers=[{"mediaType": artifact.GGUF, "digest": D2, "size": 1}] * 600), "layers"),
        (manifest(config={"mediaType": "application/vnd.oci.image.config.v1+json",
                          "digest": D1, "size": 1}), "not a model"),
        (manifest(layers=[{"mediaType": artifact.GGUF, "digest": D2, "size": 1},
                          {"mediaType": artifact.CNCF_GGUF, "digest": D1, "size": 1}]),
         "ambiguous"),
        (manifest(layers="nope"), "invalid model manifest"),
        (b"[1, 2]", "invalid model manifest"),
        (b"not json", "invalid model manifest"),
        (b"{" + b" " * (5 << 20) + b"}", "4 MiB"),
    ],
    ids=[f"case{i}" for i in range(15)],
)
def test_refusals(doc: bytes, why: str) -> None:
    with pytest.raises(InvalidManifestError, match=why):
        artifact.parse_manifest(doc)


def test_index_content_type_refused() -> None:
    with pytest.raises(InvalidManifestError, match="index"):
        artifact.parse_manifest(manifest(), artifact.OCI_INDEX)


def test_config_round_trip() -> None:
    cfg = artifact.ModelConfig(format="gguf", quantization="Q4_K_M", parameters="361.82M",
                               architecture="llama", size="256.35MiB", gguf={"a": "1"},
                               context_size=8192)
    raw = artifact.build_config(cfg, [D2])
    doc = json.loads(raw)
    assert doc["rootfs"] == {"type": "rootfs", "diff_ids": [D2]}
    assert doc["descriptor"]["created"].endswith("Z")
    parsed, created = artifact.parse_config(raw, artifact.CONFIG_DOCKER)
    assert parsed["context_size"] == 8192 and parsed["gguf"] == {"a": "1"}
    assert created is not None


def test_go_timestamps() -> None:
    t = artifact.parse_time("2025-03-01T10:20:30.123456789Z")
    assert t is not None and t.microsecond == 123456
    assert artifact.parse_time("2025-03-01T10:20:30+02:00").utcoffset().total_seconds() == 7200
    assert artifact.parse_time("yesterday") is None


def test_cncf_config() -> None:
    raw = json.dumps({
        "descriptor": {"createdAt": "2025-01-01T00:00:00Z", "name": "x"},
        "config": {"architecture": "llama", "format": "gguf", "paramSize": "8b",
                   "quantization": "Q4_K_M"},
        "modelfs": {"type": "layers", "diffIds": [D2]},
    }).encode()
    parsed, created = artifact.parse_config(raw, artifact.CONFIG_CNCF)
    assert parsed == {"format": "gguf", "architecture": "llama", "parameters": "8b",
                      "quantization": "Q4_K_M"}
    assert created is not None and created.year == 2025
