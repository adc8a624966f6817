#!/usr/bin/env bash
# Starts a mutual-TLS nats-server (or a cluster of 3 with NATS_SERVERS=3) on
# 127.0.0.1 from a config and certificates generated under the state dir.
#   NATS_STATE_DIR (default .tmp/nats)  NATS_PORT (default 4222)
#   NATS_SERVERS (1 or 3)  NATS_CLUSTER_PORT (default 6222)  NATS_HTTP_PORT (default 8222)
#   BEEMESH_TRUST_DOMAIN (default beemesh.local)  BEEMESH_PREFIX (default beemesh)
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH="$(hack/ensure-node.sh):$PATH"
STATE="${NATS_STATE_DIR:-.tmp/nats}"
BIN="${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
[ -x "$BIN" ] || { echo "nats-server not found; run hack/nats/install.sh" >&2; exit 1; }

mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
# Never regenerate certificates or config under a running server.
if [ -f "$STATE/servers.txt" ]; then
  while read -r name _conf pidfile _logfile url; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name already running (pid $(cat "$pidfile"), $url); hack/nats/down.sh stops it"
      running=1
    fi
  done < "$STATE/servers.txt"
  [ -z "${running:-}" ] || exit 0
fi
npx --no-install tsx hack/nats/gen-config.ts --state "$STATE" \
  --port "${NATS_PORT:-4222}" --servers "${NATS_SERVERS:-1}" \
  --cluster-port "${NATS_CLUSTER_PORT:-6222}" --http-port "${NATS_HTTP_PORT:-8222}" \
  --trust-domain "${BEEMESH_TRUST_DOMAIN:-beemesh.local}" --prefix "${BEEMESH_PREFIX:-beemesh}" > "$STATE/servers.txt"

started=()
while read -r name conf pidfile logfile _url; do
  : > "$logfile"
  nohup "$BIN" -c "$conf" >>"$logfile" 2>&1 &
  echo $! > "$pidfile"
  started+=("$name $logfile $pidfile")
done < "$STATE/servers.txt"

# Wait for each server's "Server is ready" line (bounded), not for a fixed time.
for entry in "${started[@]}"; do
  read -r name logfile pidfile <<<"$entry"
  for _ in $(seq 1 300); do
    if grep -q "Server is ready" "$logfile"; then break; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name exited; last log lines:" >&2; tail -n 20 "$logfile" >&2; exit 1
    fi
    sleep 0.1
  done
  grep -q "Server is ready" "$logfile" || { echo "$name not ready after 30 s" >&2; tail -n 20 "$logfile" >&2; exit 1; }
done
# A cluster answers JetStream only once it has a meta leader: wait for /healthz.
if command -v curl >/dev/null; then
  for i in $(seq 0 $(( ${NATS_SERVERS:-1} - 1 ))); do
    hp=$(( ${NATS_HTTP_PORT:-8222} + i ))
    for _ in $(seq 1 300); do
      curl -fs "http://127.0.0.1:$hp/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -fs "http://127.0.0.1:$hp/healthz" >/dev/null || { echo "nats-$i: /healthz not ok after 30 s" >&2; exit 1; }
  done
fi
for entry in "${started[@]}"; do
  read -r name logfile pidfile <<<"$entry"
  echo "$name ready (pid $(cat "$pidfile"), log $logfile)"
done
echo "client certificates: $STATE/tls/<role>.crt|.key, bundle $STATE/tls/bundle.crt"
echo "urls: $(awk '{print $5}' "$STATE/servers.txt" | paste -sd, -)"
