#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Lint a man page: groff must format it with every warning enabled and print
# nothing. Usage: check-man.sh GROFF PAGE
set -eu

groff=$1
page=$2

out=$("$groff" -man -ww -z "$page" 2>&1) || {
        printf '%s\n' "$out" >&2
        echo "groff failed on $page" >&2
        exit 1
}
if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        echo "groff warns about $page" >&2
        exit 1
fi
