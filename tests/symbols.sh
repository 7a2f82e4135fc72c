#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# The installed library exports the public API only: every dynamic symbol
# is nvramtdb_* under a NVRAMTDB_ version node, and none of tdb's or our
# internals leak (a program that also uses the system's libtdb must not
# get ours).
lib="$top_builddir/lib/.libs/libnvramtdb.so"
if ! command -v nm >/dev/null 2>&1; then
    echo "SKIP: nm (binutils) not found"; exit 77
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
