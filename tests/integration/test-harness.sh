#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What a person meets first: svmd-harness's --help names every option and every variable CMD
# gets; "svmd-harness restart" is systemctl restart (new pid in DIR/svmd.pid, persistent ranges
# back from the fd store); with --daemon-log the log is in a file, and a failed kernel call is one
# warning line that names the range, the GPU and the errno, and so is a rollback that fails too;
# svmd starts without a line about the render node's VRAM disagreeing with the KFD topology.
#
# Usage: test-harness.sh HARNESS HARNESS_SOURCE SVMCTL KFDEMU_CTL TOPOLOGIES_DIR
set -u

harness=$1
source=$2
svmctl=$3
ctl=$4
topologies=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() {
        echo "FAIL: $*" >&2
        fails=$((fails + 1))
}

# --- --help: every option of the source's option table, every variable CMD finds ---
"$harness" --help >"$tmp/help" || fail "--help exited $?"
for opt in $(sed -n '/static const struct option options/,/{}/p' "$source" | grep -o '{ "[a-z-]*"' | cut -d'"' -f2); do
        grep -q -- "--$opt\b" "$tmp/help" || fail "--help does not list --$opt"
done
env -u SVMD_LOG -u SVMD_PID -u SVMD_PID_FILE -u SVMD_BUS_ADDRESS -u SVMD_RUNTIME_DIR -u KFDEMU_DIR \
        -u KFDEMU_LIBRARY -u SVMD_TEST_DIR -u SVMD_TEST_CONFIG \
        "$harness" --topology "$topologies/gfx1100-1.json" --daemon-log "$tmp/env.log" -- env >"$tmp/env" ||
        fail "harness -- env exited $?"
n=0
for var in $(grep -oE '^(SVMD|KFDEMU)_[A-Z_]*' "$tmp/env"); do
        n=$((n + 1))
        grep -q "^  $var " "$tmp/help" || fail "--help does not describe \$$var, which CMD gets"
done
[ "$n" -ge 9 ] || fail "CMD got only $n SVMD_/KFDEMU_ variables"
for f in svmd.state svmd.pid harness.pid svmd.log; do
        grep -q "$f" "$tmp/help" || fail "--help does not describe DIR/$f"
done
grep -q 'LD_PRELOAD=\$KFDEMU_LIBRARY' "$tmp/help" || fail "--help does not say LD_PRELOAD=\$KFDEMU_LIBRARY"

# --- restart: like systemctl restart, with the fd store; SVMD_PID_FILE follows ---
cat >"$tmp/restart.sh" <<'INNER'
set -eu
export DBUS_SESSION_BUS_ADDRESS=$SVMD_BUS_ADDRESS
[ "$(cat "$SVMD_PID_FILE")" = "$SVMD_PID" ] || { echo "svmd.pid is not SVMD_PID at start" >&2; exit 1; }
gpu=$("$SVMCTL" --json gpus | jq -r '.gpus[0].gpu_id')
"$SVMCTL" alloc 64M --gpu "$gpu" --label kept --persistent >/dev/null
new=$("$HARNESS" restart)
[ "$new" != "$SVMD_PID" ] || { echo "restart kept pid $new" >&2; exit 1; }
[ "$(cat "$SVMD_PID_FILE")" = "$new" ] || { echo "svmd.pid is not the new pid $new" >&2; exit 1; }
kill -0 "$new" || { echo "the new svmd $new is not running" >&2; exit 1; }
if kill -0 "$SVMD_PID" 2>/dev/null; then echo "the old svmd $SVMD_PID still runs" >&2; exit 1; fi
read -r pid ready starts <"$KFDEMU_DIR/svmd.state"
[ "$pid $ready $starts" = "$new 1 2" ] || { echo "svmd.state says '$pid $ready $starts'" >&2; exit 1; }
"$SVMCTL" --json ranges --all --label kept | jq -e '.ranges | length == 1' >/dev/null ||
        { echo "the persistent range did not come back" >&2; exit 1; }
# A second restart works the same.
new2=$("$HARNESS" restart)
[ "$new2" != "$new" ] && [ "$(cat "$SVMD_PID_FILE")" = "$new2" ] || { echo "second restart" >&2; exit 1; }
INNER
HARNESS=$harness SVMCTL=$svmctl "$harness" --topology "$topologies/mi250-4.json" --daemon-log "$tmp/restart.log" \
        -- bash "$tmp/restart.sh" || fail "restart in the harness (log: $(tail -5 "$tmp/restart.log"))"
grep -q "Received Terminated" "$tmp/restart.log" || fail "restart did not stop svmd with SIGTERM"
[ "$("$harness" restart --dir "$tmp/none" 2>&1)" != "" ] || fail "restart without a harness says nothing"

# --- a failed kernel call: one warning line with range, GPU and errno; no VRAM disagreement ---
cat >"$tmp/kfail.sh" <<'INNER'
set -u
export DBUS_SESSION_BUS_ADDRESS=$SVMD_BUS_ADDRESS
gpus=$("$SVMCTL" --json gpus | jq -r '[.gpus[].gpu_id | tostring] | join(",")')
gpu=$("$SVMCTL" --json gpus | jq -r '.gpus[1].gpu_id')
id=$("$SVMCTL" --json alloc 128M --gpu "$gpu" --persistent | jq -r .id)
env -u LD_PRELOAD "$CTL" --dir "$KFDEMU_DIR" fault add "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=ENOMEM after=2" || exit 1
if "$SVMCTL" map "$id" "$gpus" 2>/dev/null; then echo "the map succeeded" >&2; exit 1; fi
printf '%d %x\n' "$id" "$("$SVMCTL" --json gpus | jq -r '.gpus[2].gpu_id')" >"$SVMD_TEST_DIR/expect"
cp "$SVMD_TEST_DIR/expect" "$OUT"
INNER
for level in debug warning err; do
        log="$tmp/kfail-$level.log"
        SVMD_HARNESS_LOG_LEVEL=$level CTL=$ctl SVMCTL=$svmctl OUT="$tmp/expect" \
                "$harness" --topology "$topologies/mi300x-8.json" --daemon-log "$log" -- bash "$tmp/kfail.sh" ||
                fail "kernel failure scenario at $level"
        read -r id gpu <"$tmp/expect"
        n=$(grep -c "Kernel call failed" "$log")
        case $level in
        err) [ "$n" = 0 ] || fail "the kernel failure is logged above warning: $(grep 'Kernel call failed' "$log")" ;;
        *)
                [ "$n" = 1 ] || fail "$n lines about the kernel failure at $level, expected 1"
                grep "Kernel call failed" "$log" | grep -q "range $id, GPU 0x$gpu, ENOMEM" ||
                        fail "the kernel failure line does not name range $id, GPU 0x$gpu and ENOMEM: $(grep 'Kernel call failed' "$log")"
                ;;
        esac
        if grep -q "VRAM of GPU" "$log"; then
                fail "svmd finds the render node's VRAM and the KFD topology in disagreement: $(grep -m1 'VRAM of GPU' "$log")"
        fi
        grep -q "^dbus-daemon\|svmd: .*ready" "$log" || true
done
# --- a rollback that fails too: one more warning, naming the range, the GPU and the errno ---
cat >"$tmp/rbfail.sh" <<'INNER'
set -u
export DBUS_SESSION_BUS_ADDRESS=$SVMD_BUS_ADDRESS
gpus=$("$SVMCTL" --json gpus | jq -r '[.gpus[].gpu_id | tostring] | join(",")')
id=$("$SVMCTL" --json alloc 64M --gpu "$("$SVMCTL" --json gpus | jq -r '.gpus[0].gpu_id')" --persistent | jq -r .id)
env -u LD_PRELOAD "$CTL" --dir "$KFDEMU_DIR" fault add "ioctl=MAP_MEMORY_TO_GPU errno=ENOMEM after=2" || exit 1
env -u LD_PRELOAD "$CTL" --dir "$KFDEMU_DIR" fault add "ioctl=UNMAP_MEMORY_FROM_GPU errno=EIO" || exit 1
if "$SVMCTL" map "$id" "$gpus" 2>/dev/null; then echo "the map succeeded" >&2; exit 1; fi
printf '%d %x\n' "$id" "$("$SVMCTL" --json gpus | jq -r '.gpus[0].gpu_id')" >"$OUT"
INNER
CTL=$ctl SVMCTL=$svmctl OUT="$tmp/expect" SVMD_HARNESS_LOG_LEVEL=warning \
        "$harness" --topology "$topologies/mi250-4.json" --daemon-log "$tmp/rbfail.log" -- bash "$tmp/rbfail.sh" ||
        fail "rollback failure scenario"
read -r id gpu <"$tmp/expect"
n=$(grep -c "Rolling back a change of range $id failed (GPU 0x$gpu, EIO)" "$tmp/rbfail.log")
[ "$n" = 1 ] || fail "$n warnings about the failed rollback of range $id on GPU 0x$gpu (EIO), expected 1: $(cat "$tmp/rbfail.log")"

grep -q "svmd .* ready" "$tmp/kfail-debug.log" || fail "svmd's log is not in the --daemon-log file"
grep -q "direct:0x\|Client direct:" "$tmp/kfail-debug.log" && fail "a client is named by a pointer: $(grep -m1 'direct:0x\|Client direct:' "$tmp/kfail-debug.log")"
grep -qE "Client svmctl\[[0-9]+\] \((direct|:1\.[0-9]+)\)" "$tmp/kfail-debug.log" || fail "clients are not named comm[pid]"

echo "$fails failure(s)"
[ "$fails" = 0 ]
