#!/usr/bin/env python3
"""The side-by-side table of ./bench.sh --vs-linux.

Reads this kernel's BENCHROW lines (one run under -icount for guest
instructions, one or more without for wall time) and Linux's TIME lines
from ../shared/linux-ref (the same two ways), and prints per operation the
instructions and microseconds per 4 KiB page of each (the least over
repeated runs), the ratio Linux/here (above 1: this kernel does less), and
the issue's goal for that ratio.

  bench-table.py OURS_ICOUNT OURS_WALL LINUX_ICOUNT LINUX_WALL
"""
import re
import sys

# The operations both sides measure, in table order, with the wall-time
# goal (Linux's time over ours) the performance issue sets; every
# operation's instruction goal is 5 (at most 1/5 of Linux's instructions).
OPS = [
    ("swap_out_MADV_PAGEOUT", "swap-out (MADV_PAGEOUT), tagged", 10),
    ("swap_in_fault", "swap-in (read fault), tagged", 10),
    ("cow_write_fault_child", "COW write fault, tagged", 10),
    ("first_touch_write_fault_mte", "first-touch write fault, PROT_MTE", None),
    ("first_touch_write_fault_nomte", "first-touch write fault", None),
    ("uffdio_move_bulk", "UFFDIO_MOVE, one call", 4),
    ("uffdio_move_perpage_ioctl", "UFFDIO_MOVE, one call per page", 4),
    ("uffdio_move_swapped_bulk", "UFFDIO_MOVE of swapped-out pages", 4),
    ("uffdio_move_thp_2MiB", "UFFDIO_MOVE of a 2 MiB THP", 4),
    ("uffdio_copy_bulk", "UFFDIO_COPY, one call", None),
    ("collapse_MADV_COLLAPSE_2MiB", "MADV_COLLAPSE, tagged 2 MiB", None),
    ("collapse_nomte_MADV_COLLAPSE_2MiB", "MADV_COLLAPSE, untagged 2 MiB", None),
]
INSTR_GOAL = 5


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)


def keep_min(out, op, instr, ns):
    """Over repeated runs, the least of each (the run the host disturbed least)."""
    if op in out:
        i0, n0 = out[op]
        instr = instr if i0 is None else i0 if instr is None else min(i0, instr)
        ns = min(n0, ns)
    out[op] = (instr, ns)


def ours(path):
    """op -> (instr per page, ns per page) from BENCHROW lines."""
    out = {}
    for line in open(path, errors="replace"):
        if line.startswith("BENCHROW "):
            f = fields(line)
            keep_min(out, line.split()[1], int(f["instr_per_page"]), int(f["ns_per_page"]))
    return out


def linux(path):
    """op -> (instr per page or None, ns per page) from TIME lines."""
    out = {}
    for line in open(path, errors="replace"):
        m = re.search(r"\bTIME (\S+) (.*)", line)
        if not m:
            continue
        f = fields("x " + m.group(0))
        ns = f.get("ns_per_page") or f.get("ns_per_4k_page")
        if ns is None:
            continue
        instr = None
        if "instr_per_page" in f:
            instr = float(f["instr_per_page"])
        elif "instr_per_2MiB" in f:
            instr = float(f["instr_per_2MiB"]) / 512
        keep_min(out, m.group(1), instr, float(ns))
    return out


def ratio(theirs, mine):
    if theirs is None or mine is None or mine <= 0:
        return None
    return theirs / mine


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__.strip())
    oi, ow, li, lw = ours(argv[1]), ours(argv[2]), linux(argv[3]), linux(argv[4])
    head = ("operation", "instr here", "instr Linux", "Linux/here", "goal", "us here", "us Linux", "Linux/here", "goal")
    rows = []
    missing = []
    for op, name, wall_goal in OPS:
        mi = oi.get(op, (None, None))[0]
        mw = ow.get(op, (None, None))[1]
        lin = li.get(op, (None, None))[0]
        lwl = lw.get(op, (None, None))[1]
        if mi is None and mw is None:
            missing.append(f"{op} (no BENCHROW here)")
            continue
        if lin is None and lwl is None:
            missing.append(f"{op} (no TIME line from Linux)")
        ri, rw = ratio(lin, mi), ratio(lwl, mw)
        gi = "-" if ri is None else ("met" if ri >= INSTR_GOAL else "not met")
        gw = "-" if wall_goal is None or rw is None else ("met" if rw >= wall_goal else "not met")
        rows.append(
            (
                name,
                fmt(mi),
                fmt(lin),
                fmt(ri, 2) + "x" if ri else "-",
                f"{INSTR_GOAL}x {gi}",
                fmt(mw / 1000 if mw else None, 1),
                fmt(lwl / 1000 if lwl else None, 1),
                fmt(rw, 2) + "x" if rw else "-",
                f"{wall_goal}x {gw}" if wall_goal else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)) + " |"
    print("per 4 KiB page; instructions under -icount shift=0, microseconds of wall time without it; -smp 1 both")
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    for m in missing:
        print(f"bench-table: not compared: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
