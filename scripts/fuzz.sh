#!/usr/bin/env bash
# The longer fuzzing pass: Schemathesis against a server with SmolLM2 loaded (every operation,
# pulls from a local registry) and the Hypothesis properties of the text pipeline, with more
# examples than the test suite's fast version.
#   scripts/fuzz.sh [EXAMPLES]          examples per operation (default 40), lengths capped at 16
#   scripts/fuzz.sh --long [EXAMPLES]   default 200 per operation; schema-breaking inputs too
#                                       (integers past every bound, wrong types), generation
#                                       lengths up to 256, lengths beyond 32 bits sent as they are,
#                                       5000 examples per text-pipeline property
# The test suite's own run (5 and 12 examples, lengths 16) is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
if [[ "${1:-}" == "--long" ]]; then
  shift
  export MR_FUZZ_LONG=1
  export MR_FUZZ_EXAMPLES="${1:-200}"
else
  export MR_FUZZ_EXAMPLES="${1:-40}"
fi
exec timeout "${MR_FUZZ_TIMEOUT:-3600}" python -m pytest -q -s -p no:cacheprovider \
  tests/server/test_fuzz_loaded.py tests/engine/test_properties.py tests/server/test_openapi.py
