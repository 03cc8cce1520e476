#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A real container runtime gives a container svmd's GPUs through the CDI spec of
# `svmctl cdi generate` (docs/containers.md), and svmd treats the container as
# any other tenant: identified by its real peer credentials and cgroup, held to
# the quota written for that cgroup, unable to see another tenant's range or to
# act as an administrator (also as the container's root), and its non-persistent
# ranges go when it exits.
#
# Runs under svmd-harness (the emulated node), as root, with podman and runc:
#     test-podman-cdi.sh SVMCTL KFDEMU-CTL
# podman runs in a private mount namespace with a tmpfs on /run (and on /etc/cdi),
# so the spec, podman's run state and runc's are this test's alone.
set -euo pipefail

SVMCTL=$1
KFDEMU_CTL=$2
SHARE=${SVMD_TEST_DIR:?run under svmd-harness}/cdi-share

skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || skip "podman with cgroups and a rootfs needs root"
command -v podman >/dev/null || skip "podman is not installed (tools/setup.sh installs it)"
command -v runc >/dev/null || skip "runc is not installed (tools/setup.sh installs it)"

if [ -z "${SVMD_CDI_TEST_NS:-}" ]; then
        exec unshare --mount --propagation private env SVMD_CDI_TEST_NS=1 "$0" "$@"
fi
mount -t tmpfs -o mode=0755 tmpfs /run
if [ -d /etc/cdi ]; then
        mount -t tmpfs -o mode=0755 tmpfs /etc/cdi
fi
mkdir -p /run/cdi "$SHARE"
chmod 0777 "$SHARE"

ctl() { env -u LD_PRELOAD "$KFDEMU_CTL" "$@"; }
dump() { ctl dump | jq -S 'del(.ioctls)'; }
podman_() {
        podman --runtime runc --cgroup-manager cgroupfs --storage-driver vfs --root "$SVMD_TEST_DIR/storage" \
               --runroot /run/containers/storage --events-backend file "$@"
}
# wait_for FILE: a file the container writes, within 60 s.
wait_for() {
        for _ in $(seq 600); do
                [ -s "$1" ] && return 0
                sleep 0.1
        done
        fail "the container did not write $1 in 60 s; its log: $(podman_ logs cdi-tenant 2>&1 || true)"
}

step "rootfs from the host's binaries: svmctl, sh, sleep and the libraries ldd names"
ROOTFS=$SVMD_TEST_DIR/rootfs
mkdir -p "$ROOTFS"/{bin,usr/lib,tmp,proc,sys,dev,run,etc,share}
cp "$SVMCTL" "$ROOTFS/bin/svmctl"
cp "$(command -v dash)" "$ROOTFS/bin/sh"
cp "$(command -v sleep)" "$ROOTFS/bin/sleep"
for b in "$SVMCTL" "$(command -v dash)" "$(command -v sleep)"; do
        ldd "$b" | awk '/=>/ { print $3 } /^\t\// { print $1 }'
done | sort -u | while read -r lib; do
        case $lib in
        */ld-linux*) mkdir -p "$ROOTFS$(dirname "$lib")"; cp -L "$lib" "$ROOTFS$lib" ;;
        *) cp -L "$lib" "$ROOTFS/usr/lib/" ;;
        esac
done
echo "tenant:x:1000:1000::/tmp:/bin/sh" > "$ROOTFS/etc/passwd"

GPU=$("$SVMCTL" --json gpus | jq -r '.gpus[0].gpu_id_hex')
BEFORE=$(dump)

step "the CDI spec: svmctl cdi generate into /run/cdi, where podman 4.3 reads specs"
"$SVMCTL" cdi generate --output /run/cdi/svmd.json
jq -e --arg gpu "$GPU" '.cdiVersion == "0.3.0" and .kind == "svmd.io/gpu"
        and ([.devices[].name] | index($gpu) != null and index("all") != null)' /run/cdi/svmd.json >/dev/null ||
        fail "unexpected spec: $(cat /run/cdi/svmd.json)"

step "a host tenant's range (root, persistent) the container must not reach"
VICTIM=$("$SVMCTL" --json alloc 1M --gpu "$GPU" --persistent | jq -r '.id')
echo "$VICTIM" > "$SHARE/victim"

# The container (sh builtins and svmctl only), as uid 1000: hold 2 MiB, then (once the host wrote the quota for its cgroup)
# try 4 MiB more, another tenant's range and the administrator's view; exit when told.
cat > "$SHARE/tenant.sh" <<'INNER'
svmctl --json alloc 2M --hold > /share/hold.json 2> /share/hold.err &
while [ ! -e /share/go ]; do sleep 0.1; done
svmctl --json alloc 4M > /share/over.json 2> /share/over.err; echo $? > /share/over.rc
svmctl --json usage > /share/usage.json 2>&1; echo $? > /share/usage.rc
svmctl --json gpus > /share/gpus.json 2>&1
read -r victim < /share/victim
svmctl --json free "$victim" > /share/free.json 2>&1; echo $? > /share/free.rc
svmctl --json ranges --all > /share/all.json 2>&1; echo $? > /share/all.rc
echo "$SVMD_RUNTIME_DIR $SVMD_DIRECT_ONLY" > /share/env
echo done > /share/checked
while [ ! -e /share/exit ]; do sleep 0.1; done
INNER

step "podman run --device svmd.io/gpu=$GPU"
# --ulimit: podman's defaults for open files and processes (1048576) are above what root without
# CAP_SYS_RESOURCE (a CI machine's) may raise to: "error setting rlimit type 7: operation not
# permitted". Small limits do for three processes.
CID=$(podman_ run -d --name cdi-tenant --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
                   --user 1000:1000 \
                   --device "svmd.io/gpu=$GPU" -v "$SHARE:/share" --rootfs "$ROOTFS" /bin/sh /share/tenant.sh)
trap 'podman_ rm -f cdi-tenant >/dev/null 2>&1 || true' EXIT
wait_for "$SHARE/hold.json"
PID=$(podman_ inspect --format '{{.State.Pid}}' cdi-tenant)
CGROUP=$(sed -n 's/^0:://p' "/proc/$PID/cgroup")
case $CGROUP in
*"$CID"*) ;;
*) fail "the container's init $PID is in cgroup '$CGROUP', which does not name container $CID" ;;
esac
echo "container $CID, cgroup $CGROUP" >&2

step "svmd identifies the container's range by its peer: uid 1000"
RANGE=$(jq -r '.id' "$SHARE/hold.json")
[ "$RANGE" != null ] || fail "the container's alloc failed: $(cat "$SHARE/hold.json" "$SHARE/hold.err")"
"$SVMCTL" --json ranges --all | jq -e --argjson id "$RANGE" \
        '.ranges[] | select(.id == $id) | .owner_uid == 1000 and .size == 2097152' >/dev/null ||
        fail "range $RANGE is not uid 1000's 2 MiB: $("$SVMCTL" --json ranges --all)"

step "a quota for the container's cgroup (4 MiB of VRAM), reloaded while it holds 2 MiB"
jq -n --arg cg "$CGROUP" '{quotas: [{match: {cgroup: $cg}, vram: "4M"}]}' > "$SVMD_TEST_CONFIG"
"$SVMCTL" reload
USAGE=$("$SVMCTL" --json usage "cgroup:$CGROUP")
echo "$USAGE" | jq -e '.ranges == 1 and .vram == 2097152 and .quota.vram == 4194304' >/dev/null ||
        fail "usage of cgroup:$CGROUP is not the container's 2 MiB under 4 MiB: $USAGE"

touch "$SHARE/go"
wait_for "$SHARE/checked"

step "inside: 4 MiB more is over the cgroup's quota"
[ "$(cat "$SHARE/over.rc")" = 5 ] || fail "alloc over the quota: exit $(cat "$SHARE/over.rc"): $(cat "$SHARE/over.json" "$SHARE/over.err")"
jq -e '.error.name == "org.svmd1.Error.QuotaExceeded"' "$SHARE/over.json" >/dev/null ||
        fail "alloc over the quota: $(cat "$SHARE/over.json")"
step "inside: its own usage is its cgroup's scope"
jq -e --arg cg "cgroup:$CGROUP" '.scope == $cg and .vram == 2097152' "$SHARE/usage.json" >/dev/null ||
        fail "usage inside: $(cat "$SHARE/usage.json")"
step "inside: it sees the GPU it was given, not the others"
jq -e --arg gpu "$GPU" '[.gpus[].gpu_id_hex] == [$gpu]' "$SHARE/gpus.json" >/dev/null ||
        fail "gpus inside: $(cat "$SHARE/gpus.json")"
[ "$(cat "$SHARE/env")" = "/run/svmd 1" ] || fail "environment inside: $(cat "$SHARE/env")"
step "inside: another tenant's range is no range, and it is no administrator"
[ "$(cat "$SHARE/free.rc")" = 3 ] || fail "free of range $VICTIM: exit $(cat "$SHARE/free.rc"): $(cat "$SHARE/free.json")"
[ "$(cat "$SHARE/all.rc")" = 4 ] || fail "ranges --all: exit $(cat "$SHARE/all.rc"): $(cat "$SHARE/all.json")"
"$SVMCTL" --json show "$VICTIM" >/dev/null || fail "range $VICTIM is gone"

step "a container's root (uid 0, podman's default capabilities) is no administrator"
ROOT_OUT=$(podman_ run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
                       --device "svmd.io/gpu=$GPU" --rootfs "$ROOTFS" /bin/sh -c \
                       "svmctl --json free $VICTIM; echo rc=\$?; svmctl --json ranges --all; echo rc=\$?" 2>&1) || true
[ "$(echo "$ROOT_OUT" | grep -c '^rc=4$')" = 2 ] || fail "root in the container was not refused: $ROOT_OUT"
echo "$ROOT_OUT" | grep -q 'uid 0 without CAP_SYS_ADMIN' || fail "root in the container: $ROOT_OUT"
"$SVMCTL" --json show "$VICTIM" >/dev/null || fail "root in the container freed range $VICTIM"

step "the container exits: its range goes"
touch "$SHARE/exit"
podman_ wait cdi-tenant >/dev/null
podman_ rm -f cdi-tenant >/dev/null
for _ in $(seq 100); do
        [ "$("$SVMCTL" --json ranges --all | jq '.ranges | length')" = 1 ] && break
        sleep 0.1
done
"$SVMCTL" --json ranges --all | jq -e --argjson v "$VICTIM" '[.ranges[].id] == [$v]' >/dev/null ||
        fail "ranges after the container exited: $("$SVMCTL" --json ranges --all)"
"$SVMCTL" free "$VICTIM" >/dev/null
# The persistent range's fd leaves the (harness's) fd store a moment after svmd asks.
for _ in $(seq 50); do
        AFTER=$(dump)
        [ "$BEFORE" = "$AFTER" ] && break
        sleep 0.1
done
[ "$BEFORE" = "$AFTER" ] || fail "the emulator's state differs from the start: $(diff <(echo "$BEFORE") <(echo "$AFTER"))"
echo "OK" >&2
