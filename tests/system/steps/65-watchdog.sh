# SPDX-License-Identifier: LGPL-2.1-or-later

# A stalled event loop stops the WATCHDOG=1 pings; systemd must notice and
# restart svmd. SIGSTOP stalls the loop from outside, with no test hook in the
# daemon. The shipped WatchdogSec= is 30 s; a drop-in shortens it to keep the
# test quick.
step "the watchdog restarts a stalled svmd"
mkdir -p /run/systemd/system/svmd.service.d
cat >/run/systemd/system/svmd.service.d/50-watchdog-test.conf <<'CONF'
[Service]
WatchdogSec=2s
TimeoutAbortSec=2s
CONF
check "systemctl daemon-reload" systemctl daemon-reload
check "systemctl restart svmd.service" systemctl restart svmd.service
check "svmd.service is active" is_active svmd.service
pid=$(svmd_pid)
restarts=$(systemctl show -P NRestarts svmd.service)
check "stop the daemon's process (SIGSTOP)" kill -STOP "$pid"
wait_until "systemd restarts it after the watchdog timeout" 30 \
        sh -c '[ "$(systemctl is-active svmd.service)" = active ] &&
               [ "$(systemctl show -P NRestarts svmd.service)" -gt '"$restarts"' ]'
check "with a new process" test "$(svmd_pid)" -ne "$pid"
check_output "the journal names the watchdog" 'Watchdog timeout' \
        journalctl -u svmd.service --no-pager -o cat --since "-1min"
rm -f /run/systemd/system/svmd.service.d/50-watchdog-test.conf
check "systemctl daemon-reload" systemctl daemon-reload
check "systemctl restart svmd.service" systemctl restart svmd.service
