#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: a Python venv with the official
# `openai` and `ollama` clients and kubernetes-validate (target/pyenv), and the Debian packages
# the tests run (Prometheus: promtool and the server for tests/prometheus.rs and the deploy tests;
# Redis for the deploy tests).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=()   # command:package pairs are checked below
need() { command -v "$1" >/dev/null 2>&1 || APT_PACKAGES+=("$2"); }
need python3 python3
need promtool prometheus
need prometheus prometheus
need redis-server redis-server
need redis-cli redis-tools
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  else
    echo "tests/setup.sh: missing ${APT_PACKAGES[*]}; install them (sudo apt-get install ${APT_PACKAGES[*]})" >&2
    exit 1
  fi
fi

# kubectl renders deploy/k8s (kustomize v5, offline). It comes with this machine image; Debian's
# own kubernetes-client (1.20) is too old for kustomize components, so it is not a fallback.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "tests/setup.sh: kubectl is missing (it comes with the machine image); install kubectl >= 1.27" >&2
  exit 1
fi

VENV=target/pyenv
if ! "$VENV/bin/python" -c 'import openai, ollama, kubernetes_validate' >/dev/null 2>&1; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
fi
