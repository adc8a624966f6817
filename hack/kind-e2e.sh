#!/usr/bin/env bash
# End-to-end test of deploy/kind on a throwaway kind cluster (DESIGN §6):
# create the cluster, build and load the images, generate the trust domain's
# certificates into Secrets, apply deploy/kind, run deploy/examples/web.yaml,
# delete one of its pods and check that Beemesh replaces it, print timings,
# delete the cluster. Needs a Docker engine, kind and kubectl; without a Docker
# engine (as on the project's own machines, DESIGN §8) it prints a skip line
# and exits 0.
#
# Environment: KIND_CLUSTER (default beemesh-e2e), KIND_KEEP=1 keeps the cluster,
# KIND_E2E_TIMEOUT seconds per wait (default 300), KIND_BIN, KUBECTL_BIN, DOCKER_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

DOCKER="${DOCKER_BIN:-docker}"
if ! "$DOCKER" info >/dev/null 2>&1; then
  echo "kind-e2e: skipped: no Docker engine (\`$DOCKER info\` failed)"
  exit 0
fi

KIND="${KIND_BIN:-kind}"
KUBECTL="${KUBECTL_BIN:-kubectl}"
for tool in "$KIND" "$KUBECTL"; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool not found (install kind and kubectl)" >&2; exit 1; }
done
PATH="$(hack/ensure-node.sh):$PATH"

CLUSTER="${KIND_CLUSTER:-beemesh-e2e}"
TIMEOUT="${KIND_E2E_TIMEOUT:-300}"
NS=beemesh-system
APP_NS=default
APP=web
CONTROLLERS_IMAGE=localhost/beemesh/controllers:latest
BUSYBOX_IMAGE=localhost/beemesh/busybox:latest
STATE="$ROOT/.tmp/kind/$CLUSTER"
CTX="kind-$CLUSTER"
k() { "$KUBECTL" --context "$CTX" "$@"; }

now_ms() { date +%s%3N; }
T_START=$(now_ms)
TIMINGS=()
phase() {
  local what="$1" t0
  shift
  echo "kind-e2e: $what"
  t0=$(now_ms)
  "$@"
  TIMINGS+=("$what: $(($(now_ms) - t0)) ms")
}

diagnostics() {
  echo "kind-e2e: diagnostics" >&2
  k get pods -A -o wide >&2 || true
  k -n "$NS" get events --sort-by=.lastTimestamp >&2 || true
  local d
  for d in deploy/beemesh-dispatcher deploy/beemesh-lease-keeper ds/beemesh-node-agent statefulset/nats; do
    k -n "$NS" logs "$d" --all-containers --tail=50 >&2 || true
  done
  k -n "$APP_NS" get beemeshdeployments -o yaml >&2 || true
}

cleanup() {
  local status=$?
  if [ $status -ne 0 ]; then diagnostics; fi
  if [ "${KIND_KEEP:-0}" = 1 ]; then
    echo "kind-e2e: keeping cluster $CLUSTER (KIND_KEEP=1); delete it with: $KIND delete cluster --name $CLUSTER"
  else
    "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  if [ ${#TIMINGS[@]} -gt 0 ]; then printf 'kind-e2e: timing %s\n' "${TIMINGS[@]}"; fi
  echo "kind-e2e: $([ $status -eq 0 ] && echo passed || echo FAILED) in $(($(now_ms) - T_START)) ms"
}
trap cleanup EXIT

create_cluster() {
  "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  "$KIND" create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml --wait "${TIMEOUT}s"
}

build_images() {
  "$DOCKER" build -q -f images/controllers/Containerfile -t "$CONTROLLERS_IMAGE" .
  "$DOCKER" build -q -f images/busybox/Containerfile -t "$BUSYBOX_IMAGE" images/busybox
}

load_images() {
  "$KIND" load docker-image --name "$CLUSTER" "$CONTROLLERS_IMAGE" "$BUSYBOX_IMAGE"
}

# The node agents run on the workers only; each gets its own node SVID.
worker_nodes() {
  k get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# Every folder hack/deploy-certs.ts writes under secret/ and configmap/ becomes one
# object of that name in $NS (deploy/kind/README.md lists them).
create_secrets() {
  local nodes dir
  nodes=$(worker_nodes | paste -sd, -)
  [ -n "$nodes" ] || { echo "kind-e2e: no worker nodes" >&2; return 1; }
  rm -rf "$STATE"
  npx --no-install tsx hack/deploy-certs.ts --target kind --out "$STATE" --nodes "$nodes" --namespace "$NS"
  k apply -f deploy/kind/namespace.yaml
  for dir in "$STATE"/secret/*/; do
    k -n "$NS" create secret generic "$(basename "$dir")" --from-file="$dir" --dry-run=client -o yaml | k apply -f -
  done
  for dir in "$STATE"/configmap/*/; do
    k -n "$NS" create configmap "$(basename "$dir")" --from-file="$dir" --dry-run=client -o yaml | k apply -f -
  done
}

apply_mesh() {
  k apply -k deploy/kind
  k wait --for condition=established --timeout="${TIMEOUT}s" \
    crd/beemeshdeployments.beemesh.io crd/beemeshstatefulsets.beemesh.io
  k -n "$NS" rollout status statefulset/nats --timeout="${TIMEOUT}s"
  k -n "$NS" rollout status deployment/beemesh-dispatcher --timeout="${TIMEOUT}s"
  k -n "$NS" rollout status deployment/beemesh-lease-keeper --timeout="${TIMEOUT}s"
  k -n "$NS" rollout status daemonset/beemesh-node-agent --timeout="${TIMEOUT}s"
}

# UIDs of the app's pods that are Ready, one per line.
ready_pod_uids() {
  k -n "$APP_NS" get pods -l "beemesh.io/parent=$APP" -o \
    jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.uid}{" "}{range .status.conditions[?(@.type=="Ready")]}{.status}{end}{"\n"}{end}' |
    awk '$2 == "True" { print $1 }'
}

# Waits until exactly $1 pods are Ready and none of them has UID $2 (if given).
wait_ready() {
  local want="$1" gone="${2:-}" deadline uids
  deadline=$(($(date +%s) + TIMEOUT))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    uids=$(ready_pod_uids || true)
    if [ "$(printf '%s' "$uids" | grep -c .)" -eq "$want" ] && { [ -z "$gone" ] || ! grep -qx "$gone" <<<"$uids"; }; then
      return 0
    fi
    sleep 1
  done
  echo "kind-e2e: $APP did not reach $want ready pods within ${TIMEOUT}s" >&2
  return 1
}

REPLICAS=0
deploy_app() {
  # web uses the host network and one port, so it fits one replica per node agent.
  REPLICAS=$(k -n "$NS" get daemonset beemesh-node-agent -o jsonpath='{.status.numberReady}')
  k apply -f deploy/examples/web.yaml
  k -n "$APP_NS" patch beemeshdeployment "$APP" --type merge -p "{\"spec\":{\"replicas\":$REPLICAS}}"
  wait_ready "$REPLICAS"
}

heal_after_delete() {
  local victim
  victim=$(k -n "$APP_NS" get pods -l "beemesh.io/parent=$APP" -o jsonpath='{.items[0].metadata.name} {.items[0].metadata.uid}')
  echo "kind-e2e: deleting pod ${victim% *}"
  k -n "$APP_NS" delete pod "${victim% *}" --wait=false
  wait_ready "$REPLICAS" "${victim#* }"
}

phase "create cluster $CLUSTER" create_cluster
phase "build images" build_images
phase "kind load images" load_images
phase "certificates and Secrets" create_secrets
phase "apply deploy/kind and wait for rollout" apply_mesh
phase "deploy $APP and wait until ready" deploy_app
phase "delete a pod of $APP and wait for its replacement" heal_after_delete
k -n "$APP_NS" get beemeshdeployment "$APP" -o wide || true
