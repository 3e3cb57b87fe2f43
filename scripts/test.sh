#!/usr/bin/env bash
# Set up from nothing (setup.sh's all profile: everything), then lint, type-check and run the
# test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
# worksteal: the long model-parity tests do not leave one worker idle at the end.
exec .venv/bin/python -m pytest -n 2 --dist worksteal "$@"
