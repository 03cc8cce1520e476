#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# kfdemu-ctl's command line: exit codes (0 ok, 1 failure, 2 usage) and a
# directory prepared with 'init' that dump/fault/profile then work on.
set -u

ctl="$1"
topology="$2"
run="$3"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0

expect() {
        want="$1"; shift
        "$@" >"$dir/out" 2>"$dir/err"
        got=$?
        if [ "$got" != "$want" ]; then
                echo "FAIL: '$*' exited $got, expected $want" >&2
                cat "$dir/err" >&2
                fails=$((fails + 1))
        else
                echo "ok: '$*' → $got"
        fi
}

unset KFDEMU_DIR
expect 0 "$ctl" --help
expect 2 "$ctl"
expect 2 "$ctl" --dir "$dir/node" frobnicate
expect 2 "$ctl" dump                                    # no --dir, no KFDEMU_DIR
expect 2 "$ctl" --no-such-option
expect 1 "$ctl" --dir "$dir/absent" dump                # not initialised
expect 2 "$ctl" --dir "$dir/node" init                  # --topology missing
expect 1 "$ctl" --dir "$dir/node" init --topology "$dir/no-such.json"
expect 2 "$ctl" --dir "$dir/node" init --topology "$topology" --kfd-version 2
expect 0 "$ctl" --dir "$dir/node" init --topology "$topology" --kfd-version 1.19

for f in "$dir/node/state" "$dir/node/sys/devices/virtual/kfd/kfd/topology/generation_id"; do
        if [ ! -e "$f" ]; then
                echo "FAIL: init did not create $f" >&2
                fails=$((fails + 1))
        fi
done

expect 0 "$ctl" --dir "$dir/node" dump
if ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dir/out" 2>/dev/null; then
        echo "FAIL: dump is not JSON" >&2
        fails=$((fails + 1))
fi

KFDEMU_DIR="$dir/node"
export KFDEMU_DIR
expect 0 "$ctl" dump
expect 2 "$ctl" fault add 'ioctl=NO_SUCH_IOCTL errno=EIO'
expect 2 "$ctl" fault add 'ioctl=MAP_MEMORY_TO_GPU'      # errno= missing
expect 2 "$ctl" fault add
expect 0 "$ctl" fault add 'ioctl=MAP_MEMORY_TO_GPU nth=2 errno=EINTR after=1'
expect 2 "$ctl" fault add 'ioctl=ALLOC_MEMORY_OF_GPU op=set errno=EIO'   # op= is for SVM only
expect 2 "$ctl" fault add 'ioctl=SVM op=migrate errno=EIO'
expect 0 "$ctl" fault add 'ioctl=SVM op=set errno=EIO after=1'
expect 0 "$ctl" fault list
if ! grep -q 'MAP_MEMORY_TO_GPU' "$dir/out"; then
        echo "FAIL: fault list does not show the armed fault" >&2
        cat "$dir/out" >&2
        fails=$((fails + 1))
fi
expect 0 "$ctl" fault clear
expect 0 "$ctl" fault list
if grep -q 'MAP_MEMORY_TO_GPU' "$dir/out"; then
        echo "FAIL: fault clear left the fault armed" >&2
        fails=$((fails + 1))
fi
expect 2 "$ctl" fault frob
expect 0 "$ctl" profile realistic
expect 0 "$ctl" profile none
expect 2 "$ctl" profile fast
expect 2 "$ctl" profile

# gpu reset / vmfault: ids from the dump; a reset without listeners still counts.
gpu=$("$ctl" dump | python3 -c 'import json,sys; print(hex(json.load(sys.stdin)["gpus"][0]["gpu_id"]))')
expect 2 "$ctl" gpu
expect 2 "$ctl" gpu reset
expect 2 "$ctl" gpu reset nogpu
expect 2 "$ctl" gpu frob "$gpu"
expect 2 "$ctl" gpu reset "$gpu" --begin --end
expect 2 "$ctl" gpu reset "$gpu" --sideways
expect 2 "$ctl" gpu reset "$gpu" --end --drop-begin-line
expect 1 "$ctl" gpu reset 0x1                           # no such GPU
expect 0 "$ctl" gpu reset "$gpu"
expect 0 "$ctl" gpu reset "$gpu" --begin
expect 1 "$ctl" gpu reset "$gpu" --begin                # resetting already
expect 0 "$ctl" gpu reset "$gpu" --end
expect 1 "$ctl" gpu reset "$gpu" --end                  # not resetting
expect 0 "$ctl" dump
if ! python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["smi"]["gpus"][0]; sys.exit(d["reset_seq"] != 2 or d["resetting"])' "$dir/out"; then
        echo "FAIL: the dump does not show two finished resets" >&2
        fails=$((fails + 1))
fi
expect 2 "$ctl" gpu vmfault "$gpu"
expect 2 "$ctl" gpu vmfault "$gpu" nowhere
expect 2 "$ctl" gpu vmfault "$gpu" 0x1000 0
expect 1 "$ctl" gpu vmfault "$gpu" 0x1000               # no process maps it
expect 0 "$ctl" gpu vmfault "$gpu" 0x1000 1

# kfdemu-run --dir on an existing node leaves it alone and says how to use it instead.
cp "$dir/node/state" "$dir/state.before"
unset KFDEMU_DIR
expect 1 "$run" --topology "$topology" --dir "$dir/node" -- true
if ! grep -q "already holds an emulated node" "$dir/err" || ! grep -q "KFDEMU_DIR=$dir/node LD_PRELOAD=" "$dir/err"; then
        echo "FAIL: kfdemu-run --dir on an existing node does not say what to do instead" >&2
        cat "$dir/err" >&2
        fails=$((fails + 1))
fi
if ! cmp -s "$dir/node/state" "$dir/state.before"; then
        echo "FAIL: kfdemu-run --dir changed the existing node" >&2
        fails=$((fails + 1))
fi

echo "$fails failure(s)"
[ "$fails" = 0 ]
