#!/usr/bin/env bash
# Builds Beemesh's images on a machine with podman but no registry (DESIGN §8):
# each image is a rootfs assembled from host binaries plus their shared
# libraries, streamed into `podman import`. A content-hash label lets a rerun
# skip an image whose inputs did not change.
#
#   hack/build-local-images.sh [--force] [--only NAME]... [--list]
#
# Images (NAME):
#   controllers  localhost/beemesh/controllers:latest  node 22 + /app (dist, production node_modules)
#   node-agent   localhost/beemesh/node-agent:latest   controllers + the podman client, for
#                                                      deploy/podman (talks to the host's podman socket)
#   nats         localhost/beemesh/nats:latest         the host's nats-server (Debian's 2.9.10)
#   busybox      localhost/beemesh/busybox:latest      by hack/build-test-images.sh, when it exists
#
# Environment: BEEMESH_IMAGE_WORK (default ~/.cache/beemesh/images/<checkout>), BEEMESH_IMAGE_PREFIX
# (default localhost/beemesh), NATS_SERVER_BIN, PODMAN_BIN, CONTAINERS_CONF
# (default hack/podman/containers.conf).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PATH="$(hack/ensure-node.sh):$PATH"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/hack/podman/containers.conf}"

# Outside the checkout: Jest's haste map would otherwise crawl the staged
# rootfs (its package.json and node_modules) on every test run.
WORK="${BEEMESH_IMAGE_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/beemesh/images/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)}"
PREFIX="${BEEMESH_IMAGE_PREFIX:-localhost/beemesh}"
HASH_LABEL="io.beemesh.content-hash"
ALL_IMAGES=(controllers node-agent nats busybox)
# The controllers run as this unprivileged user unless a deployment says otherwise.
APP_UID=65532

FORCE=0
WANT=()
while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    --only)
      [ $# -ge 2 ] || { echo "build-local-images: --only needs a name" >&2; exit 2; }
      case " ${ALL_IMAGES[*]} " in *" $2 "*) ;; *) echo "build-local-images: unknown image $2 (one of: ${ALL_IMAGES[*]})" >&2; exit 2 ;; esac
      WANT+=("$2"); shift ;;
    --list) printf '%s\n' "${ALL_IMAGES[@]}"; exit 0 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-local-images: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#WANT[@]} -gt 0 ] || WANT=("${ALL_IMAGES[@]}")
wants() { case " ${WANT[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

PODMAN="${PODMAN_BIN:-$(command -v podman || true)}"
[ -n "$PODMAN" ] || { echo "build-local-images: podman not found" >&2; exit 1; }

now_ms() { date +%s%3N; }
T_START=$(now_ms)
log() { echo "build-local-images: $*"; }
# Runs a step and prints how long it took.
timed() {
  local what="$1" t0
  shift
  t0=$(now_ms)
  "$@"
  log "$what took $(($(now_ms) - t0)) ms"
}

image_label() {
  "$PODMAN" image inspect --format "{{index .Labels \"$HASH_LABEL\"}}" "$1" 2>/dev/null || true
}
image_id() { "$PODMAN" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# True when the image exists with this content hash (and no --force).
up_to_date() {
  [ "$FORCE" = 0 ] && [ "$(image_label "$1")" = "$2" ]
}

# sha256 over "<sha256>  <path>" lines of the given files, in sorted path order.
hash_files() {
  local f
  for f in "$@"; do
    [ -f "$f" ] && sha256sum "$f"
  done | LC_ALL=C sort -k2 | sha256sum | cut -c1-64
}

# Copies a binary to dest inside rootfs and every shared library ldd names, at
# the same paths (symlinks resolved), so the dynamic loader finds them.
copy_with_libs() {
  local bin="$1" dest="$2" rootfs="$3" lib
  install -D -m 0755 "$bin" "$rootfs$dest"
  while read -r lib; do
    [ -n "$lib" ] || continue
    [ -e "$rootfs$lib" ] && continue
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# /etc basics every image needs: users for numeric ids, name resolution, CA certificates.
write_etc() {
  local rootfs="$1"
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/run" "$rootfs/root"
  chmod 0700 "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
beemesh:x:$APP_UID:$APP_UID:beemesh:/app:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<EOF
root:x:0:
beemesh:x:$APP_UID:
nogroup:x:65534:
EOF
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
}

# Streams rootfs into podman as image $1 with label hash $2 and the given --change lines,
# then removes the image the tag pointed at before, so rebuilds do not pile up.
import_rootfs() {
  local image="$1" hash="$2" rootfs="$3" old new
  shift 3
  local changes=(--change "LABEL $HASH_LABEL=$hash")
  local c
  for c in "$@"; do changes+=(--change "$c"); done
  old=$(image_id "$image")
  tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . | "$PODMAN" import -q "${changes[@]}" - "$image" >/dev/null
  new=$(image_id "$image")
  if [ -n "$old" ] && [ "$old" != "$new" ]; then "$PODMAN" rmi "$old" >/dev/null 2>&1 || true; fi
  log "$image imported ($(du -sh "$rootfs" | cut -f1) rootfs, id ${new:0:12})"
}

NODE_BIN="$(command -v node)"
NODE_VERSION="$(node --version)"
case "$NODE_VERSION" in v22.*) ;; *) echo "build-local-images: need Node 22, found $NODE_VERSION at $NODE_BIN" >&2; exit 1 ;; esac
SELF_HASH=$(sha256sum "$0" | cut -c1-64)

# --- controllers -------------------------------------------------------------
SOURCE_DIRS=(protocol identity controllers cli runtime)
controllers_inputs() {
  local d
  for d in "${SOURCE_DIRS[@]}"; do
    [ -d "$d" ] && find "$d" -type f ! -name '*.test.ts' ! -path '*/node_modules/*'
  done
  find hack -maxdepth 1 -type f -name '*.ts'
  echo package.json package-lock.json tsconfig.json tsconfig.build.json | tr ' ' '\n'
}
controllers_hash() {
  # shellcheck disable=SC2046
  { hash_files $(controllers_inputs); echo "$NODE_VERSION $SELF_HASH"; } | sha256sum | cut -c1-64
}

# Production node_modules, cached by lock file: a copy of the checkout's tree pruned
# of dev dependencies (offline; npm 11's `npm ci` refuses this lock file, see .ci/run).
prod_modules() {
  local key dir
  key=$(hash_files package.json package-lock.json)
  dir="$WORK/prod-modules/$key"
  if [ ! -d "$dir/node_modules" ]; then
    [ -d node_modules ] || { echo "build-local-images: run npm install first (no node_modules)" >&2; exit 1; }
    rm -rf "$WORK/prod-modules"
    mkdir -p "$dir"
    cp package.json package-lock.json "$dir/"
    cp -a node_modules "$dir/"
    (cd "$dir" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund >"$WORK/prune.log" 2>&1) || { cat "$WORK/prune.log" >&2; exit 1; }
    find "$dir/node_modules" -mindepth 1 -type d -empty -delete
  fi
  PROD_MODULES="$dir/node_modules"
}

# Assembles the controllers rootfs in $1: node, its libraries, /etc, /app.
controllers_rootfs() {
  local rootfs="$1" app="$1/app" f
  rm -rf "$rootfs"
  mkdir -p "$app"
  write_etc "$rootfs"
  copy_with_libs "$NODE_BIN" /usr/local/bin/node "$rootfs"
  # The project's own build command, into the image instead of the shared dist/.
  if ! npx --no-install tsc -p tsconfig.build.json --outDir "$app/dist" >"$WORK/build.log" 2>&1; then
    echo "build-local-images: npm run build failed (full log: $WORK/build.log):" >&2
    head -n 40 "$WORK/build.log" >&2
    exit 1
  fi
  # The sidecars run from bundles (hack/bundle-sidecars.ts), as npm run build makes them.
  if ! npx --no-install tsx hack/bundle-sidecars.ts --outdir "$app/dist" >>"$WORK/build.log" 2>&1; then
    echo "build-local-images: bundling the sidecars failed (full log: $WORK/build.log):" >&2
    tail -n 40 "$WORK/build.log" >&2
    exit 1
  fi
  # tsc copies no assets; the Workload API's .proto is loaded at run time.
  while read -r f; do
    install -D -m 0644 "$f" "$app/dist/$f"
  done < <(for d in "${SOURCE_DIRS[@]}"; do [ -d "$d" ] && find "$d" -type f -name '*.proto'; done)
  find "$app/dist" -name '*.map' -delete
  cp package.json "$app/"
  cp -a "$PROD_MODULES" "$app/node_modules"
}

# Builds the controllers rootfs unless the one on disk was built from the same inputs.
ensure_controllers_rootfs() {
  local rootfs="$WORK/controllers/rootfs"
  [ "${ROOTFS_BUILT:-0}" = 1 ] && return
  if [ "$FORCE" = 0 ] && [ "$(cat "$WORK/controllers/rootfs.hash" 2>/dev/null)" = "$CONTROLLERS_HASH" ]; then return; fi
  rm -f "$WORK/controllers/rootfs.hash"
  timed "production node_modules" prod_modules
  timed "controllers rootfs (npm run build)" controllers_rootfs "$rootfs"
  echo "$CONTROLLERS_HASH" >"$WORK/controllers/rootfs.hash"
  ROOTFS_BUILT=1
}

build_controllers() {
  local image="$PREFIX/controllers:latest"
  if up_to_date "$image" "$CONTROLLERS_HASH"; then
    log "$image is up to date (hash ${CONTROLLERS_HASH:0:12}); --force rebuilds"
    return
  fi
  ensure_controllers_rootfs
  timed "controllers import" import_rootfs "$image" "$CONTROLLERS_HASH" "$WORK/controllers/rootfs" \
    "WORKDIR /app" "USER $APP_UID:$APP_UID" \
    "ENV PATH=/usr/local/bin:/usr/bin:/bin" "ENV NODE_ENV=production" \
    'CMD ["node", "--version"]'
}

# --- node-agent: controllers + the podman client -----------------------------
build_node_agent() {
  local image="$PREFIX/node-agent:latest" podman_bin hash rootfs="$WORK/node-agent/rootfs"
  podman_bin="$(readlink -f "$PODMAN")"
  hash=$({ echo "$CONTROLLERS_HASH"; sha256sum "$podman_bin"; } | sha256sum | cut -c1-64)
  if up_to_date "$image" "$hash"; then
    log "$image is up to date (hash ${hash:0:12}); --force rebuilds"
    return
  fi
  ensure_controllers_rootfs
  rm -rf "$rootfs"
  mkdir -p "$(dirname "$rootfs")"
  timed "node-agent rootfs" cp -a "$WORK/controllers/rootfs" "$rootfs"
  copy_with_libs "$podman_bin" /usr/bin/podman "$rootfs"
  # The node agent runs pods through the host's podman service (CONTAINER_HOST), as root
  # because the host's socket is root's.
  timed "node-agent import" import_rootfs "$image" "$hash" "$rootfs" \
    "WORKDIR /app" "USER 0:0" \
    "ENV PATH=/usr/local/bin:/usr/bin:/bin" "ENV NODE_ENV=production" \
    "ENV CONTAINER_HOST=unix:///run/podman/podman.sock" \
    'CMD ["node", "--version"]'
}

# --- nats ----------------------------------------------------------------------
build_nats() {
  local image="$PREFIX/nats:latest" bin hash busybox candidate rootfs="$WORK/nats/rootfs"
  bin="${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
  if [ ! -x "$bin" ]; then
    log "skipping $image: nats-server not found (hack/nats/install.sh installs it)"
    return
  fi
  # busybox's wget for healthchecks: the same command then works in nats:*-alpine.
  busybox=""
  for candidate in /bin/busybox /usr/bin/busybox; do
    if [ -x "$candidate" ] && ! ldd "$candidate" >/dev/null 2>&1; then busybox=$candidate; break; fi
  done
  hash=$({ sha256sum "$bin" ${busybox:+"$busybox"} | cut -c1-64; echo "$SELF_HASH"; } | sha256sum | cut -c1-64)
  if up_to_date "$image" "$hash"; then
    log "$image is up to date (hash ${hash:0:12}); --force rebuilds"
    return
  fi
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  write_etc "$rootfs"
  copy_with_libs "$bin" /usr/local/bin/nats-server "$rootfs"
  if [ -n "$busybox" ]; then
    install -D -m 0755 "$busybox" "$rootfs/bin/busybox"
    ln -s busybox "$rootfs/bin/wget"
  else
    log "no static busybox (apt-get install busybox-static): $image gets no wget for healthchecks"
  fi
  timed "nats import" import_rootfs "$image" "$hash" "$rootfs" \
    "USER $APP_UID:$APP_UID" "ENV PATH=/usr/local/bin:/usr/bin:/bin" \
    'ENTRYPOINT ["/usr/local/bin/nats-server"]' 'CMD ["--help"]'
}

# --- busybox (the test app image; hack/build-test-images.sh owns it) -----------
build_busybox() {
  local args=()
  [ "$FORCE" = 1 ] && args+=(--force)
  if [ -f hack/build-test-images.sh ]; then
    # It reads its podman settings from BEEMESH_CONTAINERS_CONF.
    timed "hack/build-test-images.sh" env BEEMESH_CONTAINERS_CONF="$CONTAINERS_CONF" \
      bash hack/build-test-images.sh ${args[@]+"${args[@]}"}
  else
    log "skipping busybox: hack/build-test-images.sh does not exist yet"
  fi
}

mkdir -p "$WORK/controllers"
if wants controllers || wants node-agent; then CONTROLLERS_HASH=$(controllers_hash); fi
wants controllers && build_controllers
wants node-agent && build_node_agent
wants nats && build_nats
wants busybox && build_busybox
log "done in $(($(now_ms) - T_START)) ms"
