#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svmd --probe on an emulated node: the human report (printed for the CI log),
the JSON report (every check, a known status, the expected outcome for the
interface version), the exit status, and an emulator dump afterwards that holds
nothing of the probe.

    test-probe.py KFDEMU_RUN KFDEMU_CTL SVMD TOPOLOGY [KFD_VERSION]
    test-probe.py --no-kfd SVMD
"""

import json
import os
import subprocess
import sys
import tempfile

CHECKS = [
    "interface-version", "gpus", "acquire-vm", "available-memory", "map-restart",
    "map-mapped-noop", "unmap-unmapped-einval", "free-mapped-ebusy", "handle-reuse",
    "dmabuf-between-processes", "svm-attributes", "xnack-mode", "secondary-context", "smi-events", "cleanup",
]
STATUSES = {"pass", "differs", "fail", "skipped"}
# Checks whose outcome follows the interface version alone (docs/hardware.md).
ALWAYS_PASS = ["gpus", "acquire-vm", "map-restart", "map-mapped-noop", "unmap-unmapped-einval",
               "free-mapped-ebusy", "handle-reuse", "smi-events", "cleanup"]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def run_probe(kfdemu_run, svmd, topology, version, node_dir, extra):
    cmd = [kfdemu_run, "--topology", topology, "--dir", node_dir]
    if version:
        cmd += ["--kfd-version", version]
    cmd += ["--", svmd, "--probe"] + extra
    return subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=300)


def no_kfd(svmd):
    """Without /dev/kfd (no emulator): interface-version fails, the rest is skipped, exit 1."""
    if os.path.exists("/dev/kfd"):
        print("this machine has /dev/kfd; nothing to check")
        sys.exit(77)
    out = subprocess.run([svmd, "--probe", "--json"], stdout=subprocess.PIPE, text=True, timeout=60)
    report = json.loads(out.stdout)
    status = {c["name"]: c["status"] for c in report["checks"]}
    if out.returncode != 1 or report["svmd_can_run"] is not False or status["interface-version"] != "fail" or \
            any(s != "skipped" for n, s in status.items() if n != "interface-version"):
        fail(f"without /dev/kfd: exit {out.returncode}, {status}")
    print("ok: without /dev/kfd the probe fails interface-version and exits 1")


def main():
    if sys.argv[1] == "--no-kfd":
        no_kfd(sys.argv[2])
        return
    kfdemu_run, kfdemu_ctl, svmd, topology = sys.argv[1:5]
    version = sys.argv[5] if len(sys.argv) > 5 else None
    minor = int(version.split(".")[1]) if version else None

    with tempfile.TemporaryDirectory(prefix="svmd-probe-") as tmp:
        human = run_probe(kfdemu_run, svmd, topology, version, os.path.join(tmp, "human"), [])
        print(human.stdout)
        if human.returncode != 0:
            fail(f"svmd --probe exited with {human.returncode}")
        if "svmd can run correctly on this kernel." not in human.stdout:
            fail("the human report does not end with the verdict")

        node = os.path.join(tmp, "json")
        out = run_probe(kfdemu_run, svmd, topology, version, node, ["--json"])
        if out.returncode != 0:
            fail(f"svmd --probe --json exited with {out.returncode}")
        report = json.loads(out.stdout)

        names = [c["name"] for c in report["checks"]]
        if names != CHECKS:
            fail(f"checks are {names}, expected {CHECKS}")
        status = {c["name"]: c["status"] for c in report["checks"]}
        for c in report["checks"]:
            if c["status"] not in STATUSES or not c.get("found"):
                fail(f"check {c['name']}: status {c['status']!r}, found {c.get('found')!r}")
            if c["svmd_can_run"] != (c["status"] != "fail"):
                fail(f"check {c['name']}: svmd_can_run disagrees with its status")
        if report["svmd_can_run"] is not True:
            fail("svmd_can_run is not true")
        if version and report["kfd_version"] != version:
            fail(f"kfd_version {report['kfd_version']}, expected {version}")
        for name in ALWAYS_PASS:
            if status[name] != "pass":
                fail(f"{name} is {status[name]} on an emulated node")
        if minor is not None:
            want = {
                "available-memory": "pass" if minor >= 9 else "differs",
                "dmabuf-between-processes": "pass" if minor >= 12 else "differs",
                "secondary-context": "pass" if minor >= 19 else "skipped",
                "interface-version": "pass" if minor >= 19 else "differs",
            }
            for name, s in want.items():
                if status[name] != s:
                    fail(f"{name} is {status[name]} on interface {version}, expected {s}")

        # Nothing of the probe is left on the node.
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        dump = json.loads(subprocess.run([kfdemu_ctl, "--dir", node, "dump"], env=env, check=True,
                                         stdout=subprocess.PIPE, text=True).stdout)
        if dump["processes"] or dump["buffers"]:
            fail("the emulator still holds the probe's state: " + json.dumps(dump["processes"]) +
                 json.dumps(dump["buffers"]))
        for g in dump["gpus"]:
            if g["vram_used"] or g["gtt_used"]:
                fail(f"GPU {g['gpu_id']} still has memory counted as used")
        if dump["ioctls"].get("MAP_MEMORY_TO_GPU", 0) == 0:
            fail("the probe issued no MAP")
    print(f"ok: {len(CHECKS)} checks, " + ", ".join(f"{n}={s}" for n, s in status.items() if s != "pass"))


main()
