"""Helpers shared by the test folders, imported as `support` (pyproject's pytest `pythonpath` holds
tests/): `models` writes tiny GGUFs, `serving` runs servers over a test store, `sse` parses streams
strictly, `workers` runs `mr worker`s, `registry_stub` and `real_registry` are registries to pull
from, `ollama_push` uploads Ollama-format models, `env` lets a child process import mr, `bench_cli` runs
`python -m bench` so that its servers die with it."""
