#!/usr/bin/env bash
# The benchmarks (swap, userfaultfd MOVE vs COPY, THP, collapse): print tables,
# assert nothing. Each runs twice: under -icount shift=0 for deterministic
# guest instruction counts, then without for real wall times (the Linux
# reference figures are wall times).
#
#   ./bench.sh [--no-install] [swap|uffd|thp|collapse]...
set -euo pipefail
cd "$(dirname "$0")"
install=()
benches=()
for a in "$@"; do
    case "$a" in
        --no-install) install=(--no-install) ;;
        swap|uffd|thp|collapse) benches+=("$a") ;;
        *) echo "bench.sh: unknown argument '$a' (benchmarks: swap, uffd, thp, collapse)" >&2; exit 2 ;;
    esac
done
[ ${#benches[@]} -gt 0 ] || benches=(swap uffd thp collapse)
for b in "${benches[@]}"; do
    args=(--memory 1536M --smp 1 --timeout 1200 --bench "$b")
    echo "== $b: deterministic counts (-icount shift=0; times are virtual) =="
    ./qemu-run.sh "${args[@]}" "${install[@]}" --icount -- ramdisk=300M
    install=(--no-install)
    echo
    echo "== $b: real time (no icount; instruction counts read 0) =="
    ./qemu-run.sh "${args[@]}" --no-install -- ramdisk=300M
    echo
done
