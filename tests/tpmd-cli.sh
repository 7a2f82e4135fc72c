#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# tpmd-cli.sh — nvram-tpmd accepts swtpm 0.7.1's command line (the one
# swtpm_setup and libvirt give to "swtpm socket").
#
# What it checks, in order:
#  1. --print-capabilities: swtpm's JSON, listing exactly what nvram-tpmd
#     supports (with --tpm2 also the RSA key sizes);
#  2. options nvram-tpmd cannot honour are refused by name (--key forms it cannot map,
#     --migration-key, --migration, --locality, --runas, --seccomp, the
#     chardev interface, swtpm's default TPM 1.2, ifname=,
#     startup-deactivated, a bad backend-uri);
#  3. a --tpmstate directory with swtpm state files and no image, or with
#     both swtpm files and an image, or a file:// path holding swtpm's
#     linear file, is refused (serving and --print-states), naming
#     nvram-tool import-swtpm, and nothing is touched;
#  4. swtpm's serving line: socket --tpm2 --tpmstate dir=DIR,mode=
#     --server type=tcp,port= --ctrl type=unixio,path=,mode= --pid file=
#     --log file=,level=,prefix= --flags not-need-init,startup-clear; the
#     image DIR/nvramtdb.permall is created with the mode, --print-states lists it;
#  5. backend-uri=file://PATH and --terminate (exit 0 when the data
#     connection closes);
#  6. descriptors, as swtpm_setup passes them: --server type=tcp,fd=N
#     --ctrl type=unixio,clientfd=M --pid fd=K (python3): a TPM command on
#     the data socket, GET_INFO and SHUTDOWN on the control socket;
#  6b. swtpm's short options: -p N (--port: a data channel only, closed
#     after each response) and -f N (--fd), not nvram-tpmd's own;
#  7. swtpm_setup --tpm "nvram-tpmd socket", with libvirt's arguments,
#     manufactures a TPM with EK and platform certificates; the EK
#     certificate (NV index 0x01c00002) and the EK (0x81010001) read back
#     through tpm2-tools; --not-overwrite keeps it, --overwrite replaces it;
#     the same with nvram-tpmd as "swtpm" in PATH (a symlink, as configure
#     --enable-swtpm-alias installs it) and with file://PATH.
# One "ok"/"not ok" line per check; exit 0 pass, 1 fail, 77 skip.

tmp_name=nvram-tpmd-cli
show_tail=20
. "$(dirname "$0")/tpmlib.sh"
need_commands "install python3" python3
need_commands "install tpm2-tools" tpm2_getrandom tpm2_nvread tpm2_readpublic tpm2_startup

# td ARGS...: run nvram-tpmd to completion; $tmp/out, $tmp/err, $rc.
td() {
    $run "$tpmd" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}

# refused DESCRIPTION WORD ARGS...: exits non-zero and the message names WORD.
refused() {
    desc=$1 word=$2
    shift 2
    td "$@"
    if [ "$rc" -ne 0 ] && grep -q -e "$word" "$tmp/err"; then
        ok "refused: $desc"
    else
        not_ok "refused: $desc (exit $rc)"
        show "$tmp/err"
    fi
}

# json_check DESCRIPTION PYTHON-EXPRESSION: $tmp/out parses as JSON (d) and
# the expression holds.
json_check() {
    if python3 - "$2" "$tmp/out" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
sys.exit(0 if eval(sys.argv[1]) else 1)
PY
    then
        ok "$1"
    else
        not_ok "$1"
        show "$tmp/out"
        show "$tmp/err"
    fi
}

# ---- 1. --print-capabilities ----
base='["tpm-2.0", "tpm-send-command-header", "flags-opt-startup", "cmdarg-print-states", "nvram-backend-dir", "nvram-backend-file", "cmdarg-key-fd", "cmdarg-pwd-fd"]'
td socket --print-capabilities
[ "$rc" -eq 0 ] || not_ok "socket --print-capabilities: exit $rc"
json_check "print-capabilities: swtpm's shape, exactly the supported features" \
    "d['type'] == 'swtpm' and d['features'] == $base and isinstance(d['version'], str)"
td socket --tpm2 --print-capabilities
json_check "print-capabilities --tpm2: plus the RSA key sizes, no TPM 1.2" \
    "d['features'][:8] == $base and 'rsa-keysize-2048' in d['features'] and \
     all(f.startswith('rsa-keysize-') for f in d['features'][8:]) and \
     'tpm-1.2' not in d['features']"

# ---- 2. refusals by name ----
dir=$tmp/state
mkdir "$dir"
refused "--key with a 128-bit mode" "option --key file=/k,mode=aes-128-cbc: only mode=aes-256-cbc" \
    socket --tpm2 --tpmstate dir="$dir" --key file=/k,mode=aes-128-cbc
refused "--key with an unknown part" "option --key pwdfile=/k,bogus=1: unknown part" socket --tpm2 \
    --tpmstate dir="$dir" --key pwdfile=/k,bogus=1
refused "--migration-key" "option --migration-key: encryption" socket --tpm2 \
    --tpmstate dir="$dir" --migration-key file=/k
refused "--migration" "option --migration:" socket --tpm2 --tpmstate dir="$dir" \
    --migration incoming
refused "--locality" "option --locality:" socket --tpm2 --tpmstate dir="$dir" \
    --locality allow-set-locality
refused "--runas" "option --runas:" socket --tpm2 --tpmstate dir="$dir" --runas tss
refused "-r" "option -r:" socket --tpm2 --tpmstate dir="$dir" -r tss
refused "--seccomp" "option --seccomp:" socket --tpm2 --tpmstate dir="$dir" \
    --seccomp action=none
refused "chardev interface" "'chardev' interface" chardev --tpm2 --tpmstate dir="$dir"
refused "TPM 1.2 (socket without --tpm2)" "TPM 1.2" socket --tpmstate dir="$dir" \
    --ctrl type=unixio,path="$tmp/c.sock"
refused "startup-deactivated (TPM 1.2)" "startup-deactivated" socket --tpm2 \
    --tpmstate dir="$dir" --flags startup-deactivated --ctrl type=unixio,path="$tmp/c.sock"
refused "startup-clear without not-need-init after 'socket'" "needs not-need-init" \
    socket --tpm2 --tpmstate dir="$dir" --flags startup-clear --ctrl type=unixio,path="$tmp/c.sock"
refused "ifname=" "ifname" socket --tpm2 --tpmstate dir="$dir" --server type=tcp,port=1,ifname=lo
refused "backend-uri=nvram://" "backend-uri 'nvram://x'" socket --tpm2 \
    --tpmstate backend-uri=nvram://x
refused "--tpmstate unknown key" "'lock' is not supported" socket --tpm2 \
    --tpmstate dir="$dir",lock
refused "--tpmstate and --image" "exclude" --image "$tmp/x.img" --tpmstate dir="$dir"
refused "--tpmstate dir missing" "no-such" socket --tpm2 --tpmstate dir="$tmp/no-such" \
    --ctrl type=unixio,path="$tmp/c.sock"
[ ! -e "$dir/nvramtdb.permall" ] && ok "no refusal created an image" ||
    not_ok "no refusal created an image"

# ---- 3. a swtpm state directory without an image ----
swdir=$tmp/swtpm-state
mkdir "$swdir"
echo x >"$swdir/tpm2-00.permall"
refused "swtpm state files, no image" "nvram-tool import-swtpm $swdir/nvramtdb.permall $swdir" \
    socket --tpm2 --tpmstate dir="$swdir" --ctrl type=unixio,path="$tmp/c.sock"
refused "--print-states on swtpm state files" "nvram-tool import-swtpm" \
    socket --print-states --tpmstate backend-uri=dir://"$swdir" --tpm2
[ ! -e "$swdir/nvramtdb.permall" ] && [ "$(cat "$swdir/tpm2-00.permall")" = x ] &&
    ok "the swtpm state is untouched" || not_ok "the swtpm state is untouched"
# Both an image and swtpm files: which TPM is current is ambiguous.
echo y >"$swdir/nvramtdb.permall"
echo v >"$swdir/tpm2-00.volatilestate"
refused "image and swtpm state files both present" "holds both the image nvramtdb.permall and swtpm state (tpm2-00.permall)" \
    socket --tpm2 --tpmstate dir="$swdir" --ctrl type=unixio,path="$tmp/c.sock"
grep -q "move the swtpm files (tpm2-00.\*) out of the directory" "$tmp/err" &&
    ok "the message says what to do" || { not_ok "the message says what to do"; show "$tmp/err"; }
refused "--print-states on an image and swtpm state files" "holds both" \
    socket --print-states --tpmstate backend-uri=dir://"$swdir" --tpm2
[ "$(cat "$swdir/nvramtdb.permall")" = y ] && [ "$(cat "$swdir/tpm2-00.permall")" = x ] &&
    [ "$(cat "$swdir/tpm2-00.volatilestate")" = v ] && [ ! -e "$tmp/c.sock" ] &&
    ok "both states are untouched, nothing listens" || not_ok "both states are untouched"
# swtpm's linear file (its magic "swtpmlin", little-endian) behind file://
printf 'nilmptws\001\000' >"$tmp/swtpm.lin"
head -c 5000 /dev/zero >>"$tmp/swtpm.lin"
cksum <"$tmp/swtpm.lin" >"$tmp/lin.sum"
refused "swtpm's linear file behind file://" "nvram-tool import-swtpm IMAGE file://$tmp/swtpm.lin" \
    socket --tpm2 --tpmstate backend-uri=file://"$tmp/swtpm.lin" --ctrl type=unixio,path="$tmp/c.sock"
cksum <"$tmp/swtpm.lin" | cmp -s - "$tmp/lin.sum" && ok "the linear file is untouched" ||
    not_ok "the linear file is untouched"

# ---- 4. swtpm's serving command line ----
td socket --print-states --tpmstate backend-uri=dir://"$dir" --tpm2
json_check "print-states, no image yet: no states" "d == {'type': 'swtpm', 'states': []}"

ctrl=$tmp/ctrl.sock
start_cli() {
    $run "$tpmd" socket --tpm2 --tpmstate dir="$dir",mode=0640 \
        --server type=tcp,port="$port" \
        --ctrl type=unixio,path="$ctrl",mode=0600,uid="$(id -u)",gid="$(id -g)" \
        --ctrl type=tcp,port=$((port + 1)) --pid file="$tmp/pid" --log file="$tmp/tpmd.log",level=2,prefix=CLI: \
        --flags not-need-init,startup-clear 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
    set_tcti "$port"
}
if serve_on_free_port "$tmp/tpmd.err" tpmd_pid "tpm2_getrandom 8" start_cli; then
    ok "swtpm's command line serves (TPM2_Startup(CLEAR) done by --flags)"
else
    not_ok "swtpm's command line serves"
    show "$tmp/tpmd.err"
fi
[ "$(stat -c %a "$dir/nvramtdb.permall" 2>/dev/null)" = 640 ] &&
    ok "image $dir/nvramtdb.permall created with mode=0640" ||
    not_ok "image created with mode=0640 ($(stat -c %a "$dir/nvramtdb.permall" 2>&1))"
[ "$(stat -c %a "$ctrl" 2>/dev/null)" = 600 ] && ok "control socket mode=0600" ||
    not_ok "control socket mode=0600"
[ "$(cat "$tmp/pid" 2>/dev/null)" = "$tpmd_pid" ] && ok "--pid file= holds the pid" ||
    not_ok "--pid file= holds the pid"
grep -q "CLI:serving image $dir/nvramtdb.permall" "$tmp/tpmd.log" && ok "--log file=,prefix=" ||
    { not_ok "--log file=,prefix="; show "$tmp/tpmd.log"; }
td socket --print-states --tpmstate dir="$dir" --tpm2
json_check "print-states while serving: permall" \
    "d['type'] == 'swtpm' and [s['name'] for s in d['states']] == ['permall'] and d['states'][0]['size'] > 0"
kill -TERM "$tpmd_pid"
wait "$tpmd_pid"
trc=$?
tpmd_pid=
[ "$trc" -eq 0 ] && [ ! -e "$tmp/pid" ] && ok "SIGTERM: exit 0, pid file removed" ||
    not_ok "SIGTERM: exit 0, pid file removed (exit $trc)"

# libvirt 9.0's line, and its stop (swtpm_ioctl -s)
if command -v swtpm_ioctl >/dev/null 2>&1; then
    lvdir=$tmp/libvirt
    mkdir "$lvdir"
    $run "$tpmd" socket --ctrl type=unixio,path="$tmp/lv.sock",mode=0600 \
        --tpmstate dir="$lvdir",mode=0600 --log file="$tmp/lv.log" --terminate --tpm2 &
    tpmd_pid=$!
    # As swtpm without --flags not-need-init, the TPM waits for INIT.
    if wait_for "$tpmd_pid" swtpm_ioctl --unix "$tmp/lv.sock" -g &&
        grep -q "waiting for INIT" "$tmp/lv.log" &&
        swtpm_ioctl --unix "$tmp/lv.sock" -i >/dev/null 2>&1 &&
        grep -q "TPM powered on (INIT" "$tmp/lv.log" &&
        swtpm_ioctl --unix "$tmp/lv.sock" -s >/dev/null 2>&1; then
        wait "$tpmd_pid"
        trc=$?
        [ "$trc" -eq 0 ] && [ "$(stat -c %a "$lvdir/nvramtdb.permall")" = 600 ] &&
            ok "libvirt's command line: waits for INIT, swtpm_ioctl -i, -s stops it (exit 0)" ||
            not_ok "libvirt's command line: exit $trc"
    else
        not_ok "libvirt's command line serves"
        show "$tmp/lv.log"
        kill_daemons
    fi
    tpmd_pid=
fi

# ---- 5. backend-uri=file://, --terminate ----
# one data connection: TPM2_GetRandom(8), then close
getrandom_once() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex("80010000000c0000017b0008"))
r = s.recv(4096)
assert len(r) == 20 and r[6:10] == b"\0\0\0\0", r.hex()
s.close()
PY
}
getrandom_on_port() { getrandom_once "$port"; }
start_terminate() {
    $run "$tpmd" socket --tpm2 --tpmstate backend-uri=file://"$tmp/linear.img" \
        --server type=tcp,port="$port" --ctrl type=tcp,port=$((port + 1)) --terminate \
        --flags not-need-init,startup-clear 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
    set_tcti "$port"
}
if serve_on_free_port "$tmp/tpmd.err" tpmd_pid getrandom_on_port start_terminate; then
    ok "backend-uri=file://PATH serves"
else
    not_ok "backend-uri=file://PATH serves"
    show "$tmp/tpmd.err"
fi
# That connection has closed: --terminate ends the daemon.
tries=0
while kill -0 "$tpmd_pid" 2>/dev/null && [ "$tries" -lt 100 ]; do
    sleep 0.05
    tries=$((tries + 1))
done
if kill -0 "$tpmd_pid" 2>/dev/null; then
    not_ok "--terminate: exits when the data connection closes"
else
    wait "$tpmd_pid"
    trc=$?
    [ "$trc" -eq 0 ] && ok "--terminate: exit 0 when the data connection closes" ||
        not_ok "--terminate: exit 0 (got $trc)"
fi
tpmd_pid=
td socket --print-states --tpmstate backend-uri=file://"$tmp/linear.img" --tpm2
json_check "print-states on a file:// image" "[s['name'] for s in d['states']] == ['permall']"

# ---- 6. descriptors, as swtpm_setup passes them ----
if python3 - "$tpmd" "$tmp/fd" >"$tmp/py.out" 2>&1 <<'PY'
import json, os, socket, struct, subprocess, sys
tpmd, d = sys.argv[1], sys.argv[2]
os.mkdir(d)
data, data_peer = socket.socketpair()
ctrl, ctrl_peer = socket.socketpair()
pr, pw = os.pipe()
fds = (data_peer.fileno(), ctrl_peer.fileno(), pw)
p = subprocess.Popen([tpmd, "socket", "--flags", "not-need-init,startup-clear",
                      "--tpmstate", "backend-uri=dir://" + d, "--pid", "fd=%d" % pw, "--tpm2",
                      "--server", "type=tcp,fd=%d" % fds[0],
                      "--ctrl", "type=unixio,clientfd=%d" % fds[1]], pass_fds=fds)
data_peer.close(); ctrl_peer.close(); os.close(pw)
pid = os.read(pr, 64).decode().strip()
assert pid == str(p.pid), ("pid fd", pid, p.pid)
# TPM2_GetRandom(8), raw
data.sendall(bytes.fromhex("80010000000c0000017b0008"))
r = data.recv(4096)
assert len(r) == 20 and r[6:10] == b"\0\0\0\0", r.hex()
# CMD_GET_INFO (18): specification and attributes, as swtpm_setup asks
ctrl.sendall(struct.pack(">IQII", 18, 3, 0, 0))
r = b""
while len(r) < 12:
    r += ctrl.recv(8192)
res, total, length = struct.unpack(">III", r[:12])
while len(r) < 12 + length:
    r += ctrl.recv(8192)
assert res == 0 and total == length, (res, total, length)
info = json.loads(r[12:12 + length - 1])
assert "TPMSpecification" in info and "TPMAttributes" in info, info
# CMD_SHUTDOWN (3)
ctrl.sendall(struct.pack(">I", 3))
assert struct.unpack(">I", ctrl.recv(4))[0] == 0
assert p.wait(10) == 0
print("ok")
PY
then
    ok "--server type=tcp,fd= --ctrl clientfd= --pid fd=: command, GET_INFO, SHUTDOWN"
else
    not_ok "--server type=tcp,fd= --ctrl clientfd= --pid fd="
    show "$tmp/py.out"
fi

# ---- 6b. swtpm's short options: -p/--port N (a data channel only, closed
# after each response) and -f/--fd N (a connected data socket) ----
start_dash_p() {
    $run "$tpmd" socket --tpm2 --tpmstate dir="$tmp/fd" -p "$port" \
        --flags not-need-init,startup-clear 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
}
if serve_on_free_port "$tmp/tpmd.err" tpmd_pid getrandom_on_port start_dash_p &&
    python3 - "$port" >"$tmp/py.out" 2>&1 <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(bytes.fromhex("80010000000c0000017b0008"))
r = s.recv(4096)
assert len(r) == 20 and r[6:10] == b"\0\0\0\0", r.hex()
# swtpm's -p is "--server type=tcp,disconnect": the daemon closes after the response
s.settimeout(10)
assert s.recv(4096) == b"", "still open"
# and it opens no control channel on port+1
try:
    socket.create_connection(("127.0.0.1", port + 1), timeout=2).close()
    raise SystemExit("a control channel listens on port+1")
except ConnectionRefusedError:
    pass
PY
then
    ok "-p N: swtpm's --port (data channel on N, closed after each response, no control channel)"
else
    not_ok "-p N: swtpm's --port"
    show "$tmp/py.out"
    show "$tmp/tpmd.err"
fi
kill -TERM "$tpmd_pid" 2>/dev/null
wait "$tpmd_pid"
tpmd_pid=
if python3 - "$tpmd" "$tmp/fd" >"$tmp/py.out" 2>&1 <<'PY'
import os, socket, subprocess, sys
tpmd, d = sys.argv[1], sys.argv[2]
data, peer = socket.socketpair()
p = subprocess.Popen([tpmd, "socket", "--tpm2", "--tpmstate", "dir=" + d, "-f", str(peer.fileno()),
                      "--flags", "not-need-init,startup-clear"], pass_fds=(peer.fileno(),))
peer.close()
data.sendall(bytes.fromhex("80010000000c0000017b0008"))
r = data.recv(4096)
assert len(r) == 20 and r[6:10] == b"\0\0\0\0", r.hex()
data.close()
# as swtpm's -f: the daemon ends when the data socket closes (-t implied)
assert p.wait(10) == 0
PY
then
    ok "-f N: swtpm's --fd (serves the socket, exits 0 when it closes)"
else
    not_ok "-f N: swtpm's --fd"
    show "$tmp/py.out"
fi
refused "-p with a bad port" "--port: bad port 'x'" socket --tpm2 --tpmstate dir="$tmp/fd" -p x
refused "-f is swtpm's --fd, not --foreground" "Missing argument for -f" --image "$tmp/x.img" -f

# ---- 7. swtpm_setup manufactures a TPM on nvram-tpmd ----
if ! command -v swtpm_setup >/dev/null 2>&1 || ! command -v swtpm_localca >/dev/null 2>&1; then
    echo "# swtpm_setup/swtpm_localca not installed (swtpm-tools): section 7 skipped"
elif [ ! -r /etc/swtpm_setup.conf ] || [ ! -r /etc/swtpm-localca.conf ]; then
    echo "# swtpm-tools' configuration (/etc/swtpm_setup.conf) missing: section 7 skipped"
else
    mdir=$tmp/manufactured
    mkdir "$mdir"
    # libvirt 9.0's swtpm_setup line at a domain's first start
    if swtpm_setup --tpm2 --tpm-state "$mdir" --tpm "$tpmd socket" \
        --vmid "vm1:0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9" --logfile "$tmp/setup.log" \
        --createek --create-ek-cert --create-platform-cert --lock-nvram --not-overwrite \
        >"$tmp/setup.out" 2>&1 &&
        grep -q "Successfully authored TPM state" "$tmp/setup.log"; then
        ok "swtpm_setup --tpm 'nvram-tpmd socket': TPM manufactured with EK and platform certs"
    else
        not_ok "swtpm_setup --tpm 'nvram-tpmd socket'"
        show "$tmp/setup.out"
        show "$tmp/setup.log"
    fi
    [ -e "$mdir/nvramtdb.permall" ] && [ -z "$(ls "$mdir" | grep -v '^nvramtdb.permall$')" ] &&
        ok "the state is $mdir/nvramtdb.permall alone" || not_ok "the state is nvramtdb.permall alone: $(ls "$mdir")"
    # --not-overwrite: a second run keeps the existing TPM.
    swtpm_setup --tpm2 --tpm-state "$mdir" --tpm "$tpmd socket" --createek \
        --not-overwrite --logfile "$tmp/setup2.log" >/dev/null 2>&1 &&
        grep -q "Not overwriting existing state" "$tmp/setup2.log" &&
        ok "swtpm_setup --not-overwrite sees the state through --print-states" ||
        { not_ok "swtpm_setup --not-overwrite"; show "$tmp/setup2.log"; }

    # --overwrite: swtpm_setup deletes the state (the image, by its name) and
    # manufactures a new TPM.
    if swtpm_setup --tpm2 --tpm-state "$mdir" --tpm "$tpmd socket" --createek \
        --create-ek-cert --create-platform-cert --lock-nvram --overwrite \
        --logfile "$tmp/setup3.log" >/dev/null 2>&1 &&
        grep -q "Successfully authored TPM state" "$tmp/setup3.log"; then
        ok "swtpm_setup --overwrite replaces the image with a new TPM"
    else
        not_ok "swtpm_setup --overwrite"
        show "$tmp/setup3.log"
    fi

    # Installed as swtpm (configure --enable-swtpm-alias): a symlink named
    # swtpm first in PATH, found by swtpm_setup without --tpm.
    mkdir "$tmp/alias" "$tmp/via-path"
    ln -s "$(cd "$(dirname "$tpmd")" && pwd)/$(basename "$tpmd")" "$tmp/alias/swtpm"
    if PATH=$tmp/alias:$PATH swtpm_setup --tpm2 --tpm-state "$tmp/via-path" --createek \
        --create-ek-cert --logfile "$tmp/setup-path.log" >/dev/null 2>&1 &&
        grep -q "Successfully authored TPM state" "$tmp/setup-path.log" &&
        [ "$(ls "$tmp/via-path")" = nvramtdb.permall ]; then
        ok "swtpm_setup finds nvram-tpmd as swtpm in PATH (a symlink): the state is nvramtdb.permall"
    else
        not_ok "swtpm_setup with nvram-tpmd as swtpm in PATH"
        show "$tmp/setup-path.log"
    fi

    # The same with swtpm_setup's linear-file backend (file://PATH).
    if swtpm_setup --tpm2 --tpm-state file://"$tmp/setup-file.img" --tpm "$tpmd socket" \
        --createek --create-ek-cert --lock-nvram --logfile "$tmp/setup4.log" >/dev/null 2>&1 &&
        grep -q "Successfully authored TPM state" "$tmp/setup4.log" &&
        $tool check "$tmp/setup-file.img" >/dev/null 2>&1; then
        ok "swtpm_setup --tpm-state file://PATH: the image is PATH"
    else
        not_ok "swtpm_setup --tpm-state file://PATH"
        show "$tmp/setup4.log"
    fi

    start_manufactured() {
        $run "$tpmd" socket --tpm2 --tpmstate dir="$mdir" --server type=tcp,port="$port" \
            --ctrl type=tcp,port=$((port + 1)) --flags not-need-init,startup-clear \
            2>"$tmp/tpmd.err" &
        tpmd_pid=$!
        set_tcti "$port"
    }
    serve_on_free_port "$tmp/tpmd.err" tpmd_pid "tpm2_getrandom 4" start_manufactured ||
        { not_ok "nvram-tpmd on the manufactured state"; show "$tmp/tpmd.err"; }
    if tpm2_nvread 0x01c00002 -C o -o "$tmp/ekcert.der" >/dev/null 2>"$tmp/err" &&
        python3 - "$tmp/ekcert.der" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
# a DER certificate: SEQUENCE with a two-byte length, covering the whole index
assert b[0] == 0x30 and b[1] == 0x82, b[:4].hex()
assert 4 + (b[2] << 8 | b[3]) <= len(b) <= 4 + (b[2] << 8 | b[3]) + 1
PY
    then
        ok "EK certificate NV index 0x01c00002 reads back (a DER certificate)"
    else
        not_ok "EK certificate NV index 0x01c00002 reads back"
        show "$tmp/err"
    fi
    if tpm2_readpublic -c 0x81010001 >"$tmp/out" 2>"$tmp/err" && grep -q "rsa" "$tmp/out"; then
        ok "EK 0x81010001 reads back (RSA public key)"
    else
        not_ok "EK 0x81010001 reads back"
        show "$tmp/err"
    fi
    if command -v openssl >/dev/null 2>&1; then
        openssl x509 -inform der -in "$tmp/ekcert.der" -noout -text >"$tmp/x509" 2>&1 &&
            grep -q "swtpm-localca" "$tmp/x509" && ok "the EK certificate is swtpm-localca's" ||
            { not_ok "the EK certificate is swtpm-localca's"; show "$tmp/x509"; }
    fi
    kill -TERM "$tpmd_pid"
    wait "$tpmd_pid"
    tpmd_pid=
    $tool check "$mdir/nvramtdb.permall" >"$tmp/out" 2>&1 && ok "nvram-tool check on the manufactured image" ||
        { not_ok "nvram-tool check on the manufactured image"; show "$tmp/out"; }
fi

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit 0
