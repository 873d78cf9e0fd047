"""Images and audio in the `mr` CLI: `mr run --image/--audio/--mmproj`, `@photo.png` in the chat,
and a DMR artifact with an mmproj layer pulled and run.

The model is bench.tiny_vlm's random-weights pair: it cannot say what is in a picture, so the
tests assert what holds whatever it answers (exit codes, the image's tokens in the prompt count,
the refusals), never the answer's words."""

from __future__ import annotations

import base64
import math
import re
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest
from bench.tiny_vlm import AUDIO_TOKENS, IMAGE_TOKENS, MMPROJ_AUDIO, write_tiny_vlm
from PIL import Image

from mr.cli.media_files import openai_messages, take_attachments, user_message
from mr.media import MediaSource
from support.env import subprocess_env
from support.serving import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No server (the run is in-process), an empty store and home of the test's own."""
    return {**subprocess_env(), "MR_HOME": str(tmp_path / "home"), "MR_MODELS_DIR": str(tmp_path / "models"),
            "MR_HOST": "http://127.0.0.1:9", "MR_DEBUG": "", "TERM": "dumb"}


def mr(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mr", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def prompt_tokens(result: subprocess.CompletedProcess[str]) -> int:
    """The prompt count `--verbose` prints."""
    match = re.search(r"prompt: (\d+) tokens", result.stderr)
    assert match, result.stdout + result.stderr
    return int(match.group(1))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated media: PNG, JPEG, GIF, a BMP (refused by format), a text file, a WAV tone."""
    d = tmp_path_factory.mktemp("media")
    Image.new("RGB", (64, 64), (220, 30, 30)).save(d / "red.png")
    Image.new("RGB", (80, 48), (30, 30, 220)).save(d / "blue.jpg")
    Image.new("P", (40, 40), 3).save(d / "green.gif")
    Image.new("RGB", (16, 16)).save(d / "photo.bmp")
    (d / "notes.txt").write_text("not a picture\n")
    with wave.open(str(d / "tone.wav"), "wb") as w:  # one second of 440 Hz at 16 kHz
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000)))
                               for i in range(16000)))
    return d


@pytest.fixture(scope="module")
def vlm(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bench.tiny_vlm's pair and its audio projector: model.gguf, mmproj.gguf, mmproj-audio.gguf."""
    d = tmp_path_factory.mktemp("tiny-vlm")
    write_tiny_vlm(d, smollm2_path, audio=True)
    return d


# -- refused before any model loads ---------------------------------------------------------------

def test_a_missing_file_is_a_usage_error(env: dict[str, str], files: Path, smollm2_path: Path) -> None:
    for option in ("--image", "--audio", "--mmproj"):
        result = mr(env, "run", str(smollm2_path), "hi", option, str(files / "absent.png"))
        assert result.returncode == 2, result.stderr
        assert "absent.png' does not exist" in result.stderr


def test_a_file_that_is_not_an_image_is_refused_naming_it(env: dict[str, str], files: Path,
                                                          tmp_path: Path) -> None:
    """Read and checked before the model is even looked for (the model here does not exist)."""
    model = str(tmp_path / "absent.gguf")
    text = mr(env, "run", model, "hi", "--image", "notes.txt", cwd=files)
    assert text.returncode == 2
    assert text.stderr.strip() == ("Error: --image notes.txt: the data is not a PNG, JPEG, WebP or GIF "
                                   "image")
    bmp = mr(env, "run", model, "hi", "--image", "red.png", "--image", "photo.bmp", cwd=files)
    assert bmp.returncode == 2
    assert "--image photo.bmp: the image is BMP; only PNG, JPEG, WebP and GIF" in bmp.stderr


def test_a_text_only_gguf_refuses_media_naming_the_model(env: dict[str, str], files: Path,
                                                         smollm2_path: Path) -> None:
    for option, name in (("--image", "red.png"), ("--audio", "tone.wav")):
        result = mr(env, "run", str(smollm2_path), "What is this?", option, str(files / name))
        assert result.returncode == 2
        line = result.stderr.strip()
        assert line.startswith(f"Error: {smollm2_path} has no multimodal projector"), line
        assert "--mmproj" in line and f"{option} {files / name}" in line and "Traceback" not in line


def test_a_text_only_store_model_refuses_media_naming_it(env: dict[str, str], files: Path,
                                                         store_root: Path) -> None:
    result = mr({**env, "MR_MODELS_DIR": str(store_root)}, "run", "ai/smollm2", "hi", "--image",
                str(files / "red.png"))
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ai/smollm2 has no multimodal projector: it takes text only;")
    assert "--mmproj" not in result.stderr  # a store model brings its own projector or none


# -- @FILE in the chat ------------------------------------------------------------------------------

def test_at_words_naming_media_files_are_taken_out_of_the_line(files: Path, monkeypatch) -> None:
    monkeypatch.chdir(files)
    text, found = take_attachments("What is in @red.png? Compare @blue.jpg with @tone.wav, mail a@b.c")
    assert text == "What is in ? Compare with , mail a@b.c"
    assert [(a.name, a.kind) for a in found] == [("red.png", "image"), ("blue.jpg", "image"),
                                                  ("tone.wav", "audio")]
    # not files, not media: text as typed (a leading @FILE of text is mr.cli.attach's)
    for line in ("say @absent.png now", "@notes.txt summarise", "@ @everyone look", "ask @bob"):
        assert take_attachments(line) == (line, [])
    assert take_attachments(f"@{files / 'green.gif'}")[0] == ""
    # a picture in a format mr refuses is still a picture: its refusal names the format
    assert [a.kind for a in take_attachments("@photo.bmp")[1]] == ["image"]


def test_media_go_to_a_server_as_openai_parts(files: Path) -> None:
    png = (files / "red.png").read_bytes()
    message = user_message("Describe.", [MediaSource("image", "--image red.png", png, format="png"),
                                         MediaSource("audio", "--audio t.wav", b"RIFF", format="wav")])
    sent = openai_messages([{"role": "system", "content": "Be brief."}, message])
    assert sent[0] == {"role": "system", "content": "Be brief."}
    image, audio, text = sent[1]["content"]
    prefix = "data:image/png;base64,"
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image["image_url"]["url"][len(prefix):]) == png
    assert audio == {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF").decode(),
                                                            "format": "wav"}}
    assert text == {"type": "text", "text": "Describe."}


def chat(env: dict[str, str], cwd: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "mr", "run", *args], env=env, cwd=str(cwd),
                          encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect_exact("> ")
    return child


def test_the_chat_attaches_an_image_and_a_text_model_refuses_it(env: dict[str, str], files: Path,
                                                                  smollm2_path: Path) -> None:
    child = chat(env, files, str(smollm2_path))
    child.sendline("What is in @red.png?")
    child.expect_exact("(attached red.png)")
    child.expect_exact("has no multimodal projector")
    child.expect_exact("cannot send @red.png")
    child.expect_exact("> ")  # the session goes on (no model was loaded for that)
    child.sendline("@photo.bmp")
    child.expect_exact("Error: @photo.bmp: the image is BMP; only PNG, JPEG, WebP and GIF")
    child.expect_exact("> ")
    child.sendline("/bye")
    child.expect(pexpect.EOF)


# -- the tiny vision model ----------------------------------------------------------------------------

@pytest.mark.slow
def test_an_image_is_counted_in_the_prompt(env: dict[str, str], files: Path, vlm: Path) -> None:
    base = ("run", str(vlm / "model.gguf"), "Describe.", "--mmproj", str(vlm / "mmproj.gguf"),
            "--verbose", "--max-tokens", "4", "--temperature", "0")
    text = mr(env, *base)
    one = mr(env, *base, "--image", str(files / "red.png"))
    two = mr(env, *base, "--image", str(files / "red.png"), "--image", str(files / "blue.jpg"))
    for result in (text, one, two):
        assert result.returncode == 0, result.stderr
    # each image is IMAGE_TOKENS placeholders, then a newline before what follows (mr.engine.media)
    assert IMAGE_TOKENS <= prompt_tokens(one) - prompt_tokens(text) <= IMAGE_TOKENS + 2
    assert IMAGE_TOKENS <= prompt_tokens(two) - prompt_tokens(one) <= IMAGE_TOKENS + 2
    gif = mr(env, *base, "--image", str(files / "green.gif"))
    assert gif.returncode == 0 and prompt_tokens(gif) == prompt_tokens(one)


@pytest.mark.slow
def test_an_image_alone_is_answered(env: dict[str, str], files: Path, vlm: Path) -> None:
    result = mr(env, "run", str(vlm / "model.gguf"), "--mmproj", str(vlm / "mmproj.gguf"), "--image",
                str(files / "red.png"), "--max-tokens", "3", "--ignore-eos", "--verbose")
    assert result.returncode == 0, result.stderr
    assert "generation: 3 tokens" in result.stderr  # no chat opened: one answer to the picture


@pytest.mark.slow
def test_audio_goes_to_an_audio_projector_and_images_do_not(env: dict[str, str], files: Path,
                                                            vlm: Path) -> None:
    base = ("run", str(vlm / "model.gguf"), "Listen.", "--mmproj", str(vlm / MMPROJ_AUDIO), "--verbose",
            "--max-tokens", "2")
    text, heard = mr(env, *base), mr(env, *base, "--audio", str(files / "tone.wav"))
    assert text.returncode == 0 and heard.returncode == 0, heard.stderr
    assert AUDIO_TOKENS <= prompt_tokens(heard) - prompt_tokens(text) <= AUDIO_TOKENS + 4
    seen = mr(env, *base, "--image", str(files / "red.png"))
    assert seen.returncode == 2
    assert seen.stderr.strip() == (f"Error: {vlm / 'model.gguf'}'s projector takes audio, not image; "
                                   f"cannot send --image {files / 'red.png'}")


@pytest.mark.slow
def test_the_chat_sends_an_attached_image_with_its_turn(env: dict[str, str], files: Path, vlm: Path) -> None:
    child = chat(env, files, str(vlm / "model.gguf"), "--mmproj", str(vlm / "mmproj.gguf"), "--verbose",
                 "--max-tokens", "3", "--temperature", "0")
    child.sendline("Describe.")
    child.expect(r"prompt: (\d+) tokens")
    text = int(child.match.group(1))
    child.expect_exact("> ")
    child.sendline("/clear")
    child.sendline("@red.png Describe.")
    child.expect_exact("(attached red.png)")
    child.expect(r"prompt: (\d+) tokens")
    assert IMAGE_TOKENS <= int(child.match.group(1)) - text <= IMAGE_TOKENS + 2
    child.expect_exact("> ")
    child.sendline("@notes.txt is sent as text, and @absent.png stays text")
    child.expect(r"prompt: (\d+) tokens")  # answered, with the last turn's image still in the history
    child.expect_exact("> ")
    child.sendline("/bye")
    child.expect(pexpect.EOF)


@pytest.mark.slow
def test_a_pulled_artifact_with_an_mmproj_layer_runs_with_an_image(env: dict[str, str], files: Path,
                                                                  vlm: Path, registry) -> None:
    """package --mmproj, push to a real registry, remove, then `mr run --image` pulls and runs it."""
    ref = f"{registry.host}/ai/tiny-vlm:test"
    packaged = mr(env, "package", "--gguf", str(vlm / "model.gguf"), "--mmproj", str(vlm / "mmproj.gguf"),
                  "--push", ref)
    assert packaged.returncode == 0, packaged.stderr
    fresh = {**env, "MR_MODELS_DIR": str(Path(env["MR_HOME"]) / "fresh-store")}
    result = mr(fresh, "run", ref, "Describe.", "--image", str(files / "red.png"), "--verbose",
                "--max-tokens", "3")
    assert result.returncode == 0, result.stderr
    assert "Pulling" in result.stderr
    text = mr(fresh, "run", ref, "Describe.", "--verbose", "--max-tokens", "3")
    assert "Pulling" not in text.stderr
    assert IMAGE_TOKENS <= prompt_tokens(result) - prompt_tokens(text) <= IMAGE_TOKENS + 2
    show = mr(fresh, "show", ref)
    assert "vision" in show.stdout


@pytest.fixture
def served(env: dict[str, str], vlm: Path, smollm2_path: Path) -> Iterator[dict[str, str]]:
    """`mr serve` on a free port with ai/tiny-vlm (its mmproj layer packaged) and ai/smollm2."""
    port = free_port()
    served_env = {**env, "MR_HOST": f"http://127.0.0.1:{port}"}
    for args in (("--gguf", str(vlm / "model.gguf"), "--mmproj", str(vlm / "mmproj.gguf"), "ai/tiny-vlm"),
                 ("--gguf", str(smollm2_path), "ai/smollm2")):
        assert mr(served_env, "package", *args).returncode == 0
    command = [sys.executable, "-m", "mr", "serve", "--port", str(port), "--ctx-size", "2048"]
    server = subprocess.Popen(command, env=served_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _answers(served_env["MR_HOST"]):
            assert server.poll() is None and time.monotonic() < deadline, "mr serve did not start"
            time.sleep(0.2)
        yield served_env
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/version", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_a_running_server_gets_the_image_as_a_data_url(served: dict[str, str], files: Path) -> None:
    """`mr run` talks to the server (OpenAI's image_url, a data URL): the same prompt as in-process."""
    args = ("run", "ai/tiny-vlm", "Describe.", "--image", str(files / "red.png"), "--verbose",
            "--max-tokens", "3", "--temperature", "0")
    remote, local = mr(served, *args), mr(served, *args, "--local")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    assert prompt_tokens(remote) == prompt_tokens(local)
    assert "tiny-vlm" in mr(served, "ps").stdout  # the server loaded it, not this process
    text_only = mr(served, "run", "ai/smollm2", "Describe.", "--image", str(files / "red.png"))
    assert text_only.returncode == 2  # the server's 400, naming the model
    assert "ai/smollm2" in text_only.stderr and "Traceback" not in text_only.stderr
