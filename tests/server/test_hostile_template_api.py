"""Issue 29 item 4 end to end: a model packaged with a chat template that recurses only on a long
last message. Before vendor/patches/0008 the first such request killed `mr serve` (SIGSEGV in the
renderer). Now every chat API answers it with a clean 400 that says why, and the server goes on
serving the same model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serving import serve_client

HOSTILE = "ai/tiny-hostile-template"
LONG = "a message longer than twenty-four characters"
TEMPLATE = ("{%- macro f(n) -%}{{ f(n + 1) }}{%- endmacro -%}"
            "{%- if (messages[-1].content | length) > 24 -%}{{ f(0) }}{%- endif -%}"
            "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def hc(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[httpx.Client]:
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("hostile-store")
    template = tmp_path_factory.mktemp("hostile-template") / "recurses-on-long.jinja"
    template.write_text(TEMPLATE)
    package_gguf(Store(root), tiny_gguf, HOSTILE, chat_template=template)
    with serve_client(root, tmp_path_factory.mktemp("hostile-home")) as client:
        yield client


def requests_for(text: str) -> dict[str, dict]:
    msgs = [{"role": "user", "content": text}]
    return {
        "/v1/chat/completions": {"model": HOSTILE, "messages": msgs, "max_tokens": 2},
        "/v1/messages": {"model": HOSTILE, "messages": msgs, "max_tokens": 2},
        "/v1/responses": {"model": HOSTILE, "input": text, "max_output_tokens": 2},
        "/api/chat": {"model": HOSTILE, "messages": msgs, "stream": False, "options": {"num_predict": 2}},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_every_chat_api_refuses_it_and_the_server_stays_up(hc: httpx.Client, stream: bool) -> None:
    for path, body in requests_for(LONG).items():
        if path != "/api/chat":
            body["stream"] = stream
        reply = hc.post(path, json=body)
        assert reply.status_code == 400, (path, reply.status_code, reply.text)
        assert "exceeds the renderer's bounds" in reply.text, (path, reply.text)
        assert hc.get("/health").status_code == 200
    for path, body in requests_for("short msg").items():  # the same model still answers
        reply = hc.post(path, json=body)
        assert reply.status_code == 200, (path, reply.text)
