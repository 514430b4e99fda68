#!/usr/bin/env bash
# Create .venv if missing (or if pyproject.toml changed) with the CPU torch pinned first, so nothing pulls a
# CUDA build. Idempotent: a stamp of pyproject.toml's hash skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.graphroute-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[serve,train,dev]"
  echo "$want" > "$stamp"
fi
# The console's browser test drives Debian's Chromium through ChromeDriver; install them where they are missing
# and this machine can (root or sudo with apt-get).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "warning: could not install chromium and chromium-driver; the console's browser test will fail" >&2
  else
    echo "warning: no apt-get: install Chromium and ChromeDriver for the console's browser test" >&2
  fi
fi
