#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# svmd for svmd-harness --svmd, with its log appended to $KFDEMU_DIR/svmd.log
# for a test to read (the harness sets KFDEMU_DIR for svmd and for the test).
# SVMD_LOG_SVMD is the real svmd.
exec "${SVMD_LOG_SVMD:?}" "$@" 2>>"${KFDEMU_DIR:?}/svmd.log"
