"""Ollama-format artifacts on a real registry (Debian's docker-registry): pull, list, inspect,
show, rm, push as DMR, templates, and every hostile manifest refused with nothing committed."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner
from test_registry import check_artifact

from mr.errors import ModelLoadError
from mr.store import Store, artifact
from mr.store.errors import InvalidManifestError
from mr.store.ollama_template import CHATML, GEMMA, LLAMA3, shape, translate
from mr.store.pull import pull
from support.ollama_push import CHATML_GO, P, config_json, layers_for, push

PARAMS = {"stop": ["<|im_end|>"], "temperature": 0.2, "num_ctx": 2048, "top_k": 7}


def cli(*args: str):
    from mr.cli import cli as group

    return CliRunner().invoke(group, list(args), catch_exceptions=True)


def blob_files(store: Store) -> set[str]:
    directory = store.root / "blobs" / "sha256"
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def test_pull_list_inspect_show_rm(registry, store: Store, make_gguf) -> None:
    gguf = make_gguf(rows=64).read_bytes()
    layers = layers_for(gguf, system="You are terse.", params=PARAMS, license_text="MIT terms")
    model_id = push(registry.host, "library/smol", "135m", layers)
    ref = f"{registry.host}/library/smol:135m"

    r = cli("pull", ref)
    assert r.exit_code == 0, r.output
    assert "Model pulled successfully" in r.output
    model = store.resolve(ref)
    assert model.id == model_id  # the registry's manifest digest, as for DMR artifacts
    assert model.gguf_path.read_bytes() == gguf
    assert model.config["architecture"] == "llama"  # from the GGUF, not Ollama's "amd64"
    assert model.config["context_size"] == 2048  # num_ctx
    assert model.params == PARAMS and model.system == "You are terse."

    listed = cli("list")
    row = next(line for line in listed.output.splitlines() if "smol" in line)
    assert row.split()[:4] == [f"{registry.host}/library/smol:135m", model.config["parameters"],
                               "F32", "llama"]
    assert "2048" in row.split()

    inspected = json.loads(cli("inspect", ref).output)
    assert inspected["id"] == model_id and inspected["config"]["format"] == "gguf"

    shown = json.loads(cli("show", "--json", ref).output)
    assert shown["params"] == PARAMS and shown["system"] == "You are terse."
    assert shown["licenses"] == ["MIT terms"]
    human = cli("show", ref).output
    assert "temperature" in human and "You are terse." in human

    again = cli("pull", ref)
    assert again.exit_code == 0 and "already present" in again.output

    r = cli("rm", ref)
    assert r.exit_code == 0 and r.output.splitlines()[-1] == f"Deleted: {model_id}"
    assert store.list() == [] and blob_files(store) == set()


def test_pushed_again_as_dmr_format(registry, store: Store, make_gguf) -> None:
    gguf = make_gguf(rows=64).read_bytes()
    push(registry.host, "library/smol", "dmr", layers_for(gguf, params=PARAMS))
    src = f"{registry.host}/library/smol:dmr"
    pull(store, src)
    target = f"{registry.host}/test/from-ollama:v1"
    r = cli("tag", src, target)
    assert r.exit_code == 0, r.output
    r = cli("push", target)
    assert r.exit_code == 0, r.output
    resp = registry.manifest("test/from-ollama", "v1")
    config = check_artifact(registry, "test/from-ollama", "v1", resp.headers["Docker-Content-Digest"])
    assert config["config"]["context_size"] == 2048
    assert config["config"]["gguf"]["general.architecture"] == "llama"
    manifest = resp.json()
    assert manifest["layers"][0]["digest"] == store.resolve(src).manifest.weights[0].digest
    assert [d["mediaType"] for d in manifest["layers"]] == [artifact.GGUF, artifact.LICENSE]

    # and that artifact pulls back as an ordinary DMR model with the same weights
    r = cli("rm", target)
    assert r.exit_code == 0, r.output
    pulled = pull(store, target).model
    assert not pulled.manifest.is_ollama and pulled.gguf_path.read_bytes() == gguf


def test_template_rule(registry, store: Store, make_gguf) -> None:
    own = make_gguf(rows=16).read_bytes()
    bare = make_gguf(rows=16, template=None).read_bytes()
    cases = {"own": (own, CHATML_GO), "chatml": (bare, CHATML_GO),
             "odd": (bare, "{{ .Prompt }} ### {{ .Response }}")}
    for tag, (gguf, template) in cases.items():
        push(registry.host, "library/tpl", tag, layers_for(gguf, template=template))
        pull(store, f"{registry.host}/library/tpl:{tag}")
    # the GGUF's own Jinja template wins: no override
    assert store.resolve(f"{registry.host}/library/tpl:own").chat_template_path is None
    # no template in the GGUF: the ChatML Go template becomes ChatML Jinja
    path = store.resolve(f"{registry.host}/library/tpl:chatml").chat_template_path
    assert path is not None and path.read_text() == CHATML
    # a shape mr cannot translate: a clear error at load
    odd = store.resolve(f"{registry.host}/library/tpl:odd")
    with pytest.raises(ModelLoadError, match=r"no chat template.*vnd\.ollama\.image\.template"):
        _ = odd.chat_template_path
    assert cli("show", f"{registry.host}/library/tpl:odd").exit_code == 0  # only loading fails


def test_go_template_shapes() -> None:
    assert translate(CHATML_GO) == CHATML
    llama3 = ("{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
              "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>")
    gemma = "{{ range .Messages }}<start_of_turn>{{ .Role }}\n{{ .Content }}<end_of_turn>{{ end }}"
    assert translate(llama3) == LLAMA3 and translate(gemma) == GEMMA
    assert shape("<|im_start|>{{ .Prompt }}") is None  # half a shape
    assert shape("<|im_start|><|im_end|><start_of_turn>{{ .Prompt }}") is None  # two shapes
    assert shape("<|im_start|><|im_end|>") is None  # no conversation in it


HUGE = 1 << 20
BEFORE_DOWNLOAD = {"two_models", "unknown_ollama", "unknown_type", "adapter", "no_model",
                   "params_huge", "template_huge"}


@pytest.mark.parametrize(("name", "why"), [
    ("two_models", "2 model layers"),
    ("unknown_ollama", "unknown Ollama layer type 'application/vnd.ollama.image.weights'"),
    ("unknown_type", "unknown layer media type 'application/x-tar'"),
    ("adapter", "LoRA adapter"),
    ("no_model", "no model layer"),
    ("projector_not_gguf", "the projector layer is not a GGUF file"),
    ("model_not_gguf", "the model layer is not a GGUF file"),
    ("params_not_json", "the params layer is not JSON"),
    ("params_not_object", "the params layer is not a JSON object"),
    ("params_bad_type", "the params layer: Expected `float | null`, got `str` - at `$.temperature`"),
    ("params_huge", "the params layer is"),
    ("template_huge", "the template layer is"),
    ("template_not_utf8", "the template layer is not UTF-8"),
])
def test_hostile_manifests_refused(registry, store: Store, make_gguf, name: str, why: str) -> None:
    gguf = make_gguf(rows=16).read_bytes()
    other = make_gguf(rows=16).read_bytes()
    layers = {
        "two_models": [(P + "model", gguf), (P + "model", other)],
        "unknown_ollama": [(P + "model", gguf), (P + "weights", b"x")],
        "unknown_type": [(P + "model", gguf), ("application/x-tar", b"x")],
        "adapter": [(P + "model", gguf), (P + "adapter", other)],
        "no_model": [(P + "license", b"MIT")],
        "projector_not_gguf": [(P + "model", gguf), (P + "projector", b"\x7fELF" + b"\0" * 64)],
        "model_not_gguf": [(P + "model", b"PK\x03\x04" + b"\0" * 64)],
        "params_not_json": [(P + "model", gguf), (P + "params", b"temperature 0.2")],
        "params_not_object": [(P + "model", gguf), (P + "params", b"[1, 2]")],
        "params_bad_type": [(P + "model", gguf), (P + "params", b'{"temperature": "hot"}')],
        "params_huge": [(P + "model", gguf), (P + "params", b'{"a": "' + b"x" * HUGE + b'"}')],
        "template_huge": [(P + "model", gguf), (P + "template", b"x" * (HUGE + 1))],
        "template_not_utf8": [(P + "model", gguf), (P + "template", b"\xff\xfe{{ .Prompt }}")],
    }[name]
    push(registry.host, "library/bad", name, layers)
    with pytest.raises(InvalidManifestError, match="invalid model manifest") as info:
        pull(store, f"{registry.host}/library/bad:{name}")
    assert why in str(info.value)
    assert store.list() == []
    if name in BEFORE_DOWNLOAD:
        assert blob_files(store) == set()
    else:  # the refused layer's bytes never become a committed blob (the valid ones may)
        assert hashlib.sha256(layers[-1][1]).hexdigest() not in blob_files(store)
    r = cli("pull", f"{registry.host}/library/bad:{name}")
    assert isinstance(r.exception, InvalidManifestError) and r.exception.exit_code == 8


def test_container_image_is_not_a_model(registry, store: Store) -> None:
    layers = [("application/vnd.docker.image.rootfs.diff.tar.gzip", b"\x1f\x8b" + b"\0" * 30)]
    push(registry.host, "library/busybox", "latest", layers, config=config_json(layers))
    with pytest.raises(InvalidManifestError, match="unknown layer media type"):
        pull(store, f"{registry.host}/library/busybox:latest")


def test_lying_size_leaves_the_committed_model_whole(registry, store: Store, make_gguf) -> None:
    """A second Ollama manifest names M1's weights with the size off by one: refused, and M1's
    blob stays (the confirmed blob-deletion bug, on the Ollama path)."""
    gguf = make_gguf(rows=64).read_bytes()
    layers = layers_for(gguf, params=PARAMS)
    push(registry.host, "library/m1", "v1", layers)
    m1 = pull(store, f"{registry.host}/library/m1:v1").model
    push(registry.host, "library/m2", "v1", layers, sizes={0: len(gguf) + 1})
    with pytest.raises(InvalidManifestError, match="already in the store"):
        pull(store, f"{registry.host}/library/m2:v1")
    assert store.blobs.has(m1.manifest.weights[0].digest, len(gguf))
    assert store.resolve(m1.id).gguf_path.read_bytes() == gguf
    assert [m.id for m in store.list()] == [m1.id]


def test_interrupted_pull_resumes(registry, store: Store, make_gguf, monkeypatch) -> None:
    """Resume and the atomic commit hold for Ollama artifacts: a pull cut after the first
    layer leaves no model, and the next pull fetches only what is missing."""
    from mr.store import pull as pull_mod

    gguf = make_gguf(rows=256).read_bytes()
    push(registry.host, "library/cut", "v1", layers_for(gguf, params=PARAMS))
    real = pull_mod.BlobDownloader.fetch
    calls = {"n": 0}

    def flaky(self, desc):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, desc)

    monkeypatch.setattr(pull_mod.BlobDownloader, "fetch", flaky)
    with pytest.raises(KeyboardInterrupt):
        pull(store, f"{registry.host}/library/cut:v1")
    assert store.list() == []
    monkeypatch.setattr(pull_mod.BlobDownloader, "fetch", real)
    result = pull(store, f"{registry.host}/library/cut:v1")
    assert result.bytes_downloaded < len(gguf) + 4096  # the weights came in the first pull
    assert result.model.gguf_path.read_bytes() == gguf
