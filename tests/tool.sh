#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# tool.sh — end-to-end test of nvram-tool: usage errors, create, import and
# dump round trips, list/info output, size limits, delete, check, and what
# corrupt or truncated images do.  One "ok"/"not ok" line per check; exit
# 0 pass, 1 fail, 77 skip.  Environment: NVRAM_TOOL (the built tool),
# top_builddir, NVT_VALGRIND (optional, set by make check-valgrind).

tmp_name=nvram-tool-test
. "$(dirname "$0")/toollib.sh"

# check DESCRIPTION COMMAND...: a shell condition as one check.
check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

size_of() { wc -c <"$1" | tr -d ' '; }
# lacks PATTERN FILE: no line of FILE matches.
lacks() { ! grep -q -- "$1" "$2"; }
# has_all FILE PATTERN...: every pattern matches some line of FILE.
has_all() {
    f=$1
    shift
    for p in "$@"; do grep -q -- "$p" "$f" || return 1; done
}
if command -v sha256sum >/dev/null 2>&1; then
    digest() { sha256sum <"$1"; }
else
    digest() { cksum <"$1"; }
fi
have_python=no
command -v python3 >/dev/null 2>&1 && have_python=yes

# ---- usage ------------------------------------------------------------------
expect 2 "no arguments is a usage error"
expect 2 "unknown command is a usage error" frobnicate x.img
expect 2 "unknown option is a usage error" list --no-such-option "$tmp/x.img"
expect 2 "unparsable blob size is a usage error" create "$tmp/x.img" --blob tpm0/permall:12Q
expect 2 "unparsable --size is a usage error" create "$tmp/x.img" --size lots
expect 2 "blob without a size is a usage error" create "$tmp/x.img" --blob tpm0/permall
expect 2 "create without --blob or --size is a usage error" create "$tmp/x.img"
expect 2 "missing argument is a usage error" dump "$tmp/x.img"
expect 2 "extra argument is a usage error" info "$tmp/x.img" extra
check "usage errors create no file" test ! -e "$tmp/x.img"
expect 0 "--help exits 0" --help
expect 0 "help exits 0" help
for c in create info list dump import delete check help; do
    expect 0 "$c --help exits 0" "$c" --help
done
expect 0 "help create exits 0" help create && check "help create shows the create options" grep -q -- '--blob' "$tmp/out"
expect 0 "--version exits 0" --version && check "--version names the package" grep -q '^nvram-tool (nvramtdb) ' "$tmp/out"

# ---- create -----------------------------------------------------------------
img=$tmp/a.img
if expect 0 "create with two blobs" create "$img" --blob tpm0/permall:64K --blob tpm0/volatilestate:16K; then
    printed=$(sed -n 's/^created .*: \([0-9][0-9]*\) bytes.*/\1/p' "$tmp/out")
    check "create prints the image size" test -n "$printed"
    check "the image file has exactly the printed size" test "$(size_of "$img")" = "${printed:-x}"
    check "create reports 2 blobs" grep -q ', 2 blobs$' "$tmp/out"
else
    echo "Bail out! cannot create an image; the remaining checks need one"
    exit 1
fi
before=$(digest "$img")
expect 1 "create refuses an existing file" create "$img" --blob tpm0/permall:4K
check "the refusal mentions --force" grep -q -- '--force' "$tmp/err"
check "the refused image is unchanged" test "$(digest "$img")" = "$before"

cp "$img" "$tmp/f.img"
expect 0 "create --force replaces an existing file" create "$tmp/f.img" --force --blob tpm1/permall:8K
nt list --all "$tmp/f.img"
check "the replaced image holds the new blob" grep -q '^tpm1/permall ' "$tmp/out"
check "the replaced image lost the old blobs" lacks '^tpm0/' "$tmp/out"
expect 1 "create with an invalid blob name fails" create "$tmp/bad.img" --blob nodevice:4K
check "a failed create leaves no file behind" test ! -e "$tmp/bad.img"
expect 1 "create with --size too small fails" create "$tmp/small.img" --blob tpm0/permall:64K --size 4K
check "the size error names the image" grep -q 'small.img' "$tmp/err"
check "a failed create leaves no file behind (size)" test ! -e "$tmp/small.img"

# ---- import / dump ----------------------------------------------------------
head -c 3000 /dev/urandom >"$tmp/rnd"
expect 0 "import a 3000-byte file" import "$img" tpm0/permall "$tmp/rnd"
expect 0 "dump -o FILE" dump "$img" tpm0/permall -o "$tmp/rnd.out"
check "dump -o round trip is byte-exact" cmp -s "$tmp/rnd" "$tmp/rnd.out"
{ $run "$tool" dump "$img" tpm0/permall 2>"$tmp/err"; echo $? >"$tmp/rc"; } | cat >"$tmp/rnd.pipe"
check "dump to a pipe exits 0" test "$(cat "$tmp/rc")" = 0
check "dump to a pipe round trip is byte-exact" cmp -s "$tmp/rnd" "$tmp/rnd.pipe"

# script(1) gives the tool a terminal as standard output.
if command -v script >/dev/null 2>&1 &&
   script -qec true /dev/null >/dev/null 2>&1 </dev/null; then
    script -qec "$run '$tool' dump '$img' tpm0/permall" /dev/null \
        </dev/null >"$tmp/tty" 2>&1
    rc=$?
    check "dump refuses to write binary data to a terminal" test "$rc" = 1
    check "the refusal suggests --force" grep -q -- '--force' "$tmp/tty"
else
    ok "dump refuses a terminal # SKIP script(1) not usable"
fi

head -c 1500 /dev/urandom >"$tmp/vol"
$run "$tool" import "$img" tpm0/volatilestate - <"$tmp/vol" >"$tmp/out" 2>"$tmp/err"
rc=$?
check "import from standard input exits 0" test "$rc" = 0 || show "$tmp/err"
nt dump "$img" tpm0/volatilestate -o "$tmp/vol.out"
check "import from standard input round trip" cmp -s "$tmp/vol" "$tmp/vol.out"

head -c 0 /dev/null >"$tmp/empty"
expect 0 "import an empty value" import "$img" tpm0/volatilestate "$tmp/empty"
expect 0 "dump an empty value" dump "$img" tpm0/volatilestate -o "$tmp/empty.out"
check "the empty value dumps as 0 bytes" test "$(size_of "$tmp/empty.out")" = 0
expect 0 "import again over the empty value" import "$img" tpm0/volatilestate "$tmp/vol"

# ---- list / info ------------------------------------------------------------
expect 0 "list" list "$img"
check "list shows the header" grep -q '^NAME  *SIZE  *MAX  *GENERATION  *CRC32C' "$tmp/out"
check "list shows tpm0/permall with size 3000" grep -Eq '^tpm0/permall +3000 +65536 +[0-9]+ +[0-9a-f]{8}' "$tmp/out" || show "$tmp/out"
expect 0 "list --json" list --json "$img"
if [ "$have_python" = yes ]; then
    check "list --json is valid JSON with the entry" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
e = [x for x in d if x["name"] == "tpm0/permall"]
assert e and e[0]["size"] == 3000 and e[0]["present"] is True, d
assert len(e[0]["crc32c"]) == 8
' "$tmp/out"
else
    ok "list --json is valid JSON with the entry # SKIP python3 not found"
fi
check "list --json contains the name" grep -q '"tpm0/permall"' "$tmp/out"
expect 0 "info" info "$img"
check "info shows the entry count" grep -Eq '^entries: +2$' "$tmp/out" || show "$tmp/out"
check "info shows a UUID" grep -Eq '^uuid: +[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' "$tmp/out"
check "info shows the image size" grep -q "^image size: *$(size_of "$img") bytes" "$tmp/out"
expect 0 "info --json" info --json "$img"
if [ "$have_python" = yes ]; then
    check "info --json is valid JSON" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["entries"] == 2 and d["image_size"] > 0 and len(d["uuid"]) == 36, d
' "$tmp/out"
else
    ok "info --json is valid JSON # SKIP python3 not found"
fi

# ---- limits -----------------------------------------------------------------
head -c 65537 /dev/urandom >"$tmp/big"
expect 1 "importing more than the maximum fails" import "$img" tpm0/permall "$tmp/big"
check "the size error names the entry" grep -q 'tpm0/permall' "$tmp/err"
nt dump "$img" tpm0/permall -o "$tmp/rnd.out2"
check "the old value is intact after the refused import" cmp -s "$tmp/rnd" "$tmp/rnd.out2"

# A new blob needs room: size an image for three blobs, then create it
# with two and that size, doubled for slack.
expect 0 "create a sizing image for three blobs" create "$tmp/three.img" \
    --blob tpm0/permall:16K --blob tpm0/volatilestate:16K --blob tpm1/permall:8K
roomy=$(( $(size_of "$tmp/three.img") * 2 ))
expect 0 "create an image with room to spare" create "$tmp/b.img" --size "$roomy" \
    --blob tpm0/permall:16K --blob tpm0/volatilestate:16K
head -c 2000 /dev/urandom >"$tmp/new"
expect 1 "import of an unknown entry without --max fails" import "$tmp/b.img" tpm1/permall "$tmp/new"
check "the error names the entry and --max" has_all "$tmp/err" 'tpm1/permall' '--max'
expect 0 "import of an unknown entry with --max" import "$tmp/b.img" tpm1/permall "$tmp/new" --max 8K
nt dump "$tmp/b.img" tpm1/permall -o "$tmp/new.out"
check "the new entry round trips" cmp -s "$tmp/new" "$tmp/new.out"
nt list "$tmp/b.img"
check "list shows the new entry with its maximum" grep -Eq '^tpm1/permall +2000 +8192 ' "$tmp/out" || show "$tmp/out"

# ---- delete -----------------------------------------------------------------
expect 0 "delete" delete "$tmp/b.img" tpm1/permall
expect 1 "dump of a deleted entry fails" dump "$tmp/b.img" tpm1/permall -o "$tmp/gone"
check "the failed dump creates no output file" test ! -e "$tmp/gone"
nt list "$tmp/b.img"
check "list no longer shows the deleted entry" lacks '^tpm1/permall ' "$tmp/out"
expect 1 "delete of a missing entry fails" delete "$tmp/b.img" tpm1/permall
expect 0 "list --all" list --all "$tmp/b.img"
check "list --all marks reserved slots without a value" grep -q '^tpm0/permall .*no value' "$tmp/out" || show "$tmp/out"

# ---- outputs holding blob values -------------------------------------------
# dump -o, export-swtpm and export-tdb write TPM secrets: the files are
# 0600 whatever the umask, and nothing is written through a symbolic link.
mode_of() { stat -c %a "$1"; }
# under UMASK ARGS...: run the tool with that umask ($tmp/out, $tmp/err, $rc).
under() {
    (umask "$1" && shift && $run "$tool" "$@") >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
# refused DESCRIPTION PATH-IN-MESSAGE: the last run failed (exit 1), naming PATH.
refused() {
    if [ "$rc" -eq 1 ] && grep -qF -- "$2" "$tmp/err"; then
        ok "$1"
    else
        not_ok "$1 (exit $rc)"
        show "$tmp/err"
    fi
}
o=$tmp/out-files
mkdir -p "$o"
for um in 022 000; do
    under "$um" dump -o "$o/dump.$um" "$img" tpm0/permall
    check "dump -o under umask $um creates the file 0600" test "$rc.$(mode_of "$o/dump.$um")" = 0.600
    under "$um" export-swtpm "$img" "$o/swtpm.$um"
    check "export-swtpm under umask $um writes tpm2-00.permall 0600" \
        test "$rc.$(mode_of "$o/swtpm.$um/tpm2-00.permall")" = 0.600
    check "export-swtpm under umask $um writes tpm2-00.volatilestate 0600" \
        test "$(mode_of "$o/swtpm.$um/tpm2-00.volatilestate")" = 600
    under "$um" export-tdb "$img" "$o/tdb.$um"
    check "export-tdb under umask $um creates the file 0600" test "$rc.$(mode_of "$o/tdb.$um")" = 0.600
done
printf 'not a secret\n' >"$o/existing"
chmod 644 "$o/existing"
expect 0 "dump -o over an existing file" dump -o "$o/existing" "$img" tpm0/permall
check "the existing file now holds the value" cmp -s "$tmp/rnd" "$o/existing"
check "the replaced file is 0600" test "$(mode_of "$o/existing")" = 600
expect 0 "dump -o /dev/null writes to the device" dump -o /dev/null "$img" tpm0/permall
check "/dev/null is still a character device" test -c /dev/null

# Each case starts from a fresh symlink target and no "$o/nowhere".
fresh() {
    printf 'victim\n' >"$o/victim"
    chmod 644 "$o/victim"
    rm -f "$o/nowhere"
}
fresh
victim=$(digest "$o/victim")
unchanged() {
    check "$1: the symlink's target is unchanged" \
        test "$(digest "$o/victim").$(mode_of "$o/victim")" = "$victim.644"
}
ln -s "$o/victim" "$o/link"
fresh
nt dump -o "$o/link" "$img" tpm0/permall
refused "dump -o refuses a symlink, naming it" "$o/link"
unchanged "dump -o"
check "dump -o leaves the symlink in place" test -L "$o/link"
ln -s "$o/nowhere" "$o/dangling"
fresh
nt dump -o "$o/dangling" "$img" tpm0/permall
refused "dump -o refuses a dangling symlink, naming it" "$o/dangling"
check "dump -o creates no file through a dangling symlink" test ! -e "$o/nowhere"
fresh
nt export-tdb "$img" "$o/link"
refused "export-tdb refuses a symlink, naming it" "$o/link"
unchanged "export-tdb"
fresh
nt export-tdb "$img" "$o/dangling"
refused "export-tdb refuses a dangling symlink, naming it" "$o/dangling"
check "export-tdb creates no file through a dangling symlink" test ! -e "$o/nowhere"

mkdir -p "$o/lockdir"
ln -s "$o/victim" "$o/lockdir/.lock"
fresh
nt export-swtpm "$img" "$o/lockdir"
refused "export-swtpm refuses DIR/.lock as a symlink, naming it" "$o/lockdir/.lock"
unchanged "export-swtpm (.lock)"
check "export-swtpm wrote no state next to the .lock symlink" test ! -e "$o/lockdir/tpm2-00.permall"
mkdir -p "$o/lockdir2"
ln -s "$o/nowhere" "$o/lockdir2/.lock"
fresh
nt export-swtpm "$img" "$o/lockdir2"
refused "export-swtpm refuses DIR/.lock as a dangling symlink" "$o/lockdir2/.lock"
check "export-swtpm creates no file through a dangling .lock symlink" test ! -e "$o/nowhere"
for f in permall volatilestate; do
    mkdir -p "$o/st.$f"
    ln -s "$o/victim" "$o/st.$f/tpm2-00.$f"
    fresh
    nt export-swtpm --force "$img" "$o/st.$f"
    refused "export-swtpm --force refuses tpm2-00.$f as a symlink, naming it" "$o/st.$f/tpm2-00.$f"
    unchanged "export-swtpm (tpm2-00.$f)"
    check "export-swtpm leaves the tpm2-00.$f symlink in place" test -L "$o/st.$f/tpm2-00.$f"
done

# ---- check and read-only commands -------------------------------------------
expect 0 "check passes on a healthy image" check "$img"
check "check says ok" grep -q ': ok$' "$tmp/out"
before=$(digest "$img")
nt info "$img"; nt info --json "$img"; nt list --all "$img"; nt list --json "$img"
nt dump "$img" tpm0/permall -o "$tmp/ro.out"; nt check "$img"
nt dump "$img" no/such-entry -o "$tmp/ro.out2"
check "read-only commands leave the image unchanged" test "$(digest "$img")" = "$before"

# ---- corruption -------------------------------------------------------------
# A recognisable payload, so that its bytes can be found in the image.
c=$tmp/c.img
cp "$img" "$c"
i=0
: >"$tmp/pattern"
printf 'BEGIN-NVT-PAYLOAD' >>"$tmp/pattern"
while [ $i -lt 80 ]; do printf 'nvramtdb-corruption-test-' >>"$tmp/pattern"; i=$((i + 1)); done
expect 0 "import a known pattern" import "$c" tpm0/permall "$tmp/pattern"
expect 0 "check passes before corruption" check "$c"
offsets=$(grep -obUa 'BEGIN-NVT-PAYLOAD' "$c" 2>/dev/null | cut -d: -f1)
if [ -z "$offsets" ]; then
    not_ok "the imported pattern is found in the image (grep -obUa)"
else
    # Damage every copy tdb may hold, so the live record is surely hit.
    for off in $offsets; do
        printf 'XXXX' | dd of="$c" bs=1 seek=$((off + 1000)) conv=notrunc 2>/dev/null
    done
    before=$(digest "$c")
    expect 1 "check fails on a corrupted record" check "$c" && show "$tmp/out"
    check "check reports problems" grep -q 'problem' "$tmp/out"
    expect 1 "dump of a corrupted record fails" dump "$c" tpm0/permall -o "$tmp/c.out"
    check "the dump error is a checksum error" grep -Eqi 'checksum|crc|mismatch|corrupt' "$tmp/err" || show "$tmp/err"
    check "no bytes of the corrupted record are written" test ! -e "$tmp/c.out"
    { $run "$tool" dump "$c" tpm0/permall 2>/dev/null; echo $? >"$tmp/rc"; } | cat >"$tmp/c.pipe"
    check "dump to stdout of a corrupted record fails" test "$(cat "$tmp/rc")" = 1
    check "dump to stdout writes no bytes of it" test "$(size_of "$tmp/c.pipe")" = 0
    expect 0 "the other record still dumps" dump "$c" tpm0/volatilestate -o "$tmp/c.vol"
    check "the other record is intact" cmp -s "$tmp/vol" "$tmp/c.vol"
    check "read-only commands leave a corrupt image unchanged" test "$(digest "$c")" = "$before"
fi

# Truncated images: cut inside the superblock area, right after the first
# 4 KiB, and in the middle of the data region.
half=$(( $(size_of "$img") / 2 ))
for cut in 4096 $half; do
    t=$tmp/t$cut.img
    dd if="$img" of="$t" bs="$cut" count=1 2>/dev/null
    before=$(digest "$t")
    expect 1 "info on an image truncated to $cut bytes fails" info "$t"
    check "the error says the image is truncated ($cut)" grep -qi 'truncat' "$tmp/err" || show "$tmp/err"
    check "the error names the truncated image ($cut)" grep -q "t$cut.img" "$tmp/err"
    expect 1 "list on an image truncated to $cut bytes fails" list "$t"
    expect 1 "check on an image truncated to $cut bytes fails" check "$t"
    expect 1 "dump from an image truncated to $cut bytes fails" dump "$t" tpm0/permall -o "$tmp/t.out"
    check "read-only commands leave a truncated image unchanged ($cut)" test "$(digest "$t")" = "$before"
    # A writer must refuse it too, not take it for a blank image to format.
    expect 1 "import into an image truncated to $cut bytes fails" import "$t" tpm0/permall "$tmp/rnd"
    check "import leaves a truncated image unchanged ($cut)" test "$(digest "$t")" = "$before"
done
expect 1 "info on a missing image fails" info "$tmp/missing.img"
check "a missing image is not created" test ! -e "$tmp/missing.img"
expect 1 "import into a missing image fails" import "$tmp/missing.img" tpm0/permall "$tmp/rnd" --max 4K
check "import does not create a missing image" test ! -e "$tmp/missing.img"

# ---- locking ----------------------------------------------------------------
# A process holding a write lock on the image (a POSIX record lock, which
# conflicts with the library's OFD locks) stands for a running writer.
if [ "$have_python" = yes ]; then
    python3 -c '
import fcntl, sys, time
f = open(sys.argv[1], "r+b")
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
open(sys.argv[2], "w").close()
time.sleep(60)' "$img" "$tmp/locked" &
    holder=$!
    trap 'kill "$holder" 2>/dev/null; rm -rf "$tmp"' EXIT
    i=0
    while [ ! -e "$tmp/locked" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -e "$tmp/locked" ]; then
        before=$(digest "$img")
        expect 1 "info on an image locked by a writer fails" info "$img"
        check "the lock error names the image" grep -q 'a.img' "$tmp/err"
        expect 0 "info --force-share reads an image locked by a writer" info --force-share "$img"
        expect 0 "dump --force-share reads an image locked by a writer" dump -U "$img" tpm0/permall -o "$tmp/shared.out"
        check "the shared dump is right" cmp -s "$tmp/rnd" "$tmp/shared.out"
        expect 1 "import into an image locked by a writer fails" import "$img" tpm0/permall "$tmp/vol"
        expect 1 "create --force does not replace an image in use" create --force "$img" --blob a/b:4K
        check "the locked image is unchanged" test "$(digest "$img")" = "$before"
    else
        not_ok "a helper process locks the image"
    fi
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
else
    ok "locking # SKIP python3 not found"
fi

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
