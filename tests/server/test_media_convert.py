"""Images and audio in every API's converter (issue 26, item 3), without a model: each API's media
become media parts (mr.media.source) naming the request field as the client wrote it, decoded
later (mr.media) with each refusal a 400 naming that field; remote URLs only where the server
allows them; the projector's modalities read from its header for the model listings."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import msgspec
import pytest
from PIL import Image

from mr.errors import InvalidArgumentError
from mr.media import MediaLimits, MediaSource, load, load_all, source_of
from mr.server.anthropic import convert as anthropic
from mr.server.anthropic.protocol import MessagesRequest
from mr.server.generation import media
from mr.server.ollama import convert as ollama
from mr.server.ollama.protocol import ChatRequest, Message
from mr.server.openai import params
from mr.server.openai.protocol import ChatCompletionRequest
from mr.server.responses import convert as responses
from mr.server.responses.protocol import ResponseRequest
from mr.server.settings import Settings
from support.media import bomb_png


def png(color: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def wav(seconds: float = 0.1, rate: int = 16000) -> bytes:
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(seconds * rate))
    return out.getvalue()


def sources(messages: list) -> list[MediaSource]:
    return media.sources(messages)


def refused(call, *args) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as info:
        call(*args)
    return info.value


# ---- OpenAI chat ----

def openai_messages(content: object, role: str = "user") -> list:
    req = msgspec.convert({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": role, "content": content}]},
                          ChatCompletionRequest)
    return params.messages(req.messages)


def test_openai_image_url_and_input_audio_parts_become_media_parts_in_place() -> None:
    picture, clip = png(), wav()
    messages = openai_messages([
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": data_url(picture), "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": b64(clip), "format": "wav"}},
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
        {"type": "text", "text": "please"}])
    content = messages[1]["content"]
    assert [p["type"] for p in content] == ["text", "media", "media", "media", "text"]
    found = sources(messages)
    assert [(s.kind, s.field) for s in found] == [
        ("image", "messages[1].content[1]"), ("audio", "messages[1].content[2]"),
        ("image", "messages[1].content[3]")]
    assert found[2].url == "https://example.com/cat.png"
    limits = MediaLimits()
    assert load(found[0], limits).width == 8  # the data URL decodes to the picture sent
    assert load(found[1], limits, 16000).seconds == pytest.approx(0.1, abs=0.01)


def test_openai_text_only_messages_are_rendered_as_before() -> None:
    messages = openai_messages([{"type": "text", "text": "Say"}, {"type": "text", "text": "hi"}])
    assert messages[1] == {"role": "user", "content": "Say\nhi"}
    assert sources(messages) == []


@pytest.mark.parametrize(("content", "role", "param"), [
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}], "system",
     "messages[1].content[0]"),
    ([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "x"}}], "assistant",
     "messages[1].content[1]"),
    ([{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}], "user",
     "messages[1].content[0]"),
    ([{"type": "image_url", "image_url": {"url": "  "}}], "user", "messages[1].content[0]"),
    ([{"type": "image_url"}], "user", "messages[1].content[0]"),
    ([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}], "user",
     "messages[1].content[0].input_audio.format"),
    ([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}], "user",
     "messages[1].content[0]"),
    ([{"type": "file", "file": {}}], "user", "messages[1].content"),
])
def test_openai_media_in_the_wrong_place_or_shape_is_refused_naming_the_field(content: list, role: str,
                                                                             param: str) -> None:
    error = refused(openai_messages, content, role)
    assert error.param == param and param in str(error)


def test_openai_wire_types_name_a_malformed_part() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"detail": "low"}}]}]}
    with pytest.raises(msgspec.ValidationError, match=r"messages\[0\]\.content\[0\]\.image_url"):
        msgspec.convert(body, ChatCompletionRequest)


def test_a_prediction_stays_text_only() -> None:
    req = msgspec.convert({"model": "m", "messages": [{"role": "user", "content": "x"}], "prediction": {
        "type": "content", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}},
        ChatCompletionRequest)
    assert refused(params.prediction, req).param == "prediction.content[0]"


# ---- Ollama ----

def test_ollama_images_go_before_the_text_of_their_message() -> None:
    req = msgspec.convert({"model": "m", "messages": [
        {"role": "user", "content": "first", "images": [b64(png()), b64(png((0, 0, 255)))]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "no picture"}]}, ChatRequest)
    messages = ollama.messages(req.messages)
    assert [p["type"] for p in messages[0]["content"]] == ["media", "media", "text"]
    assert messages[0]["content"][2]["text"] == "first"
    assert messages[2] == {"role": "user", "content": "no picture"}
    found = sources(messages)
    assert [s.field for s in found] == ["messages[0].images[0]", "messages[0].images[1]"]
    assert load(found[1], MediaLimits()).rgb[:3] == bytes((0, 0, 255))


def test_ollama_generate_images_name_the_request_field() -> None:
    content = ollama.with_images("what is it?", [b64(png())], "images")
    assert isinstance(content, list)
    (source,) = media.sources([{"role": "user", "content": content}])
    assert source.field == "images[0]" and load(source, MediaLimits()).height == 8
    assert ollama.with_images("plain", None, "images") == "plain"


# ---- Anthropic ----

PNG_BLOCK = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(png())}}


def anthropic_messages(*messages: dict) -> list:
    req = msgspec.convert({"model": "m", "max_tokens": 4, "messages": list(messages)}, MessagesRequest)
    return anthropic.messages(req)


def test_anthropic_image_blocks_become_media_parts() -> None:
    messages = anthropic_messages({"role": "user", "content": [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(png())}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}]})
    assert [p["type"] for p in messages[0]["content"]] == ["text", "media", "media"]
    first, second = sources(messages)
    assert (first.field, second.field) == ("messages[0].content[1]", "messages[0].content[2]")
    assert first.url is not None and first.url.startswith("data:image/png;base64,")
    assert load(first, MediaLimits()).width == 8
    assert second.url == "https://example.com/a.jpg"


def test_anthropic_tool_results_may_carry_images() -> None:
    messages = anthropic_messages(
        {"role": "user", "content": "Take a screenshot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                      "content": [{"type": "text", "text": "partial"}, PNG_BLOCK]}]})
    tool = messages[2]
    assert tool["role"] == "tool" and tool["content"][0]["text"] == "Error:"
    (source,) = sources(messages)
    assert source.field == "messages[2].content[0].content[1]"
    text_only = anthropic_messages({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": "boom"}]})
    assert text_only[0]["content"] == "Error: boom"


def test_anthropic_images_from_the_assistant_or_of_other_types_are_refused() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    error = refused(anthropic_messages, {"role": "assistant", "content": [image]})
    assert error.param == "messages[0].content[0]"
    bmp = {**image, "source": {**image["source"], "media_type": "image/bmp"}}
    with pytest.raises(msgspec.ValidationError, match=r"messages\[0\]\.content\[0\]\.source\.media_type"):
        anthropic_messages({"role": "user", "content": [bmp]})


# ---- Responses ----

def responses_messages(content: object, role: str = "user") -> list:
    req = msgspec.convert({"model": "m", "input": [{"role": role, "content": content}]}, ResponseRequest)
    return responses.messages(responses.input_items(req))


def test_responses_input_image_parts_are_kept_and_become_media_parts() -> None:
    url = data_url(png())
    req = msgspec.convert({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "What is it?"},
                                     {"type": "input_image", "image_url": url}]}]}, ResponseRequest)
    items = responses.input_items(req)
    assert items[0]["content"][1] == {"type": "input_image", "image_url": url, "detail": "auto"}
    messages = responses.messages(items)
    (source,) = sources(messages)
    assert source.field == "input[0].content[1]" and load(source, MediaLimits()).width == 8
    later = responses.messages(items, "previous_response_id resp_1: input")
    assert sources(later)[0].field == "previous_response_id resp_1: input[0].content[1]"


@pytest.mark.parametrize(("content", "role"), [
    ([{"type": "input_image", "file_id": "file_1"}], "user"),
    ([{"type": "input_image"}], "user"),
    ([{"type": "input_image", "image_url": "file:///etc/passwd"}], "user"),
    ([{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}], "assistant"),
])
def test_responses_images_that_cannot_be_served_are_refused(content: list, role: str) -> None:
    assert refused(responses_messages, content, role).param == "input[0].content[0]"


# ---- decoding: every refusal names the field ----

def openai_source(url: str) -> MediaSource:
    (source,) = sources(openai_messages([{"type": "image_url", "image_url": {"url": url}}]))
    return source


@pytest.mark.parametrize(("source", "needle"), [
    (openai_source("data:image/png;base64,not*base64"), "base64"),
    (openai_source(data_url(bomb_png())), "pixels"),
    (openai_source(data_url(b"BM" + bytes(60), "image/bmp")), "BMP"),
    (openai_source("https://example.com/cat.png"), "--allow-remote-media"),
    (sources(ollama.messages([msgspec.convert({"role": "user", "images": ["%%%"]}, Message)]))[0], "base64"),
])
def test_bad_media_are_refused_naming_their_field(source: MediaSource, needle: str) -> None:
    error = refused(load, source, MediaLimits())
    assert error.param == source.field and str(error).startswith(source.field) and needle in str(error)


def test_too_many_images_name_the_first_one_past_the_bound() -> None:
    picture = {"type": "image_url", "image_url": {"url": data_url(png())}}
    found = sources(openai_messages([picture] * 17))
    error = refused(load_all, found, MediaLimits())
    assert error.param == "messages[1].content[16]" and "16" in str(error)


# ---- the model: media it cannot take are refused before anything is decoded ----

def test_media_to_a_model_without_a_projector_name_the_model() -> None:
    messages = openai_messages([{"type": "text", "text": "hi"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
    error = refused(media.check_accepted, messages, frozenset(), "ai/smollm2")
    assert error.param == "messages[1].content[1]" and "ai/smollm2" in str(error)
    media.check_accepted(messages, frozenset({"image"}), "ai/vlm")  # no error
    media.check_accepted(openai_messages("text"), frozenset(), "ai/smollm2")


def test_audio_to_a_vision_only_projector_names_the_model() -> None:
    clip = {"type": "input_audio", "input_audio": {"data": b64(wav()), "format": "wav"}}
    messages = openai_messages([clip])
    error = refused(media.check_accepted, messages, frozenset({"image"}), "ai/vlm")
    assert error.param == "messages[1].content[0]" and "ai/vlm" in str(error) and "audio" in str(error)


# ---- the switch ----

def test_remote_media_are_off_unless_the_server_turns_them_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from mr.cli.serve import _settings as serve_settings
    from mr.cli.serve import serve

    assert Settings().media_limits() == MediaLimits(remote=False)
    assert Settings.from_env({"MR_ALLOW_REMOTE_MEDIA": "1"}).media_limits().remote
    monkeypatch.delenv("MR_ALLOW_REMOTE_MEDIA", raising=False)
    with serve.make_context("mr serve", ["--allow-remote-media"]) as ctx:
        assert serve_settings(ctx.params).media_limits().remote
    with serve.make_context("mr serve", []) as ctx:
        assert not serve_settings(ctx.params).allow_remote_media


def test_a_part_without_media_is_not_a_source() -> None:
    assert source_of({"type": "text", "text": "x"}) is None
    assert media.content([media.text_part("a"), media.text_part("b")]) == "a\nb"


# ---- what a stored model takes ----

@pytest.mark.parametrize(("vision", "audio", "expected"), [
    (True, False, ["vision"]), (False, True, ["audio"]), (True, True, ["vision", "audio"])])
def test_listings_say_what_the_projector_encodes(tiny_gguf: Path, tmp_path: Path, vision: bool, audio: bool,
                                                expected: list[str]) -> None:
    from bench.tiny_vlm import write_projector

    from mr.store import Store, package_gguf
    from mr.store.summary import capabilities, chat_template, media_capabilities

    store = Store(tmp_path / "store")
    projector = write_projector(tmp_path / "mmproj.gguf", 64, vision=vision, audio=audio)
    model = package_gguf(store, tiny_gguf, "ai/vlm", mmproj=projector)
    plain = package_gguf(store, tiny_gguf, "ai/plain")
    assert media_capabilities(model) == expected
    assert capabilities(model, chat_template(model)) == ["completion", *expected]
    assert media_capabilities(plain) == [] and capabilities(plain, chat_template(plain)) == ["completion"]
