# SPDX-License-Identifier: LGPL-2.1-or-later

# Containers are units: quotas by unit hold, and a client unit that stops
# takes its ranges with it. Two transient services of svmd-tester stand in
# for two containers with different quotas.
step "svmctl, quotas per unit, and a stopped client unit"
svmctl=$(command -v svmctl)
check_output "svmctl gpus shows the emulated GPUs" 'gfx90a +aldebaran' "$svmctl" gpus

cat >"$config" <<'CONF'
{ "quotas": [
    { "match": { "unit": "svmd-small-*.service" }, "vram": "4M" },
    { "match": { "unit": "svmd-big-*.service" }, "vram": "64M" } ] }
CONF
mark_journal
check "systemctl reload svmd.service with quotas per unit" systemctl reload svmd.service
wait_until "svmd loaded them" 5 journal_has "Configuration reloaded from $config"

vram0=$(vram_used "$gpu")
check_fails "svmd-small-1 may not allocate 8 MiB (quota 4 MiB)" 'quota is 4\.0 MiB' \
        systemd-run --quiet --wait --pipe --collect --uid="$tester" --unit=svmd-small-1 \
        "$svmctl" alloc 8M --gpu "$gpu" --persistent
check_output "svmd-big-1 may (quota 64 MiB)" '^Allocated range [0-9]+' \
        systemd-run --quiet --wait --pipe --collect --uid="$tester" --unit=svmd-big-1 \
        "$svmctl" alloc 8M --gpu "$gpu" --persistent --label big-1
big_id=$(printf '%s\n' "$last" | sed -n 's/^Allocated range \([0-9]*\):.*/\1/p')
check_output "its owner is the unit" '"svmd-big-1\.service"' \
        busctl get-property org.svmd1 "/org/svmd1/range/$big_id" org.svmd1.Range Owner
check_output "svmd charges it to the unit's scope" 'unit:svmd-big-1\.service' "$svmctl" usage unit:svmd-big-1.service
check "root frees it" "$svmctl" free "$big_id"
# The fd store drops its copy of a freed persistent range's buffer asynchronously (FDSTOREREMOVE).
for _ in $(seq 100); do
        [ "$(vram_used "$gpu")" -eq "$vram0" ] && break
        sleep 0.1
done
check "the kernel let go of it" test "$(vram_used "$gpu")" -eq "$vram0"

check "svmd logs at debug level (LogControl1)" systemctl service-log-level svmd.service debug
check "a long-running client unit holds 16 MiB" \
        systemd-run --quiet --uid="$tester" --unit=svmd-big-2 "$svmctl" alloc 16M --gpu "$gpu" --label held --hold
wait_until "svmd lists its range" 10 sh -c "\"$svmctl\" ranges --all | grep -q held"
check "svmd's log names the client by command, pid and unit" \
        sh -c "journalctl -u svmd.service -o cat --no-pager | grep -qE 'svmctl\[[0-9]+\] \([^)]*, svmd-big-2\.service\)'"
check "svmd logs at info level again" systemctl service-log-level svmd.service info
check "the kernel counts it" test "$(vram_used "$gpu")" -eq $((vram0 + 16777216))
check "systemctl stop svmd-big-2.service" systemctl stop svmd-big-2.service
wait_until "svmd freed what the unit held" 10 sh -c "! \"$svmctl\" ranges --all | grep -q held"
check "VRAM in use is back where it was" test "$(vram_used "$gpu")" -eq "$vram0"
check "remove $config" rm "$config"
check "systemctl reload svmd.service" systemctl reload svmd.service
