# raftkv — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 20000
PYTEST_ARGS ?=
# `make test` runs whole test files on this many pytest-xdist workers (a module's fixtures,
# e.g. one cluster shared by its tests, stay in one process); TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

.PHONY: install test lint sim sim-paxos demo bench bench-core crds clean fuzz-peer

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: install install-system install-chaos-system
	$(BIN)/lint-imports pyproject.toml
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

lint: install
	$(BIN)/ruff check node operator tests bench
	$(BIN)/ruff format --check node operator tests bench
	$(BIN)/mypy node/raftkv operator/raftkv_operator
	$(BIN)/lint-imports pyproject.toml

# Deterministic cluster simulation over many seeds (make sim SEEDS=20000), one worker per
# CPU. SIM_ARGS adds options, e.g. SIM_ARGS='--start 20000 --steps 600 --nodes 5 --jobs 1'.
SIM_ARGS ?=
sim: install
	$(BIN)/python -m tests.sim.run --seeds $(SEEDS) $(SIM_ARGS)

# The Multi-Paxos engine in its own simulator (docs/consensus.md):
# make sim-paxos SEEDS=20000 PAXOS_ARGS='--jobs 2 --steps 150'
PAXOS_ARGS ?=
sim-paxos: install
	$(BIN)/python -m tests.sim.paxos_run --seeds $(SEEDS) $(PAXOS_ARGS)

# The peer-protocol fuzzer against a live 3-node cluster, longer than in `make test`
# (which sends 100k frames per engine): make fuzz-peer FRAMES=5000000 SEED=7 ENGINE=multipaxos
FRAMES ?= 2000000
SEED ?= $(shell date +%s)
ENGINE ?= raft
fuzz-peer: install
	$(BIN)/python -m tests.integration.peer_fuzz --frames $(FRAMES) --seed $(SEED) --engine $(ENGINE)

# Proposals per second through an in-memory 3-node cluster of cores (no IO).
bench-core: install
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Regenerate crds/*.yaml from the pydantic models (a unit test fails when they drift).
crds: install
	$(BIN)/python -m raftkv_operator.crdgen crds/

# ---- images, chart, monitoring, kind e2e ---------------------------------------------------

IMAGE_REGISTRY ?= ghcr.io/raftkv
APP_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
NODE_IMAGE ?= $(IMAGE_REGISTRY)/raftkv:$(APP_VERSION)
OPERATOR_IMAGE ?= $(IMAGE_REGISTRY)/raftkv-operator:$(APP_VERSION)
KIND_CLUSTER ?= raftkv
KIND_CONFIG := kind-config.yaml

.PHONY: install-system images image-constraints chart-test kind-up kind-down e2e-kind

# System packages the tests use: Debian's prometheus (prometheus + promtool) and, where no
# kubectl is installed, Debian's kubernetes-client (the docs tier runs the Kubernetes
# examples with it against the emulated API server). Idempotent.
install-system:
	@missing=""; \
	if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
		missing=" prometheus"; \
	fi; \
	if ! command -v kubectl >/dev/null; then missing="$$missing kubernetes-client"; fi; \
	if [ -z "$$missing" ]; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "install-system: apt-get install$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "install-system: missing$$missing and apt-get unavailable (not root?):" \
			"the monitoring tests and the docs tier's Kubernetes examples will skip" >&2; \
	fi

# Rewrite images/constraints-*.txt (the images' pinned dependencies) from the venv.
image-constraints: install
	$(BIN)/python images/constraints.py

# Both images; skipped with a message where docker has no engine to talk to.
images:
	@if ! docker info >/dev/null 2>&1; then \
		echo "images: skipped: no Docker engine (docker info failed; the client alone cannot build)"; \
		exit 0; \
	fi; \
	set -e; \
	for target in node operator; do \
		if [ $$target = node ]; then tag=$(NODE_IMAGE); else tag=$(OPERATOR_IMAGE); fi; \
		docker build --target $$target -t $$tag \
			--build-arg VERSION=$(APP_VERSION) \
			--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
			--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) . ; \
	done

# The chart (rendered by Helm's engine, validated strictly), RBAC vs the operator's calls,
# the alert rules (promtool) and every dashboard/rule expression against a live Prometheus.
chart-test: install install-system
	$(BIN)/python -m pytest -q tests/unit/chart tests/monitoring $(PYTEST_ARGS)

define need_tools
	missing=""; for tool in $(1); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ] && ! docker info >/dev/null 2>&1; then missing=" docker-engine"; fi; \
	if [ -n "$$missing" ]; then echo "$@: skipped: missing$$missing"; exit 0; fi
endef

# A kind cluster: one control plane, three workers (kind-config.yaml).
kind-up:
	@$(call need_tools,docker kind kubectl); \
	if kind get clusters | grep -qx '$(KIND_CLUSTER)'; then echo "kind cluster $(KIND_CLUSTER) exists"; exit 0; fi; \
	kind create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 180s

kind-down:
	@$(call need_tools,docker kind); \
	kind delete cluster --name $(KIND_CLUSTER)

# Images -> kind -> helm install -> scenarios (tests/e2e, marker `kind`).
e2e-kind: install
	@$(call need_tools,docker kind kubectl helm); \
	set -e; \
	$(MAKE) --no-print-directory images kind-up; \
	kind load docker-image --name $(KIND_CLUSTER) $(NODE_IMAGE) $(OPERATOR_IMAGE); \
	RAFTKV_E2E_KIND=1 RAFTKV_KIND_CLUSTER=$(KIND_CLUSTER) \
	RAFTKV_NODE_IMAGE=$(NODE_IMAGE) RAFTKV_OPERATOR_IMAGE=$(OPERATOR_IMAGE) \
		$(BIN)/python -m pytest -q -m kind tests/e2e $(PYTEST_ARGS)

# Leader routing in the emulated Kubernetes (tests/k8s/harness): kill -9 of the leader ->
# the client Service names only the new leader, 10 kills with the operator running and 10
# with it stopped; prints median and max (bench/routing.py). Not a test.
KILLS ?= 10
.PHONY: bench-routing
bench-routing: install
	$(BIN)/python bench/routing.py --kills $(KILLS)

# A real 3-node cluster on 127.0.0.1: writes, a lock with its fencing token, kill -9
# of the leader, a checkpoint on every member; stops everything it started.
demo: install
	$(BIN)/python -m raftkv.tools.demo

# ---- chaos (Jepsen-style fault injection, docs/chaos.md) -----------------------------------

RUNS ?= 50
TIME ?= 120
CHAOS_ARGS ?=

.PHONY: chaos install-chaos-system

# Long runs: RUNS runs of TIME seconds of mixed faults each (make chaos RUNS=50 TIME=120).
# Results (history, nemesis timeline, verdict) in results/chaos/<timestamp>-<seed>/.
chaos: install install-chaos-system
	$(BIN)/python -m tests.chaos.run --runs $(RUNS) --time $(TIME) $(CHAOS_ARGS)

# iproute2 + nftables + iptables for the network-namespace mode. Without them (not root)
# the chaos runs fall back to loopback mode (userspace link proxies) and say so.
install-chaos-system:
	@if command -v ip >/dev/null && command -v nft >/dev/null && command -v iptables >/dev/null; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "install-chaos-system: apt-get install iproute2 nftables iptables"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			iproute2 nftables iptables >/dev/null; \
	else \
		echo "install-chaos-system: ip/nft/iptables missing and apt-get unavailable (not root?):" \
			"chaos runs use loopback mode" >&2; \
	fi

# ---- benchmark against etcd (bench/run.py) --------------------------------------------------

BENCH_DURATION ?= 10
BENCH_KILLS ?= 5
BENCH_STABLE_SECONDS ?= 300
BENCH_ARGS ?=

.PHONY: install-bench-system bench-profile

# wrk + Debian's etcd-server/etcd-client (+ golang-go and golang-etcd-server-dev to build
# bench/etcdload, etcd's native gRPC client), a local 3-member etcd vs a local 3-node raftkv on Raft
# and on Multi-Paxos (BENCH_SYSTEMS, default etcd,raftkv,multipaxos)
# (fsync on both), writes then linearizable reads at 1/16/64/256 connections: a table of
# ops/s, p50/p99 and raftkv/etcd ratios; then leader changes during BENCH_STABLE_SECONDS
# of saturated writes, BENCH_KILLS kill -9 failovers of each, and issue 15's goals
# table; bench/results/bench-<time>.{json,png}.
bench: install install-bench-system
	$(BIN)/python bench/run.py --duration $(BENCH_DURATION) --kills $(BENCH_KILLS) \
		--stable-seconds $(BENCH_STABLE_SECONDS) $(BENCH_ARGS)

# The same, plus py-spy on the raftkv leader during the 64-connection writes
# (bench/results/profile-<time>.txt: top functions by own and inclusive time).
bench-profile: install install-bench-system
	@test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python bench/run.py --duration $(BENCH_DURATION) --kills $(BENCH_KILLS) \
		--stable-seconds $(BENCH_STABLE_SECONDS) --profile $(BENCH_ARGS)

install-bench-system:
	@if command -v wrk >/dev/null && command -v etcd >/dev/null && command -v go >/dev/null \
			&& [ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ]; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "install-bench-system: apt-get install wrk etcd-server etcd-client golang-go golang-etcd-server-dev"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			wrk etcd-server etcd-client golang-go golang-etcd-server-dev >/dev/null; \
	else \
		echo "install-bench-system: wrk/etcd missing and apt-get unavailable (not root?)" >&2; \
		exit 1; \
	fi
