#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: a Python venv with the official
# `openai` and `ollama` clients (target/pyenv), and the Debian packages the tests run
# (python3; prometheus for promtool and a real Prometheus server).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=()   # command:package pairs are checked below
need() { command -v "$1" >/dev/null 2>&1 || APT_PACKAGES+=("$2"); }
need python3 python3
need promtool prometheus     # promtool and the Prometheus server (tests/prometheus.rs)
need prometheus prometheus
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  else
    echo "tests/setup.sh: missing ${APT_PACKAGES[*]}; install them (sudo apt-get install ${APT_PACKAGES[*]})" >&2
    exit 1
  fi
fi

VENV=target/pyenv
if ! "$VENV/bin/python" -c 'import openai, ollama' >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
fi
