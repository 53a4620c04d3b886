#!/usr/bin/env bash
# The benchmarks (swap, userfaultfd MOVE vs COPY, THP, collapse, faults):
# print tables, assert nothing. Each runs twice at -smp 1: under -icount
# shift=0 for deterministic guest instruction counts, then without for
# real wall times.
#
# With --vs-linux, Linux runs the same operations in the same QEMU at the
# same -smp (../shared/linux-ref, under -icount and without), and
# scripts/bench-table.py prints one side-by-side table: instructions and
# microseconds per page for each kernel, the ratio Linux/here and the goal
# the performance issue sets for it. Without ../shared/linux-ref, Linux's
# columns are skipped with a message and ours are printed alone.
#
#   ./bench.sh [--no-install] [--vs-linux] [--runs N] [swap|uffd|thp|collapse|fault]...
#
# --runs N repeats every wall-time run N times (both kernels' with
# --vs-linux); the table takes the least of each, the run the shared host
# disturbed least.
#   LINUX_REF=/path/to/linux-ref/run.sh ./bench.sh --vs-linux   (another copy)
set -euo pipefail
cd "$(dirname "$0")"
install=()
benches=()
vs_linux=0
runs=1
linux_ref=${LINUX_REF:-../shared/linux-ref/run.sh}
while [ $# -gt 0 ]; do
    case "$1" in
        --no-install) install=(--no-install) ;;
        --vs-linux) vs_linux=1 ;;
        --runs)
            runs=${2:-}
            case "$runs" in ''|*[!0-9]*|0) echo "bench.sh: --runs needs a positive number, not '${2:-}'" >&2; exit 2 ;; esac
            shift ;;
        swap|uffd|thp|collapse|fault) benches+=("$1") ;;
        *) echo "bench.sh: unknown argument '$1' (benchmarks: swap, uffd, thp, collapse, fault)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#benches[@]} -gt 0 ] || benches=(swap uffd thp collapse fault)
out=target/bench
mkdir -p "$out"
: > "$out/ours-icount.log"
: > "$out/ours-wall.log"

for b in "${benches[@]}"; do
    args=(--memory 3G --smp 1 --timeout 1200 --bench "$b")
    echo "== $b: deterministic counts (-icount shift=0; times are virtual) =="
    ./qemu-run.sh "${args[@]}" "${install[@]}" --icount -- ramdisk=1100M | tee -a "$out/ours-icount.log"
    install=(--no-install)
    echo
    for r in $(seq "$runs"); do
        echo "== $b: real time, run $r of $runs (no icount; instruction counts read 0) =="
        ./qemu-run.sh "${args[@]}" --no-install -- ramdisk=1100M | tee -a "$out/ours-wall.log"
        echo
    done
done

[ "$vs_linux" = 1 ] || exit 0

# The mtetest scenarios (MTETEST_ONLY names) that do what each benchmark does.
only=()
for b in "${benches[@]}"; do
    case "$b" in
        swap) only+=(swap_nomte) ;; # also runs "swap", the tagged one
        uffd) only+=(move_pte move_swapped move_thp copy) ;;
        thp) only+=(move_thp) ;;
        collapse) only+=(collapse_nomte) ;; # also runs "collapse"
        fault) only+=(fault cow) ;;
    esac
done
only=$(IFS=,; echo "${only[*]}")
: > "$out/linux-icount.log"
: > "$out/linux-wall.log"
if [ -f "$linux_ref" ]; then
    # The first run downloads and builds; the second reuses that (FAST=1).
    echo "== Linux (../shared/linux-ref ONLY=$only SMP=1 ICOUNT=1) =="
    if ! ONLY="$only" SMP=1 ICOUNT=1 bash "$linux_ref" > "$out/linux-icount.log" 2>&1; then
        echo "bench.sh: the Linux reference run failed; its output: $out/linux-icount.log" >&2
        exit 1
    fi
    grep -E '^(TIME|CHECK) |Linux version|qemu-system' "$out/linux-icount.log" | head -40 || true
    echo "== Linux (../shared/linux-ref ONLY=$only SMP=1 ICOUNT=0 RUNS=$runs) =="
    if ! FAST=1 ONLY="$only" SMP=1 ICOUNT=0 RUNS="$runs" bash "$linux_ref" > "$out/linux-wall.log" 2>&1; then
        echo "bench.sh: the Linux reference run failed; its output: $out/linux-wall.log" >&2
        exit 1
    fi
    grep -E '^(TIME|CHECK) ' "$out/linux-wall.log" | head -40 || true
else
    echo "bench.sh: --vs-linux: $linux_ref is not there (the team's shared Linux reference), so Linux's columns are skipped"
fi
echo
echo "== side by side ($(date -u +%Y-%m-%d), $(qemu-system-aarch64 --version | head -1)) =="
python3 scripts/bench-table.py "$out/ours-icount.log" "$out/ours-wall.log" "$out/linux-icount.log" "$out/linux-wall.log"
