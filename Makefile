# Kappa — the commands a developer and CI run. `make` lists them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/kappa-target
export KAPPA_INFRA ?= $(HOME)/.cache/kappa-infra
CARGO ?= cargo
# Tests run the binary with its crash points compiled in (FAILPOINTS=...); `make run` builds without.
# Both have the AWS Glue and S3 Tables catalogs (`aws`), as the release build and the image do.
TEST_FEATURES := --features kappa/failpoints,kappa/aws
DEMO_DIR ?= ./kappa-demo

.DEFAULT_GOAL := help
.PHONY: help build run demo test helm-check alerts-check unit it services-install services-up services-down bench bench-check lint fmt-check clippy doc depcheck ci

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## Build the kappa binary (release, with the AWS Glue and S3 Tables catalogs)
	$(CARGO) build --release -p kappa --features aws

run: build ## Run the demo: synthetic orders -> archive -> replay -> local Iceberg table (no services)
	$(CARGO_TARGET_DIR)/release/kappa demo --dir $(DEMO_DIR)

demo: run

services-install: ## Install the Python clients (PyIceberg, DuckDB) and SeaweedFS into $(KAPPA_INFRA)
	dev/services.sh install

services-up: services-install ## Start SeaweedFS (S3), PostgreSQL and the Kafka broker on 127.0.0.1
	dev/services.sh start

services-down: ## Stop the services
	dev/services.sh stop

test: services-up helm-check alerts-check ## Run every test (unit, property, integration against real services, the Helm chart, the alert rules)
	set -a; eval "$$(dev/services.sh env)"; set +a; \
	$(CARGO) test --workspace --lib --bins --tests --no-fail-fast $(TEST_FEATURES); rc=$$?; \
	dev/services.sh stop; exit $$rc

helm-check: ## Lint, render and schema-validate the Helm chart, and assert what it renders
	dev/helm-check.sh

alerts-check: ## Check the alert rules and run their unit tests (promtool check/test rules)
	dev/alerts-check.sh

unit: ## Unit and property tests only (no services)
	$(CARGO) test --workspace --lib $(TEST_FEATURES)

it: services-up ## Integration tests only
	set -a; eval "$$(dev/services.sh env)"; set +a; $(CARGO) build -p kappa $(TEST_FEATURES) && $(CARGO) test -p kappa-integration-tests

bench: services-up ## Benchmarks on 1M events: replay (decode, encode, end to end, backfill, compaction), each Kafka Connect archive shape (and against a Python peer, and from S3 with 30 ms per request), live Kafka (vs consume-only, latency, restart after SIGKILL), `kappa demo` memory
	$(CARGO) bench -p kappa-logic --bench dedup
	$(CARGO) bench -p kappa-bench --bench replay
	$(CARGO) bench -p kappa-bench --bench shapes
	$(CARGO) build --release -p kappa --features aws
	set -a; eval "$$(dev/services.sh env)"; set +a; \
	  $(CARGO) bench -p kappa-bench --bench processes && $(CARGO) bench -p kappa-bench --bench kafka; \
	  rc=$$?; dev/services.sh stop; exit $$rc
	d=$$(mktemp -d); trap 'rm -rf $$d' EXIT; \
	  $(CARGO_TARGET_DIR)/release/kappa demo --dir $$d/demo --json > $$d/summary.json && \
	  python3 dev/demo-figures.py $$d/summary.json

bench-check: ## Benchmarks compile (CI)
	$(CARGO) bench -p kappa-bench -p kappa-logic --no-run

fmt-check: ## Check formatting (never rewrites)
	$(CARGO) fmt --all -- --check

clippy: ## Lints, warnings denied
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

doc: ## API docs, warnings denied
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

depcheck: ## Architecture rule: logic, schema and quality crates import no source or sink
	dev/depcheck.sh

lint: fmt-check depcheck clippy doc ## All static checks (rustdoc warnings denied too)

ci: lint test ## What .ci/run runs
