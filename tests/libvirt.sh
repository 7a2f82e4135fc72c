#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# libvirt.sh — libvirt 9.0 starts nvram-tpmd itself, as its "swtpm".
#
# As root, without systemd or KVM (a container is fine): the test starts
# its own virtlogd (unless one runs already; it is then used, not stopped)
# and libvirtd with a PATH whose first directory holds "swtpm", a symlink
# to nvram-tpmd (what configure --enable-swtpm-alias installs), and sets
# swtpm_user/swtpm_group to root in /etc/libvirt/qemu.conf (swtpm-localca's
# files are root's).  For q35 with tpm-crb, then pc with tpm-tis, a
# transient TCG domain (128 MiB, no disk, <backend type='emulator'
# version='2.0'/>) goes through one cycle:
#  - virsh create: libvirt runs swtpm_setup (which finds swtpm in PATH) to
#    manufacture the TPM with EK and platform certificates, then "swtpm
#    socket ..."; the process serving is nvram-tpmd (/proc/PID/exe), its
#    state is the image DIR/nvramtdb.permall in
#    /var/lib/libvirt/swtpm/UUID/tpm2 (no swtpm files), query-tpm shows
#    the model;
#  - virsh save: the daemon exits (libvirt removes a transient domain's
#    TPM directory: the TPM state travels in the save file);
#  - virsh restore: a new nvram-tpmd gets the state by SET_STATEBLOB
#    (libvirt runs no swtpm_setup then, so without the blobs the TPM
#    would be an empty one);
#  - virsh destroy: the daemon exits cleanly ("image ... closed" in its
#    log).
# Both images (kept through hard links, since libvirt deletes the
# directory) pass nvram-tool check, and the same TPM came back: served
# offline, each gives the same EK certificate (NV index 0x01c00002), the
# same EK public keys (0x81010001, 0x81010016) and the same NV index
# list.  That path needs no guest: SeaBIOS under libvirt sends no TPM
# command (with swtpm too), so PCRs would only be at their reset values.
#
# Figures: the time of each step, and of the same cycle with the real
# swtpm (for comparison, not asserted).  NVT_LIBVIRT_COMPARE=none|one|all
# chooses the swtpm cycles: none, q35 only (default), or both machines.
#
# The test stops only the daemons it started (by pid), destroys its
# domains, removes their swtpm directories and logs, and restores
# qemu.conf (also after an interrupted run: it keeps the original as
# qemu.conf.nvramtdb-test-saved while it runs).  Skips (77) when not root,
# when libvirt, QEMU, swtpm-tools or tpm2-tools are not installed, or when
# a libvirtd (or virtqemud) already runs: the test needs its own, started
# with its PATH.  One "ok"/"not ok" line per check; exit 0 pass, 1 fail.

tmp_name=nvram-libvirt
show_tail=30
. "$(dirname "$0")/tpmlib.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: not root (the test runs the system libvirtd: /etc/libvirt, /run/libvirt)"
    exit 77
fi
need_commands "install libvirt-daemon-system and libvirt-clients" libvirtd virtlogd virsh
need_commands "install qemu-system-x86 and seabios" qemu-system-x86_64
need_commands "install swtpm-tools (libvirt runs swtpm_setup and swtpm_ioctl)" \
    swtpm_setup swtpm_ioctl swtpm_localca
need_commands "install tpm2-tools" tpm2_startup tpm2_nvread tpm2_readpublic tpm2_getcap

# proc_running NAME: print the pid of a live (not zombie) process whose
# command name is NAME; 1 if there is none.  /proc, not pgrep: procps may
# be missing in a container.
proc_running() {
    for c in /proc/[0-9]*/comm; do
        [ "$(cat "$c" 2>/dev/null)" = "$1" ] || continue
        p=${c#/proc/}
        p=${p%/comm}
        if alive "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
# alive PID: the process exists and is not a zombie.
alive() {
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}
# gone PID: wait up to 15 s for PID to end; 1 if it still runs.
gone() {
    n=0
    while alive "$1"; do
        n=$((n + 1))
        [ "$n" -ge 300 ] && return 1
        sleep 0.05
    done
    return 0
}
# stop_pid PID: SIGTERM, then SIGKILL after 15 s.
stop_pid() {
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null
    gone "$1" || { kill -KILL "$1" 2>/dev/null; gone "$1"; }
}

# One run at a time (two would share libvirtd and qemu.conf's copy).
if command -v flock >/dev/null 2>&1; then
    exec 9>>/run/nvramtdb-libvirt-test.lock
    if ! flock -n 9; then
        echo "SKIP: another tests/libvirt.sh runs (it holds /run/nvramtdb-libvirt-test.lock)"
        exit 77
    fi
fi
for d in libvirtd virtqemud; do
    if p=$(proc_running "$d"); then
        echo "SKIP: $d is already running (pid $p); this test starts its own libvirtd with a PATH" \
             "in which swtpm is nvram-tpmd and changes qemu.conf: stop it first"
        exit 77
    fi
done

virsh="virsh -q -c qemu:///system"
conf=/etc/libvirt/qemu.conf
conf_saved=$conf.nvramtdb-test-saved
keep=/var/lib/libvirt/swtpm/.nvramtdb-test.$$
lv_pid=
vl_pid=
domains=
uuids=
conf_changed=false
made_swtpm_dir=false

cleanup() {
    kill_daemons
    if [ -n "$lv_pid" ]; then
        for n in $domains; do
            $virsh destroy "$n" >/dev/null 2>&1
        done
        stop_pid "$lv_pid"
    fi
    stop_pid "$vl_pid"
    if $conf_changed; then
        cat "$conf_saved" >"$conf" && rm -f "$conf_saved"
    fi
    for u in $uuids; do
        rm -rf "/var/lib/libvirt/swtpm/$u"
    done
    for n in $domains; do
        rm -f "/var/log/swtpm/libvirt/qemu/$n-swtpm.log" "/var/log/libvirt/qemu/$n.log"
    done
    rm -rf "$keep"
    $made_swtpm_dir && rmdir /var/lib/libvirt/swtpm 2>/dev/null
    return 0
}
at_exit() { cleanup; }

# ---- configuration: qemu.conf, the alias directory ----
if [ -e "$conf_saved" ]; then
    echo "# $conf_saved exists (an interrupted run): restoring $conf from it"
    cat "$conf_saved" >"$conf" && rm -f "$conf_saved" || exit 99
fi
cp -p "$conf" "$conf_saved" || exit 99
conf_changed=true
# swtpm-localca's CA files are root's: run the TPM daemon as root.
sed -i 's/^[[:space:]]*\(swtpm_user\|swtpm_group\)[[:space:]]*=/#&/' "$conf"
printf '\n# nvramtdb tests/libvirt.sh (removed at its end)\nswtpm_user = "root"\nswtpm_group = "root"\n' >>"$conf"

aliasdir=$tmp/bin
mkdir "$aliasdir" || exit 99
# libvirt makes /var/lib/libvirt/swtpm (0711) at the first TPM domain; the
# hard links need it now
if [ ! -d /var/lib/libvirt/swtpm ]; then
    mkdir -p -m 0711 /var/lib/libvirt/swtpm || exit 99
    made_swtpm_dir=true
fi
mkdir "$keep" || exit 99
tpmd_abs=$(cd "$(dirname "$tpmd")" && pwd)/$(basename "$tpmd")
# In the build tree $tpmd is libtool's wrapper script, which costs a shell
# at each run (swtpm_setup runs swtpm four times): the alias points to the
# real program instead, and libvirtd gets libtool's library path in its
# environment, which it passes on to swtpm_setup and swtpm.
lib_path=
if [ -x "${top_builddir:-.}/libtool" ]; then
    out=$("${top_builddir:-.}/libtool" --mode=execute sh -c \
          'printf "%s\n%s\n" "$1" "${LD_LIBRARY_PATH:-}"' sh "$tpmd_abs") &&
        tpmd_abs=$(echo "$out" | sed -n 1p) && lib_path=$(echo "$out" | sed -n 2p)
fi
real_swtpm=$(command -v swtpm 2>/dev/null || true)
case "$real_swtpm" in "$aliasdir"/*) real_swtpm= ;; esac
# use_swtpm nvram-tpmd|swtpm: what "swtpm" in libvirtd's PATH is.
use_swtpm() {
    if [ "$1" = swtpm ]; then
        ln -sfn "$real_swtpm" "$aliasdir/swtpm"
    else
        ln -sfn "$tpmd_abs" "$aliasdir/swtpm"
    fi
}
use_swtpm nvram-tpmd
if PATH=$aliasdir:$PATH LD_LIBRARY_PATH=${lib_path:-${LD_LIBRARY_PATH:-}} swtpm socket --tpm2 --print-capabilities 2>&1 |
    grep -q '"type": "swtpm"'; then
    ok "swtpm in $aliasdir is nvram-tpmd (--print-capabilities)"
else
    not_ok "swtpm in $aliasdir is nvram-tpmd"
fi

# ---- daemons ----
if vl_existing=$(proc_running virtlogd); then
    echo "# virtlogd runs already (pid $vl_existing): used, not stopped"
else
    virtlogd -d -p "$tmp/virtlogd.pid" 9>&- || { echo "virtlogd -d failed"; exit 99; }
    vl_pid=$(cat "$tmp/virtlogd.pid")
fi
t0=$(date +%s.%N)
# libvirtd -d returns once the daemon is initialised; it passes its PATH to
# swtpm_setup and swtpm.  Warnings go to a log shown on failure.
PATH=$aliasdir:$PATH LD_LIBRARY_PATH=${lib_path:-${LD_LIBRARY_PATH:-}} \
    LIBVIRT_LOG_OUTPUTS="3:file:$tmp/libvirtd.log" libvirtd -d -p "$tmp/libvirtd.pid" 9>&- || { echo "libvirtd -d failed"; show "$tmp/libvirtd.log"; exit 99; }
lv_pid=$(cat "$tmp/libvirtd.pid")
n=0
until $virsh version >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge 300 ] || ! alive "$lv_pid"; then
        not_ok "libvirtd answers virsh"
        show "$tmp/libvirtd.log"
        exit 1
    fi
    sleep 0.05
done
ok "libvirtd (pid $lv_pid) answers"

# secs T0 T1: T1 - T0 in seconds, one decimal
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# tpm_identity IMAGE PREFIX: serve IMAGE offline and write the EK
# certificate, the EK public keys and the NV index list to PREFIX.*
tpm_identity() {
    next_port
    $run "$tpmd" --image "$1" --tcp-port "$port" --flags startup-clear 2>"$2.err" &
    tpmd_pid=$!
    set_tcti "$port"
    id_ok=false
    if wait_for "$tpmd_pid" tpm2_getrandom 4 &&
        tpm2_nvread 0x01c00002 -C o -o "$2.ekcert" >/dev/null 2>>"$2.err" &&
        tpm2_readpublic -c 0x81010001 >"$2.ek-rsa" 2>>"$2.err" &&
        tpm2_readpublic -c 0x81010016 >"$2.ek-ecc" 2>>"$2.err" &&
        tpm2_getcap handles-nv-index >"$2.nv" 2>>"$2.err"; then
        id_ok=true
    fi
    kill -TERM "$tpmd_pid" 2>/dev/null
    wait "$tpmd_pid"
    tpmd_pid=
    $id_ok
}

# daemon_pid NAME: the pid libvirt recorded for the domain's TPM daemon
# (libvirt cuts the name to 20 characters there: cycle's names are shorter)
daemon_pid() {
    cat /run/libvirt/qemu/swtpm/*-"$1"-swtpm.pid 2>/dev/null
}

# cycle nvram-tpmd|swtpm MACHINE MODEL: create, save, restore, destroy
cycle() {
    impl=$1 machine=$2 model=$3
    name=nvt$$-$machine-${impl#nvram-}   # at most 20 characters
    uuid=$(cat /proc/sys/kernel/random/uuid)
    domains="$domains $name"
    uuids="$uuids $uuid"
    what="$impl $machine/$model"
    statedir=/var/lib/libvirt/swtpm/$uuid/tpm2
    img=$statedir/nvramtdb.permall
    tpmlog=/var/log/swtpm/libvirt/qemu/$name-swtpm.log
    cat >"$tmp/$name.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='$machine'>hvm</type></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <tpm model='$model'><backend type='emulator' version='2.0'/></tpm>
  </devices>
</domain>
EOF
    use_swtpm "$impl"
    c0=$(date +%s.%N)
    if ! $virsh create "$tmp/$name.xml" >"$tmp/out" 2>&1; then
        not_ok "$what: virsh create"
        show "$tmp/out"
        show "$tpmlog"
        show "/var/log/libvirt/qemu/$name.log"
        show "$tmp/libvirtd.log"
        return 1
    fi
    c1=$(date +%s.%N)
    ok "$what: virsh create (a transient TCG domain with a TPM 2.0 emulator)"
    pid=$(daemon_pid "$name")
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
    if [ "$impl" = nvram-tpmd ]; then
        case "$exe" in
            */nvram-tpmd|*/lt-nvram-tpmd) ok "$what: the TPM daemon (pid $pid) is nvram-tpmd ($exe)" ;;
            *) not_ok "$what: the TPM daemon is nvram-tpmd (pid '$pid', exe '$exe')" ;;
        esac
        if [ -s "$img" ] && [ -z "$(ls "$statedir" | grep -v '^nvramtdb.permall$')" ] &&
            grep -q "Successfully authored TPM state" "$tpmlog"; then
            ok "$what: swtpm_setup manufactured the TPM into $img alone"
        else
            not_ok "$what: the state is $img alone ($(ls "$statedir" 2>&1))"
            show "$tpmlog"
        fi
        ln "$img" "$keep/$name.before"
    fi
    $virsh qemu-monitor-command "$name" '{"execute":"query-tpm"}' >"$tmp/out" 2>&1
    grep -q "\"model\":\"$model\"" "$tmp/out" && grep -q '"type":"emulator"' "$tmp/out" &&
        ok "$what: query-tpm shows $model on the emulator backend" ||
        { not_ok "$what: query-tpm"; show "$tmp/out"; }

    c2=$(date +%s.%N)
    if $virsh save "$name" "$tmp/$name.save" >"$tmp/out" 2>&1; then
        c3=$(date +%s.%N)
        ok "$what: virsh save"
    else
        not_ok "$what: virsh save"
        show "$tmp/out"
        return 1
    fi
    gone "$pid" && ok "$what: the TPM daemon exited after save" ||
        not_ok "$what: the TPM daemon (pid $pid) exited after save"

    c4=$(date +%s.%N)
    if $virsh restore "$tmp/$name.save" >"$tmp/out" 2>&1; then
        c5=$(date +%s.%N)
        ok "$what: virsh restore"
    else
        not_ok "$what: virsh restore"
        show "$tmp/out"
        show "$tpmlog"
        return 1
    fi
    rm -f "$tmp/$name.save"
    pid=$(daemon_pid "$name")
    if [ "$impl" = nvram-tpmd ]; then
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
        case "$exe" in
            */nvram-tpmd|*/lt-nvram-tpmd) ok "$what: after restore the TPM daemon is nvram-tpmd" ;;
            *) not_ok "$what: after restore the TPM daemon is nvram-tpmd (exe '$exe')" ;;
        esac
        grep -q "SET_STATEBLOB type 1: .* staged for INIT" "$tpmlog" &&
            ok "$what: the saved TPM state came in by SET_STATEBLOB" ||
            { not_ok "$what: SET_STATEBLOB on restore"; show "$tpmlog"; }
        ln "$img" "$keep/$name.after"
    fi

    c6=$(date +%s.%N)
    if $virsh destroy "$name" >"$tmp/out" 2>&1; then
        c7=$(date +%s.%N)
        ok "$what: virsh destroy"
    else
        not_ok "$what: virsh destroy"
        show "$tmp/out"
        return 1
    fi
    gone "$pid" && ok "$what: the TPM daemon exited after destroy" ||
        not_ok "$what: the TPM daemon (pid $pid) exited after destroy"
    echo "# libvirt cycle, $what: create $(secs "$c0" "$c1") s, save $(secs "$c2" "$c3") s," \
         "restore $(secs "$c4" "$c5") s, destroy $(secs "$c6" "$c7") s;" \
         "all $(secs "$c0" "$c7") s"
    [ "$impl" = nvram-tpmd ] || return 0

    [ "$(grep -c "image $img closed" "$tpmlog")" -ge 3 ] &&
        ok "$what: each daemon closed the image (setup, save, destroy)" ||
        { not_ok "$what: each daemon closed the image"; show "$tpmlog"; }
    for s in before after; do
        if $tool check "$keep/$name.$s" >"$tmp/out" 2>&1; then
            ok "$what: nvram-tool check, the image $s save/restore"
        else
            not_ok "$what: nvram-tool check, the image $s save/restore"
            show "$tmp/out"
        fi
    done
    if tpm_identity "$keep/$name.before" "$tmp/$name.before" &&
        tpm_identity "$keep/$name.after" "$tmp/$name.after"; then
        if cmp -s "$tmp/$name.before.ekcert" "$tmp/$name.after.ekcert" &&
            cmp -s "$tmp/$name.before.ek-rsa" "$tmp/$name.after.ek-rsa" &&
            cmp -s "$tmp/$name.before.ek-ecc" "$tmp/$name.after.ek-ecc" &&
            cmp -s "$tmp/$name.before.nv" "$tmp/$name.after.nv" &&
            [ -s "$tmp/$name.before.ekcert" ] && grep -qi 0x1c00002 "$tmp/$name.before.nv"; then
            ok "$what: the restored TPM is the saved one (EK certificate, EKs, NV indices)"
        else
            not_ok "$what: the restored TPM is the saved one"
            for x in ekcert ek-rsa ek-ecc nv; do
                cmp "$tmp/$name.before.$x" "$tmp/$name.after.$x" 2>&1 | sed 's/^/#   /'
                od -An -c "$tmp/$name.before.$x" | head -5 | sed 's/^/#   /'
                od -An -c "$tmp/$name.after.$x" | head -5 | sed 's/^/#   /'
            done
        fi
    else
        not_ok "$what: the images serve offline (EK certificate, EKs, NV indices)"
        show "$tmp/$name.before.err"
        show "$tmp/$name.after.err"
    fi
}

cycle nvram-tpmd q35 tpm-crb
cycle nvram-tpmd pc tpm-tis
compare=${NVT_LIBVIRT_COMPARE:-one}
if [ "$compare" != none ]; then
    if [ -z "$real_swtpm" ]; then
        echo "# swtpm not installed: no comparison with its cycle"
    else
        # figures only: a failure of swtpm's cycle does not fail the test
        f0=$failed
        cycle swtpm q35 tpm-crb
        [ "$compare" = all ] && cycle swtpm pc tpm-tis
        if [ "$failed" -ne "$f0" ]; then
            echo "# (the swtpm comparison failed above: not counted)"
            failed=$f0
        fi
    fi
fi
echo "# $passed passed, $failed failed; $(secs "$t0" "$(date +%s.%N)") s with libvirtd"
[ "$failed" -eq 0 ] || exit 1
exit 0
