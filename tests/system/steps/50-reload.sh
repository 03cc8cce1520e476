# SPDX-License-Identifier: LGPL-2.1-or-later

step "systemctl reload svmd, and SIGHUP"
pid=$(svmd_pid)
mark_journal
check "systemctl reload svmd.service" systemctl reload svmd.service
check "the same process still serves" test "$(svmd_pid)" -eq "$pid"
check "svmd logged the reload before systemctl returned" journal_has 'Configuration reloaded'
check "write a configuration with a default quota of 7 ranges" \
        sh -c 'echo "{ \"default-quota\": { \"ranges\": 7 } }" >"$1"' sh "$config"
check "kill -HUP the daemon" kill -HUP "$pid"
wait_until "SIGHUP applied it" 5 sh -c "svmctl usage uid:65534 | grep -q 'limit: 7)'"
check "remove $config" rm "$config"
check "systemctl reload svmd.service" systemctl reload svmd.service

mark_journal
example=$(ls /usr/share/doc/svmd/svmd.conf.example /usr/local/share/doc/svmd/svmd.conf.example 2>/dev/null | head -n 1)
check "install the example configuration as $config" install -m 0644 "$example" "$config"
check "systemctl reload svmd.service" systemctl reload svmd.service
wait_until "svmd accepted the example" 5 journal_has "Configuration reloaded from $config"

mark_journal
check "write a configuration with an unknown key" sh -c 'echo "{ \"no-such-key\": 1 }" >"$1"' sh "$config"
check_fails "systemctl reload svmd.service reports the refusal" 'failed' systemctl reload svmd.service
wait_until "svmd refused it and kept the old one" 5 journal_has 'keeping the old one'
check "svmd.service is still active" is_active svmd.service
check "the same process still serves" test "$(svmd_pid)" -eq "$pid"
check "remove $config" rm "$config"
