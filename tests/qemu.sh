#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# qemu.sh — QEMU as nvram-tpmd's client: QEMU 7.2 (TCG, no guest disk)
# whose SeaBIOS drives the TPM itself (TPM2_Startup, self test, PCR
# extends of its measurements), with nvram-tpmd on a UNIX control socket
# (the data channel comes by SET_DATAFD).
#
# Cases (each prints its wall time as "# time: CASE: N.N s"):
#  1. boot: q35 + tpm-crb on nvram-tpmd's own command line, and pc +
#     tpm-tis on swtpm's command line; QMP query-tpm shows the TPM; every
#     TPM command after INIT succeeded (the daemon's level-3 log); QMP
#     quit makes the daemon exit 0 (SHUTDOWN); nvram-tool check passes.
#  2. migration to a file (QMP stop, migrate "exec:cat > FILE") and
#     -incoming "exec:cat FILE" then cont, in four directions: swtpm ->
#     swtpm (the baseline), swtpm -> nvram-tpmd, nvram-tpmd -> swtpm,
#     nvram-tpmd -> nvram-tpmd.  PCRs (sha256, 0-7, which SeaBIOS
#     extends) read after the migration equal those before.  Then a reset
#     of the destination QEMU: SeaBIOS starts the migrated TPM again
#     (with nvram-tpmd: every command succeeds).
#  3. kill -9 of the daemon under a running QEMU: QEMU 7.2 does not
#     notice until it next talks to the TPM; a system_reset then makes it
#     print "Could not stop TPM" and exit 1, with swtpm (the baseline) as
#     with nvram-tpmd.  An nvram-tpmd restarted on the same image serves a
#     new QEMU (its SeaBIOS TPM commands succeed); that QEMU killed, the
#     same daemon serves the next one; nvram-tool check passes.
#
# Reading PCRs without a guest: the TPM's data channel belongs to QEMU and
# swtpm takes one control connection at a time, so the PCRs are read from
# a migration stream instead: QEMU stopped, "migrate exec:cat > FILE"
# writes the TPM's permanent and volatile state blobs (GET_STATEBLOB) into
# the stream's "tpm-emulator" section.  They are loaded into a fresh swtpm
# (SET_STATEBLOB, then INIT resumes the running TPM) and read with
# TPM2_PCR_Read on its UNIX data socket.  "Before" is the stream the
# source QEMU wrote; "after" is a second stream written by the destination
# QEMU after it ran (cont), so it comes from the destination daemon's TPM.
#
# Needs qemu-system-x86_64 (with SeaBIOS), swtpm and python3;
# skipped (77) when one is missing.  Exit 0 pass, 1 fail, 77 skip.  Only
# UNIX sockets in the test's own temporary directory, no TCP port: parallel
# runs (make -j check) cannot meet.

tmp_name=nvram-qemu-test
show_tail=30
. "$(dirname "$0")/tpmlib.sh"
need_commands "install qemu-system-x86 and seabios" qemu-system-x86_64
need_commands "install swtpm" swtpm
need_commands "install python3 (QMP client)" python3

# Every process this test starts and has not reaped, by pid; killed at exit.
pids=
at_exit() {
    for p in $pids; do
        kill -9 "$p" 2>/dev/null
    done
    return 0
}
track() { pids="$pids $1"; }
untrack() { pids=$(echo " $pids " | sed "s/ $1 / /"); }

# now_ms: a millisecond clock for the per-case times.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
case_t0=0
case_start() { case_name=$1; case_t0=$(now_ms); }
case_end() {
    ms=$(($(now_ms) - case_t0))
    printf '# time: %s: %d.%d s\n' "$case_name" $((ms / 1000)) $((ms % 1000 / 100))
}

# qmp.py SOCKET CMD [JSON-ARGS] ...: run QMP commands, one JSON reply per
# line on stdout.  wait-migrate polls query-migrate until it ends;
# wait-status STATUS polls query-status until the run state is STATUS;
# sleep SECONDS.  (Few calls: each python3 start costs time.)
cat >"$tmp/qmp.py" <<'EOF'
import json, socket, sys, time
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
for _ in range(200):
    try:
        s.connect(path)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("cannot connect to QMP socket " + path)
f = s.makefile("rw")
def recv():
    while True:
        line = f.readline()
        if not line:
            raise EOFError("QMP connection closed")
        m = json.loads(line)
        if "event" not in m:
            return m
def run(name, args=None):
    cmd = {"execute": name}
    if args is not None:
        cmd["arguments"] = args
    f.write(json.dumps(cmd) + "\n")
    f.flush()
    m = recv()
    if "error" in m:
        sys.exit("QMP %s failed: %s" % (name, json.dumps(m["error"])))
    return m["return"]
recv()
run("qmp_capabilities")
argv = sys.argv[2:]
i = 0
while i < len(argv):
    name = argv[i]
    i += 1
    args = None
    if i < len(argv) and argv[i].startswith("{"):
        args = json.loads(argv[i])
        i += 1
    if name == "wait-migrate":
        for _ in range(600):
            r = run("query-migrate")
            if r.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        print(json.dumps(r))
        if r.get("status") != "completed":
            sys.exit("migration ended as " + str(r.get("status")))
    elif name == "wait-status":
        want = argv[i]
        i += 1
        for _ in range(600):
            r = run("query-status")
            if r.get("status") == want:
                break
            time.sleep(0.05)
        print(json.dumps(r))
        if r.get("status") != want:
            sys.exit("run state is %s, not %s" % (r.get("status"), want))
    elif name == "sleep":
        time.sleep(float(argv[i]))
        i += 1
    elif name == "quit":
        f.write(json.dumps({"execute": "quit"}) + "\n")
        f.flush()
        try:
            print(json.dumps(recv()))
        except (EOFError, OSError):
            pass
        break
    else:
        print(json.dumps(run(name, args)))
EOF

# pcrs.py STREAM CTRL DATA: the sha256 PCRs 0-7 of the TPM in QEMU
# migration stream STREAM, as "N : 0xHEX" lines, through a fresh swtpm
# with its control and data channels on UNIX sockets CTRL and DATA (one
# process for all of it: the test's time goes to starting processes).
#  - The stream's "tpm-emulator" section (QEMU's vmstate_tpm_emulator,
#    version 0) follows its header (u8 type, u32 section id, u8 length +
#    "tpm-emulator", u32 instance, u32 version) and holds, per blob
#    (permanent, volatile, savestate), u32 flags, u32 size and the blob.
#  - Control channel (swtpm's tpm_ioctl.h, big-endian): SET_STATEBLOB (13)
#    with u32 flags, type (1 permanent, 2 volatile), length and the blob,
#    then INIT (2), which resumes the TPM from them; SHUTDOWN (3) at the
#    end.  Each answers a u32 result, 0 for success.
#  - Data channel: TPM2_PCR_Read (tpm2-tools would need a TCP port, and
#    picking a free one races with parallel tests).
cat >"$tmp/pcrs.py" <<'EOF'
import socket, struct, sys
stream, ctrl_path, data_path = sys.argv[1:4]
data = open(stream, "rb").read()
name = b"tpm-emulator"
i = data.find(bytes([len(name)]) + name)
if i < 0:
    sys.exit("no tpm-emulator section in " + stream)
p = i + 1 + len(name) + 8
blobs = {}
for kind in (1, 2, 3):
    flags, size = struct.unpack_from(">II", data, p)
    p += 8
    if flags != 0:
        sys.exit("blob %d has flags 0x%x (encrypted?)" % (kind, flags))
    blobs[kind] = data[p:p + size]
    p += size
if not blobs[1] or not blobs[2]:
    sys.exit("no permanent or no volatile state in " + stream)

def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("connection closed")
        b += c
    return b

ctrl = socket.socket(socket.AF_UNIX)
ctrl.connect(ctrl_path)
def control(what, msg):
    ctrl.sendall(msg)
    res = struct.unpack(">I", recvn(ctrl, 4))[0]
    if res != 0:
        sys.exit("%s: result 0x%x" % (what, res))
for kind in (1, 2):
    control("SET_STATEBLOB %d" % kind,
            struct.pack(">IIII", 13, 0, kind, len(blobs[kind])) + blobs[kind])
control("INIT", struct.pack(">II", 2, 0))

tpm = socket.socket(socket.AF_UNIX)
tpm.connect(data_path)
# tag NO_SESSIONS, size, TPM2_CC_PCR_Read; one selection: sha256, PCRs 0-7
tpm.sendall(struct.pack(">HII", 0x8001, 20, 0x17E) +
            struct.pack(">IHB3B", 1, 0x000B, 3, 0xFF, 0, 0))
hdr = recvn(tpm, 10)
tag, size, rc = struct.unpack(">HII", hdr)
rsp = hdr + recvn(tpm, size - 10)
if rc != 0:
    sys.exit("TPM2_PCR_Read: response code 0x%x" % rc)
p = 14  # after the header and pcrUpdateCounter: the selections, the digests
count = struct.unpack_from(">I", rsp, p)[0]
p += 4
for _ in range(count):
    p += 2            # hash algorithm
    p += 1 + rsp[p]   # sizeofSelect, pcrSelect
n = struct.unpack_from(">I", rsp, p)[0]
p += 4
if n != 8:
    sys.exit("TPM2_PCR_Read returned %d digests, not 8" % n)
for i in range(n):
    dsize = struct.unpack_from(">H", rsp, p)[0]
    print("%d : 0x%s" % (i, rsp[p + 2:p + 2 + dsize].hex().upper()))
    p += 2 + dsize
control("SHUTDOWN", struct.pack(">I", 3))
EOF

# qmp NAME CMD...: QMP commands to QEMU NAME; replies in $tmp/qmp.out.
qmp() {
    qn=$1
    shift
    python3 "$tmp/qmp.py" "$tmp/$qn.qmp" "$@" >"$tmp/qmp.out" 2>"$tmp/qmp.err"
}

# start_tpmd NAME ARGS...: nvram-tpmd with ARGS, output in $tmp/NAME.out;
# waits for its pid file $tmp/NAME.pid (written once it serves: a socket
# file left by a killed daemon does not say so).  Sets daemon_pid.
start_tpmd() {
    dn=$1
    shift
    rm -f "$tmp/$dn.pid"
    "$tpmd" "$@" --pid "file=$tmp/$dn.pid" >"$tmp/$dn.out" 2>&1 &
    daemon_pid=$!
    track "$daemon_pid"
    wait_for "$daemon_pid" test -s "$tmp/$dn.pid"
}

# start_swtpm NAME: swtpm on a new state directory $tmp/NAME.d, control
# socket $tmp/NAME.sock, as libvirt starts it for QEMU.  Sets daemon_pid.
start_swtpm() {
    dn=$1
    mkdir -p "$tmp/$dn.d"
    swtpm socket --tpm2 --tpmstate "dir=$tmp/$dn.d" \
        --ctrl "type=unixio,path=$tmp/$dn.sock" \
        --log "file=$tmp/$dn.log" >"$tmp/$dn.out" 2>&1 &
    daemon_pid=$!
    track "$daemon_pid"
    wait_for "$daemon_pid" test -S "$tmp/$dn.sock"
}

# start_daemon KIND NAME: a new TPM of KIND (swtpm or nvram-tpmd; the
# latter on swtpm's command line, image $tmp/NAME.d/nvramtdb.permall,
# log $tmp/NAME.log at level 3: every TPM command and its result).
start_daemon() {
    if [ "$1" = swtpm ]; then
        start_swtpm "$2"
    else
        mkdir -p "$tmp/$2.d"
        start_tpmd "$2" socket --tpm2 --tpmstate "dir=$tmp/$2.d" \
            --ctrl "type=unixio,path=$tmp/$2.sock,mode=0600" \
            --log "file=$tmp/$2.log,level=3"
    fi
}

# start_qemu NAME MACHINE DEVICE DAEMON [ARGS...]: QEMU NAME on the
# control socket of DAEMON; QMP on $tmp/NAME.qmp, SeaBIOS's debug output
# in $tmp/NAME.bios, QEMU's messages in $tmp/NAME.qemu.  Sets qemu_pid.
start_qemu() {
    qn=$1 machine=$2 device=$3 dn=$4
    shift 4
    # an earlier QEMU's files must not pass for this one's
    rm -f "$tmp/$qn.qmp" "$tmp/$qn.bios" "$tmp/$qn.qemu"
    qemu-system-x86_64 -accel tcg -machine "$machine" -m 128 \
        -nodefaults -nographic -display none -nic none \
        -serial none -monitor none \
        -chardev "file,id=dbg,path=$tmp/$qn.bios" \
        -device isa-debugcon,iobase=0x402,chardev=dbg \
        -qmp "unix:$tmp/$qn.qmp,server=on,wait=off" \
        -chardev "socket,id=chrtpm,path=$tmp/$dn.sock" \
        -tpmdev emulator,id=tpm0,chardev=chrtpm \
        -device "$device,tpmdev=tpm0" "$@" \
        >"$tmp/$qn.qemu" 2>&1 &
    qemu_pid=$!
    track "$qemu_pid"
    wait_for "$qemu_pid" test -S "$tmp/$qn.qmp"
}

# wait_bios NAME: wait (30 s at most) until SeaBIOS found nothing to boot:
# its TPM work (startup, measurements, "Calling INT 19h") is done by then.
wait_bios() {
    wb=0
    until grep -q "No bootable device" "$tmp/$1.bios" 2>/dev/null; do
        wb=$((wb + 1))
        if [ "$wb" -ge 600 ] || ! kill -0 "$qemu_pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
}

# wait_exit PID: the exit status of PID (which must end within 10 s;
# 124 if it did not and was killed).
wait_exit() {
    we=0
    while kill -0 "$1" 2>/dev/null && [ "$we" -lt 200 ]; do
        # a zombie child counts as ended
        [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" = Z ] && break
        we=$((we + 1))
        sleep 0.05
    done
    if [ "$we" -ge 200 ]; then
        kill -9 "$1" 2>/dev/null
        untrack "$1"
        wait "$1" 2>/dev/null
        return 124
    fi
    untrack "$1"
    wait "$1"
}

# check_tpm_log LOG DESC [boot]: in nvram-tpmd's level-3 log, every TPM
# command after the first INIT answered 0 (QEMU's probe before INIT is
# expected to fail); with "boot", SeaBIOS's: one TPM2_Startup and at
# least 8 TPM2_PCR_Extend.
check_tpm_log() {
    if awk -v boot="${3:-}" '
        / control command 2 INIT -> 0x0/ { init = 1; next }
        init && / raw 0x[0-9a-f]+ -> 0x[0-9a-f]+ / {
            for (i = 1; i <= NF; i++) if ($i == "raw") { cc = $(i + 1); r = $(i + 3) }
            n++
            if (r != "0x0") { bad++; print "# failed: " cc " -> " r }
            if (cc == "0x00000144") startup++
            if (cc == "0x00000182") extend++
        }
        END {
            printf "# %d TPM commands after INIT: %d TPM2_Startup, %d TPM2_PCR_Extend, %d failed\n",
                n, startup, extend, bad
            exit !(init && bad == 0 && (boot == "" || (startup == 1 && extend >= 8)))
        }' "$1" >"$tmp/logcheck"; then
        cat "$tmp/logcheck"
        ok "$2"
    else
        cat "$tmp/logcheck"
        not_ok "$2"
        show "$1"
    fi
}

# pcrs_of STREAM OUT: the sha256 PCRs 0-7 of the TPM in migration stream
# STREAM, read through a fresh swtpm on UNIX sockets; 1 if that fails.
pcrs_of() {
    rd=$tmp/reader
    rm -rf "$rd.d" "$rd".*
    mkdir -p "$rd.d"
    swtpm socket --tpm2 --tpmstate "dir=$rd.d" --server "type=unixio,path=$rd.data" \
        --ctrl "type=unixio,path=$rd.ctrl" >"$rd.out" 2>&1 &
    rpid=$!
    track "$rpid"
    prc=1
    if wait_for "$rpid" test -S "$rd.data" -a -S "$rd.ctrl" &&
        python3 "$tmp/pcrs.py" "$1" "$rd.ctrl" "$rd.data" >"$2" 2>"$tmp/err"; then
        prc=0
    else
        show "$tmp/err"
        show "$rd.out"
        kill -9 "$rpid" 2>/dev/null
    fi
    wait_exit "$rpid" >/dev/null 2>&1
    return "$prc"
}

# pcrs_set FILE: PCRs 0-7 all present and none all-zero.
pcrs_set() {
    [ "$(grep -c ': 0x[0-9A-F]\{64\}$' "$1")" -eq 8 ] &&
        ! grep -q ': 0x0\{64\}$' "$1"
}

# ---- 1. boot ------------------------------------------------------------
# boot_case LABEL MACHINE DEVICE IMAGE ARGS...: nvram-tpmd (ARGS) serving
# IMAGE to QEMU; SeaBIOS's TPM commands succeed; quit ends both with 0.
boot_case() {
    label=$1 machine=$2 device=$3 image=$4
    shift 4
    case_start "boot $label"
    if ! start_tpmd boot "$@"; then
        not_ok "$label: nvram-tpmd serves"
        show "$tmp/boot.out"
        return
    fi
    tp=$daemon_pid
    if ! start_qemu boot "$machine" "$device" boot; then
        not_ok "$label: QEMU starts"
        show "$tmp/boot.qemu"
        return
    fi
    qp=$qemu_pid
    if wait_bios boot; then
        ok "$label: SeaBIOS ran to 'No bootable device'"
    else
        not_ok "$label: SeaBIOS ran to 'No bootable device'"
        show "$tmp/boot.bios"
        show "$tmp/boot.qemu"
    fi
    if qmp boot query-tpm && grep -q "\"model\": \"$device\"" "$tmp/qmp.out" &&
        grep -q '"type": "emulator"' "$tmp/qmp.out"; then
        ok "$label: QMP query-tpm shows the $device emulator TPM"
    else
        not_ok "$label: QMP query-tpm shows the $device emulator TPM"
        show "$tmp/qmp.out"
        show "$tmp/qmp.err"
    fi
    check_tpm_log "$tmp/boot.log" "$label: every SeaBIOS TPM command succeeded" boot
    qmp boot quit
    qrc=0
    wait_exit "$qp" || qrc=$?
    trc=0
    wait_exit "$tp" || trc=$?
    if [ "$qrc" -eq 0 ] && [ "$trc" -eq 0 ] &&
        grep -q "SHUTDOWN: TPM powered off, exiting" "$tmp/boot.log"; then
        ok "$label: QMP quit: QEMU exits 0, nvram-tpmd exits 0 on SHUTDOWN"
    else
        not_ok "$label: QMP quit: QEMU exits 0 ($qrc), nvram-tpmd exits 0 ($trc) on SHUTDOWN"
        show "$tmp/boot.log"
        show "$tmp/boot.qemu"
    fi
    expect 0 "$label: nvram-tool check passes on the image" check "$image"
    case_end
    rm -f "$tmp/boot.log"
}

boot_case "q35/tpm-crb, own command line" q35 tpm-crb "$tmp/own.img" \
    --image "$tmp/own.img" --ctrl "type=unixio,path=$tmp/boot.sock" --flags need-init \
    --log "file=$tmp/boot.log,level=3"
mkdir -p "$tmp/sw.d"
boot_case "pc/tpm-tis, swtpm's command line" pc tpm-tis "$tmp/sw.d/nvramtdb.permall" \
    socket --tpm2 --tpmstate "dir=$tmp/sw.d,mode=0600" \
    --ctrl "type=unixio,path=$tmp/boot.sock,mode=0600" \
    --log "file=$tmp/boot.log,level=3" --terminate

# ---- 2. migration ---------------------------------------------------------
# migrate_case FROM TO MACHINE DEVICE: QEMU on a TPM of kind FROM boots,
# is stopped and migrated to a file; a QEMU on a new TPM of kind TO takes
# it in (-incoming), runs (cont) and is migrated out again: both streams
# hold the same PCRs.
migrate_case() {
    from=$1 to=$2 machine=$3 device=$4
    label="migrate $from -> $to ($machine/$device)"
    case_start "$label"
    rm -rf "$tmp/src.d" "$tmp/dst.d" "$tmp"/src.* "$tmp"/dst.* "$tmp"/mig*
    if ! start_daemon "$from" src; then
        not_ok "$label: source $from serves"
        show "$tmp/src.out"
        return
    fi
    sp=$daemon_pid
    if ! start_qemu src "$machine" "$device" src || ! wait_bios src; then
        not_ok "$label: source QEMU boots"
        show "$tmp/src.qemu"
        return
    fi
    sq=$qemu_pid
    if qmp src stop migrate "{\"uri\": \"exec:cat > $tmp/mig1\"}" wait-migrate quit; then
        ok "$label: source stopped, migrated to a file, quit"
    else
        not_ok "$label: source stopped, migrated to a file, quit"
        show "$tmp/qmp.err"
        return
    fi
    qrc=0 trc=0
    wait_exit "$sq" || qrc=$?
    wait_exit "$sp" || trc=$?
    if [ "$qrc" -eq 0 ] && [ "$trc" -eq 0 ]; then
        ok "$label: source QEMU and $from exit 0"
    else
        not_ok "$label: source QEMU ($qrc) and $from ($trc) exit 0"
        show "$tmp/src.qemu"
    fi
    if pcrs_of "$tmp/mig1" "$tmp/pcr.before" && pcrs_set "$tmp/pcr.before"; then
        ok "$label: PCRs 0-7 before migration read (SeaBIOS extended them)"
    else
        not_ok "$label: PCRs 0-7 before migration read (SeaBIOS extended them)"
        show "$tmp/pcr.before"
    fi

    if ! start_daemon "$to" dst; then
        not_ok "$label: destination $to serves"
        show "$tmp/dst.out"
        return
    fi
    dp=$daemon_pid
    if ! start_qemu dst "$machine" "$device" dst -incoming "exec:cat $tmp/mig1"; then
        not_ok "$label: destination QEMU starts"
        show "$tmp/dst.qemu"
        return
    fi
    dq=$qemu_pid
    # Loaded, it waits for cont; the guest (SeaBIOS, waiting to retry the
    # boot) runs 2 s on the new TPM, is stopped and migrated out again;
    # then reset: SeaBIOS starts the migrated TPM again and extends PCRs.
    if qmp dst wait-status paused cont wait-status running sleep 2 wait-status running \
            stop migrate "{\"uri\": \"exec:cat > $tmp/mig2\"}" wait-migrate \
            cont system_reset; then
        ok "$label: incoming loaded; cont ran it; stopped, migrated to a file; reset"
    else
        not_ok "$label: incoming loaded; cont ran it; stopped, migrated to a file; reset"
        show "$tmp/qmp.out"
        show "$tmp/qmp.err"
        show "$tmp/dst.qemu"
        show "$tmp/dst.log"
        return
    fi
    if wait_bios dst; then
        ok "$label: after the reset the destination's SeaBIOS boots again"
    else
        not_ok "$label: after the reset the destination's SeaBIOS boots again"
        show "$tmp/dst.qemu"
    fi
    if pcrs_of "$tmp/mig2" "$tmp/pcr.after" && pcrs_set "$tmp/pcr.after" &&
        cmp -s "$tmp/pcr.before" "$tmp/pcr.after"; then
        ok "$label: PCRs 0-7 after migration equal those before"
    else
        not_ok "$label: PCRs 0-7 after migration equal those before"
        diff "$tmp/pcr.before" "$tmp/pcr.after" | sed 's/^/#   /'
    fi
    if [ "$to" = nvram-tpmd ]; then
        check_tpm_log "$tmp/dst.log" \
            "$label: nvram-tpmd: every TPM command after the migration succeeded" boot
        if grep -q "control command 13 SET_STATEBLOB -> 0x0" "$tmp/dst.log" &&
            ! grep -q "control command 13 SET_STATEBLOB -> 0x[1-9a-f]" "$tmp/dst.log"; then
            ok "$label: nvram-tpmd took the state blobs (SET_STATEBLOB)"
        else
            not_ok "$label: nvram-tpmd took the state blobs (SET_STATEBLOB)"
            show "$tmp/dst.log"
        fi
    fi
    qmp dst quit
    qrc=0 trc=0
    wait_exit "$dq" || qrc=$?
    wait_exit "$dp" || trc=$?
    if [ "$qrc" -eq 0 ] && [ "$trc" -eq 0 ]; then
        ok "$label: destination QEMU and $to exit 0"
    else
        not_ok "$label: destination QEMU ($qrc) and $to ($trc) exit 0"
        show "$tmp/dst.qemu"
    fi
    if [ "$to" = nvram-tpmd ]; then
        expect 0 "$label: nvram-tool check passes on the image" \
            check "$tmp/dst.d/nvramtdb.permall"
    fi
    case_end
}

migrate_case swtpm swtpm q35 tpm-crb
migrate_case swtpm nvram-tpmd q35 tpm-crb
migrate_case nvram-tpmd swtpm pc tpm-tis
migrate_case nvram-tpmd nvram-tpmd pc tpm-tis

# ---- 3. kill -9 under QEMU ------------------------------------------------
# kill_under_qemu WHO QEMU: kill -9 the daemon ($daemon_pid) under the
# running QEMU ($qemu_pid, named QEMU) and check what QEMU 7.2 does.
kill_under_qemu() {
    kill -9 "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null
    untrack "$daemon_pid"
    # QEMU 7.2 does not watch the control socket: it keeps running ...
    if qmp "$2" query-status && grep -q '"status": "running"' "$tmp/qmp.out"; then
        ok "kill -9 of $1: QEMU keeps running with its TPM daemon gone"
    else
        not_ok "kill -9 of $1: QEMU keeps running with its TPM daemon gone"
        show "$tmp/qmp.out"
        show "$tmp/$2.qemu"
    fi
    # ... until it next needs the TPM: a reset restarts it, which fails.
    qmp "$2" system_reset
    qrc=0
    wait_exit "$qemu_pid" || qrc=$?
    if [ "$qrc" -eq 1 ] && grep -q "tpm-emulator: Could not stop TPM" "$tmp/$2.qemu"; then
        ok "kill -9 of $1: on system_reset QEMU reports 'Could not stop TPM' and exits 1"
    else
        not_ok "kill -9 of $1: on system_reset QEMU reports 'Could not stop TPM' and exits 1 (exit $qrc)"
        show "$tmp/$2.qemu"
    fi
}

# The baseline: what QEMU does when swtpm is killed under it.
case_start "kill -9 of swtpm under QEMU (baseline)"
if start_swtpm ksw && start_qemu k0 q35 tpm-crb ksw && wait_bios k0; then
    ok "kill -9 of swtpm: QEMU booted on swtpm"
    kill_under_qemu swtpm k0
else
    not_ok "kill -9 of swtpm: QEMU booted on swtpm"
    show "$tmp/ksw.out"
    show "$tmp/k0.qemu"
fi
case_end

case_start "kill -9 of nvram-tpmd under QEMU, restart; kill -9 of QEMU"
kimg=$tmp/kill.img
kargs="--image $kimg --ctrl type=unixio,path=$tmp/kill.sock --log file=$tmp/kill.log,level=3"
# shellcheck disable=SC2086 # $kargs holds words without spaces ($tmp has none)
if start_tpmd kill $kargs && start_qemu k1 q35 tpm-crb kill && wait_bios k1; then
    ok "kill -9: QEMU booted on nvram-tpmd"
    kill_under_qemu nvram-tpmd k1
else
    not_ok "kill -9: QEMU booted on nvram-tpmd"
    show "$tmp/kill.out"
    show "$tmp/k1.qemu"
fi
# The stale socket file stays: the restarted daemon replaces it.
: >"$tmp/kill.log"
# shellcheck disable=SC2086
if start_tpmd kill $kargs && start_qemu k2 q35 tpm-crb kill && wait_bios k2; then
    ok "kill -9: a restarted nvram-tpmd on the same image serves a new QEMU"
else
    not_ok "kill -9: a restarted nvram-tpmd on the same image serves a new QEMU"
    show "$tmp/kill.out"
    show "$tmp/k2.qemu"
fi
kp=$daemon_pid
kq=$qemu_pid
check_tpm_log "$tmp/kill.log" "kill -9: after the restart every SeaBIOS TPM command succeeded" boot
# The other way round: QEMU killed, the daemon (without --terminate) stays
# and serves the next QEMU, as swtpm does.
kill -9 "$kq"
wait "$kq" 2>/dev/null
untrack "$kq"
: >"$tmp/kill.log"
if start_qemu k3 q35 tpm-crb kill && wait_bios k3 && kill -0 "$kp"; then
    ok "kill -9 of QEMU: the same nvram-tpmd serves the next QEMU"
else
    not_ok "kill -9 of QEMU: the same nvram-tpmd serves the next QEMU"
    show "$tmp/k3.qemu"
    show "$tmp/kill.out"
fi
kq=$qemu_pid
check_tpm_log "$tmp/kill.log" "kill -9 of QEMU: every SeaBIOS TPM command of the next QEMU succeeded" boot
qmp k3 quit
qrc=0 trc=0
wait_exit "$kq" || qrc=$?
wait_exit "$kp" || trc=$?
if [ "$qrc" -eq 0 ] && [ "$trc" -eq 0 ]; then
    ok "kill -9: QMP quit: QEMU and the restarted nvram-tpmd exit 0"
else
    not_ok "kill -9: QMP quit: QEMU ($qrc) and the restarted nvram-tpmd ($trc) exit 0"
    show "$tmp/kill.log"
fi
expect 0 "kill -9: nvram-tool check passes on the image" check "$kimg"
case_end

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
