# Locksmith — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
TOOLS := tests/tools

.PHONY: help run test bench fmt fmt-check clippy unit smoke proto-lint tools pki clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

run: ## Build and start the whole suite on loopback (dev CA created if missing); Ctrl-C stops it
	@deploy/dev/run.sh

test: tools fmt-check clippy proto-lint unit smoke ## Everything CI runs: format, lints, proto lint, all tests, the make-run smoke test

bench: tools ## Benchmarks on release builds, side by side in one run; figures in tests/bench/results/
	@tests/bench/edge.sh
	@tests/bench/credstore.sh
	@tests/bench/proxy.sh

tools: ## Install what the tests need into tests/tools: buf and oidc-provider (npm), grpcio-tools and schemathesis (PyPI, a venv)
	@cd $(TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	@test -x $(TOOLS)/.venv/bin/python || python3 -m venv $(TOOLS)/.venv
	@$(TOOLS)/.venv/bin/pip install -q --disable-pip-version-check -r $(TOOLS)/requirements.txt

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

proto-lint: ## buf lint (STANDARD rules) over proto/
	@cd proto && ../$(TOOLS)/node_modules/.bin/buf lint

unit: ## Unit tests and the integration-test binary
	$(CARGO) test --workspace --locked

smoke: ## Start the suite with `make run` and drive it with curl
	@tests/smoke.sh

pki: ## Create the dev CA and service certificates in var/pki (kept if present)
	$(CARGO) run -q --locked -p locksmith-cli -- pki init --dir var/pki

clean: ## Remove build output and local state
	$(CARGO) clean
	rm -rf var $(TOOLS)/node_modules $(TOOLS)/.venv
