"""One path from a request to the engine, shared by every API.

OpenAI chat and completions, Ollama's chat and generate, Anthropic Messages and the Responses API
each turn their body into a `Prepared` request (`Chat` or `Text` input; tools through
`tool_options`, so every API follows one rule for tool calls), `start` it, and shape the
`Running` streams' results into their own wire format. Imports point down: the APIs' packages
import this one, never the reverse.
"""

from mr.server.generation.answer import collect, count_prompt, event_stream
from mr.server.generation.fields import checked_text, log_unknown_fields, new_id
from mr.server.generation.prepared import Chat, Prepared, Sampler, Text, same_sampling
from mr.server.generation.sampling import sampling_fields, sampling_of, seeded
from mr.server.generation.start import Direct, Running, check_fits, start
from mr.server.generation.submit import finish_all
from mr.server.generation.tools import parallel_calls, tool_options

__all__ = ["Chat", "Direct", "Prepared", "Running", "Sampler", "Text", "check_fits", "checked_text",
           "collect", "count_prompt", "event_stream", "finish_all", "log_unknown_fields", "new_id",
           "parallel_calls", "same_sampling", "sampling_fields", "sampling_of", "seeded", "start",
           "tool_options"]
