#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run the suite:
# a QEMU that models MTE correctly (bookworm-backports 10.x; bookworm's 7.2
# stores tags per granule-parity, see shared/spec/platform-notes.md) and the
# Rust target from rust-toolchain.toml, and the report consumers test-all.sh
# uses. Safe to run again; skips what is there.
set -euo pipefail

# With QEMU=... set the caller chose the emulator: leave it to qemu-run.sh
# to accept or refuse it.
need_qemu() {
    [ -z "${QEMU:-}" ] || return 1
    local q=qemu-system-aarch64
    command -v "$q" >/dev/null 2>&1 || return 0
    local major
    major=$("$q" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [ -z "$major" ] || [ "$major" -lt 8 ]
}

# The URI of the machine's own Debian archive entry for bookworm: from a
# deb822 .sources file (URIs: next to Suites: bookworm) or a one-line
# `deb URI bookworm ...` entry. Security mirrors are skipped.
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() { if (uri != "" && suite) print uri; uri = ""; suite = 0 }
            /^[[:space:]]*$/ { flush(); next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
            END { flush() }
        ' "$f"
    done >/tmp/install-prereqs.$$
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed 's/\[[^]]*\]//' | awk '$1 == "deb" && $3 == "bookworm" { print $2 }' >>/tmp/install-prereqs.$$
    uri=$(grep -v -- '-security' /tmp/install-prereqs.$$ | head -1)
    rm -f /tmp/install-prereqs.$$
    echo "$uri"
}

if need_qemu; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-prereqs: no qemu-system-aarch64 >= 8 and no apt-get; install QEMU >= 8 by hand" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    src=/etc/apt/sources.list.d/bookworm-backports.sources
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        uri=$(debian_mirror)
        if [ -z "$uri" ]; then
            echo "install-prereqs: found no Debian mirror for the suite bookworm in /etc/apt/sources.list or" >&2
            echo "  /etc/apt/sources.list.d/ (deb822 .sources or one-line .list); add one, or install QEMU >= 8 by hand" >&2
            exit 1
        fi
        echo "install-prereqs: adding bookworm-backports from $uri"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" | $SUDO tee "$src" >/dev/null
    fi
    echo "install-prereqs: installing qemu-system-arm from bookworm-backports"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports qemu-system-arm >/dev/null
fi

# The report consumers test-all.sh checks the reports with: xmllint (the
# JUnit XSD) and prove (TAP); dtc for the firmware-reserved-memory DTB; by
# Debian package name.
missing=()
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
command -v prove >/dev/null 2>&1 || missing+=(perl)
command -v dtc >/dev/null 2>&1 || missing+=(device-tree-compiler)
command -v python3 >/dev/null 2>&1 || missing+=(python3)   # scripts/fuzz-minimise.py
# The firmware test-all.sh boots the Image through: EDK2 (AAVMF), U-Boot and
# its mkenvimage.
[ -f /usr/share/AAVMF/AAVMF_CODE.fd ] || missing+=(qemu-efi-aarch64)
[ -f /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || missing+=(u-boot-qemu)
command -v mkenvimage >/dev/null 2>&1 || missing+=(u-boot-tools)
# LAVA's dispatcher for the lava-run step (it installs beside QEMU 10 when
# qemu-system-x86 also comes from bookworm-backports) and the TFTP
# directory its deploy actions look up.
lava=()
command -v lava-run >/dev/null 2>&1 || lava+=(lava-dispatcher qemu-system-x86/bookworm-backports)
[ -f /etc/default/tftpd-hpa ] || lava+=(tftpd-hpa)
if [ ${#lava[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "install-prereqs: installing ${lava[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${lava[@]}" >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        echo "install-prereqs: installing ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "install-prereqs: no apt-get to install ${missing[*]} (test-all.sh needs xmllint, prove, dtc, python3, EDK2, U-Boot and mkenvimage)" >&2
    fi
fi

# The toolchain, its targets and components, as rust-toolchain.toml names
# them (rustup installs a missing toolchain from the file, but not a target
# missing from an installed one).
cd "$(dirname "$0")/.."
if ! command -v rustup >/dev/null 2>&1; then
    echo "install-prereqs: rustup not found; install Rust with rustup first" >&2
    exit 1
fi
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
targets=$(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '", ' | tr ',' ' ')
components=$(sed -n 's/^components *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '"' | tr ',' ' ')
rustup run "$channel" rustc --version >/dev/null 2>&1 || rustup toolchain install "$channel" --profile minimal
# shellcheck disable=SC2086 # word splitting of the lists is wanted
rustup target add --toolchain "$channel" $targets >/dev/null
# shellcheck disable=SC2086
rustup component add --toolchain "$channel" $components >/dev/null
