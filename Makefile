# Beemesh developer entry points. Node 22 is put first on PATH when the
# machine's node is older (hack/ensure-node.sh, DESIGN §8).
SHELL := /bin/bash
NODE_BIN := $(shell hack/ensure-node.sh)
export PATH := $(NODE_BIN):$(PATH)
JEST_JSON ?= .tmp/jest-results.json

.PHONY: all deps build test lint gen-crds up down e2e bench chaos clean

all: build

node_modules: package-lock.json
	npm ci --no-audit --no-fund || npm install --no-audit --no-fund
	@touch node_modules

deps: node_modules

build: node_modules
	npm run build

lint: node_modules
	npm run lint

gen-crds: node_modules
	npm run gen:crds

# The test command (README): unit, integration and e2e tests; Jest's JSON
# result lands in $(JEST_JSON) so .ci/run can print its one-line summary.
test: node_modules
	@mkdir -p .tmp
	npm test -- --json --outputFile=$(JEST_JSON) --forceExit

# A mesh on this machine (hack/up.sh: installs what is missing, builds, starts
# NATS, a dispatcher, a lease-keeper and 3 node agents on podman, applies
# deploy/examples/web.yaml); make down stops exactly that.
up:
	hack/up.sh

down:
	hack/down.sh

# The end-to-end run on real podman (test/e2e, < 5 min; skips without root/podman).
e2e: node_modules
	hack/e2e.sh

chaos:
	@echo "make $@: not built yet (see the open issues)" >&2; exit 2

# Every benchmark in turn (or `make bench BENCH="heal"`); each prints its
# figures and writes bench/results/<name>.json.
BENCH ?= identity bus scheduling heal
bench: node_modules
	@for b in $(BENCH); do echo "== bench/$$b.ts"; npx tsx bench/$$b.ts || exit 1; done

clean:
	rm -rf dist .tmp coverage
