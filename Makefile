# The commands a user needs. `make help` lists them.
CARGO ?= cargo

.PHONY: help build release image images test-etcd test-redis test test-local test-faults test-bugs lint fmt bench soak cluster-up cluster-down cluster-status cluster-join cluster-leave cluster-members test-membership test-partition clean fuzz fuzz-smoke openapi serve

help:
	@echo "make test            run every test (what CI runs)"
	@echo "make image           build the kvnode container image locally (static binary, docker import)"
	@echo "make images          kvnode's image, and etcd's and Redis's from the host's binaries (apt-get install etcd-server redis-server)"
	@echo "make lint            rustfmt and clippy, warnings as errors"
	@echo "make fuzz            each fuzz target of fuzz/ for FUZZ_SECONDS (300) s: inputs run and crashes per target"
	@echo "make bench           checker speed, report drawing time, check + report memory up to an hour of history, a local 3-node cluster's throughput and latency (vs etcd if installed), the ring at 1,200 members"
	@echo "make soak            10 min of mixed traffic + bad requests on a local 3-node cluster: RSS, errors, lost writes (not in CI; SOAK_SECS)"
	@echo "make cluster-up      start a local 3-node cluster on 127.0.0.1:7001-7003"
	@echo "make cluster-down    stop it"
	@echo "make cluster-status  show which local nodes run"
	@echo "make cluster-join    start one more local node that joins the running cluster"
	@echo "make cluster-leave NODE=n2   decommission a local node: it hands its ranges over and stops"
	@echo "make cluster-members the membership view of the local cluster"
	@echo "make test-partition  register + session workloads under partitions on 5 containers"
	@echo "make test-local      the same workloads on local processes (no Docker; kills, pauses, skew)"
	@echo "make test-membership register + durability while the cluster grows 3 -> 5 -> 4 and replaces a node, under partitions, kills, pauses (~7 min)"
	@echo "make test-faults     every fault kind on every workload, 5 containers, fast compaction/hints/repair (~8 min)"
	@echo "make test-etcd       register + session on 3 etcd containers under partitions, kills, pauses (docs/findings/etcd.md)"
	@echo "make test-redis      the same on a Redis primary + 2 replicas (docs/findings/redis.md)"
	@echo "make openapi         rewrite docs/openapi.json from the code (a test keeps the two equal)"
	@echo "make serve           the reports folder over HTTP at http://127.0.0.1:8080/ (harness serve)"
	@echo "make test-bugs       the seeded-bug matrix: every known bug caught? (reports/bugs/index.html, ~30 min)"

build:
	$(CARGO) build --workspace

release:
	@$(CARGO) build --quiet --release -p cluster --bin kvnode

# The docker tests need the image of the current kvnode; it is rebuilt
# only when the binary changed.
image:
	@harness/scripts/build-image.sh

# Images of stores installed on this host: binary + ldd's libraries.
images: image
	@harness/scripts/host-image.sh systems/etcd.toml
	@harness/scripts/host-image.sh systems/redis.toml

test: image
	$(CARGO) test --workspace
	@$(MAKE) --no-print-directory fuzz-smoke

# The node's input parsers under libFuzzer (fuzz/, cargo-fuzz on stable):
# the client request parser, the RPC codec, the record decoder, WAL replay.
# Each target runs for FUZZ_SECONDS; a crash's input is kept under
# fuzz/artifacts/TARGET/ and the command exits non-zero.
FUZZ_SECONDS ?= 300
fuzz:
	@CARGO=$(CARGO) fuzz/run.sh $(FUZZ_SECONDS)

# The short run of every target that `make test` includes.
FUZZ_SMOKE_SECONDS ?= 10
fuzz-smoke:
	@CARGO=$(CARGO) fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# fuzz/ is a workspace of its own; its clippy shares target/ so the
# dependencies checked for the main workspace are not checked again.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd fuzz && $(CARGO) fmt -- --check && \
	  CARGO_TARGET_DIR="$${CARGO_TARGET_DIR:-$(CURDIR)/target}" $(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd fuzz && $(CARGO) fmt

openapi:
	$(CARGO) run --quiet -p cluster --bin kvnode -- --print-openapi > docs/openapi.json

serve:
	$(CARGO) run --quiet --release -p workloads --bin harness -- serve

bench:
	$(CARGO) bench -p harness --bench checker
	$(CARGO) bench -p harness --bench report
	$(CARGO) bench -p workloads --bench history_scale
	$(CARGO) bench -p cluster --bench antientropy_memory
	$(CARGO) bench -p cluster --bench neutral
	$(CARGO) bench -p cluster --bench cluster_load
	$(CARGO) bench -p cluster --bench ring

# Not in CI (it takes SOAK_SECS, 10 minutes by default): mixed traffic and
# a trickle of bad requests against a local 3-node cluster of release
# nodes; prints RSS over time, throughput and latency, errors by kind, and
# exits non-zero on a crash, a lost acknowledged write or a 5xx to a bad
# request. SOAK_SEED replays a run's choices.
SOAK_SECS ?= 600
soak:
	SOAK_SECS=$(SOAK_SECS) $(CARGO) bench --profile release -p cluster --bench soak

cluster-up: release
	@cluster/scripts/local-cluster.sh up

cluster-down:
	@cluster/scripts/local-cluster.sh down

cluster-status:
	@cluster/scripts/local-cluster.sh status

# Grow and shrink the local cluster while it serves (docs/MEMBERSHIP.md).
cluster-join: release
	@cluster/scripts/local-cluster.sh join

cluster-leave:
	@cluster/scripts/local-cluster.sh leave $(NODE)

cluster-members:
	@cluster/scripts/local-cluster.sh members

# The main job: register and session workloads under partitions on five
# containers. Prints the verdicts; exits non-zero unless all are valid.
test-partition: image
	$(CARGO) run --quiet --release -p workloads --bin harness -- suite workloads/scenarios/partition.toml

# The same without Docker: local processes, kills, pauses and skew. The
# local backend runs target/release/kvnode, so it is built first.
test-local: release
	$(CARGO) run --quiet --release -p workloads --bin harness -- suite workloads/scenarios/local.toml

# The suite a store with an unknown bug must meet: every fault kind this
# machine supports (partitions, loss, kills, pauses, clocks, power loss,
# disk corruption, slow disks) on the register, session, durability and TTL
# workloads, with compaction, hints and repair turned fast.
test-faults: image
	$(CARGO) run --quiet --release -p workloads --bin harness -- suite workloads/scenarios/faults.toml

# The seeded-bug matrix: every bug of kvnode's catalogue under its scenario,
# with and without the bug, three seeds each. Exits non-zero unless every
# bug is caught in at least two of three seeds and the correct cluster is
# valid in every run.
# Nodes join and leave under load (docs/MEMBERSHIP.md).
test-membership: image release
	$(CARGO) run --quiet --release -p workloads --bin harness -- suite workloads/scenarios/membership.toml

test-bugs: image release
	$(CARGO) run --quiet --release -p workloads --bin harness -- bugs workloads/scenarios/bugs.toml

# Stores nobody here wrote, in containers (docs/findings/).
test-etcd: images
	$(CARGO) run --quiet --release -p workloads --bin harness -- suite workloads/scenarios/etcd.toml

test-redis: images
	$(CARGO) run --quiet --release -p workloads --bin harness -- suite workloads/scenarios/redis.toml

clean:
	$(CARGO) clean
	rm -rf .cluster
