#!/usr/bin/env bash
# cargo's runner for the kernel target (.cargo/config.toml): `cargo run
# --release --target aarch64-unknown-none-softfloat -p mtekernel -- ARGS`
# (or `cargo qemu ARGS`) boots the ELF cargo just built on QEMU through
# qemu-run.sh, which reports with kreport. ARGS are qemu-run.sh's: filters,
# options, `-- KERNEL-WORDS`.
set -euo pipefail
elf=${1:?cargo passes the kernel ELF first}
shift
case "$elf" in
    */release/mtekernel) ;;
    *) echo "cargo-runner: only the release build is booted (cargo run --release, or cargo qemu); got $elf" >&2; exit 2 ;;
esac
exec "$(dirname "$0")/../qemu-run.sh" --no-install "$@"
