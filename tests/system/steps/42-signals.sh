# SPDX-License-Identifier: LGPL-2.1-or-later

step "signals about a range reach its owner and root, not another user"
# Listening before anything happens: root and svmd-tester with svmctl monitor (which
# subscribes), and svmd-tester with dbus-monitor, a broad match rule and no Subscribe
# (not root, so the system bus lets it see broadcasts only, no unicast signal of others).
sig=$(mktemp -d)
chmod 0777 "$sig"
timeout 30 svmctl monitor --json --count 2 >"$sig/root" 2>"$sig/root.err" &
root_monitor=$!
as_tester timeout 30 svmctl monitor --json >"$sig/tester" 2>"$sig/tester.err" &
tester_monitor=$!
as_tester timeout 30 dbus-monitor --system "type='signal',sender='org.svmd1'" >"$sig/dbus-monitor" 2>&1 &
dbus_monitor=$!
wait_until "both svmctl monitors are subscribed" 10 \
        sh -c "grep -q Watching '$sig/root.err' && grep -q Watching '$sig/tester.err'"
check_output "root allocates 1 MiB of VRAM, freed when busctl exits" '^tto [0-9]+ ' \
        manager Allocate 'tusa{sv}' 1048576 "$gpu" vram 0
read -r _ sig_id _ <<<"$last"
wait_until "root's monitor heard RangeCreated and RangeFreed of range $sig_id" 10 \
        sh -c "grep -Eq '\"RangeCreated\", *\"id\": *$sig_id[^0-9]' '$sig/root' && grep -Eq '\"RangeFreed\", *\"id\": *$sig_id[^0-9]' '$sig/root'"
wait_until "dbus-monitor as svmd-tester heard the node-wide PropertiesChanged" 10 \
        grep -q 'member=PropertiesChanged' "$sig/dbus-monitor"
kill "$tester_monitor" "$dbus_monitor" 2>/dev/null
wait "$root_monitor" "$tester_monitor" "$dbus_monitor" 2>/dev/null
check "svmd-tester's svmctl monitor heard nothing of root's range" \
        sh -c "! grep -q 'Range' '$sig/tester'"
check "svmd-tester's dbus-monitor heard no RangeCreated, RangeFreed or range object" \
        sh -c "! grep -Eq 'RangeCreated|RangeFreed|/org/svmd1/range/' '$sig/dbus-monitor'"
rm -rf "$sig"
