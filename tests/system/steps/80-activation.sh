# SPDX-License-Identifier: LGPL-2.1-or-later

step "bus activation"
check "a call from svmd-tester starts svmd.service through the bus" \
        as_tester busctl call org.svmd1 /org/svmd1 org.freedesktop.DBus.Peer Ping
check "svmd.service is active" is_active svmd.service
check "systemctl stop svmd.service" systemctl stop svmd.service
check_output "the daemon exited with status 0" '^0$' systemctl show -P ExecMainStatus svmd.service
