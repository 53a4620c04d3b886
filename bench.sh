#!/usr/bin/env bash
# The swap benchmark: prints a table, asserts nothing. Runs twice: under
# -icount shift=0 for deterministic guest instruction counts, then without
# for real wall times (the Linux reference figures are wall times).
#
#   ./bench.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")"
args=(--memory 1536M --smp 1 --timeout 1200 --bench swap)
[ "${1:-}" = "--no-install" ] && args+=(--no-install)
echo "== deterministic counts (-icount shift=0; times are virtual) =="
./qemu-run.sh "${args[@]}" --icount -- ramdisk=300M
echo
echo "== real time (no icount; instruction counts read 0) =="
./qemu-run.sh "${args[@]}" --no-install -- ramdisk=300M
