"""Images and audio through every API of `mr serve` (issue 26, item 3), with the real clients (the
official openai, anthropic and ollama packages; httpx for the Responses API) against the tiny
random vision model of bench.tiny_vlm served with its projector.

A random model cannot say what is in a picture, so no test reads the wording of an answer. What
holds on every CPU is asserted instead: the image's tokens are counted in the prompt, two pictures
change the first token's distribution, the same picture again is served from the prefix cache,
every API answers, image requests mixed with text requests all answer, and every bad input is a
400 naming its field (or the model), after which the server still answers."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import httpx
import numpy as np
import ollama
import openai
import pytest
from PIL import Image

from support.media import bomb_png
from support.serving import SMOL, serve

pytestmark = pytest.mark.slow

VLM, AV = "ai/vlm", "ai/vlm-av"  # vision only; vision and audio in one projector
ASK = "Describe the picture."
USAGE = {"include_usage": True}


# ---- media ----

def png(seed: int, size: int = 64) -> bytes:
    """Noise of its own for each seed: two seeds are two pictures, never a cached one."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def wav(seconds: float = 1.0, rate: int = 16000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * hz * t) * 12000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def image_part(data: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data)}}


def user(*parts: dict, text: str = ASK) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, *parts]}]


# ---- servers ----

@pytest.fixture(scope="module")
def media_store(tiny_vlm: tuple[Path, Path], smollm2_path: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ai/vlm (the tiny VLM with its vision projector), ai/vlm-av (the same model with a projector
    that encodes images and audio) and ai/smollm2 (no projector)."""
    from bench.tiny_vlm import TEXT_EMBD, write_projector

    from mr.store import Store, package_gguf

    model, mmproj = tiny_vlm
    root = tmp_path_factory.mktemp("media-store")
    both = write_projector(root / "mmproj-av.gguf", TEXT_EMBD, vision=True, audio=True)
    store = Store(root / "store")
    package_gguf(store, model, VLM, mmproj=mmproj)
    package_gguf(store, model, AV, mmproj=both)
    package_gguf(store, smollm2_path, SMOL)
    return root / "store"


@pytest.fixture(scope="module")
def media_url(media_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(media_store, tmp_path_factory.mktemp("media-home"), ctx_size=4096, parallel=4) as running:
        yield running.url


@pytest.fixture
def http(media_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=media_url, timeout=120) as client:
        yield client


@pytest.fixture
def oai(media_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{media_url}/v1", api_key="unused", max_retries=0, timeout=120)


def healthy(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    r = http.post("/v1/chat/completions", json={"model": VLM, "max_tokens": 1, "messages": user()})
    assert r.status_code == 200, r.text


def chat(oai: openai.OpenAI, messages: list[dict], model: str = VLM, **extra: object):
    return oai.chat.completions.create(model=model, messages=messages, max_tokens=1, temperature=0, **extra)


def image_tokens() -> int:
    from bench.tiny_vlm import IMAGE_TOKENS

    return IMAGE_TOKENS


# ---- OpenAI: tokens counted, pictures told apart, the cache ----

def test_an_images_tokens_are_counted_in_the_prompt(oai: openai.OpenAI) -> None:
    text = chat(oai, user()).usage
    one = chat(oai, user(image_part(png(1)))).usage
    two = chat(oai, user(image_part(png(2)), image_part(png(3)))).usage
    assert one.prompt_tokens - text.prompt_tokens >= image_tokens()
    assert two.prompt_tokens - one.prompt_tokens >= image_tokens()


def test_two_pictures_give_two_first_token_distributions(oai: openai.OpenAI) -> None:
    def first_token(seed: int) -> list[tuple[str, float]]:
        r = chat(oai, user(image_part(png(seed))), logprobs=True, top_logprobs=5)
        return [(t.token, t.logprob) for t in r.choices[0].logprobs.content[0].top_logprobs]

    red, blue = first_token(10), first_token(11)
    assert red != blue
    assert first_token(10) == red  # the same picture, greedy: the same distribution


def test_the_same_picture_again_is_served_from_the_cache(oai: openai.OpenAI) -> None:
    picture = image_part(png(20))
    first = chat(oai, user(picture)).usage
    again = chat(oai, user(picture)).usage
    other = chat(oai, user(image_part(png(21)))).usage
    assert again.prompt_tokens == first.prompt_tokens == other.prompt_tokens
    cached = again.prompt_tokens_details.cached_tokens - first.prompt_tokens_details.cached_tokens
    assert cached >= image_tokens()  # the picture itself came from the cache
    assert other.prompt_tokens_details.cached_tokens < again.prompt_tokens_details.cached_tokens


def test_streamed_answers_count_the_picture_too(oai: openai.OpenAI) -> None:
    plain = chat(oai, user(image_part(png(30)))).usage
    chunks = list(oai.chat.completions.create(model=VLM, messages=user(image_part(png(30))), max_tokens=4,
                                              temperature=0, stream=True, stream_options=USAGE))
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == plain.prompt_tokens


def test_audio_is_counted_where_the_projector_takes_it(oai: openai.OpenAI) -> None:
    clip = {"type": "input_audio", "input_audio": {"data": b64(wav()), "format": "wav"}}
    text = chat(oai, user(), model=AV).usage
    heard = chat(oai, user(clip), model=AV).usage
    assert heard.prompt_tokens > text.prompt_tokens
    both = chat(oai, user(clip, image_part(png(40))), model=AV).usage
    assert both.prompt_tokens - heard.prompt_tokens >= image_tokens()
    with pytest.raises(openai.BadRequestError) as info:
        chat(oai, user(clip))  # ai/vlm's projector encodes images only
    assert info.value.body["param"] == "messages[0].content[1]" and VLM in info.value.body["message"]


# ---- every API ----

def test_anthropic_image_blocks(media_url: str) -> None:
    client = anthropic.Anthropic(base_url=media_url, api_key="unused", max_retries=0, timeout=120)
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(png(50))}}

    def ask(*blocks: dict):
        content = [{"type": "text", "text": ASK}, *blocks]
        return client.messages.create(model=VLM, max_tokens=2, extra_body={"temperature": 0},
                                      messages=[{"role": "user", "content": content}])

    def seen(m) -> int:
        return m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)

    text, first, again = ask(), ask(block), ask(block)
    assert first.content and first.stop_reason in ("end_turn", "max_tokens")
    assert seen(first) - seen(text) >= image_tokens()
    assert seen(again) == seen(first) and (again.usage.cache_read_input_tokens or 0) >= image_tokens()
    counted = client.messages.count_tokens(model=VLM, messages=[{"role": "user", "content": [
        {"type": "text", "text": ASK}, block]}])
    assert counted.input_tokens == seen(first)


def test_ollama_images_on_chat_and_generate(media_url: str) -> None:
    client = ollama.Client(host=media_url, timeout=120)
    options = {"temperature": 0, "num_predict": 2}
    text = client.chat(model=VLM, messages=[{"role": "user", "content": ASK}], options=options)
    seen = client.chat(model=VLM, messages=[{"role": "user", "content": ASK, "images": [png(60)]}],
                       options=options)
    assert seen.done and seen.prompt_eval_count - text.prompt_eval_count >= image_tokens()
    streamed = list(client.chat(model=VLM, messages=[{"role": "user", "content": ASK, "images": [png(60)]}],
                                options=options, stream=True))
    assert streamed[-1].done and streamed[-1].prompt_eval_count == seen.prompt_eval_count
    plain = client.generate(model=VLM, prompt=ASK, options=options)
    looked = client.generate(model=VLM, prompt=ASK, images=[png(61)], options=options)
    assert looked.done and looked.prompt_eval_count - plain.prompt_eval_count >= image_tokens()


def test_responses_input_image(http: httpx.Client) -> None:
    def ask(*parts: dict, **extra: object) -> dict:
        content = [{"type": "input_text", "text": ASK}, *parts]
        body = {"model": VLM, "input": [{"role": "user", "content": content}], "max_output_tokens": 2,
                "temperature": 0, **extra}
        r = http.post("/v1/responses", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    picture = {"type": "input_image", "image_url": data_url(png(70))}
    text, first = ask(), ask(picture)
    assert first["status"] in ("completed", "incomplete")
    assert first["usage"]["input_tokens"] - text["usage"]["input_tokens"] >= image_tokens()
    listed = http.get(f"/v1/responses/{first['id']}/input_items").json()["data"]
    assert listed[0]["content"][1]["type"] == "input_image"
    follow = ask(previous_response_id=first["id"])  # the picture is in the chain, and in the cache
    assert follow["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    assert follow["usage"]["input_tokens_details"]["cached_tokens"] >= image_tokens()


def test_the_listings_say_what_each_model_takes(http: httpx.Client) -> None:
    cards = {c["id"]: c for c in http.get("/v1/models").json()["data"]}
    assert "vision" in cards[VLM]["capabilities"] and "audio" not in cards[VLM]["capabilities"]
    assert {"vision", "audio"} <= set(cards[AV]["capabilities"])
    assert not {"vision", "audio"} & set(cards[SMOL]["capabilities"])
    assert "vision" in http.get(f"/v1/models/{VLM}").json()["capabilities"]
    assert "vision" in http.post("/api/show", json={"model": VLM}).json()["capabilities"]
    assert "audio" in http.get(f"/engines/v1/models/{AV}").json()["capabilities"]  # DMR's path
    assert set(http.get(f"/models/{AV}").json()) == {"id", "tags", "created", "config"}  # DMR's shape
    rendered = http.post("/apply-template", json={"model": VLM, "messages": user(image_part(png(80)))})
    assert "<__media__>" in rendered.json()["prompt"]


# ---- mixed load ----

def test_image_requests_mixed_with_text_requests_all_answer(media_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{media_url}/v1", api_key="unused", max_retries=0, timeout=300)

    async def one(i: int) -> int:
        parts = [image_part(png(100 + i))] if i % 2 == 0 else []
        streamed = i % 3 == 0
        extra = {"stream": True, "stream_options": USAGE} if streamed else {}
        r = await client.chat.completions.create(model=VLM, messages=user(*parts), max_tokens=8,
                                                 temperature=0, **extra)
        if streamed:
            chunks = [c async for c in r]
            return chunks[-1].usage.prompt_tokens
        return r.usage.prompt_tokens

    async def run() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(12)))

    counts = asyncio.run(run())
    with_image = [c for i, c in enumerate(counts) if i % 2 == 0]
    without = [c for i, c in enumerate(counts) if i % 2 == 1]
    assert len(set(with_image)) == 1 and len(set(without)) == 1
    assert with_image[0] - without[0] >= image_tokens()


# ---- refusals: a 400 naming the field or the model, and the server stays up ----

BAD_IMAGES = [
    pytest.param("data:image/png;base64,not*base64!", "base64", id="bad-base64"),
    pytest.param(data_url(bomb_png()), "pixels", id="60000x60000"),
    pytest.param(data_url(b"BM" + bytes(64), "image/bmp"), "BMP", id="bmp"),
    pytest.param("https://example.com/cat.png", "--allow-remote-media", id="remote-while-off"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_IMAGES)
def test_bad_images_are_400s_naming_the_part(oai: openai.OpenAI, http: httpx.Client, url: str,
                                            needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(oai, user({"type": "image_url", "image_url": {"url": url}}))
    body = info.value.body
    assert body["param"] == "messages[0].content[1]" and needle in body["message"], body
    healthy(http)


def test_too_many_images_are_refused(oai: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(oai, user(*[image_part(png(200))] * 17))
    assert info.value.body["param"] == "messages[0].content[17]"
    healthy(http)


def test_media_to_a_model_without_a_projector_names_the_model_on_every_api(http: httpx.Client) -> None:
    picture = b64(png(300))
    answers = {
        "messages[0].content[1]": http.post("/v1/chat/completions", json={
            "model": SMOL, "max_tokens": 1, "messages": user(image_part(png(300)))}),
        "messages[0].images[0]": http.post("/api/chat", json={
            "model": SMOL, "stream": False,
            "messages": [{"role": "user", "content": ASK, "images": [picture]}]}),
        "images[0]": http.post("/api/generate", json={"model": SMOL, "stream": False, "prompt": ASK,
                                                      "images": [picture]}),
        "messages[0].content[0]": http.post("/v1/messages", json={
            "model": SMOL, "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": picture}}]}]}),
        "input[0].content[0]": http.post("/v1/responses", json={
            "model": SMOL, "input": [{"role": "user", "content": [
                {"type": "input_image", "image_url": data_url(png(300))}]}]}),
    }
    for field, r in answers.items():
        assert r.status_code == 400, (field, r.text)
        assert field in r.text and SMOL in r.text, (field, r.text)
    healthy(http)


@pytest.mark.parametrize("api", ["ollama-chat", "ollama-generate", "anthropic", "responses"])
def test_bad_base64_is_a_400_naming_the_field_on_every_api(http: httpx.Client, api: str) -> None:
    bad = "iVBORw0K***"
    path, body, field = {
        "ollama-chat": ("/api/chat", {"messages": [{"role": "user", "content": ASK, "images": [bad]}],
                                      "stream": False}, "messages[0].images[0]"),
        "ollama-generate": ("/api/generate", {"prompt": ASK, "images": [bad], "stream": False}, "images[0]"),
        "anthropic": ("/v1/messages", {"max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": bad}}]}]},
                      "messages[0].content[0]"),
        "responses": ("/v1/responses", {"input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": f"data:image/png;base64,{bad}"}]}]}, "input[0].content[0]"),
    }[api]
    r = http.post(path, json={"model": VLM, **body})
    assert r.status_code == 400 and field in r.text and "base64" in r.text, r.text
    healthy(http)


# ---- remote URLs, where the server allows them ----

@pytest.fixture(scope="module")
def picture_host() -> Iterator[str]:
    """A loopback HTTP server with one picture at /cat.png."""
    picture = png(400)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/cat.png"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(picture) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(picture)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_urls_are_fetched_only_with_allow_remote_media(media_store: Path, picture_host: str,
                                                             oai: openai.OpenAI,
                                                             tmp_path: Path) -> None:
    remote = {"type": "image_url", "image_url": {"url": f"{picture_host}/cat.png"}}
    with pytest.raises(openai.BadRequestError) as info:
        chat(oai, user(remote))
    assert "--allow-remote-media" in info.value.body["message"]
    inline = chat(oai, user(image_part(png(400)))).usage.prompt_tokens
    with serve(media_store, tmp_path, ctx_size=4096, allow_remote_media=True) as running:
        fetching = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0, timeout=120)
        assert chat(fetching, user(remote)).usage.prompt_tokens == inline
        with pytest.raises(openai.BadRequestError) as missing:
            chat(fetching, user({"type": "image_url", "image_url": {"url": f"{picture_host}/nope.png"}}))
        body = missing.value.body
        assert body["param"] == "messages[0].content[1]" and "404" in body["message"]
