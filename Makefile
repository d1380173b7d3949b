# podbridge: run a virtual cluster's pods on a host cluster.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

K8S_VERSION ?= v1.37.2
K8S_BINS    ?= $(CURDIR)/bin/k8s/$(K8S_VERSION)
TOOLS       := $(CURDIR)/bin/tools
GOLANGCI_LINT_VERSION ?= v2.15.0
IMG         ?= podbridge:dev

# The control-plane binaries are built once and cached; KUBEBUILDER_ASSETS,
# when set, is searched first (see hack/k8s-bins/build.sh).
K8S_STAMP := $(K8S_BINS)/.kwok.version

##@ Development

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2} /^##@/ {printf "\n%s\n", substr($$0, 5)}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/podbridge, the production binary (webhook, reflector, check, create, connect, list, delete).
	CGO_ENABLED=0 go build -trimpath -o bin/podbridge ./cmd/podbridge

.PHONY: build-dev
build-dev: ## Build bin/podbridge-dev, the test bed's command behind make run.
	CGO_ENABLED=0 go build -trimpath -o bin/podbridge-dev ./cmd/podbridge-dev

.PHONY: run
run: build build-dev k8s-bins $(if $(REAL_NODE),node-bins) ## Run podbridge end to end on local host and virtual control planes (Ctrl-C stops all); REAL_NODE=1 adds a real kubelet node (root).
	bin/podbridge-dev $(if $(REAL_NODE),--real-node)

.PHONY: test
test: k8s-bins ## Run unit and integration tests (real apiservers, kwok) with the race detector.
	go test -race -count=1 -timeout 15m ./...

.PHONY: test-reliability
test-reliability: k8s-bins ## Run issue 7's fault tests (podbridge processes killed, apiservers restarted, a slow host; about 8 minutes on 2 cores) and print what each did.
	go test -count=1 -v -tags reliability -timeout 30m ./test/reliability/...

.PHONY: test-unit
test-unit: ## Run the unit tests only (no control planes).
	go test -race -count=1 -short ./...

.PHONY: bench
bench: k8s-bins ## Benchmark podbridge against the direct path at issue 6's sizes (about 20 minutes on 2 cores); results in bench-results/. BENCH_FLAGS=-quick for minutes.
	go run ./cmd/podbridge-bench $(BENCH_FLAGS)

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet (the fault tests' and the real-node suite's build tags included).
	go vet -tags reliability ./...
	go vet -tags node ./test/node/
	go vet -tags node,nodescale ./test/node/

.PHONY: lint
lint: $(TOOLS)/golangci-lint ## Run golangci-lint (v2, linters listed in .golangci.yml).
	$(TOOLS)/golangci-lint run ./...

$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

##@ Kubernetes binaries

.PHONY: k8s-bins
k8s-bins: ## Build kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok into bin/k8s (cached).
	hack/k8s-bins/build.sh $(K8S_BINS)

##@ Real node

NODE_DIR    := $(CURDIR)/bin/node
NODE_IMAGES := $(NODE_DIR)/images.tar

COREDNS_BIN   := $(NODE_DIR)/coredns
COREDNS_IMAGE := $(NODE_DIR)/coredns.tar

.PHONY: node-bins hosts-image
node-bins: $(NODE_IMAGES) $(COREDNS_IMAGE) hosts-image ## Build the real node's kubelet and kube-proxy into bin/k8s (cached), its image tarball, CoreDNS's and the hosts file's into bin/node.
	hack/k8s-bins/build.sh $(K8S_BINS) --node

# The workload binary, packed into the pause and workload images
# (podbridge.local/pause:1, podbridge.local/workload:1) by hack/nodeimage.
$(NODE_IMAGES): $(wildcard cmd/podbridge-workload/*.go) $(wildcard hack/nodeimage/*.go) hack/nodeimage/go.mod
	mkdir -p $(NODE_DIR)
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(NODE_DIR)/podbridge-workload ./cmd/podbridge-workload
	cd hack/nodeimage && go run . -binary $(NODE_DIR)/podbridge-workload -out $(NODE_IMAGES)

# CoreDNS from its Go module with only the plugins hack/coredns imports (no
# forward), and its image (podbridge.local/coredns:1.15.0) by
# hack/nodeimage/corednsimage.
$(COREDNS_BIN): hack/coredns/main.go hack/coredns/go.mod hack/coredns/go.sum
	mkdir -p $(NODE_DIR)
	cd hack/coredns && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(COREDNS_BIN) .

$(COREDNS_IMAGE): $(COREDNS_BIN) hack/nodeimage/corednsimage/main.go
	cd hack/nodeimage && go run ./corednsimage -binary $(COREDNS_BIN) -out $(COREDNS_IMAGE)

# The hosts-file init container (podbridge.local/hosts:1, podbridge-dev's
# --hosts-image on the real node), always rebuilt: seconds from Go's cache,
# and it follows translate's source.
hosts-image:
	mkdir -p $(NODE_DIR)
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(NODE_DIR)/podbridge-hosts ./cmd/podbridge-hosts
	cd hack/nodeimage && go run ./vcimages -out $(NODE_DIR)/hosts.tar -image podbridge.local/hosts:1=$(NODE_DIR)/podbridge-hosts

# The images of a virtual cluster's control-plane pod (manifests/virtualcluster):
# static podbridge, kube-apiserver, kube-controller-manager and kine, packed
# offline by hack/nodeimage/vcimages into bin/vc/images.tar, which the
# real-node suite imports beside CoreDNS's.
VC_DIR := $(CURDIR)/bin/vc

.PHONY: vc-images
vc-images: ## Build the static binaries and the offline image tarball of a virtual cluster's control-plane pod into bin/vc (cached; podbridge always rebuilt).
	hack/nodeimage/vcimages/build.sh $(VC_DIR)

.PHONY: test-node
test-node: k8s-bins node-bins vc-images ## Run the real-node end-to-end suite (root; installs containerd, runc, the CNI plugins and iptables with apt when absent).
	go test -count=1 -v -tags node -timeout 20m ./test/node/

##@ Conformance

.PHONY: conformance-bins
conformance-bins: ## Build the conformance suite's e2e.test, the ginkgo CLI, agnhost and nnp into bin/k8s (cached).
	hack/k8s-bins/build.sh $(K8S_BINS) --conformance

.PHONY: conformance
conformance: build build-dev k8s-bins node-bins conformance-bins ## Run the Kubernetes conformance suite (hack/conformance/focus.txt; CONFORMANCE_FOCUS=all for every spec; CONFORMANCE_SET=ci for the minutes-long subset .ci/run runs) on a podbridge-dev virtual cluster whose pods all run on the real node (root); JUnit and a summary in conformance-results/.
	K8S_BINS=$(K8S_BINS) hack/conformance/run.sh

##@ Deployment

OVERLAY ?= manifests/overlays/example

.PHONY: manifests
manifests: ## Check that every kustomize overlay under manifests/overlays builds.
	go test -count=1 ./manifests/

.PHONY: deploy
deploy: ## Apply $(OVERLAY) to the cluster of the current kubeconfig (kustomize build | kubectl apply).
	kubectl kustomize $(OVERLAY) | kubectl apply -f -

##@ Packaging

.PHONY: docker-build
docker-build: ## Build the container image $(IMG) (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: clean
clean: ## Remove built binaries (keeps the Kubernetes binaries cache).
	rm -f bin/podbridge bin/podbridge-dev
