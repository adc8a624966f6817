#!/usr/bin/env bash
# make down: stops exactly what hack/up.sh started under the state dir and checks
# that nothing is left: the controller processes (pid files; TERM, then KILL),
# every pod in the node agents' own podman stores (nothing else on this host is
# touched), the Workload API sockets, and NATS (hack/nats/down.sh). Then it
# verifies: no process of the pid files alive, no pod in the node stores, no
# listener on the mesh's ports.
#   BEEMESH_MESH_DIR (default .tmp/mesh); --purge also removes the state dir.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE="${BEEMESH_MESH_DIR:-.tmp/mesh}"
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1
now_ms() { date +%s%3N; }
T0=$(now_ms)
log() { echo "down: [$(($(now_ms) - T0)) ms] $*"; }

if [ ! -d "$STATE" ]; then
  log "nothing under $STATE"
  exit 0
fi
STATE="$(cd "$STATE" && pwd)"
problems=0

# --- controllers ------------------------------------------------------------------
# TERM to a group of pid files at once, then KILL what is left after 10 s.
stop_pid_files() {
  local f name pid pids=() names=()
  for f in "$@"; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"
    pid="$(cat "$f" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      pids+=("$pid"); names+=("$name")
    fi
    rm -f "$f"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for _ in $(seq 1 100); do
    local left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  local i
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      kill -KILL "${pids[$i]}" 2>/dev/null
      log "${names[$i]} did not stop in 10 s: killed (pid ${pids[$i]})"
    else
      log "${names[$i]} stopped (pid ${pids[$i]})"
    fi
  done
}
if [ -d "$STATE/pids" ]; then
  # Node agents first: with no agent left, nothing re-places the pods removed below.
  stop_pid_files "$STATE"/pids/node-*.pid
  stop_pid_files "$STATE"/pids/*.pid
fi

# --- pods in the node stores --------------------------------------------------------
remove_node_pods() {
  local pm="$1" node pods ctrs
  node="$(basename "$(dirname "$(dirname "$pm")")")"
  pods="$("$pm" pod ps -q 2>/dev/null)"
  if [ -n "$pods" ] && [ "$PURGE" = 0 ]; then
    # The state dir stays: keep what the pods said (the sidecars log to their containers).
    mkdir -p "$STATE/logs/pods/$node"
    for c in $("$pm" ps -a --format '{{.Names}}' 2>/dev/null); do
      "$pm" logs "$c" >"$STATE/logs/pods/$node/$c.log" 2>&1 || true
    done
  fi
  if [ -n "$pods" ]; then
    # A short grace: the sidecars stop on SIGTERM; the apps may not.
    "$pm" pod rm --force --time 2 $pods >/dev/null 2>&1 || "$pm" pod rm --force $pods >/dev/null 2>&1
    log "$node: removed $(echo "$pods" | wc -l) pods"
  fi
  # Containers outside pods (none are made, but leave nothing behind).
  ctrs="$("$pm" ps -aq 2>/dev/null)"
  [ -z "$ctrs" ] || "$pm" rm --force $ctrs >/dev/null 2>&1
  rm -rf "$STATE/nodes/$node/workload-api"
}
for pm in "$STATE"/nodes/*/bin/podman; do
  [ -x "$pm" ] && remove_node_pods "$pm" &
done
wait

# --- NATS ---------------------------------------------------------------------------
if [ -f "$STATE/nats/servers.txt" ]; then
  NATS_STATE_DIR="$STATE/nats" hack/nats/down.sh | while read -r line; do log "$line"; done
fi

# --- verify -------------------------------------------------------------------------
for f in "$STATE"/pids/*.pid "$STATE"/nats/nats-*/nats.pid; do
  [ -e "$f" ] || continue
  if kill -0 "$(cat "$f")" 2>/dev/null; then
    log "still running: $f (pid $(cat "$f"))"
    problems=$((problems + 1))
  fi
done
for pm in "$STATE"/nodes/*/bin/podman; do
  [ -x "$pm" ] || continue
  left="$("$pm" ps -aq 2>/dev/null | wc -l)"
  if [ "$left" != 0 ]; then
    log "still $left containers in $(dirname "$(dirname "$pm")")"
    problems=$((problems + 1))
  fi
done
ports=""
[ -f "$STATE/mesh.env" ] && ports="$(sed -n 's/^PORTS=//p' "$STATE/mesh.env")"
for port in $ports; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
    log "port $port still has a listener: $(ss -Hltnp "sport = :$port" 2>/dev/null | head -1)"
    problems=$((problems + 1))
  fi
done

# The node stores' run state (/run/bm-*) holds nothing once their containers are gone.
if [ "$problems" = 0 ]; then
  run_root="$(sed -n 's/^RUN_ROOT=//p' "$STATE/mesh.env" 2>/dev/null)"
  case "$run_root" in /run/bm-*) rm -rf "$run_root" ;; esac
fi
if [ "$PURGE" = 1 ] && [ "$problems" = 0 ]; then
  rm -rf "$STATE"
  log "removed $STATE"
fi
if [ "$problems" = 0 ]; then
  log "no process, pod or listening port of the mesh under $STATE is left"
  exit 0
fi
log "$problems things are left (see above)"
exit 1
