#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The system test: svmd as shipped, under real systemd as PID 1 and the real
# system bus, in a systemd-nspawn container booted from a debootstrap'd Debian
# bookworm root.
#
#   run-system-test.sh --build-dir DIR --preload LIBKFDEMU --ctl KFDEMU-CTL --topology FILE
#
# 1. The root is built once and cached under $SVMD_TEST_CACHE (default
#    /var/cache/svmd-test), keyed by a hash of the suite, mirror and package list.
# 2. Each run mounts an overlay over the cached root (or copies it), runs
#    `meson install --destdir` from the build directory into it, adds the KFD
#    emulator, a test-only drop-in for svmd.service that preloads it, and the
#    steps (steps.sh, steps/*.sh) run by a oneshot unit, svmd-systest.service.
# 3. It boots the container; the oneshot runs the steps and ends the container
#    with `systemctl exit STATUS`. The steps' log is printed here.
#
# Exit status: 0 when every step passed, 1 when one failed (or the container did
# not finish in time), 77 (skipped) when this machine cannot run the container:
# not root, systemd-nspawn or debootstrap missing, the Debian mirror unreachable,
# or nspawn unable to start a container.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
packages=(systemd libpam-systemd dbus procps polkitd jq libjansson4 libdrm2 libdrm-amdgpu1)
# Bump when the recipe below changes in a way the package list does not show.
recipe=1
boot_timeout=${SVMD_TEST_TIMEOUT:-300}
cache=${SVMD_TEST_CACHE:-/var/cache/svmd-test}

build_dir=
preload=
ctl=
topology=
while [ $# -gt 0 ]; do
        case "$1" in
        --build-dir) build_dir=$2; shift 2 ;;
        --preload) preload=$2; shift 2 ;;
        --ctl) ctl=$2; shift 2 ;;
        --topology) topology=$2; shift 2 ;;
        -h|--help) sed -n '3,22p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
        esac
done
for v in build_dir preload ctl topology; do
        [ -n "${!v}" ] || { echo "--${v//_/-} is required" >&2; exit 2; }
done

log() {
        printf '[system] %s\n' "$*"
}

skip() {
        log "SKIP: $*"
        exit 77
}

started=$(date +%s)

# ---- can this machine run it at all? ----
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, overlay mounts and systemd-nspawn)"
for t in systemd-nspawn debootstrap; do
        command -v "$t" >/dev/null || skip "$t is not installed (Debian packages systemd-container, debootstrap)"
done

# The mirror apt uses here, unless given.
mirror=${SVMD_TEST_MIRROR:-}
if [ -z "$mirror" ]; then
        mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
                 awk '/^URIs:/ { uri = $2 } /^Suites:/ && uri && / '"$suite"'( |$)/ { print uri; exit }')
fi
if [ -z "$mirror" ]; then
        mirror=$(awk '$1 == "deb" && $3 == "'"$suite"'" { print $2; exit }' \
                 /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

# ---- the cached root ----
key=$(printf '%s\n' "$recipe" "$suite" "$mirror" "${packages[@]}" | sha256sum | cut -c1-16)
root_cache=$cache/$suite-$key
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
if [ ! -x "$root_cache/usr/lib/systemd/systemd" ]; then
        log "building the $suite root in $root_cache from $mirror (once; cached)"
        rm -rf "$root_cache.new"
        include=$(IFS=,; echo "${packages[*]}")
        if ! debootstrap --variant=minbase --include="$include" "$suite" "$root_cache.new" "$mirror" \
                        >"$cache/debootstrap.log" 2>&1; then
                tail -n 20 "$cache/debootstrap.log" | sed 's/^/[system]   /'
                rm -rf "$root_cache.new"
                skip "debootstrap from $mirror failed (log: $cache/debootstrap.log); set SVMD_TEST_MIRROR"
        fi
        # What a booted image needs and debootstrap does not do.
        rm -f "$root_cache.new/etc/machine-id" "$root_cache.new/var/lib/dbus/machine-id"
        echo svmd-systest >"$root_cache.new/etc/hostname"
        chroot "$root_cache.new" apt-get clean
        for old in "$cache/$suite"-*; do
                [ -d "$old" ] && [ "$old" != "$root_cache.new" ] && rm -rf "$old"
        done
        mv "$root_cache.new" "$root_cache"
fi
flock -u 9

# ---- this run's root: an overlay over the cached one ----
# Earlier runs that were killed may have left their overlay behind.
for stale in /var/tmp/svmd-systest.*; do
        [ -d "$stale" ] || continue
        pid=${stale#/var/tmp/svmd-systest.}
        pid=${pid%%.*}
        kill -0 "$pid" 2>/dev/null && continue
        umount "$stale/root" 2>/dev/null || true
        mountpoint -q "$stale/root" || rm -rf "$stale"
done
work=$(mktemp -d "/var/tmp/svmd-systest.$$.XXXXXX")
root=$work/root
mounted=
cleanup() {
        if [ -n "$mounted" ]; then
                umount "$root" 2>/dev/null || { sleep 1; umount "$root"; } || umount -l "$root" || true
        fi
        mountpoint -q "$root" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' TERM INT
mkdir -p "$root" "$work/upper" "$work/ovl" "$work/out"
if mount -t overlay overlay -o "lowerdir=$root_cache,upperdir=$work/upper,workdir=$work/ovl" "$root" 2>/dev/null; then
        mounted=1
else
        log "no overlayfs here; copying the root"
        cp -a "$root_cache/." "$root/"
fi

# ---- install svmd as a package would, plus the test fixtures ----
meson install -C "$build_dir" --destdir "$root" --no-rebuild --quiet >/dev/null
fixtures=/usr/local/lib/svmd-systest
install -d "$root$fixtures/steps" "$root/etc/systemd/system/svmd.service.d" \
        "$root/etc/systemd/system/multi-user.target.wants" "$root/var/lib/svmd-systest"
install -m 0644 "$preload" "$root$fixtures/libkfdemu.so"
install -m 0755 "$ctl" "$root$fixtures/kfdemu-ctl"
install -m 0644 "$topology" "$root$fixtures/topology.json"
install -m 0755 "$here/steps.sh" "$root$fixtures/steps.sh"
install -m 0644 "$here"/steps/*.sh "$root$fixtures/steps/"
install -m 0644 "$here/svmd-kfd-emulator.conf" "$root/etc/systemd/system/svmd.service.d/50-kfd-emulator.conf"
install -m 0644 "$here/svmd-systest.service" "$root/etc/systemd/system/svmd-systest.service"
ln -sf ../svmd-systest.service "$root/etc/systemd/system/multi-user.target.wants/svmd-systest.service"
# Not a first boot: that would apply the presets and start svmd before the steps.
systemd-id128 new >"$root/etc/machine-id"
# Nothing on the console but the boot messages; no login prompt to wait at.
ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"

# ---- boot ----
nspawn=(systemd-nspawn --quiet --directory="$root" --machine="svmd-systest-$$" --register=no
        --private-network --link-journal=no --resolv-conf=off --timezone=off)
# Without systemd on the host there is no one to make a scope for the container.
[ -d /run/systemd/system ] || nspawn+=(--keep-unit)

# Can nspawn start a container here at all? (Whether it boots is what is tested.)
if ! probe=$(timeout 60 "${nspawn[@]}" --pipe /bin/true 2>&1); then
        printf '%s\n' "$probe" | tail -n 5 | sed 's/^/[system]   /'
        skip "systemd-nspawn cannot start a container on this machine"
fi

log "booting $suite with systemd as PID 1"
status=0
timeout --kill-after=15 "$boot_timeout" "${nspawn[@]}" --boot --console=read-only \
        --bind="$work/out:/var/lib/svmd-systest" >"$work/console.log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - started ))

[ -f "$work/out/steps.log" ] && cat "$work/out/steps.log"
if [ $status -eq 0 ] && grep -qx 'result: pass' "$work/out/steps.log" 2>/dev/null; then
        log "PASS in ${elapsed}s"
        exit 0
fi

if [ $status -eq 124 ] || [ $status -eq 137 ]; then
        log "the container did not finish in ${boot_timeout}s"
elif [ ! -f "$work/out/steps.log" ]; then
        log "the container shut down before svmd-systest.service ran"
fi
for f in "$work"/out/*.txt; do
        [ -f "$f" ] || continue
        log "---- $(basename "$f") ----"
        cat "$f"
done
log "---- console (last 60 lines) ----"
tail -n 60 "$work/console.log"
log "FAIL (status $status) after ${elapsed}s"
exit 1
