#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# svmd's metrics read by the real Prometheus tools, under svmd-harness:
#
#   test-metrics-prometheus.sh SVMCTL SVMD-METRICS-SERVICE-IN
#
# The command of the shipped svmd-metrics.service (its ExecStart=, with this
# build's svmctl and a scratch directory) writes svmd.prom while clients
# allocate, free and fail; promtool check metrics accepts every file it
# wrote, and Python's OpenMetrics parser the OpenMetrics text. A real
# prometheus-node-exporter with --collector.textfile.directory on that
# directory, scraped with curl on a free loopback port, serves the svmd_
# series with the values svmctl reads from svmd (GetUsage, the GPUs' VRAM),
# and svmd_up 0 once svmd cannot be reached.
#
# Exit status 0 on success, 1 on failure, 77 (skipped) when promtool,
# prometheus-node-exporter, curl or python3-prometheus-client is missing.
set -euo pipefail

svmctl=${1:?usage: test-metrics-prometheus.sh SVMCTL UNIT}
unit=${2:?usage: test-metrics-prometheus.sh SVMCTL UNIT}
python=/usr/bin/python3

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

for t in promtool prometheus-node-exporter curl "$python"; do
        command -v "$t" >/dev/null || { echo "SKIP: $t is not installed (tools/setup.sh installs it)"; exit 77; }
done
"$python" -c 'import prometheus_client' 2>/dev/null ||
        { echo "SKIP: python3-prometheus-client is not installed (tools/setup.sh installs it)"; exit 77; }

dir=${SVMD_TEST_DIR:?run under svmd-harness}/textfile
mkdir -p "$dir"
exporter=
load=
cleanup() {
        [ -z "$exporter" ] || kill "$exporter" 2>/dev/null || true
        [ -z "$load" ] || kill "$load" 2>/dev/null || true
        wait 2>/dev/null || true
}
trap cleanup EXIT

# The timer's command exactly as shipped, with this build's svmctl and this test's directory.
cmd=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$cmd" ] || fail "no ExecStart= in $unit"
cmd=${cmd//@bindir@\/svmctl/$svmctl}
cmd=${cmd//\/var\/lib\/prometheus\/node-exporter/$dir}
echo "timer's command: $cmd"
[[ "$cmd" == "$svmctl "*"$dir/svmd.prom" ]] || fail "unexpected ExecStart= in $unit: $cmd"

gpu=$("$svmctl" --json gpus | "$python" -c 'import json, sys; print(json.load(sys.stdin)["gpus"][0]["gpu_id"])')
gpu=$(printf '0x%x' "$gpu")

# ---- syntax: plain, then under load with errors having happened ----
# shellcheck disable=SC2086
$cmd
promtool check metrics <"$dir/svmd.prom" || fail "promtool rejects the first svmd.prom"

(
        for i in $(seq 40); do
                "$svmctl" alloc 64K --domain gtt >/dev/null
                "$svmctl" free 999999 >/dev/null 2>&1 || true
                "$svmctl" alloc 1M --gpu 0xdead >/dev/null 2>&1 || true
                "$svmctl" usage uid:4242 >/dev/null 2>&1 || true
        done
) &
load=$!
ids=()
for i in 1 2 3; do
        ids+=("$("$svmctl" --json alloc 4M --gpu "$gpu" --persistent | "$python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')")
done
for i in $(seq 10); do
        # shellcheck disable=SC2086
        $cmd
        promtool check metrics <"$dir/svmd.prom" || fail "promtool rejects svmd.prom under load (run $i)"
        "$svmctl" metrics >"$dir/openmetrics.txt"
        "$python" - "$dir/openmetrics.txt" <<'PY' || fail "the OpenMetrics text does not parse"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
assert any(f.name == "svmd_calls" and f.type == "counter" for f in families)
PY
done
wait "$load"
load=
"$svmctl" free "${ids[0]}" >/dev/null
errors=$(grep -c '^svmd_call_errors_total{method="Free",error="org.svmd1.Error.NoSuchRange"}' "$dir/svmd.prom" || true)
[ "$errors" -eq 1 ] || fail "no error counted for Free of a range that does not exist"
echo "ok: promtool and the OpenMetrics parser accept 11 files written under load"

# ---- node_exporter's textfile collector serves the values ----
# shellcheck disable=SC2086
$cmd
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --collector.disable-defaults \
        --collector.textfile --collector.textfile.directory="$dir" >"$dir/exporter.log" 2>&1 &
exporter=$!
scrape() {
        curl -sf "http://127.0.0.1:$port/metrics"
}
for _ in $(seq 100); do
        scrape >/dev/null 2>&1 && break
        sleep 0.1
done
scrape >"$dir/scrape.txt" || { cat "$dir/exporter.log" >&2; fail "node_exporter does not answer on port $port"; }

# value SERIES: the value of one series in the scrape (node_exporter writes big numbers as 1.2e+07).
value() {
        awk -v s="$1" '$1 == s { printf "%.0f\n", $2; found = 1 } END { exit !found }' "$dir/scrape.txt" ||
                fail "no series $1 in the scrape"
}
grep -q '^node_textfile_scrape_error 0$' "$dir/scrape.txt" || fail "node_exporter could not read svmd.prom"
[ "$(value svmd_up)" -eq 1 ] || fail "svmd_up is not 1"
usage=$("$svmctl" --json usage)
vram=$("$python" -c 'import json, sys; print(json.loads(sys.argv[1])["vram"])' "$usage")
ranges=$("$python" -c 'import json, sys; print(json.loads(sys.argv[1])["ranges"])' "$usage")
[ "$(value 'svmd_scope_vram_bytes{scope="uid:0"}')" -eq "$vram" ] || fail "the scope's VRAM is not GetUsage's $vram"
[ "$vram" -eq $((2 * 4 * 1024 * 1024)) ] || fail "GetUsage says $vram bytes of VRAM, not the 8 MiB left"
[ "$(value 'svmd_scope_ranges{scope="uid:0"}')" -eq "$ranges" ] || fail "the scope's ranges are not GetUsage's $ranges"
used=$("$svmctl" --json gpus | "$python" -c 'import json, sys
for g in json.load(sys.stdin)["gpus"]:
    if g["gpu_id"] == int(sys.argv[1], 16): print(g["vram_used"])' "$gpu")
[ "$(value "svmd_gpu_vram_used_bytes{gpu=\"$gpu\"}")" -eq "$used" ] || fail "GPU $gpu's VRAM used is not svmctl gpus' $used"
# 40 GTT, 40 on a GPU that does not exist, 3 persistent. node_exporter sorts the labels.
[ "$(value 'svmd_calls_total{method="Allocate"}')" -eq 83 ] || fail "not the 83 Allocate calls made"
[ "$(value 'svmd_call_errors_total{error="org.svmd1.Error.NoSuchGpu",method="Allocate"}')" -eq 40 ] ||
        fail "not 40 NoSuchGpu errors of Allocate"
echo "ok: node_exporter serves svmd_scope_vram_bytes=$vram, svmd_gpu_vram_used_bytes=$used, as svmd says"

# ---- svmd cannot be reached: svmd_up 0, still a valid file ----
# shellcheck disable=SC2086
if SVMD_BUS_ADDRESS=unix:path=/nonexistent $cmd 2>/dev/null; then
        fail "the timer's command succeeded without svmd"
fi
promtool check metrics <"$dir/svmd.prom" || fail "promtool rejects the file written without svmd"
scrape >"$dir/scrape.txt"
[ "$(value svmd_up)" -eq 0 ] || fail "svmd_up is not 0 without svmd"
grep -q '^node_textfile_scrape_error 0$' "$dir/scrape.txt" || fail "node_exporter could not read the file"
ls -A "$dir" | grep -v -e '^svmd\.prom$' -e '^openmetrics\.txt$' -e '^scrape\.txt$' -e '^exporter\.log$' &&
        fail "temporary files left in $dir"
for id in "${ids[@]:1}"; do
        "$svmctl" free "$id" >/dev/null
done
echo "ok: without svmd the file says svmd_up 0"
