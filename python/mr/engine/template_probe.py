"""A chat template is checked before mr renders with it: a GGUF's template is code from the
file's author, and llama.cpp's renderer has no bound on loops, recursion or output size (deep
recursion crashes the process). The probe renders the template with typical conversations in
Jinja2's sandbox, in a child process with a time limit and an address-space limit; a template
that runs too long, recurses without end, exhausts memory, produces a huge prompt or trips the
sandbox is refused with a clean TemplateError. Results are cached per template text.

Plain rendering errors (an undefined variable, a filter only llama.cpp has) are not the probe's
business: the real renderer reports those itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading

from mr.errors import TemplateError

log = logging.getLogger("mr.engine")
TIME_LIMIT_S = 5.0
MEMORY_LIMIT = 1 << 30  # address space of the probe process
MAX_PROMPT_CHARS = 4 << 20  # what a typical conversation may render to

_cache: dict[str, str | None] = {}
_lock = threading.Lock()

_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1]); max_chars = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.setrecursionlimit(2000)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
source = sys.stdin.read()

def raise_exception(message):
    raise ValueError(message)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(v, indent=indent)
env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: "1 January 2026")
tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
conversations = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Weather?"}],
    [{"role": "user", "content": "Weather in Oslo?"},
     {"role": "assistant", "content": "", "tool_calls": [call]},
     {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
]
try:
    template = env.from_string(source)  # constant expressions are folded here already
except MemoryError:
    print("the chat template exhausts memory"); sys.exit(0)
except RecursionError:
    print("the chat template nests without end"); sys.exit(0)
except Exception:
    print("ok"); sys.exit(0)  # not Jinja2's dialect: the real renderer judges it
for messages in conversations:
    for tools in (None, [tool]):
        try:
            out = template.render(messages=messages, tools=tools, add_generation_prompt=True,
                                  bos_token="<s>", eos_token="</s>")
        except SecurityError as exc:
            print("the chat template tried something the sandbox forbids: " + str(exc)[:120]); sys.exit(0)
        except RecursionError:
            print("the chat template recurses without end"); sys.exit(0)
        except MemoryError:
            print("the chat template exhausts memory"); sys.exit(0)
        except OverflowError as exc:
            print("the chat template builds something too large: " + str(exc)[:120]); sys.exit(0)
        except Exception:
            continue  # an ordinary rendering error is not the probe's business
        if len(out) > max_chars:
            print(f"the chat template renders a {len(out)}-character prompt for a short conversation")
            sys.exit(0)
print("ok")
"""


def check(source: str) -> None:
    """Raise TemplateError when `source` is hostile (see the module docstring)."""
    if not source:
        return
    key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    with _lock:
        if key in _cache:
            verdict = _cache[key]
        else:
            verdict = _probe(source)
            _cache[key] = verdict
    if verdict is not None:
        raise TemplateError(f"refusing this model's chat template: {verdict}")


def _probe(source: str) -> str | None:
    # The child needs no preloaded sanitizer runtime (ASan cannot start under RLIMIT_AS).
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _CHILD, str(MEMORY_LIMIT), str(MAX_PROMPT_CHARS)],
                              input=source, capture_output=True, text=True, timeout=TIME_LIMIT_S, env=env)
    except subprocess.TimeoutExpired:
        return f"rendering a short conversation took more than {TIME_LIMIT_S:.0f}s"
    verdict = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if verdict == "ok":
        return None
    if verdict:
        return verdict
    if done.returncode != 0 and "MemoryError" in done.stderr:
        return "the chat template exhausts memory"
    if done.returncode != 0:  # the check itself could not run (no jinja2, ...): say so, go on
        log.warning("could not check the chat template (exit %d): %s", done.returncode,
                    done.stderr.strip().splitlines()[-1:] or "")
    return None


__all__ = ["check"]
