"""A random-weights GGUF with a real model's exact shape and tokenizer (the GPU run's model).

The GPU machine has no network and the carry limit is too small for the real SmolLM2 (92 MiB), so
the run ships a "header" GGUF instead: every metadata key of the real model (general.*, llama.*,
tokenizer.*, chat template) and, under `mr.tensors`, each tensor's name, GGML shape and type, with
no tensor data (about 3 MB). From it (or from the real GGUF itself) `write_random_model` makes a
model of the same architecture, layer count, widths, heads, rope and vocabulary, random weights:

    python -m bench.random_model header SRC.gguf HEADER.gguf      # on a machine with the model
    python -m bench.random_model model HEADER.gguf OUT.gguf [--layers N] [--type q8_0|f16]

It loads and generates (nonsense) at the real model's speed and memory: that is all a speed,
offload or batching check needs. Only numpy and the gguf package are used (no mr import).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TENSORS_KEY = "mr.tensors"  # "name dim0xdim1 TYPE" per tensor, GGML order (dim0 is the row length)
QTYPES = ("q8_0", "f16")  # what the 2-D weights can be written as
WEIGHT_STD = 0.02  # as tests/support.write_tiny_llama: small enough that 30 pre-norm layers stay finite


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # GGML order: shape[0] is the contiguous row length
    type_name: str  # GGMLQuantizationType name in the source (Q4_1, F32, ...)

    @property
    def layer(self) -> int | None:
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "blk" and parts[1].isdigit() else None

    def encode(self) -> str:
        return f"{self.name} {'x'.join(map(str, self.shape))} {self.type_name}"

    @classmethod
    def decode(cls, text: str) -> TensorSpec:
        name, dims, type_name = text.split(" ")
        return cls(name, tuple(int(d) for d in dims.split("x")), type_name)


@dataclass(frozen=True)
class Source:
    """What a model looks like: its metadata (key -> (value, types)) and its tensors."""

    arch: str
    fields: dict[str, tuple[Any, list[Any]]]
    tensors: list[TensorSpec]

    def int(self, key: str) -> int:
        return int(self.fields[f"{self.arch}.{key}"][0])

    @property
    def n_layer(self) -> int:
        return self.int("block_count")


def read_source(path: Path) -> Source:
    """The shape of a real GGUF, or of a header GGUF written by `write_header`."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields: dict[str, tuple[Any, list[Any]]] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):  # the container's own counters, not metadata
            continue
        fields[name] = (field.contents(), [gguf.GGUFValueType(t) for t in field.types])
    if reader.tensors:
        tensors = [TensorSpec(t.name, tuple(int(d) for d in t.shape),
                              gguf.GGMLQuantizationType(t.tensor_type).name) for t in reader.tensors]
    elif TENSORS_KEY in fields:
        tensors = [TensorSpec.decode(s) for s in fields.pop(TENSORS_KEY)[0]]
    else:
        raise ValueError(f"{path} has neither tensors nor a {TENSORS_KEY} list: not a model or a header")
    arch = str(fields["general.architecture"][0])
    return Source(arch=arch, fields=fields, tensors=tensors)


def _add_field(writer: Any, name: str, value: Any, types: list[Any]) -> None:
    import gguf

    if types[0] == gguf.GGUFValueType.ARRAY:
        # keep the element type (token_type is INT32, scores FLOAT32): the loader checks them
        writer.add_key_value(name, list(value), types[0], sub_type=types[-1])
    else:
        writer.add_key_value(name, value, types[0])


def _copy_fields(src: Source, writer: Any, skip: set[str]) -> None:
    for name, (value, types) in src.fields.items():
        if name != "general.architecture" and name not in skip:
            _add_field(writer, name, value, types)


def write_header(src_path: Path, dest: Path) -> Path:
    """All of `src_path`'s metadata plus its tensor list, no tensor data: a few MB."""
    import gguf

    src = read_source(src_path)
    writer = gguf.GGUFWriter(str(dest), arch=src.arch)
    _copy_fields(src, writer, skip=set())
    writer.add_array(TENSORS_KEY, [t.encode() for t in src.tensors])
    _finish(writer)
    return dest


def _finish(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _weights(spec: TensorSpec, rng: np.random.Generator, qtype: str) -> tuple[np.ndarray, Any]:
    """(data, raw_dtype for add_tensor) of one tensor: norms are ones, matrices random."""
    import gguf

    rows = tuple(reversed(spec.shape))  # numpy order: (ne1, ne0)
    if len(spec.shape) == 1:
        return np.ones(rows, dtype=np.float32), None
    values = (rng.standard_normal(rows, dtype=np.float32) * WEIGHT_STD)
    if qtype == "f16":
        return values.astype(np.float16), None
    kind = gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.quantize(values, kind), kind


def write_random_model(src_path: Path, dest: Path, *, n_layer: int | None = None, qtype: str = "q8_0",
                       seed: int = 0, name: str | None = None) -> Path:
    """A model shaped exactly like `src_path` (a real GGUF or a header), random weights.

    n_layer: keep only the first N blocks (a tiny, fast version of the same shape); None: all.
    qtype: "q8_0" (the 2-D weights quantized, as a quantized model runs) or "f16"."""
    import gguf

    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {', '.join(QTYPES)}")
    src = read_source(src_path)
    n_layer = src.n_layer if n_layer is None else n_layer
    if not 1 <= n_layer <= src.n_layer:
        raise ValueError(f"n_layer must be in [1, {src.n_layer}]")
    file_type = gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    writer = gguf.GGUFWriter(str(dest), arch=src.arch)
    skip = {f"{src.arch}.block_count", "general.file_type", "general.name"}
    _copy_fields(src, writer, skip)
    writer.add_block_count(n_layer)
    writer.add_file_type(file_type)
    writer.add_name(name or f"{src.fields.get('general.name', ('model',))[0]} (random weights, {qtype})")
    rng = np.random.default_rng(seed)
    for spec in src.tensors:
        if spec.layer is not None and spec.layer >= n_layer:
            continue
        data, raw = _weights(spec, rng, qtype)
        writer.add_tensor(spec.name, data, raw_dtype=raw)
    _finish(writer)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.random_model", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("header", help="metadata + tensor list of a real GGUF, no data")
    h.add_argument("src", type=Path)
    h.add_argument("dest", type=Path)
    m = sub.add_parser("model", help="a random-weights model shaped like SRC (a GGUF or a header)")
    m.add_argument("src", type=Path)
    m.add_argument("dest", type=Path)
    m.add_argument("--layers", type=int, default=None, help="keep the first N blocks (default: all)")
    m.add_argument("--type", choices=QTYPES, default="q8_0", dest="qtype")
    m.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    start = time.perf_counter()
    if args.cmd == "header":
        out = write_header(args.src, args.dest)
    else:
        out = write_random_model(args.src, args.dest, n_layer=args.layers, qtype=args.qtype, seed=args.seed)
    print(f"[random_model] wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
