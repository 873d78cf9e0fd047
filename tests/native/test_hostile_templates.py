"""A GGUF whose chat template loops, recurses or renders a huge prompt (issue 12, hostile
templates suite): refused with a clean TemplateError in bounded time and memory, never a hang
or a crash (deep recursion segfaulted llama.cpp's renderer), and the process carries on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mr.engine import LLM, EngineOptions
from mr.errors import TemplateError
from support import write_tiny_llama

HOSTILE = {
    "loop": "{% for i in range(100000000) %}x{% endfor %}",
    "nested-loops": "{% for a in messages * 100000 %}{% for b in messages * 100000 %}x{% endfor %}"
                    "{% endfor %}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "huge-output": "{{ 'x' * 1000000000 }}",
    "doubling": "{% set s = namespace(v='ab') %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}"
                "{% endfor %}{{ s.v }}",
    "escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
}
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", params=sorted(HOSTILE))
def hostile(request: pytest.FixtureRequest, smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("hostile") / f"{request.param}.gguf"
    write_tiny_llama(smollm2_path, path, chat_template=HOSTILE[request.param])
    return request.param, path


def test_a_hostile_template_is_refused_cleanly(hostile: tuple[str, Path]) -> None:
    name, path = hostile
    with LLM(path, EngineOptions(n_ctx=256, n_slots=1)) as llm:
        started = time.monotonic()
        with pytest.raises(TemplateError, match="refusing this model's chat template"):
            llm.prepare_chat(ASK)
        assert time.monotonic() - started < 15, name
        with pytest.raises(TemplateError):  # cached: refused again at once
            llm.chat(ASK)
        assert llm.generate("plain text still works", max_tokens=2).text() is not None


def test_ordinary_templates_pass(tiny_gguf: Path) -> None:
    with LLM(tiny_gguf, EngineOptions(n_ctx=256, n_slots=1)) as llm:
        assert len(llm.prepare_chat(ASK).tokens) > 3  # SmolLM2's own template
