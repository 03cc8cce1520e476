# SPDX-License-Identifier: LGPL-2.1-or-later

step "Restart=on-failure, with a persistent range kept across it"
check_output "root allocates 2 MiB of VRAM, persistent" '^tto [0-9]+ [0-9]+ ' \
        manager Allocate 'tusa{sv}' 2097152 "$gpu" vram 1 persistent b true
read -r _ kept_id kept_va _ <<<"$last"
vram_kept=$(vram_used "$gpu")
pid=$(svmd_pid)
restarts=$(systemctl show -P NRestarts svmd.service)
check "kill -KILL the daemon" kill -KILL "$pid"
wait_until "systemd starts it again" 30 \
        sh -c '[ "$(systemctl is-active svmd.service)" = active ] &&
               [ "$(systemctl show -P NRestarts svmd.service)" -gt '"$restarts"' ]'
check "with a new process" test "$(svmd_pid)" -ne "$pid"
check_output "serving org.svmd1 again" '^org\.svmd1\.Manager +interface' busctl introspect org.svmd1 /org/svmd1
check_output "the persistent range is back at its VA" "^t $kept_va\$" \
        busctl get-property org.svmd1 "/org/svmd1/range/$kept_id" org.svmd1.Range Va
check "its VRAM is still in use, once" test "$(vram_used "$gpu")" -eq "$vram_kept"

step "systemctl restart svmd"
pid=$(svmd_pid)
check "systemctl restart svmd.service" systemctl restart svmd.service
check "svmd.service is active" is_active svmd.service
check "with a new process" test "$(svmd_pid)" -ne "$pid"
check_output "the persistent range is back at its VA" "^t $kept_va\$" \
        busctl get-property org.svmd1 "/org/svmd1/range/$kept_id" org.svmd1.Range Va
check "root frees it" manager Free t "$kept_id"
