# otelcol-istio: build, run and test the distribution.
# Every tool is installed by this Makefile into .tools/ at a pinned version;
# nothing here assumes a tool installed by hand beyond Go and make.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go

# Pinned tool versions. Core, builder and contrib move together (see README).
OCB_VERSION          := v0.165.0
# telemetrygen v0.162.0 is not served by the module proxy; v0.161.0 is the
# newest that is. It only generates load, so it need not match the core.
TELEMETRYGEN_VERSION := v0.161.0

# mdatagen and golangci-lint are pinned in tools/go.mod (mdatagen v0.159.0 is
# the newest the module proxy serves); these names only key the .tools/ paths.
MDATAGEN_VERSION     := v0.159.0
GOLANGCI_LINT_VERSION := v2.15.0

TOOLS_DIR    := $(CURDIR)/.tools
OCB          := $(TOOLS_DIR)/builder-$(OCB_VERSION)
MDATAGEN     := $(TOOLS_DIR)/mdatagen-$(MDATAGEN_VERSION)
TELEMETRYGEN := $(TOOLS_DIR)/telemetrygen-$(TELEMETRYGEN_VERSION)
GOLANGCI_LINT := $(TOOLS_DIR)/golangci-lint-$(GOLANGCI_LINT_VERSION)

BINARY       := bin/otelcol-istio
LOCAL_CONFIG := distribution/config.local.yaml
# Every collector config we ship; `make validate` checks each one.
SHIPPED_CONFIGS := $(sort $(wildcard distribution/config*.yaml))

# Go modules of this repository, other than the generated distribution.
MODULES := $(sort $(shell find . -name go.mod -not -path './.tools/*' -not -path './distribution/*' -not -path './tools/*' -printf '%h\n'))
# Components whose telemetry code mdatagen generates from metadata.yaml.
METADATA_DIRS := $(sort $(dir $(wildcard processor/*/metadata.yaml extension/*/metadata.yaml)))
# Sources the binary is built from (Go files and embedded assets): rebuild when any of them changes.
BINARY_SOURCES := builder-config.yaml $(shell find distribution processor extension -name '*.go' -o -name go.mod -o -name go.sum -o -path '*/statuspage/page.*' 2>/dev/null)

# The container image `make image` builds; deploy/kubernetes/base uses this name.
IMAGE ?= ghcr.io/otelcol-istio/otelcol-istio:0.1.0
# docker, else podman: whichever is installed (only `make image-docker` needs one).
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
# `make image` writes the image without a daemon, twice over: a `docker save`
# archive and an OCI image layout directory (deploy/cmd/imagebuild).
IMAGE_TAR      := bin/otelcol-istio-image.tar
IMAGE_LAYOUT   := bin/otelcol-istio-oci
IMAGE_VERSION   = $(lastword $(subst :, ,$(IMAGE)))
IMAGE_SOURCE   := https://github.com/otelcol-istio/otelcol-istio
IMAGE_REVISION  = $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
# The commit time stamps the image and its files: same commit, same digest.
IMAGE_CREATED   = $(shell git log -1 --format=%cI 2>/dev/null)
# The build machine's CA bundle (Debian's ca-certificates), shipped as
# /etc/ssl/certs/ca-certificates.crt like distroless does; empty: none.
CA_CERTS       ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)

# Native Go fuzz targets: `make test` runs each for FUZZ_TIME_CI, `make fuzz`
# for FUZZ_TIME. Minimising a new input is capped so a short run fuzzes.
# Each entry is package-dir:FuzzTarget.
FUZZ_TARGETS    := processor/istiospanprocessor:FuzzProcessProto \
                   processor/istiospanprocessor:FuzzProcessJSON \
                   processor/istiospanprocessor/internal/utf8check:FuzzTraces \
                   processor/istiospanprocessor/internal/utf8check:FuzzValidString \
                   extension/otlpguardextension/internal/tracecheck:FuzzProto \
                   extension/otlpguardextension/internal/tracecheck:FuzzJSON \
                   extension/queuestorageextension/internal/journal:FuzzOpen \
                   deploy/internal/collectorconfig:FuzzExpand
FUZZ_TIME       ?= 60s
# CI counts executions rather than time: with a time limit, a worker still
# busy when the deadline hits on a loaded machine fails the run with
# "context deadline exceeded" (a known go test -fuzz behaviour).
FUZZ_TIME_CI    ?= 20000x
FUZZ_MINIMIZE   ?= 2s

.PHONY: all
all: build

## tools: install ocb, mdatagen, golangci-lint and telemetrygen into .tools/
.PHONY: tools
tools: $(OCB) $(MDATAGEN) $(GOLANGCI_LINT) $(TELEMETRYGEN)

$(OCB):
	@mkdir -p $(TOOLS_DIR)
	GOBIN=$(TOOLS_DIR) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION)
	mv $(TOOLS_DIR)/builder $@

$(MDATAGEN): tools/go.mod tools/go.sum
	@mkdir -p $(TOOLS_DIR)
	cd tools && $(GO) build -o $@ go.opentelemetry.io/collector/cmd/mdatagen

$(GOLANGCI_LINT): tools/go.mod tools/go.sum
	@mkdir -p $(TOOLS_DIR)
	cd tools && $(GO) build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

$(TELEMETRYGEN):
	@mkdir -p $(TOOLS_DIR)
	GOBIN=$(TOOLS_DIR) $(GO) install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$(TELEMETRYGEN_VERSION)
	mv $(TOOLS_DIR)/telemetrygen $@

## generate: regenerate distribution/ and components/ from builder-config.yaml, and telemetry code from metadata.yaml
.PHONY: generate
generate: $(OCB) $(MDATAGEN)
	@for d in $(METADATA_DIRS); do echo "mdatagen $$d"; (cd $$d && $(MDATAGEN) metadata.yaml); done
	$(OCB) --config builder-config.yaml --skip-compilation
	sed -e 's/^package main$$/package components/' \
	    -e 's|^func components() |// Components returns the factories of every component in builder-config.yaml.\nfunc Components() |' \
	    distribution/components.go > components/components.go
	gofmt -w distribution/*.go components/components.go

## check-generated: fail when committed generated sources drift from builder-config.yaml or metadata.yaml
GENERATED_PATHS := distribution components $(METADATA_DIRS)
.PHONY: check-generated
check-generated: generate
	@if ! git diff --quiet -- $(GENERATED_PATHS) || [ -n "$$(git ls-files --others --exclude-standard $(GENERATED_PATHS))" ]; then \
	  git status --short -- $(GENERATED_PATHS); \
	  echo "generated sources drifted from builder-config.yaml or metadata.yaml: run 'make generate' and commit"; exit 1; \
	fi
	@echo "generated sources match builder-config.yaml and metadata.yaml"

## build: build the collector binary at bin/otelcol-istio (static, as in the image)
.PHONY: build
build: $(BINARY)

$(BINARY): $(BINARY_SOURCES)
	@mkdir -p bin
	cd distribution && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o ../$(BINARY) .

## run: build and start the collector on distribution/config.local.yaml
.PHONY: run
run: $(BINARY)
	./$(BINARY) --config $(LOCAL_CONFIG)

## demo: build, then show the collector on a simulated Bookinfo mesh (Ctrl-C stops; DEMO_DURATION=10s bounds it)
DEMO_DURATION ?=
.PHONY: demo
demo: $(BINARY)
	@$(GO) build -o bin/meshsim-demo ./e2e/cmd/demo
	@./bin/meshsim-demo -binary $(BINARY) -config distribution/config.demo.yaml -duration '$(DEMO_DURATION)'

## validate: run the binary's own `validate` on every config we ship
.PHONY: validate
validate: $(BINARY)
	@for cfg in $(SHIPPED_CONFIGS); do \
	  echo "validate $$cfg"; \
	  endpoint=backend.example:4317; case $$cfg in *http*) endpoint=https://backend.example:4318;; esac; \
	  OTLP_BACKEND_ENDPOINT=$$endpoint OTLP_BACKEND_TOKEN=validate-only \
	    ./$(BINARY) validate --config $$cfg; \
	done

## image: build the image $(IMAGE) without a daemon: $(IMAGE_TAR) (docker load) and $(IMAGE_LAYOUT)/ (OCI layout)
.PHONY: image
image: $(BINARY)
	@cd deploy && $(GO) build -o ../bin/imagebuild ./cmd/imagebuild
	./bin/imagebuild -dockerfile Dockerfile -binary $(BINARY) -config distribution/config.yaml \
	  -ca-certs '$(CA_CERTS)' -image $(IMAGE) -source $(IMAGE_SOURCE) -version $(IMAGE_VERSION) \
	  -revision '$(IMAGE_REVISION)' -created '$(IMAGE_CREATED)' -tar $(IMAGE_TAR) -layout $(IMAGE_LAYOUT)

## image-docker: build the same image from the Dockerfile with docker or podman (needs a running daemon for docker)
.PHONY: image-docker
image-docker:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
	  echo "make image-docker: neither docker nor podman is installed."; \
	  echo "  'make image' builds the image without one: $(IMAGE_TAR) and $(IMAGE_LAYOUT)/"; exit 1; \
	fi
	@if ! $(CONTAINER_ENGINE) info >/dev/null 2>&1; then \
	  echo "make image-docker: $(CONTAINER_ENGINE) is installed, but no daemon answers ('$(CONTAINER_ENGINE) info' fails)."; \
	  echo "  Start the daemon (e.g. 'sudo systemctl start docker'), or build without one:"; \
	  echo "    make image                          # writes $(IMAGE_TAR) and $(IMAGE_LAYOUT)/"; \
	  echo "    docker load -i $(IMAGE_TAR)   # where a daemon runs; or: podman load -i $(IMAGE_TAR)"; \
	  echo "    crane push $(IMAGE_TAR) $(IMAGE)   # straight to a registry"; \
	  exit 1; \
	fi
	$(CONTAINER_ENGINE) build --build-arg VERSION=$(IMAGE_VERSION) --build-arg REVISION='$(IMAGE_REVISION)' -t $(IMAGE) .

## deploy-config: copy the shipped collector configs into the kustomizations
.PHONY: deploy-config
deploy-config:
	cp distribution/config.yaml deploy/kubernetes/base/config.yaml
	cp distribution/config-http.yaml deploy/kubernetes/overlays/http/config.yaml

## test: everything CI runs: formatting, vet, unit tests, generated-code drift, validate, e2e
.PHONY: test
test: lint check-generated test-unit test-fuzz validate test-e2e

## test-unit: unit tests of every module (race detector on)
.PHONY: test-unit
test-unit:
	@for m in $(MODULES); do \
	  echo "== go test $$m"; \
	  (cd $$m && $(GO) test -race -count=1 $$( $(GO) list ./... | grep -v '/e2e' )); \
	done

## fuzz: run every fuzz target for FUZZ_TIME (default 60s; e.g. make fuzz FUZZ_TIME=10m)
.PHONY: fuzz
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; f=$${t##*:}; \
	  echo "== fuzz $$f ($$pkg) for $(FUZZ_TIME)"; \
	  (cd $$pkg && $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZ_TIME) -fuzzminimizetime $(FUZZ_MINIMIZE) .); \
	done

## test-fuzz: every fuzz target briefly (FUZZ_TIME_CI), as CI runs them
.PHONY: test-fuzz
test-fuzz:
	@$(MAKE) --no-print-directory fuzz FUZZ_TIME=$(FUZZ_TIME_CI)

## test-e2e: end-to-end tests against the built binary
.PHONY: test-e2e
test-e2e: $(BINARY) $(TELEMETRYGEN)
	OTELCOL_ISTIO_BINARY=$(CURDIR)/$(BINARY) TELEMETRYGEN=$(TELEMETRYGEN) \
	  $(GO) test -count=1 -timeout 20m ./e2e/...

## test-soak: the reliability tests with long outages and loads, and the slow clients against the shipped timeouts (OTELCOL_ISTIO_SOAK=1), about 20 minutes
.PHONY: test-soak
test-soak: $(BINARY)
	OTELCOL_ISTIO_SOAK=1 OTELCOL_ISTIO_BINARY=$(CURDIR)/$(BINARY) \
	  $(GO) test -count=1 -timeout 40m -v -run 'TestBackend|TestSIG|TestMemoryLimiter|TestQueue|TestHostile|TestSlowClients' ./e2e/

## bench: micro benchmarks of every module, then the end-to-end benchmark of the binary (under 10 min); table in bench/results/
.PHONY: bench
bench: $(BINARY)
	@mkdir -p bench/results
	@for m in $(MODULES); do \
	  (cd $$m && $(GO) test -run '^$$' -bench . -benchmem $$( $(GO) list ./... | grep -v '/e2e' )); \
	done | tee bench/results/micro.txt
	$(GO) run ./bench/cmd/collectorbench -binary $(BINARY) -out bench/results -micro bench/results/micro.txt

## fmt: format all Go code (gofmt, then goimports' grouping as .golangci.yml has it)
.PHONY: fmt
fmt: $(GOLANGCI_LINT)
	gofmt -w $$(git ls-files '*.go')
	@for m in $(MODULES) distribution; do (cd $$m && $(GOLANGCI_LINT) fmt --config $(CURDIR)/.golangci.yml ./...); done

## lint: gofmt, go vet and golangci-lint (.golangci.yml) on every module
.PHONY: lint
lint: $(GOLANGCI_LINT)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@for m in $(MODULES) distribution; do (cd $$m && $(GO) vet ./...); done
	@for m in $(MODULES) distribution; do \
	  echo "== golangci-lint $$m"; \
	  (cd $$m && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...); \
	done

## clean: remove build output and installed tools
.PHONY: clean
clean:
	rm -rf bin $(TOOLS_DIR)

## help: list the targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'
