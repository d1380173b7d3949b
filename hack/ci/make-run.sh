#!/usr/bin/env bash
# make-run.sh: .ci/run's check of `make run` as the README has a user type
# it: it starts, says it is ready (the ready file), and stops cleanly on
# Ctrl-C (SIGINT to its process group), removing its state folder and
# leaving no process behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
state=.podbridge/dev
log=$(mktemp)
trap 'rm -f "$log"' EXIT

setsid make run >"$log" 2>&1 &
pid=$!
fail() {
	kill -KILL -- "-$pid" 2>/dev/null || true
	tail -30 "$log" >&2
	echo "make-run: $*" >&2
	exit 1
}
# make builds podbridge-dev first: 5 minutes bound the build and the start.
for ((i = 0; i < 300; i++)); do
	[[ -e $state/ready ]] && break
	kill -0 "$pid" 2>/dev/null || fail "make run stopped before it was ready"
	sleep 1
done
[[ -e $state/ready ]] || fail "make run not ready after 5 minutes"
echo "make-run: ready after ${i}s; sending Ctrl-C"
kill -INT -- "-$pid"
for ((i = 0; i < 60; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 1
done
kill -0 "$pid" 2>/dev/null && fail "make run still running 60s after Ctrl-C"
rc=0
wait "$pid" || rc=$?
# make reports the interrupt it passed on (exit 2 on SIGINT); podbridge-dev
# itself logs how it stopped.
grep -q "Stopping podbridge and both control planes" "$log" || fail "podbridge-dev did not stop on Ctrl-C (make exit $rc)"
grep -q "Stopped with errors" "$log" && fail "podbridge-dev stopped with errors"
[[ ! -e $state ]] || fail "$state left behind"
if pgrep -f "$PWD/$state" >/dev/null; then
	fail "processes of $state left running: $(pgrep -af "$PWD/$state")"
fi
echo "make-run: stopped cleanly"
