# SPDX-License-Identifier: LGPL-2.1-or-later

step "org.svmd1 on the system bus, for root and for an unprivileged user"
check_output "root introspects /org/svmd1" '^org\.svmd1\.Manager +interface' \
        busctl introspect org.svmd1 /org/svmd1
check_output "with the arguments of Allocate" '^\.Allocate +method +tusa\{sv\} +tto' \
        busctl introspect org.svmd1 /org/svmd1 org.svmd1.Manager
check_output "svmd-tester introspects /org/svmd1" '^org\.svmd1\.Manager +interface' \
        as_tester busctl introspect org.svmd1 /org/svmd1
check_output "svmd-tester reads the Version property" '^s "[0-9]' \
        as_tester busctl get-property org.svmd1 /org/svmd1 org.svmd1.Manager Version
check_output "svmd-tester lists the 4 GPUs" '^a\([a-z]+\) 4 ' as_tester busctl call org.svmd1 /org/svmd1 \
        org.svmd1.Manager ListGpus
# The first GPU's id is the third word: "a(uus…) 4 <gpu_id> <node> …"
read -r _ _ gpu _ <<<"$last"
note "GPU used below: $gpu"
check_output "svmd-tester sees the GPU objects" "^/org/svmd1/gpu/$gpu\$" as_tester busctl tree --list org.svmd1
check_fails "the bus refuses org.svmd1 to svmd-tester" 'AccessDenied|not allowed|denied' \
        as_tester busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        RequestName su org.svmd1 0
check_fails "and to root: only svmd.service's user owns it" 'AccessDenied|not allowed|denied' \
        busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus RequestName su org.svmd1 0
