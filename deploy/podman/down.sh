#!/usr/bin/env bash
# Stops what deploy/podman/up.sh started: the compose services, then the podman
# API service if up.sh started it (by its pid file). --purge also removes ./state
# (the CA, certificates and JetStream data). Pods the node agent started keep
# running; remove them with `podman pod rm -f` if wanted.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$HERE/../.." && pwd)/hack/podman/containers.conf}"
STATE="$HERE/state"
cd "$HERE"
if command -v podman-compose >/dev/null; then podman-compose -f compose.yaml down; fi
if [ -f "$STATE/podman-service.pid" ]; then
  pid="$(cat "$STATE/podman-service.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "podman-deploy: stopped podman system service (pid $pid)"
  fi
  rm -f "$STATE/podman-service.pid"
fi
if [ "${1:-}" = "--purge" ]; then rm -rf "$STATE"; echo "podman-deploy: removed $STATE"; fi
