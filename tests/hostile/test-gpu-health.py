#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""GPU resets and VM faults through svmd, seen by clients svmd did not write
(python3-dbus tenants, gdbus monitor), under svmd-harness with hostile.conf:

  - uid 1 and uid 2 each own a VRAM range on GPU 0 and a GTT range;
  - the emulated GPU 0 starts a reset (kfdemu-ctl gpu reset --begin): each
    tenant hears ContentsLost and State "contents-lost" for its own VRAM range
    and nothing about the other's; the GTT ranges stay "active"; Allocate on
    GPU 0 is refused with GpuResetting, on GPU 1 it works, and so are maps to
    GPU 0 (to GPU 1 they work); the other tenant
    cannot Reuse a range that is not its own;
  - the reset ends: Allocate and Map on GPU 0 work; Reuse makes the range active;
  - a VM fault of uid 1's process: uid 1 hears VmFault with its pid, uid 2
    and root do not; a VM fault of a process that is no client: nobody hears;
  - gdbus monitor as uid 2 hears GPU 0's Resetting change (node-wide) and
    nothing of uid 1.

    test-gpu-health.py KFDEMU-CTL            (the test)
    test-gpu-health.py --tenant              (one tenant, driven on stdin)
"""

import json
import os
import subprocess
import sys
import time

NAME, PATH, IFACE = "org.svmd1", "/org/svmd1", "org.svmd1.Manager"
RANGE_IFACE, GPU_IFACE = "org.svmd1.Range", "org.svmd1.Gpu"
MiB = 1 << 20
TIMEOUT = 10


def tenant():
    """Connect, subscribe, own a VRAM and a GTT range on GPU 0; then answer commands on stdin."""
    import dbus
    import dbus.mainloop.glib
    from gi.repository import GLib

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(os.environ["SVMD_BUS_ADDRESS"])
    heard = []

    def on_signal(*args, member=None, path=None):
        heard.append([str(member), str(path)] + [str(a) if not isinstance(a, (int, float)) else int(a) for a in args])

    bus.add_signal_receiver(on_signal, dbus_interface=IFACE, member_keyword="member", path_keyword="path")
    bus.add_signal_receiver(on_signal, dbus_interface="org.freedesktop.DBus.Properties",
                            member_keyword="member", path_keyword="path")
    call = lambda m, sig="", *a: bus.call_blocking(NAME, PATH, IFACE, m, sig, list(a), timeout=TIMEOUT)
    call("Subscribe")
    gpus = [int(g[0]) for g in call("ListGpus")]

    def allocate(gpu, domain):
        rid, va, path = call("Allocate", "tusa{sv}", dbus.UInt64(2 * MiB), dbus.UInt32(gpu), domain,
                             dbus.Dictionary({}, signature="sv"))
        return int(rid)

    def error_of(fn):
        try:
            fn()
            return "ok"
        except dbus.exceptions.DBusException as e:
            return e.get_dbus_name()

    vram, gtt = allocate(gpus[0], "vram"), allocate(gpus[0], "gtt")
    print(json.dumps({"vram": vram, "gtt": gtt, "pid": os.getpid(), "gpus": gpus}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "state":
            def get():
                v = bus.call_blocking(NAME, f"/org/svmd1/range/{cmd[1]}", "org.freedesktop.DBus.Properties", "Get",
                                      "ss", [RANGE_IFACE, "State"], timeout=TIMEOUT)
                answer.append(str(v))
            answer = []
            e = error_of(get)
            print(answer[0] if answer else e, flush=True)
        elif cmd[0] == "alloc":
            ids = []
            e = error_of(lambda: ids.append(allocate(gpus[int(cmd[1])], "vram")))
            print(e, flush=True)
        elif cmd[0] == "map":
            print(error_of(lambda: call("Map", "taua{sv}", dbus.UInt64(int(cmd[1])),
                                        dbus.Array([dbus.UInt32(gpus[int(cmd[2])])], signature="u"),
                                        dbus.Dictionary({}, signature="sv"))), flush=True)
        elif cmd[0] == "reuse":
            print(error_of(lambda: call("Reuse", "t", dbus.UInt64(int(cmd[1])))), flush=True)
        elif cmd[0] == "heard":
            # A round trip: every signal svmd sent before has arrived; then deliver them.
            bus.call_blocking(NAME, PATH, "org.freedesktop.DBus.Peer", "Ping", "", [], timeout=TIMEOUT)
            ctx = GLib.MainContext.default()
            while ctx.iteration(False):
                pass
            print(json.dumps(heard), flush=True)
            heard.clear()
        elif cmd[0] == "quit":
            return


class Tenant:
    def __init__(self, uid):
        def drop():
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        self.uid = uid
        self.p = subprocess.Popen([sys.executable, __file__, "--tenant"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, preexec_fn=drop)
        self.info = json.loads(self.p.stdout.readline())
        self.vram, self.gtt, self.pid = self.info["vram"], self.info["gtt"], self.info["pid"]

    def ask(self, *cmd):
        self.p.stdin.write(" ".join(str(c) for c in cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        assert line, f"uid {self.uid}'s tenant died"
        return line.strip()

    def heard(self):
        return json.loads(self.ask("heard"))

    def quit(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        assert self.p.wait(timeout=TIMEOUT) == 0


def about(signals, rid):
    """The signals about range rid: ContentsLost(rid, …) and its object's PropertiesChanged."""
    return [s for s in signals if (s[0] == "ContentsLost" and s[2] == rid) or s[1] == f"/org/svmd1/range/{rid}"]


def main():
    ctl = sys.argv[1]
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)

    def kfdemu(*args):
        subprocess.run([ctl, *args], check=True, env=env, stdout=subprocess.DEVNULL)

    a, b = Tenant(1), Tenant(2)
    gpu0, gpu1 = a.info["gpus"][0], a.info["gpus"][1]
    a.heard(), b.heard()

    out_path = os.path.join(os.environ["SVMD_TEST_DIR"], "gdbus-health.out")
    out = open(out_path, "w")
    os.fchown(out.fileno(), 2, 2)
    gdbus = subprocess.Popen(["stdbuf", "-oL", "gdbus", "monitor", "--address", os.environ["SVMD_BUS_ADDRESS"],
                              "--dest", NAME], stdout=out, preexec_fn=lambda: (os.setgid(2), os.setuid(2)))
    time.sleep(0.5)     # gdbus adds its match asynchronously

    print(f"GPU 0x{gpu0:x} starts a reset")
    kfdemu("gpu", "reset", hex(gpu0), "--begin", "--cause", "job hang")
    try:
        for t, other in ((a, b), (b, a)):
            heard = t.heard()
            lost = [s for s in heard if s[0] == "ContentsLost"]
            assert [s[2] for s in lost] == [t.vram], (t.uid, heard)
            assert lost[0][3] == gpu0 and "job hang" in lost[0][4] and "reset" in lost[0][4], lost
            assert about(heard, t.vram), heard
            assert not about(heard, other.vram) and not about(heard, other.gtt), (t.uid, heard)
            assert t.ask("state", t.vram) == "contents-lost"
            assert t.ask("state", t.gtt) == "active"
            assert t.ask("alloc", 0) == "org.svmd1.Error.GpuResetting"
            assert t.ask("alloc", 1) == "ok"
            assert t.ask("map", t.gtt, 0) == "org.svmd1.Error.GpuResetting"
            assert t.ask("map", t.gtt, 1) == "ok"
            # Not its range: the same answer as for a range that does not exist.
            assert t.ask("reuse", other.vram) == "org.svmd1.Error.NoSuchRange", t.uid
            print(f"  uid {t.uid}: ContentsLost for its range {t.vram} only; Allocate on it refused, "
                  f"on GPU 0x{gpu1:x} done")
        assert a.ask("reuse", a.vram) == "org.svmd1.Error.GpuResetting"
    finally:
        kfdemu("gpu", "reset", hex(gpu0), "--end")
    print(f"GPU 0x{gpu0:x} finished its reset")
    for t in (a, b):
        assert t.ask("alloc", 0) == "ok"
        assert t.ask("map", t.gtt, 0) == "ok"
        assert t.ask("state", t.vram) == "contents-lost"
    assert a.ask("reuse", a.vram) == "ok"
    assert a.ask("state", a.vram) == "active"
    assert b.ask("state", b.vram) == "contents-lost"
    a.heard(), b.heard()

    print(f"VM fault of uid 1's process {a.pid}")
    kfdemu("gpu", "vmfault", hex(gpu0), "0x1000", str(a.pid))
    heard_a, heard_b = a.heard(), b.heard()
    faults = [s for s in heard_a if s[0] == "VmFault"]
    assert faults == [["VmFault", PATH, gpu0, a.pid, faults[0][4]]], heard_a
    assert not [s for s in heard_b if s[0] == "VmFault"], heard_b
    print(f"  uid 1 heard VmFault(0x{gpu0:x}, {a.pid}, {faults[0][4]}); uid 2 nothing")

    bystander = subprocess.Popen(["sleep", "30"])
    kfdemu("gpu", "vmfault", hex(gpu0), "0x1000", str(bystander.pid))
    assert not [s for s in a.heard() + b.heard() if s[0] == "VmFault"]
    bystander.kill()
    bystander.wait()
    print("  a VM fault of a process without a connection: nobody heard it")

    a.quit()
    b.quit()
    for _ in range(100):
        seen = open(out_path).read()
        if "Resetting" in seen:
            break
        time.sleep(0.05)
    gdbus.terminate()
    gdbus.wait()
    assert "Resetting" in seen, seen
    assert "ContentsLost" not in seen and "VmFault" not in seen and "/org/svmd1/range/" not in seen, seen
    print("gdbus monitor as uid 2 heard GPU 0's Resetting change and nothing about ranges or faults")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--tenant":
        tenant()
    else:
        main()
