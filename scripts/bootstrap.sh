#!/usr/bin/env bash
# Prepare a fresh Debian machine with Python 3.11: git, a virtual environment in .venv, the CPU
# build of torch (pinned: an unpinned torch pulls several GB of CUDA wheels), and this project.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! command -v git >/dev/null 2>&1; then
  echo "bootstrap: installing git" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq git >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq git >/dev/null; fi
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "bootstrap: installing python3-venv" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >/dev/null; fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  echo "bootstrap: installing torch==2.13.0 (CPU build)" >&2
  "${PIP[@]}" install torch==2.13.0
fi
if ! .venv/bin/python -c 'import vast_launch, ups, wandb, vastai, obstore, moto, pytest, ruff' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.vast-launch-installed ]; then
  echo "bootstrap: installing vast-launch with the train and dev extras" >&2
  "${PIP[@]}" install -e '.[train,dev]' 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c 'import vast_launch, ups, wandb, vastai, obstore, moto, pytest, ruff'
  touch .venv/.vast-launch-installed
fi
echo "bootstrap: ready (.venv)" >&2
