"""The runner's parts without a server: durations, sizes, the settings file, memory estimates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mr.errors import InvalidArgumentError
from mr.runner import ModelSettings, SettingsFile, estimate, parse_duration, parse_size
from mr.runner.duration import format_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("5m", 300), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("250ms", 0.25), (300, 300), ("300", 300),
    ("0", 0), (0, 0), ("-1", math.inf), (-1, math.inf), ("-5m", math.inf), ("", None), (None, None),
])
def test_durations(text: object, seconds: float | None) -> None:
    assert parse_duration(text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["soon", "5 minutes", "m5", "1x", "nan", True])
def test_bad_durations_name_the_param(text: object) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_duration(text, "keep_alive")  # type: ignore[arg-type]
    assert info.value.param == "keep_alive"  # type: ignore[attr-defined]


def test_format_duration() -> None:
    shown = [format_duration(v) for v in (300, 5400, 0, math.inf, None)]
    assert shown == ["5m", "1h30m", "0s", "forever", ""]


def test_sizes() -> None:
    assert parse_size("8GiB") == 8 << 30 and parse_size("512m") == 512 << 20 and parse_size("auto") is None
    with pytest.raises(ValueError):
        parse_size("lots")
    with pytest.raises(ValueError):
        parse_size("-1G")


def test_settings_file_merges_persists_and_survives_damage(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    file = SettingsFile(path)
    file.set("m", ModelSettings(context_size=1024))
    merged = file.set("m", ModelSettings(keep_alive=math.inf))
    assert (merged.context_size, merged.keep_alive) == (1024, math.inf)
    assert SettingsFile(path).get("other", "m").keep_alive == math.inf
    with pytest.raises(InvalidArgumentError):
        file.set("m", ModelSettings(parallel=1000))
    path.write_text("{not json")
    assert SettingsFile(path).get("m") == ModelSettings()


def test_memory_estimate_grows_with_context(smollm2_path: Path) -> None:
    small, big = estimate([smollm2_path], 1024), estimate([smollm2_path], 8192)
    assert small.weights == big.weights == smollm2_path.stat().st_size
    assert big.kv_cache == 8 * small.kv_cache > 0
    assert "KV cache" in big.describe() and "8192 tokens" in big.describe()
    default = estimate([smollm2_path], None)
    assert default.n_ctx == 8192  # the model's training context, capped
