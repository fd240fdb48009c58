# kpoguard: run `make help` for the targets.
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GO ?= go
BENCH_COUNT ?= 8

IMAGE ?= ghcr.io/kpoguard/kpoguard:$(VERSION)
# The policy `make run` installs.
POLICY ?= examples/policy.yaml

.PHONY: help build test unit lint fmt bench run demo tools dashboard-png image clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/kpoguard
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/kpoguard ./cmd/kpoguard

test: lint build tools ## lint, then every test: unit, fuzz seed corpora, e2e against a real API server
	bin/helm lint --strict charts/kpoguard
	bin/helm lint --strict charts/kpoguard --values charts/kpoguard/ci/full-values.yaml
	$(GO) test -count=1 ./...

unit: ## the fast tests only (no control plane)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

tools: ## build kube-apiserver, kube-scheduler, kube-controller-manager, etcd, kwok, kubectl, helm, staticcheck and cert-manager into bin/ (25-30 minutes the first time); apt-get install prometheus
	bash hack/build-tools.sh
	bash hack/install-prometheus.sh

lint: ## gofmt, go vet, staticcheck, and go mod tidy leaving go.mod clean
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed (make fmt):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	bash hack/build-tools.sh staticcheck
	bin/staticcheck ./...
	@before=$$(cat go.mod go.sum | sha256sum); $(GO) mod tidy; \
	  if [ "$$before" != "$$(cat go.mod go.sum | sha256sum)" ]; then echo "go mod tidy changed go.mod or go.sum: commit the result"; exit 1; fi

fmt: ## gofmt -w the tracked Go files
	gofmt -w $$(git ls-files '*.go')

bench: tools ## benchmarks, reported as medians by benchstat (e2e ones through the real API server)
	@mkdir -p bin
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee bin/bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da bin/bench.txt

run: build tools ## a local sandbox: kube-apiserver + etcd with kpoguard in front (POLICY=file); Ctrl-C stops it
	$(GO) run ./hack/sandbox -policy $(POLICY)

demo: build tools ## the sandbox tour, non-interactively
	$(GO) run ./hack/sandbox -demo

dashboard-png: build tools ## render the dashboard's key panels into docs/dashboard/ from a real Prometheus scraping the e2e workload
	$(GO) test -count=1 -run '^TestDashboardAgainstPrometheus$$' ./e2e/ -args -dashboard-png=$(CURDIR)/docs/dashboard

image: ## build the container image (needs a Docker engine): make image IMAGE=registry/kpoguard:tag
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean: ## remove build output (keeps the tools in bin/)
	rm -rf bin/kpoguard bin/bench.txt .sandbox
