# SPDX-License-Identifier: LGPL-2.1-or-later

step "log level at runtime (org.freedesktop.LogControl1)"
if busctl introspect org.svmd1 /org/freedesktop/LogControl1 2>/dev/null | grep -q '^org\.freedesktop\.LogControl1 '; then
        check "systemctl service-log-level svmd.service debug" systemctl service-log-level svmd.service debug
        check_output "svmd reports it" '^debug$' systemctl service-log-level svmd.service
        check "systemctl service-log-level svmd.service info" systemctl service-log-level svmd.service info
else
        note "pending: svmd does not serve org.freedesktop.LogControl1 at /org/freedesktop/LogControl1 yet"
fi
