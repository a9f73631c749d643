# Waggle's developer tasks. `make help` lists them; .ci/run is the full CI.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BUF := node_modules/.bin/buf
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The development database and Redis `make serve-pg` uses (the database is
# created on first use).
DEV_DB ?= waggle
PG_ADMIN_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
DEV_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/$(DEV_DB)?sslmode=disable
DEV_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# buf and protoc-gen-es are pinned in package-lock.json.
$(BUF):
	npm ci --no-audit --no-fund

.PHONY: generate
generate: $(BUF) ## regenerate gen/go and gen/ts from proto/
	$(BUF) generate

.PHONY: checkgenerate
checkgenerate: generate ## fail if generated code is stale or the tree is dirty
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "The working tree is not clean after 'make generate'. Run 'make generate' and commit the result:"; \
		git status --porcelain; \
		git --no-pager diff --stat; \
		git --no-pager diff | head -200; \
		exit 1; \
	fi

.PHONY: lint
lint: $(BUF) ## buf lint, buf format check, go vet
	$(BUF) lint
	$(BUF) format -d --exit-code
	go vet ./...

# Tests needing a Postgres or Redis that does not answer, or a program that
# is not installed, skip (fail with CI=true: internal/testdeps); go test
# shows a passing package's skips only with -v, so each skip's line is
# collected in a file and counted at the end.
.PHONY: test
test: ## run every test (those needing Postgres or Redis skip without them: make deps)
	@skips=$$(mktemp); \
	echo "go test -count=1 ./..."; \
	WAGGLE_TEST_SKIPS=$$skips go test -count=1 ./...; rc=$$?; \
	if [ -s "$$skips" ]; then \
		echo "SKIPPED: number of tests per missing dependency (CI=true fails them instead):"; \
		sort "$$skips" | uniq -c; \
	fi; \
	rm -f "$$skips"; exit $$rc

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 1m; CI gives each 3s)
	FUZZTIME=$(or $(FUZZTIME),1m) bash tools/fuzz.sh

.PHONY: build
build: ## build bin/waggle
	go build -ldflags "-X main.version=$(VERSION)" -o bin/waggle ./cmd/waggle

.PHONY: deps
deps: ## start this machine's Postgres and Redis if they are down
	bash tools/start-deps.sh

.PHONY: db
db: ## create the development database if it does not exist
	@psql "$(PG_ADMIN_URL)" -tAc "SELECT 1 FROM pg_database WHERE datname = '$(DEV_DB)'" | grep -q 1 \
		|| psql "$(PG_ADMIN_URL)" -qc 'CREATE DATABASE "$(DEV_DB)"'

.PHONY: serve
serve: build ## build and run every role on :8080, embedded in ./waggle-data (ARGS="--addr :9090" to pass flags)
	./bin/waggle serve $(ARGS)

.PHONY: serve-pg
serve-pg: build db ## the same on this machine's Postgres and Redis (make deps)
	./bin/waggle serve --postgres '$(DEV_POSTGRES_URL)' --redis '$(DEV_REDIS_URL)' $(ARGS)

# The TypeScript client (clients/ts) has its own pinned dependencies; its
# tests start a `waggle serve` of their own on each deployment
# (clients/ts/test/harness.ts).
clients/ts/node_modules/.package-lock.json: clients/ts/package-lock.json
	cd clients/ts && npm ci --no-audit --no-fund

.PHONY: test-ts
test-ts: clients/ts/node_modules/.package-lock.json ## TypeScript client tests against a live server, on Postgres and Redis and embedded (Node 20+)
	cd clients/ts && npm test

.PHONY: test-recipes
test-recipes: ## run docs/grpcurl.md's recipes against a live server (make test runs them too)
	go test -count=1 ./e2e/recipes/
