#!/usr/bin/env bash
# make e2e: the end-to-end run on real podman (test/e2e/mesh.e2e.test.ts under
# Jest): hack/up.sh on ports of its own under .tmp/e2e-mesh, a BeemeshDeployment
# applied with kubectl, healed, scaled, rolled and deleted, then hack/down.sh,
# also on failure. Prints each step's timing and the total; exits non-zero when
# a step failed. Skips (exit 0, reason printed) without root, podman, kubectl
# or nats-server. Extra arguments go to Jest (e.g. -t 'scale').
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(hack/ensure-node.sh):$PATH"
[ -d node_modules ] || npm ci --no-audit --no-fund || npm install --no-audit --no-fund
started=$(date +%s%3N)
status=0
NODE_OPTIONS=--experimental-vm-modules npx --no-install jest test/e2e --runInBand --verbose "$@" || status=$?
echo "e2e: finished in $(( ($(date +%s%3N) - started) / 1000 )) s (exit $status)"
exit $status
