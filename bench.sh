#!/usr/bin/env bash
# The benchmarks (swap, userfaultfd MOVE vs COPY, THP, collapse): print tables,
# assert nothing. Each runs twice: under -icount shift=0 for deterministic
# guest instruction counts, then without for real wall times (the Linux
# reference figures are wall times).
#
# With --vs-linux, each benchmark is followed by Linux running the same
# operations in the same QEMU with the same -smp (../shared/linux-ref,
# when it is there: under -icount for instruction counts, then without),
# its TIME lines printed under ours.
#
#   ./bench.sh [--no-install] [--vs-linux] [swap|uffd|thp|collapse]...
set -euo pipefail
cd "$(dirname "$0")"
install=()
benches=()
vs_linux=0
linux_ref=../shared/linux-ref/run.sh
for a in "$@"; do
    case "$a" in
        --no-install) install=(--no-install) ;;
        --vs-linux) vs_linux=1 ;;
        swap|uffd|thp|collapse) benches+=("$a") ;;
        *) echo "bench.sh: unknown argument '$a' (benchmarks: swap, uffd, thp, collapse)" >&2; exit 2 ;;
    esac
done
[ ${#benches[@]} -gt 0 ] || benches=(swap uffd thp collapse)
if [ "$vs_linux" = 1 ] && [ ! -x "$linux_ref" ] && [ ! -f "$linux_ref" ]; then
    echo "bench.sh: --vs-linux needs $linux_ref (the team's shared Linux reference); it is not there" >&2
    exit 2
fi

# linux NAME ICOUNT: Linux's figures for benchmark NAME (the scenarios of
# ../shared/linux-ref that do the same operations), 1 vCPU like ours. The
# first call downloads and builds; later ones reuse that (FAST=1).
linux_ran=0
linux() {
    local only
    case "$1" in
        swap) only=swap_nomte ;;
        uffd) only=move_pte,move_swapped,copy ;;
        thp) only=move_thp,swap_nomte ;;
        collapse) only=collapse_nomte ;;
    esac
    local fast=()
    [ "$linux_ran" = 1 ] && fast=(FAST=1)
    linux_ran=1
    echo "== $1: Linux (../shared/linux-ref ONLY=$only SMP=1 ICOUNT=$2) =="
    env "${fast[@]}" ONLY="$only" SMP=1 ICOUNT="$2" bash "$linux_ref" 2>&1 | grep -E '^(TIME|CHECK) ' || {
        echo "bench.sh: the Linux reference run failed (see its output: bash $linux_ref)"; return 1; }
    echo
}
for b in "${benches[@]}"; do
    args=(--memory 3G --smp 1 --timeout 1200 --bench "$b")
    echo "== $b: deterministic counts (-icount shift=0; times are virtual) =="
    ./qemu-run.sh "${args[@]}" "${install[@]}" --icount -- ramdisk=1100M
    install=(--no-install)
    echo
    if [ "$vs_linux" = 1 ]; then linux "$b" 1; fi
    echo "== $b: real time (no icount; instruction counts read 0) =="
    ./qemu-run.sh "${args[@]}" --no-install -- ramdisk=1100M
    echo
    if [ "$vs_linux" = 1 ]; then linux "$b" 0; fi
done
