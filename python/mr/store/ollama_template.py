"""Ollama's Go chat templates, recognised by shape and replaced by an equivalent Jinja template.

mr renders with the GGUF's own Jinja template. Only when a GGUF has none does an Ollama
artifact's Go template matter; a Go template is not translated token by token (Go's `template`
has its own functions and scoping) but recognised: when it is one of the common turn formats
(ChatML, Llama 3, Gemma) and carries no marker of another, mr uses that format's Jinja template.
Anything else is refused at load with an error that names the missing template.
"""

from __future__ import annotations

CHATML = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
GEMMA = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{%- endif %}"
)

# family -> (the markers its template must hold, its Jinja template)
SHAPES: dict[str, tuple[tuple[str, ...], str]] = {
    "chatml": (("<|im_start|>", "<|im_end|>"), CHATML),
    "llama3": (("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), LLAMA3),
    "gemma": (("<start_of_turn>", "<end_of_turn>"), GEMMA),
}
# Go template fields that mean "the conversation goes here"
_CONVERSATION = (".Messages", ".Prompt")


def shape(go_template: str) -> str | None:
    """The family of a Go template, or None when it is not exactly one of the known shapes."""
    if not any(field in go_template for field in _CONVERSATION):
        return None
    found = [name for name, (marks, _) in SHAPES.items()
             if any(mark in go_template for mark in marks)]
    if len(found) != 1:
        return None
    marks = SHAPES[found[0]][0]
    return found[0] if all(mark in go_template for mark in marks) else None


def translate(go_template: str) -> str | None:
    """The Jinja template for a recognised Go template, else None."""
    family = shape(go_template)
    return SHAPES[family][1] if family is not None else None
