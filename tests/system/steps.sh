#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The system test's steps, run inside the booted container by
# svmd-systest.service: steps.sh OUTDIR.
#
# Each file in steps/ (sourced in name order) is one stage, a list of checks
# built from the helpers below; later stages may rely on what earlier ones
# set up (svmd installed, GPU ids in $gpu). To add a stage, add a file:
#
#   step "what this stage is about"
#   check "what must hold" CMD ARGS...            CMD succeeds
#   check_output "what" REGEX CMD ARGS...         CMD succeeds and prints a line matching REGEX
#   check_fails "what" REGEX CMD ARGS...          CMD fails and prints a line matching REGEX
#   wait_until "what" SECONDS CMD ARGS...         CMD succeeds within SECONDS
#   as_tester CMD...                              CMD as the unprivileged user svmd-tester
#   note TEXT                                     a line of information for the log
#
# After a passing check, $last holds what its command printed.
#
# The first failing check ends the run; OUTDIR then gets the daemon's journal,
# `systemctl status` and the emulator's state for the log printed on the host.
# The last line of OUTDIR/steps.log is "result: pass" or "result: fail".
set -uo pipefail

out=${1:?usage: steps.sh OUTDIR}
fixtures=/usr/local/lib/svmd-systest
log=$out/steps.log
: >"$log"

export KFDEMU_DIR=/var/lib/kfdemu
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0
tester=svmd-tester
n_checks=0
t0=$(date +%s)

say() {
        printf '%s\n' "$*" >>"$log"
        printf '%s\n' "$*"
}

diagnose() {
        journalctl -b --no-pager -o short-monotonic -u svmd.service >"$out/svmd-journal.txt" 2>&1
        journalctl -b --no-pager -o short-monotonic -p warning >"$out/warnings-journal.txt" 2>&1
        systemctl status --no-pager --lines=0 svmd.service >"$out/svmd-status.txt" 2>&1
        emu dump >"$out/emulator-dump.txt" 2>&1
}

finish() {
        local result=$1
        say "$n_checks checks in $(( $(date +%s) - t0 ))s"
        if [ "$result" = pass ]; then
                say "result: pass"
                exit 0
        fi
        diagnose
        say "result: fail"
        exit 1
}

step() {
        say ""
        say "== $*"
}

# run DESC EXPECT(0|1) REGEX CMD...
run() {
        local desc=$1 expect=$2 regex=$3 output rc=0
        shift 3
        n_checks=$((n_checks + 1))
        # Through bash, so that CMD may be one of the exported helpers below.
        output=$(timeout 60 bash -c '"$@"' bash "$@" 2>&1) || rc=$?
        if { [ "$expect" = 0 ] && [ $rc -eq 0 ]; } || { [ "$expect" = 1 ] && [ $rc -ne 0 ] && [ $rc -ne 124 ]; }; then
                # A here-string, not a pipe: grep -q stops at the first match, and under
                # pipefail the writer's SIGPIPE would fail a check that matched.
                if [ -z "$regex" ] || grep -Eq -- "$regex" <<<"$output"; then
                        say "  ok    $desc"
                        last=$output
                        return 0
                fi
        fi
        say "  FAIL  $desc"
        say "        command: $*"
        say "        status: $rc"
        [ -n "$regex" ] && say "        expected a line matching: $regex"
        printf '%s\n' "$output" | head -n 30 | sed 's/^/        | /' | tee -a "$log"
        finish fail
}

# note TEXT: information for the log, not a check.
note() {
        say "  note  $*"
}

check() {
        local desc=$1
        shift
        run "$desc" 0 "" "$@"
}

check_output() {
        local desc=$1 regex=$2
        shift 2
        run "$desc" 0 "$regex" "$@"
}

check_fails() {
        local desc=$1 regex=$2
        shift 2
        run "$desc" 1 "$regex" "$@"
}

wait_until() {
        local desc=$1 seconds=$2
        shift 2
        n_checks=$((n_checks + 1))
        for _ in $(seq $((seconds * 10))); do
                if bash -c '"$@"' bash "$@" >/dev/null 2>&1; then
                        say "  ok    $desc"
                        return 0
                fi
                sleep 0.1
        done
        say "  FAIL  $desc (not within ${seconds}s)"
        say "        command: $*"
        finish fail
}

as_tester() {
        setpriv --reuid="$tester" --regid="$tester" --init-groups --reset-env -- "$@"
}

# The emulator's control tool, never itself on the emulator.
emu() {
        env -u LD_PRELOAD "$fixtures/kfdemu-ctl" --dir "$KFDEMU_DIR" "$@"
}

svmd_pid() {
        systemctl show -P MainPID svmd.service
}

manager() {
        busctl call org.svmd1 /org/svmd1 org.svmd1.Manager "$@"
}

manager_property() {
        busctl get-property org.svmd1 /org/svmd1 org.svmd1.Manager "$1"
}

is_active() {
        [ "$(systemctl is-active "$1")" = active ]
}

# VRAM in use on GPU $1, as the emulated kernel counts it.
vram_used() {
        emu dump | jq -e ".gpus[] | select(.gpu_id == $1) | .vram_used"
}

# mark_journal: later journal_has calls look only at what svmd logs from now on.
mark_journal() {
        cursor=$(journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p')
        export cursor
}

journal_has() {
        # grep reads to the end (no -q): journalctl must not die of SIGPIPE under pipefail.
        journalctl --no-pager -q -u svmd.service --after-cursor="$cursor" -o cat | grep -E -- "$1" >/dev/null
}

export fixtures tester
export -f as_tester emu svmd_pid manager manager_property is_active vram_used journal_has

say "svmd system test: $(. /etc/os-release; echo "$PRETTY_NAME"), $(systemctl --version | head -n 1)"
trap 'say "interrupted"; finish fail' TERM INT

for f in "$fixtures"/steps/[0-9]*.sh; do
        # shellcheck source=/dev/null
        . "$f"
done
finish pass
