#!/usr/bin/env bash
# Builds the kernel and writes the raw arm64 Image (also an EFI application)
# beside the ELF; prints the Image's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-none-softfloat
cargo build --quiet --release --target "$target" -p mtekernel
objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
[ -x "$objcopy" ] || objcopy=$(command -v llvm-objcopy || true)
if [ -z "$objcopy" ]; then
    echo "build-image: no llvm-objcopy (rustup component add llvm-tools)" >&2; exit 2
fi
"$objcopy" -O binary "target/$target/release/mtekernel" "target/$target/release/Image"
echo "target/$target/release/Image"
