#!/usr/bin/env bash
# Builds the kernel, boots it on QEMU virt with MTE, and reports.
#
#   ./qemu-run.sh [OPTIONS] [FILTER...] [-- KERNEL-WORDS...]
#
# FILTERs select tests: a suite (mm), a name prefix with :: (mte_hw::ldgm) or
# a glob with * (*tags*); explicit-only
# tests such as selftest::deliberate_failure run only when named in full.
#
# Options:
#   --list            print the selected test names, one per line, and stop
#   --list-variants   print the known-wrong variants (name | path | breaks |
#                     reproduces | caught by) and stop
#   --list-points     print the named schedule points and stop
#   --list-faults     print the fault-injection attributes and stop
#   --list-knobs      print the test knobs (settings a test changes) and stop
#   --smp N           number of CPUs (default 2)
#   --el2             enter the kernel at EL2 (virtualization=on; PSCI over SMC)
#   --image           boot the raw arm64 Image instead of the ELF
#   --uefi            boot the Image as an EFI application under EDK2 (Debian's
#                     qemu-efi-aarch64 AAVMF): the firmware loads it from QEMU's
#                     -kernel and passes the kernel words as LoadOptions; implies --image
#   --uefi-shell      as --uefi, but from a FAT disk: the EFI shell's startup.nsh
#                     runs EFI/mtekernel/mtekernel.efi with the kernel words as
#                     arguments (no fresh boot after a hang: there is no -append)
#   --uboot           boot the Image through U-Boot (u-boot-qemu's qemu_arm64:
#                     qfw load, bootargs, booti with U-Boot's DTB; the environment
#                     is boards/qemu-virt/uboot-env.txt); implies --image
#   --timeout SECS    limit for the whole run, every boot included (default 900)
#   --test-timeout S  limit for one test that declares none (default 120); a
#                     test over its limit fails and the run goes on in a fresh boot
#   --memory SIZE     guest RAM (default 512M)
#   --numa N          split the RAM into N NUMA nodes (N /memory banks in the DTB)
#   --dtb FILE        pass FILE to the kernel instead of QEMU's own tree (it must
#                     describe the same machine: scripts/make-test-dtb.sh makes one
#                     with firmware-reserved memory); implies --image
#   --capture FILE    also save the raw serial stream to FILE (kreport decode reads it)
#   --verbose         show debug log frames too (per-test instruction/cycle counts)
#   --bench NAME      run a benchmark (swap, uffd, thp, collapse, fault) instead of the tests
#   --script PATH     run scenario scripts (a file, or every *.txt of a directory;
#                     repeatable) instead of the built-in tests: they go to the
#                     kernel as a cpio initrd and each is a test script::NAME;
#                     implies --image
#   --fuzz SEED:COUNT run the fuzz suite from SEED: COUNT programs
#                     (fuzz::random_programs) and 10 x COUNT calls of every system
#                     call (fuzz::syscall_arguments); the time limits grow with COUNT;
#                     a filter picks one of the two (--fuzz 2:6000 fuzz::random_programs)
#   --soak N          run only the tag-integrity soak, N passes over all free
#                     memory (soak::tag_integrity); the time limits grow with N
#                     and --memory; mismatches print as SOAK-MISMATCH lines
#   --icount          run QEMU with -icount shift=0 (deterministic instruction counts)
#   --no-install      do not install missing prerequisites
#   -h, --help        this text
# Environment: QEMU=/path/to/qemu-system-aarch64 picks the emulator (>= 8).
#
# Writes target/reports/report.tap and target/reports/junit.xml and exits
# with the suite's status (0: every selected test passed).
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

smp=2 el2=0 image=0 uboot=0 uefi=0 timeout=900 test_timeout=120 memory=512M list=0 hooks='' install=1 verbose=() bench='' soak='' fuzz='' scripts=() icount=()
filters=() extra=() capture=() dtb=() numa=1 numaopts=()
# value OPTION "$@": the option's value, or status 2 with one line.
value() {
    if [ $# -lt 2 ] || [ -z "$2" ] || [ "${2#--}" != "$2" ]; then
        echo "qemu-run.sh: $1 needs a value (see --help)" >&2; exit 2
    fi
    printf '%s' "$2"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --list) list=1 ;;
        --list-variants) list=1; hooks=list-variants ;;
        --list-points) list=1; hooks=list-points ;;
        --list-faults) list=1; hooks=list-faults ;;
        --list-knobs) list=1; hooks=list-knobs ;;
        --smp) smp=$(value --smp "${2:-}"); shift ;;
        --el2) el2=1 ;;
        --image) image=1 ;;
        --uboot) uboot=1; image=1 ;;
        --uefi) uefi=1; image=1 ;;
        --uefi-shell) uefi=2; image=1 ;;
        --timeout) timeout=$(value --timeout "${2:-}"); shift ;;
        --test-timeout) test_timeout=$(value --test-timeout "${2:-}"); shift ;;
        --memory) memory=$(value --memory "${2:-}"); shift ;;
        --numa) numa=$(value --numa "${2:-}"); shift ;;
        --dtb) dtb=(-dtb "$(value --dtb "${2:-}")"); image=1; shift ;;
        --capture) capture=(--save-capture "$(value --capture "${2:-}")"); shift ;;
        --verbose) verbose=(-v) ;;
        --bench) bench=$(value --bench "${2:-}"); shift ;;
        --soak) soak=$(value --soak "${2:-}"); shift ;;
        --script) scripts+=("$(value --script "${2:-}")"); image=1; shift ;;
        --fuzz) fuzz=$(value --fuzz "${2:-}"); shift ;;
        --icount) icount=(-icount shift=0) ;;
        --no-install) install=0 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "qemu-run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) filters+=("$1") ;;
    esac
    shift
done
case "$smp" in ''|*[!0-9]*) echo "qemu-run.sh: --smp wants a number of CPUs, not '$smp'" >&2; exit 2 ;; esac
case "$timeout" in ''|*[!0-9]*) echo "qemu-run.sh: --timeout wants whole seconds, not '$timeout'" >&2; exit 2 ;; esac
case "$test_timeout" in ''|*[!0-9]*) echo "qemu-run.sh: --test-timeout wants whole seconds, not '$test_timeout'" >&2; exit 2 ;; esac
case "$bench" in ''|swap|uffd|thp|collapse|fault) ;; *) echo "qemu-run.sh: unknown benchmark '$bench' (swap, uffd, thp, collapse, fault)" >&2; exit 2 ;; esac
case "$soak" in ''|[1-9]|[1-9][0-9]*) ;; *) echo "qemu-run.sh: --soak wants a number of passes above 0, not '$soak'" >&2; exit 2 ;; esac
case "$fuzz" in ''|[0-9]*:[1-9]*) ;; *) echo "qemu-run.sh: --fuzz wants SEED:COUNT with COUNT above 0, not '$fuzz'" >&2; exit 2 ;; esac
if [ ${#scripts[@]} -gt 0 ] && { [ "$uboot" = 1 ] || [ "$uefi" != 0 ]; }; then
    echo "qemu-run.sh: --script passes an initrd, which the --uboot and --uefi boots here do not load" >&2; exit 2
fi
case "$numa" in ''|*[!0-9]*|0) echo "qemu-run.sh: --numa wants a number of nodes, not '$numa'" >&2; exit 2 ;; esac
if [ "$numa" -gt 1 ]; then
    case "$memory" in
        *[0-9]G) mib=$(( ${memory%G} * 1024 )) ;;
        *[0-9]M) mib=${memory%M} ;;
        *) echo "qemu-run.sh: --numa needs --memory in M or G, not '$memory'" >&2; exit 2 ;;
    esac
    if [ $(( mib % numa )) -ne 0 ]; then
        echo "qemu-run.sh: --memory $memory does not split into $numa equal NUMA nodes" >&2; exit 2
    fi
    for ((i = 0; i < numa; i++)); do
        numaopts+=(-object "memory-backend-ram,id=ram$i,size=$(( mib / numa ))M" -numa "node,nodeid=$i,memdev=ram$i")
    done
fi
if [ "$smp" -lt 1 ] || [ "$smp" -gt 8 ]; then
    echo "qemu-run.sh: --smp $smp: the kernel supports 1 to 8 CPUs" >&2; exit 2
fi

if [ "$install" = 1 ]; then
    scripts/install-prereqs.sh
fi

qemu=${QEMU:-qemu-system-aarch64}
if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "qemu-run.sh: '$qemu' not found; install QEMU >= 8 (scripts/install-prereqs.sh does it on Debian)" >&2
    exit 2
fi
version=$("$qemu" --version | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -1)
major=${version%%.*}
if [ -z "$major" ] || [ "$major" -lt 8 ]; then
    echo "qemu-run.sh: refusing QEMU ${version:-of unknown version} at $(command -v "$qemu"): versions before 8 model MTE tags wrongly" >&2
    echo "  (adjacent granules share tag storage, QEMU issue 1416), so tag tests would pass and fail at random." >&2
    echo "  Use QEMU >= 8, e.g. Debian bookworm-backports' qemu-system-arm 10.0 (scripts/install-prereqs.sh)." >&2
    exit 2
fi

target=aarch64-unknown-none-softfloat
cargo build --quiet --release --target "$target" -p mtekernel
cargo build --quiet --release -p kreport
elf=target/$target/release/mtekernel
kernel=$elf
if [ "$image" = 1 ]; then
    kernel=$(scripts/build-image.sh)
fi

firmware=()
if [ "$uboot" = 1 ]; then
    ubin=${UBOOT:-/usr/lib/u-boot/qemu_arm64/u-boot.bin}
    [ -f "$ubin" ] || { echo "qemu-run.sh: no U-Boot at $ubin (Debian: u-boot-qemu; or UBOOT=/path/to/u-boot.bin)" >&2; exit 2; }
    command -v mkenvimage >/dev/null || { echo "qemu-run.sh: --uboot needs mkenvimage (Debian: u-boot-tools)" >&2; exit 2; }
    # qemu_arm64 keeps its environment in the first 256 KiB of flash bank 1.
    mkenvimage -s 0x40000 -o target/uboot-env.img boards/qemu-virt/uboot-env.txt
    truncate -s 64M target/uboot-env.img
    firmware=(-bios "$ubin" -drive if=pflash,unit=1,format=raw,file=target/uboot-env.img)
fi

if [ "$uefi" != 0 ]; then
    code=${AAVMF_CODE:-/usr/share/AAVMF/AAVMF_CODE.fd} vars=${AAVMF_VARS:-/usr/share/AAVMF/AAVMF_VARS.fd}
    [ -f "$code" ] && [ -f "$vars" ] || { echo "qemu-run.sh: no EDK2 firmware at $code (Debian: qemu-efi-aarch64)" >&2; exit 2; }
    cp "$vars" target/efi-vars.fd
    firmware=(-drive "if=pflash,format=raw,readonly=on,file=$code" -drive if=pflash,format=raw,file=target/efi-vars.fd -nic none)
fi

words=(exit=semihosting)
if [ -n "$hooks" ]; then
    words+=("$hooks")
elif [ "$list" = 1 ]; then
    words+=(list)
fi
benchflag=()
if [ -n "$bench" ]; then
    words+=("bench=$bench")
    benchflag=(--bench)
fi
if [ -n "$fuzz" ]; then
    for f in "${filters[@]}"; do
        case "$f" in fuzz|fuzz::*) ;; *) echo "qemu-run.sh: --fuzz runs the fuzz suite or its tests (fuzz::random_programs, fuzz::syscall_arguments), not '$f'" >&2; exit 2 ;; esac
    done
    # Each of the two tests gets 3 s a program (or 10 calls a syscall).
    test_timeout=$(( 120 + ${fuzz#*:} * 3 ))
    [ "$timeout" -ge $(( 2 * test_timeout + 120 )) ] || timeout=$(( 2 * test_timeout + 120 ))
    words+=("fuzz=$fuzz")
    [ ${#filters[@]} -gt 0 ] || filters=(fuzz)
fi
initrd=()
if [ ${#scripts[@]} -gt 0 ]; then
    files=()
    for s in "${scripts[@]}"; do
        if [ -d "$s" ]; then
            found=("$s"/*.txt)
            [ -e "${found[0]}" ] || { echo "qemu-run.sh: no *.txt script in $s" >&2; exit 2; }
            files+=("${found[@]}")
        elif [ -f "$s" ]; then
            files+=("$s")
        else
            echo "qemu-run.sh: no script at $s" >&2; exit 2
        fi
    done
    target/release/kreport pack-initrd target/scripts.cpio "${files[@]}"
    initrd=(-initrd target/scripts.cpio)
    [ ${#filters[@]} -gt 0 ] || filters=(script)
fi
if [ -n "$soak" ]; then
    [ ${#filters[@]} -eq 0 ] || { echo "qemu-run.sh: --soak runs only soak::tag_integrity; drop the test filters" >&2; exit 2; }
    case "$memory" in
        *[0-9]G) gib=${memory%G} ;;
        *[0-9]M) gib=$(( (${memory%M} + 1023) / 1024 )) ;;
        *) echo "qemu-run.sh: --soak needs --memory in M or G, not '$memory'" >&2; exit 2 ;;
    esac
    # About 4 s per GiB and pass under TCG on a 2-core host; allow 30.
    test_timeout=$(( 120 + (soak + 1) * gib * 30 ))
    timeout=$(( test_timeout + 120 ))
    words+=("soak=$soak")
    filters=(soak::tag_integrity)
fi
for f in "${filters[@]}"; do words+=("test=$f"); done
words+=("${extra[@]}")

machine=virt,mte=on
# EDK2 publishes the DTB in its configuration table only without ACPI.
[ "$uefi" != 0 ] && machine=$machine,acpi=off
[ "$el2" = 1 ] && machine=$machine,virtualization=on
listflag=()
[ "$list" = 1 ] && listflag=(--list)
boot=(-kernel "$kernel" "${initrd[@]}" "${dtb[@]}" -append "${words[*]}")
if [ "$uefi" = 2 ]; then
    # An EFI system partition QEMU serves from a directory (vvfat).
    esp=target/esp
    rm -rf "$esp" && mkdir -p "$esp/EFI/mtekernel"
    cp "$kernel" "$esp/EFI/mtekernel/mtekernel.efi"
    printf 'FS0:\\EFI\\mtekernel\\mtekernel.efi %s\r\n' "${words[*]}" >"$esp/startup.nsh"
    boot=(-drive "if=virtio,format=raw,readonly=on,file=fat:$esp")
fi

exec target/release/kreport --elf "$elf" --reports target/reports --timeout "$timeout" --test-timeout "$test_timeout" "${capture[@]}" "${listflag[@]}" "${verbose[@]}" "${benchflag[@]}" -- \
    "$qemu" -machine "$machine" -cpu max -smp "$smp" -m "$memory" "${numaopts[@]}" "${icount[@]}" \
    -display none -monitor none -serial stdio -no-reboot \
    -semihosting-config enable=on,target=native \
    "${firmware[@]}" "${boot[@]}"
