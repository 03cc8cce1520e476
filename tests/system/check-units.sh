#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Checks of the shipped files in systemd/, one per invocation (meson runs each
# as its own test in the 'systemd' suite):
#
#   check-units.sh xml FILE [DTD]                 well-formed (and valid, if DTD exists)
#   check-units.sh verify UNIT                    systemd-analyze verify, strictly
#   check-units.sh verify-timer TIMER SERVICE     both, the service under the timer's name
#   check-units.sh security UNIT THRESHOLD        systemd-analyze security --offline
#   check-units.sh sysusers FILE                  creates svmd in render and video
#   check-units.sh tmpfiles FILE                  parses and applies to an empty root
#   check-units.sh consistency UNIT BUS-POLICY BUS-SERVICE SYSUSERS CONF-H
#                                                 names agree across the files
#   check-units.sh json FILE                      the example configuration is JSON
#
# Exit status 0 on success, 1 on failure, 77 (skip) when a tool is missing.
set -euo pipefail

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

need() {
        local t
        for t in "$@"; do
                if ! command -v "$t" >/dev/null; then
                        echo "SKIP: $t is not installed (tools/setup.sh installs it)"
                        exit 77
                fi
        done
}

# unit_value FILE KEY: the last assignment of KEY= in FILE
unit_value() {
        sed -n "s/^$2=//p" "$1" | tail -n 1
}

scratch() {
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
}

check_xml() {
        local file=$1 dtd=${2:-}
        need xmllint
        xmllint --noout --nonet "$file" || fail "$file is not well-formed XML"
        echo "ok: $file is well-formed"
        if [ -n "$dtd" ] && [ -f "$dtd" ]; then
                xmllint --noout --nonet --dtdvalid "$dtd" "$file" || fail "$file does not follow $dtd"
                echo "ok: $file is valid against $dtd"
        elif [ -n "$dtd" ]; then
                echo "note: $dtd is not installed; checked well-formedness only"
        fi
}

check_verify() {
        local unit=$1 out exec
        need systemd-analyze
        exec=$(unit_value "$unit" ExecStart)
        exec=${exec%% *}
        exec=${exec#+}
        case "$unit" in
        *.timer) ;;
        *) [ -x "$exec" ] || fail "ExecStart=$exec in $unit is not an executable" ;;
        esac
        # On 252 an unknown key only fails the verification with --recursive-errors=.
        if ! out=$(systemd-analyze verify --man=no --recursive-errors=no "$unit" 2>&1); then
                printf '%s\n' "$out" >&2
                fail "systemd-analyze verify $unit"
        fi
        # Warnings about the unit itself (not its dependencies) count as failures too.
        if printf '%s\n' "$out" | grep -F "$(basename "$unit")"; then
                fail "systemd-analyze verify warned about $unit"
        fi
        echo "ok: systemd-analyze verify --man=no --recursive-errors=no $unit"
}

# A timer and its service (built to run from the build tree), side by side under their names.
check_verify_timer() {
        local timer=$1 service=$2 name
        scratch
        name=$(basename "$timer" .timer).service
        cp "$timer" "$tmp/"
        cp "$service" "$tmp/$name"
        check_verify "$tmp/$name"
        check_verify "$tmp/$(basename "$timer")"
}

check_security() {
        local unit=$1 threshold=$2 out status=0
        need systemd-analyze
        out=$(systemd-analyze security --no-pager --offline=true --threshold="$threshold" "$unit" 2>&1) || status=$?
        printf '%s\n' "$out" | grep -E '^[✗✓] |^  *[✗✓] ' | grep '✗' || true
        printf '%s\n' "$out" | grep -F 'Overall exposure level' || fail "no exposure level in the output:\n$out"
        [ $status -eq 0 ] || fail "exposure is above $threshold/10 (systemd-analyze security --offline=true --threshold=$threshold)"
        echo "ok: exposure at most $threshold/10"
}

check_sysusers() {
        local file=$1 group
        need systemd-sysusers
        scratch
        mkdir -p "$tmp/etc"
        systemd-sysusers --root="$tmp" "$file" || fail "systemd-sysusers rejected $file"
        grep -q '^svmd:' "$tmp/etc/passwd" || fail "$file creates no user svmd"
        for group in render video; do
                grep -Eq "^$group:[^:]*:[0-9]+:(.*,)?svmd(,.*)?$" "$tmp/etc/group" ||
                        fail "$file does not put svmd in the $group group"
        done
        echo "ok: $file creates the system user svmd in the groups render and video"
        grep '^svmd:' "$tmp/etc/passwd"
}

check_tmpfiles() {
        local file=$1 dir
        need systemd-tmpfiles
        scratch
        systemd-tmpfiles --root="$tmp" --create "$file" || fail "systemd-tmpfiles rejected $file"
        for dir in $(awk '$1 == "d" { print $2 }' "$file"); do
                [ -d "$tmp$dir" ] || fail "$file does not create $dir"
        done
        echo "ok: $file applies to an empty root"
}

check_consistency() {
        local unit=$1 policy=$2 service=$3 sysusers=$4 conf_h=$5 user bus cap def
        user=$(unit_value "$unit" User)
        bus=$(unit_value "$unit" BusName)
        [ "$bus" = org.svmd1 ] || fail "BusName=$bus in $unit, expected org.svmd1"
        [ "$(unit_value "$service" Name)" = "$bus" ] || fail "$service does not activate $bus"
        [ "$(unit_value "$service" SystemdService)" = svmd.service ] ||
                fail "$service does not name SystemdService=svmd.service"
        [ "$(unit_value "$service" User)" = "$user" ] || fail "$service names a user other than User=$user"
        grep -q "^u $user " "$sysusers" || fail "$sysusers does not create User=$user"
        grep -q "<policy user=\"$user\">" "$policy" || fail "$policy does not let $user own the name"
        grep -q "<allow own=\"$bus\"/>" "$policy" || fail "$policy lets nobody own $bus"
        [ "$(grep -c '<allow own=' "$policy")" -eq 1 ] || fail "$policy lets more than one user own $bus"
        echo "ok: User=$user and $bus agree across the unit, the bus policy, the activation file and sysusers"

        cap=$(unit_value "$unit" FileDescriptorStoreMax)
        def=$(sed -n 's/^#define CONFIG_DEFAULT_PERSISTENT_RANGES *\([0-9]*\).*/\1/p' "$conf_h")
        if [ -n "$def" ]; then
                [ "$cap" = "$def" ] ||
                        fail "FileDescriptorStoreMax=$cap, but svmd allows $def persistent ranges by default"
                echo "ok: FileDescriptorStoreMax=$cap is the default cap of persistent ranges"
        else
                echo "note: $conf_h defines no CONFIG_DEFAULT_PERSISTENT_RANGES; FileDescriptorStoreMax=$cap unchecked"
        fi
}

check_json() {
        need python3
        python3 -m json.tool "$1" >/dev/null || fail "$1 is not JSON"
        echo "ok: $1 is JSON"
}

[ $# -ge 1 ] || fail "usage: $0 xml|verify|security|sysusers|tmpfiles|consistency|json ARGS..."
cmd=$1
shift
case "$cmd" in
xml) check_xml "$@" ;;
verify) check_verify "$@" ;;
verify-timer) check_verify_timer "$@" ;;
security) check_security "$@" ;;
sysusers) check_sysusers "$@" ;;
tmpfiles) check_tmpfiles "$@" ;;
consistency) check_consistency "$@" ;;
json) check_json "$@" ;;
*) fail "unknown check $cmd" ;;
esac
