#!/usr/bin/env bash
# Runs mr's whole test suite on a clean clone: sets up first, then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python -m ruff check python tests bench
python -m mypy  # what it checks, and how strictly: [tool.mypy] in pyproject.toml
python -m pytest -q "$@"
