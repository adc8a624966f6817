#!/usr/bin/env bash
# Starts Beemesh on this host with podman-compose (compose.yaml beside this file):
#   1. builds the local images (hack/build-local-images.sh; skip with BEEMESH_SKIP_BUILD=1),
#   2. writes ./state: CA, certificates, nats.conf (hack/deploy-certs.ts --target podman),
#      once; BEEMESH_RENEW=1 issues fresh certificates from the same CA,
#   3. starts the host's podman API service on /run/podman/podman.sock if nothing serves it,
#   4. podman-compose up -d.
# Environment: BEEMESH_NODE_ID (default: this host's short name), BEEMESH_TRUST_DOMAIN,
# BEEMESH_SVID_TTL_HOURS (default 24), CONTAINERS_CONF (default hack/podman/containers.conf).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
PATH="$(hack/ensure-node.sh):$PATH"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/hack/podman/containers.conf}"
STATE="$HERE/state"
SOCKET=/run/podman/podman.sock
APP_UID=65532

log() { echo "podman-deploy: $*"; }
command -v podman-compose >/dev/null || { log "podman-compose not found (apt-get install podman-compose)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { log "run as root: the node agent drives root's podman" >&2; exit 1; }

# Node ids end up in NATS subjects: lowercase letters, digits, - and _ only.
NODE_ID="${BEEMESH_NODE_ID:-$(hostname -s | tr 'A-Z.' 'a-z-')}"
export BEEMESH_NODE_ID="$NODE_ID"

[ "${BEEMESH_SKIP_BUILD:-0}" = 1 ] || hack/build-local-images.sh

if [ ! -f "$STATE/nats/nats.conf" ] || [ "${BEEMESH_RENEW:-0}" = 1 ]; then
  npx --no-install tsx hack/deploy-certs.ts --target podman --out "$STATE" --nodes "$NODE_ID" \
    --trust-domain "${BEEMESH_TRUST_DOMAIN:-beemesh.local}" --ttl-hours "${BEEMESH_SVID_TTL_HOURS:-24}"
  # nats and the controllers run as $APP_UID; the CA and the admin key stay root's.
  chown -R "$APP_UID:$APP_UID" "$STATE/nats" "$STATE/dispatcher" "$STATE/lease-keeper"
fi
mkdir -p /run/beemesh/workload-api

if ! podman --url "unix://$SOCKET" info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl enable --now podman.socket
  else
    mkdir -p "$(dirname "$SOCKET")"
    nohup podman system service --time=0 "unix://$SOCKET" >"$STATE/podman-service.log" 2>&1 &
    echo $! >"$STATE/podman-service.pid"
    for _ in $(seq 1 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
    [ -S "$SOCKET" ] || { log "podman system service did not create $SOCKET" >&2; exit 1; }
    log "started podman system service (pid $(cat "$STATE/podman-service.pid"))"
  fi
fi

cd "$HERE"
podman-compose -f compose.yaml up -d
log "up: NATS tls://127.0.0.1:4222, API https://127.0.0.1:6443, node $NODE_ID"
log "admin client certificate: $STATE/admin/admin.crt (key admin.key, CA bundle.crt)"
