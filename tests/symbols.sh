#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# The installed library exports the public API only: every dynamic symbol
# is nvramtdb_* under a NVRAMTDB_ version node, and none of tdb's or our
# internals leak (a program that also uses the system's libtdb must not
# get ours).  It holds nothing of the test library (lib/test/), not even
# as a local symbol.  The installed programs use it as a shared library:
# they need libnvramtdb.so and carry no copy of its code.
lib="$top_builddir/lib/.libs/libnvramtdb.so"
if ! command -v nm >/dev/null 2>&1 || ! command -v readelf >/dev/null 2>&1; then
    echo "SKIP: nm or readelf (binutils) not found"; exit 77
fi
if [ ! -f "$lib" ]; then
    echo "FAIL: $lib not built"; exit 1
fi
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ {print $3}')
[ -n "$syms" ] || { echo "FAIL: no exported symbols found"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^nvramtdb_[a-z_0-9]*@@NVRAMTDB_[0-9.]*$' || true)
if [ -n "$bad" ]; then
    echo "FAIL: unexpected exported symbols:"; printf '%s\n' "$bad"; exit 1
fi
for want in nvramtdb_open nvramtdb_start nvramtdb_write nvramtdb_read nvramtdb_close; do
    printf '%s\n' "$syms" | grep -q "^$want@@" || { echo "FAIL: $want not exported"; exit 1; }
done
if nm -D "$lib" | grep -q ' T tdb_'; then
    echo "FAIL: tdb symbols exported"; exit 1
fi
echo "ok: $(printf '%s\n' "$syms" | wc -l) symbols, all nvramtdb_*"

# No test part: the fault, borrowed and counting backends, the test hook
# and nvt_open_backend (lib/test/nvttest.h) are not compiled in.  nm -a
# lists local functions and variables, and the source file names too.
all=$(nm -a "$lib" 2>/dev/null | awk '{print $NF}')
if [ -z "$all" ] || ! printf '%s\n' "$all" | grep -q '^nvt_'; then
    echo "FAIL: $lib has no symbol table (stripped?): cannot look for test parts"; exit 1
fi
test_parts='nvt_fault_|fault_backend|backend-fault|nvt_be_borrow|nvt_counting_|backend-wrap'
test_parts="$test_parts|nvt_test_|testhook\\.c|nvttest|nvt_open_backend|nvt_mem_backend_flushes"
found=$(printf '%s\n' "$all" | grep -E "$test_parts" | sort -u || true)
if [ -n "$found" ]; then
    echo "FAIL: test parts in $lib:"; printf '%s\n' "$found"; exit 1
fi
echo "ok: no test part in libnvramtdb.so ($(printf '%s\n' "$all" | wc -l) symbols looked at)"

# The programs link the shared library.  libtool keeps the real program
# in .libs/ and puts a wrapper script in its place.
for prog in nvram-tool nvram-tpmd; do
    bin="$top_builddir/tools/.libs/$prog"
    [ -f "$bin" ] || bin="$top_builddir/tools/$prog"
    if [ ! -f "$bin" ]; then
        echo "note: $prog is not built (no libtpms?): not checked"; continue
    fi
    if ! readelf -d "$bin" | grep 'NEEDED' | grep -q 'libnvramtdb\.so'; then
        echo "FAIL: $prog does not need libnvramtdb.so:"; readelf -d "$bin" | grep NEEDED; exit 1
    fi
    copy=$(nm "$bin" 2>/dev/null | awk '$2 ~ /^[TtDdBbRr]$/ {print $3}' | grep -E '^(nvt_|tdb_)' || true)
    if [ -n "$copy" ]; then
        echo "FAIL: $prog carries library code of its own:"; printf '%s\n' "$copy" | head; exit 1
    fi
    echo "ok: $prog needs libnvramtdb.so and has no copy of its code"
done
