#!/usr/bin/env bash
# run.sh: `make conformance`. Runs the Kubernetes conformance suite (e2e.test
# of bin/k8s, built by `hack/k8s-bins/build.sh DIR --conformance`) against a
# `podbridge-dev --real-node --tenants-on-real-node` virtual cluster, so every
# pod the suite makes goes through podbridge's webhook and reflector and runs
# in real containers on the real node. Root only (the real node).
#
# It builds the images the suite names (bin/conformance/images.tar, rebuilt
# when an input changed), starts the dev environment with them imported, runs
# the selected specs with ginkgo and writes the JUnit report, the suite's
# output and a summary into the results folder.
#
# Environment:
#   CONFORMANCE_FOCUS    empty: the specs of hack/conformance/focus.txt;
#                        "all": every [Conformance] spec; else a ginkgo focus
#                        regexp of its own.
#   CONFORMANCE_SET      "ci": leave out hack/conformance/ci-exclude.txt's
#                        specs too (what .ci/run runs, in minutes).
#   CONFORMANCE_PROCS    ginkgo processes (default 4: most specs wait on
#                        pods, so 4 beat 2 on 2 cores, 17 minutes to 24).
#   CONFORMANCE_RESULTS  results folder (default conformance-results).
#   K8S_BINS             the Kubernetes binaries (default bin/k8s/v1.37.2).
#   CONFORMANCE_WORK     where the images and the Debian files they take are
#                        built (default bin/conformance): a worktree whose
#                        bin/conformance is another's cache names its own.
# hack/conformance/skip.txt is never run, whatever the focus.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/hack/conformance
bins=${K8S_BINS:-$root/bin/k8s/v1.37.2}
work=${CONFORMANCE_WORK:-$root/bin/conformance}
results=${CONFORMANCE_RESULTS:-$root/conformance-results}
state=$root/.podbridge/conformance
procs=${CONFORMANCE_PROCS:-4}

say() { echo "conformance: $*" >&2; }

[[ $(id -u) == 0 ]] || { say "needs root: the suite runs on podbridge-dev's real node"; exit 1; }
for bin in e2e.test ginkgo agnhost nnp kubelet; do
	[[ -x $bins/$bin ]] || { say "$bins/$bin is missing (make conformance builds it)"; exit 1; }
done
mkdir -p "$work" "$results"
results=$(cd "$results" && pwd)

# Every e2e.test invocation leaves a test-kuberc* folder in TMPDIR: give it
# one that goes.
tmp=$(mktemp -d)
dev_pid=
cleanup() {
	local rc=$?
	if [[ -n $dev_pid ]]; then
		# podbridge-dev removes its folder on exit: keep its logs first.
		rm -rf "$results/podbridge-logs"
		cp -r "$state/logs" "$results/podbridge-logs" 2>/dev/null || true
		kill -INT "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export TMPDIR=$tmp

# --- Images ---------------------------------------------------------------

kube_src=$(cd "$root/hack/k8s-bins/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)

# deb PACKAGE FILE: FILE of Debian's PACKAGE, downloaded with apt-get (no
# install) and unpacked under bin/conformance/deb once.
deb() {
	local dir=$work/deb/$1
	if [[ ! -e $dir/$2 ]]; then
		say "fetching Debian's $1 with apt-get download"
		rm -rf "$dir" && mkdir -p "$dir"
		(cd "$dir" && { apt-get download "$1" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get download "$1" >/dev/null; }; } && dpkg -x ./*.deb .)
	fi
	echo "$dir/$2"
}
busybox=$(deb busybox-static bin/busybox)
sh=$(deb bash-static bin/bash-static)
# The suite's agnhost has netcat-openbsd: its Services specs run nc -v -t/-u.
nc=$(deb netcat-openbsd bin/nc.openbsd)

if [[ ! -x $work/pause || $kube_src/build/pause/linux/pause.c -nt $work/pause ]]; then
	say "compiling pause from $kube_src/build/pause/linux/pause.c"
	gcc -Os -Wall -static -DVERSION=v3.10.2 -o "$work/pause" "$kube_src/build/pause/linux/pause.c"
fi

"$bins/e2e.test" --list-images 2>/dev/null | sort >"$work/images.txt.new"
# Replaced only when the list changed: its time says when the images are stale.
if cmp -s "$work/images.txt.new" "$work/images.txt"; then
	rm "$work/images.txt.new"
else
	mv "$work/images.txt.new" "$work/images.txt"
fi
# agnhost's exec hooks run curl: this machine's (Debian's), with its libraries.
curl=$(command -v curl) || { say "needs curl (apt-get install curl): the agnhost image carries it"; exit 1; }
images=$work/images.tar
stale=0
for input in "$work/images.txt" "$busybox" "$sh" "$bins/agnhost" "$bins/nnp" "$work/pause" "$curl" "$nc" "$root/hack/nodeimage/e2eimages/main.go"; do
	[[ -e $images && ! $input -nt $images ]] || stale=1
done
if ((stale)); then
	say "building the suite's images into $images"
	(cd "$root/hack/nodeimage" && go run ./e2eimages -list "$work/images.txt" -out "$images" \
		-busybox "$busybox" -sh "$sh" -agnhost "$bins/agnhost" -nnp "$bins/nnp" -pause "$work/pause" \
		-curl "$curl" -nc "$nc" -kubernetes "$kube_src") 2>"$work/images.log" || { cat "$work/images.log" >&2; exit 1; }
	say "$(grep -c '^built:' "$work/images.log") images built, $(grep -c '^not built:' "$work/images.log") references the suite names not built (listed in $work/images.log)"
fi

# --- Selection ------------------------------------------------------------

# regexp_of FILE: one ginkgo regexp matching exactly the specs FILE lists
# (comments, blank lines and " # reason" tails left out). Ginkgo matches it
# against a spec's full text, which begins with a space: no ^ before it.
regexp_of() {
	sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' -e 's/ # .*$//' "$1" |
		sed -e 's/[][\\.*+?(){}|^$]/\\&/g' | paste -sd'|' | sed -e 's/^/(^| )(/' -e 's/$/)$/'
}
case ${CONFORMANCE_FOCUS:-} in
"") focus=$(regexp_of "$here/focus.txt") ;;
all) focus='\[Conformance\]' ;;
*) focus=$CONFORMANCE_FOCUS ;;
esac
case ${CONFORMANCE_SET:-} in
"") skip=$(regexp_of "$here/skip.txt") ;;
ci) skip=$(regexp_of <(cat "$here/skip.txt" "$here/ci-exclude.txt")) ;;
*) say "CONFORMANCE_SET must be empty or ci, not $CONFORMANCE_SET"; exit 1 ;;
esac
[[ $skip != '(^| )()$' ]] || skip='^$' # an empty skip list: no spec's text is empty

# --- The virtual cluster --------------------------------------------------

# The platform lets tenants pin pods to nodes (--allow-node-pinning): many
# specs pin their pods to a node they picked (node affinity matchFields on
# metadata.name), and on a pool of one node that names the node every tenant
# pod runs on anyway. It offers the runtime handler the RuntimeClass specs'
# own classes name (--runtime-handlers), as the node e2e suite's nodes do.
# It allows NodePort Services (--allowed-service-types), as a platform whose
# nodes' ports are its tenants' to use would: the real node's NodePorts
# listen on its bridge address only. LoadBalancer stays refused: the bed has
# no load balancer to give one an address.
say "starting podbridge-dev with a real node (log: $results/podbridge-dev.log)"
rm -f "$results/junit.xml" "$results/summary.txt"
"$root/bin/podbridge-dev" --real-node --tenants-on-real-node --node-extra-images "$images" \
	--allow-node-pinning --allowed-service-types NodePort --runtime-handlers test-handler --state-dir "$state" >"$results/podbridge-dev.log" 2>&1 &
dev_pid=$!
for ((i = 0; i < 600; i++)); do
	[[ -e $state/ready ]] && break
	kill -0 "$dev_pid" 2>/dev/null || { tail -20 "$results/podbridge-dev.log" >&2; say "podbridge-dev stopped before it was ready"; exit 1; }
	sleep 1
done
[[ -e $state/ready ]] || { say "podbridge-dev not ready after 10 minutes"; exit 1; }

# --- The suite ------------------------------------------------------------

# Before any spec the suite waits for Ready, schedulable, untainted nodes:
# 3 minutes, not its default 30, so a virtual cluster without one fails fast.
say "running the suite with $procs processes (output: $results/e2e.log)"
started=$(date +%s)
rc=0
"$bins/ginkgo" --procs="$procs" --timeout=3h --no-color --output-dir="$results" --junit-report=junit.xml \
	--focus="$focus" --skip="$skip" "$bins/e2e.test" -- \
	--kubeconfig="$state/virtual.kubeconfig" --provider=skeleton --report-dir="$results/e2e" \
	--node-schedulable-timeout=3m \
	>"$results/e2e.log" 2>&1 || rc=$?
elapsed=$(($(date +%s) - started))

(cd "$root" && go run ./hack/conformance/summary -junit "$results/junit.xml" -causes "$here/causes.txt" \
	-wall "${elapsed}s" -out "$results/summary.txt") || rc=1
cat "$results/summary.txt"
exit "$rc"
