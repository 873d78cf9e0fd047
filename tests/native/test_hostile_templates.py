"""A GGUF whose chat template recurses, loops, nests or allocates without end (issue 12's hostile
templates, issue 29 item 4): llama.cpp's renderer itself refuses it with a clean TemplateError
(vendor/patches/0008 bounds depth, steps and sizes) on any conversation, and the process carries
on. Before the patch, deep recursion overflowed the stack (SIGSEGV) and the rest ran or allocated
until the machine gave out."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from mr import _native
from mr.engine import LLM, EngineOptions
from mr.errors import TemplateError
from support.models import write_tiny_llama

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Recurses only when the last message is long: it renders a short conversation (and any fixed
# sample a load-time check might try) and crashed the server on the first longer one.
RECURSES_ON_LONG = ("{%- macro f(n) -%}{{ f(n + 1) }}{%- endmacro -%}"
                    "{%- if (messages[-1].content | length) > 24 -%}{{ f(0) }}{%- endif -%}" + CHATML)

BOUNDS = "exceeds the renderer's bounds"
NESTS = "nests more than"
# name: (template, what the refusal says)
HOSTILE = {
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", BOUNDS),
    "loop": ("{% for i in range(100000000) %}x{% endfor %}", BOUNDS),
    "nested-loops": ("{% for a in range(1000000) %}{% for b in range(1000000) %}x{% endfor %}{% endfor %}",
                     BOUNDS),
    "huge-output": ("{{ 'x' * 1000000000 }}", BOUNDS),
    "doubling": ("{% set s = namespace(v='ab') %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}"
                 "{% endfor %}{{ s.v }}", BOUNDS),
    "replace-growth": ("{{ ('a' * 1000000) | replace('a', '" + "b" * 200 + "') }}", BOUNDS),
    "indent-width": ("{{ 'a\\nb' | indent(10000000000) }}", BOUNDS),
    "join-growth": ("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                    "{% set _ = ns.l.append('x' * 100000) %}{% endfor %}{{ ns.l | join('') }}", BOUNDS),
    "self-holding-list": ("{% set ns = namespace(a=[]) %}{% set _ = ns.a.append(ns.a) %}{{ ns.a | tojson }}",
                          BOUNDS),
    "tojson-indent": ("{{ messages | tojson(indent=100000000) }}", BOUNDS),
    "deep-parentheses": ("{{ " + "(" * 100000 + "1" + ")" * 100000 + " }}", NESTS),
    "long-chain": ("{{ " + " + ".join(["1"] * 100000) + " }}", NESTS),
    "deep-ifs": ("{% if 1 %}" * 50000 + "x" + "{% endif %}" * 50000, NESTS),
    "escape": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", ""),  # no Python objects: an error
}
ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def smol_model(smollm2_path: Path) -> _native.Model:
    return _native.Model(str(smollm2_path))


# ASan's redzones make the renderer's frames about three times larger (scripts/sanitize.sh runs
# these tests with it): the stack grows with them, while the depth bound is the same.
SMALL_STACK = 512 * 1024 * (4 if "libasan" in os.environ.get("LD_PRELOAD", "") else 1)


def apply_in_small_stack(templates: _native.ChatTemplates, messages: list[dict]) -> BaseException | None:
    """Render on a thread with a 512 KiB stack (16 times less than a default thread's; 2 MiB
    under ASan): the depth bound must hold well inside any thread mr renders on."""
    caught: list[BaseException | None] = [None]

    def run() -> None:
        try:
            templates.apply(json.dumps(messages))
        except BaseException as exc:  # handed to the test thread
            caught[0] = exc

    old = threading.stack_size(SMALL_STACK)
    try:
        worker = threading.Thread(target=run)
        worker.start()
    finally:
        threading.stack_size(old)
    worker.join()
    return caught[0]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_renderer_refuses_a_hostile_template(smol_model: _native.Model, name: str) -> None:
    template, says = HOSTILE[name]
    try:
        templates = _native.ChatTemplates(smol_model, template)
    except TemplateError as exc:  # refused while parsing: only the nesting ones may be
        assert says == NESTS, f"{name}: {exc}"
        assert NESTS in str(exc)
        return
    assert says != NESTS, f"{name} was parsed"
    exc = apply_in_small_stack(templates, ASK)
    assert isinstance(exc, TemplateError), f"{name}: {exc!r}"
    assert says in str(exc), f"{name}: {exc}"


def test_ordinary_deep_templates_still_render(smol_model: _native.Model) -> None:
    # Deep enough for any real template: 100 nested parentheses, 100 nested ifs, a macro calling
    # itself 50 times, and a 4096-element loop.
    template = ("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(50) }}"
                "{{ " + "(" * 100 + "1" + ")" * 100 + " }}" + "{% if 1 %}" * 100 + "ok"
                + "{% endif %}" * 100 + "{% for i in range(4096) %}.{% endfor %}" + CHATML)
    prompt = _native.ChatTemplates(smol_model, template).apply(json.dumps(ASK)).prompt
    assert prompt.startswith("1ok" + "." * 4096 + "<|im_start|>user\nhi<|im_end|>")


def test_a_template_that_recurses_on_long_messages(smollm2_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "recurses-on-long.gguf"
    write_tiny_llama(smollm2_path, path, chat_template=RECURSES_ON_LONG)
    with LLM(path, EngineOptions(n_ctx=256, n_slots=1)) as llm:
        short = llm.render_chat([{"role": "user", "content": "short msg"}])[0]
        assert "<|im_start|>user\nshort msg<|im_end|>" in short
        with pytest.raises(TemplateError, match=BOUNDS):
            llm.prepare_chat([{"role": "user", "content": "a message longer than twenty-four characters"}])
        assert llm.render_chat([{"role": "user", "content": "short msg"}])[0] == short  # still renders
        stream = llm.generate("plain text still works", max_tokens=2, ignore_eos=True)
        stream.text()
        assert stream.n_generated == 2


def test_ordinary_templates_pass(tiny_gguf: Path) -> None:
    with LLM(tiny_gguf, EngineOptions(n_ctx=256, n_slots=1)) as llm:
        assert len(llm.prepare_chat(ASK).tokens) > 3  # SmolLM2's own template
