#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svmd --probe next to a running svmd (run under svmd-harness): the probe is its
own KFD process on the same node, passes, and leaves svmd's kernel-side state
exactly as it was. With "faults", kernel faults are armed first (svmd is idle, so
only the probe meets them) and the exit status must follow the verdict.

    test-probe-next-to-svmd.py SVMD KFDEMU_CTL [faults]
"""

import json
import os
import subprocess
import sys

svmd, kfdemu_ctl = sys.argv[1:3]
faults = len(sys.argv) > 3 and sys.argv[3] == "faults"
node = os.environ["KFDEMU_DIR"]
daemon = int(os.environ["SVMD_PID"])


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ctl(*args):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return subprocess.run([kfdemu_ctl, "--dir", node] + list(args), env=env, check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def state():
    d = json.loads(ctl("dump"))
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

# A fault, the check it hits, the status it gets, and the exit status of the probe.
FAULTS = [
    ("ioctl=EXPORT_DMABUF errno=EIO", "dmabuf-between-processes", "fail", 1),
    ("ioctl=UNMAP_MEMORY_FROM_GPU errno=EIO", "map-restart", "fail", 1),
    ("ioctl=SET_XNACK_MODE nth=2 errno=EIO", "xnack-mode", "differs", 0),
    ("ioctl=MAP_MEMORY_TO_GPU nth=4 errno=EIO", "map-mapped-noop", "differs", 0),
]
if faults:
    for spec, check, status, code in FAULTS:
        ctl("fault", "clear")
        ctl("fault", "add", spec)
        human = subprocess.run([svmd, "--probe"], env=env, stdout=subprocess.PIPE, text=True, timeout=300)
        print(f"--- with fault {spec!r}:")
        print(human.stdout)
        if human.returncode != code:
            fail(f"with {spec!r} svmd --probe exited with {human.returncode}, expected {code}")
        ctl("fault", "clear")
        ctl("fault", "add", spec)
        out = subprocess.run([svmd, "--probe", "--json"], env=env, stdout=subprocess.PIPE, text=True, timeout=300)
        report = json.loads(out.stdout)
        got = next(c for c in report["checks"] if c["name"] == check)
        if out.returncode != code or got["status"] != status or report["svmd_can_run"] != (code == 0):
            fail(f"with {spec!r}: exit {out.returncode}, {check} {got['status']}, svmd_can_run "
                 f"{report['svmd_can_run']}; expected {code}, {status}")
        others = [c["name"] for c in report["checks"] if c["status"] == "fail" and c["name"] != check]
        if others:
            fail(f"with {spec!r} other checks failed too: {others}")
    ctl("fault", "clear")
    after = state()
    if after != before:
        fail("the node's state changed:\nbefore " + json.dumps(before) + "\nafter  " + json.dumps(after))
    print("ok: every fault gave its check the expected status and the probe the expected exit status")
    sys.exit(0)

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
