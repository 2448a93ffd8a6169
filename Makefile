# Outrigger — build, test, image, compose, bench.
GO        ?= go
BIN       := bin/agent
IMAGE     ?= outrigger/agent:dev
ECHO_IMAGE ?= outrigger/echo:dev
VERSION   ?= 0.1.0
REVISION  := $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS   := -s -w -X github.com/outrigger/outrigger/internal/version.Version=$(VERSION) -X github.com/outrigger/outrigger/internal/version.Revision=$(REVISION)
COMPOSE   ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)
# Go test timeout for the whole suite; the suite must stay well under it.
TEST_TIMEOUT ?= 20m

.PHONY: all build test test-short deps vet image compose-up compose-down bench clean fmt

all: build

## build: the static agent binary in bin/agent (CGO_ENABLED=0, runs FROM scratch)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/agent

## deps: install the Debian packages the tests use, when missing
deps:
	bash scripts/install-deps.sh

vet:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: every test: unit, in-process clusters, processes, compose (when Docker runs)
test: deps vet build
	OUTRIGGER_AGENT_BIN=$(CURDIR)/$(BIN) OUTRIGGER_IMAGE=$(IMAGE) \
		bash scripts/gotest.sh -race -count=1 -timeout $(TEST_TIMEOUT) ./...

## test-short: unit tests only
test-short:
	$(GO) test -short -count=1 ./...

## image: the agent and demo app (examples/echo) images, FROM scratch with static binaries
image: build
	docker build -q -t $(IMAGE) -f Dockerfile .
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/echo ./examples/echo
	docker build -q -t $(ECHO_IMAGE) -f examples/echo/Dockerfile bin

## compose-up: build the images, start docker-compose.yml's cluster (3 servers, web and api with sidecars)
compose-up: image
	OUTRIGGER_IMAGE=$(IMAGE) OUTRIGGER_ECHO_IMAGE=$(ECHO_IMAGE) $(COMPOSE) up -d

## compose-down: stop it and remove its containers, network and volumes
compose-down:
	$(COMPOSE) down -v --remove-orphans

## bench: the benchmarks in bench/ (see BENCHMARKS.md)
bench: build
	bash bench/run.sh

fmt:
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')

clean:
	rm -rf bin
