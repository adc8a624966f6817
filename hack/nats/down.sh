#!/usr/bin/env bash
# Stops the servers hack/nats/up.sh started (by their pid files), TERM then KILL.
#   NATS_STATE_DIR (default .tmp/nats); --purge also removes the state dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE="${NATS_STATE_DIR:-.tmp/nats}"
[ -f "$STATE/servers.txt" ] || { echo "nothing to stop under $STATE"; exit 0; }
while read -r name _conf pidfile _logfile _url; do
  [ -f "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "$name stopped (pid $pid)"
  fi
  rm -f "$pidfile"
done < "$STATE/servers.txt"
if [ "${1:-}" = "--purge" ]; then rm -rf "$STATE"; echo "removed $STATE"; fi
