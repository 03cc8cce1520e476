#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A holder svmd did not write (dbus-python): attaches with the token in argv[1],
prints "attached ID", and when RevokeRequested names its range, releases it and
prints "released ID SECONDS" (how long before the deadline it did). It never
subscribed: svmd sends RevokeRequested to a holder whether it did or not."""

import os
import sys
import time

import dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib


def main():
    token = sys.argv[1]
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(os.environ["SVMD_BUS_ADDRESS"])
    manager = dbus.Interface(bus.get_object("org.svmd1", "/org/svmd1"), "org.svmd1.Manager")
    loop = GLib.MainLoop()
    held = {}

    def on_revoke(range_id, uid, deadline_usec):
        if range_id != held.get("id"):
            return
        left = deadline_usec / 1e6 - time.time()
        manager.Release(dbus.UInt64(range_id))
        print(f"released {range_id} {left:.3f}", flush=True)
        loop.quit()

    bus.add_signal_receiver(on_revoke, signal_name="RevokeRequested", dbus_interface="org.svmd1.Manager",
                            path="/org/svmd1")
    range_id, _va, _size, fd = manager.Attach(token)
    os.close(fd.take())
    held["id"] = int(range_id)
    print(f"attached {range_id}", flush=True)

    def give_up():
        print("no RevokeRequested within 60 s", flush=True)
        sys.exit(1)

    GLib.timeout_add_seconds(60, give_up)
    loop.run()


if __name__ == "__main__":
    main()
