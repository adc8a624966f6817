#!/usr/bin/env bash
# make up: a whole Beemesh mesh on this machine, on real podman.
#   1. installs what is missing (Debian: nats-server podman runc catatonit busybox-static,
#      podman-compose when the archive has it; npm dependencies),
#   2. builds (npm run build) and the local images (controllers for the sidecars, busybox),
#   3. issues the CA and certificates under the state dir (test/e2e/mesh.ts certs),
#   4. starts a mutual-TLS NATS (hack/nats/up.sh), a dispatcher (TLS API with client
#      certificates on 127.0.0.1), a lease-keeper and N node agents as host processes
#      (node dist/controllers/<x>/main.js; logs and pid files in the state dir),
#   5. waits for every /readyz, writes a kubeconfig with a user SVID and applies
#      deploy/examples/web.yaml with kubectl.
# hack/down.sh stops exactly what this started.
#
# One machine, several node agents: each agent plays a machine of its own.
#   - Pods: each agent runs podman with its own store (<state>/nodes/<id>/podman:
#     --root/--runroot, images read from the host's store), so an agent lists, adopts
#     and removes only its own pods, and other podman users on this host are untouched.
#   - Network: pods use the host network (DESIGN §8). Each agent hands its pods
#     loopback addresses of its own (127.<net>.<i>.0/24, BEEMESH_POD_ADDRESS_RANGE):
#     a pod's containers get BEEMESH_POD_IP to bind and the watchdog probes it, so
#     replicas on one host never share a port. Apps that bind 0.0.0.0 instead still
#     run one per node agent when they declare their port (the host-port fit check).
#
# Environment (all optional):
#   BEEMESH_MESH_DIR     state dir (default .tmp/mesh)
#   BEEMESH_MESH_NODES   number of node agents (default 3; ids node-1..node-N)
#   BEEMESH_PORT_BASE    move every port: NATS=B, NATS monitor=B+1, API=B+2, dispatcher
#                        health=B+3, lease-keeper health=B+4, node i health=B+4+i
#                        (default: NATS 4222, monitor 8222, API 6443, health 9100, 9101, 9110+i)
#   BEEMESH_POD_NET      second octet of the pods' loopback addresses (default 42)
#   BEEMESH_MESH_APPLY   manifest to apply once up (default deploy/examples/web.yaml; "" for none)
#   BEEMESH_SKIP_INSTALL=1 / BEEMESH_SKIP_BUILD=1   skip steps 1 / 2
#   BEEMESH_READY_TIMEOUT  seconds to wait for each /readyz (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$(hack/ensure-node.sh):$PATH"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/hack/podman/containers.conf}"

STATE="${BEEMESH_MESH_DIR:-.tmp/mesh}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
NODES="${BEEMESH_MESH_NODES:-3}"
POD_NET="${BEEMESH_POD_NET:-42}"
APPLY="${BEEMESH_MESH_APPLY-deploy/examples/web.yaml}"
READY_TIMEOUT="${BEEMESH_READY_TIMEOUT:-60}"
TD="${BEEMESH_TRUST_DOMAIN:-beemesh.local}"
SHARDS=16

if [ -n "${BEEMESH_PORT_BASE:-}" ]; then
  B="$BEEMESH_PORT_BASE"
  NATS_PORT=$B; NATS_HTTP_PORT=$((B + 1)); API_PORT=$((B + 2))
  DISPATCHER_HEALTH=$((B + 3)); KEEPER_HEALTH=$((B + 4)); NODE_HEALTH_BASE=$((B + 4))
else
  NATS_PORT=4222; NATS_HTTP_PORT=8222; API_PORT=6443
  DISPATCHER_HEALTH=9100; KEEPER_HEALTH=9101; NODE_HEALTH_BASE=9110
fi
NATS_URL="tls://127.0.0.1:$NATS_PORT"
API_URL="https://127.0.0.1:$API_PORT"
NODE_IDS=()
for i in $(seq 1 "$NODES"); do NODE_IDS+=("node-$i"); done

now_ms() { date +%s%3N; }
T0=$(now_ms)
log() { echo "up: $*"; }
die() { echo "up: $*" >&2; exit 1; }
# Runs a step and prints how long it took.
step() {
  local what="$1" t
  shift
  t=$(now_ms)
  log "$what ..."
  "$@" || return $?
  log "$what: done in $(($(now_ms) - t)) ms"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- already up? ----------------------------------------------------------------
if [ -d "$STATE/pids" ] && compgen -G "$STATE/pids/*.pid" >/dev/null; then
  running=0; dead=()
  for f in "$STATE"/pids/*.pid; do
    if alive "$f"; then running=$((running + 1)); else dead+=("$(basename "$f" .pid)"); fi
  done
  if [ "$running" -gt 0 ] && [ ${#dead[@]} -eq 0 ]; then
    log "already up under $STATE ($running processes); hack/down.sh (make down) stops it"
    log "watch: kubectl --kubeconfig $STATE/kubeconfig get bmd -w"
    exit 0
  fi
  if [ "$running" -gt 0 ]; then
    die "partly up under $STATE (not running: ${dead[*]}); run make down first"
  fi
fi

# --- 1. install -----------------------------------------------------------------
install_missing() {
  local want=() pkg
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || want+=(nats-server)
  command -v podman >/dev/null || want+=(podman)
  command -v runc >/dev/null || [ -x /usr/sbin/runc ] || want+=(runc)
  command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || want+=(catatonit)
  if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then want+=(busybox-static); fi
  command -v curl >/dev/null || want+=(curl)
  if ! command -v podman-compose >/dev/null && command -v apt-cache >/dev/null &&
    apt-cache show podman-compose >/dev/null 2>&1; then want+=(podman-compose); fi
  if [ ${#want[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing ${want[*]}; install them (Debian: apt-get install ${want[*]})"
    log "installing ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || return 1
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null || return 1
    # Debian's nats-server package starts a plain service on 4222; the mesh runs its own.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nats-server >/dev/null 2>&1 || true; fi
  fi
  command -v kubectl >/dev/null || log "kubectl not found: the mesh runs, but nothing is applied (install kubectl 1.27+)"
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    npm ci --no-audit --no-fund || npm install --no-audit --no-fund || return 1
    touch node_modules
  fi
}
[ "${BEEMESH_SKIP_INSTALL:-0}" = 1 ] || step "install missing packages" install_missing
[ "$(id -u)" = 0 ] || die "run as root: podman runs the pods as root here (DESIGN §8)"

# --- 2. build -------------------------------------------------------------------
build_all() {
  # (step runs these with errexit off: each failure returns explicitly)
  npm run -s build || return 1
  hack/build-local-images.sh --only controllers --only busybox || return 1
}
[ "${BEEMESH_SKIP_BUILD:-0}" = 1 ] || step "build (npm run build, local images)" build_all
for c in dispatcher lease-keeper scheduler-bidder; do
  [ -f "dist/controllers/$c/main.js" ] || die "dist/controllers/$c/main.js is missing (npm run build)"
done

# --- 3. state, certificates, per-node podman --------------------------------------
mkdir -p "$STATE/logs" "$STATE/pids"
PODMAN_BIN="$(command -v podman)"
GRAPH_ROOT="$(podman info --format '{{.Store.GraphRoot}}')"
GRAPH_DRIVER="$(podman info --format '{{.Store.GraphDriverName}}')"
[ "$GRAPH_DRIVER" = overlay ] || die "the host's podman store uses $GRAPH_DRIVER; the node stores read its images through overlay.imagestore, which needs overlay"

# podman refuses a runroot longer than 50 characters: the node stores' run state lives
# under /run/bm-<hash of the state dir>/ (hack/down.sh removes it).
RUN_ROOT="/run/bm-$(printf '%s' "$STATE" | sha256sum | cut -c1-10)"

# A `podman` per node: its own store, the host's images read-only.
write_node_podman() {
  local id="$1" dir="$STATE/nodes/$1"
  mkdir -p "$dir/bin" "$dir/podman/root" "$dir/podman/tmp" "$RUN_ROOT/$id"
  cat >"$dir/bin/podman" <<EOF
#!/bin/sh
# Node $id's podman (written by hack/up.sh): its own store, the host's images read-only.
export CONTAINERS_CONF="$CONTAINERS_CONF"
exec "$PODMAN_BIN" --root "$dir/podman/root" --runroot "$RUN_ROOT/$id" --tmpdir "$dir/podman/tmp" \\
  --storage-driver overlay --storage-opt "overlay.imagestore=$GRAPH_ROOT" "\$@"
EOF
  chmod 0755 "$dir/bin/podman"
}

prepare_state() {
  local id
  for id in "${NODE_IDS[@]}"; do write_node_podman "$id"; done
  npx --no-install tsx test/e2e/mesh.ts certs --state "$STATE" --nodes "$(IFS=,; echo "${NODE_IDS[*]}")" \
    --api-url "$API_URL" --trust-domain "$TD" || return 1
  ln -sfn nats/ca "$STATE/ca"
  {
    echo "STATE=$STATE"
    echo "RUN_ROOT=$RUN_ROOT"
    echo "NODES=${NODE_IDS[*]}"
    echo "NATS_URL=$NATS_URL"
    echo "NATS_PORT=$NATS_PORT"
    echo "NATS_HTTP_PORT=$NATS_HTTP_PORT"
    echo "API_URL=$API_URL"
    echo "API_PORT=$API_PORT"
    echo "DISPATCHER_HEALTH=$DISPATCHER_HEALTH"
    echo "KEEPER_HEALTH=$KEEPER_HEALTH"
    for i in $(seq 1 "$NODES"); do
      echo "NODE_HEALTH_node_$i=$((NODE_HEALTH_BASE + i))"
      echo "POD_RANGE_node_$i=127.$POD_NET.$i.0/24"
    done
    echo "PORTS=$NATS_PORT $NATS_HTTP_PORT $API_PORT $DISPATCHER_HEALTH $KEEPER_HEALTH $(for i in $(seq 1 "$NODES"); do printf '%s ' $((NODE_HEALTH_BASE + i)); done)"
    echo "KUBECONFIG=$STATE/kubeconfig"
  } >"$STATE/mesh.env"
}
step "certificates and node stores under $STATE" prepare_state

# --- 4. NATS and the controllers ------------------------------------------------
start_nats() {
  # A fresh start begins with empty JetStream (the objects of an earlier mesh would come back),
  # unless a server of this state dir still runs (hack/nats/up.sh then leaves it be).
  local f running=0
  for f in "$STATE"/nats/nats-*/nats.pid; do alive "$f" && running=1; done
  [ "$running" = 1 ] || rm -rf "$STATE"/nats/nats-*/jetstream
  NATS_STATE_DIR="$STATE/nats" NATS_PORT="$NATS_PORT" NATS_HTTP_PORT="$NATS_HTTP_PORT" NATS_SERVERS=1 \
    BEEMESH_TRUST_DOMAIN="$TD" hack/nats/up.sh
}
step "NATS on $NATS_URL" start_nats

# Writes <state>/bin/start-<name>.sh, which starts `node dist/controllers/<dir>/main.js`
# in a session of its own with the given env (the e2e restarts a node agent with it),
# and runs it. The node process writes its own pid file, whether or not setsid forks.
start_controller() {
  local name="$1" dir="$2" script kv
  shift 2
  script="$STATE/bin/start-$name.sh"
  mkdir -p "$STATE/bin"
  {
    echo "#!/usr/bin/env bash"
    echo "# Starts $name as hack/up.sh did; hack/down.sh stops it by $STATE/pids/$name.pid."
    echo "cd $(printf '%q' "$ROOT") || exit 1"
    printf 'exec setsid bash -c %q %q env' 'echo $$ >"$0"; exec "$@"' "$STATE/pids/$name.pid"
    for kv in "$@"; do printf ' %q' "$kv"; done
    printf ' node %q >>%q 2>&1 </dev/null\n' "dist/controllers/$dir/main.js" "$STATE/logs/$name.log"
  } >"$script"
  chmod 0755 "$script"
  rm -f "$STATE/pids/$name.pid"
  : >"$STATE/logs/$name.log"
  "$script" &
  for _ in $(seq 1 50); do [ -s "$STATE/pids/$name.pid" ] && return 0; sleep 0.1; done
  die "$name did not start (no $STATE/pids/$name.pid)"
}

COMMON=(BEEMESH_NATS_URL="$NATS_URL" BEEMESH_TRUST_DOMAIN="$TD" BEEMESH_SHARDS="$SHARDS" BEEMESH_LOG_LEVEL="${BEEMESH_LOG_LEVEL:-info}")
start_controllers() {
  local i id
  start_controller dispatcher dispatcher "${COMMON[@]}" \
    BEEMESH_SVID_DIR="$STATE/dispatcher" \
    BEEMESH_API_PORT="$API_PORT" BEEMESH_API_HOST=127.0.0.1 \
    BEEMESH_API_TLS_CERT="$STATE/dispatcher/api.crt" BEEMESH_API_TLS_KEY="$STATE/dispatcher/api.key" \
    BEEMESH_HEALTH_PORT="$DISPATCHER_HEALTH" \
    BEEMESH_SIDECAR_NATS_URL="$NATS_URL" BEEMESH_SIDECAR_IMAGE=localhost/beemesh/controllers:latest
  start_controller lease-keeper lease-keeper "${COMMON[@]}" \
    BEEMESH_SVID_DIR="$STATE/lease-keeper" BEEMESH_HEALTH_PORT="$KEEPER_HEALTH"
  for i in $(seq 1 "$NODES"); do
    id="node-$i"
    start_controller "$id" scheduler-bidder "${COMMON[@]}" \
      PATH="$STATE/nodes/$id/bin:$PATH" CONTAINERS_CONF="$CONTAINERS_CONF" \
      BEEMESH_NODE_ID="$id" BEEMESH_RUNTIME=podman \
      BEEMESH_SVID_DIR="$STATE/nodes/$id/svid" \
      BEEMESH_HEALTH_PORT="$((NODE_HEALTH_BASE + i))" \
      BEEMESH_CA_DIR="$STATE/nats/ca" \
      BEEMESH_WORKLOAD_API_DIR="$STATE/nodes/$id/workload-api" \
      BEEMESH_POD_ADDRESS_RANGE="127.$POD_NET.$i.0/24"
  done
}
step "dispatcher, lease-keeper and ${NODES} node agents" start_controllers

# Polls /readyz of each controller (bounded); a process that died shows its log.
wait_ready() {
  local name port deadline
  for entry in "dispatcher:$DISPATCHER_HEALTH" "lease-keeper:$KEEPER_HEALTH" \
    $(for i in $(seq 1 "$NODES"); do echo "node-$i:$((NODE_HEALTH_BASE + i))"; done); do
    name="${entry%%:*}"; port="${entry##*:}"
    deadline=$(($(date +%s) + READY_TIMEOUT))
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null; do
      if ! alive "$STATE/pids/$name.pid"; then
        echo "up: $name exited; last lines of $STATE/logs/$name.log:" >&2
        tail -n 30 "$STATE/logs/$name.log" >&2
        return 1
      fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "up: $name not ready on :$port after ${READY_TIMEOUT}s; last lines of its log:" >&2
        tail -n 30 "$STATE/logs/$name.log" >&2
        return 1
      fi
      sleep 0.2
    done
    log "$name ready (pid $(cat "$STATE/pids/$name.pid"), health :$port)"
  done
}
if ! step "waiting for /readyz" wait_ready; then
  echo "up: the mesh did not come up; stopping what started (hack/down.sh)" >&2
  BEEMESH_MESH_DIR="$STATE" hack/down.sh >&2 || true
  exit 1
fi

# --- 5. the example workload ----------------------------------------------------
if [ -n "$APPLY" ] && command -v kubectl >/dev/null; then
  step "kubectl apply -f $APPLY" kubectl --kubeconfig "$STATE/kubeconfig" apply -f "$APPLY"
fi

log "up in $(($(now_ms) - T0)) ms: NATS $NATS_URL, API $API_URL, nodes ${NODE_IDS[*]}"
log "logs: $STATE/logs/   CA: $STATE/ca   kubeconfig: $STATE/kubeconfig"
log "watch it:  kubectl --kubeconfig $STATE/kubeconfig get bmd -w"
log "pods of a node:  $STATE/nodes/node-1/bin/podman pod ps"
log "stop:  make down"
