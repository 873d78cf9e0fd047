#!/usr/bin/env bash
# The soak: mixed traffic against one server for minutes (streaming and not, n > 1, tools,
# embeddings, disconnects mid-stream and while queued, unload/reload, keep-alive expiry), then
# every request accounted for, slots idle, queues empty, RSS growth < 5%, fds back to baseline.
# Usage: scripts/soak.sh [SECONDS] (default 600). Prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .venv/bin/activate
export MR_SOAK_SECONDS="${1:-600}"
exec timeout $((MR_SOAK_SECONDS + 600)) python -m pytest -q -s -p no:cacheprovider tests/server/test_soak.py
