#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What a packager and an application developer get: `meson install` of this
# build tree into a DESTDIR, then pkg-config finds libsvmd there and the
# example of libsvmd(3) compiles and links against the installed header and
# library only.
#
#   test-install.sh BUILD-DIR EXAMPLE-SOURCE CC
set -eu

build=$1
example=$2
cc=$3
dest=$(mktemp -d "${TMPDIR:-/tmp}/svmd-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT

meson install -C "$build" --no-rebuild --destdir "$dest" --quiet >"$dest.log" 2>&1 || {
        cat "$dest.log" >&2
        rm -f "$dest.log"
        exit 1
}
rm -f "$dest.log"

pc=$(find "$dest" -name libsvmd.pc | head -n1)
[ -n "$pc" ] || { echo "libsvmd.pc was not installed" >&2; exit 1; }
header=$(find "$dest" -path '*/include/svmd/svmd.h' | head -n1)
[ -n "$header" ] || { echo "svmd/svmd.h was not installed" >&2; exit 1; }
find "$dest" -name 'libsvmd.so.0' | grep -q . || { echo "libsvmd.so.0 was not installed" >&2; exit 1; }
find "$dest" -path '*/bin/svmctl' | grep -q . || { echo "svmctl was not installed" >&2; exit 1; }
find "$dest" -path '*/bash-completion/completions/svmctl' | grep -q . || { echo "bash completion missing" >&2; exit 1; }
find "$dest" -name 'svmctl.1*' | grep -q . || { echo "svmctl(1) missing" >&2; exit 1; }
find "$dest" -name 'libsvmd.3*' | grep -q . || { echo "libsvmd(3) missing" >&2; exit 1; }

export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs libsvmd)
echo "pkg-config --cflags --libs libsvmd: $flags"
case "$flags" in
*"-I$dest/"*"-L$dest/"*"-lsvmd"*) ;;
*) echo "pkg-config does not point into $dest: $flags" >&2; exit 1 ;;
esac
# One version: libsvmd.pc's is the library's file name's and svmd.h's SVMD_LIBRARY_VERSION.
pcv=$(pkg-config --modversion libsvmd)
sov=$(find "$dest" -name 'libsvmd.so.*.*.*' | sed 's/.*libsvmd\.so\.//' | head -n1)
hv=$(sed -n 's/^#define SVMD_LIBRARY_VERSION "\(.*\)"$/\1/p' "$(find "$dest" -path '*/svmd/svmd.h' | head -n1)")
[ "$pcv" = "$sov" ] || { echo "libsvmd.pc says $pcv, the library is libsvmd.so.$sov" >&2; exit 1; }
case "$pcv" in "$hv".*) ;; *) echo "libsvmd.pc says $pcv, svmd.h $hv" >&2; exit 1 ;; esac

# Only the installed files: no include path or library of the source or build tree.
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Werror -o "$dest/svmd-alloc" "$example" $flags
[ -x "$dest/svmd-alloc" ]

# The installed library exports its versioned API and nothing else: every call
# at its current version (@@), and the LIBSVMD_0.1 versions of the calls whose
# structs grew in 0.2 (@) for binaries built against 0.1.
lib=$(find "$dest" -name 'libsvmd.so.0' | head -n1)
if command -v nm >/dev/null; then
        bad=$(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 !~ /^svmd_[a-z_]*@@?LIBSVMD_0\.[1234]$/ { print $3 }')
        [ -z "$bad" ] || { echo "unexpected exports: $bad" >&2; exit 1; }
        compat=$(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /@LIBSVMD_0\.1$/ && $3 !~ /@@/ { print $3 }' | sort | tr '\n' ' ')
        want="svmd_allocate@LIBSVMD_0.1 svmd_allocate_async@LIBSVMD_0.1 svmd_commit@LIBSVMD_0.1 svmd_commit_async@LIBSVMD_0.1 svmd_get_status@LIBSVMD_0.1 svmd_list_ranges@LIBSVMD_0.1 "
        [ "$compat" = "$want" ] || { echo "LIBSVMD_0.1 compat versions: '$compat', expected '$want'" >&2; exit 1; }
        for sym in svmd_set_attributes svmd_get_svm_attributes svmd_svm_flag_to_string svmd_allocate svmd_get_status svmd_list_ranges; do
                nm -D --defined-only "$lib" | grep -q " $sym@@LIBSVMD_0\.2$" || { echo "$sym@@LIBSVMD_0.2 missing" >&2; exit 1; }
        done
        nm -D --defined-only "$lib" | grep -q " svmd_get_durability@@LIBSVMD_0\.3$" ||
                { echo "svmd_get_durability@@LIBSVMD_0.3 missing" >&2; exit 1; }
        nm -D --defined-only "$lib" | grep -q " svmd_pool_alloc@@LIBSVMD_0\.4$" ||
                { echo "svmd_pool_alloc@@LIBSVMD_0.4 missing" >&2; exit 1; }
        nm -D --defined-only "$lib" | grep -q " svmd_get_metrics@@LIBSVMD_0\.4$" ||
                { echo "svmd_get_metrics@@LIBSVMD_0.4 missing" >&2; exit 1; }
        nm -D --defined-only "$lib" | grep -q " svmd_reuse@@LIBSVMD_0\.4$" ||
                { echo "svmd_reuse@@LIBSVMD_0.4 missing" >&2; exit 1; }
        for sym in svmd_revoke svmd_get_revoking; do
                nm -D --defined-only "$lib" | grep -q " $sym@@LIBSVMD_0\.4$" || { echo "$sym@@LIBSVMD_0.4 missing" >&2; exit 1; }
        done
fi
echo "installed into $dest and compiled the example against it"
