# SPDX-License-Identifier: LGPL-2.1-or-later

step "systemctl stop svmd"
check_output "root allocates 2 MiB of VRAM, persistent" '^tto [0-9]+ ' \
        manager Allocate 'tusa{sv}' 2097152 "$gpu" vram 1 persistent b true
mark_journal
check "systemctl stop svmd.service" systemctl stop svmd.service
check_output "svmd.service is inactive, not failed" '^inactive$' systemctl show -P ActiveState svmd.service
check_output "the daemon exited with status 0" '^0$' systemctl show -P ExecMainStatus svmd.service
check_output "Result=success" '^success$' systemctl show -P Result svmd.service
wait_until "svmd logged a clean exit" 5 journal_has 'Freed [0-9]+ ranges at exit'
check "/run/svmd went with the service" test ! -e /run/svmd
check "the emulated kernel has no KFD process left" test "$(emu dump | jq '.processes | length')" -eq 0
check "nor a buffer: stopping (unlike restarting) releases persistent ranges" \
        test "$(emu dump | jq '.buffers | length')" -eq 0
check "VRAM in use is back where it was" test "$(vram_used "$gpu")" -eq "$vram0"
