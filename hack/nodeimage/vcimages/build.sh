#!/usr/bin/env bash
# build.sh DIR: builds the static binaries of a virtual cluster's
# control-plane pod (manifests/virtualcluster) into DIR and packs them into
# DIR/images.tar with vcimages (make vc-images): podbridge, kube-apiserver
# and kube-controller-manager (CGO_ENABLED=0, as Kubernetes' own release
# builds them; bin/k8s holds cgo builds for the test bed's processes, so
# these are built apart), and kine with its pure-Go SQLite driver
# (modernc.org/sqlite, which kine picks when built without cgo). CoreDNS's
# image is the real node's (make node-bins). Each binary is skipped when DIR
# holds it with the expected version stamp; podbridge is always rebuilt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:?usage: build.sh OUTPUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

kine_version=${KINE_VERSION:-v0.17.5}
kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$root/hack/k8s-bins/kubernetes/go.mod")
[[ -n $kube_version ]] || { echo "build.sh: no k8s.io/kubernetes version in hack/k8s-bins/kubernetes/go.mod" >&2; exit 1; }

stamped() { [[ -x "$out/$1" && "$(cat "$out/.$1.version" 2>/dev/null)" == "$2" ]]; }
stamp() { echo "$2" >"$out/.$1.version"; }

kube_ldflags() {
	local v=${kube_version#v} major minor
	major=${v%%.*}
	minor=${v#*.}; minor=${minor%%.*}
	local flags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}

for cmd in kube-apiserver kube-controller-manager; do
	if stamped "$cmd" "$kube_version"; then continue; fi
	echo "building static $cmd $kube_version (15 minutes or more on 2 cores on a cold cache)" >&2
	(cd "$root/hack/k8s-bins/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd")
	stamp "$cmd" "$kube_version"
done

if ! stamped kine "$kine_version"; then
	echo "building static kine $kine_version" >&2
	GOBIN="$out" CGO_ENABLED=0 GOFLAGS=-trimpath go install -ldflags "-s -w" "github.com/k3s-io/kine@$kine_version"
	stamp kine "$kine_version"
fi

(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/podbridge" ./cmd/podbridge)

cd "$root/hack/nodeimage" && go run ./vcimages -out "$out/images.tar" \
	-image "podbridge.local/podbridge:dev=$out/podbridge" \
	-image "podbridge.local/kube-apiserver:$kube_version=$out/kube-apiserver" \
	-image "podbridge.local/kube-controller-manager:$kube_version=$out/kube-controller-manager" \
	-image "podbridge.local/kine:$kine_version=$out/kine"
