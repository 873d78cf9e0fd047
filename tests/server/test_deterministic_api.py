"""`mr serve --deterministic` (Settings.deterministic, MR_DETERMINISTIC; conftest.det_url) through the
official OpenAI client: n, streaming and concurrent clients do not change a greedy or seeded answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

from support.serving import SMOL

MESSAGES = [{"role": "user", "content": "Name three colours of the rainbow and say why the sky is blue."}]
TOKENS = 24


def _ask(client: openai.OpenAI, **kw: object) -> list[str]:
    args = {"model": SMOL, "messages": MESSAGES, "max_tokens": TOKENS, "temperature": 0, **kw}
    reply = client.chat.completions.create(**args)  # type: ignore[call-overload]
    return [c.message.content for c in sorted(reply.choices, key=lambda c: c.index)]


def _streamed(client: openai.OpenAI, **kw: object) -> str:
    args = {"model": SMOL, "messages": MESSAGES, "max_tokens": TOKENS, "temperature": 0, **kw}
    chunks = client.chat.completions.create(stream=True, **args)  # type: ignore[call-overload]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_status_says_the_mode_is_on(det_url: str) -> None:
    status = httpx.get(f"{det_url}/engines/status", timeout=10).json()
    assert status["defaults"]["deterministic"] is True and status["defaults"]["kv_cache"] == "per-slot"


def test_n_3_gives_n_1_answer_three_times(det_oai: openai.OpenAI) -> None:
    (one,) = _ask(det_oai)
    assert one and _ask(det_oai, n=3) == [one] * 3
    # seeded: choice i samples with seed + i, so choice 0 is the n = 1 answer
    (seeded,) = _ask(det_oai, temperature=0.9, seed=5)
    assert _ask(det_oai, n=3, temperature=0.9, seed=5)[0] == seeded


def test_streamed_equals_not_streamed(det_oai: openai.OpenAI) -> None:
    (whole,) = _ask(det_oai)
    assert _streamed(det_oai) == whole


def test_seeded_answer_is_the_same_alone_and_amid_other_clients(det_oai: openai.OpenAI) -> None:
    seeded = {"temperature": 0.9, "seed": 42}
    (alone,) = _ask(det_oai, **seeded)
    others = [{"messages": [{"role": "user", "content": f"Tell me a story number {i}."}], "temperature": 0.8,
               "seed": i, "max_tokens": 40} for i in range(3)]
    with ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(_ask, det_oai, **o) for o in others]
        mine = pool.submit(_streamed, det_oai, **seeded)
        assert mine.result() == alone
        assert all(len(f.result()) == 1 for f in busy)
