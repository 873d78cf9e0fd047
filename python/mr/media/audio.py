"""Audio clips from untrusted bytes to mono float32 PCM at the projector's sample rate.

WAV, MP3 and FLAC are decoded by libsndfile through soundfile (its wheels bundle libsndfile with
mpg123 for MP3), never by the decoders llama.cpp bundles (miniaudio). The bytes are sniffed first,
so libsndfile's parsers for the dozens of other formats it knows never see them. The duration is
checked from the header where the format gives one, and the frames read are capped in any case:
a header that lies, or a FLAC of silence that expands a thousandfold, is stopped at the bound.

Resampling is soxr (libsoxr, the resampler librosa and torchaudio default to): maintained, a
proper anti-aliasing filter, and a streaming API, so memory stays bounded by the output (at the
target rate) whatever rate the clip claims. scipy's resample_poly would need the whole clip at
its own rate in memory and a far larger dependency.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soundfile  # type: ignore[import-untyped]  # no py.typed: used through the Protocols below
import soxr  # type: ignore[import-untyped]

from mr.media.refusal import refusal, size_text
from mr.media.types import Audio, MediaLimits

ACCEPTED = "WAV, MP3 or FLAC"
# libsndfile's major format names for each accepted container.
_SNDFILE_FORMATS = {"WAV": ("WAV", "WAVEX", "RF64"), "MP3": ("MP3",), "FLAC": ("FLAC",)}
MIN_RATE, MAX_RATE = 1000, 384_000  # Hz a clip may claim; outside this a header is nonsense
_BLOCK_SAMPLES = 1 << 18  # samples (all channels together) per read: memory bounded per block
_UNKNOWN_FRAMES = 1 << 62  # libsndfile's "length unknown" (SF_COUNT_MAX) and anything near it

Samples = npt.NDArray[np.float32]


class _Clip(Protocol):
    """What mr uses of soundfile.SoundFile (soundfile ships no type information)."""

    format: str
    samplerate: int
    channels: int
    frames: int

    def read(self, frames: int, dtype: str, always_2d: bool) -> Samples: ...
    def close(self) -> None: ...


class _Sequential(soundfile.SoundFile):  # type: ignore[misc]  # soundfile is untyped
    """A SoundFile that never seeks. soundfile seeks after every read to re-sync its position,
    which fails on a clip whose header gives no length (a streamed FLAC, total samples 0);
    mr only ever reads forward, so there is nothing to re-sync."""

    def seekable(self) -> bool:
        return False


class _Resampler(Protocol):
    """What mr uses of soxr.ResampleStream."""

    def resample_chunk(self, x: Samples, last: bool = False) -> Samples: ...


def decode_audio(data: bytes, fmt: str | None, field: str, sample_rate: int, limits: MediaLimits) -> Audio:
    """Decode one clip (WAV, MP3, FLAC) to mono float32 at `sample_rate` Hz, at most
    limits.max_audio_seconds long. fmt is the client's hint ("mp3", "audio/wav"): the bytes
    decide, the hint only names what was sent in a refusal."""
    if not data:
        raise refusal(field, "the audio is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise refusal(field, f"the audio is {size_text(len(data))}, more than the "
                             f"{size_text(limits.max_bytes)} allowed")
    container = sniff(data)
    if container is None:
        sent = f" (sent as {fmt!r})" if fmt else ""
        raise refusal(field, f"the audio{sent} is not a {ACCEPTED} file")
    try:
        clip: _Clip = _Sequential(io.BytesIO(data))
    except Exception as exc:  # libsndfile's error text speaks of files and pipes: say it plainly
        raise refusal(field, f"the {container} audio is corrupt or truncated") from exc
    try:
        _check_header(clip, container, field, limits)
        pcm = _read_mono(clip, sample_rate, field, limits)
    finally:
        clip.close()
    samples = np.clip(np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    raw = samples.astype("<f4").tobytes()
    return Audio(pcm=raw, sample_rate=sample_rate, digest=audio_digest(sample_rate, raw))


def audio_digest(sample_rate: int, pcm: bytes) -> str:
    """sha256 of the rate and the samples, as the prefix cache keys a clip."""
    digest = hashlib.sha256(struct.pack("<Q", sample_rate))
    digest.update(pcm)
    return digest.hexdigest()


def sniff(data: bytes) -> str | None:
    """The accepted container the bytes start with (WAV, MP3, FLAC), or None."""
    if data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "MP3"  # an ID3 tag, or an MPEG audio frame's sync word
    return None


def _check_header(clip: _Clip, container: str, field: str, limits: MediaLimits) -> None:
    """Refuse what the header alone shows: another format, a nonsense rate, too long a clip."""
    found = clip.format
    if found not in _SNDFILE_FORMATS[container]:
        raise refusal(field, f"the audio starts like {container} but is {found or 'not audio'}; "
                             f"only {ACCEPTED} is accepted")
    rate, frames = clip.samplerate, clip.frames
    if not MIN_RATE <= rate <= MAX_RATE:
        raise refusal(field, f"the audio's sample rate is {rate} Hz, outside the {MIN_RATE} to "
                             f"{MAX_RATE} Hz accepted")
    if frames < _UNKNOWN_FRAMES and frames > max_frames(rate, limits):
        raise refusal(field, _too_long(frames / rate, limits))


def max_frames(rate: int, limits: MediaLimits) -> int:
    """The most frames at `rate` Hz that a clip may have."""
    return math.floor(limits.max_audio_seconds * rate)


def _too_long(seconds: float, limits: MediaLimits) -> str:
    bound = limits.max_audio_seconds
    return f"the audio is {seconds:.1f} seconds long, more than the {bound:g} seconds allowed"


def _read_mono(clip: _Clip, sample_rate: int, field: str, limits: MediaLimits) -> Samples:
    """Read block by block, downmix each block, resample it as a stream: at no point is more
    than one block at the clip's own rate held, and reading stops one frame past the bound."""
    rate, channels = clip.samplerate, clip.channels
    bound = max_frames(rate, limits)
    block = max(1024, _BLOCK_SAMPLES // max(channels, 1))
    stream: _Resampler | None = None
    if rate != sample_rate:
        stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
    parts: list[Samples] = []
    total = 0
    while True:
        frames = _read_block(clip, min(block, bound + 1 - total), field)
        if len(frames) == 0:
            break
        total += len(frames)
        if total > bound:  # the header understated the length, or could not say it
            raise refusal(field, f"the audio is longer than the {limits.max_audio_seconds:g} seconds allowed")
        mono = np.ascontiguousarray(frames.mean(axis=1, dtype=np.float32))
        parts.append(mono if stream is None else _resampled(stream, mono, last=False))
    if total == 0:
        raise refusal(field, "the audio has no samples")
    if stream is not None:
        parts.append(_resampled(stream, np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(parts)


def _read_block(clip: _Clip, frames: int, field: str) -> Samples:
    """Up to `frames` frames, shape (n, channels); a decoding failure mid-stream is a 400."""
    try:
        block = clip.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise refusal(field, f"the audio is corrupt ({exc})") from exc
    return np.asarray(block, dtype=np.float32)


def _resampled(stream: _Resampler, mono: Samples, *, last: bool) -> Samples:
    chunk = stream.resample_chunk(mono, last=last)
    return np.asarray(chunk, dtype=np.float32)


__all__ = ["ACCEPTED", "MAX_RATE", "MIN_RATE", "audio_digest", "decode_audio", "max_frames", "sniff"]
