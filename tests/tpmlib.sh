# SPDX-License-Identifier: LGPL-3.0-or-later
# tpmlib.sh — shared by the shell tests that run TPM daemons, nvram-tpmd
# and swtpm, on a TCP port pair (sourced, not run).  Sources toollib.sh:
# set its variables first.
# Provides, besides toollib.sh: $tpmd; need_commands HINT CMD...;
# $tpmd_pid and $swtpm_pid, killed at exit by kill_daemons (the default
# at_exit); $port (data channel; control on $port+1) with next_port;
# wait_for PID CMD...; set_tcti PORT.  Exits 77 when nvram-tpmd is missing.

. "$(dirname "$0")/toollib.sh"

tpmd=${NVRAM_TPMD:-${top_builddir:-.}/tools/nvram-tpmd}
if [ ! -x "$tpmd" ]; then
    echo "SKIP: nvram-tpmd not found at $tpmd (it needs libtpms-dev; set NVRAM_TPMD)"
    exit 77
fi

# need_commands HINT CMD...: skip the test (exit 77) unless every CMD is installed.
need_commands() {
    hint=$1
    shift
    for t in "$@"; do
        if ! command -v "$t" >/dev/null 2>&1; then
            echo "SKIP: $t not found ($hint)"
            exit 77
        fi
    done
}

tpmd_pid=
swtpm_pid=
kill_daemons() {
    [ -n "$tpmd_pid" ] && kill -9 "$tpmd_pid" 2>/dev/null
    [ -n "$swtpm_pid" ] && kill -9 "$swtpm_pid" 2>/dev/null
    return 0
}
at_exit() { kill_daemons; }

# Ports: a pair (N, N+1) starting from our pid in 20000..39999, moved on
# for every daemon started (and whenever one reports a port in use).
# Pairs something already listens on are skipped: tests of one "make -j
# check" start at nearby pids, and a client talking to another test's
# daemon fails in confusing ways.
port=$((20000 + ($$ * 2) % 19990))
port_pair_free() {
    command -v python3 >/dev/null 2>&1 || return 0
    python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
for p in (port, port + 1):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}
next_port() {
    port_tries=0
    while :; do
        port=$((port + 2))
        [ "$port" -gt 39990 ] && port=20000
        port_tries=$((port_tries + 1))
        if port_pair_free "$port" || [ "$port_tries" -ge 50 ]; then
            return 0
        fi
    done
}

# port_taken FILE: whether a daemon's output FILE says its port was in
# use.  next_port checks that a pair is free, but another test of a
# parallel "make check" may bind it before our daemon does; the caller
# then starts the daemon again on the next pair.
port_taken() {
    grep -qiE 'cannot listen|address already in use' "$1" 2>/dev/null
}

# serve_on_free_port ERRFILE PIDVAR READY START [ARGS...]: next_port,
# then START ARGS... (a function that starts a daemon on $port in the
# background and sets the variable named PIDVAR), then wait_for READY (a
# command line of words; a function when it needs $port or a quoted path);
# when the daemon died because another test took its port meanwhile
# (port_taken ERRFILE), again on the next pair.  0 once READY succeeds; 1
# otherwise, the daemon killed and PIDVAR emptied.
serve_on_free_port() {
    spf_err=$1
    spf_pidvar=$2
    spf_ready=$3
    spf_start=$4
    shift 4
    for _ in 1 2 3 4 5 6 7 8; do
        next_port
        "$spf_start" "$@"
        eval "spf_pid=\$$spf_pidvar"
        # shellcheck disable=SC2086 # READY is split into its words
        wait_for "$spf_pid" $spf_ready && return 0
        kill -9 "$spf_pid" 2>/dev/null
        wait "$spf_pid" 2>/dev/null
        eval "$spf_pidvar="
        port_taken "$spf_err" || return 1
    done
    return 1
}

# wait_for PID CMD...: run CMD (output discarded) every 50 ms until it
# succeeds, the sign that the daemon PID serves; 1 if PID exits first or
# CMD still fails after 10 s.
wait_for() {
    wait_pid=$1
    shift
    wait_tries=0
    until "$@" >/dev/null 2>&1; do
        wait_tries=$((wait_tries + 1))
        if [ "$wait_tries" -ge 200 ] || ! kill -0 "$wait_pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 0
}

# set_tcti PORT: tpm2-tools talk to the data channel on 127.0.0.1:PORT.
set_tcti() {
    TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$1"
    export TPM2TOOLS_TCTI
}
