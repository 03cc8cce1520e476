# SPDX-License-Identifier: LGPL-2.1-or-later

# The shipped svmd-metrics.timer and .service under real systemd: svmd.prom in
# node_exporter's textfile directory, root's view of every scope, and a plain
# user's view of its own.
step "svmd-metrics.timer writes svmd.prom for node_exporter's textfile collector"
prom=/var/lib/prometheus/node-exporter/svmd.prom
check "the timer and the service are installed" systemctl cat svmd-metrics.timer svmd-metrics.service
check "systemctl start svmd-metrics.service" systemctl start svmd-metrics.service
# (grep on the file: the text is larger than a pipe, which check_output's grep -q would cut.)
check "it wrote svmd.prom: svmd answered" grep -qx 'svmd_up 1' "$prom"
check "in the Prometheus text format" grep -qx '# TYPE svmd_calls_total counter' "$prom"
check "with the GPUs' VRAM" grep -Eq "^svmd_gpu_vram_total_bytes\\{gpu=\"$(printf '0x%x' "$gpu")\"\\} [0-9]+$" "$prom"
check "root's view: every scope, root's too" grep -Eq '^svmd_scope_ranges\{scope="uid:0"\} [0-9]+$' "$prom"
check_output "root-owned and world-readable, as node_exporter needs" '^644 root$' stat -c '%a %U' "$prom"
check "no temporary file left" sh -c "! ls -A /var/lib/prometheus/node-exporter | grep -v '^svmd\\.prom\$'"
check "svmd-tester's own scope is in its view" \
        bash -c "as_tester svmctl metrics --format prometheus | grep -E '^svmd_scope_ranges\\{scope=\"uid:[1-9][0-9]*\"\\}' >/dev/null"
check "root's scope is not" bash -c "! as_tester svmctl metrics | grep -q 'scope=\"uid:0\"'"
check "remove svmd.prom" rm "$prom"
check "systemctl start svmd-metrics.timer" systemctl start svmd-metrics.timer
wait_until "the timer wrote svmd.prom again" 15 test -s "$prom"
check_output "the timer waits for its next run" 'svmd-metrics\.timer' systemctl list-timers --no-pager --all svmd-metrics.timer
check "systemctl stop svmd-metrics.timer" systemctl stop svmd-metrics.timer
