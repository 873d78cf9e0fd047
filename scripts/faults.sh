#!/usr/bin/env bash
# The longer fault-injection pass on the store: more kill -9 points per run of the pull, and the
# CLI/server concurrency test. Usage: scripts/faults.sh [RUNS] (default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export MR_FAULT_RUNS="${1:-200}"
timeout 3600 python -m pytest -q -s -p no:cacheprovider tests/store/test_fault_injection.py
exec timeout 1200 python -m pytest -q -s -p no:cacheprovider tests/server/test_concurrent_store.py
