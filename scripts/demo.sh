#!/usr/bin/env bash
# The main command of the README: sets up, then runs `mome demo` (corpus, models, training, report).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mome demo "$@"
