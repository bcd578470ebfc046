#!/usr/bin/env bash
# selftest-netns.sh: exercises cluster/netns.sh for real (namespaces, bridge, nftables loss,
# kills, restarts, timeouts, interrupts) with small Python stand-ins for the three binaries
# (cluster/testdata/fakeps.py), so it needs neither the Swift build nor Docker. Root only.
#
#   sudo cluster/selftest-netns.sh          # about 30 s; exit 0 when every case passes
#
# After every case it checks that no namespace of the case's prefix is left and that the root
# namespace has exactly the interfaces it had before. It never sends a packet from the root
# namespace.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NETNS=$HERE/netns.sh
WORK=$(mktemp -d /tmp/netns-selftest.XXXXXX)
BIN=$WORK/bin
PY=$(python3 -c 'import sys; print(sys.executable)')
FAILURES=0
CASES=0
SUBNET=${SUBNET:-10.231.7}
export SUBNET

cleanup() {
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ -z ${KEEP:-} ]] || trap - EXIT  # KEEP=1 keeps the logs in $WORK

((EUID == 0)) || { echo "selftest-netns.sh: must run as root" >&2; exit 2; }

mkdir -p "$BIN"
for role in psserver psworker psctl; do
    printf '#!/bin/sh\nFAKEPS_ROLE=%s exec %q %q "$@"\n' "$role" "$PY" "$HERE/testdata/fakeps.py" >"$BIN/$role"
    chmod +x "$BIN/$role"
done

root_links() { ip -o link show | awk -F': ' '{print $2}' | sort; }
LINKS_BEFORE=$(root_links)

fail() {
    echo "FAIL [$CASE]: $*"
    FAILURES=$((FAILURES + 1))
}

# run_case NAME EXPECTED_STATUS VAR=VALUE...: runs netns.sh run with those variables.
run_case() {
    local expected=$2 status=0 prefix
    CASE=$1
    shift 2
    CASES=$((CASES + 1))
    prefix=pst$$c$CASES
    OUTDIR=$WORK/$CASE
    echo "--- $CASE"
    env PREFIX="$prefix" BIN_DIR="$BIN" OUT="$OUTDIR" TIMEOUT=30 READY_TIMEOUT=10 "$@" \
        "$NETNS" run >"$WORK/$CASE.stdout" 2>&1 || status=$?
    if ((status != expected)); then
        fail "exit status $status, expected $expected"
        sed 's/^/    /' "$WORK/$CASE.stdout"
    fi
    check_clean "$prefix"
}

check_clean() {
    if ip netns list | awk '{print $1}' | grep -q "^$1-"; then fail "namespaces of $1 left behind"; fi
    if [[ $(root_links) != "$LINKS_BEFORE" ]]; then fail "root namespace interfaces changed"; fi
    if pgrep -f "$HERE/testdata/fakeps.py" >/dev/null; then fail "fake processes left running"; fi
}

expect_line() { # expect_line FILE LINE
    grep -qxF "$2" "$1" || fail "$(basename "$1") lacks '$2': $(tr '\n' '|' <"$1")"
}

run_case ok 0 WORKERS=3
expect_line "$OUTDIR/exitcodes" "server 0"
for i in 1 2 3; do expect_line "$OUTDIR/exitcodes" "worker$i 0"; done
[[ -s $OUTDIR/server.log && -s $OUTDIR/worker3.log && -s $OUTDIR/events.log ]] || fail "logs missing"
grep -q 'event=worker-done name=worker2' "$OUTDIR/server.log" || fail "server.log lacks worker2"

run_case worker-fails 1 WORKERS=2 EXTRA_WORKER_FLAGS="--fail-name worker2"
expect_line "$OUTDIR/exitcodes" "worker2 3"
grep -q 'event=failed .*name=worker2 rc=3' "$WORK/$CASE.stdout" || fail "no failed event"

run_case kill-restart-worker 0 WORKERS=3 EXTRA_WORKER_FLAGS="--debug-step-delay-ms 150" \
    KILL_WORKER=2 KILL_AFTER=0.5 RESTART_WORKER=1
expect_line "$OUTDIR/exitcodes" "worker2 137 killed"
expect_line "$OUTDIR/exitcodes" "worker2 0"
[[ $(grep -c '^worker2 ' "$OUTDIR/exitcodes") == 2 ]] || fail "worker2 should have ended twice"

run_case kill-restart-server 0 WORKERS=2 EXTRA_WORKER_FLAGS="--debug-step-delay-ms 150" \
    KILL_SERVER_AFTER=0.5 RESTART_SERVER=1
expect_line "$OUTDIR/exitcodes" "server 137 killed"
expect_line "$OUTDIR/exitcodes" "server 0"
grep -q 'event=server-start .*extra=--restore latest' "$WORK/$CASE.stdout" || fail "no restore"

# The killed worker is never restarted: the stand-in server waits for it forever, so the run
# must hit its deadline, record the timeouts and still clean up.
run_case timeout 124 WORKERS=2 TIMEOUT=4 EXTRA_WORKER_FLAGS="--debug-step-delay-ms 100" \
    KILL_WORKER=1 KILL_AFTER=0.3
expect_line "$OUTDIR/exitcodes" "worker1 137 killed"
expect_line "$OUTDIR/exitcodes" "server 124 timeout"

run_case two-servers 0 WORKERS=2 SERVERS=3 SHAPE_RATE=500mbit EXTRA_WORKER_FLAGS="--debug-step-delay-ms 100"
for name in server server2 server3 worker1 worker2; do expect_line "$OUTDIR/exitcodes" "$name 0"; done
grep -q 'event=server-start .*host=s3 name=server3 .*address=10.231.[0-9]*.233:7000' "$WORK/$CASE.stdout" ||
    fail "no server3 start on SUBNET.233"
grep -q 'event=server-joined address=10.231.[0-9]*.232:7000' "$OUTDIR/server.log" || fail "server2 did not join"
grep -q 'event=host .*host=s2 .*rate=500mbit' "$WORK/$CASE.stdout" || fail "s2 not shaped"

run_case kill-joined-server 0 WORKERS=2 SERVERS=2 EXTRA_WORKER_FLAGS="--debug-step-delay-ms 150" \
    KILL_JOINED_SERVER_AFTER=0.3
expect_line "$OUTDIR/exitcodes" "server2 137 killed"
expect_line "$OUTDIR/exitcodes" "server 0"

run_case kill-restart-joined 0 WORKERS=2 SERVERS=2 EXTRA_WORKER_FLAGS="--debug-step-delay-ms 150" \
    KILL_JOINED_SERVER_AFTER=0.3 RESTART_JOINED_SERVER=1
expect_line "$OUTDIR/exitcodes" "server2 137 killed"
expect_line "$OUTDIR/exitcodes" "server2 0"
[[ $(grep -c 'event=server-start .*name=server2' "$WORK/$CASE.stdout") == 2 ]] || fail "server2 should start twice"

run_case packet-loss 0 WORKERS=2 LOSS_WORKER=all LOSS_PERCENT=30
grep -q 'event=loss .*host=w2 percent=30' "$WORK/$CASE.stdout" || fail "no loss event"

# Worker 1's host is cut off (nftables drops all its traffic) while it tries to report DONE, then
# healed: its retries get through once the partition ends, and the run succeeds.
run_case partition-heal 0 WORKERS=2 EXTRA_WORKER_FLAGS="--debug-step-delay-ms 150" \
    PARTITION_WORKER=1 PARTITION_AFTER=0.3 PARTITION_FOR=2
expect_line "$OUTDIR/exitcodes" "worker1 0"
expect_line "$OUTDIR/exitcodes" "server 0"
grep -q 'event=partition-start .*host=w1 for=2s' "$WORK/$CASE.stdout" || fail "no partition-start event"
grep -qE 'event=partition-end .*host=w1 dropped=[1-9]' "$WORK/$CASE.stdout" || fail "no drops at partition-end"
run_case partition-bad 2 WORKERS=2 PARTITION_WORKER=3 PARTITION_AFTER=1 PARTITION_FOR=1

run_case bad-subnet 2 SUBNET=192.168.1
run_case no-bin-dir 2 BIN_DIR=/nonexistent

# Interrupt: SIGTERM in the middle of a run removes everything and exits 143.
CASE=interrupt
CASES=$((CASES + 1))
echo "--- $CASE"
prefix=pst$$c$CASES
status=0
env PREFIX="$prefix" BIN_DIR="$BIN" OUT="$WORK/$CASE" TIMEOUT=30 WORKERS=2 \
    EXTRA_WORKER_FLAGS="--debug-step-delay-ms 1000" "$NETNS" run >"$WORK/$CASE.stdout" 2>&1 &
pid=$!
for _ in $(seq 50); do
    grep -q 'event=worker-start .*host=w2' "$WORK/$CASE.stdout" 2>/dev/null && break
    sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || status=$?
((status == 143)) || { fail "exit status $status, expected 143"; cat "$WORK/$CASE.stdout"; }
check_clean "$prefix"

# up / exec / down by hand.
CASE=up-exec-down
CASES=$((CASES + 1))
echo "--- $CASE"
prefix=pst$$c$CASES
PREFIX=$prefix WORKERS=2 "$NETNS" up >/dev/null
PREFIX=$prefix "$NETNS" status >/dev/null || fail "status after up"
if command -v ping >/dev/null; then
    PREFIX=$prefix TIMEOUT=5 "$NETNS" exec w2 ping -c1 -W1 "$SUBNET.1" >/dev/null ||
        fail "w2 cannot ping the server host"
fi
PREFIX=$prefix "$NETNS" down >/dev/null
if PREFIX=$prefix "$NETNS" status >/dev/null; then fail "status after down"; fi
check_clean "$prefix"

echo "selftest-netns: $CASES cases, $FAILURES failures"
((FAILURES == 0))
