# SPDX-License-Identifier: LGPL-2.1-or-later

step "log level at runtime (org.freedesktop.LogControl1)"
check "svmd serves LogControl1" sh -c "busctl introspect org.svmd1 /org/freedesktop/LogControl1 | grep -q '^org\.freedesktop\.LogControl1 '"
check "systemctl service-log-level svmd.service debug" systemctl service-log-level svmd.service debug
check_output "svmd reports it" '^debug$' systemctl service-log-level svmd.service
check "systemctl service-log-level svmd.service info" systemctl service-log-level svmd.service info
