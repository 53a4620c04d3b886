#!/usr/bin/env python3
"""Minimises a fuzz program whose failure the kernel cannot minimise itself.

A wrong result the kernel finds in a generated program it minimises on the
spot and prints as `--- repro.txt`. A panic or a hang takes the kernel down
with the program, so this does it from the host: it reruns program SEED
alone (`./qemu-run.sh --fuzz SEED:1`, which prints the program before
running it), then drops statements one at a time, rerunning each candidate
as a script (`./qemu-run.sh --script`), while the same failure (a panic at
the same file:line, or a hang) still happens, and prints what is left.

    scripts/fuzz-minimise.py SEED [--smp N] [--out FILE] [--test-timeout S] [-- KERNEL-WORDS]

Use the -smp of the run that failed: programs with `on cpu` blocks need it.
Exits 0 with the script written, 1 if the program does not fail (or fails
in a way the kernel minimised itself), 2 on a usage or tool error.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def qemu_run(args):
    p = subprocess.run(["./qemu-run.sh", "--no-install", *args], cwd=ROOT, capture_output=True, text=True)
    return p.stdout + p.stderr


def failure(out, test):
    """The failure of `test` in a run's output, reduced to what must stay
    the same while minimising: 'panic at FILE:LINE', 'hang' or the text."""
    prefix = f"FAIL: {test}: "
    for line in out.splitlines():
        if line.startswith(prefix):
            text = line[len(prefix):]
            m = re.search(r"kernel panic: .* at (\S+:\d+)$", text)
            if m:
                return "panic at " + m.group(1)
            if "timed out" in text:
                return "hang"
            return "other: " + text
    return None


def program(out):
    lines = out.splitlines()
    try:
        start = lines.index("--- program.txt")
        end = lines.index("--- end", start)
    except ValueError:
        return None
    return lines[start + 1:end]


def tidy(lines):
    """Drops `on cpu` blocks left empty."""
    out = []
    for line in lines:
        if line == "}" and out and out[-1].startswith("on cpu "):
            out.pop()
        else:
            out.append(line)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seed", help="the program seed the kernel named (decimal or 0x hex)")
    ap.add_argument("--smp", default="2", help="CPUs, as in the run that failed (default 2)")
    ap.add_argument("--out", default="repro.txt", help="where the minimised script goes (default repro.txt)")
    ap.add_argument("--test-timeout", default="30", help="seconds before a candidate counts as hung (default 30)")
    argv = sys.argv[1:]
    words_at = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:words_at])
    a.words = argv[words_at + 1:]
    try:
        int(a.seed, 0)
    except ValueError:
        print(f"fuzz-minimise: '{a.seed}' is not a seed", file=sys.stderr)
        return 2
    common = ["--smp", a.smp, "--test-timeout", a.test_timeout]
    words = ["--", *a.words] if a.words else []

    out = qemu_run([*common, "--fuzz", f"{a.seed}:1", "fuzz::random_programs", *words])
    prog = program(out)
    want = failure(out, "fuzz::random_programs")
    if prog is None:
        print("fuzz-minimise: the kernel printed no program; its output:\n" + out[-3000:], file=sys.stderr)
        return 2
    if want is None:
        print(f"fuzz-minimise: program {a.seed} passes: nothing to minimise")
        return 1
    if want.startswith("other: "):
        print(f"fuzz-minimise: program {a.seed} fails without a panic or hang; the kernel minimised it (its --- repro.txt):")
        print(want[len("other: "):])
        return 1
    print(f"fuzz-minimise: program {a.seed}: {want}, {sum(1 for l in prog if not l.endswith('{') and l != '}')} statements")

    tmp = tempfile.mkdtemp(prefix="fuzz-minimise-")
    cand_path = os.path.join(tmp, "repro.txt")
    runs = 0

    def fails(lines):
        nonlocal runs
        runs += 1
        with open(cand_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return failure(qemu_run([*common, "--script", cand_path, *words]), "script::repro") == want

    if not fails(prog):
        print(f"fuzz-minimise: the program as a script does not fail the same way ({want}); kept in {cand_path}", file=sys.stderr)
        return 2
    cur = prog
    changed = True
    while changed:
        changed = False
        i = len(cur)
        while i > 0:
            i -= 1
            if cur[i] == "}" or cur[i].startswith("on cpu "):
                continue
            cand = tidy(cur[:i] + cur[i + 1:])
            if fails(cand):
                cur = cand
                changed = True
                i = min(i, len(cur))
    with open(a.out, "w") as f:
        f.write(f"# program seed {a.seed}, minimised by scripts/fuzz-minimise.py: {want}\n")
        f.write("\n".join(cur) + "\n")
    print(f"fuzz-minimise: {runs} runs; {sum(1 for l in cur if not l.endswith('{') and l != '}')} statements left, still {want}")
    print("--- repro.txt")
    print("\n".join(cur))
    print("--- end")
    print(f"fuzz-minimise: saved as {a.out}; rerun: ./qemu-run.sh --smp {a.smp} --script {a.out}" + (" -- " + " ".join(a.words) if a.words else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
