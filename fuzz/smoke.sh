#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# fuzz/smoke.sh CORPUS SECONDS TARGET... — run from the build directory by
# "make fuzz-smoke": each harness fuzz/fuzz-TARGET first runs every seed
# of CORPUS/TARGET, then fuzzes for SECONDS seconds.  New inputs go to
# fuzz/smoke/TARGET (the committed seeds are never written), crashes to
# fuzz/smoke/crash-TARGET-*.  Exits non-zero if any harness failed.
corpus=$1 secs=$2
shift 2
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
failed=
for t in "$@"; do
    prog=fuzz/fuzz-$t
    out=fuzz/smoke/$t
    rm -rf "$out"
    mkdir -p "$out"
    if [ ! -d "$corpus/$t" ]; then
        echo "fuzz-smoke: no seed corpus $corpus/$t" >&2
        failed="$failed $t"
        continue
    fi
    log=fuzz/smoke/$t.log
    if "$prog" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="fuzz/smoke/crash-$t-" "$out" "$corpus/$t" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -E '^#[0-9]+.*(DONE|INITED)' "$log" | tail -n 1 | sed -n 's/.*\(cov: [0-9]*\).*\(ft: [0-9]*\).*/\1 \2/p')
        echo "fuzz-smoke: $t: ok, ${runs:-?} runs, $cov"
    else
        echo "fuzz-smoke: $t: FAILED; the end of $log:" >&2
        tail -n 60 "$log" >&2
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz-smoke: failed:$failed" >&2
    exit 1
fi
echo "fuzz-smoke: all $# harnesses passed"
