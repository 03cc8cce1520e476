#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The running daemon's introspection equals protocol/*.xml: every method with
its argument names, types and directions, every signal and property."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET


def busctl(*args):
    return subprocess.run(["busctl", "--address=" + os.environ["SVMD_BUS_ADDRESS"], *args],
                          check=True, capture_output=True, text=True).stdout


def interface_model(root, name):
    for iface in root.iter("interface"):
        if iface.get("name") != name:
            continue
        model = {}
        for m in iface.findall("method"):
            model[("method", m.get("name"))] = [(a.get("name"), a.get("type"), a.get("direction", "in"))
                                                for a in m.findall("arg")]
        for s in iface.findall("signal"):
            model[("signal", s.get("name"))] = [(a.get("name"), a.get("type")) for a in s.findall("arg")]
        for p in iface.findall("property"):
            model[("property", p.get("name"))] = (p.get("type"), p.get("access"))
        return model
    return None


def check(protocol_dir, interface, path):
    expected = interface_model(ET.parse(os.path.join(protocol_dir, interface + ".xml")).getroot(), interface)
    live_xml = busctl("introspect", "--xml-interface", "org.svmd1", path)
    live = interface_model(ET.fromstring(live_xml), interface)
    if live is None:
        sys.exit(f"{path} does not implement {interface}")
    if live != expected:
        for key in sorted(set(live) | set(expected)):
            if live.get(key) != expected.get(key):
                print(f"{interface} {key}: live {live.get(key)} != xml {expected.get(key)}", file=sys.stderr)
        sys.exit(f"{interface}: live introspection differs from protocol/{interface}.xml")
    print(f"{interface}: {len(expected)} members match")


def main():
    protocol_dir = sys.argv[1]
    check(protocol_dir, "org.svmd1.Manager", "/org/svmd1")

    gpus = busctl("--json=short", "call", "org.svmd1", "/org/svmd1", "org.svmd1.Manager", "ListGpus")
    import json
    gpu_id = json.loads(gpus)["data"][0][0][0]
    check(protocol_dir, "org.svmd1.Gpu", f"/org/svmd1/gpu/{gpu_id}")

    out = busctl("--json=short", "call", "org.svmd1", "/org/svmd1", "org.svmd1.Manager", "Allocate",
                 "tusa{sv}", "4096", "0", "gtt", "1", "persistent", "b", "true")
    range_path = json.loads(out)["data"][2]
    check(protocol_dir, "org.svmd1.Range", range_path)


if __name__ == "__main__":
    main()
