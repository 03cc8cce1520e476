#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# svmd under valgrind memcheck, for svmd-harness --svmd: the harness runs this
# in svmd's place (with the emulator preloaded and svmd's arguments); any
# memory error or definite leak makes svmd exit 99, which fails the test.
# SVMD_VALGRIND_SVMD is the real svmd. Give svmd a configuration with a small
# "va-window" (tests/hostile/valgrind-*.conf): memcheck's shadow state for the
# default 16 TiB window alone takes 12 GB.
exec valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --child-silent-after-fork=yes \
        "${SVMD_VALGRIND_SVMD:?}" "$@"
