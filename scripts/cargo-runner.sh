#!/usr/bin/env bash
# cargo's runner for the kernel target (.cargo/config.toml): `cargo run
# --release --target aarch64-unknown-none-softfloat -p mtekernel -- ARGS`
# (or `cargo qemu ARGS`), and `cargo test --release --target
# aarch64-unknown-none-softfloat -p mtekernel`, boot the suite on QEMU
# through qemu-run.sh, which reports with kreport. ARGS are qemu-run.sh's:
# filters, options, `-- KERNEL-WORDS`.
set -euo pipefail
elf=${1:?cargo passes the kernel ELF first}
shift
case "$elf" in
    */release/mtekernel | */release/deps/mtekernel-*) ;;
    *) echo "cargo-runner: only the release build is booted (add --release, or use cargo qemu); got $elf" >&2; exit 2 ;;
esac
# `cargo test` passes libtest-style arguments; the suite takes none of them.
if [ "${1:-}" = "--test-threads" ] || [ "${1:-}" = "--nocapture" ]; then
    set --
fi
exec "$(dirname "$0")/../qemu-run.sh" --no-install "$@"
