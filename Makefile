# Slipway. `make test` is the one command CI runs (.ci/run): it builds or reuses every real part
# it needs (cached under $XDG_CACHE_HOME/slipway), starts and stops its own servers, and runs all
# tiers of tests.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/slipway-dev/slipway/internal/version.Version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: demo demo-down all build test unit lint generate check-generated fuzz bench envtest-assets testbeds e2e images bench-controller dev-apiserver clean

all: build

build: ## Build bin/slipway (static).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/slipway ./cmd/slipway

generate: ## Regenerate deepcopy code and the CRD from the API types.
	CG=$$(hack/tool.sh controller-gen); \
	$$CG object paths=./internal/api/... && \
	$$CG crd:allowDangerousTypes=false paths=./internal/api/... output:crd:artifacts:config=charts/slipway/crds && \
	$$CG rbac:roleName=slipway-controller paths="{./internal/controller/...,./internal/report/...}" output:rbac:artifacts:config=charts/slipway/files/rbac

check-generated: generate ## Fail if generated files are stale.
	@git diff --exit-code -- internal/api charts/slipway/crds charts/slipway/files/rbac || \
	  { echo "generated files are stale: run 'make generate' and commit" >&2; exit 1; }

lint: ## go vet and gofmt.
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...
	@out=$$(find . -name '*.go' -not -path './.git/*' -not -path './bin/*' | xargs gofmt -l); \
	  if [ -n "$$out" ]; then echo "gofmt needed:" >&2; echo "$$out" >&2; exit 1; fi

envtest-assets: ## Build (once) kube-apiserver, etcd and kubectl for envtest.
	@hack/kube-binaries.sh kube-apiserver etcd kubectl >/dev/null

testbeds: envtest-assets ## Build or install (once) every real part the tests start.
	hack/buildkit/ensure.sh
	hack/tool.sh helm >/dev/null
	hack/kube-binaries.sh all >/dev/null
	hack/cluster/runtime-binaries.sh >/dev/null

test: testbeds check-generated lint ## Everything: unit, integration, fuzz smoke.
	KUBEBUILDER_ASSETS=$$(hack/kube-binaries.sh kube-apiserver etcd kubectl) \
	  $(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz
	$(MAKE) e2e

e2e: ## End-to-end tests on the real single-node cluster, on both node runtimes.
	hack/cluster/e2e.sh

images: testbeds ## Build Slipway's images with rootless BuildKit and push them to the test cluster.
	hack/images/slipway-images.sh

demo: ## One command: test cluster, images, chart, fake GitHub, a signed push followed to the image.
	hack/demo/demo.sh up

demo-down: ## Stop what `make demo` started.
	hack/demo/demo.sh down

bench-controller: ## Controller and build-pod benchmark on the test cluster.
	hack/bench/controller/run.sh -out docs/performance-controller.md

unit: ## Only tests that need no real servers.
	$(GO) test -short ./...

fuzz: ## Run each fuzz target for FUZZTIME (a real finding is saved under testdata/fuzz).
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

bench: envtest-assets ## Intake benchmark against the real API server.
	KUBEBUILDER_ASSETS=$$(hack/kube-binaries.sh kube-apiserver etcd kubectl) \
	  $(GO) test -run '^$$' -bench . -benchmem ./internal/intake/

clean:
	rm -rf bin

dev-apiserver: envtest-assets ## Run a real API server with the Build CRD until Ctrl-C.
	KUBEBUILDER_ASSETS=$$(hack/kube-binaries.sh kube-apiserver etcd kubectl) $(GO) run ./hack/dev-apiserver
