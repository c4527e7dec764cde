#!/usr/bin/env bash
# Opt-in check against a real Open WebUI (PyPI `open-webui`), not part of tests/run.sh or CI:
# installs it once (about 8 minutes, 7 GB) into $OWUI_VENV, starts it offline on a fresh data
# dir behind llmgate, mints an sk- key and a JWT, and checks both through llmgate with the
# official openai client: once with the shipped default (introspection), once with the JWT
# secret shared (local HS256 verification).
#
#   bash tests/real/openwebui.sh          # OWUI_VENV=target/real/owui by default
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${OWUI_VENV:-$ROOT/target/real/owui}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! "$VENV/bin/python" -c 'import open_webui, openai' >/dev/null 2>&1; then
  echo "== installing open-webui and openai into $VENV (once; several minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check open-webui openai
fi
echo "== open-webui $("$VENV/bin/pip" show open-webui | sed -n 's/^Version: //p')"
cargo build --release --quiet
LLMGATE=$ROOT/target/release/llmgate

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url seconds
  for _ in $(seq 1 "$2"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 1; done
  echo "no answer from $1" >&2; return 1
}

FAKE_PORT=$(free_port); OWUI_PORT=$(free_port)
python3 tests/real/fake_openai.py "$FAKE_PORT" & PIDS+=($!)

SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
echo "== starting Open WebUI on 127.0.0.1:$OWUI_PORT"
(
  cd "$WORK"
  exec env DATA_DIR="$WORK/data" WEBUI_SECRET_KEY="$SECRET" WEBUI_AUTH=true ENABLE_API_KEYS=true \
    OFFLINE_MODE=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RAG_EMBEDDING_ENGINE=openai RAG_EMBEDDING_MODEL=text-embedding-3-small \
    RAG_OPENAI_API_BASE_URL="http://127.0.0.1:$FAKE_PORT/v1" RAG_OPENAI_API_KEY=sk-local \
    ENABLE_OLLAMA_API=false ENABLE_OPENAI_API=true \
    OPENAI_API_BASE_URL="http://127.0.0.1:$FAKE_PORT/v1" OPENAI_API_KEY=sk-local \
    ENABLE_TITLE_GENERATION=false ENABLE_TAGS_GENERATION=false ENABLE_FOLLOW_UP_GENERATION=false \
    ENABLE_AUTOCOMPLETE_GENERATION=false ENABLE_VERSION_UPDATE_CHECK=false ANONYMIZED_TELEMETRY=false \
    "$VENV/bin/open-webui" serve --host 127.0.0.1 --port "$OWUI_PORT" >"$WORK/owui.log" 2>&1
) & PIDS+=($!)
wait_http "http://127.0.0.1:$OWUI_PORT/health" 240 || { tail -50 "$WORK/owui.log"; exit 1; }

OWUI=http://127.0.0.1:$OWUI_PORT
JWT=$(curl -fsS -H 'content-type: application/json' \
  -d '{"name":"Admin","email":"admin@example.com","password":"correct-horse-battery"}' \
  "$OWUI/api/v1/auths/signup" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
SK=$(curl -fsS -X POST -H "authorization: Bearer $JWT" "$OWUI/api/v1/auths/api_key" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
echo "== minted a JWT and an sk- key"

run_llmgate() { # extra [auth] lines
  local port admin
  port=$(free_port); admin=$(free_port)
  sed -e "s/127.0.0.1:8080/127.0.0.1:$OWUI_PORT/" -e "s/127.0.0.1:8000/127.0.0.1:$port/" \
      -e "s/127.0.0.1:9100/127.0.0.1:$admin/" config/llmgate.toml >"$WORK/llmgate.toml"
  printf '%s\n' "$1" >>"$WORK/llmgate.toml"
  "$LLMGATE" --config "$WORK/llmgate.toml" >"$WORK/llmgate.log" 2>&1 & PIDS+=($!)
  wait_http "http://127.0.0.1:$admin/readyz" 20
  LLMGATE_URL=http://127.0.0.1:$port
}

echo "== llmgate with the shipped config (introspection)"
run_llmgate ""
"$VENV/bin/python" tests/real/check_openwebui.py "$LLMGATE_URL" "$SK" "$JWT"
if grep -qF -e "$SK" -e "$JWT" "$WORK/llmgate.log"; then echo "a credential is in llmgate's log" >&2; exit 1; fi
kill "${PIDS[-1]}"

echo "== llmgate with openwebui_jwt_secret (local JWT verification)"
run_llmgate "openwebui_jwt_secret = \"$SECRET\""
"$VENV/bin/python" tests/real/check_openwebui.py "$LLMGATE_URL" "$SK" "$JWT"
echo "== real Open WebUI: all checks passed"
