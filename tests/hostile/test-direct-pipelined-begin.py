#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Clients svmd did not write call Allocate over io.socket as their first call:
libdbus (python3-dbus) and GDBus (through python3-gi) send it in the same write
as the SASL BEGIN when they are quick. Each must get its reply, not NoReply (run
under svmd-harness). Whether the library's writes coalesce depends on timing, so
the same call is also sent with BEGIN in one write, marshalled by GDBus. The
gdbus command-line tool cannot be used: it always says Hello to a bus."""

import os
import socket
import sys
import time

import dbus
import gi

gi.require_version("Gio", "2.0")
gi.require_version("GLib", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

ADDRESS = "unix:path=" + os.path.join(os.environ["SVMD_RUNTIME_DIR"], "io.socket")
NAME, PATH, IFACE = "org.svmd1", "/org/svmd1", "org.svmd1.Manager"
TIMEOUT = 10


def first_gpu():
    bus = dbus.bus.BusConnection(os.environ["SVMD_BUS_ADDRESS"])
    gpus = bus.call_blocking(NAME, PATH, IFACE, "ListGpus", "", [], timeout=TIMEOUT)
    bus.close()
    return int(gpus[0][0])


def python_dbus(gpu):
    conn = dbus.connection.Connection(ADDRESS)
    start = time.monotonic()
    rid, va, path = conn.call_blocking(NAME, PATH, IFACE, "Allocate", "tusa{sv}",
                                       [dbus.UInt64(4096), dbus.UInt32(gpu), "gtt", dbus.Dictionary({}, signature="sv")],
                                       timeout=TIMEOUT)
    took = time.monotonic() - start
    assert int(rid) > 0 and str(path).startswith("/org/svmd1/range/"), (rid, va, path)
    print(f"python3-dbus: Allocate as the first call answered in {took * 1000:.1f} ms: range {int(rid)}")
    conn.close()


def gdbus(gpu):
    conn = Gio.DBusConnection.new_for_address_sync(ADDRESS, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT,
                                                   None, None)
    start = time.monotonic()
    try:
        reply = conn.call_sync(NAME, PATH, IFACE, "Allocate", GLib.Variant("(tusa{sv})", (4096, gpu, "gtt", {})),
                               GLib.VariantType.new("(tto)"), Gio.DBusCallFlags.NONE, TIMEOUT * 1000, None)
    except GLib.Error as e:
        print(f"GDBus: Allocate failed: {e.message}", file=sys.stderr)
        sys.exit(1)
    took = time.monotonic() - start
    rid, va, path = reply.unpack()
    assert rid > 0 and path.startswith("/org/svmd1/range/"), (rid, va, path)
    print(f"GDBus: Allocate as the first call answered in {took * 1000:.1f} ms: range {rid}")
    conn.close_sync(None)


def read_line(sock):
    line = b""
    while not line.endswith(b"\r\n"):
        c = sock.recv(1)
        assert c, "svmd closed the connection during authentication"
        line += c
    return line


def one_write(gpu):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(ADDRESS[len("unix:path="):])
    sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
    assert read_line(sock).startswith(b"OK "), "AUTH refused"
    sock.sendall(b"NEGOTIATE_UNIX_FD\r\n")
    assert read_line(sock) == b"AGREE_UNIX_FD\r\n"
    call = Gio.DBusMessage.new_method_call(NAME, PATH, IFACE, "Allocate")
    call.set_body(GLib.Variant("(tusa{sv})", (4096, gpu, "gtt", {})))
    call.set_serial(1)
    sock.sendall(b"BEGIN\r\n" + call.to_blob(Gio.DBusCapabilityFlags.UNIX_FD_PASSING))
    sock.settimeout(TIMEOUT)
    start = time.monotonic()
    data = b""
    try:
        while True:
            if len(data) >= 16:
                need = Gio.DBusMessage.bytes_needed(data[:16])
                if len(data) >= need:
                    break
            chunk = sock.recv(65536)
            assert chunk, "svmd closed the connection"
            data += chunk
    except socket.timeout:
        print(f"BEGIN and Allocate in one write: no reply within {TIMEOUT} s", file=sys.stderr)
        sys.exit(1)
    took = time.monotonic() - start
    reply = Gio.DBusMessage.new_from_blob(data, Gio.DBusCapabilityFlags.UNIX_FD_PASSING)
    assert reply.get_message_type() == Gio.DBusMessageType.METHOD_RETURN, reply.print_(0)
    assert reply.get_reply_serial() == 1
    rid, va, path = reply.get_body().unpack()
    print(f"BEGIN and Allocate in one write: answered in {took * 1000:.1f} ms: range {rid}")
    sock.close()


gpu = first_gpu()
one_write(gpu)
python_dbus(gpu)
gdbus(gpu)
