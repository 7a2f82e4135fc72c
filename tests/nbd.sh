#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# nbd.sh — the tools on an image that lives on an NBD export served by
# qemu-nbd (a raw file) on a UNIX socket in a temporary directory.
#
#  1. every nvram-tool command with the export's URI: create (formats the
#     export in place; a second create needs --force; an export too small
#     is refused with both sizes), info, list, import, dump, delete,
#     check, export-tdb, import-tdb, export-swtpm, import-swtpm, help;
#     a record naming a writer on another host refuses openers, naming
#     it, until takeover; an unreachable server is named in the message;
#  2. nvram-tpmd --image URI with tpm2-tools: an NV index written, an NV
#     counter incremented, kill -9 of the daemon, restart, both read back,
#     nvram-tool check passes (needs nvram-tpmd and tpm2-tools).
# One "ok"/"not ok" line per check; exit 0 pass, 1 fail, 77 skip (no
# qemu-nbd, or nvram-tool built without libnbd).

tmp_name=nvram-nbd-test
show_tail=20
. "$(dirname "$0")/toollib.sh"

if ! command -v qemu-nbd >/dev/null 2>&1; then
    echo "SKIP: qemu-nbd not found (install qemu-utils)"
    exit 77
fi
nt list "nbd+unix:///?socket=$tmp/none.sock"
if grep -q "without libnbd" "$tmp/err"; then
    echo "SKIP: nvram-tool was built without libnbd (install libnbd-dev)"
    exit 77
fi

qemu_pid=
nbdkit_pid=
tpmd_pid=
at_exit() {
    for p in $tpmd_pid $qemu_pid $nbdkit_pid; do
        kill -9 "$p" 2>/dev/null
    done
    return 0
}

# serve_raw FILE SOCKET: qemu-nbd on FILE (raw), one client at a time;
# returns once it accepts connections (its pid file is written then).
serve_raw() {
    rm -f "$tmp/q.pid" "$2"
    qemu-nbd --persistent --format raw --socket "$2" --pid-file "$tmp/q.pid" "$1" \
        2>>"$tmp/qemu-nbd.log" &
    qemu_pid=$!
    i=0
    until [ -s "$tmp/q.pid" ] && [ -S "$2" ]; do
        i=$((i + 1))
        if [ "$i" -gt 200 ] || ! kill -0 "$qemu_pid" 2>/dev/null; then
            echo "Bail out! qemu-nbd did not start"
            show "$tmp/qemu-nbd.log"
            exit 1
        fi
        sleep 0.05
    done
}
stop_raw() {
    kill "$qemu_pid" 2>/dev/null
    wait "$qemu_pid" 2>/dev/null
    qemu_pid=
}

# expect_err DESCRIPTION PATTERN...: the last command's message holds every PATTERN.
expect_err() {
    desc=$1
    shift
    for p in "$@"; do
        if ! grep -qF -- "$p" "$tmp/err"; then
            not_ok "$desc: message lacks '$p'"
            show "$tmp/err"
            return 1
        fi
    done
    ok "$desc"
}

# ---- 1. nvram-tool ------------------------------------------------------------

truncate -s 4M "$tmp/export.raw"
sock=$tmp/nbd.sock
uri="nbd+unix:///?socket=$sock"
serve_raw "$tmp/export.raw" "$sock"

expect 0 "create formats the export in place" \
    create "$uri" --blob tpm0/permall:64K --blob tpm0/volatilestate:16K --blob dev/x:1K
grep -q "4194304 bytes" "$tmp/out" && ok "the image takes the whole export (4 MiB)" ||
    { not_ok "the image takes the whole export"; show "$tmp/out"; }
expect 1 "a second create on the export is refused" create "$uri" --blob dev/y:1K
expect_err "... saying the export already holds an image" "$uri" "already holds" "--force"
expect 0 "create --force reserves a new blob in it" create --force "$uri" --blob dev/y:1K
expect 0 "info" info "$uri"
grep -q "4194304" "$tmp/out" && ok "info: the export's size" || not_ok "info: the export's size"

head -c 30000 /dev/urandom >"$tmp/permall"
head -c 700 /dev/urandom >"$tmp/x"
expect 0 "import" import "$uri" tpm0/permall "$tmp/permall"
expect 0 "import from standard input" import "$uri" dev/x - <"$tmp/x"
expect 0 "list" list "$uri"
grep -q "tpm0/permall *30000" "$tmp/out" && ok "list shows the imported blob" ||
    { not_ok "list shows the imported blob"; show "$tmp/out"; }
expect 0 "dump" dump -o "$tmp/permall.out" "$uri" tpm0/permall
cmp -s "$tmp/permall" "$tmp/permall.out" && ok "dump gives the imported bytes" ||
    not_ok "dump gives the imported bytes"
expect 0 "delete" delete "$uri" dev/x
expect 1 "dump of the deleted blob fails" dump -o "$tmp/x.out" "$uri" dev/x
expect 0 "check" check "$uri"
expect 0 "export-tdb" export-tdb "$uri" "$tmp/blobs.tdb"
expect 0 "help create" help create

# One writer: a record naming a writer on another host (what a host that
# died while writing leaves behind) refuses every opener, naming it,
# until nvram-tool takeover.
if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/export.raw" <<'PY'
import struct, sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
with open(sys.argv[1], "r+b") as f:
    f.seek(6144)
    rec = bytearray(f.read(512))
    assert rec[:8] == b"NVTOWNR1", rec[:8]
    struct.pack_into("<I", rec, 12, 1)           # state: held
    struct.pack_into("<I", rec, 32, 4242)        # pid
    rec[96:224] = b"elsewhere.example".ljust(128, b"\0")
    struct.pack_into("<I", rec, 508, crc32c(bytes(rec[:508])))
    f.seek(6144)
    f.write(rec)
PY
    expect 1 "a writer on another host holds the image: import refused" \
        import "$uri" tpm0/permall "$tmp/x"
    expect_err "... naming it and the way out" "elsewhere.example" "pid 4242" "takeover"
    expect 1 "... list refused too" list "$uri"
    expect 0 "... list --force-share reads anyway" list -U "$uri"
    expect 0 "nvram-tool takeover" takeover "$uri"
    expect 0 "import after the takeover" import "$uri" tpm0/permall "$tmp/x"
    expect 1 "takeover of a local file is refused" takeover "$tmp/x"
else
    echo "ok - # SKIP ownership record checks: python3 not found"
fi

# A second export, in nbdkit's memory when installed (else another file
# behind qemu-nbd): import-tdb and import-swtpm into it.
sock2=$tmp/nbd2.sock
uri2="nbd+unix:///?socket=$sock2"
if command -v nbdkit >/dev/null 2>&1; then
    nbdkit --foreground --unix "$sock2" --pid-file "$tmp/k.pid" memory 8M \
        2>>"$tmp/nbdkit.log" &
    nbdkit_pid=$!
    i=0
    until [ -s "$tmp/k.pid" ]; do
        i=$((i + 1))
        [ "$i" -gt 200 ] && break
        sleep 0.05
    done
    second="nbdkit memory"
else
    truncate -s 8M "$tmp/export2.raw"
    first_qemu=$qemu_pid
    serve_raw "$tmp/export2.raw" "$sock2"
    nbdkit_pid=$qemu_pid
    qemu_pid=$first_qemu
    second="qemu-nbd"
fi
expect 0 "import-tdb --create into a blank export ($second)" import-tdb --create "$uri2" "$tmp/blobs.tdb"
expect 0 "dump from the second export" dump -o "$tmp/permall.2" "$uri2" tpm0/permall
cmp -s "$tmp/permall" "$tmp/permall.2" && ok "import-tdb carried the bytes" ||
    not_ok "import-tdb carried the bytes"

# ---- 2. nvram-tpmd --image URI --------------------------------------------------

tpmd=${NVRAM_TPMD:-${top_builddir:-.}/tools/nvram-tpmd}
have_tpm=yes
[ -x "$tpmd" ] || have_tpm=no
for t in tpm2_startup tpm2_nvdefine tpm2_nvwrite tpm2_nvread tpm2_nvincrement; do
    command -v "$t" >/dev/null 2>&1 || have_tpm=no
done
if [ "$have_tpm" = no ]; then
    echo "ok - # SKIP nvram-tpmd on NBD: nvram-tpmd (libtpms-dev) or tpm2-tools missing"
    stop_raw
    echo "# $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

# A fresh export for the TPM (qemu-nbd, raw).
stop_raw
truncate -s 4M "$tmp/tpm.raw"
tsock=$tmp/tpm.sock
turi="nbd+unix:///?socket=$tsock"
serve_raw "$tmp/tpm.raw" "$tsock"
port=$((20000 + ($$ * 2) % 19990))

start_tpmd() {
    tries=0
    while [ "$tries" -lt 8 ]; do
        tries=$((tries + 1))
        port=$((port + 2))
        rm -f "$tmp/tpmd.pid"
        "$tpmd" --image "$turi" --tcp-port "$port" --pid-file "$tmp/tpmd.pid" \
            --log "file=$tmp/tpmd.log,level=2" 2>"$tmp/tpmd.err" &
        tpmd_pid=$!
        i=0
        while [ ! -s "$tmp/tpmd.pid" ] && kill -0 "$tpmd_pid" 2>/dev/null && [ "$i" -lt 200 ]; do
            sleep 0.05
            i=$((i + 1))
        done
        if [ -s "$tmp/tpmd.pid" ]; then
            TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
            export TPM2TOOLS_TCTI
            return 0
        fi
        kill -9 "$tpmd_pid" 2>/dev/null
        wait "$tpmd_pid" 2>/dev/null
        tpmd_pid=
        grep -q 'cannot listen' "$tmp/tpmd.err" || break
    done
    show "$tmp/tpmd.err"
    return 1
}
# tpm DESCRIPTION CMD...: one tpm2-tools command as one check.
tpm() {
    desc=$1
    shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        ok "$desc"
        return 0
    fi
    not_ok "$desc"
    show "$tmp/err"
    show "$tmp/tpmd.log"
    return 1
}
read_counter() {
    tpm2_nvread 0x1500017 -C o -s 8 -o "$tmp/ctr.bin" 2>"$tmp/err" || return 1
    printf '%d\n' "0x$(od -An -tx1 "$tmp/ctr.bin" | tr -d ' \n')"
}

head -c 32 /dev/urandom >"$tmp/secret"
start_tpmd && ok "nvram-tpmd serves an image on an NBD export (formatted at start)" ||
    not_ok "nvram-tpmd serves an image on an NBD export"
tpm "tpm2_startup" tpm2_startup -c
tpm "tpm2_nvdefine (data)" tpm2_nvdefine 0x1500016 -C o -s 32 -a "ownerread|ownerwrite|authread|authwrite"
tpm "tpm2_nvwrite" tpm2_nvwrite 0x1500016 -C o -i "$tmp/secret"
tpm "tpm2_nvdefine (counter)" tpm2_nvdefine 0x1500017 -C o -s 8 \
    -a "nt=counter|ownerread|ownerwrite|authread|authwrite"
for n in 1 2 3 4 5; do
    tpm "tpm2_nvincrement $n" tpm2_nvincrement 0x1500017 -C o
done
kill -9 "$tpmd_pid"
wait "$tpmd_pid" 2>/dev/null
tpmd_pid=
start_tpmd && ok "restart after kill -9" || not_ok "restart after kill -9"
tpm "tpm2_startup after kill -9" tpm2_startup -c
tpm "tpm2_nvread" tpm2_nvread 0x1500016 -C o -s 32 -o "$tmp/secret.out"
cmp -s "$tmp/secret" "$tmp/secret.out" && ok "the NV index reads back after kill -9" ||
    not_ok "the NV index reads back after kill -9"
c=$(read_counter)
[ "$c" = 5 ] && ok "the counter reads 5 after kill -9" ||
    { not_ok "the counter reads 5 after kill -9 (got '$c')"; show "$tmp/err"; }
kill -TERM "$tpmd_pid"
wait "$tpmd_pid"
rc=$?
tpmd_pid=
[ "$rc" -eq 0 ] && ok "SIGTERM: exit 0" || not_ok "SIGTERM: exit 0 (got $rc)"
expect 0 "nvram-tool check on the TPM's export" check "$turi"
expect 0 "nvram-tool list on the TPM's export" list "$turi"
grep -q "tpm0/permall" "$tmp/out" && ok "the TPM's blobs are listed" || not_ok "the TPM's blobs are listed"
expect 0 "export-swtpm from the export" export-swtpm "$turi" "$tmp/swtpm-state"
expect 0 "import-swtpm into the second export" import-swtpm "$uri2" "$tmp/swtpm-state"
expect 0 "check of the second export" check "$uri2"
stop_raw

# ---- an export too small, an unreachable server -------------------------------
truncate -s 64K "$tmp/small.raw"
serve_raw "$tmp/small.raw" "$sock"
expect 1 "create on a 64 KiB export" create "$uri" --blob tpm0/permall:64K
expect_err "... is refused with both sizes" "$uri" "65536 bytes" "need"
stop_raw
expect 1 "an unreachable server" list "$uri"
expect_err "... is named, with libnbd's reason" "$uri" "cannot connect"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
