# SPDX-License-Identifier: LGPL-2.1-or-later

step "allocate and free through busctl"
vram0=$(vram_used "$gpu")
buffers0=$(emu dump | jq '.buffers | length')
check_output "root allocates 2 MiB of VRAM, persistent" '^tto [0-9]+ [0-9]+ "/org/svmd1/range/[0-9]+"$' \
        manager Allocate 'tusa{sv}' 2097152 "$gpu" vram 1 persistent b true
read -r _ root_id _ <<<"$last"
check_output "its object says Size 2 MiB" '^t 2097152$' \
        busctl get-property org.svmd1 "/org/svmd1/range/$root_id" org.svmd1.Range Size
check "the emulated kernel counts 2 MiB more VRAM in use" test "$(vram_used "$gpu")" -eq $((vram0 + 2097152))

check_output "svmd-tester allocates 1 MiB from a service of its own" '^tto [0-9]+ ' \
        systemd-run --quiet --wait --pipe --collect --uid="$tester" --unit=svmd-systest-client \
        busctl call org.svmd1 /org/svmd1 org.svmd1.Manager Allocate 'tusa{sv}' 1048576 "$gpu" vram 1 persistent b true
read -r _ tester_id _ <<<"$last"
check_output "svmd knows the caller's uid and unit" "^\\(us\\) $(id -u "$tester") \"svmd-systest-client\\.service\"\$" \
        busctl get-property org.svmd1 "/org/svmd1/range/$tester_id" org.svmd1.Range Owner
check_fails "svmd-tester may not free root's range, nor tell it from no range" 'NoSuchRange|does not exist' \
        as_tester busctl call org.svmd1 /org/svmd1 org.svmd1.Manager Free t "$root_id"
check "svmd-tester frees its own range" as_tester busctl call org.svmd1 /org/svmd1 org.svmd1.Manager Free t "$tester_id"
check_fails "its object is gone" 'Unknown object|UnknownObject|NoSuchRange|not' \
        busctl get-property org.svmd1 "/org/svmd1/range/$tester_id" org.svmd1.Range Size
check "root frees its range" manager Free t "$root_id"

check_output "svmd-tester allocates without persistent" '^tto [0-9]+ ' \
        as_tester busctl call org.svmd1 /org/svmd1 org.svmd1.Manager Allocate 'tusa{sv}' 1048576 "$gpu" vram 0
wait_until "svmd frees it when svmd-tester's connection closes" 10 \
        sh -c '[ "$(busctl get-property org.svmd1 /org/svmd1 org.svmd1.Manager Ranges)" = "t 0" ]'
check "VRAM in use is back where it was" test "$(vram_used "$gpu")" -eq "$vram0"
check "no buffer object leaked" test "$(emu dump | jq '.buffers | length')" -eq "$buffers0"
