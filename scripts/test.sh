#!/usr/bin/env bash
# Runs mr's whole test suite on a clean clone: sets up first, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -m ruff check python tests bench
python -m pytest -q "$@"
