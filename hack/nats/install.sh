#!/usr/bin/env bash
# Installs Debian's nats-server (2.9.10 here, DESIGN §8) when it is missing.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
  echo "nats-server: $({ command -v nats-server || echo /usr/sbin/nats-server; } | head -1) $(/usr/sbin/nats-server --version 2>/dev/null || nats-server --version)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "nats-server is missing; run as root (or: sudo apt-get install nats-server)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nats-server >/dev/null
# Debian's package starts a service on 4222 without TLS; the mesh runs its own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nats-server >/dev/null 2>&1 || true; fi
/usr/sbin/nats-server --version
