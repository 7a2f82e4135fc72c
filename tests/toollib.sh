# SPDX-License-Identifier: LGPL-3.0-or-later
# toollib.sh — shared by the shell tests of nvram-tool, and through
# tpmlib.sh by those of the TPM daemons (sourced, not run).
# Before sourcing, set tmp_name (the temporary directory's name prefix)
# and, to show only the end of long files, show_tail (a line count).
# Provides: $tool, $run (valgrind wrapper when NVT_VALGRIND is set), $tmp
# (removed at exit, after at_exit, which a test may redefine), counters
# $passed/$failed with ok/not_ok, show FILE, nt ARGS (run the tool:
# $tmp/out, $tmp/err, $rc) and expect STATUS DESCRIPTION ARGS.  Exits 77
# when the tool is missing.

set -u

tool=${NVRAM_TOOL:-${top_builddir:-.}/tools/nvram-tool}
if [ ! -x "$tool" ]; then
    echo "SKIP: nvram-tool not found at $tool (set NVRAM_TOOL)"
    exit 77
fi
# Word splitting of $run is wanted: it may be "libtool --mode=execute valgrind ...".
run=
if [ -n "${NVT_VALGRIND:-}" ]; then
    run="${top_builddir:-.}/libtool --mode=execute $NVT_VALGRIND"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/${tmp_name:-nvram-test}.XXXXXX") || exit 99
# at_exit: what a test must stop before $tmp goes (the processes it started).
at_exit() { :; }
trap 'at_exit; rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# Show a file's lines (the last $show_tail if set) as comments, to explain a failure.
show() {
    [ -s "$1" ] || return 0
    if [ -n "${show_tail:-}" ]; then tail -n "$show_tail" "$1"; else cat "$1"; fi |
        sed 's/^/#   /'
    return 0
}

# nt ARGS...: run the tool; stdout in $tmp/out, stderr in $tmp/err, status in $rc.
nt() {
    $run "$tool" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

# expect STATUS DESCRIPTION ARGS...: run the tool and check its exit status.
expect() {
    want=$1 desc=$2
    shift 2
    nt "$@"
    if [ "$rc" -eq "$want" ]; then
        ok "$desc"
        return 0
    fi
    not_ok "$desc (exit $rc, expected $want)"
    show "$tmp/err"
    return 1
}
