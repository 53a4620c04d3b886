#!/usr/bin/env bash
# Runs every test: host unit tests, the on-target suites at EL1 and EL2 with
# the ELF and the raw Image on 1, 2 and 4 CPUs, and the checks that failures
# are caught (a failing test, a panic, an unexpected fault, a hang, a bad
# command line, an old QEMU). The output is TAP (one `ok N - step` or
# `not ok N - step` line per step, diagnostics as `#` lines, the plan at the
# end) followed by `test-all: N passed, N failed`.
#
#   ./test-all.sh [--no-install]
set -uo pipefail
cd "$(dirname "$0")"

if [ "${1:-}" != "--no-install" ]; then
    scripts/install-prereqs.sh || { echo "test-all: installing prerequisites failed"; exit 1; }
fi

logs=target/test-all
mkdir -p "$logs"
passed=0 failed=0 failures=()

# step NAME COMMAND...: runs COMMAND, counts it, shows the log tail on failure.
step() {
    local name=$1; shift
    local log="$logs/$name.log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1)); echo "ok $((passed + failed)) - $name"
    else
        failed=$((failed + 1)); failures+=("$name"); echo "not ok $((passed + failed)) - $name"
        echo "# log: $log"; tail -n 25 "$log" | sed 's/^/#     /'
    fi
}

# The report files are what CI systems read: junit.xml must validate
# against the Jenkins xunit plugin's JUnit schema and report.tap must parse
# as TAP, passing (`green`) or failing (`red`) as the run did.
consumers() {
    local want=$1 tap=target/reports/report.tap junit=target/reports/junit.xml
    xmllint --noout --schema tools/kreport/schema/junit-10.xsd "$junit" || { echo "junit.xml fails the JUnit XSD"; return 1; }
    if prove --exec cat "$tap" >/dev/null 2>&1; then
        [ "$want" = green ] || { echo "prove passes report.tap of a run that failed"; return 1; }
    else
        [ "$want" = red ] || { echo "prove fails report.tap of a run that passed"; prove --exec cat "$tap"; return 1; }
    fi
}

# The TAP and JUnit files must agree with the summary line kreport printed.
reports_agree() {
    local log=$1 tap=target/reports/report.tap junit=target/reports/junit.xml
    local line p f s
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
    local tap_ok tap_not tap_skip
    tap_skip=$(grep -cE '^ok [0-9]+ - .* # SKIP' "$tap")
    tap_ok=$(( $(grep -cE '^ok [0-9]+ - ' "$tap") - tap_skip ))
    tap_not=$(grep -cE '^not ok [0-9]+ - ' "$tap")
    [ "$tap_ok" = "$p" ] && [ "$tap_not" = "$f" ] && [ "$tap_skip" = "$s" ] || {
        echo "TAP ($tap_ok ok, $tap_not not ok, $tap_skip skipped) disagrees with '$line'"; return 1; }
    grep -q "^1\.\.$((p + f + s))\$" "$tap" || { echo "TAP plan does not count $((p + f + s)) tests"; return 1; }
    local head jt jf je
    head=$(grep -o '<testsuites [^>]*>' "$junit")
    jt=$(echo "$head" | sed -nE 's/.* tests="([0-9]+)".*/\1/p')
    jf=$(echo "$head" | sed -nE 's/.* failures="([0-9]+)".*/\1/p')
    je=$(echo "$head" | sed -nE 's/.* errors="([0-9]+)".*/\1/p')
    [ "$jt" = $((p + f + s)) ] && [ $((jf + je)) = "$f" ] || { echo "JUnit totals ($head) disagree with '$line'"; return 1; }
    consumers "$([ "$f" = 0 ] && echo green || echo red)"
}

suite() { # suite NAME QEMU-RUN-ARGS...: the suite must pass and its reports agree
    local name=$1; shift
    step "$name" ./qemu-run.sh --no-install "$@"
    if [ -f "$logs/$name.log" ]; then
        step "$name-reports-agree" reports_agree "$logs/$name.log"
    fi
}

# expect_failure NAME PATTERN QEMU-RUN-ARGS...: the run must fail and its
# output (log and TAP) must contain PATTERN.
expect_failure() {
    local name=$1 pattern=$2; shift 2
    if ./qemu-run.sh --no-install "$@"; then
        echo "the run passed; it should have failed"; return 1
    fi
    grep -qE -- "$pattern" "$logs/$name.log" target/reports/report.tap 2>/dev/null || {
        echo "no line matching '$pattern' in the output"; return 1; }
    consumers red
}

step formatted cargo fmt --all -- --check
step host-unit-tests cargo test --release -p kreport -p host-unit-tests

suite el1-elf-smp1 --smp 1
suite el1-elf-smp2 --smp 2
suite el2-elf-smp2 --el2 --smp 2
suite el1-image-smp4 --image --smp 4
suite el2-image-smp4 --image --el2 --smp 4
suite el1-elf-smp2-async --smp 2 -- mte=async
suite el1-elf-smp2-asymm --smp 2 -- mte=asymm
# Without a RAM-disk every swap test is skipped, saying why; one that uses
# swap without declaring `ramdisk` fails here.
no_ramdisk() {
    ./qemu-run.sh --no-install --smp 2 -- ramdisk=0 || return 1
    grep -q "# SKIP needs the swap RAM-disk" target/reports/report.tap || { echo "no test was skipped for the RAM-disk"; return 1; }
}
step el1-elf-smp2-no-ramdisk no_ramdisk
# The banner names the EL the kernel was entered at; a bootloader's Linux
# words are ignored, each with a note, and the run goes on.
step banner-names-entry-el grep -q "entered at EL2, running at EL1" "$logs/el2-elf-smp2.log"
linux_words() {
    ./qemu-run.sh --no-install mmu -- console=ttyAMA0,115200 root=/dev/ram0 rw quiet || return 1
    grep -q "'console=ttyAMA0,115200' is a Linux word; ignored" "$logs/accepts-linux-words.log"
}
step accepts-linux-words linux_words
# Firmware-reserved memory, two RAM banks and RAM above 4 GiB: a DTB with
# /memreserve/ and /reserved-memory (scripts/make-test-dtb.sh), two NUMA
# nodes, 4 GiB from 0x40000000; the reserved test must run, not skip.
firmware_memory() {
    scripts/make-test-dtb.sh target/reserved.dtb --smp 2 --memory 4G || return 1
    ./qemu-run.sh --no-install --smp 2 --memory 4G --numa 2 --dtb target/reserved.dtb boot soak || return 1
    if grep -q "# SKIP" target/reports/report.tap; then echo "a boot test was skipped"; return 1; fi
}
step boot-reserved-dtb-numa2-4g firmware_memory
# The soak mode as a user runs it: only soak::tag_integrity, N passes.
soak_mode() {
    ./qemu-run.sh --no-install --soak 2 || return 1
    grep -q "^SOAK: passes=2 .* mismatches=0 " "$logs/soak-mode-2-passes.log" || { echo "no clean 2-pass SOAK line"; return 1; }
    grep -q "^1 passed, 0 failed, 0 skipped" "$logs/soak-mode-2-passes.log" || { echo "the soak ran more than its test"; return 1; }
}
step soak-mode-2-passes soak_mode
# Scenario scripts loaded at run time (a cpio initrd): the shipped corpus
# passes; a script that does not parse, or whose stated outcome is wrong,
# fails naming its file and line.
suite scripts-corpus-smp2 --smp 2 --script tests/scripts
script_errors() {
    if ./qemu-run.sh --no-install --script tests/scripts/bad; then echo "the bad scripts passed"; return 1; fi
    grep -q "^FAIL: script::syntax_error: syntax-error.txt:3: 'two' is not a number" "$logs/scripts-errors-name-file-and-line.log" || { echo "no file:line for the syntax error"; return 1; }
    grep -q "^FAIL: script::wrong_expectation: wrong-expectation.txt:4: " "$logs/scripts-errors-name-file-and-line.log" || { echo "no file:line for the wrong outcome"; return 1; }
}
step scripts-errors-name-file-and-line script_errors
# The fuzzer's CI budget (README gives the long-run command).
suite fuzz-200-programs --smp 2 --fuzz 1:200
# A panic the kernel cannot minimise itself: the host-side minimiser takes
# the first program (from seed 1 on) that has an mprotect, with the
# interpreter made to panic on mprotect, and must end with a short script
# that still panics there.
fuzz_minimise() {
    local out="$logs/fuzz-minimise-repro.txt" seed=''
    for s in $(seq 1 20); do
        if ./qemu-run.sh --no-install --fuzz "$s:1" fuzz::random_programs | sed -n '/^--- program.txt/,/^--- end/p' | grep -q ': mprotect '; then
            seed=$s; break
        fi
    done
    [ -n "$seed" ] || { echo "no program of seeds 1-20 has an mprotect"; return 1; }
    scripts/fuzz-minimise.py "$seed" --out "$out" -- knob=script:fail_on_mprotect=1 || return 1
    grep -q "^# program seed $seed, minimised by scripts/fuzz-minimise.py: panic at src/script/run.rs:" "$out" || { echo "no panic location in $out"; return 1; }
    local n; n=$(grep -Evc '^(#|on cpu |})' "$out")
    [ "$n" -le 4 ] || { echo "the repro kept $n statements"; return 1; }
    grep -q ": mprotect " "$out" || { echo "the repro lost the mprotect"; return 1; }
}
step fuzz-minimise-a-panic fuzz_minimise
# Fault-injection sweeps (on request, so not in the runs above): each key
# scenario with the Nth call of each fault attribute failing in turn.
suite sweep-smp2 --smp 2 sweep
# The same Image as an EFI application under EDK2: from QEMU's -kernel (the
# firmware's own loader, LoadOptions from -append) and from a FAT disk through
# the EFI shell's startup.nsh; the UEFI memory map's reservations are checked.
suite el1-uefi-smp2 --uefi --smp 2 mte_hw boot mmu mm
step uefi-entered-through-uefi grep -q "entered at EL1 through UEFI" "$logs/el1-uefi-smp2.log"
step uefi-reserved-memory-checked grep -q "^PASS: boot::firmware_reserved_memory_never_allocated" "$logs/el1-uefi-smp2.log"
suite el2-uefi-shell-smp2 --uefi-shell --el2 --smp 2 mte_hw boot
uefi_shell_args() { # the shell's arguments were the kernel words: only the two suites ran
    grep -q "^PASS: boot::" "$logs/el2-uefi-shell-smp2.log" && ! grep -qE "^(PASS|FAIL|SKIP): (mm|swap|uffd)::" "$logs/el2-uefi-shell-smp2.log"
}
step uefi-shell-arguments-reach-kernel uefi_shell_args
# Through firmware as boards boot it: U-Boot's qfw load and booti with its
# own DTB, bootargs from its environment plus the Linux word it adds.
suite el2-uboot-smp2 --uboot --el2 --smp 2 mte_hw boot mmu
step uboot-booti-with-its-dtb grep -q "Booting using the fdt blob" "$logs/el2-uboot-smp2.log"
step uboot-bootargs-reach-kernel grep -q "'console=ttyAMA0,115200' is a Linux word; ignored" "$logs/el2-uboot-smp2.log"
# LAVA's dispatcher runs boards/lava/qemu-job.yaml with no server: every
# result recorded with its reason, counts equal to the kernel's summary, and
# a hung test still gets a result (the in-kernel watchdog).
step lava-run-qemu-job scripts/lava-run.sh test=mte_hw test=boot test=mmu test=smp
step lava-run-hung-test-recorded scripts/lava-run.sh --expect-fail selftest::deliberate_hang test=mte_hw test=selftest::deliberate_hang
# Every suite passes whatever the boot THP setting (scenarios that need a
# THP set the tunables for their duration).
suite el1-elf-smp2-thp-always --smp 2 -- transparent_hugepage=always
suite el1-elf-smp2-thp-never --smp 2 -- transparent_hugepage=never

step fails-deliberate-failure expect_failure fails-deliberate-failure 'not ok 1 - selftest::deliberate_failure' selftest::deliberate_failure
step fails-panic-with-location expect_failure fails-panic-with-location 'PANIC on CPU 0 at src/suites/harness_self.rs:[0-9]+: deliberate panic' selftest::deliberate_panic
step fails-unexpected-fault-decoded expect_failure fails-unexpected-fault-decoded 'FAIL: selftest::deliberate_unexpected_fault: unexpected exception: tag-check fault on EL1 read' selftest::deliberate_unexpected_fault
# deliberate_hang declares `timeout = 5`; --timeout is the whole run's limit.
step fails-hang-at-timeout expect_failure fails-hang-at-timeout 'selftest::deliberate_hang: timed out after 5 s \(its per-test limit\)' selftest::deliberate_hang
step fails-hang-at-run-limit expect_failure fails-hang-at-run-limit 'timed out after 3 s \(the whole run.s limit' --timeout 3 selftest::deliberate_hang
# isolated NAME FILTERS...: a run with a test that takes the kernel down
# (a panic or a hang) in the middle fails, names that test, and still
# reports every test after it (the runner boots a fresh kernel for them).
isolated() {
    local name=$1 dying=$2 after=$3; shift 3
    if ./qemu-run.sh --no-install "$@" >"$logs/$name.out" 2>&1; then
        cat "$logs/$name.out"; echo "the run passed; it should have failed"; return 1
    fi
    cat "$logs/$name.out"
    local tap=target/reports/report.tap
    grep -qE "^not ok [0-9]+ - $dying\$" "$tap" || { echo "TAP does not fail $dying"; return 1; }
    grep -qE "^ok [0-9]+ - $after\$" "$tap" || { echo "TAP does not report $after, which ran after $dying"; return 1; }
    grep -q "booting a fresh kernel for the tests after it" "$logs/$name.out" || { echo "no fresh boot"; return 1; }
    reports_agree "$logs/$name.out"
}
step isolates-a-panic isolated isolates-a-panic selftest::deliberate_panic smp::tag_check_fault_on_every_cpu \
    mte_hw::tag_check selftest::deliberate_panic smp
step isolates-a-hang isolated isolates-a-hang selftest::deliberate_hang smp::tag_check_fault_on_every_cpu \
    mte_hw::tag_check selftest::deliberate_hang smp
# A test that fails part-way leaving swap on, a page swapped out, a wrong
# order, an injection, an armed point, a knob set and a live task fails alone: the
# harness puts it all back and the swap tests after it pass.
contained() {
    if ./qemu-run.sh --no-install selftest::deliberate_leak swap::pageout_installs swap::swapin_write_frees \
        swap::free_before_restore_is_caught >"$logs/contains-a-leak.out" 2>&1; then
        cat "$logs/contains-a-leak.out"; echo "the run passed; it should have failed"; return 1
    fi
    cat "$logs/contains-a-leak.out"
    local tap=target/reports/report.tap
    grep -q "^not ok 1 - selftest::deliberate_leak\$" "$tap" &&
        grep -q "left behind (and put back):.*knob vmscan:keep_in_swapcache set.*swap on" "$tap" &&
        [ "$(grep -c '^ok [0-9]* - swap::' "$tap")" = 3 ] || { echo "the leak was not contained"; return 1; }
}
step contains-a-leak contained
# Every declared variant is in README's orderings table.
variants_in_readme() {
    local names missing=0
    names=$(./qemu-run.sh --no-install --list-variants | cut -d' ' -f1) || return 1
    [ -n "$names" ] || { echo "no variants listed"; return 1; }
    for n in $names; do
        grep -qF "| \`$n\` |" README.md || { echo "README's orderings table lacks $n"; missing=1; }
    done
    [ "$missing" = 0 ]
}
step variants-in-readme variants_in_readme
# A benchmark prints its BENCHROW lines and the side-by-side script turns
# them into table rows (no Linux here: its columns read '-').
bench_rows() {
    local run="$logs/bench-fault-run.log" table
    ./qemu-run.sh --no-install --smp 1 --memory 3G --bench fault > "$run" 2>&1 || return 1
    table=$(python3 scripts/bench-table.py "$run" "$run" /dev/null /dev/null) || return 1
    echo "$table"
    for op in "COW write fault, tagged" "first-touch write fault, PROT_MTE" "first-touch write fault  "; do
        echo "$table" | grep -qF "| $op" || { echo "no table row for '$op'"; return 1; }
    done
}
step bench-rows-and-table bench_rows
# Differential testing: the shipped scripts on this kernel and on Debian's
# arm64 Linux in the same QEMU (about 20 s once the kernel package is
# cached); any difference not declared in tests/linux-differences.txt fails.
step vs-linux-corpus python3 scripts/vs-linux.py --smp 2
# A raw serial capture is clean text: report lines grep as they are, log
# frames are `DEFMT <base64>` lines; `kreport decode` reads it offline,
# survives damaged frame lines, and refuses an ELF of another build.
capture() {
    local cap=target/test-all/capture.bin elf=target/aarch64-unknown-none-softfloat/release/mtekernel out
    ./qemu-run.sh --no-install --capture "$cap" mmu selftest::deliberate_failure && { echo "the run passed"; return 1; }
    [ "$(grep -c '^PASS: mmu::' "$cap")" = 6 ] || { echo "grep '^PASS: ' does not find the 6 mmu lines"; return 1; }
    grep -q '^FAIL: selftest::deliberate_failure: ' "$cap" || { echo "no clean FAIL line"; return 1; }
    grep -q '^DEFMT [A-Za-z0-9+/=]*$' "$cap" || { echo "no DEFMT frame lines"; return 1; }
    ! LC_ALL=C grep -q '[^[:print:][:space:]]' "$cap" || { echo "binary bytes in the capture"; return 1; }
    out=$(target/release/kreport --elf "$elf" decode "$cap")
    echo "$out" | grep -q '^6 passed, 1 failed, 0 skipped$' || { echo "decode: $out"; return 1; }
    out=$(sed 's/^\(DEFMT ...\)./\1\xff/' "$cap" | target/release/kreport --elf "$elf" 2>&1)
    echo "$out" | grep -q '^6 passed, 1 failed, 0 skipped$' && echo "$out" | grep -q 'damaged defmt frame lines skipped' ||
        { echo "a damaged capture: $out"; return 1; }
    out=$(sed 's/^mtekernel: build id .*/mtekernel: build id 0000/' "$cap" | target/release/kreport --elf "$elf" 2>&1)
    echo "$out" | grep -q 'is not the ELF given with --elf' || { echo "a capture of another build: $out"; return 1; }
}
step capture-is-clean-and-decodes capture
step fails-bad-command-line expect_failure fails-bad-command-line "unknown kernel command-line word 'frobnicate'" -- frobnicate
step fails-unknown-filter expect_failure fails-unknown-filter "no test matches 'no_such_suite'" no_such_suite

old_qemu() {
    local fake; fake=$(mktemp -d)/qemu-system-aarch64
    printf '#!/bin/sh\necho "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)"\n' >"$fake"
    chmod +x "$fake"
    local out rc
    out=$(QEMU=$fake ./qemu-run.sh --no-install 2>&1); rc=$?
    echo "$out"
    [ "$rc" = 2 ] && echo "$out" | grep -q "refusing QEMU 7.2.22"
}
step refuses-qemu-7.2 old_qemu

echo "1..$((passed + failed))"
[ ${#failures[@]} -gt 0 ] && echo "# failed steps: ${failures[*]}"
echo "test-all: $passed passed, $failed failed"
[ "$failed" = 0 ]
