#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build the libFuzzer targets of tests/fuzz with clang (ASan+UBSan, coverage on
# every library they link) and fuzz each for a bounded time. Prints the execs
# and crashes of each target; fails if any target crashed. A crash leaves its
# input under BUILD/tests/fuzz/work/<target>/crashes/: add it to
# tests/fuzz/corpus/<target>/ once fixed, where the normal build's suite 'fuzz'
# replays it forever.
#
# Usage: tests/fuzz/run-fuzzers.sh [--build DIR] [--time SECONDS] [-- meson test args]
#        tests/fuzz/run-fuzzers.sh --one FUZZER CORPUS WORKDIR   (what each meson test runs)
#
# SVMD_FUZZ_SECONDS (default 30) is the time per target; meson runs two at a time.
set -euo pipefail

if [ "${1:-}" = "--one" ]; then
        exe=$2 corpus=$3 work=$4
        name=$(basename "$exe")
        secs=${SVMD_FUZZ_SECONDS:-30}
        # Crashes of an earlier run were reported then; this run judges only its own.
        rm -rf "$work/crashes"
        mkdir -p "$work/new" "$work/crashes"
        log="$work/fuzz.log"
        status=0
        # New inputs go to work/new (the first corpus dir), never into the source tree.
        "$exe" "$work/new" "$corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
               -max_len=65536 -print_final_stats=1 -artifact_prefix="$work/crashes/" >"$log" 2>&1 || status=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
        crashes=$(find "$work/crashes" -type f | wc -l)
        echo "$name: ${execs:-0} execs in ${secs} s, coverage ${cov:-?} edges, $crashes crashes"
        if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
                tail -n 60 "$log"
                echo "$name: crash inputs in $work/crashes/ (reproduce: $exe FILE)" >&2
                exit 1
        fi
        exit 0
fi

top=$(cd "$(dirname "$0")/../.." && pwd)
build=build-fuzz
while [ $# -gt 0 ]; do
        case "$1" in
        --build) build=$2; shift 2 ;;
        --time) export SVMD_FUZZ_SECONDS=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '3,16p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
        esac
done
cd "$top"

cc=$(command -v clang || command -v clang-14 || true)
if [ -z "$cc" ]; then
        echo "run-fuzzers: clang is missing (Debian: clang-14 libclang-rt-14-dev)" >&2
        exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
        CC=$cc meson setup "$build" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
                -Dc_args=-fsanitize=fuzzer-no-link -Dwerror=false >/dev/null
fi
targets=$(meson introspect "$build" --targets | python3 -c '
import json, sys
print(" ".join(t["name"] for t in json.load(sys.stdin) if t["name"].startswith("fuzz-") and t["type"] == "executable"))')
# Only the fuzzers (and what they link), not the whole tree.
meson compile -C "$build" $targets >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
meson test -C "$build" --no-rebuild --suite fuzz-run --print-errorlogs "$@"
