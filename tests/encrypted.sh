#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# encrypted.sh — the crash sweeps and fault tests again, on encrypted
# images: NVT_TEST_ENCRYPT=1 makes every handle the test library starts
# use a test key (lib/test/open.c), so the same tests run, unchanged, with
# sealed values.  Prints TAP, one line per suite.
# Quick by default (the group, fault and space suites and two of test-crash's
# sweeps on the harshest disk model); set NVT_ENCRYPTED_LONG=1 for every
# test of those programs and test-crash-checkpoint too (about 10 minutes).

set -u
b=${top_builddir:-.}/tests
NVT_TEST_ENCRYPT=1
export NVT_TEST_ENCRYPT
p=/crash/journal/garbage-sectors/power-cut
set -- \
    "test-crypt -p /crypt/test-variant-in-effect" \
    "test-crash-group" \
    "test-faults" \
    "test-space"
if [ "${NVT_ENCRYPTED_LONG:-0}" = 1 ]; then
    set -- "$@" "test-crash-checkpoint" "test-crash"
else
    set -- "$@" "test-crash -p $p/step-04-replace-a-at-max -p $p/during-batch"
fi
echo "1..$#"
n=0
failed=0
for t in "$@"; do
    n=$((n + 1))
    prog=${t%% *}
    if [ ! -x "$b/$prog" ]; then
        echo "not ok $n - $prog (encrypted): $b/$prog not built"
        failed=1
        continue
    fi
    start=$(date +%s)
    # shellcheck disable=SC2086
    if out=$("$b"/$t 2>&1) && ! printf '%s\n' "$out" | grep -q '^not ok'; then
        echo "ok $n - $t (encrypted, $(printf '%s\n' "$out" | grep -c '^ok') tests, $(( $(date +%s) - start )) s)"
    else
        echo "not ok $n - $t (encrypted)"
        printf '%s\n' "$out" | grep -v '^ok' | tail -n 40 | sed 's/^/#   /'
        failed=1
    fi
done
exit $failed
