# SPDX-License-Identifier: LGPL-2.1-or-later

step "systemctl start svmd"
check "systemctl start svmd.service" systemctl start svmd.service
check "svmd.service is active" is_active svmd.service
pid=$(svmd_pid)
check_output "it runs as the user svmd" "^Uid:[[:space:]]+$(id -u svmd)[[:space:]]" cat "/proc/$pid/status"
check_output "in the render group" "^Groups:.*\\b$(getent group render | cut -d: -f3)\\b" cat "/proc/$pid/status"
check_output "with no capabilities" '^CapEff:[[:space:]]+0+$' cat "/proc/$pid/status"
check_output "with no_new_privs" '^NoNewPrivs:[[:space:]]+1$' cat "/proc/$pid/status"
check_output "under a seccomp filter" '^Seccomp:[[:space:]]+2$' cat "/proc/$pid/status"
check_output "STATUS= counts the 4 GPUs" '^4 GPUs' systemctl show -P StatusText svmd.service
check_output "/run/svmd is its runtime directory" '^directory 755 svmd$' stat -c '%F %a %U' /run/svmd
check_output "everyone may connect to /run/svmd/io.socket" '^socket 666$' stat -c '%F %a' /run/svmd/io.socket
check_output "the fd store holds up to 32768 fds" '^32768$' systemctl show -P FileDescriptorStoreMax svmd.service
check_output "the watchdog is on" '^30s$' systemctl show -P WatchdogUSec svmd.service
check_output "systemd-analyze security: exposure at most 1.5" 'Overall exposure level' \
        systemd-analyze security --no-pager --threshold=15 svmd.service
note "$(printf '%s\n' "$last" | grep 'Overall exposure level' | sed 's/^→ //')"
