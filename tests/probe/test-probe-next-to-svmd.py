#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svmd --probe next to a running svmd (run under svmd-harness): the probe is its
own KFD process on the same node, passes, and leaves svmd's kernel-side state
exactly as it was.

    test-probe-next-to-svmd.py SVMD KFDEMU_CTL
"""

import json
import os
import subprocess
import sys

svmd, kfdemu_ctl = sys.argv[1:3]
node = os.environ["KFDEMU_DIR"]
daemon = int(os.environ["SVMD_PID"])


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def state():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    d = json.loads(subprocess.run([kfdemu_ctl, "--dir", node, "dump"], env=env, check=True,
                                  stdout=subprocess.PIPE, text=True).stdout)
    for volatile in ("ioctls", "ioctls_unknown", "faults", "profile"):
        d.pop(volatile, None)
    return d


# The probe runs on svmd's node with svmd's own preload (the emulator, and sanitizer runtimes).
with open(f"/proc/{daemon}/environ", "rb") as f:
    environ = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
env = dict(os.environ)
env["LD_PRELOAD"] = environ[b"LD_PRELOAD"].decode()

before = state()
if not any(p["pid"] == daemon for p in before["processes"]):
    fail("svmd has no KFD process on the node")

human = subprocess.run([svmd, "--probe"], env=env, stdout=subprocess.PIPE, text=True, timeout=300)
print(human.stdout)
if human.returncode != 0:
    fail(f"svmd --probe next to svmd exited with {human.returncode}")

out = subprocess.run([svmd, "--probe", "--json"], env=env, stdout=subprocess.PIPE, text=True, timeout=300)
report = json.loads(out.stdout)
if out.returncode != 0 or not report["svmd_can_run"]:
    fail(f"svmd --probe --json next to svmd: exit {out.returncode}, svmd_can_run {report['svmd_can_run']}")
bad = [c["name"] for c in report["checks"] if c["status"] == "fail"]
if bad:
    fail("failed checks next to svmd: " + ", ".join(bad))
cleanup = next(c for c in report["checks"] if c["name"] == "cleanup")
if cleanup["status"] != "pass":
    fail("cleanup: " + cleanup["found"])

after = state()
if after != before:
    fail("the node's state changed:\nbefore " + json.dumps(before) + "\nafter  " + json.dumps(after))
os.kill(daemon, 0)
print("ok: the probe passed next to svmd and left its state untouched")
