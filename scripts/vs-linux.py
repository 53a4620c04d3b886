#!/usr/bin/env python3
"""Differential testing: scenario scripts run on this kernel and on Linux in
the same QEMU, every observable result compared.

    scripts/vs-linux.py [--smp N] [--suite trixie|sid] SCRIPT|DIR...
    scripts/vs-linux.py [--smp N] --fuzz SEED:COUNT [--minimise-limit K]

Both kernels print, per statement, its result (OBS) and a snapshot (STATE)
of every task's pages (present, swapped, zero page, mapped once, uffd-wp,
large folio, frame and swap-entry sharing), rss and swap counts, and the
vmstat counters both have. This kernel prints them with the knob
script:observe=1 (src/script/observe.rs); on Linux tools/vs-linux/interp.c
performs each statement with the real system calls. A difference is printed
side by side and makes the exit status 1, unless it is declared, with its
reason, in tests/linux-differences.txt.

With --fuzz, the kernel's fuzzer writes COUNT programs from SEED and runs
them observed; the same programs run on Linux; each program with an
undeclared difference is minimised (statements dropped while the same
difference remains, each round run on both kernels) and printed as a script.

The Linux side: Debian's arm64 kernel (linux-image-arm64 of --suite, default
trixie) and busybox-static, downloaded by package name through a private apt
root whose mirror URIs come from this machine's apt sources, cached under
$VS_LINUX_CACHE (default ~/.cache/mtekernel/vs-linux); zram as swap. It needs
root for nothing but installing the cross compiler if it is missing.
Exit status: 0 same (or declared), 1 an undeclared difference, 2 a tool error.
"""

import argparse
import glob
import gzip
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECLARED = os.path.join(ROOT, "tests/linux-differences.txt")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def log(msg):
    print(f"vs-linux: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(msg)
    sys.exit(2)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        fail(f"{' '.join(cmd[:4])}... failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-800:]}")
    return p.stdout


# ------------------------------------------------------------------ Linux side


def mirrors():
    """(archive URI, security URI or None) from this machine's apt sources."""
    main = sec = None
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for m in re.finditer(r"^URIs:\s*(\S+)", open(f).read(), re.M):
            uri = m.group(1)
            if "security" in uri:
                sec = sec or uri
            else:
                main = main or uri
    for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(f):
            continue
        for line in open(f):
            w = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(w) >= 3 and w[0] == "deb" and "debian" in w[1]:
                if "security" in w[1]:
                    sec = sec or w[1]
                else:
                    main = main or w[1]
    if not main:
        fail("no Debian mirror URI in /etc/apt/sources.list or /etc/apt/sources.list.d")
    return main, sec


def apt_root(d, suite):
    """apt-get options for a private arm64 root under d (the system's apt
    configuration is not touched)."""
    main, sec = mirrors()
    lines = [f"deb [arch=arm64 signed-by={KEYRING}] {main} {suite} main"]
    if suite not in ("sid", "unstable", "experimental"):
        if sec:
            lines.append(f"deb [arch=arm64 signed-by={KEYRING}] {sec} {suite}-security main")
        lines.append(f"deb [arch=arm64 signed-by={KEYRING}] {main} {suite}-updates main")
    for sub in ["etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial",
                "cache/archives/partial"]:
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    open(os.path.join(d, "etc/sources.list"), "w").write("\n".join(lines) + "\n")
    open(os.path.join(d, "state/status"), "a").close()
    return [f"-oDir::Etc={d}/etc", f"-oDir::Etc::sourcelist={d}/etc/sources.list",
            f"-oDir::Etc::sourceparts={d}/etc/sources.list.d", f"-oDir::State={d}/state",
            f"-oDir::State::status={d}/state/status", f"-oDir::Cache={d}/cache", "-oDebug::NoLocking=1",
            "-oAPT::Architecture=arm64", "-oAPT::Architectures::=arm64", "-oAPT::Sandbox::User=root"]


def host_packages():
    need = [p for p in ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "cpio", "xz-utils", "zstd"]
            if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if need:
        if os.geteuid() != 0:
            fail(f"missing host packages {' '.join(need)}: install them (apt-get install) or run as root")
        log(f"installing {' '.join(need)}")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need],
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def kernel_image(vmlinuz, dst):
    """An arm64 Image from Debian's vmlinuz (plain, gzip, or EFI zboot)."""
    b = open(vmlinuz, "rb").read()
    if b[:2] == b"\x1f\x8b":
        b = gzip.decompress(b)
    elif b[:2] == b"MZ" and b[4:8] == b"zimg":
        off, size = struct.unpack_from("<II", b, 8)
        comp = b[24:32].rstrip(b"\0").decode()
        payload = b[off:off + size]
        if comp == "gzip":
            b = gzip.decompress(payload)
        elif comp in ("xzkern", "xz", "lzma"):
            b = lzma.decompress(payload)
        else:
            b = subprocess.run(["zstd" if comp.startswith("zstd") else comp, "-dc"], input=payload,
                               capture_output=True, check=True).stdout
    if len(b) < 0x40 or b[0x38:0x3c] != b"ARM\x64":
        fail(f"{vmlinuz} is not an arm64 kernel image")
    open(dst, "wb").write(b)


def fetch_linux(cache, suite, pkg):
    """The kernel Image, its modules directory, busybox and the package
    versions, downloaded once per suite and package."""
    d = os.path.join(cache, suite)
    stamp = os.path.join(d, "ready")
    if os.path.exists(stamp) and (not pkg or open(stamp).read().split()[0] == pkg):
        return d
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "debs"))
    opts = apt_root(os.path.join(d, "apt"), suite)
    log(f"apt-get update ({suite}, arm64, private root)")
    run(["apt-get", *opts, "update", "-qq"])
    if not pkg:
        deps = run(["apt-cache", *opts, "depends", "linux-image-arm64"])
        m = re.search(r"Depends: (linux-image-[0-9]\S*)", deps)
        if not m:
            fail(f"linux-image-arm64 of {suite} depends on no linux-image-VERSION package")
        pkg = m.group(1)
    parts = re.findall(r"Depends: (linux-(?:binary|modules|base)-[0-9]\S*)",
                       run(["apt-cache", *opts, "depends", pkg]))
    log(f"downloading {pkg} {' '.join(parts)} busybox-static")
    run(["apt-get", *opts, "download", "-qq", pkg, *sorted(set(parts)), "busybox-static"],
        cwd=os.path.join(d, "debs"))
    x = os.path.join(d, "x")
    versions = []
    for deb in sorted(glob.glob(os.path.join(d, "debs/*.deb"))):
        run(["dpkg-deb", "-x", deb, x])
        f = run(["dpkg-deb", "-f", deb, "Package", "Version"]).split("\n")
        versions.append(f"{f[0].split(': ')[1]} {f[1].split(': ')[1]}")
    vmlinuz = [p for p in glob.glob(os.path.join(x, "boot/vmlinuz-*")) + glob.glob(os.path.join(x, "usr/lib/modules/*/vmlinuz"))]
    if not vmlinuz:
        fail(f"no vmlinuz in {pkg}")
    kernel_image(vmlinuz[0], os.path.join(d, "Image"))
    open(os.path.join(d, "versions.txt"), "w").write("\n".join(versions) + "\n")
    shutil.rmtree(os.path.join(d, "debs"))
    open(stamp, "w").write(pkg + "\n")
    return d


def module_files(moddir, name, out, seen):
    """`name`.ko and its dependencies (modinfo depends=), in load order."""
    if name in seen:
        return
    seen.add(name)
    found = [p for p in glob.glob(os.path.join(moddir, "**", name + ".ko*"), recursive=True)]
    if not found:
        return  # built in
    f = found[0]
    data = open(f, "rb").read()
    if f.endswith(".xz"):
        data = lzma.decompress(data)
    elif f.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    elif f.endswith(".gz"):
        data = gzip.decompress(data)
    m = re.search(rb"depends=([A-Za-z0-9_,-]*)", data)
    for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
        module_files(moddir, dep, out, seen)
    out.append((name, data))


def linux_run(files, smp, suite, pkg, cache, timeout):
    """Runs the scripts on Linux; {script name: output lines} and the
    kernel's version line."""
    host_packages()
    d = fetch_linux(cache, suite, pkg)
    work = tempfile.mkdtemp(prefix="vs-linux-")
    try:
        rootfs = os.path.join(work, "root")
        for sub in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "lib/modules", "scripts"]:
            os.makedirs(os.path.join(rootfs, sub))
        bb = glob.glob(os.path.join(d, "x/bin/busybox")) + glob.glob(os.path.join(d, "x/usr/bin/busybox"))
        shutil.copy(bb[0], os.path.join(rootfs, "bin/busybox"))
        shutil.copy(os.path.join(ROOT, "tools/vs-linux/init.sh"), os.path.join(rootfs, "init"))
        os.chmod(os.path.join(rootfs, "init"), 0o755)
        run(["aarch64-linux-gnu-gcc", "-static", "-O2", "-Wall", "-Werror", "-Wno-format-truncation", "-march=armv8.5-a+memtag", "-o",
             os.path.join(rootfs, "interp"), os.path.join(ROOT, "tools/vs-linux/interp.c")])
        moddir = (glob.glob(os.path.join(d, "x/usr/lib/modules/*")) + glob.glob(os.path.join(d, "x/lib/modules/*")))[0]
        mods = []
        module_files(moddir, "zram", mods, set())
        for name, data in mods:
            open(os.path.join(rootfs, "lib/modules", name + ".ko"), "wb").write(data)
        open(os.path.join(rootfs, "lib/modules/load.order"), "w").write("".join(n + "\n" for n, _ in mods))
        for f in files:
            shutil.copy(f, os.path.join(rootfs, "scripts", os.path.basename(f)))
        initrd = os.path.join(work, "initrd.gz")
        cpio = subprocess.run("find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1",
                              shell=True, cwd=rootfs, capture_output=True, check=True).stdout
        open(initrd, "wb").write(cpio)
        qemu = os.environ.get("QEMU", "qemu-system-aarch64")
        cmd = [qemu, "-machine", "virt,mte=on", "-cpu", "max", "-smp", str(smp), "-m", "1024", "-nographic",
               "-nic", "none", "-no-reboot", "-kernel", os.path.join(d, "Image"), "-initrd", initrd,
               "-append", "console=ttyAMA0 panic=-1 loglevel=1"]
        t0 = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            fail(f"Linux did not finish within {timeout} s; its last lines:\n" + "\n".join(out.splitlines()[-20:]))
        out = p.stdout.replace("\r", "")
        open(os.path.join(cache, "last-linux.log"), "w").write(out)
        if "VSLINUX-END" not in out:
            fail("Linux did not run the interpreter to its end; its last lines:\n" + "\n".join(out.splitlines()[-25:]))
        errs = [l for l in out.splitlines() if l.startswith("VSLINUX-ERROR")]
        if errs:
            fail("the Linux guest's setup failed: " + "; ".join(errs))
        version = next((l for l in out.splitlines() if l.startswith("VSLINUX kernel")), "VSLINUX kernel ?")
        versions = open(os.path.join(d, "versions.txt")).read().split()
        log(f"Linux: {version[len('VSLINUX kernel '):]} ({' '.join(versions)}), {len(files)} scripts, "
            f"{time.time() - t0:.1f} s")
        return blocks(out), version
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ this kernel


def ours_run(files, smp, extra=()):
    cmd = ["./qemu-run.sh", "--no-install", "--smp", str(smp)]
    for f in files:
        cmd += ["--script", f]
    cmd += [*extra, "--", "knob=script:observe=1"]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors="replace")
    out = p.stdout + p.stderr
    if p.returncode != 0 and "DIFF-END" not in out:
        fail("this kernel's run failed:\n" + "\n".join(out.splitlines()[-25:]))
    bad = [l for l in out.splitlines() if l.startswith("FAIL:")]
    if bad:
        fail("this kernel's observed run failed: " + "; ".join(bad))
    log(f"this kernel: {len(files) or 'fuzz'} scripts, {time.time() - t0:.1f} s")
    return blocks(out), out


def blocks(out):
    """{script name: [OBS/STATE lines]} from DIFF-BEGIN/DIFF-END blocks."""
    res, cur = {}, None
    for line in out.splitlines():
        m = re.search(r"(DIFF-BEGIN|DIFF-END|OBS \d+:|STATE \d+:)(.*)", line)
        if not m:
            continue
        tag = m.group(1)
        if tag == "DIFF-BEGIN":
            cur = m.group(2).strip()
            res[cur] = []
        elif tag == "DIFF-END":
            cur = None
        elif cur is not None:
            res[cur].append(line[m.start():])
    return res


# ------------------------------------------------------------------ comparison


def parse_state(s):
    """'A{r=p0x*2 - anon=2,swap=0} vm{pswpin=0 ...}' -> {field: value},
    pages expanded: 'A.r[0]': 'p0x', plus the frame/swap labels apart."""
    fields = {}
    for m in re.finditer(r"(\w+)\{([^}]*)\}", s):
        who, body = m.group(1), m.group(2)
        if who == "vm":
            for kv in body.split():
                k, v = kv.split("=")
                fields[f"vm.{k}"] = v
            continue
        rng = None
        for w in body.split():
            if w.startswith("anon="):
                for kv in w.split(","):
                    k, v = kv.split("=")
                    fields[f"{who}.{k}"] = v
                continue
            if "=" in w:
                rng, w = w.split("=", 1)
                fields.setdefault(f"{who}.{rng}#", 0)
                if not w:
                    continue
            tok, _, n = w.partition("*")
            for _ in range(int(n) if n else 1):
                i = fields[f"{who}.{rng}#"]
                fields[f"{who}.{rng}[{i}]"] = tok
                fields[f"{who}.{rng}#"] = i + 1
    return fields


def sharing(fields):
    """Groups of pages on one frame (one swap entry), as sets of names."""
    groups = {}
    for k, v in fields.items():
        m = re.match(r"([ps])(\d+)", str(v)) if "[" in k else None
        if m:
            groups.setdefault(m.group(1) + m.group(2), set()).add(k)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def page_index(k):
    m = re.search(r"\[(\d+)\]$", k)
    return int(m.group(1)) if m else None


def spans(idx):
    """[0, 1, 2, 5] -> '[0..3,5]'."""
    out, i = [], 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        out.append(str(idx[i]) if i == j else f"{idx[i]}..{idx[j] + 1}")
        i = j + 1
    return "[" + ",".join(out) + "]"


def strip_label(tok):
    return re.sub(r"^([ps])\d+", r"\1", tok)


class Declared:
    """The declared differences: blocks of `key: value` lines,
    [id] / reason: / where: REGEX / ours: REGEX / linux: REGEX /
    statement: REGEX (of the script line)."""

    def __init__(self, path):
        self.items = []
        cur = None
        for raw in open(path) if os.path.exists(path) else []:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = re.match(r"\[(.+)\]$", line.strip())
            if m:
                cur = {"id": m.group(1), "used": 0}
                self.items.append(cur)
                continue
            k, _, v = line.partition(":")
            if cur is None or k.strip() not in ("reason", "where", "ours", "linux", "statement"):
                fail(f"{path}: '{line}' is not 'reason|where|ours|linux|statement: ...' inside an [id] block")
            cur[k.strip()] = v.strip()
        for d in self.items:
            if "reason" not in d:
                fail(f"{path}: [{d['id']}] has no reason")

    def match(self, where, ours, linux, stmt):
        for d in self.items:
            if all(re.search(d[k], v or "") for k, v in
                   (("where", where), ("ours", ours), ("linux", linux), ("statement", stmt)) if k in d):
                d["used"] += 1
                return d
        return None


def compare(name, ours, linux, script_lines, declared):
    """Differences of one script: [(declared or None, text, signature)]."""
    def by_index(lines):
        obs, st = {}, {}
        for l in lines:
            m = re.match(r"(OBS|STATE) (\d+):\s*(.*)", l)
            if m:
                (obs if m.group(1) == "OBS" else st)[int(m.group(2))] = m.group(3)
        return obs, st

    (oo, os_), (lo, ls) = by_index(ours), by_index(linux)
    diffs = []
    seen_state = set()
    for i in sorted(set(oo) | set(lo)):
        a, b = oo.get(i, "(nothing)"), lo.get(i, "(nothing)")
        m = re.match(r"line (\d+) -> (.*)", a) or re.match(r"line (\d+) -> (.*)", b)
        lineno = int(m.group(1)) if m else 0
        stmt = script_lines[lineno - 1].split("#")[0].strip() if 0 < lineno <= len(script_lines) else "?"
        ra, rb = a.split("-> ", 1)[-1], b.split("-> ", 1)[-1]
        if ra.startswith("ERROR") and rb.startswith("ERROR"):
            continue  # the script's own fault on both: the same stop
        op = " ".join(stmt.split(":", 1)[-1].split()[:2])
        if ra != rb:
            d = declared.match(f"obs:{op}", ra, rb, stmt)
            diffs.append((d, f"{name}:{lineno}: {stmt}\n    result  here: {ra}\n            Linux: {rb}",
                          f"obs:{op}"))
        fa, fb = parse_state(os_.get(i, "")), parse_state(ls.get(i, ""))
        # Pages of one range that differ the same way are one difference.
        groups = {}
        for k in sorted(set(fa) | set(fb), key=lambda k: (re.sub(r"\[\d+\]", "", k), page_index(k))):
            va, vb = str(fa.get(k, "(none)")), str(fb.get(k, "(none)"))
            if k.endswith("#") or strip_label(va) == strip_label(vb):
                continue
            base = re.sub(r"\[\d+\]$", "", k)
            groups.setdefault((base, strip_label(va), strip_label(vb)), []).append(page_index(k))
        for (base, va, vb), idx in groups.items():
            key = (base, va, vb)
            if key in seen_state:
                continue  # the same difference as at an earlier statement
            seen_state.add(key)
            where = base + (spans(idx) if idx != [None] else "")
            kind = re.sub(r"^[A-Za-z0-9_]+[.]", "T.", base)
            d = declared.match(f"state:{where}", va, vb, stmt)
            diffs.append((d, f"{name}:{lineno}: {stmt}\n    after it, {where}  here: {va}  Linux: {vb}",
                          f"state:{kind}:{va}:{vb}"))
        ga, gb = sharing(fa), sharing(fb)
        if ga != gb:
            show = lambda g: " ".join("{" + ",".join(sorted(x)) + "}" for x in sorted(g, key=sorted)) or "none"
            key = ("sharing", show(ga), show(gb))
            if key not in seen_state:
                seen_state.add(key)
                d = declared.match("state:sharing", show(ga), show(gb), stmt)
                diffs.append((d, f"{name}:{lineno}: {stmt}\n    after it, pages sharing a frame or swap entry  "
                                 f"here: {show(ga)}  Linux: {show(gb)}", "state:sharing"))
    return diffs


def report(files, ours, linux, declared, quiet_same=False):
    """Prints the comparison; the undeclared differences per script."""
    bad = {}
    for f in files:
        name = os.path.basename(f)
        lines = open(f).read().splitlines()
        if name not in ours or name not in linux:
            print(f"DIFF {name}: no output from {'this kernel' if name not in ours else 'Linux'}")
            bad[name] = [("missing", "missing")]
            continue
        diffs = compare(name, ours[name], linux[name], lines, declared)
        nstmt = sum(1 for l in ours[name] if l.startswith("OBS"))
        und = [(t, s) for d, t, s in diffs if d is None]
        dec = [(d, t) for d, t, s in diffs if d is not None]
        if not diffs:
            if not quiet_same:
                print(f"same {name}: {nstmt} statements, every result and snapshot equal")
            continue
        for d, t in dec:
            print(f"declared [{d['id']}] {t}")
        for t, _ in und:
            print(f"DIFF {t}")
        if und:
            bad[name] = und
        print(f"{'DIFF' if und else 'same'} {name}: {nstmt} statements, {len(und)} undeclared and {len(dec)} "
              f"declared differences")
    return bad


# ------------------------------------------------------------------ fuzz mode


def programs(out):
    """{file name: text} of the programs the fuzzer printed."""
    res, cur, buf = {}, None, []
    for line in out.splitlines():
        m = re.search(r"--- (fuzz-[0-9a-f]+\.txt)$", line)
        if m:
            cur, buf = m.group(1), []
        elif cur and line.rstrip().endswith("--- end"):
            res[cur] = "\n".join(buf) + "\n"
            cur = None
        elif cur:
            buf.append(line)
    return res


def both(texts, args, declared, tmp):
    """Runs {name: text} on both kernels; {name: undeclared signatures}."""
    files = []
    for n, t in texts.items():
        p = os.path.join(tmp, n)
        open(p, "w").write(t)
        files.append(p)
    o, _ = ours_run(files, args.smp)
    l, _ = linux_run(files, args.smp, args.suite, args.kernel_pkg, args.cache, args.timeout)
    res = {}
    for f in files:
        n = os.path.basename(f)
        if n not in o or n not in l:
            res[n] = {"missing"}
            continue
        res[n] = {s for d, t, s in compare(n, o[n], l[n], open(f).read().splitlines(), declared) if d is None}
    return res


def minimise(name, text, sig, args, declared, tmp):
    """Drops statements while `sig` remains; every round runs all the
    one-statement-shorter candidates on both kernels at once."""
    lines = [l for l in text.splitlines() if l.strip()]
    for rnd in range(args.minimise_limit):
        stmts = [i for i, l in enumerate(lines) if l.strip() not in ("}",) and not l.startswith("on cpu")]
        cands = {}
        for k, i in enumerate(stmts):
            cand = lines[:i] + lines[i + 1:]
            # an emptied on-cpu block goes too
            cand = [l for j, l in enumerate(cand)
                    if not (l.startswith("on cpu") and j + 1 < len(cand) and cand[j + 1] == "}")
                    and not (l == "}" and j > 0 and cand[j - 1].startswith("on cpu"))]
            cands[f"min-{rnd}-{k}.txt"] = (i, "\n".join(cand) + "\n")
        res = both({n: t for n, (_, t) in cands.items()}, args, declared, tmp)
        keep = [cands[n][0] for n in cands if sig in res.get(n, set())]
        if not keep:
            break
        drop = set(keep)
        joint = [l for i, l in enumerate(lines) if i not in drop]
        r = both({f"min-{rnd}-all.txt": "\n".join(joint) + "\n"}, args, declared, tmp)
        if sig in r[f"min-{rnd}-all.txt"]:
            lines = joint
        else:
            lines = [l for i, l in enumerate(lines) if i != keep[0]]
        log(f"minimising {name}: {len(lines)} lines left after round {rnd + 1}")
    return "\n".join(lines) + "\n"


def fuzz(args, declared):
    tmp = tempfile.mkdtemp(prefix="vs-linux-fuzz-")
    _, out = ours_run([], args.smp, ["--fuzz", args.fuzz, "fuzz::random_programs"])
    progs = programs(out)
    if not progs:
        fail("the fuzzer printed no program (is script:observe honoured?)")
    files = []
    for n, t in progs.items():
        p = os.path.join(tmp, n)
        open(p, "w").write(t)
        files.append(p)
    o = blocks(out)
    l, _ = linux_run(files, args.smp, args.suite, args.kernel_pkg, args.cache, args.timeout)
    bad = report(files, o, l, declared, quiet_same=True)
    ops = sum(sum(1 for x in o.get(os.path.basename(f), []) if x.startswith("OBS")) for f in files)
    print(f"VS-LINUX-FUZZ: seed={args.fuzz.split(':')[0]} programs={len(files)} statements={ops} "
          f"differing={len(bad)}")
    for n, diffs in sorted(bad.items()):
        sig = diffs[0][1]
        small = minimise(n, progs[n], sig, args, declared, tmp)
        print(f"--- {n} minimised (difference {sig}); save as repro.txt and run scripts/vs-linux.py repro.txt")
        print(small, end="")
        print("--- end")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scripts", nargs="*")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--suite", default=os.environ.get("VS_LINUX_SUITE", "trixie"),
                    help="Debian suite of the Linux kernel (trixie, sid, ...)")
    ap.add_argument("--kernel-pkg", default=None, help="an exact linux-image-VERSION package of the suite")
    ap.add_argument("--cache", default=os.environ.get("VS_LINUX_CACHE",
                                                      os.path.expanduser("~/.cache/mtekernel/vs-linux")))
    ap.add_argument("--timeout", type=int, default=600, help="seconds for one Linux boot")
    ap.add_argument("--fuzz", metavar="SEED:COUNT")
    ap.add_argument("--minimise-limit", type=int, default=8, help="rounds of minimisation per program")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    declared = Declared(DECLARED)
    if args.fuzz:
        if args.scripts:
            fail("--fuzz takes no scripts")
        rc = fuzz(args, declared)
    else:
        files = []
        for s in args.scripts or [os.path.join(ROOT, "tests/scripts")]:
            if os.path.isdir(s):
                files += sorted(glob.glob(os.path.join(s, "*.txt")))
            elif os.path.isfile(s):
                files.append(s)
            else:
                fail(f"no script at {s}")
        names = [os.path.basename(f) for f in files]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            fail(f"two scripts share a file name: {' '.join(sorted(dup))}")
        o, _ = ours_run(files, args.smp)
        l, version = linux_run(files, args.smp, args.suite, args.kernel_pkg, args.cache, args.timeout)
        print(f"vs-linux: {version[len('VSLINUX '):]} against this kernel, -smp {args.smp}")
        bad = report(files, o, l, declared)
        rc = 1 if bad else 0
        print(f"VS-LINUX: scripts={len(files)} differing={len(bad)} "
              f"declared_used={sum(1 for d in declared.items if d['used'])}/{len(declared.items)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
