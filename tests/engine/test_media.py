"""Images and audio through the engine (llama.cpp's libmtmd) with a tiny random vision model:
prompt building, encoding and decoding inside continuous batching, the prefix cache keyed by
content, cancellation, and refusals. A random model cannot say what a picture shows: these
tests assert counts, caches and that a picture changes the logits, never wording."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from mr import _native
from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.errors import InvalidArgumentError, ModelLoadError
from mr.media.source import MediaSource, part

GREEDY = SamplingOptions(temperature=0)


@pytest.fixture(scope="module")
def vlm(tiny_vlm: tuple[Path, Path]) -> LLM:
    model, mmproj = tiny_vlm
    llm = LLM(model, EngineOptions(n_ctx=2048, n_slots=4, mmproj=str(mmproj)))
    yield llm
    llm.close()


def picture(seed: int, size: int = 48) -> tuple[bytes, int, int, str]:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8).tobytes()
    return rgb, size, size, hashlib.sha256(rgb).hexdigest()


def bitmap(seed: int) -> _native.Bitmap:
    rgb, w, h, digest = picture(seed)
    return _native.Bitmap.image(w, h, rgb, digest)


def media_request(llm: LLM, before: str, bitmaps: list[_native.Bitmap],
                  after: str = " Describe it.") -> _native.Request:
    """A raw engine request: text, the pictures, more text (each bitmap between two pieces)."""
    assert llm.projector is not None
    pieces = [before] + [" and"] * (len(bitmaps) - 1) + [after]
    segments = [llm.tokenize(p, add_special=i == 0) for i, p in enumerate(pieces)]
    request = _native.Request(max_tokens=4)
    llm.projector.build(request, segments, bitmaps)
    return request


def first_logprobs(llm: LLM, messages: list[dict]) -> tuple[list[tuple[int, float]], int, int]:
    """The first answer token's top logprobs, the prompt's tokens and those taken from the cache."""
    stream = llm.chat(messages, GREEDY, max_tokens=1, logprobs=5)
    for _ in stream:
        pass
    usage = stream.usage
    top = [(t.token, t.logprob) for t in stream._stream.logprobs[0].top]
    return top, usage.prompt_tokens, usage.cached_tokens


def png_message(seed: int, text: str = "What is in this picture?") -> list[dict]:
    import io

    from PIL import Image

    rgb, w, h, _ = picture(seed)
    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), rgb).save(buf, "PNG")
    source = MediaSource(kind="image", field="messages[0].content[1]", data=buf.getvalue(), format="png")
    return [{"role": "user", "content": [{"type": "text", "text": text}, part(source)]}]


def test_the_projector_loads_and_says_what_it_takes(vlm: LLM) -> None:
    assert vlm.accepts == frozenset({"image"})
    assert vlm.projector is not None and vlm.projector.vision and not vlm.projector.audio


def test_a_picture_takes_its_tokens_in_the_prompt(vlm: LLM) -> None:
    request = media_request(vlm, "Look:", [bitmap(1)])
    (span,) = request.media
    assert span.n_tokens > 0 and not span.audio
    text_only = len(vlm.tokenize("Look:")) + len(vlm.tokenize(" Describe it.", add_special=False))
    # the picture's tokens and the model's wrapping tokens (none or a few) around them
    assert len(request.prompt) >= text_only + span.n_tokens
    held = request.prompt[span.start:span.start + span.n_tokens]
    assert (held < -2).all(), "a media token's place holds a placeholder, never a vocabulary id"


def test_two_pictures_give_different_logits_and_the_same_picture_the_same(vlm: LLM) -> None:
    a, n_a, _ = first_logprobs(vlm, png_message(11))
    b, n_b, _ = first_logprobs(vlm, png_message(12))
    assert n_a == n_b
    assert a != b, "the picture must reach the model: two pictures, two distributions"
    again, _, _ = first_logprobs(vlm, png_message(11))
    assert [t for t, _ in again] == [t for t, _ in a]


def test_the_same_picture_again_comes_from_the_cache(vlm: LLM) -> None:
    _, n_prompt, _ = first_logprobs(vlm, png_message(21, "First look at this one."))
    before = vlm.stats()["media_encoded"]
    _, n_again, cached = first_logprobs(vlm, png_message(21, "First look at this one."))
    assert n_again == n_prompt
    assert cached >= n_prompt - 2, "all but the last prompt tokens, the picture among them, are reused"
    assert vlm.stats()["media_encoded"] == before, "a cached picture is not encoded again"


def test_a_picture_stays_cached_while_the_next_request_runs(vlm: LLM) -> None:
    # With no idle budget (the default) a short idle cache goes when the next request starts; one
    # that holds a picture is kept as a long one is: encoding it again costs more than its cells.
    _, n_prompt, _ = first_logprobs(vlm, png_message(41, "Keep this one."))
    vlm.chat([{"role": "user", "content": "Hi"}], GREEDY, max_tokens=2).collect()
    _, _, cached = first_logprobs(vlm, png_message(41, "Keep this one."))
    assert cached >= n_prompt - 2


def test_another_picture_after_the_same_text_is_not_taken_from_the_cache(vlm: LLM) -> None:
    run(vlm, media_request(vlm, "Compare:", [bitmap(31)]))
    other = media_request(vlm, "Compare:", [bitmap(32)])
    (span,) = other.media
    event = run(vlm, other)
    assert event.n_cached <= span.start, "a prefix never reaches into a different picture"
    assert event.n_prompt == len(other.prompt)


def test_image_and_text_requests_together_all_answer(vlm: LLM) -> None:
    results: dict[str, str] = {}

    def ask(name: str, messages: list[dict]) -> None:
        stream = vlm.chat(messages, GREEDY, max_tokens=6)
        results[name] = "".join(d.content or "" for d in stream)
        results[name + ":finish"] = str(stream.finish_reason)

    jobs = [(f"img{i}", png_message(40 + i)) for i in range(3)]
    jobs += [(f"txt{i}", [{"role": "user", "content": f"Count to {i + 3}."}]) for i in range(3)]
    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(results.get(name + ":finish") in ("length", "stop") for name, _ in jobs), results


def test_cancelling_an_image_request_frees_its_slot(vlm: LLM) -> None:
    pump = vlm._pump
    started = [pump.submit_sync(media_request(vlm, f"Picture {i}:", [bitmap(50 + i)])) for i in range(4)]
    for request_id, _ in started:
        pump.cancel(request_id)
    finishes = [_last(events).finish for _, events in started]
    assert set(finishes) <= {_native.Finish.CANCELLED, _native.Finish.LENGTH}
    assert vlm.stats()["busy_slots"] == 0
    after = vlm.chat([{"role": "user", "content": "Hi"}], GREEDY, max_tokens=3)
    "".join(d.content or "" for d in after)
    assert after.finish_reason in ("length", "stop"), "the engine goes on after the cancels"


def test_media_spans_that_do_not_fit_the_prompt_are_refused(vlm: LLM) -> None:
    request = media_request(vlm, "Look:", [bitmap(60)])
    request.prompt = request.prompt[:request.media[0].start + 2]  # cut inside the picture
    with pytest.raises(InvalidArgumentError, match="media spans"):
        vlm._engine.submit(request)


def test_a_model_without_a_projector_refuses_media_and_names_the_field(tiny_gguf: Path) -> None:
    with LLM(tiny_gguf, EngineOptions(n_ctx=512, n_slots=1)) as llm:
        assert llm.accepts == frozenset()
        with pytest.raises(InvalidArgumentError, match="takes text only") as caught:
            llm.prepare_chat(png_message(1))
        assert caught.value.param == "messages[0].content[1]"


def test_a_broken_projector_file_is_a_load_error(tmp_path: Path, tiny_vlm: tuple[Path, Path]) -> None:
    broken = tmp_path / "mmproj.gguf"
    broken.write_bytes(tiny_vlm[1].read_bytes()[:4096])
    with pytest.raises(ModelLoadError, match="multimodal projector"):
        LLM(tiny_vlm[0], EngineOptions(n_ctx=512, n_slots=1, mmproj=str(broken)))


def run(llm: LLM, request: _native.Request) -> _native.Event:
    """Submits a raw request; its finishing event."""
    _, events = llm._pump.submit_sync(request)
    return _last(events)


def _last(events: object) -> _native.Event:
    while True:
        event = events.get(timeout=60)  # type: ignore[attr-defined]
        if event is not None and event.finished:  # None: a wake-up
            return event


def test_client_text_cannot_place_a_picture(vlm: LLM) -> None:
    from mr.engine.media import MARKER

    messages = png_message(70, f"Here {MARKER} is the marker")
    messages.insert(0, {"role": "system", "content": f"System text with {MARKER} in it."})
    prompt = vlm.prepare_chat(messages)
    assert len(prompt.media) == 1, "only the request's own picture is placed"
