"""Config fields from a GGUF header: architecture, quantization, parameters, size, all keys.

The header is parsed here with bounds checks on every count and length (a broken or hostile file
gives a clean error, in bounded memory and in milliseconds: tokenizer arrays are skipped, not
decoded). The value types, file types and quantization names come from the `gguf` package.
"""

from __future__ import annotations

import mmap
import re
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from gguf import GGMLQuantizationType, GGUFValueType, LlamaFileType

from mr.errors import InvalidArgumentError

MAX_ARRAY_IN_CONFIG = 50  # longer arrays (tokens, merges, scores) are left out of the config
MAX_STRING = 1 << 24
MAX_DIMS = 4
_SCALARS = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}
SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


class GGUFFormatError(InvalidArgumentError):
    """The file is not a GGUF this store can package."""


@dataclass
class GGUFInfo:
    architecture: str = ""
    quantization: str = ""
    parameters: int = 0
    size: int = 0
    context_length: int | None = None
    kv: dict[str, str] = field(default_factory=dict)
    split_count: int = 1
    split_no: int = 0
    tensor_types: Counter[str] = field(default_factory=Counter)


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes, endian: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.endian = endian

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise GGUFFormatError("not a valid GGUF file: header runs past the end of the file")

    def scalar(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        self.need(size)
        value: int | float | bool = struct.unpack_from(self.endian + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def u32(self) -> int:
        return int(self.scalar("I"))

    def u64(self) -> int:
        return int(self.scalar("Q"))

    def string(self, keep: bool = True) -> str:
        length = self.u64()
        if length > MAX_STRING:
            raise GGUFFormatError("not a valid GGUF file: absurd string length")
        self.need(length)
        raw = bytes(self.buf[self.pos : self.pos + length]) if keep else b""
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Skip `count` strings (a vocabulary, merges) with string()'s checks, in one tight
        loop: a tokenizer's 100k strings one method call each took most of a pull's time."""
        buf, pos, end = self.buf, self.pos, self.end
        unpack = struct.Struct(self.endian + "Q").unpack_from
        for _ in range(count):
            if pos + 8 > end:
                raise GGUFFormatError("not a valid GGUF file: header runs past the end of the file")
            (length,) = unpack(buf, pos)
            if length > MAX_STRING:
                raise GGUFFormatError("not a valid GGUF file: absurd string length")
            pos += 8 + length
        if pos > end:  # lengths are capped, so the sum cannot wrap around: one check at the end
            raise GGUFFormatError("not a valid GGUF file: header runs past the end of the file")
        self.pos = pos

    def value_type(self) -> GGUFValueType:
        raw = self.u32()
        try:
            return GGUFValueType(raw)
        except ValueError as exc:
            raise GGUFFormatError(f"not a valid GGUF file: unknown value type {raw}") from exc

    def value(self, vtype: GGUFValueType) -> str | None:
        """The value as a config string, or None for arrays too long to keep (skipped)."""
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            etype = self.value_type()
            count = self.u64()
            if count > self.end - self.pos:  # every element takes at least one byte
                raise GGUFFormatError("not a valid GGUF file: absurd array length")
            keep = count <= MAX_ARRAY_IN_CONFIG
            if etype in _SCALARS and not keep:
                size = struct.calcsize(_SCALARS[etype]) * count
                self.need(size)
                self.pos += size
                return None
            if etype == GGUFValueType.STRING and not keep:
                self.skip_strings(count)
                return None
            items = []
            for _ in range(count):
                if etype == GGUFValueType.ARRAY:
                    raise GGUFFormatError("not a valid GGUF file: nested arrays")
                if etype == GGUFValueType.STRING:
                    items.append(self.string(keep))
                else:
                    items.append(_fmt(self.scalar(_SCALARS[etype])))
            return ", ".join(items) if keep else None
        return _fmt(self.scalar(_SCALARS[vtype]))


def _fmt(value: int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:f}"
    return str(value)


def _quant_name(file_type: int) -> str:
    try:
        name = LlamaFileType(file_type).name
    except ValueError:
        return ""
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def read_header(path: Path) -> GGUFInfo:
    """Parse one GGUF file's header and tensor infos. A read-only file (a committed blob: never
    written again) that was parsed before with the same inode, size and modification time is
    not parsed again: a pull checks an Ollama model's weights before the commit and reads its
    config from them after (chmod and rename keep all four). A writable file is always parsed:
    a check must see the bytes that are there."""
    try:
        st = path.stat()
        if st.st_size < 24:
            raise GGUFFormatError(f"not a valid GGUF file: {path.name}")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        info = None if st.st_mode & 0o222 else _parsed.get(key)
        if info is None:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                info = _parse(buf, st.st_size)
            _keep(key, info)
    except OSError as exc:
        raise GGUFFormatError(f"cannot read GGUF file {path.name}: {exc.strerror}") from exc
    return replace(info, kv=dict(info.kv), tensor_types=Counter(info.tensor_types))  # the caller's own


_PARSED_KEPT = 16
_parsed: dict[tuple[int, int, int, int], GGUFInfo] = {}  # oldest first
_parsed_lock = threading.Lock()  # the server resolves models on worker threads


def _keep(key: tuple[int, int, int, int], info: GGUFInfo) -> None:
    with _parsed_lock:
        while len(_parsed) >= _PARSED_KEPT:
            del _parsed[next(iter(_parsed))]
        _parsed[key] = info


def _parse(buf: mmap.mmap, size: int) -> GGUFInfo:
    if bytes(buf[:4]) != b"GGUF":
        raise GGUFFormatError("not a valid GGUF file: bad magic")
    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if version & 0xFFFF == 0:
        endian = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version not in (2, 3):
        raise GGUFFormatError(f"unsupported GGUF version {version}")
    r = _Reader(buf, endian)
    r.pos = 8
    n_tensors, n_kv = r.u64(), r.u64()
    if n_tensors > size // 24 or n_kv > size // 12:
        raise GGUFFormatError("not a valid GGUF file: absurd tensor or key count")
    info = GGUFInfo(size=size)
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.value_type())
        if value is not None:
            info.kv[key] = value
    for _ in range(n_tensors):
        r.string(keep=False)
        n_dims = r.u32()
        if n_dims > MAX_DIMS:
            raise GGUFFormatError("not a valid GGUF file: too many tensor dimensions")
        count = 1
        for _ in range(n_dims):
            count *= r.u64()
        if count >= 1 << 63:
            raise GGUFFormatError("not a valid GGUF file: tensor too large")
        ttype = r.u32()
        r.u64()  # offset
        info.parameters += count
        try:
            info.tensor_types[GGMLQuantizationType(ttype).name] += count
        except ValueError:
            info.tensor_types[str(ttype)] += count
    _derive(info)
    return info


def _derive(info: GGUFInfo) -> None:
    kv = info.kv
    info.architecture = kv.get("general.architecture", "")
    file_type = kv.get("general.file_type")
    if file_type is not None and file_type.isdigit():
        info.quantization = _quant_name(int(file_type))
    if not info.quantization and info.tensor_types:
        info.quantization = info.tensor_types.most_common(1)[0][0]
    ctx = kv.get(f"{info.architecture}.context_length", "")
    info.context_length = int(ctx) if ctx.isdigit() else None
    count, no = kv.get("split.count", "1"), kv.get("split.no", "0")
    info.split_count = int(count) if count.isdigit() else 1
    info.split_no = int(no) if no.isdigit() else 0


def shard_paths(path: Path) -> list[Path]:
    """All shards of a split GGUF given its first shard (`x-00001-of-00003.gguf`), else [path]."""
    m = SHARD_NAME.match(path.name)
    if not m:
        return [path]
    no, count = int(m["no"]), int(m["count"])
    if count < 1 or no < 1 or no > count:
        raise GGUFFormatError(f"bad shard name: {path.name}")
    if no != 1:
        raise GGUFFormatError(f"give the first shard of a split GGUF, not {path.name}")
    paths = [
        path.with_name(f"{m['prefix']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    ]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise GGUFFormatError(f"missing GGUF shards: {', '.join(missing[:5])}")
    return paths


def read_model(paths: list[Path]) -> GGUFInfo:
    """Header of the first file, parameters and size summed over all shards."""
    infos = [read_header(p) for p in paths]
    first = infos[0]
    if len(paths) > 1:
        if first.split_count not in (1, len(paths)):
            raise GGUFFormatError("GGUF split.count does not match the number of shards")
        for i, info in enumerate(infos):
            if info.split_count > 1 and info.split_no != i:
                raise GGUFFormatError(f"GGUF shard {paths[i].name} is out of order")
        first.parameters = sum(i.parameters for i in infos)
        first.size = sum(i.size for i in infos)
        for info in infos[1:]:
            first.tensor_types.update(info.tensor_types)
    return first


def format_parameters(n: int) -> str:
    """134515008 -> "134.52M" (DMR's newer form, no space)."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "t": 1e12, "tb": 1e12, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_human(text: str) -> float | None:
    """"256.35 MiB", "256.35MiB", "361.82 M", "1.2B" -> a number (both DMR spellings)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text or "")
    if not m:
        return None
    unit = m[2].lower()
    if unit == "b" and "." in m[1]:
        unit = "g"  # "1.2B" parameters means billions
    factor = _UNITS.get(unit)
    return float(m[1]) * factor if factor else None
