#!/usr/bin/env bash
# The longer fuzzing pass: Schemathesis against a server with SmolLM2 loaded (every operation,
# pulls from a local registry) and the Hypothesis properties of the text pipeline, with more
# examples than the test suite's fast version. Usage: scripts/fuzz.sh [EXAMPLES] (default 40).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export MR_FUZZ_EXAMPLES="${1:-40}"
exec timeout 3600 python -m pytest -q -s -p no:cacheprovider \
  tests/server/test_fuzz_loaded.py tests/engine/test_properties.py tests/server/test_openapi.py
