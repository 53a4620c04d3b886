#!/usr/bin/env bash
# Writes a DTB for QEMU virt (mte=on) that carries what real boards' firmware
# puts in theirs, for the boot suite's reserved-memory test:
#   - a /memreserve/ entry (64 KiB at RAM base + 15 MiB),
#   - /reserved-memory with a no-map carve-out (2 MiB, as TF-A or OP-TEE
#     keep), a mapped one (1 MiB) and a dynamic pool with only a size.
# QEMU rewrites the /memory nodes of a -dtb tree from its own -m and -numa
# settings, so several banks come from ./qemu-run.sh --numa N instead.
#
#   scripts/make-test-dtb.sh OUT.dtb [--smp N] [--memory SIZE] [--el2]
#
# The tree starts as the one QEMU itself builds for the same -smp, -m and
# machine options (dumpdtb), so it matches the machine it is passed to with
# ./qemu-run.sh --dtb OUT.dtb (use the same --smp, --memory and --el2).
set -euo pipefail
out=${1:?usage: scripts/make-test-dtb.sh OUT.dtb [--smp N] [--memory SIZE] [--el2]}
shift
smp=2 memory=512M machine=virt,mte=on
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) smp=$2; shift ;;
        --memory) memory=$2; shift ;;
        --el2) machine=$machine,virtualization=on ;;
        *) echo "make-test-dtb: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
for tool in dtc "${QEMU:-qemu-system-aarch64}"; do
    command -v "$tool" >/dev/null || { echo "make-test-dtb: '$tool' not found (Debian: device-tree-compiler, qemu-system-arm)" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${QEMU:-qemu-system-aarch64}" -machine "$machine,dumpdtb=$tmp/virt.dtb" -cpu max -smp "$smp" -m "$memory" -display none >/dev/null
dtc -q -I dtb -O dts -o "$tmp/virt.dts" "$tmp/virt.dtb"

# The RAM base QEMU describes: memory@BASE { reg = <hi lo hi lo>; }.
reg=$(sed -n '/memory@/,/};/s/.*reg = <\(.*\)>;/\1/p' "$tmp/virt.dts" | head -1)
read -r bh bl _ <<<"$reg"
base=$(( (bh << 32) | bl ))
cells() { printf '0x%x 0x%x' $(( $1 >> 32 )) $(( $1 & 0xffffffff )); }
nomap=$((base + (96 << 20))) mapped=$((base + (100 << 20))) memres=$((base + (15 << 20)))

{
    echo '/dts-v1/;'
    echo "/memreserve/ $(printf '0x%x' "$memres") 0x10000;"
    # What the boot suite expects, written apart from the structures it
    # checks the kernel's reading of: (address, size) pairs of 64-bit cells.
    sed -e '/^\/dts-v1\/;/d' -e '$d' \
        -e "s|^\tchosen {|\tchosen {\n\t\tmtekernel,test-reserved = <$(cells "$memres") 0x0 0x10000 $(cells "$nomap") 0x0 0x200000 $(cells "$mapped") 0x0 0x100000>;\n\t\tmtekernel,test-no-map = <$(cells "$nomap") 0x0 0x200000>;|" \
        "$tmp/virt.dts"
    cat <<DTS
	reserved-memory {
		#address-cells = <0x02>;
		#size-cells = <0x02>;
		ranges;
		firmware@$(printf '%x' "$nomap") {
			reg = <$(cells "$nomap") 0x0 0x200000>;
			no-map;
		};
		shared@$(printf '%x' "$mapped") {
			reg = <$(cells "$mapped") 0x0 0x100000>;
		};
		pool {
			compatible = "shared-dma-pool";
			size = <0x0 0x400000>;
			reusable;
		};
	};
};
DTS
} >"$tmp/test.dts"
dtc -q -I dts -O dtb -o "$out" "$tmp/test.dts"
echo "make-test-dtb: wrote $out (reserved $(printf '%#x' "$nomap")+2M no-map, $(printf '%#x' "$mapped")+1M, /memreserve/ $(printf '%#x' "$memres")+64K)"
