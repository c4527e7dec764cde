#!/usr/bin/env bash
# Runs the compose stack's processes directly on this machine, with the files from deploy/, on
# free loopback ports: llmgate (deploy/llmgate.toml), a real Prometheus (deploy/prometheus/
# prometheus.yml), Redis (started as compose's redis service is), and a stand-in Open WebUI.
# Checks the image's HEALTHCHECK command, that requests go through llmgate, that Prometheus
# scrapes llmgate, and that llmgate drains and exits 0 on SIGTERM. Bounded in time; cleans up.
#
#   deploy/smoke/run.sh [LLMGATE_BINARY]    (default: target/release/llmgate)
#
# Needs prometheus, redis-server, redis-cli (Debian packages prometheus, redis-server) and
# python3; tests/setup.sh installs them. The test suite runs it (tests/deploy_smoke.rs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(dirname "$here")"
llmgate="${1:-$deploy/../target/release/llmgate}"
[ -x "$llmgate" ] || { echo "smoke: no llmgate binary at $llmgate (cargo build --release)" >&2; exit 2; }
for tool in prometheus redis-server redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "smoke: $tool is missing; run tests/setup.sh" >&2; exit 2; }
done

tmp="$(mktemp -d)"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    for log in "$tmp"/*.log; do echo "--- $(basename "$log") (last lines)"; tail -n 20 "$log"; done >&2
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Replaces $2 by $3 in file $1, failing when $2 is not there (the shipped file has changed).
rewrite() {
  grep -qF -- "$2" "$1" || { echo "smoke: expected '$2' in $1" >&2; exit 1; }
  python3 - "$@" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
open(path, "w").write(text.replace(old, new))
PY
}

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "smoke: timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

read -r proxy_port admin_port owui_port prom_port redis_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

# Open WebUI stand-in, where compose runs the open-webui service.
python3 "$here/openwebui_standin.py" "$owui_port" 2>"$tmp/openwebui.log" &
pids+=($!)

# Redis, with the arguments of compose's redis service.
mapfile -t redis_args < <(python3 -c '
import json, re, sys
m = re.search(r"^  redis:\n(?:    .*\n)*?    command: (\[.*\])$", open(sys.argv[1]).read(), re.M)
print("\n".join(json.loads(m.group(1))[1:]))' "$deploy/compose.yaml")
redis-server "${redis_args[@]}" --bind 127.0.0.1 --port "$redis_port" --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)

# llmgate with deploy/llmgate.toml, listeners and upstream moved to loopback ports.
cp "$deploy/llmgate.toml" "$tmp/llmgate.toml"
rewrite "$tmp/llmgate.toml" '"0.0.0.0:8000"' "\"127.0.0.1:$proxy_port\""
rewrite "$tmp/llmgate.toml" '"0.0.0.0:9100"' "\"127.0.0.1:$admin_port\""
rewrite "$tmp/llmgate.toml" '"http://open-webui:8080"' "\"http://127.0.0.1:$owui_port\""
# The keys file compose mounts as a secret: the example plus one key made as deploy/README.md says.
rewrite "$tmp/llmgate.toml" '"/run/secrets/llmgate/keys.toml"' "\"$tmp/keys.toml\""
cp "$deploy/secrets/keys.toml.example" "$tmp/keys.toml"
"$llmgate" keys new --id smoke >"$tmp/key.out"
key=$(sed -n 's/^key: //p' "$tmp/key.out")
sed -n '/^\[\[keys\]\]/,$p' "$tmp/key.out" >>"$tmp/keys.toml"
# The environment compose gives the llmgate service: secrets.env, then its `environment:`, with
# the Redis backend as `--profile redis` runs it.
secret="smoke-$(python3 -c "import secrets; print(secrets.token_hex(16))")"
sed "s|^WEBUI_SECRET_KEY=.*|WEBUI_SECRET_KEY=$secret|" \
  "$deploy/secrets/secrets.env.example" >"$tmp/secrets.env"
(
  set -a; . "$tmp/secrets.env"; set +a
  export LLMGATE_RATE_LIMIT_BACKEND=redis LLMGATE_REDIS_URL="redis://127.0.0.1:$redis_port"
  "$llmgate" check --config "$tmp/llmgate.toml" >/dev/null
  exec "$llmgate" --config "$tmp/llmgate.toml" >"$tmp/llmgate.log" 2>&1
) &
llmgate_pid=$!
pids+=("$llmgate_pid")

# Prometheus with deploy/prometheus/prometheus.yml, scraping the loopback admin port every second.
cp "$deploy/prometheus/prometheus.yml" "$deploy/prometheus/alerts.yml" "$tmp/"
rewrite "$tmp/prometheus.yml" '"llmgate:9100"' "\"127.0.0.1:$admin_port\""
rewrite "$tmp/prometheus.yml" 'scrape_interval: 15s' 'scrape_interval: 1s'
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

wait_for 15 redis-cli -p "$redis_port" ping
echo "smoke: redis answers PONG on 127.0.0.1:$redis_port"

# The image's HEALTHCHECK, run as Docker would (the admin port moved to the loopback one).
healthcheck=$(python3 -c '
import json, re, sys
m = re.search(r"^  CMD (\[.*\])$", open(sys.argv[1]).read(), re.M)
print("\n".join(json.loads(m.group(1))[1:]))' "$deploy/Dockerfile")
mapfile -t probe_args <<<"${healthcheck//127.0.0.1:9100/127.0.0.1:$admin_port}"
wait_for 15 "$llmgate" "${probe_args[@]}"
echo "smoke: HEALTHCHECK passes: llmgate ${probe_args[*]}"

wait_for 15 python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$owui_port/health', timeout=1)"
python3 "$here/check.py" proxy "$proxy_port" "$key" "$secret"
python3 "$here/check.py" prometheus "$prom_port" 3
# The limits were decided in Redis, as every replica would share them (its keys expire within a
# second at these rates, so count the scripts Redis ran instead).
scripts=$(redis-cli -p "$redis_port" info commandstats | awk -F'[=,]' '/^cmdstat_eval/ { n += $2 } END { print n + 0 }')
[ "${scripts:-0}" -gt 0 ] || { echo "smoke: llmgate decided no rate limit in Redis" >&2; exit 1; }
echo "smoke: rate limits were decided in Redis ($scripts script calls)"

# Stop llmgate as Docker and Kubernetes do: SIGTERM, then it drains and exits 0.
kill -TERM "$llmgate_pid"
deadline=$((SECONDS + 15))
while kill -0 "$llmgate_pid" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "smoke: llmgate did not exit after SIGTERM" >&2; exit 1; }
  sleep 0.1
done
wait "$llmgate_pid" || { echo "smoke: llmgate exited with status $?" >&2; exit 1; }
grep -q "drain complete" "$tmp/llmgate.log" || { echo "smoke: no drain line in llmgate's log" >&2; exit 1; }
echo "smoke: llmgate drained and exited 0 on SIGTERM"
echo "smoke: ok"
