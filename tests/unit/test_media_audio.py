"""mr.media audio: WAV, MP3 and FLAC through soundfile (libsndfile), downmixed to mono and
resampled by soxr to the projector's rate; long, corrupt and foreign clips are 400s naming their
field. Clips are generated here; llama.cpp's own sample covers a real MP3."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile  # type: ignore[import-untyped]

from mr.errors import InvalidArgumentError
from mr.media import Audio, MediaLimits, MediaSource, decode_audio, load

FIELD = "messages[1].content[0]"
LIMITS = MediaLimits()
RATE = 16000  # what the common audio projectors (Whisper-style encoders) take
VENDOR_MP3 = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp" / "tools" / "mtmd" / "test-2.mp3"


def tone(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def wav16(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV written by the standard library, not by the decoder under test."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def decoded(audio: Audio) -> np.ndarray:
    return np.frombuffer(audio.pcm, dtype="<f4")


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def refused(data: bytes, limits: MediaLimits = LIMITS, fmt: str | None = None) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_audio(data, fmt, FIELD, RATE, limits)
    error = caught.value
    assert error.param == FIELD and str(error).startswith(f"{FIELD}: "), str(error)
    return error


# Formats, channels, rates


def test_a_wav_at_the_projectors_rate_keeps_its_samples() -> None:
    samples = tone(0.5, RATE)
    audio = decode_audio(wav16(samples, RATE), "wav", FIELD, RATE, LIMITS)
    assert audio.sample_rate == RATE and audio.seconds == pytest.approx(0.5)
    assert np.abs(decoded(audio) - samples).max() < 1e-3  # 16-bit quantisation only


def test_a_stereo_44k_wav_becomes_mono_16k_at_the_same_pitch() -> None:
    left, right = tone(1.0, 44100, hz=440), np.zeros(44100, dtype=np.float32)
    audio = decode_audio(wav16(np.stack([left, right], axis=1), 44100), "wav", FIELD, RATE, LIMITS)
    samples = decoded(audio)
    assert len(samples) == pytest.approx(RATE, abs=2)
    assert peak_hz(samples, RATE) == pytest.approx(440, abs=2)
    assert np.abs(samples[1000:-1000]).max() == pytest.approx(0.25, abs=0.01)  # (0.5 + 0) / 2


def test_a_low_rate_clip_is_upsampled() -> None:
    audio = decode_audio(wav16(tone(1.0, 8000, hz=300), 8000), None, FIELD, RATE, LIMITS)
    assert len(decoded(audio)) == pytest.approx(RATE, abs=2)
    assert peak_hz(decoded(audio), RATE) == pytest.approx(300, abs=2)


def test_flac_decodes() -> None:
    samples = tone(0.5, 22050)
    audio = decode_audio(encoded(samples, 22050, "FLAC"), "flac", FIELD, RATE, LIMITS)
    assert audio.seconds == pytest.approx(0.5, abs=1e-3)
    assert peak_hz(decoded(audio), RATE) == pytest.approx(440, abs=3)


def test_the_bundled_libsndfile_decodes_mp3() -> None:
    # soundfile's wheels bundle libsndfile with mpg123; a system libsndfile may lack it
    assert "MP3" in soundfile.available_formats()
    data = encoded(tone(1.0, RATE), RATE, "MP3")
    audio = decode_audio(data, "mp3", FIELD, RATE, LIMITS)
    assert audio.seconds == pytest.approx(1.0, abs=0.1)
    assert peak_hz(decoded(audio), RATE) == pytest.approx(440, abs=3)


def test_llama_cpps_sample_mp3_decodes() -> None:
    if not VENDOR_MP3.is_file():
        pytest.skip("vendor/llama.cpp is not fetched")
    data = VENDOR_MP3.read_bytes()
    info = soundfile.info(str(VENDOR_MP3))
    audio = decode_audio(data, "audio/mpeg", FIELD, RATE, LIMITS)
    assert audio.seconds == pytest.approx(info.duration, abs=0.05)
    assert decoded(audio).std() > 0.01  # speech, not silence


def test_float_samples_out_of_range_or_nan_are_made_safe() -> None:
    samples = np.array([0.5, np.nan, np.inf, -np.inf, 3.0, -3.0] * 100, dtype=np.float32)
    audio = decode_audio(encoded(samples, RATE, "WAV", "FLOAT"), "wav", FIELD, RATE, LIMITS)
    got = decoded(audio)
    assert np.isfinite(got).all() and np.abs(got).max() <= 1.0


def test_digests_follow_the_samples() -> None:
    # the same 16-bit samples in WAV and in (lossless) FLAC are the same clip
    ints = (tone(0.2, RATE) * 32767).astype(np.int16)
    one = decode_audio(encoded(ints, RATE, "WAV"), None, FIELD, RATE, LIMITS)
    again = decode_audio(encoded(ints, RATE, "FLAC"), None, FIELD, RATE, LIMITS)
    other = decode_audio(wav16(tone(0.2, RATE, hz=880), RATE), None, FIELD, RATE, LIMITS)
    assert one.digest == again.digest and one.digest != other.digest


# Bounds


def test_a_wav_longer_than_the_bound_is_refused_from_its_header() -> None:
    error = refused(wav16(tone(3.0, 8000), 8000), MediaLimits(max_audio_seconds=2))
    assert str(error) == f"{FIELD}: the audio is 3.0 seconds long, more than the 2 seconds allowed"
    assert decode_audio(wav16(tone(2.0, 8000), 8000), None, FIELD, RATE, MediaLimits(max_audio_seconds=2))


def test_a_clip_whose_header_gives_no_length_is_cut_off_while_reading() -> None:
    # A streamed FLAC says "total samples: 0" (unknown): only reading can find its length.
    data = bytearray(encoded(np.zeros(3 * RATE, dtype=np.float32), RATE, "FLAC"))
    streaminfo = int.from_bytes(data[8:42], "big")
    data[8:42] = (streaminfo & ~(((1 << 36) - 1) << 128)).to_bytes(34, "big")  # total samples := 0
    assert soundfile.info(io.BytesIO(bytes(data))).frames > 1 << 60  # libsndfile: unknown
    assert decode_audio(bytes(data), None, FIELD, RATE, MediaLimits(max_audio_seconds=5)).seconds == 3.0
    error = refused(bytes(data), MediaLimits(max_audio_seconds=1))
    assert str(error) == f"{FIELD}: the audio is longer than the 1 seconds allowed"


def test_a_clip_over_the_byte_bound_is_refused() -> None:
    data = wav16(tone(0.1, RATE), RATE)
    assert "more than the 100 bytes allowed" in str(refused(data, MediaLimits(max_bytes=100)))


def test_a_nonsense_sample_rate_is_refused() -> None:
    data = bytearray(wav16(tone(0.1, RATE), RATE))
    data[24:28] = struct.pack("<I", 1_000_000)  # the fmt chunk's sample rate
    assert "sample rate is 1000000 Hz" in str(refused(bytes(data)))


# Hostile and foreign input


def test_a_corrupt_mp3_is_refused() -> None:
    assert "MP3" in str(refused(b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(200)))
    assert "MP3" in str(refused(b"\xff\xfb" + bytes(1000)))


def test_a_truncated_mp3_is_refused() -> None:
    data = encoded(tone(1.0, RATE), RATE, "MP3")
    refused(data[:200])


def test_a_truncated_wav_and_flac_are_refused_or_shorter() -> None:
    # A cut clip is either refused or decodes to what is there: never more, never a crash.
    for data in (wav16(tone(1.0, RATE), RATE), encoded(tone(1.0, RATE), RATE, "FLAC")):
        for cut in (30, 60, len(data) // 2):
            try:
                audio = decode_audio(data[:cut], None, FIELD, RATE, LIMITS)
            except InvalidArgumentError as error:
                assert error.param == FIELD
            else:
                assert audio.seconds < 1.0


def test_a_non_audio_file_is_refused_as_audio() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    error = refused(png, fmt="wav")
    assert str(error) == f"{FIELD}: the audio (sent as 'wav') is not a WAV, MP3 or FLAC file"
    refused(b"OggS" + bytes(100))
    refused(b"")


def test_a_format_libsndfile_knows_but_mr_does_not_take_is_refused() -> None:
    # AIFF decodes fine in libsndfile; mr never hands it other parsers than these three
    aiff = encoded(tone(0.1, RATE), RATE, "AIFF")
    assert soundfile.info(io.BytesIO(aiff)).frames > 0
    assert "not a WAV, MP3 or FLAC file" in str(refused(aiff))


def test_a_riff_header_over_garbage_is_refused() -> None:
    assert "WAV" in str(refused(b"RIFF\x24\x00\x00\x00WAVE" + bytes(64)))


# load


def test_load_refuses_audio_for_a_model_without_an_audio_encoder() -> None:
    source = MediaSource(kind="audio", field=FIELD, data=wav16(tone(0.1, RATE), RATE), format="wav")
    with pytest.raises(InvalidArgumentError) as caught:
        load(source, LIMITS, sample_rate=None)
    assert caught.value.param == FIELD and "takes no audio" in str(caught.value)
    assert isinstance(load(source, LIMITS, sample_rate=RATE), Audio)
