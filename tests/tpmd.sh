#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# tpmd.sh — end-to-end test of nvram-tpmd with real TPM clients.
#
# What it checks, in order:
#  1. tpm2-tools (TCTI "swtpm:") against a daemon on a new image: startup,
#     getrandom, an NV index written and read back, an NV counter
#     incremented, a primary key made persistent at 0x81000001;
#  2. a second daemon on the same image is refused, naming the image;
#  3. orderly stop (tpm2_shutdown, SIGTERM: exit 0), restart on the same
#     image, and everything reads back;
#  4. the control channel (swtpm's commands and layouts) and the data
#     channel's framings (raw, mssim, split and pipelined commands), then
#     SHUTDOWN ends the daemon; UNIX sockets and SET_DATAFD fd passing,
#     as QEMU uses them (these need python3);
#  5. crash safety: rounds of NV_Increment streams killed with kill -9 at
#     a random moment; after each restart the counter holds at least every
#     increment acknowledged and at most one more, and nvram-tool check
#     passes on the image;
#  6. --daemon: the parent returns once the child serves;
#  7. the permanent state migrates to swtpm and back (swtpm_ioctl --save
#     and --load on both control channels), when swtpm is installed;
#  8. incoming migration is atomic: TPM B's blobs set on a daemon holding
#     TPM A, then kill -9 before INIT: the image still holds A's blobs
#     byte for byte and serves A's NV index; STOP discards them; with
#     INIT it serves B's, also after a restart (needs python3).
# One "ok"/"not ok" line per check; exit 0 pass, 1 fail, 77 skip.
# Environment: NVRAM_TPMD, NVRAM_TOOL (set by make check),
# NVT_TPMD_ROUNDS (kill -9 rounds, default 20).

tmp_name=nvram-tpmd-test
show_tail=20
. "$(dirname "$0")/tpmlib.sh"
rounds=${NVT_TPMD_ROUNDS:-20}
need_commands "install tpm2-tools" \
    tpm2_startup tpm2_shutdown tpm2_getrandom tpm2_nvdefine tpm2_nvwrite tpm2_nvread \
    tpm2_nvincrement tpm2_createprimary tpm2_evictcontrol tpm2_getcap
have_python=no
command -v python3 >/dev/null 2>&1 && have_python=yes

img=$tmp/tpm.img
# The daemon of section 6 detaches (--daemon): only its pid file names it.
at_exit() {
    kill_daemons
    [ -s "$tmp/dpid" ] && kill -9 "$(cat "$tmp/dpid")" 2>/dev/null
    return 0
}

# tool_run DESCRIPTION CMD...: a tpm2-tools (or other) command as one check;
# its output goes to $tmp/out, its messages to $tmp/err.
tool_run() {
    desc=$1
    shift
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -eq 0 ]; then
        ok "$desc"
        return 0
    fi
    not_ok "$desc (exit $rc)"
    show "$tmp/err"
    show "$tmp/tpmd.log"
    return 1
}

# ---- starting and stopping the daemon ---------------------------------------

tpmd_on_port() {
    rm -f "$tmp/pid"
    "$tpmd" --image "$img" --tcp-port "$port" --pid-file "$tmp/pid" \
        --log "file=$tmp/tpmd.log,level=2" "$@" 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
}
tpmd_pid_written() { test -s "$tmp/pid"; }
# start_tpmd [ARGS...]: start the daemon on $img in the background with
# data on $port and control on $port+1; waits until it serves (its pid
# file appears).  Sets tpmd_pid and TPM2TOOLS_TCTI.
start_tpmd() {
    if serve_on_free_port "$tmp/tpmd.err" tpmd_pid tpmd_pid_written tpmd_on_port "$@"; then
        set_tcti "$port"
        return 0
    fi
    show "$tmp/tpmd.err"
    return 1
}

# wait_tpmd: wait for the daemon to exit, status in $tpmd_rc; a daemon
# that does not exit within 20 s is killed (status 137) rather than
# hanging the test.  The watchdog is told to stop by a file, not by a
# signal: a just-forked child still runs our traps.
wait_tpmd() {
    rm -f "$tmp/exited"
    sh -c 'i=0
           while [ ! -e "$2" ] && [ "$i" -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
           [ -e "$2" ] || kill -9 "$1"' watchdog "$tpmd_pid" "$tmp/exited" >/dev/null 2>&1 &
    watchdog=$!
    wait "$tpmd_pid" 2>/dev/null
    tpmd_rc=$?
    : >"$tmp/exited"
    wait "$watchdog"
    tpmd_pid=
}

# stop_tpmd SIGNAL: send SIGNAL and wait; the exit status is in $tpmd_rc.
stop_tpmd() {
    kill "-$1" "$tpmd_pid" 2>/dev/null
    wait_tpmd
}

# ---- helpers ------------------------------------------------------------------

DATA_INDEX=0x1500016
COUNTER_INDEX=0x1500017
PERSISTENT=0x81000001

# read_counter: print the counter's value in decimal.
read_counter() {
    tpm2_nvread "$COUNTER_INDEX" -C o -s 8 -o "$tmp/ctr.bin" 2>"$tmp/err" || return 1
    printf '%d\n' "0x$(od -An -tx1 "$tmp/ctr.bin" | tr -d ' \n')"
}

has_persistent() {
    tpm2_getcap handles-persistent 2>"$tmp/err" | grep -qi "$PERSISTENT"
}

# A raw-protocol client for the control channel and the NV_Increment
# stream: swtpm's layouts, written from its tpm_ioctl.h documentation.
cat >"$tmp/client.py" <<'EOF'
import os, socket, struct, sys, time

failed = 0
def check(cond, desc):
    global failed
    print(("ok - " if cond else "not ok - ") + desc, flush=True)
    failed += 0 if cond else 1

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b

def tpm(s, cmd):
    s.sendall(cmd)
    return tpm_read(s)

def tpm_read(s):
    hdr = recv_exact(s, 10)
    size = struct.unpack(">I", hdr[2:6])[0]
    body = recv_exact(s, size - 10)
    return struct.unpack(">I", hdr[6:10])[0], hdr + body

def ctrl(s, cmd, payload=b"", resp_len=4):
    s.sendall(struct.pack(">I", cmd) + payload)
    return recv_exact(s, resp_len)

def result(b):
    return struct.unpack(">I", b[:4])[0]

GETRANDOM8 = bytes.fromhex("80010000000c0000017b0008")
CAP_NEEDED = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 7) | \
             (1 << 8) | (1 << 9) | (1 << 10) | (1 << 12) | (1 << 13)

socket.setdefaulttimeout(20)   # a daemon that stops answering fails the test

def tcp(port):
    s = socket.create_connection(("127.0.0.1", port))
    if s.getsockname() == s.getpeername():
        # With no listener, Linux may pick the port itself as the
        # ephemeral port and connect the socket to itself (a TCP
        # simultaneous open): the daemon is gone, not answering.
        s.close()
        raise ConnectionRefusedError("connected to itself: nothing listens on %d" % port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def ctrl_smoke(port):
    c = tcp(port + 1)
    caps = struct.unpack(">Q", ctrl(c, 1, resp_len=8))[0]
    check(caps & CAP_NEEDED == CAP_NEEDED, "GET_CAPABILITY offers what QEMU and tpm2-tss use (0x%x)" % caps)
    check(result(ctrl(c, 5, b"\x00")) == 0, "SET_LOCALITY 0")
    check(result(ctrl(c, 5, b"\x05")) == 0x3d, "SET_LOCALITY 5 is TPM_BAD_LOCALITY")
    r = ctrl(c, 4, resp_len=8)
    check(result(r) == 0 and r[4] in (0, 1), "GET_TPMESTABLISHED answers result and bit (8 bytes)")
    r = ctrl(c, 15, resp_len=8)
    check(result(r) == 0, "GET_CONFIG")
    r = ctrl(c, 17, struct.pack(">I", 0), resp_len=16)
    res, size, lo, hi = struct.unpack(">IIII", r)
    check(res == 0 and lo <= size <= hi and size >= 1024, "SET_BUFFERSIZE query: %d in [%d, %d]" % (size, lo, hi))
    r = ctrl(c, 12, struct.pack(">III", 0, 1, 0), resp_len=16)
    res, flags, tot, n = struct.unpack(">IIII", r)
    blob = recv_exact(c, n) if res == 0 else b""
    check(res == 0 and n == tot and n > 26 and blob[0] == 2 and
          struct.unpack(">HHI", blob[2:10]) == (10, 4, n),
          "GET_STATEBLOB permanent: %d bytes in swtpm's migration container" % n)
    check(result(ctrl(c, 10)) == 0, "STORE_VOLATILE")
    check(result(ctrl(c, 0x99)) == 10, "an unknown control command is TPM_BAD_ORDINAL")

    d = tcp(port)
    rc, r = tpm(d, GETRANDOM8)
    check(rc == 0 and len(r) == 20, "raw GetRandom on the data channel")
    d.sendall(struct.pack(">IBI", 8, 0, len(GETRANDOM8)) + GETRANDOM8)
    n = struct.unpack(">I", recv_exact(d, 4))[0]
    r = recv_exact(d, n)
    trailer = recv_exact(d, 4)
    check(n == 20 and struct.unpack(">I", r[6:10])[0] == 0 and trailer == b"\0\0\0\0",
          "mssim-framed GetRandom on the same connection: size, response, 0")
    d.sendall(GETRANDOM8[:5])
    time.sleep(0.05)
    d.sendall(GETRANDOM8[5:])
    rc, r = tpm_read(d)
    check(rc == 0 and len(r) == 20, "a command split across two writes")
    d.sendall(GETRANDOM8 + GETRANDOM8)
    rc1, _ = tpm_read(d)
    rc2, _ = tpm_read(d)
    check(rc1 == 0 and rc2 == 0, "two commands in one write, two responses")
    d.close()
    check(result(ctrl(c, 3)) == 0, "SHUTDOWN answers before the daemon exits")
    c.close()

def unix_smoke(data_path, ctrl_path):
    d = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    d.connect(data_path)
    rc, r = tpm(d, GETRANDOM8)
    check(rc == 0 and len(r) == 20, "GetRandom over the UNIX data socket")
    d.close()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(ctrl_path)
    a, b = socket.socketpair()
    c.sendmsg([struct.pack(">I", 16)],
              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", b.fileno()))])
    res = result(recv_exact(c, 4))
    b.close()
    check(res == 0, "SET_DATAFD with a socket passed by SCM_RIGHTS")
    rc, r = tpm(a, GETRANDOM8)
    check(rc == 0 and len(r) == 20, "GetRandom over the passed socket")
    check(result(ctrl(c, 5, b"\x00\x00\x00\x00")) == 0, "SET_LOCALITY as QEMU sends it (4-byte union)")
    check(result(ctrl(c, 14)) == 0, "STOP powers the TPM off")
    rc, r = tpm(a, GETRANDOM8)
    check(rc == 0x101, "a command while stopped answers TPM_RC_FAILURE")
    check(result(ctrl(c, 2, struct.pack(">I", 1))) == 0, "INIT powers it on again")
    rc, r = tpm(a, bytes.fromhex("80010000000c000001440000"))
    check(rc == 0, "Startup(CLEAR) after INIT")
    check(result(ctrl(c, 3)) == 0, "SHUTDOWN over the UNIX control socket")
    c.close()
    a.close()

def stream(port, index, ackfile):
    # NV_Increment(owner auth, empty password) until the connection dies.
    cmd = struct.pack(">HII" "II" "I" "IHBH", 0x8002, 31, 0x134, 0x40000001, index,
                      9, 0x40000009, 0, 0, 0)
    try:
        s = tcp(port)
    except OSError:
        open(ackfile, "w").close()
        return 0                # killed before we connected
    n = 0
    with open(ackfile, "w") as f:
        while True:
            try:
                rc, resp = tpm(s, cmd)
            except (EOFError, OSError):
                return 0
            if rc != 0:
                print("NV_Increment answered 0x%x after %d increments (response %s, %s -> %s)"
                      % (rc, n, resp.hex(), s.getsockname(), s.getpeername()), file=sys.stderr)
                return 3
            n += 1
            f.write("%d\n" % n)
            f.flush()

BLOBS = ((1, "permanent"), (2, "volatile"))

def get_blobs(port, outdir):
    # What QEMU's outgoing migration takes from a running TPM.
    c = tcp(port + 1)
    for t, name in BLOBS:
        res, flags, tot, n = struct.unpack(">IIII", ctrl(c, 12, struct.pack(">III", 0, t, 0), resp_len=16))
        blob = recv_exact(c, n) if res == 0 else b""
        check(res == 0 and n > 0, "GET_STATEBLOB %s of TPM B: %d bytes" % (name, n))
        with open(os.path.join(outdir, name + ".blob"), "wb") as f:
            f.write(blob)
    c.close()

def set_blobs(port, indir, then):
    # QEMU's incoming migration: STOP, SET_STATEBLOB per blob, INIT.
    c = tcp(port + 1)
    check(result(ctrl(c, 14)) == 0, "STOP before the incoming state")
    for t, name in (BLOBS[:1] if then == "permanent-only" else BLOBS):
        with open(os.path.join(indir, name + ".blob"), "rb") as f:
            blob = f.read()
        res = result(ctrl(c, 13, struct.pack(">III", 0, t, len(blob)) + blob))
        check(res == 0, "SET_STATEBLOB %s of TPM B (%d bytes)" % (name, len(blob)))
    check(result(ctrl(c, 13, struct.pack(">III", 0, 3, 0))) == 0, "SET_STATEBLOB savestate (empty)")
    if then == "permanent-only":
        c.close()
        return
    if then == "stop-init":
        check(result(ctrl(c, 14)) == 0, "STOP after the blobs (discards them)")
    if then in ("init", "stop-init"):
        check(result(ctrl(c, 2, struct.pack(">I", 1))) == 0, "INIT after the blobs")
    c.close()

mode = sys.argv[1]
if mode == "getblobs":
    get_blobs(int(sys.argv[2]), sys.argv[3])
elif mode == "setblobs":
    set_blobs(int(sys.argv[2]), sys.argv[3], sys.argv[4])
elif mode == "ctrl":
    ctrl_smoke(int(sys.argv[2]))
elif mode == "unix":
    unix_smoke(sys.argv[2], sys.argv[3])
elif mode == "stream":
    sys.exit(stream(int(sys.argv[2]), int(sys.argv[3], 0), sys.argv[4]))
sys.exit(1 if failed else 0)
EOF

# py_checks ARGS...: run the client; its ok/not ok lines count as ours.
py_checks() {
    python3 "$tmp/client.py" "$@" >"$tmp/py.out" 2>"$tmp/py.err"
    prc=$?
    cat "$tmp/py.out"
    passed=$((passed + $(grep -c '^ok' "$tmp/py.out")))
    failed=$((failed + $(grep -c '^not ok' "$tmp/py.out")))
    if [ "$prc" -ne 0 ] && ! grep -q '^not ok' "$tmp/py.out"; then
        not_ok "python3 client $1 failed (exit $prc)"
        show "$tmp/py.err"
    fi
}

# ---- 1. tpm2-tools on a new image ---------------------------------------------

if start_tpmd; then
    ok "daemon starts on a new image"
else
    not_ok "daemon starts on a new image"
    exit 1
fi
[ -f "$img" ] && ok "the image was created" || not_ok "the image was created"

tool_run "tpm2_startup -c" tpm2_startup -c
if tool_run "tpm2_getrandom 16" tpm2_getrandom 16 -o "$tmp/rand.bin"; then
    [ "$(wc -c <"$tmp/rand.bin" | tr -d ' ')" = 16 ] && ok "16 random bytes" ||
        not_ok "16 random bytes"
fi
head -c 32 /dev/urandom >"$tmp/data.bin"
tool_run "tpm2_nvdefine $DATA_INDEX (32 bytes)" \
    tpm2_nvdefine "$DATA_INDEX" -C o -s 32 -a "ownerread|ownerwrite|authread|authwrite"
tool_run "tpm2_nvwrite 32 bytes" tpm2_nvwrite "$DATA_INDEX" -C o -i "$tmp/data.bin"
tool_run "tpm2_nvread 32 bytes" tpm2_nvread "$DATA_INDEX" -C o -s 32 -o "$tmp/data.out"
cmp -s "$tmp/data.bin" "$tmp/data.out" && ok "NV index reads back what was written" ||
    not_ok "NV index reads back what was written"
tool_run "tpm2_nvdefine $COUNTER_INDEX (counter)" \
    tpm2_nvdefine "$COUNTER_INDEX" -C o -s 8 -a "nt=counter|ownerread|ownerwrite|authread|authwrite"
incs=0
for i in 1 2 3 4 5; do
    tpm2_nvincrement "$COUNTER_INDEX" -C o >"$tmp/out" 2>"$tmp/err" && incs=$((incs + 1))
done
[ "$incs" = 5 ] && ok "tpm2_nvincrement 5 times" || { not_ok "tpm2_nvincrement 5 times ($incs)"; show "$tmp/err"; }
counter=$(read_counter)
[ "${counter:-x}" = 5 ] && ok "counter reads 5" || not_ok "counter reads 5 (got '${counter:-}')"
tool_run "tpm2_createprimary (ECC)" tpm2_createprimary -C o -G ecc -c "$tmp/primary.ctx"
tool_run "tpm2_evictcontrol to $PERSISTENT" \
    tpm2_evictcontrol -C o -c "$tmp/primary.ctx" "$PERSISTENT"
has_persistent && ok "$PERSISTENT is listed by tpm2_getcap handles-persistent" ||
    not_ok "$PERSISTENT is listed by tpm2_getcap handles-persistent"

# ---- 2. a second daemon on the same image -------------------------------------

second_port=$((port + 20))
"$tpmd" --image "$img" --tcp-port "$second_port" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 0 ] && grep -q "$img" "$tmp/err" && grep -qi 'in use' "$tmp/err"; then
    ok "a second daemon on the image is refused, naming it (exit $rc)"
else
    not_ok "a second daemon on the image is refused, naming it (exit $rc)"
    show "$tmp/err"
fi

# ---- 3. orderly stop and restart ----------------------------------------------

tool_run "tpm2_shutdown -c" tpm2_shutdown -c
stop_tpmd TERM
[ "$tpmd_rc" = 0 ] && ok "SIGTERM: the daemon exits 0" || not_ok "SIGTERM: the daemon exits 0 (got $tpmd_rc)"
[ ! -e "$tmp/pid" ] && ok "the pid file is removed" || not_ok "the pid file is removed"
if start_tpmd; then ok "restart on the same image"; else not_ok "restart on the same image"; exit 1; fi
tool_run "tpm2_startup -c after the restart" tpm2_startup -c
tool_run "tpm2_nvread after the restart" tpm2_nvread "$DATA_INDEX" -C o -s 32 -o "$tmp/data.out"
cmp -s "$tmp/data.bin" "$tmp/data.out" && ok "NV index data survived the restart" ||
    not_ok "NV index data survived the restart"
counter=$(read_counter)
[ "${counter:-0}" -ge 5 ] 2>/dev/null && ok "counter survived the restart ($counter >= 5)" ||
    not_ok "counter survived the restart (got '${counter:-}')"
has_persistent && ok "$PERSISTENT survived the restart" || not_ok "$PERSISTENT survived the restart"

# ---- 4. control channel and framings ------------------------------------------

if [ "$have_python" = yes ]; then
    py_checks ctrl "$port"
    wait_tpmd
    [ "$tpmd_rc" = 0 ] && ok "SHUTDOWN: the daemon exits 0" ||
        not_ok "SHUTDOWN: the daemon exits 0 (got $tpmd_rc)"
    "$tool" list "$img" >"$tmp/out" 2>"$tmp/err"
    grep -q 'tpm0/volatilestate' "$tmp/out" && ok "STORE_VOLATILE left tpm0/volatilestate in the image" ||
        { not_ok "STORE_VOLATILE left tpm0/volatilestate in the image"; show "$tmp/out"; }

    # UNIX sockets, and the data socket passed the way QEMU passes it.
    rm -f "$tmp/pid"
    "$tpmd" --image "$img" --server "type=unixio,path=$tmp/data.sock" \
        --ctrl "type=unixio,path=$tmp/ctrl.sock,mode=0700" --pid-file "$tmp/pid" \
        --log "file=$tmp/tpmd.log,level=2" 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
    if wait_for "$tpmd_pid" test -s "$tmp/pid"; then
        ok "daemon serves on UNIX sockets"
        py_checks unix "$tmp/data.sock" "$tmp/ctrl.sock"
        wait_tpmd
        [ "$tpmd_rc" = 0 ] && [ ! -e "$tmp/ctrl.sock" ] && [ ! -e "$tmp/data.sock" ] &&
            ok "SHUTDOWN: exit 0, socket files removed" ||
            not_ok "SHUTDOWN: exit 0, socket files removed (exit $tpmd_rc)"
    else
        not_ok "daemon serves on UNIX sockets"
        show "$tmp/tpmd.err"
        kill -9 "$tpmd_pid" 2>/dev/null
        wait "$tpmd_pid" 2>/dev/null
    fi
    tpmd_pid=
    "$tool" list "$img" >"$tmp/out" 2>"$tmp/err"
    ! grep -q 'tpm0/volatilestate' "$tmp/out" && ok "the volatile state was used once (deleted at power-on)" ||
        not_ok "the volatile state was used once (deleted at power-on)"
else
    echo "ok - # SKIP control channel and UNIX socket checks: python3 not found"
    stop_tpmd TERM
fi

# ---- 5. kill -9 during NV_Increment streams -----------------------------------

# increment_stream ACKFILE: NV_Increment until the daemon dies, one line
# in ACKFILE per acknowledged increment.
increment_stream() {
    if [ "$have_python" = yes ]; then
        python3 "$tmp/client.py" stream "$port" "$COUNTER_INDEX" "$1" 2>"$tmp/stream.err"
    else
        : >"$1"
        while tpm2_nvincrement "$COUNTER_INDEX" -C o >/dev/null 2>&1; do
            echo x >>"$1"
        done
    fi
}

round=0
crash_ok=yes
base=
acked=0
while [ "$round" -le "$rounds" ]; do
    if ! start_tpmd; then
        not_ok "restart after kill -9 (round $round)"
        crash_ok=no
        break
    fi
    if ! tpm2_startup -c >"$tmp/out" 2>"$tmp/err" || ! value=$(read_counter); then
        not_ok "startup and counter read after kill -9 (round $round)"
        show "$tmp/err"
        show "$tmp/tpmd.log"
        crash_ok=no
        break
    fi
    if [ -n "$base" ]; then
        low=$((base + acked))
        if [ "$value" -lt "$low" ] || [ "$value" -gt $((low + 1)) ]; then
            not_ok "round $round: counter $value, expected $low (acknowledged) or $((low + 1))"
            crash_ok=no
        fi
    fi
    [ "$round" -eq "$rounds" ] && break
    round=$((round + 1))
    base=$value
    increment_stream "$tmp/acked" &
    stream_pid=$!
    # a random moment between 100 and 500 ms (the client needs ~50 ms to start)
    ms=$((100 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 400))
    sleep "$(printf '0.%03d' "$ms")"
    stop_tpmd KILL 2>/dev/null   # no "Killed" job notice from bash
    wait "$stream_pid"
    src=$?
    acked=$(wc -l <"$tmp/acked" | tr -d ' ')
    if [ "$src" -ne 0 ]; then
        not_ok "round $round: the increment stream failed (exit $src)"
        show "$tmp/stream.err"
        crash_ok=no
    fi
    if ! "$tool" check "$img" >"$tmp/out" 2>&1; then
        not_ok "round $round: nvram-tool check after kill -9"
        show "$tmp/out"
        crash_ok=no
    fi
    echo "# round $round: killed after ${ms} ms, $acked increments acknowledged (counter was $base)"
done
[ "$crash_ok" = yes ] &&
    ok "kill -9 in $rounds rounds: counter >= acknowledged (at most one more), image checks" ||
    not_ok "kill -9 rounds"
stop_tpmd TERM
[ "$tpmd_rc" = 0 ] && ok "final SIGTERM: exit 0" || not_ok "final SIGTERM: exit 0 (got $tpmd_rc)"
tool_run "nvram-tool check after the crash rounds" "$tool" check "$img"

# ---- 6. --daemon -----------------------------------------------------------------

next_port
rm -f "$tmp/dpid"
if "$tpmd" --daemon --image "$img" --tcp-port "$port" --pid-file "$tmp/dpid" \
        --log "file=$tmp/tpmd.log,level=1" >"$tmp/out" 2>"$tmp/err" && [ -s "$tmp/dpid" ]; then
    ok "--daemon returns once serving (pid file written)"
    set_tcti "$port"
    tool_run "tpm2_startup -c on the detached daemon" tpm2_startup -c
    counter=$(read_counter)
    [ -n "$counter" ] && ok "counter reads $counter on the detached daemon" ||
        not_ok "counter reads on the detached daemon"
    kill -TERM "$(cat "$tmp/dpid")"
    i=0
    while [ -e "$tmp/dpid" ] && [ "$i" -lt 200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    [ ! -e "$tmp/dpid" ] && ok "the detached daemon stops on SIGTERM" ||
        not_ok "the detached daemon stops on SIGTERM"
else
    not_ok "--daemon returns once serving (pid file written)"
    show "$tmp/err"
fi

# ---- 7. state migration to and from swtpm ---------------------------------------

if command -v swtpm >/dev/null 2>&1 && command -v swtpm_ioctl >/dev/null 2>&1; then
    # ours -> swtpm: swtpm_ioctl --save from us, --load into swtpm
    if start_tpmd; then
        ctl=$((port + 1))
        tpm2_startup -c >/dev/null 2>&1
        tool_run "swtpm_ioctl --save permanent from nvram-tpmd" \
            swtpm_ioctl --tcp "127.0.0.1:$ctl" --save permanent "$tmp/perm.blob"
        tool_run "swtpm_ioctl -s stops nvram-tpmd" swtpm_ioctl --tcp "127.0.0.1:$ctl" -s
        wait_tpmd
    else
        not_ok "daemon start for the migration test"
    fi
    next_port
    mkdir -p "$tmp/swtpm"
    swtpm socket --tpm2 --tpmstate "dir=$tmp/swtpm" --server "type=tcp,port=$port" \
        --ctrl "type=tcp,port=$((port + 1))" >"$tmp/swtpm.log" 2>&1 &
    swtpm_pid=$!
    # swtpm serves once its control channel answers GET_CAPABILITY (-c)
    if wait_for "$swtpm_pid" swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -c; then
        ctl=$((port + 1))
        set_tcti "$port"
        tool_run "swtpm accepts the permanent state of nvram-tpmd" \
            swtpm_ioctl --tcp "127.0.0.1:$ctl" --load permanent "$tmp/perm.blob"
        swtpm_ioctl --tcp "127.0.0.1:$ctl" -i >/dev/null 2>&1
        tpm2_startup -c >/dev/null 2>&1
        tpm2_nvread "$DATA_INDEX" -C o -s 32 -o "$tmp/data.out" >/dev/null 2>&1
        cmp -s "$tmp/data.bin" "$tmp/data.out" && ok "swtpm reads the NV index written on nvram-tpmd" ||
            not_ok "swtpm reads the NV index written on nvram-tpmd"
        head -c 32 /dev/urandom >"$tmp/data3.bin"
        tpm2_nvwrite "$DATA_INDEX" -C o -i "$tmp/data3.bin" >/dev/null 2>&1
        swtpm_value=$(read_counter)
        swtpm_ioctl --tcp "127.0.0.1:$ctl" --save permanent "$tmp/perm2.blob" >/dev/null 2>&1
        swtpm_ioctl --tcp "127.0.0.1:$ctl" -s >/dev/null 2>&1
    else
        not_ok "swtpm starts for the migration test"
        show "$tmp/swtpm.log"
        kill -9 "$swtpm_pid" 2>/dev/null
    fi
    wait "$swtpm_pid" 2>/dev/null
    # swtpm -> ours: a new image, powered on only by INIT after the load
    img_saved=$img
    img=$tmp/migrated.img
    if [ -s "$tmp/perm2.blob" ] && start_tpmd --flags need-init; then
        ctl=$((port + 1))
        tool_run "nvram-tpmd accepts the permanent state of swtpm" \
            swtpm_ioctl --tcp "127.0.0.1:$ctl" --load permanent "$tmp/perm2.blob"
        tool_run "swtpm_ioctl -i powers nvram-tpmd on" swtpm_ioctl --tcp "127.0.0.1:$ctl" -i
        tpm2_startup -c >/dev/null 2>&1
        tpm2_nvread "$DATA_INDEX" -C o -s 32 -o "$tmp/data.out" >/dev/null 2>&1
        value=$(read_counter)
        cmp -s "$tmp/data3.bin" "$tmp/data.out" && [ "$value" = "$swtpm_value" ] &&
            ok "nvram-tpmd reads the NV index and counter of swtpm" ||
            not_ok "nvram-tpmd reads the NV index and counter of swtpm"
        swtpm_ioctl --tcp "127.0.0.1:$ctl" -s >/dev/null 2>&1
        wait_tpmd
    else
        not_ok "migration from swtpm to a new image"
    fi
    img=$img_saved
else
    echo "ok - # SKIP state migration checks: swtpm or swtpm_ioctl not found"
fi

# ---- 8. incoming migration: staged until INIT ----------------------------------

if [ "$have_python" = yes ]; then
    img_saved=$img
    head -c 32 /dev/urandom >"$tmp/data_a.bin"
    head -c 32 /dev/urandom >"$tmp/data_b.bin"
    # tpm_with_index IMAGE DATAFILE NAME: a TPM whose DATA_INDEX holds DATAFILE
    tpm_with_index() {
        img=$1
        if start_tpmd; then
            tpm2_startup -c >/dev/null 2>&1
            tool_run "TPM $3: NV index defined" tpm2_nvdefine "$DATA_INDEX" -C o -s 32 \
                -a "ownerread|ownerwrite|authread|authwrite"
            tool_run "TPM $3: NV index written" tpm2_nvwrite "$DATA_INDEX" -C o -i "$2"
        else
            not_ok "TPM $3: daemon start"
        fi
    }
    # reads_index DATAFILE DESCRIPTION: DATA_INDEX reads DATAFILE
    reads_index() {
        tpm2_nvread "$DATA_INDEX" -C o -s 32 -o "$tmp/data.out" >/dev/null 2>"$tmp/err"
        cmp -s "$1" "$tmp/data.out" && ok "$2" || { not_ok "$2"; show "$tmp/err"; }
    }
    tpm_with_index "$tmp/b.img" "$tmp/data_b.bin" B
    py_checks getblobs "$port" "$tmp"
    stop_tpmd TERM
    tpm_with_index "$tmp/a.img" "$tmp/data_a.bin" A
    tpm2_shutdown -c >/dev/null 2>&1
    stop_tpmd TERM
    "$tool" dump "$tmp/a.img" tpm0/permall -o "$tmp/a.permall" 2>"$tmp/err" ||
        { not_ok "nvram-tool dump of A's permall"; show "$tmp/err"; }

    # (1) B's permanent state arrives, the daemon is killed before the
    # volatile state (the mix swtpm's per-blob writes can leave) ...
    if start_tpmd --flags need-init; then
        py_checks setblobs "$port" "$tmp" permanent-only
        stop_tpmd KILL 2>/dev/null
        "$tool" dump "$img" tpm0/permall -o "$tmp/after.permall" 2>/dev/null
        cmp -s "$tmp/a.permall" "$tmp/after.permall" &&
            ok "killed between two SET_STATEBLOBs: the image holds A's permanent state" ||
            not_ok "killed between two SET_STATEBLOBs: the image holds A's permanent state"
    else
        not_ok "daemon start on A for the incoming migration"
    fi
    # ... and after both blobs, before INIT.
    if start_tpmd --flags need-init; then
        py_checks setblobs "$port" "$tmp" noinit
        stop_tpmd KILL 2>/dev/null
        tool_run "nvram-tool check after kill -9 between SET_STATEBLOB and INIT" \
            "$tool" check "$img"
        "$tool" dump "$img" tpm0/permall -o "$tmp/after.permall" 2>/dev/null
        cmp -s "$tmp/a.permall" "$tmp/after.permall" &&
            ok "killed before INIT: the image still holds A's permanent state, byte for byte" ||
            not_ok "killed before INIT: the image still holds A's permanent state, byte for byte"
        "$tool" list "$img" >"$tmp/out" 2>&1
        ! grep -q 'tpm0/volatilestate' "$tmp/out" &&
            ok "killed before INIT: no volatile state of B in the image" ||
            { not_ok "killed before INIT: no volatile state of B in the image"; show "$tmp/out"; }
    else
        not_ok "daemon start on A for the incoming migration"
    fi
    if start_tpmd; then
        tpm2_startup -c >/dev/null 2>&1
        reads_index "$tmp/data_a.bin" "restarted after kill -9: TPM A serves A's NV index"
        # STOP after the blobs discards them: INIT starts A again.
        py_checks setblobs "$port" "$tmp" stop-init
        tpm2_startup -c >/dev/null 2>&1
        reads_index "$tmp/data_a.bin" "SET_STATEBLOB, STOP, INIT: TPM A, the blobs were discarded"
        grep -q 'state blobs set without INIT discarded' "$tmp/tpmd.log" &&
            ok "the discard is logged" || not_ok "the discard is logged"
        tpm2_shutdown -c >/dev/null 2>&1
        stop_tpmd TERM
    else
        not_ok "restart of A after kill -9"
    fi

    # (2) The same with INIT: TPM B, running (its volatile state), then
    # from the image after a restart.
    if start_tpmd --flags need-init; then
        py_checks setblobs "$port" "$tmp" init
        reads_index "$tmp/data_b.bin" "after INIT: B's NV index, without Startup (B's volatile state)"
        stop_tpmd KILL 2>/dev/null
    else
        not_ok "daemon start on A for the incoming migration with INIT"
    fi
    if start_tpmd; then
        tpm2_startup -c >/dev/null 2>&1
        reads_index "$tmp/data_b.bin" "restarted after kill -9: the image holds B, its NV index reads"
        stop_tpmd TERM
    else
        not_ok "restart after the incoming migration"
    fi
    img=$img_saved
else
    echo "ok - # SKIP incoming migration checks: python3 not found"
fi

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit 0
