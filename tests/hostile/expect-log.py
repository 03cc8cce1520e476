#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run a command (svmd-harness …) and check how often a line appears on its
stderr, where svmd logs: expect-log.py REGEX COUNT -- CMD…"""

import re
import subprocess
import sys


def main():
    sep = sys.argv.index("--")
    pattern, count = re.compile(sys.argv[1]), int(sys.argv[2])
    proc = subprocess.Popen(sys.argv[sep + 1:], stderr=subprocess.PIPE, text=True, errors="replace")
    seen = 0
    for line in proc.stderr:
        sys.stderr.write(line)
        if pattern.search(line):
            seen += 1
    rc = proc.wait()
    if rc != 0:
        return rc
    if seen != count:
        print(f"expected {count} log line(s) matching {pattern.pattern!r}, found {seen}", file=sys.stderr)
        return 1
    print(f"log: {seen} line(s) matching {pattern.pattern!r}, as expected")
    return 0


sys.exit(main())
