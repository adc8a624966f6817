#!/usr/bin/env bash
# Builds localhost/beemesh/busybox:latest from the machine's busybox-static:
# no registry can be reached here (DESIGN §8), so the image is a rootfs made
# from one static binary and `podman import`ed. Also makes sure `podman kube
# play` has its pause image: podman 4.x builds localhost/podman-pause itself
# around catatonit when none exists, so one throwaway pod triggers that.
#
# Usage: hack/build-test-images.sh [--force] [-- <podman global flags>]
#   --force   rebuild even if the image exists
#   after --  flags for every podman call, e.g. --root DIR --runroot DIR --tmpdir DIR
# Environment: BEEMESH_CONTAINERS_CONF overrides hack/podman/containers.conf.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CONTAINERS_CONF="${BEEMESH_CONTAINERS_CONF:-$repo/hack/podman/containers.conf}"
image=localhost/beemesh/busybox:latest
force=0
podman_args=()

while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1; shift ;;
    --) shift; podman_args=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build-test-images: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo "build-test-images: $*" >&2; }
pm() { podman "${podman_args[@]}" "$@"; }

command -v podman >/dev/null || { log "podman is not installed"; exit 3; }

busybox=""
for candidate in /bin/busybox /usr/bin/busybox; do
  if [ -x "$candidate" ]; then busybox=$candidate; break; fi
done
[ -n "$busybox" ] || { log "busybox not found (apt-get install busybox-static)"; exit 3; }
# A dynamic busybox would need its libraries inside the rootfs.
if ldd "$busybox" >/dev/null 2>&1; then
  log "$busybox is dynamically linked; install busybox-static"
  exit 3
fi

if [ "$force" = 0 ] && pm image exists "$image"; then
  log "$image exists (use --force to rebuild)"
else
  previous=$(pm image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  mkdir -p "$rootfs"/{bin,etc,www,tmp,proc,sys,dev,run,var/log}
  chmod 1777 "$rootfs/tmp"
  cp "$busybox" "$rootfs/bin/busybox"
  # Every applet (sh, httpd, sleep, nc, wget, ...) as a symlink to the one binary.
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  printf '<!doctype html><title>beemesh</title><p>beemesh busybox test image</p>\n' >"$rootfs/www/index.html"
  tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$work/rootfs.tar" .
  pm import --quiet \
    --change 'ENV PATH=/bin' \
    --change 'WORKDIR /' \
    --change 'CMD ["/bin/sh"]' \
    --message "beemesh test image from $busybox" \
    "$work/rootfs.tar" "$image" >/dev/null
  # The replaced image would linger untagged; it stays if a container still uses it.
  if [ -n "$previous" ]; then pm rmi "$previous" >/dev/null 2>&1 || true; fi
  log "built $image"
fi

# kube play's infra container: podman builds localhost/podman-pause:<version>
# with catatonit on first use; do it now so the first deploy is not the slow one.
if [ -z "$(pm images --quiet --filter reference=localhost/podman-pause)" ]; then
  catatonit=""
  for candidate in /usr/libexec/podman/catatonit /usr/bin/catatonit /usr/local/libexec/podman/catatonit; do
    if [ -x "$candidate" ]; then catatonit=$candidate; break; fi
  done
  [ -n "$catatonit" ] || { log "catatonit not found: podman cannot build its pause image (apt-get install catatonit)"; exit 3; }
  probe="beemesh-pause-probe-$$"
  if ! pm pod create --name "$probe" >/dev/null; then
    log "podman could not create a pod (pause image build failed)"
    exit 4
  fi
  pm pod rm --force "$probe" >/dev/null
  log "built the pause image with $catatonit"
fi
log "ready: $(pm images --format '{{.Repository}}:{{.Tag}}' --filter reference=localhost/beemesh/busybox --filter reference=localhost/podman-pause | tr '\n' ' ')"
