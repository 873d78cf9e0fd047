"""Every model source: Hugging Face (`hf.co/USER/REPO[:QUANT]`), Ollama's library
(`ollama.com/NAME`), registry mirrors (MR_REGISTRY_MIRRORS), and HF_TOKEN's one destination.

No internet here: hf.co, Docker Hub and Ollama's registry are reached through a mirror that is
the real loopback registry, and Hugging Face itself is a loopback stub (HF_ENDPOINT)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mr.errors import InvalidArgumentError
from mr.store import Store, mirrors, package_gguf
from mr.store import reference as refs
from mr.store.errors import RegistryError
from mr.store.pull import pull
from mr.store.push import push as push_model
from support.ollama_push import config_json, layers_for, manifest_json, push, sha256
from support.registry_stub import Fault, StubRegistry

HF_REPO = "bartowski/smollm2-135m-instruct-gguf"
HF_NAME = "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF"
SECRET = "hf_secret_token_123"


def cli(*args: str):
    from mr.cli import cli as group

    return CliRunner().invoke(group, list(args), catch_exceptions=True)


@pytest.fixture
def no_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face itself at a loopback port where nothing listens: asking it fails at once."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_TOKEN", raising=False)


def test_names_keep_their_source() -> None:
    assert refs.normalise(HF_NAME) == f"huggingface.co/{HF_REPO}:latest"
    assert refs.normalise(f"{HF_NAME}:Q4_K_M") == f"huggingface.co/{HF_REPO}:Q4_K_M"
    assert refs.normalise(f"huggingface.co/{HF_REPO}:Q8_0") == f"huggingface.co/{HF_REPO}:Q8_0"
    ollama = "registry.ollama.ai/library/smollm2:135m"
    assert refs.normalise("ollama.com/smollm2:135m") == ollama
    assert refs.normalise("ollama.com/library/smollm2:135m") == ollama
    assert refs.normalise(ollama) == ollama
    assert refs.display(ollama) == "ollama.com/smollm2:135m"
    assert refs.normalise("ollama.com/someone/model") == "registry.ollama.ai/someone/model:latest"
    assert refs.normalise("smollm2") == "docker.io/ai/smollm2:latest"  # not Ollama's


def test_hf_wire_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert refs.wire_host("huggingface.co") == "hf.co"
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.com/")
    assert refs.wire_host("huggingface.co") == "hub.example.com"


def test_mirror_setting() -> None:
    parsed = mirrors.parse("hf.co=127.0.0.1:5000, docker.io=https://mirror.example:5000/,"
                           "docker.io=b.example,ollama.com=127.0.0.1:5001")
    assert parsed == {"huggingface.co": ["127.0.0.1:5000"],
                      "docker.io": ["mirror.example:5000", "b.example"],
                      "registry.ollama.ai": ["127.0.0.1:5001"]}
    for bad in ("hf.co", "hf.co=", "=x.example", "hf.co=bad host", "hf.co=a/b"):
        with pytest.raises(InvalidArgumentError, match="MR_REGISTRY_MIRRORS"):
            mirrors.parse(bad)


def test_every_source_through_mirrors(registry, store: Store, make_gguf, monkeypatch,
                                      no_hf) -> None:
    """hf.co, Docker Hub and Ollama's library, each through a mirror (the real registry): the
    models keep their source names, and two `smollm2` from two places do not collide."""
    monkeypatch.setenv("MR_REGISTRY_MIRRORS", f"hf.co={registry.host},docker.io={registry.host},"
                                              f"ollama.com={registry.host}")
    hf_gguf, ollama_gguf = make_gguf(rows=32).read_bytes(), make_gguf(rows=48).read_bytes()
    hf_id = push(registry.host, HF_REPO, "Q4_K_M", layers_for(hf_gguf))
    ollama_id = push(registry.host, "library/smollm2", "latest", layers_for(ollama_gguf))
    package_gguf(store, make_gguf(rows=16), f"{registry.host}/ai/smollm2:latest")
    assert push_model(store, f"{registry.host}/ai/smollm2:latest")
    store.remove(f"{registry.host}/ai/smollm2:latest")

    for name in (f"{HF_NAME}:Q4_K_M", "ollama.com/smollm2", "smollm2"):
        r = cli("pull", name)
        assert r.exit_code == 0, (name, r.output, r.exception)
    assert store.resolve(f"huggingface.co/{HF_REPO}:Q4_K_M").id == hf_id
    assert store.resolve("registry.ollama.ai/library/smollm2:latest").id == ollama_id
    assert not store.resolve("smollm2").manifest.is_ollama
    names = sorted(line.split()[0] for line in cli("list").output.splitlines()[1:])
    assert names == sorted([f"huggingface.co/{HF_REPO}:Q4_K_M", "ollama.com/smollm2",
                            "smollm2"])


def test_no_mirror_means_the_source(registry, store: Store, make_gguf, no_hf) -> None:
    """Without MR_REGISTRY_MIRRORS an hf.co pull goes to Hugging Face (here: nobody)."""
    push(registry.host, HF_REPO, "Q4_K_M", layers_for(make_gguf(rows=16).read_bytes()))
    r = cli("pull", f"{HF_NAME}:Q4_K_M")
    assert r.exit_code != 0 and "127.0.0.1:9" in str(r.exception)
    assert store.list() == []


def _hf_stub(make_gguf) -> tuple[StubRegistry, str]:
    hf = StubRegistry()
    layers = layers_for(make_gguf(rows=16).read_bytes())
    config = config_json(layers)
    blobs = {sha256(d): d for _, d in layers} | {sha256(config): config}
    hf.add(HF_REPO, "latest", manifest_json(layers, config), blobs,
           content_type="application/vnd.docker.distribution.manifest.v2+json")
    return hf, sha256(manifest_json(layers, config))


def _tokens(server: StubRegistry) -> list[str]:
    return [s.headers.get("Authorization", "") for s in server.seen]


def test_mirror_without_the_model_falls_back_and_hf_token_goes_to_hf_only(
        store: Store, make_gguf, monkeypatch) -> None:
    hf, model_id = _hf_stub(make_gguf)
    mirror = StubRegistry()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://{hf.host}")
        monkeypatch.setenv("HF_TOKEN", SECRET)
        monkeypatch.setenv("MR_REGISTRY_MIRRORS", f"hf.co={mirror.host}")
        model = pull(store, HF_NAME).model  # no tag: Ollama's `latest`, Hugging Face's Q4_K_M
        assert model.id == model_id and model.tags == [f"huggingface.co/{HF_REPO}:latest"]
        assert mirror.requests_for("/manifests/latest")  # the mirror was asked first
        assert all(SECRET not in t for t in _tokens(mirror))
        assert _tokens(hf) and all(t == f"Bearer {SECRET}" for t in _tokens(hf))
    finally:
        hf.close()
        mirror.close()


def test_mirror_serving_bad_bytes_falls_back(store: Store, make_gguf, monkeypatch) -> None:
    hf, model_id = _hf_stub(make_gguf)
    mirror, _ = _hf_stub(make_gguf)
    mirror.manifests = hf.manifests
    mirror.blobs = dict(hf.blobs)
    mirror.faults.append(Fault(match="/blobs/", kind="corrupt", times=100))
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://{hf.host}")
        monkeypatch.setenv("MR_REGISTRY_MIRRORS", f"hf.co={mirror.host}")
        assert pull(store, HF_NAME).model.id == model_id
        assert hf.requests_for("/blobs/")
        # and when the source fails too, the error names both
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        store.remove(model_id, force=True)
        with pytest.raises(RegistryError, match=r"127\.0\.0\.1:9.*after mirror .*digest mismatch"):
            pull(store, HF_NAME)
    finally:
        hf.close()
        mirror.close()


def test_hf_token_never_reaches_other_registries(store: Store, make_gguf, monkeypatch) -> None:
    other, model_id = _hf_stub(make_gguf)
    try:
        monkeypatch.setenv("HF_TOKEN", SECRET)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        assert pull(store, f"{other.host}/{HF_REPO}").model.id == model_id
        assert other.seen and all(SECRET not in t for t in _tokens(other))
    finally:
        other.close()


def test_hf_token_needs_https_off_loopback(monkeypatch) -> None:
    from mr.store.registry import hf_token_header

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hf_token_header("huggingface.co", "hf.co", "https") == f"Bearer {SECRET}"
    assert hf_token_header("huggingface.co", "hf.co", "http") is None
    assert hf_token_header("huggingface.co", "mirror.example", "https") is None
    assert hf_token_header("docker.io", "hf.co", "https") is None


def test_pinned_digest_through_mirror(store: Store, make_gguf, monkeypatch) -> None:
    hf, _ = _hf_stub(make_gguf)
    try:
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("MR_REGISTRY_MIRRORS", f"hf.co={hf.host}")
        wrong = "sha256:" + "0" * 64
        hf.manifests[HF_REPO][wrong] = hf.manifests[HF_REPO]["latest"]
        with pytest.raises(RegistryError, match=r"after mirror .*: digest mismatch"):
            pull(store, f"{HF_NAME}@{wrong}")
        assert store.list() == []
    finally:
        hf.close()
