#!/usr/bin/env bash
# Runs boards/lava/qemu-job.yaml with LAVA's dispatcher and no server
# (lava-run, Debian's lava-dispatcher), the way a LAVA worker would, and
# checks what LAVA recorded against the kernel's own summary.
#
#   scripts/lava-run.sh [--expect-fail NAME] [KERNEL-WORDS...]
#
# The kernel words select tests as for qemu-run.sh (test=mm, ...); report=lava
# and watchdog=120 are always added. With --expect-fail NAME the job must
# record NAME as failed (with its reason) and everything else as passed or
# skipped; without it every recorded case must pass or skip. LAVA's log and
# results are kept in target/lava/.
set -euo pipefail
cd "$(dirname "$0")/.."
expect_fail=''
if [ "${1:-}" = --expect-fail ]; then expect_fail=${2:?--expect-fail needs a test name}; shift 2; fi
command -v lava-run >/dev/null || { echo "lava-run.sh: no lava-run (Debian: lava-dispatcher; scripts/install-prereqs.sh)" >&2; exit 2; }

image=$(realpath "$(scripts/build-image.sh)")
out=target/lava
rm -rf "$out" && mkdir -p "$out"
words="exit=psci report=lava watchdog=120 $*"
sed -e "s|@IMAGE@|file://$image|" -e "s|@WORDS@|$words|" boards/lava/qemu-job.yaml >"$out/job.yaml"
status=0
lava-run --job-id 1 --output-dir "$out/work" --device boards/lava/qemu-device.yaml "$out/job.yaml" >"$out/log.yaml" 2>&1 || status=$?

# lava-run logs YAML, one record a line; the results are the lvl: results
# records, the serial output the lvl: target (or feedback) ones.
python3 - "$out/log.yaml" "$status" "$expect_fail" <<'PY'
import json, sys
log, status, expect_fail = sys.argv[1], int(sys.argv[2]), sys.argv[3]
records = []
for line in open(log, errors="replace"):
    try:
        records.append(json.loads(line))
    except ValueError:
        pass
results = [r["msg"] for r in records if isinstance(r, dict) and r.get("lvl") == "results"]
# Serial output is logged as target, or as feedback when it arrives while
# LAVA is finishing an action (the watchdog's last lines can).
target = [r["msg"] for r in records if isinstance(r, dict) and r.get("lvl") in ("target", "feedback")]
cases = {}
for r in results:
    if r.get("definition") == "mtekernel":
        cases[r["extra"]["test_case_id"]] = r["result"]
summary = [t for t in target if isinstance(t, str) and " passed, " in t and t.rstrip().endswith("skipped")]
job = [r for r in results if r.get("definition") == "lava" and r.get("case") == "job"]
errors = [r["msg"] for r in records if r.get("lvl") == "error"]
tests = {k: v for k, v in cases.items() if ".reason: " not in k}
reasons = {k.split(".reason: ")[0]: k.split(".reason: ", 1)[1] for k in cases if ".reason: " in k}
counts = {x: sum(1 for v in tests.values() if v == x) for x in ("pass", "fail", "skip")}
print(f"lava-run: exit {status}; LAVA recorded {len(tests)} cases: {counts['pass']} pass, {counts['fail']} fail, {counts['skip']} skip")
print(f"lava-run: kernel summary: {summary[-1].strip() if summary else 'none'}; job result: {job[0]['result'] if job else 'none'}")
for name, why in sorted(reasons.items()):
    print(f"lava-run: {tests.get(name, '?')} {name}: {why}")
bad = [f"LAVA error: {e}" for e in errors]
if job and job[0]["result"] != "pass":
    bad.append(f"the LAVA job failed: {job[0].get('error_msg', '')}")
if not summary:
    bad.append("the kernel printed no summary line")
else:
    p, f, s = [int(w) for w in summary[-1].replace(",", "").split()[0:6:2]]
    if (p, f, s) != (counts["pass"], counts["fail"], counts["skip"]):
        bad.append(f"LAVA's counts differ from the kernel's summary ({p}, {f}, {s})")
for name, r in tests.items():
    if r in ("fail",) and name != expect_fail:
        bad.append(f"{name} failed")
    if r != "pass" and name not in reasons:
        bad.append(f"{name} is {r} without a reason case")
if expect_fail and tests.get(expect_fail) != "fail":
    bad.append(f"{expect_fail} was expected to fail, LAVA has {tests.get(expect_fail)}")
for b in bad:
    print(f"lava-run: FAILED: {b}")
sys.exit(1 if bad else 0)
PY
