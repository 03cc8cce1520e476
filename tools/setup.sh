# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared set-up for tools/test and tools/demo: install the Debian packages the
# build and the tests need (only what is missing) and build the tree.
# Sourced, not executed.

SVMD_PACKAGES=(
        meson ninja-build pkg-config gcc libc6-dev
        libsystemd-dev libdrm-dev libjansson-dev
        libhsakmt1 libhsakmt-dev
        dbus dbus-bin libxml2-utils python3 python3-dbus python3-gi jq util-linux procps
        systemd systemd-container debootstrap groff-base podman runc
        valgrind clang-14 libclang-rt-14-dev
        prometheus prometheus-node-exporter python3-prometheus-client
)

svmd_log() {
        printf '==> %s\n' "$*" >&2
}

svmd_install_deps() {
        local missing=() p
        for p in "${SVMD_PACKAGES[@]}"; do
                if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
                        missing+=("$p")
                fi
        done
        if [ ${#missing[@]} -eq 0 ]; then
                return 0
        fi
        if [ "$(id -u)" -ne 0 ]; then
                echo "missing Debian packages: ${missing[*]}; run as root or install them" >&2
                return 1
        fi
        svmd_log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# svmd_build DIR [meson setup options...]
svmd_build() {
        local dir=$1
        shift
        if [ ! -f "$dir/build.ninja" ]; then
                svmd_log "configuring $dir $*"
                meson setup "$dir" "$@" >/dev/null
        fi
        svmd_log "building $dir"
        meson compile -C "$dir" >/dev/null
}
