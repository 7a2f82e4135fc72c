#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# tdbexport.sh — nvram-tool export-tdb writes a standalone tdb that Samba's
# tdbdump shows with every entry (and tdbtool checks), and import-tdb
# brings the values into a new image unchanged; a damaged file changes
# nothing.  Exit 0 pass, 1 fail, 77 skip.  Environment: NVRAM_TOOL,
# TDBDUMP (tdbdump's path; empty skips the tdb-tools checks), NVT_VALGRIND.

tmp_name=nvram-tdbexport
. "$(dirname "$0")/toollib.sh"

img=$tmp/src.img
names="tpm0/permall tpm0/volatilestate efi0/vars efi0/unused"
expect 0 "create source image" create "$img" --blob tpm0/permall:64K \
    --blob tpm0/volatilestate:16K --blob efi0/vars:8K --blob efi0/unused:1K
{ head -c 30000 /dev/urandom; printf 'FLIP-MARKER-42Y'; head -c 20000 /dev/urandom; } >"$tmp/permall"
head -c 3000 /dev/urandom >"$tmp/volatilestate"
printf 'BootOrder=0001\n' >"$tmp/vars"
expect 0 "import permall" import "$img" tpm0/permall "$tmp/permall"
expect 0 "import volatilestate" import "$img" tpm0/volatilestate "$tmp/volatilestate"
expect 0 "import vars" import "$img" efi0/vars "$tmp/vars"

expect 0 "export-tdb" export-tdb "$img" "$tmp/blobs.tdb"
expect 1 "export-tdb refuses an existing file" export-tdb "$img" "$tmp/blobs.tdb" &&
    { grep -q "exists" "$tmp/err" && ok "message says the file exists" ||
      { not_ok "message says the file exists"; show "$tmp/err"; }; }
expect 2 "export-tdb without FILE is a usage error" export-tdb "$img"
expect 0 "export-tdb --help" export-tdb --help
expect 0 "import-tdb --help" import-tdb --help

if [ -z "${TDBDUMP:-}" ]; then
    echo "# tdbdump not found (TDBDUMP empty): skipping the tdb-tools checks"
else
    if "$TDBDUMP" "$tmp/blobs.tdb" >"$tmp/dump" 2>"$tmp/dumperr"; then
        ok "tdbdump opens the exported file"
    else
        not_ok "tdbdump opens the exported file"; show "$tmp/dumperr"
    fi
    for n in $names; do
        if grep -q "^key([0-9]*) = \"$n\"\$" "$tmp/dump"; then
            ok "tdbdump shows $n"
        else
            not_ok "tdbdump shows $n"; show "$tmp/dump"
        fi
    done
    count=$(grep -c '^key(' "$tmp/dump")
    [ "$count" -eq 4 ] && ok "tdbdump shows exactly 4 entries" ||
        not_ok "tdbdump shows exactly 4 entries (got $count)"
    tdbtool=$(dirname "$TDBDUMP")/tdbtool
    if [ -x "$tdbtool" ]; then
        if "$tdbtool" "$tmp/blobs.tdb" check >"$tmp/check" 2>&1 &&
            grep -q "integrity is OK" "$tmp/check"; then
            ok "tdbtool check passes"
        else
            not_ok "tdbtool check passes"; show "$tmp/check"
        fi
    fi
fi

# Into a new image, and back out byte for byte.
dst=$tmp/dst.img
expect 1 "import-tdb without --create needs an existing image" \
    import-tdb "$dst" "$tmp/blobs.tdb"
[ ! -e "$dst" ] && ok "no image left behind" || not_ok "no image left behind"
expect 0 "import-tdb --create" import-tdb --create "$dst" "$tmp/blobs.tdb"
grep -q "3 blob values imported" "$tmp/out" && ok "reports 3 values" ||
    { not_ok "reports 3 values"; show "$tmp/out"; }
for e in permall volatilestate; do
    expect 0 "dump tpm0/$e" dump -o "$tmp/$e.out" "$dst" "tpm0/$e" &&
        { cmp -s "$tmp/$e" "$tmp/$e.out" && ok "tpm0/$e identical" ||
          not_ok "tpm0/$e identical"; }
done
expect 0 "dump efi0/vars" dump -o "$tmp/vars.out" "$dst" efi0/vars &&
    { cmp -s "$tmp/vars" "$tmp/vars.out" && ok "efi0/vars identical" ||
      not_ok "efi0/vars identical"; }
expect 1 "efi0/unused has no value" dump -o "$tmp/unused.out" "$dst" efi0/unused
expect 0 "list --all" list --all "$dst" &&
    { grep -q "efi0/unused" "$tmp/out" && ok "efi0/unused listed" ||
      { not_ok "efi0/unused listed"; show "$tmp/out"; }; }
expect 0 "check the imported image" check "$dst"

# A damaged record: the import fails and the image keeps its values.
# flip_at_marker FILE: change the byte just after the marker that
# permall's payload carries.
flip_at_marker() {
    off=$(grep -obUaF "FLIP-MARKER-42" "$1" | head -n1 | cut -d: -f1)
    [ -n "$off" ] || return 1
    printf 'X' | dd of="$1" bs=1 seek="$((off + 14))" conv=notrunc 2>/dev/null
}
head -c 2000 /dev/urandom >"$tmp/other"
expect 0 "overwrite permall in the new image" import "$dst" tpm0/permall "$tmp/other"
if flip_at_marker "$tmp/blobs.tdb"; then
    expect 1 "import-tdb of a damaged file fails" import-tdb "$dst" "$tmp/blobs.tdb" &&
        { grep -q "tpm0/permall" "$tmp/err" && ok "message names the blob" ||
          { not_ok "message names the blob"; show "$tmp/err"; }; }
    expect 0 "dump after the failed import" dump -o "$tmp/after" "$dst" tpm0/permall &&
        { cmp -s "$tmp/other" "$tmp/after" && ok "image unchanged" ||
          not_ok "image unchanged"; }
else
    not_ok "marker found in the exported file"
fi

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
