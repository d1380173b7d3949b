#!/usr/bin/env bash
# build.sh DIR [--node|--conformance]: builds the control-plane binaries
# podbridge runs on into DIR (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok), from Go modules only: no release downloads.
# With --node it builds only the kubelet and kube-proxy (the real node of the
# test bed, `make node-bins`); with --conformance only the conformance suite's e2e.test,
# the ginkgo v2 CLI that runs it in parallel, and agnhost and nnp (programs
# of the suite's images), for `make conformance`. Both are kept apart so
# the plain control plane does not pay for them. Each binary is skipped
# when DIR already holds it with the expected version stamp, so a warm call is
# instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTPUT_DIR [--node|--conformance]}
node=${2:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# required_version MODULE GO_MOD: the version GO_MOD requires of MODULE, on a
# `require` line of its own or in a require block.
required_version() {
	awk -v m="$1" '$1 == "require" && $2 == m {print $3; exit} $1 == m && $2 ~ /^v/ {print $2; exit}' "$2"
}
kube_version=$(required_version k8s.io/kubernetes "$here/kubernetes/go.mod")
etcd_version=$(required_version go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")
kwok_version=${KWOK_VERSION:-v0.8.0}
[[ -n $kube_version && -n $etcd_version ]] || { echo "build.sh: no k8s.io/kubernetes or etcd version in the wrapper modules' go.mod" >&2; exit 1; }

# stamped NAME VERSION: true when DIR/NAME was built from VERSION already, or
# when the user's KUBEBUILDER_ASSETS provides NAME (podbridge looks there first).
stamped() {
	[[ -n ${KUBEBUILDER_ASSETS:-} && -x "$KUBEBUILDER_ASSETS/$1" ]] && return 0
	[[ -x "$out/$1" && "$(cat "$out/.$1.version" 2>/dev/null)" == "$2" ]]
}
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

if [[ $node == --node ]]; then
	if ! stamped kubelet "$kube_version"; then
		echo "building kubelet $kube_version (2 to 3 minutes on a warm build cache)" >&2
		(cd "$here/kubernetes" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/kubelet" "k8s.io/kubernetes/cmd/kubelet")
		stamp kubelet "$kube_version"
	fi
	if ! stamped kube-proxy "$kube_version"; then
		echo "building kube-proxy $kube_version (about a minute once the kubelet is built)" >&2
		(cd "$here/kubernetes" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/kube-proxy" "k8s.io/kubernetes/cmd/kube-proxy")
		stamp kube-proxy "$kube_version"
	fi
	exit 0
fi

if [[ $node == --conformance ]]; then
	ginkgo_version=$(required_version github.com/onsi/ginkgo/v2 "$here/kubernetes/go.mod")
	if ! stamped e2e.test "$kube_version"; then
		echo "building e2e.test $kube_version (about 15 minutes on 2 cores on a cold build cache, seconds warm)" >&2
		(cd "$here/kubernetes" && go test -c -trimpath -ldflags "$(kube_ldflags)" -o "$out/e2e.test" "k8s.io/kubernetes/test/e2e")
		stamp e2e.test "$kube_version"
	fi
	if ! stamped agnhost "$kube_version"; then
		echo "building agnhost from k8s.io/kubernetes $kube_version" >&2
		(cd "$here/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/agnhost" "k8s.io/kubernetes/test/images/agnhost")
		stamp agnhost "$kube_version"
	fi
	if ! stamped nnp "$kube_version"; then
		echo "building nnp (the nonewprivs image's program) from k8s.io/kubernetes $kube_version" >&2
		(cd "$here/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/nnp" "k8s.io/kubernetes/test/images/nonewprivs")
		stamp nnp "$kube_version"
	fi
	if ! stamped ginkgo "$ginkgo_version"; then
		echo "building ginkgo $ginkgo_version" >&2
		(cd "$here/kubernetes" && go build -trimpath -o "$out/ginkgo" "github.com/onsi/ginkgo/v2/ginkgo")
		stamp ginkgo "$ginkgo_version"
	fi
	exit 0
fi

for cmd in kube-apiserver kube-scheduler kube-controller-manager; do
	if stamped "$cmd" "$kube_version"; then continue; fi
	echo "building $cmd $kube_version (the first one takes about 15 minutes on 2 cores)" >&2
	(cd "$here/kubernetes" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd")
	stamp "$cmd" "$kube_version"
done

if ! stamped etcd "$etcd_version"; then
	echo "building etcd $etcd_version" >&2
	(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
	stamp etcd "$etcd_version"
fi

if ! stamped kwok "$kwok_version"; then
	echo "building kwok $kwok_version" >&2
	GOBIN="$out" GOFLAGS=-trimpath go install "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
	stamp kwok "$kwok_version"
fi
