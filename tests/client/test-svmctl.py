#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""svmctl against svmd on the emulated node (run under svmd-harness with
tests/client/svmctl-test.conf): every command in human and --json form, and
the documented exit code of each error class.

    test-svmctl.py SVMCTL KFDEMU-CTL
"""

import json
import os
import re
import subprocess
import sys
import time
import traceback

SVMCTL, KFDEMU_CTL = sys.argv[1], sys.argv[2]

EXIT_OK, EXIT_GENERIC, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_DENIED = 0, 1, 2, 3, 4
EXIT_NO_SPACE, EXIT_BUSY, EXIT_NOT_SUPPORTED, EXIT_KERNEL, EXIT_UNREACHABLE = 5, 6, 7, 8, 9

failures = 0


def run(*args, code=EXIT_OK, env=None, stdin=None):
    p = subprocess.run([SVMCTL, *args], capture_output=True, text=True, env=env, timeout=60, input=stdin)
    if p.returncode != code:
        raise AssertionError(f"svmctl {' '.join(args)}: exit {p.returncode}, expected {code}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    if code != EXIT_OK:
        # Every failure says what went wrong in a sentence.
        assert p.stderr.startswith("svmctl: "), p.stderr
    return p


def js(*args):
    p = run("--json", *args)
    return json.loads(p.stdout)


def ctl(*args):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    subprocess.run([KFDEMU_CTL, *args], check=True, env=env, stdout=subprocess.DEVNULL)


def test(fn):
    global failures
    print(f"== {fn.__name__}", file=sys.stderr)
    try:
        fn()
    except AssertionError as e:
        failures += 1
        print(f"FAIL {fn.__name__}: {e}", file=sys.stderr)
        traceback.print_exc()
    return fn


GPUS = []


@test
def test_help_and_usage():
    p = run("--help")
    assert "Usage: svmctl" in p.stdout
    assert "set-attr ID" in p.stdout and "--domain vram|gtt|host|svm" in p.stdout
    assert "--svm-access-in-place" in run("set-attr", "--help").stdout
    # svm pages stay in system memory (svmctl(1)): the help says so and promises no migration.
    h = run("alloc", "--help").stdout
    assert "stay in system memory" in h and "migrate its pages" not in h and "pages migrate" not in h, h
    for verb in ["status", "gpus", "ranges", "show", "alloc", "set-attr", "commit", "free", "map", "unmap", "export", "share",
                 "attach", "release", "tokens", "revoke", "usage", "capacity", "reload", "monitor"]:
        p = run(verb, "--help")
        assert f"svmctl [OPTIONS] {verb}" in p.stdout, p.stdout
        p = run("help", verb)
        assert verb in p.stdout
    assert run("--version").stdout.startswith("svmctl ")
    run(code=EXIT_USAGE)
    run("frobnicate", code=EXIT_USAGE)
    run("--bogus", "status", code=EXIT_USAGE)
    run("ranges", "--bogus", code=EXIT_USAGE)
    run("status", "extra", code=EXIT_USAGE)


@test
def test_status():
    p = run("status")
    assert re.search(r"^svmd 0\.1\.0 \(KFD interface \d+\.\d+\)$", p.stdout, re.M), p.stdout
    assert re.search(r"GPUs: 8$", p.stdout, re.M)
    s = js("status")
    assert s["version"] == "0.1.0" and s["gpus"] == 8 and s["direct"] is True
    assert set(s) == {"version", "kfd_version", "gpus", "ranges", "bytes_allocated", "clients", "direct", "xnack",
                      "n_lost", "lost", "runtime_free", "runtime_size", "stored_fds", "fd_store_max"}
    # What persistent ranges depend on: the runtime directory's space and the fd store.
    assert 0 < s["runtime_free"] <= s["runtime_size"] and s["fd_store_max"] == 32768, s
    assert re.search(r"^\s*Journal: .* free of .* in the runtime directory", p.stdout, re.M), p.stdout
    assert s["n_lost"] == 0 and s["lost"] == []
    # The emulated KFD process starts with XNACK off.
    assert s["xnack"] is False
    assert re.search(r"^\s*XNACK: off$", p.stdout, re.M), p.stdout
    # Over the direct socket only, and options after the command.
    assert "Hot path: direct socket" in run("status", "--direct").stdout
    assert js("--direct", "status")["gpus"] == 8
    # Nothing listens there: exit 9.
    run("--address", "unix:path=/nonexistent/bus", "status", code=EXIT_UNREACHABLE)
    env = dict(os.environ, SVMD_RUNTIME_DIR="/nonexistent")
    run("--direct", "status", code=EXIT_UNREACHABLE, env=env)


@test
def test_gpus():
    g = js("gpus")["gpus"]
    assert len(g) == 8
    for x in g:
        assert x["gpu_id_hex"] == f"0x{x['gpu_id']:x}"
        assert x["target"] == "gfx942"
        assert x["vram_total"] == x["vram_used"] + x["vram_free"]
        assert set(x) == {"gpu_id", "gpu_id_hex", "node_id", "target", "name", "vram_total", "vram_used",
                          "vram_free", "render_minor"}
        GPUS.append(x["gpu_id_hex"])
    p = run("gpus")
    assert p.stdout.splitlines()[0].split()[:4] == ["GPU", "NODE", "TARGET", "NAME"]
    for h in GPUS:
        # Nothing is allocated yet: VRAM, USED and FREE each in their own column. USED is what the
        # kernel does not offer (AVAILABLE_MEMORY): its page-table estimate, (512 GiB of RAM +
        # 8 x 192 GiB of VRAM) >> 14 = 128 MiB per GPU on this node (docs/emulator.md).
        assert re.search(rf"^{h}\s+\d+\s+gfx942\s.*\s192\.0 GiB\s+128\.0 MiB\s+191\.9 GiB\s+renderD\d+$",
                         p.stdout, re.M), p.stdout
    assert "renderD128" in p.stdout


@test
def test_alloc_ranges_map_free():
    g0, g1, g2 = GPUS[0], GPUS[1], GPUS[2]
    a = js("alloc", "4G", "--gpu", g0, "--map", f"{g0},{int(g1, 16)}", "--label", "big", "--persistent")
    assert a["size"] == 4 << 30 and a["domain"] == "vram" and a["persistent"] is True
    assert a["va_hex"] == f"0x{a['va']:x}" and a["mapped_gpus"] == [int(g0, 16), int(g1, 16)]
    p = run("alloc", "512M", "--gpu", g1, "--flags", "writable,public", "--persistent")
    m = re.match(r"Allocated range (\d+): 512\.0 MiB of vram on GPU (0x[0-9a-f]+) at (0x[0-9a-f]+)\.", p.stdout)
    assert m and m.group(2) == g1, p.stdout
    b = int(m.group(1))
    h = js("alloc", "0x100000", "--domain", "host", "--persistent", "--label", "h")
    assert h["domain"] == "host"
    p = run("alloc", "1M", "--gpu", g0)
    assert "not persistent" in p.stderr

    d = js("alloc", "1G", "--gpu", g0, "--dry-run")
    assert d["dry_run"] is True and d["id"] == 0
    assert "Dry run" in run("alloc", "1G", "--gpu", g0, "--dry-run").stdout

    r = {x["id"]: x for x in js("ranges")["ranges"]}
    assert a["id"] in r and b in r and h["id"] in r
    x = r[a["id"]]
    assert x["size"] == 4 << 30 and x["label"] == "big" and x["state"] == "active"
    assert x["flags"] == ["writable"] and x["owner_uid"] == os.getuid()
    assert set(x) == {"id", "va", "va_hex", "size", "domain", "home_gpu", "mapped_gpus", "flags", "owner_uid",
                      "label", "state", "persistent", "holders", "detached"}
    assert x["persistent"] is True and x["holders"] == 0 and x["detached"] is False
    assert r[b]["flags"] == ["writable", "public"]
    assert [y["id"] for y in js("ranges", "--label", "big")["ranges"]] == [a["id"]]
    assert all(y["home_gpu"] == int(g1, 16) or int(g1, 16) in y["mapped_gpus"]
               for y in js("ranges", "--gpu", g1)["ranges"])
    assert len(js("ranges", "--all", "--owner", str(os.getuid()))["ranges"]) == len(r)
    p = run("ranges")
    assert re.search(rf"^\s*{a['id']}\s+{a['va_hex']}\s+4\.0 GiB\s+vram\s+{g0}\s+{g0},{g1}\s+writable\s+0\s+active\s+yes\s+0\s+big$",
                     p.stdout, re.M), p.stdout

    p = run("map", str(a["id"]), g2)
    assert p.stdout.strip() == f"Mapped range {a['id']} to GPU {g2}."
    assert js("map", str(b), f"{g0},{g2}")["mapped"] == [int(g0, 16), int(g2, 16)]
    assert "Dry run" in run("map", "--dry-run", str(b), GPUS[3]).stdout
    assert js("unmap", str(a["id"]), g2)["unmapped"] == [int(g2, 16)]
    assert run("unmap", str(b), g2).stdout.startswith("Unmapped range")
    mapped = {x["id"]: x["mapped_gpus"] for x in js("ranges")["ranges"]}
    assert mapped[a["id"]] == [int(g0, 16), int(g1, 16)] and mapped[b] == [int(g0, 16)]

    # Error classes.
    run("alloc", "4X", "--gpu", g0, code=EXIT_USAGE)
    run("alloc", "1M", code=EXIT_USAGE)                      # VRAM needs a GPU
    run("alloc", "1M", "--gpu", g0, "--domain", "dram", code=EXIT_USAGE)
    run("alloc", "1M", "--gpu", g0, "--flags", "shiny", code=EXIT_USAGE)  # the daemon's InvalidArgs
    p = run("alloc", "1M", "--gpu", "0x1", code=EXIT_NOT_FOUND)
    assert "see `svmctl gpus`" in p.stderr, p.stderr   # svmctl commands, not D-Bus methods
    run("alloc", "1T", "--gpu", g0, code=EXIT_NO_SPACE)        # more than the GPU has
    run("alloc", "65G", "--gpu", g0, code=EXIT_NO_SPACE)       # over the 64G quota
    run("ranges", "--gpu", "0x1", code=EXIT_NOT_FOUND)
    run("map", "999999", g0, code=EXIT_NOT_FOUND)
    run("map", str(a["id"]), "0x1", code=EXIT_NOT_FOUND)
    run("map", str(a["id"]), "zz", code=EXIT_USAGE)
    run("map", "abc", g0, code=EXIT_USAGE)
    run("map", str(a["id"]), code=EXIT_USAGE)
    run("free", code=EXIT_USAGE)
    run("free", "999999", code=EXIT_NOT_FOUND)

    # The kernel fails half-way through a map: nothing changes, exit 8.
    ctl("fault", "add", "ioctl=MAP_MEMORY_TO_GPU errno=EIO after=1")
    try:
        p = run("map", str(b), f"{GPUS[4]},{GPUS[5]}", code=EXIT_KERNEL)
        assert "GPU" in p.stderr
    finally:
        ctl("fault", "clear")
    assert {x["id"]: x["mapped_gpus"] for x in js("ranges")["ranges"]}[b] == [int(g0, 16)]

    # A host range backs a batch range: freeing it is busy.
    # (No batch from svmctl; Busy is covered by libsvmd's test.)

    assert run("free", str(b)).stdout.strip() == f"Freed range {b}."
    assert js("free", str(a["id"])) == {"id": a["id"], "freed": True, "detached": False, "holders": 0}
    assert js("free", str(h["id"]))["freed"] is True
    # Ids are never reused: a retried free answers like the first (idempotent for schedulers).
    run("free", str(b))
    run("free", "888888", code=EXIT_NOT_FOUND)


def svm_of(rid):
    return {x["id"]: x for x in js("ranges")["ranges"]}[rid].get("svm")


@test
def test_alloc_says_what_svmd_did():
    # gtt, host and svm ranges get a home GPU from svmd: svmctl prints that one, not "GPU 0x0".
    for domain in ("host", "gtt", "svm"):
        a = js("alloc", "1M", "--domain", domain, "--persistent")
        home = {x["id"]: x for x in js("ranges")["ranges"]}[a["id"]]["home_gpu"]
        assert home != 0 and a["gpu"] == home, (a, home)
        p = run("alloc", "1M", "--domain", domain, "--persistent")
        assert "GPU 0x0" not in p.stdout, p.stdout
        if domain != "svm":
            assert re.match(rf"Allocated range \d+: 1\.0 MiB of {domain} on GPU {GPUS[0]} at ", p.stdout), p.stdout
        run("free", str(a["id"]))
        run("free", re.match(r"Allocated range (\d+)", p.stdout).group(1))
        # A dry run without --gpu has no home yet: it names none.
        d = js("alloc", "1M", "--domain", domain, "--dry-run")
        assert d["gpu"] is None, d
        assert "GPU 0x0" not in run("alloc", "1M", "--domain", domain, "--dry-run").stdout

    # A retried request id prints the range the first request made.
    a = js("alloc", "64K", "--domain", "host", "--persistent", "--request-id", "svmctl-said")
    p = run("alloc", "64K", "--domain", "host", "--persistent", "--request-id", "svmctl-said")
    assert p.stdout.startswith(f"Allocated range {a['id']}: 64.0 KiB of host on GPU "), p.stdout
    run("free", str(a["id"]))


@test
def test_json_errors():
    # With --json a failure is a JSON document on stdout too: name, message, exit code.
    p = run("--json", "free", "999999", code=EXIT_NOT_FOUND)
    e = json.loads(p.stdout)["error"]
    assert e["name"] == "org.svmd1.Error.NoSuchRange" and e["exit_code"] == EXIT_NOT_FOUND, e
    assert "999999" in e["message"] and e["message"] in p.stderr, (e, p.stderr)
    p = run("alloc", "1M", "--gpu", "0x1", "--json", code=EXIT_NOT_FOUND)
    assert json.loads(p.stdout)["error"]["name"] == "org.svmd1.Error.NoSuchGpu", p.stdout
    p = run("--json", "alloc", "4X", code=EXIT_USAGE)
    assert json.loads(p.stdout) == {"error": {"name": "svmctl.Error.Usage", "exit_code": EXIT_USAGE,
                                              "message": "invalid size '4X' (e.g. 4G, 512M, 0x1000)"}}, p.stdout
    p = run("--json", "frobnicate", code=EXIT_USAGE)
    assert json.loads(p.stdout)["error"]["exit_code"] == EXIT_USAGE, p.stdout
    p = run("--json", "--address", "unix:path=/nonexistent/bus", "status", code=EXIT_UNREACHABLE)
    assert json.loads(p.stdout)["error"]["exit_code"] == EXIT_UNREACHABLE, p.stdout
    # Without --json, stdout stays empty.
    assert run("free", "999999", code=EXIT_NOT_FOUND).stdout == ""


@test
def test_svm():
    g0, g1, g2, g3 = (int(g, 16) for g in GPUS[:4])
    a = js("alloc", "4M", "--domain", "svm", "--gpu", GPUS[0], "--persistent", "--label", "svm1",
           "--svm-prefetch", "system", "--svm-access", f"{GPUS[1]},{g2}", "--svm-access-in-place", GPUS[3],
           "--svm-flags", "coherent,gpu-read-mostly", "--svm-granularity", "4")
    assert a["domain"] == "svm" and a["gpu"] == g0 and a["size"] == 4 << 20
    assert a["svm"] == {"prefetch": 0, "access": [g1, g2], "access-in-place": [g3],
                        "flags": ["coherent", "gpu-read-mostly"], "granularity": 4}, a
    x = {r["id"]: r for r in js("ranges")["ranges"]}[a["id"]]
    assert x["domain"] == "svm" and sorted(x["mapped_gpus"]) == sorted([g1, g2, g3])
    assert set(x["svm"]) == {"preferred", "prefetch", "flags", "granularity", "access", "access-in-place"}
    assert x["svm"] == {"preferred": g0, "prefetch": 0, "flags": ["coherent", "gpu-read-mostly"], "granularity": 4,
                        "access": [g1, g2], "access-in-place": [g3]}, x["svm"]

    # No preferred GPU, defaults otherwise; other domains have no "svm" key.
    p = run("alloc", "1M", "--domain", "svm", "--persistent")
    m = re.match(r"Allocated range (\d+): 1\.0 MiB of svm at (0x[0-9a-f]+)\.", p.stdout)
    assert m, p.stdout
    b = int(m.group(1))
    assert svm_of(b)["preferred"] == 0xFFFFFFFF and svm_of(b)["access"] == []
    assert "Dry run: 2.0 MiB of svm preferring GPU" in run("alloc", "2M", "--domain", "svm", "--gpu", GPUS[0],
                                                           "--dry-run").stdout
    v = js("alloc", "1M", "--gpu", GPUS[0], "--persistent")
    assert "svm" not in {r["id"]: r for r in js("ranges")["ranges"]}[v["id"]]

    # The human listing: the ranges table, then the SVM table of the svm ranges.
    p = run("ranges")
    assert re.search(r"^ID\s+PREFERRED\s+PREFETCH\s+SVM FLAGS\s+GRANULARITY\s+ACCESS\s+IN PLACE$", p.stdout, re.M), p.stdout
    assert re.search(rf"^\s*{a['id']}\s+{GPUS[0]}\s+system\s+coherent,gpu-read-mostly\s+4\s+{GPUS[1]},{GPUS[2]}\s+{GPUS[3]}$",
                     p.stdout, re.M), p.stdout
    assert re.search(rf"^\s*{b}\s+none\s+", p.stdout, re.M), p.stdout

    # set-attr: human, JSON, dry run; GPUs in no list keep their access.
    assert run("set-attr", str(a["id"]), "--svm-preferred", "none").stdout.strip() == \
        f"Set the SVM attributes of range {a['id']}."
    r = js("set-attr", str(a["id"]), "--svm-flags", "none", "--svm-no-access", GPUS[1], "--svm-granularity", "9")
    assert r == {"id": a["id"], "dry_run": False, "svm": {"flags": [], "no-access": [g1], "granularity": 9}}, r
    assert "Dry run" in run("set-attr", "--dry-run", str(a["id"]), "--svm-preferred", "system").stdout
    assert js("set-attr", str(a["id"]), "--svm-prefetch", GPUS[2], "--dry-run")["dry_run"] is True
    st = svm_of(a["id"])
    assert st == {"preferred": 0xFFFFFFFF, "prefetch": 0, "flags": [], "granularity": 9, "access": [g2],
                  "access-in-place": [g3]}, st

    # map/unmap give and take access.
    run("map", str(a["id"]), GPUS[4])
    assert int(GPUS[4], 16) in svm_of(a["id"])["access"]
    run("unmap", str(a["id"]), GPUS[4])
    assert int(GPUS[4], 16) not in svm_of(a["id"])["access"]
    assert js("export", str(a["id"]))["fd_kind"] == "memfd"

    # Error classes.
    run("set-attr", str(a["id"]), code=EXIT_USAGE)                                  # nothing to set
    run("set-attr", str(a["id"]), "--svm-granularity", "64", code=EXIT_USAGE)
    run("set-attr", str(a["id"]), "--svm-prefetch", "none", code=EXIT_USAGE)
    run("set-attr", str(a["id"]), "--svm-preferred", "gpu7", code=EXIT_USAGE)
    run("set-attr", str(a["id"]), "--svm-access", "x,y", code=EXIT_USAGE)
    run("set-attr", str(a["id"]), "--svm-access", GPUS[1], "--svm-no-access", GPUS[1], code=EXIT_USAGE)
    run("set-attr", str(a["id"]), "--svm-flags", "shiny", code=EXIT_USAGE)          # the daemon's InvalidArgs
    run("set-attr", str(a["id"]), "--bogus", code=EXIT_USAGE)
    run("set-attr", "--svm-granularity", "2", code=EXIT_USAGE)                      # no ID
    run("set-attr", str(v["id"]), "--svm-granularity", "2", code=EXIT_USAGE)        # a vram range
    run("set-attr", "999999", "--svm-granularity", "2", code=EXIT_NOT_FOUND)
    run("set-attr", str(a["id"]), "--svm-access", "0x1", code=EXIT_NOT_FOUND)
    run("alloc", "1M", "--gpu", GPUS[0], "--svm-granularity", "2", code=EXIT_USAGE)  # svm options, vram
    run("alloc", "1M", "--domain", "svm", "--flags", "writable", code=EXIT_USAGE)
    run("alloc", "1M", "--domain", "svm", "--svm-preferred", "0x1", code=EXIT_NOT_FOUND)

    # The kernel fails half-way through SET_ATTR: svmd sets everything back, exit 8.
    ctl("fault", "add", "ioctl=SVM op=set after=2 errno=EIO")
    try:
        p = run("set-attr", str(a["id"]), "--svm-preferred", GPUS[1], "--svm-granularity", "3", "--svm-flags",
                "coherent", code=EXIT_KERNEL)
    finally:
        ctl("fault", "clear")
    assert svm_of(a["id"]) == st, (svm_of(a["id"]), st)

    for rid in (a["id"], b, v["id"]):
        run("free", str(rid))


@test
def test_export_share_attach():
    a = js("alloc", "2M", "--gpu", GPUS[0], "--persistent")
    h = js("alloc", "64K", "--domain", "host", "--persistent")
    e = js("export", str(a["id"]))
    assert e == {"id": a["id"], "va": a["va"], "va_hex": a["va_hex"], "size": 2 << 20, "fd_kind": "dma-buf"}
    assert js("export", str(h["id"]))["fd_kind"] == "memfd"
    assert "exports as a dma-buf: 2.0 MiB" in run("export", str(a["id"])).stdout
    run("export", "999999", code=EXIT_NOT_FOUND)

    token = run("share", str(a["id"]), "--uid", str(os.getuid())).stdout.strip()
    assert len(token) >= 16
    s = js("share", str(a["id"]))
    assert s["id"] == a["id"] and s["token"] != token
    assert js("share", str(h["id"]), "--read-only")["id"] == h["id"]
    run("share", "999999", code=EXIT_NOT_FOUND)
    run("share", str(a["id"]), "--uid", "nobody", code=EXIT_USAGE)

    t = js("attach", token)
    assert t["id"] == a["id"] and t["va"] == a["va"] and t["size"] == 2 << 20 and t["fd_kind"] == "dma-buf"
    assert f"Attached range {a['id']}" in run("attach", s["token"]).stdout
    run("attach", "not-a-token", code=EXIT_NOT_FOUND)
    run("attach", code=EXIT_USAGE)

    run("free", str(a["id"]))
    run("free", str(h["id"]))


@test
def test_tokens_revoke_request_ids():
    h = js("alloc", "64K", "--domain", "host", "--persistent")
    t1 = run("share", str(h["id"]), "--uid", "2").stdout.strip()
    t2 = js("share", str(h["id"]), "--read-only")["token"]
    listed = js("tokens", str(h["id"]))
    assert listed["id"] == h["id"]
    assert {t["token"] for t in listed["tokens"]} == {t1, t2}, listed
    assert [t.get("uid") for t in listed["tokens"] if t["token"] == t1] == [2]
    assert t1 in run("tokens", str(h["id"])).stdout
    run("tokens", "999999", code=EXIT_NOT_FOUND)

    assert js("revoke", t1) == {"token": t1}
    assert [t["token"] for t in js("tokens", str(h["id"]))["tokens"]] == [t2]
    run("attach", t1, code=EXIT_NOT_FOUND)
    run("revoke", t1, code=EXIT_NOT_FOUND)
    run("revoke", "--range", str(h["id"]), "--uid", "2", code=EXIT_NOT_FOUND)
    run("revoke", "--range", str(h["id"]), code=EXIT_USAGE)
    run("revoke", code=EXIT_USAGE)

    # A request id names one request: other arguments are refused, nothing is done.
    a = js("alloc", "64K", "--domain", "host", "--persistent", "--request-id", "svmctl-rid")
    assert js("alloc", "64K", "--domain", "host", "--persistent", "--request-id", "svmctl-rid")["id"] == a["id"]
    p = run("alloc", "128K", "--domain", "host", "--persistent", "--request-id", "svmctl-rid", code=EXIT_BUSY)
    assert "other arguments" in p.stderr, p.stderr
    run("free", str(a["id"]))
    run("free", str(h["id"]))


@test
def test_share_expires_cgroup():
    import time
    h = js("alloc", "64K", "--domain", "host", "--persistent")
    now = time.time()
    t1 = js("share", str(h["id"]), "--expires", "10m")["token"]
    t2 = js("share", str(h["id"]), "--expires", "1h30m")["token"]
    t3 = js("share", str(h["id"]), "--expires", "2040-01-02T03:04:05Z")["token"]
    t4 = js("share", str(h["id"]), "--expires", "2040-01-02T04:04:05+01:00")["token"]
    t5 = js("share", str(h["id"]), "--expires", f"@{int(now) + 3600}")["token"]
    t6 = js("share", str(h["id"]), "--cgroup", "/machine.slice/")["token"]
    exp = {t["token"]: t["expires_usec"] for t in js("tokens", str(h["id"]))["tokens"]}
    assert abs(exp[t1] / 1e6 - (now + 600)) < 30, (exp[t1], now)
    assert abs(exp[t2] / 1e6 - (now + 5400)) < 30, (exp[t2], now)
    assert exp[t3] == exp[t4] == 2209086245 * 10**6, (exp[t3], exp[t4])
    assert exp[t5] == (int(now) + 3600) * 10**6 and exp[t6] == 0
    assert "2040-01-02" in run("tokens", str(h["id"])).stdout
    # A bare number says no unit; garbage, and a past time, are refused; nothing is shared.
    for bad in ("600", "10x", "m", "2040-13-01T00:00Z", "tomorrow", ""):
        p = run("share", str(h["id"]), "--expires", bad, code=EXIT_USAGE)
        assert "10m" in p.stderr, p.stderr
    run("share", str(h["id"]), "--expires", "2001-01-01T00:00:00Z", code=EXIT_USAGE)
    # A grant's cgroup is an absolute path prefix, as in svmd.conf's "match".
    p = run("share", str(h["id"]), "--cgroup", "machine.slice", code=EXIT_USAGE)
    assert "absolute" in p.stderr, p.stderr
    run("share", str(h["id"]), "--cgroup", "/" + "x" * 1024, code=EXIT_USAGE)
    assert len(js("tokens", str(h["id"]))["tokens"]) == 6
    run("free", str(h["id"]))


@test
def test_usage_capacity_reload():
    before = js("usage")
    a = js("alloc", "1G", "--gpu", GPUS[1], "--persistent")
    u = js("usage")
    assert u["scope"] == f"uid:{os.getuid()}"
    assert u["ranges"] == before["ranges"] + 1 and u["vram"] == before["vram"] + (1 << 30)
    assert u["quota"] == {"ranges": 100, "vram": 64 << 30, "vram_per_gpu": 48 << 30, "host": 4 << 30}, u
    assert {"gpu_id": int(GPUS[1], 16), "bytes": 1 << 30} in u["vram_per_gpu"], u
    assert set(u) == {"scope", "ranges", "vram", "host", "vram_per_gpu", "quota"}
    assert js("usage", f"uid:{os.getuid()}")["vram"] == u["vram"]
    p = run("usage")
    assert re.search(r"VRAM: [0-9.]+ GiB \(limit: 64\.0 GiB\)", p.stdout), p.stdout
    assert re.search(r"Host: .* \(limit: 4\.0 GiB\)", p.stdout), p.stdout
    assert re.search(rf"VRAM {GPUS[1]}\s+1\.0 GiB", p.stdout), p.stdout
    run("usage", "bogus:scope", code=EXIT_USAGE)

    c = js("capacity")
    assert set(c) == {"gpus", "scopes"}
    assert len(c["gpus"]) == 8
    g1 = [g for g in c["gpus"] if g["gpu_id_hex"] == GPUS[1]][0]
    assert g1["vram_used"] >= 1 << 30 and g1["vram_total"] == g1["vram_used"] + g1["vram_free"]
    assert c["scopes"][0]["scope"] == u["scope"] and c["scopes"][0]["quota"]["vram"] == 64 << 30
    p = run("capacity")
    assert "SCOPE" in p.stdout and u["scope"] in p.stdout and "64.0 GiB" in p.stdout

    assert run("reload").stdout.strip() == "svmd reloaded its configuration."
    assert js("reload") == {"reloaded": True}
    run("free", str(a["id"]))


monitor_proc = [None]


def monitor(*args, count, action):
    p = subprocess.Popen([SVMCTL, *args, "monitor", "--count", str(count)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    monitor_proc[0] = p
    try:
        # The subscription is in place once it says so.
        line = p.stderr.readline()
        assert "Watching svmd's signals" in line, line
        action()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    return out


@test
def test_monitor():
    ids = []

    def act():
        a = js("alloc", "1M", "--gpu", GPUS[0], "--persistent")
        ids.append(a["id"])
        run("free", str(a["id"]))
        run("alloc", "100G", "--gpu", GPUS[0], code=EXIT_NO_SPACE)   # quota: 64G

    out = monitor("--json", count=3, action=act)
    ev = [json.loads(x) for x in out.splitlines()]
    assert ev[0] == {"signal": "RangeCreated", "id": ids[0]}, ev
    assert ev[1] == {"signal": "RangeFreed", "id": ids[0]}, ev
    assert ev[2]["signal"] == "QuotaExceeded" and ev[2]["scope"] == f"uid:{os.getuid()}", ev

    out = monitor(count=2, action=act)
    lines = out.splitlines()
    assert re.match(rf"RangeCreated\s+range {ids[1]}$", lines[0]), out
    assert re.match(rf"RangeFreed\s+range {ids[1]}$", lines[1]), out
    run("monitor", "--count", "x", code=EXIT_USAGE)


@test
def test_gpu_reset_and_vm_fault():
    # A reset of a GPU: its VRAM ranges lose their contents (ContentsLost, State contents-lost),
    # allocations on it are refused with a retryable error until the reset ends, then work again.
    gpu = GPUS[0]
    ids = []

    def act():
        a = js("alloc", "2M", "--gpu", gpu, "--persistent")
        g = js("alloc", "2M", "--gpu", gpu, "--domain", "gtt", "--persistent")
        ids.extend([a["id"], g["id"]])
        ctl("gpu", "reset", gpu, "--begin", "--cause", "job hang")
        try:
            p = run("alloc", "2M", "--gpu", gpu, code=EXIT_BUSY)
            assert "is being reset" in p.stderr and "Resetting" in p.stderr, p.stderr
            assert js("gpus")  # still answers
            other = js("alloc", "2M", "--gpu", GPUS[1], "--persistent")    # other GPUs work meanwhile
            run("free", str(other["id"]))
        finally:
            ctl("gpu", "reset", gpu, "--end")

    out = monitor("--json", count=5, action=act)
    ev = [json.loads(x) for x in out.splitlines()]
    lost = [e for e in ev if e["signal"] == "ContentsLost"]
    assert len(lost) == 1 and lost[0]["id"] == ids[0], ev               # the GTT range keeps its bytes
    assert lost[0]["gpu_id_hex"] == gpu and "job hang" in lost[0]["reason"], lost
    r = js("show", str(ids[0]))
    assert r["state"] == "contents-lost", r
    assert js("show", str(ids[1]))["state"] == "active"
    b = js("alloc", "2M", "--gpu", gpu, "--persistent")                  # after the reset
    run("free", str(b["id"]))
    p = run("reuse", str(ids[0]))
    assert "active again" in p.stdout, p.stdout
    assert js("show", str(ids[0]))["state"] == "active"
    assert js("reuse", str(ids[0])) == {"id": ids[0], "reused": True}   # no-op when not lost

    # A VM fault of the monitoring process itself: it hears VmFault with its pid (human form).
    pids = []

    def fault():
        pids.append(monitor_proc[0].pid)
        ctl("gpu", "vmfault", gpu, "0x1000", str(monitor_proc[0].pid))

    out = monitor(count=1, action=fault)
    assert re.match(rf"VmFault\s+GPU {gpu}, process {pids[0]} \(svmctl\)$", out.strip()), out
    for i in ids:
        run("free", str(i))

    # The pre-reset line lost (a full FIFO): the post-reset alone still counts as a reset.
    c = js("alloc", "2M", "--gpu", gpu, "--persistent")
    ctl("gpu", "reset", gpu, "--drop-begin-line")
    for _ in range(100):
        if js("show", str(c["id"]))["state"] == "contents-lost":
            break
        time.sleep(0.02)
    assert js("show", str(c["id"]))["state"] == "contents-lost"
    js("alloc", "2M", "--gpu", gpu)
    run("free", str(c["id"]))


@test
def test_denied():
    # Another user (tests run as root, as tools/test does) may not free root's range, and cannot
    # tell it from an id that does not exist: exit 3 and the same message. Reloading is denied: exit 4.
    assert os.getuid() == 0, "run as root: the test switches to uid 65534"
    a = js("alloc", "1M", "--gpu", GPUS[0], "--persistent")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SVMCTL]
    try:
        p = subprocess.run(nobody + ["free", str(a["id"])], capture_output=True, text=True, timeout=60)
        assert p.returncode == EXIT_NOT_FOUND, (p.returncode, p.stderr)
        q = subprocess.run(nobody + ["free", str(a["id"] + 1000)], capture_output=True, text=True, timeout=60)
        assert q.returncode == EXIT_NOT_FOUND, (q.returncode, q.stderr)
        assert p.stderr == q.stderr.replace(str(a["id"] + 1000), str(a["id"])), (p.stderr, q.stderr)
        p = subprocess.run(nobody + ["reload"], capture_output=True, text=True, timeout=60)
        assert p.returncode == EXIT_DENIED, (p.returncode, p.stderr)
        # Calls for administrators say so; no range is involved.
        for args in (["reload"], ["usage", "uid:0"], ["ranges", "--all"]):
            p = subprocess.run(nobody + args, capture_output=True, text=True, timeout=60)
            assert p.returncode == EXIT_DENIED, (args, p.returncode, p.stderr)
            assert "ownership" not in p.stderr and "authorization" in p.stderr, (args, p.stderr)
    finally:
        run("free", str(a["id"]))


@test
def test_commit():
    g0, g1 = GPUS[0], int(GPUS[1], 16)
    ops = [{"op": "allocate", "size": "2M", "gpu": g0, "persistent": True, "label": "committed"},
           {"op": "map", "ref": 0, "gpus": [g1]},
           {"op": "allocate", "size": 1 << 20, "domain": "svm", "persistent": True,
            "svm": {"preferred": "system", "flags": ["coherent"], "access": [g0]}}]
    before = len(js("ranges")["ranges"])
    p = run("commit", "--dry-run", "-", stdin=json.dumps(ops))
    assert p.stdout.strip() == "Dry run: the 3 operation(s) can be committed.", p.stdout
    assert len(js("ranges")["ranges"]) == before
    r = json.loads(run("--json", "commit", "-", stdin=json.dumps({"operations": ops})).stdout)
    assert r["dry_run"] is False and [x["op"] for x in r["results"]] == ["allocate", "map", "allocate"], r
    a, s = r["results"][0]["id"], r["results"][2]["id"]
    assert r["results"][1]["id"] == a
    x = {y["id"]: y for y in js("ranges")["ranges"]}
    assert x[a]["label"] == "committed" and x[a]["mapped_gpus"] == [g1] and x[a]["home_gpu"] == int(g0, 16), x[a]
    assert x[s]["svm"]["preferred"] == 0 and x[s]["svm"]["flags"] == ["coherent"], x[s]
    # From a file, human output.
    path = f"/tmp/svmctl-commit-{os.getpid()}.json"
    with open(path, "w") as f:
        json.dump([{"op": "set-attributes", "id": s, "svm": {"granularity": 3}}, {"op": "unmap", "id": a, "gpus": [g1]}], f)
    try:
        p = run("commit", path)
        assert p.stdout.splitlines() == ["Committed 2 operation(s):", f"  0 set-attributes: range {s}",
                                         f"  1 unmap: range {a}"], p.stdout
    finally:
        os.unlink(path)
    assert svm_of(s)["granularity"] == 3
    # All or none: a free of a missing range frees nothing.
    run("commit", "-", stdin=json.dumps([{"op": "free", "id": a}, {"op": "free", "id": 999999}]),
        code=EXIT_NOT_FOUND)
    assert a in {y["id"] for y in js("ranges")["ranges"]}
    # Bad files are usage errors that say where.
    for bad, what in (("{", "stdin:"), ("[]", "non-empty"), ('[{"op": "frob"}]', "operation 0"),
                      ('[{"op": "map", "ref": 0, "gpus": []}]', "earlier allocate"),
                      ('[{"op": "free"}]', "needs the range"), ('[{"op": "allocate"}]', "size"),
                      ('[{"op": "free", "id": 1, "size": 4}]', "takes no"),
                      ('[{"op": "allocate", "size": "4X"}]', "invalid")):
        p = run("commit", "-", stdin=bad, code=EXIT_USAGE)
        assert what in p.stderr, (bad, p.stderr)
    run("commit", "/nonexistent.json", code=EXIT_USAGE)
    run("commit", code=EXIT_USAGE)
    run("commit", "-", stdin=json.dumps([{"op": "free", "id": a}, {"op": "free", "ref": 0}]), code=EXIT_USAGE)
    run("commit", "-", stdin=json.dumps([{"op": "free", "id": a}, {"op": "free", "id": s}]))
    assert not {a, s} & {y["id"] for y in js("ranges")["ranges"]}


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SVMCTL]


@test
def test_show_detached_release():
    a = js("alloc", "1M", "--domain", "host", "--persistent", "--label", "shown")
    p = run("show", str(a["id"]))
    kv = dict(line.split("=", 1) for line in p.stdout.splitlines())
    assert kv["Id"] == str(a["id"]) and kv["Domain"] == "host" and kv["Label"] == "shown", kv
    assert kv["Persistent"] == "yes" and kv["Detached"] == "no" and kv["Holders"] == "" and kv["Tokens"] == "0", kv
    assert kv["Owner"] == str(os.getuid()) and kv["State"] == "active" and kv["HomeGpu"] == GPUS[0], kv
    s = js("show", str(a["id"]))
    assert s["persistent"] is True and s["detached"] is False and s["holders"] == [] and s["tokens"] == 0, s
    run("show", "999999", code=EXIT_NOT_FOUND)
    run("show", code=EXIT_USAGE)

    # Another user holds it; the owner's free detaches it and says so.
    token = js("share", str(a["id"]))["token"]
    assert "Tokens=1" in run("show", str(a["id"])).stdout
    h = subprocess.Popen(NOBODY + ["attach", "--hold", token], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert h.stdout.readline().startswith(f"Attached range {a['id']}:")
        assert "Holding" in h.stdout.readline()
        x = {r["id"]: r for r in js("ranges")["ranges"]}[a["id"]]
        assert x["holders"] == 1 and x["persistent"] is True, x
        p = run("free", str(a["id"]))
        assert p.stdout.startswith(f"Range {a['id']} is detached: 1 holder(s) keep it"), p.stdout
        assert js("free", str(a["id"])) == {"id": a["id"], "freed": False, "detached": True, "holders": 1}
        s = js("show", str(a["id"]))
        assert s["detached"] is True and s["holders"] == [{"uid": 65534, "unit": ""}], s
        assert re.search(rf"^\s*{a['id']}\s.*\sdetached\s+yes\s+1\s+shown$", run("ranges").stdout, re.M)
    finally:
        h.kill()
        h.wait()
    # The last hold ends: svmd frees it.
    for _ in range(200):
        if subprocess.run([SVMCTL, "show", str(a["id"])], capture_output=True).returncode == EXIT_NOT_FOUND:
            break
        import time
        time.sleep(0.02)
    else:
        raise AssertionError("the detached range outlived its last holder")

    # release: only a reference the caller holds.
    p = run("release", str(a["id"]), code=EXIT_NOT_FOUND)
    assert "svmctl release" in p.stderr and "svmctl attach" in p.stderr, p.stderr
    run("release", code=EXIT_USAGE)
    run("attach", "--bogus", "x", code=EXIT_USAGE)


def hold_as_nobody(range_id):
    """svmctl attach --hold of a new token for range_id, as uid 65534; the process, holding."""
    token = js("share", str(range_id))["token"]
    h = subprocess.Popen(NOBODY + ["attach", "--hold", token], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert h.stdout.readline().startswith(f"Attached range {range_id}:")
    assert "Holding" in h.stdout.readline()
    return h


@test
def test_revoke_deadline():
    # A holder that never releases (svmctl attach --hold does not listen): taken at the deadline.
    a = js("alloc", "1M", "--domain", "host", "--persistent", "--label", "revoked")
    h = hold_as_nobody(a["id"])
    try:
        kv = dict(line.split("=", 1) for line in run("show", str(a["id"])).stdout.splitlines())
        assert kv["Revoking"] == "", kv
        for bad in ["0s", "bogus", "-5s"]:
            p = run("revoke", "--range", str(a["id"]), "--deadline", bad, code=EXIT_USAGE)
            assert "deadline" in p.stderr, p.stderr
        run("revoke", "--range", str(a["id"]), "--wait", code=EXIT_USAGE)
        run("revoke", "--uid", "65534", "--deadline", "30s", code=EXIT_USAGE)
        run("revoke", "--range", "999999", "--deadline", "30s", code=EXIT_NOT_FOUND)
        run("revoke", "--range", str(a["id"]), "--uid", "4242", "--deadline", "30s", code=EXIT_NOT_FOUND)

        # The monitor (root sees everything) shows the request and the end; --wait prints the outcome.
        result = {}

        def act():
            result.update(js("revoke", "--range", str(a["id"]), "--deadline", "1s", "--wait"))

        out = monitor("--json", count=2, action=act)
        ev = [json.loads(x) for x in out.splitlines()]
        assert ev[0]["signal"] == "RevokeRequested" and ev[0]["id"] == a["id"] and ev[0]["uid"] == 65534, ev
        assert ev[1] == {"signal": "RevokeFinished", "id": a["id"], "acknowledged": 0, "forced": 1}, ev
        assert result["holders"] == 1 and result["acknowledged"] == 0 and result["forced"] == 1, result
        assert result["uid"] is None and result["deadline_usec"] == ev[0]["deadline_usec"], result
        assert js("show", str(a["id"]))["holders"] == [], "the hold outlived its deadline"
    finally:
        h.kill()
        h.wait()

    # Visible while it runs: show's Revoking; the holder's disconnect ends it (human output).
    h = hold_as_nobody(a["id"])
    try:
        p = run("revoke", "--range", str(a["id"]), "--uid", "65534", "--deadline", "10m")
        assert p.stdout.startswith(f"Asked 1 holder connection(s) of range {a['id']} to release it by "), p.stdout
        kv = dict(line.split("=", 1) for line in run("show", str(a["id"])).stdout.splitlines())
        assert re.match(r"^65534 until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", kv["Revoking"]), kv
        s = js("show", str(a["id"]))
        assert [r["uid"] for r in s["revoking"]] == [65534], s
    finally:
        h.kill()
        h.wait()
    assert js("show", str(a["id"]))["revoking"] == []
    p = run("revoke", "--range", str(a["id"]), "--deadline", "10m", "--wait")
    assert p.stdout == f"Range {a['id']}: no hold left to wait for.\n", p.stdout
    run("free", str(a["id"]))


@test
def test_hold():
    # --hold keeps the range for svmctl's lifetime; a crash of svmctl frees it.
    p = subprocess.Popen([SVMCTL, "alloc", "1M", "--domain", "gtt", "--label", "held", "--hold"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        m = re.match(r"Allocated range (\d+):", first)
        assert m, first
        assert "Holding" in p.stdout.readline()
        labels = [r["label"] for r in js("ranges")["ranges"]]
        assert "held" in labels, labels
    finally:
        p.kill()
        p.wait()
    for _ in range(200):
        if "held" not in [r["label"] for r in js("ranges")["ranges"]]:
            break
        import time
        time.sleep(0.02)
    else:
        raise AssertionError("the held range outlived svmctl")


@test
def test_hold_json():
    # --json --hold: one JSON document, then the range is held until svmctl is killed.
    p = subprocess.Popen([SVMCTL, "--json", "alloc", "1M", "--domain", "gtt", "--label", "held-json", "--hold"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rid = json.loads(p.stdout.readline())["id"]
        assert p.poll() is None, "svmctl --json alloc --hold returned"
        assert rid in [r["id"] for r in js("ranges")["ranges"]]
    finally:
        p.kill()
        p.wait()


def is_char_device(path):
    import stat
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


@test
def test_cdi_generate():
    spec = json.loads(run("cdi", "generate").stdout)
    gpus = js("gpus")["gpus"]
    ids = [g["gpu_id_hex"] for g in gpus]
    assert spec["cdiVersion"] == "0.3.0" and spec["kind"] == "svmd.io/gpu", spec
    assert [d["name"] for d in spec["devices"]] == ids + ["all"], spec["devices"]
    visible = [f"SVMD_VISIBLE_GPU_{h}={h}" for h in ids]
    renders = [f"/dev/dri/renderD{g['render_minor']}" for g in gpus]
    for d, env, node in zip(spec["devices"], visible, renders):
        assert d["containerEdits"]["env"] == [env], d
        # Device nodes only where the host has them as character devices (not on the emulated node).
        assert [n["path"] for n in d["containerEdits"].get("deviceNodes", [])] == \
            ([node] if is_char_device(node) else []), d
    assert spec["devices"][-1]["containerEdits"]["env"] == visible
    edits = spec["containerEdits"]
    assert edits["env"] == ["SVMD_RUNTIME_DIR=/run/svmd", "SVMD_DIRECT_ONLY=1"], edits
    assert edits["mounts"] == [{"hostPath": os.environ["SVMD_RUNTIME_DIR"], "containerPath": "/run/svmd",
                                "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}], edits
    assert [n["path"] for n in edits.get("deviceNodes", [])] == \
        (["/dev/kfd"] if is_char_device("/dev/kfd") else []), edits
    if not is_char_device("/dev/kfd"):
        p = run("cdi", "generate")
        assert "/dev/kfd is not a character device on this host" in p.stderr, p.stderr
        p = run("cdi", "generate", "--require-device-nodes", code=EXIT_NOT_FOUND)
        assert p.stdout == "", p.stdout

    # --output: the same document, written whole, readable by the runtime.
    out = os.path.join(os.environ["SVMD_TEST_DIR"], "svmd-cdi.json")
    run("cdi", "generate", "--output", out)
    with open(out) as f:
        assert json.load(f) == spec
    assert os.stat(out).st_mode & 0o777 == 0o644
    assert not [n for n in os.listdir(os.path.dirname(out)) if n.startswith("svmd-cdi.json.")]

    bare = json.loads(run("cdi", "generate", "--no-device-nodes").stdout)
    assert "deviceNodes" not in bare["containerEdits"], bare
    assert not [d for d in bare["devices"] if "deviceNodes" in d["containerEdits"]], bare
    run("cdi", "generate", "--no-device-nodes", "--require-device-nodes", code=EXIT_USAGE)
    run("cdi", code=EXIT_USAGE)
    run("cdi", "make", code=EXIT_USAGE)
    run("cdi", "generate", "--runtime-dir", "relative", code=EXIT_USAGE)
    p = run("cdi", "generate", "--runtime-dir", "/nonexistent", code=EXIT_NOT_FOUND)
    assert "--runtime-dir" in p.stderr, p.stderr
    run("cdi", "generate", "--output", "/nonexistent/dir/svmd.json", code=EXIT_NOT_FOUND)


@test
def test_container_environment():
    # What a CDI device puts in a container's environment: no system bus, the socket, its GPUs.
    gpus = [g["gpu_id_hex"] for g in js("gpus")["gpus"]]
    env = {k: v for k, v in os.environ.items() if k != "SVMD_BUS_ADDRESS"}
    env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=/nonexistent"
    run("gpus", env=env, code=EXIT_UNREACHABLE)
    env["SVMD_DIRECT_ONLY"] = "1"
    assert [g["gpu_id_hex"] for g in json.loads(run("--json", "gpus", env=env).stdout)["gpus"]] == gpus
    run("--json", "alloc", "1M", env=env, code=EXIT_USAGE)  # several GPUs: which one?

    env[f"SVMD_VISIBLE_GPU_{gpus[2]}"] = gpus[2]
    assert [g["gpu_id_hex"] for g in json.loads(run("--json", "gpus", env=env).stdout)["gpus"]] == [gpus[2]]
    a = json.loads(run("--json", "alloc", "1M", env=env).stdout)
    assert a["gpu"] == int(gpus[2], 16), a

    # Two devices add up; the hand-written list counts too; invalid entries are skipped.
    env[f"SVMD_VISIBLE_GPU_{gpus[0]}"] = gpus[0]
    env["SVMD_VISIBLE_GPUS"] = f"junk,{gpus[5]}"
    listed = [g["gpu_id_hex"] for g in json.loads(run("--json", "gpus", env=env).stdout)["gpus"]]
    assert sorted(listed) == sorted([gpus[0], gpus[2], gpus[5]]), listed
    p = run("alloc", "1M", env=env, code=EXIT_USAGE)
    assert gpus[0] in p.stderr and gpus[5] in p.stderr, p.stderr
    # Visibility is a default, not a boundary: --gpu still reaches every GPU svmd serves.
    a = json.loads(run("--json", "alloc", "1M", "--gpu", gpus[7], env=env).stdout)
    assert a["gpu"] == int(gpus[7], 16), a


@test
def test_root_without_sys_admin():
    # uid 0 without CAP_SYS_ADMIN, as a container's root without a user namespace: neither
    # svmd's administrator nor the owner of root's ranges; refused on the socket and on the bus.
    rid = js("alloc", "1M", "--domain", "gtt", "--persistent")["id"]
    weak = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-all", SVMCTL]
    for args in (["--direct", "free", str(rid)], ["free", str(rid)], ["ranges", "--all"]):
        p = subprocess.run(weak + args, capture_output=True, text=True, timeout=60)
        assert p.returncode == EXIT_DENIED, (args, p.returncode, p.stderr)
        assert "uid 0 without CAP_SYS_ADMIN" in p.stderr, p.stderr
    assert rid in [r["id"] for r in js("ranges")["ranges"]]
    run("free", str(rid))


print(f"{failures} failed", file=sys.stderr)
sys.exit(1 if failures else 0)
