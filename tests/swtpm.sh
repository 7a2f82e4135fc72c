#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# swtpm.sh — TPM state moves between the real swtpm and an nvramtdb image
# (nvram-tool import-swtpm / export-swtpm).
#
# What it checks, in order:
#  1. plain state: swtpm_setup manufactures a TPM with an EK (persistent at
#     0x81010001); swtpm serves it, tpm2-tools define and write an NV index
#     and read the EK public; swtpm saves its volatile state and stops;
#     import-swtpm (permall and volatilestate) into a new image;
#     nvram-tpmd on the image serves the same NV data and EK public;
#     export-swtpm to a new directory; swtpm starts on it and serves both
#     again;
#  2. the same with an encrypted swtpm state (swtpm_setup --keyfile, swtpm
#     --key file=...), exported again encrypted with a passphrase (swtpm
#     --key pwdfile=..., PBKDF2);
#     then the encrypted state into an image encrypted at rest (--key-file
#     for the image), served by nvram-tpmd with the image key, exported to
#     a passphrase-encrypted state; the NV data is in clear in the plain
#     images and nowhere in the encrypted one;
#  3. a swtpm linear file (swtpm_setup --tpmstate file://PATH) imports;
#  4. malformed files, generated here (truncated header, wrong totlen,
#     wrong version, TLV length that does not add up, flipped HMAC byte,
#     wrong key, missing key): import fails with exit 1 and a message
#     naming the problem, and the image is unchanged (sha256);
#  5. migration through the control channel, as QEMU migrates a TPM:
#     swtpm_ioctl --save of the permanent, volatile and save state from
#     swtpm and from nvram-tpmd (the absent save state answered by both
#     alike, to the byte), then --stop, --load of the three and INIT on a
#     new swtpm or nvram-tpmd, in all four directions; the NV index
#     (permanent state) and an extended PCR (volatile state only) move.
# One "ok"/"not ok" line per check; exit 0 pass, 1 fail, 77 skip.
# Environment: NVRAM_TOOL, NVRAM_TPMD (set by make check).

tmp_name=nvram-swtpm-test
show_tail=15
. "$(dirname "$0")/tpmlib.sh"
need_commands "install swtpm, swtpm-tools and tpm2-tools" \
    swtpm swtpm_setup swtpm_ioctl tpm2_startup tpm2_shutdown tpm2_nvdefine \
    tpm2_nvwrite tpm2_nvread tpm2_readpublic tpm2_pcrextend tpm2_pcrread sha256sum od dd

check() {   # check DESCRIPTION CMD...
    desc=$1
    shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        ok "$desc"
        return 0
    fi
    not_ok "$desc (exit $rc)"
    show "$tmp/out"
    show "$tmp/err"
    return 1
}

# swtpm_setup without certificates: an empty configuration file.
: >"$tmp/swtpm_setup.conf"
XDG_CONFIG_HOME=$tmp
export XDG_CONFIG_HOME

# swtpm_on_port DIR-OR-URI [ARGS...]: swtpm on $port and $port+1.
swtpm_on_port() {
    swtpm_uri=$1
    shift
    swtpm socket --tpm2 --tpmstate "$swtpm_uri" --server "type=tcp,port=$port" \
        --ctrl "type=tcp,port=$((port + 1))" --flags not-need-init,startup-clear \
        "$@" >"$tmp/swtpm.log" 2>&1 &
    swtpm_pid=$!
}
swtpm_ctrl_answers() { swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -g; }
# start_swtpm DIR-OR-URI [ARGS...]: swtpm on a TCP pair, TPM started.
start_swtpm() {
    if serve_on_free_port "$tmp/swtpm.log" swtpm_pid swtpm_ctrl_answers swtpm_on_port "$@"; then
        set_tcti "$port"
        return 0
    fi
    show "$tmp/swtpm.log"
    return 1
}

stop_swtpm() {
    tpm2_shutdown -c >/dev/null 2>&1
    swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -s >/dev/null 2>&1 || kill "$swtpm_pid"
    wait "$swtpm_pid" 2>/dev/null
    swtpm_pid=
}

# tpmd_on_port IMAGE: nvram-tpmd on IMAGE and $port, with $tpmd_key_args
# (the image key).
tpmd_key_args=
tpmd_on_port() {
    rm -f "$tmp/tpmd.pid"
    # shellcheck disable=SC2086
    "$tpmd" --image "$1" --tcp-port "$port" --pid-file "$tmp/tpmd.pid" \
        --log "file=$tmp/tpmd.log,level=2" $tpmd_key_args 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
}
tpmd_pid_written() { test -s "$tmp/tpmd.pid"; }
# start_tpmd IMAGE: nvram-tpmd on IMAGE, TPM2_Startup done.
start_tpmd() {
    if serve_on_free_port "$tmp/tpmd.err" tpmd_pid tpmd_pid_written tpmd_on_port "$1"; then
        set_tcti "$port"
        tpm2_startup -c >/dev/null 2>&1
        return 0
    fi
    show "$tmp/tpmd.err"
    return 1
}

stop_tpmd() {
    tpm2_shutdown -c >/dev/null 2>&1
    kill -TERM "$tpmd_pid" 2>/dev/null
    wait "$tpmd_pid" 2>/dev/null
    tpmd_pid=
}

NV=0x1500016
EK=0x81010001

# read_both TAG: read the NV index and the EK public into $tmp/nv.TAG and
# $tmp/ek.TAG.
read_both() {
    tpm2_nvread "$NV" -C o -s 32 -o "$tmp/nv.$1" >/dev/null 2>"$tmp/err" &&
        tpm2_readpublic -c "$EK" -o "$tmp/ek.$1" >/dev/null 2>>"$tmp/err"
}

# same WHAT TAG: compare with the reference read on swtpm.
same() {
    if cmp -s "$tmp/nv.ref" "$tmp/nv.$2" && cmp -s "$tmp/ek.ref" "$tmp/ek.$2"; then
        ok "$1 serves the NV index and EK public written on swtpm"
    else
        not_ok "$1 serves the NV index and EK public written on swtpm"
        show "$tmp/err"
    fi
}

# round_trip NAME SETUP-ARGS SWTPM-ARGS IMPORT-ARGS EXPORT-ARGS SWTPM2-ARGS: each
# group of extra arguments is one word, split into arguments where it is used.
round_trip() {
    name=$1 setup_args=$2 swtpm_args=$3 import_args=$4 export_args=$5 swtpm2_args=$6
    st=$tmp/$name.state
    img=$tmp/$name.img
    out=$tmp/$name.out
    mkdir -p "$st"
    # shellcheck disable=SC2086
    check "$name: swtpm_setup manufactures a TPM 2 with an EK" \
        swtpm_setup --tpm2 --tpmstate "$st" --createek --overwrite \
        --config "$tmp/swtpm_setup.conf" $setup_args || return 1
    # shellcheck disable=SC2086
    if ! start_swtpm "dir=$st" $swtpm_args; then
        not_ok "$name: swtpm starts"
        return 1
    fi
    head -c 32 /dev/urandom >"$tmp/nvdata"
    check "$name: NV index defined and written on swtpm" sh -c \
        "tpm2_nvdefine $NV -C o -s 32 -a 'ownerread|ownerwrite' &&
         tpm2_nvwrite $NV -C o -i '$tmp/nvdata'"
    check "$name: NV index and EK public read on swtpm" read_both ref
    # a saved volatile state too (swtpm_ioctl -v), as swtpm keeps it
    check "$name: swtpm stores its volatile state" \
        swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -v
    stop_swtpm
    cmp -s "$tmp/nvdata" "$tmp/nv.ref" || not_ok "$name: NV data read back on swtpm"
    # shellcheck disable=SC2086
    check "$name: import-swtpm into a new image" "$tool" import-swtpm --create "$img" "$st" \
        $import_args || return 1
    if grep -q "tpm0/permall" "$tmp/out" && grep -q "tpm0/volatilestate" "$tmp/out"; then
        ok "$name: permall and volatilestate imported"
    else
        not_ok "$name: permall and volatilestate imported"
        show "$tmp/out"
    fi
    # The NV index's bytes: in the image's TPM state in clear, unless the
    # image is encrypted.
    nvhex=$(od -An -tx1 -v "$tmp/nvdata" | tr -d ' \n')
    if od -An -tx1 -v "$img" | tr -d ' \n' | grep -q "$nvhex"; then in_img=yes; else in_img=no; fi
    if [ -n "$tpmd_key_args" ]; then
        check "$name: the NV data is not in clear in the encrypted image" test "$in_img" = no
    else
        check "$name: the NV data is in clear in the plain image (the check above sees it)" \
            test "$in_img" = yes
    fi
    if start_tpmd "$img"; then
        check "$name: NV index and EK public read on nvram-tpmd" read_both tpmd
        stop_tpmd
        same "$name: nvram-tpmd" tpmd
    else
        not_ok "$name: nvram-tpmd starts on the imported image"
    fi
    # shellcheck disable=SC2086
    check "$name: export-swtpm to a new directory" "$tool" export-swtpm "$img" "$out" \
        $export_args || return 1
    # shellcheck disable=SC2086
    if start_swtpm "dir=$out" $swtpm2_args; then
        check "$name: NV index and EK public read on swtpm after export" read_both back
        stop_swtpm
        same "$name: swtpm on the exported state" back
    else
        not_ok "$name: swtpm starts on the exported state"
    fi
    return 0
}

# ---- 1, 2: round trips ---------------------------------------------------------
round_trip plain "" "" "" "" ""

echo 0x000102030405060708090a0b0c0d0e0f >"$tmp/key.hex"
printf 'a passphrase\n' >"$tmp/pwd"
round_trip encrypted "--keyfile $tmp/key.hex" "--key file=$tmp/key.hex" \
    "--key $tmp/key.hex" "--pwdfile $tmp/pwd" "--key pwdfile=$tmp/pwd"
# An encrypted swtpm state into an encrypted image (nvram-tool's
# --key-file for the image, swtpm's --key for the state), served by
# nvram-tpmd with the image key, and out to a passphrase-encrypted state.
head -c 32 /dev/urandom >"$tmp/image.key"
tpmd_key_args="--key-file=$tmp/image.key"
round_trip encrypted-image "--keyfile $tmp/key.hex" "--key file=$tmp/key.hex" \
    "--key $tmp/key.hex --key-file=$tmp/image.key" \
    "--pwdfile $tmp/pwd --key-file=$tmp/image.key" "--key pwdfile=$tmp/pwd"
tpmd_key_args=
check "import-swtpm created an encrypted image" sh -c \
    "'$tool' info '$tmp/encrypted-image.img' | grep -q AES-256-GCM"
enc=$tmp/encrypted.state/tpm2-00.permall
if [ -f "$enc" ] && [ "$(od -An -tx1 -j5 -N1 "$enc" | tr -d ' ')" = 01 ]; then
    ok "swtpm_setup --keyfile wrote an encrypted permall"
else
    not_ok "swtpm_setup --keyfile wrote an encrypted permall"
fi

# ---- 3: linear file ----------------------------------------------------------------
if swtpm_setup --tpm2 --tpmstate "file://$tmp/linear.bin" --createek --overwrite \
        --config "$tmp/swtpm_setup.conf" >"$tmp/out" 2>&1; then
    check "import-swtpm of a linear file (file://)" \
        "$tool" import-swtpm --create "$tmp/linear.img" "file://$tmp/linear.bin"
    if start_tpmd "$tmp/linear.img"; then
        check "nvram-tpmd reads the EK of the linear file" \
            tpm2_readpublic -c "$EK" -o "$tmp/ek.linear"
        stop_tpmd
    else
        not_ok "nvram-tpmd starts on the image from the linear file"
    fi
    # Over an image holding another TPM's permall and volatile state: the
    # linear file has no volatile state, so the old one goes, with the new
    # permall, in one commit.
    over=$tmp/over.img
    if "$tool" import-swtpm --create "$over" "$tmp/plain.state" >/dev/null &&
        "$tool" dump -o "$tmp/vol.before" "$over" tpm0/volatilestate; then
        check "import-swtpm over an image with a volatile state" \
            "$tool" import-swtpm "$over" "file://$tmp/linear.bin"
        # (linear.img has been run by nvram-tpmd since: import afresh)
        "$tool" import-swtpm --create "$tmp/linear2.img" "file://$tmp/linear.bin" >/dev/null
        "$tool" dump -o "$tmp/permall.linear" "$tmp/linear2.img" tpm0/permall
        "$tool" dump -o "$tmp/permall.over" "$over" tpm0/permall
        if cmp -s "$tmp/permall.linear" "$tmp/permall.over" &&
            ! "$tool" dump -o "$tmp/vol.over" "$over" tpm0/volatilestate 2>/dev/null; then
            ok "the new permall replaced the old one and the old volatile state is gone"
        else
            not_ok "the new permall replaced the old one and the old volatile state is gone"
            "$tool" list "$over" >"$tmp/list" 2>&1
            show "$tmp/list"
        fi
    else
        not_ok "the plain state (with its volatile state) imports into a second image"
    fi
else
    echo "ok - # SKIP linear file: swtpm_setup does not take file:// here"
    show "$tmp/out"
fi

# ---- 4: malformed files --------------------------------------------------------------
img=$tmp/plain.img
plain=$tmp/plain.state/tpm2-00.permall
if [ ! -f "$img" ] || [ ! -f "$plain" ] || [ ! -f "$enc" ]; then
    not_ok "malformed-file checks need the states of the round trips"
else
    # put_byte FILE OFFSET HEX
    put_byte() { printf "\\$(printf '%03o' "0x$3")" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }
    bad() { mkdir -p "$tmp/bad/$1"; cp "$2" "$tmp/bad/$1/tpm2-00.permall"; echo "$tmp/bad/$1/tpm2-00.permall"; }

    f=$(bad truncated "$plain"); head -c 7 "$plain" >"$f"
    f=$(bad totlen "$plain"); put_byte "$f" 9 "$(od -An -tx1 -j9 -N1 "$plain" | tr -d ' ' | tr 0-9a-f 1-9a-f0)"
    f=$(bad version "$plain"); put_byte "$f" 0 03; put_byte "$f" 1 03
    f=$(bad tlvlen "$plain"); put_byte "$f" 12 7f
    f=$(bad hmac "$enc")
    ctlen=$(od -An -tu4 --endian=big -j12 -N4 "$enc" | tr -d ' ')
    hoff=$((10 + 6 + ctlen + 6 + 5))
    put_byte "$f" "$hoff" "$(od -An -tx1 -j"$hoff" -N1 "$enc" | tr -d ' ' | tr 0-9a-f 1-9a-f0)"
    bad wrongkey "$enc" >/dev/null
    bad nokey "$enc" >/dev/null
    # the encrypted blob's header alone (totlen 10): no data, no HMAC
    f=$(bad stripped "$enc"); head -c 10 "$enc" >"$f"; put_byte "$f" 6 00; put_byte "$f" 7 00
    put_byte "$f" 8 00; put_byte "$f" 9 0a
    echo 0x0f0e0d0c0b0a09080706050403020100 >"$tmp/wrong.hex"

    before=$(sha256sum <"$img")
    for case in "truncated:truncated header" "totlen:length mismatch" \
                "version:unsupported blob version" "tlvlen:TLV tag" \
                "hmac:HMAC check failed" "wrongkey:HMAC check failed" \
                "nokey:is encrypted" "stripped:no encrypted data"; do
        name=${case%%:*}
        want=${case#*:}
        set --
        case $name in
        hmac|stripped) set -- --key "$tmp/key.hex" ;;
        wrongkey) set -- --key "$tmp/wrong.hex" ;;
        esac
        "$tool" import-swtpm "$img" "$tmp/bad/$name" "$@" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        after=$(sha256sum <"$img")
        if [ "$rc" -eq 1 ] && grep -q "$want" "$tmp/err" && [ "$before" = "$after" ]; then
            ok "malformed ($name): exit 1, '$want', image unchanged"
        else
            not_ok "malformed ($name): exit $rc, image $([ "$before" = "$after" ] && echo unchanged || echo CHANGED)"
            show "$tmp/err"
        fi
    done
    if [ -f "$tmp/linear.bin" ]; then
        head -c 100 "$tmp/linear.bin" >"$tmp/short.bin"
        "$tool" import-swtpm "$img" "file://$tmp/short.bin" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        after=$(sha256sum <"$img")
        if [ "$rc" -eq 1 ] && grep -q "linear file header" "$tmp/err" && [ "$before" = "$after" ]; then
            ok "malformed (truncated linear file): exit 1, image unchanged"
        else
            not_ok "malformed (truncated linear file): exit $rc"
            show "$tmp/err"
        fi
    fi
fi

# ---- 5: migration through the control channel ---------------------------------------
# What travels is what QEMU moves: GET_STATEBLOB of the three blobs on the
# source, STOP, SET_STATEBLOB of the three and INIT on the destination (no
# TPM2_Startup: the TPM resumes).  The NV index lives in the permanent
# state; the PCR value only in the volatile state.
PCR=16

# raw_get_stateblob CTRL-PORT TYPE: the whole GET_STATEBLOB answer in hex.
raw_get_stateblob() {
    python3 - "$1" "$2" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(struct.pack(">IIII", 12, 0, int(sys.argv[2]), 0))
b = b""
while len(b) < 16 or len(b) < 16 + struct.unpack(">I", b[12:16])[0]:
    c = s.recv(65536)
    if not c:
        break
    b += c
print(b.hex())
PY
}

# mig_source KIND (swtpm or tpmd): a new TPM of that kind gets the NV index
# and PCR; its blobs go to $tmp/mig.KIND.{permanent,volatile,savestate},
# its NV data and PCR value to $tmp/mig.KIND.nv and .pcr.
mig_source() {
    kind=$1
    case $kind in
    swtpm) mkdir -p "$tmp/mig.src.swtpm" && start_swtpm "dir=$tmp/mig.src.swtpm" ;;
    tpmd) start_tpmd "$tmp/mig.src.img" ;;
    esac || { not_ok "migration: $kind starts as the source"; return 1; }
    ctl=127.0.0.1:$((port + 1))
    head -c 32 /dev/urandom >"$tmp/mig.$kind.nv"
    digest=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    check "migration: NV index written and PCR $PCR extended on $kind" sh -c "
        tpm2_nvdefine $NV -C o -s 32 -a 'ownerread|ownerwrite' &&
        tpm2_nvwrite $NV -C o -i '$tmp/mig.$kind.nv' &&
        tpm2_pcrextend $PCR:sha256=$digest &&
        tpm2_pcrread sha256:$PCR -o '$tmp/mig.$kind.pcr'"
    for blob in permanent volatile savestate; do
        check "migration: swtpm_ioctl --save $blob from $kind" \
            swtpm_ioctl --tcp "$ctl" --save "$blob" "$tmp/mig.$kind.$blob"
    done
    if command -v python3 >/dev/null 2>&1; then
        raw_get_stateblob "$((port + 1))" 3 >"$tmp/mig.$kind.raw3"
    fi
    case $kind in
    swtpm) stop_swtpm ;;
    tpmd) stop_tpmd ;;
    esac
}

# mig_dest FROM TO: a new TO takes the blobs of FROM and serves its NV
# index and PCR value.
mig_dest() {
    from=$1 to=$2
    rm -rf "$tmp/mig.dst" "$tmp/mig.dst.img"
    case $to in
    swtpm) mkdir -p "$tmp/mig.dst" && start_swtpm "dir=$tmp/mig.dst" ;;
    tpmd) start_tpmd "$tmp/mig.dst.img" ;;
    esac || { not_ok "migration $from -> $to: $to starts"; return 1; }
    ctl=127.0.0.1:$((port + 1))
    check "migration $from -> $to: STOP" swtpm_ioctl --tcp "$ctl" --stop
    for blob in permanent volatile savestate; do
        check "migration $from -> $to: $to takes the $blob blob of $from" \
            swtpm_ioctl --tcp "$ctl" --load "$blob" "$tmp/mig.$from.$blob"
    done
    if [ "$to" = tpmd ]; then
        # the empty container (an older nvram-tpmd's answer) is "no save state" too
        printf '\002\001\000\012\000\004\000\000\000\026\000\004\000\000\000\006\000\001\000\000\000\000' \
            >"$tmp/mig.empty-container"
        check "migration $from -> $to: $to takes an empty container as the save state" \
            swtpm_ioctl --tcp "$ctl" --load savestate "$tmp/mig.empty-container"
    fi
    check "migration $from -> $to: INIT" swtpm_ioctl --tcp "$ctl" -i
    rm -f "$tmp/mig.got.nv" "$tmp/mig.got.pcr"
    tpm2_nvread "$NV" -C o -s 32 -o "$tmp/mig.got.nv" >/dev/null 2>"$tmp/err"
    tpm2_pcrread "sha256:$PCR" -o "$tmp/mig.got.pcr" >/dev/null 2>>"$tmp/err"
    if cmp -s "$tmp/mig.$from.nv" "$tmp/mig.got.nv" &&
        cmp -s "$tmp/mig.$from.pcr" "$tmp/mig.got.pcr"; then
        ok "migration $from -> $to: the NV index and PCR $PCR moved"
    else
        not_ok "migration $from -> $to: the NV index and PCR $PCR moved"
        show "$tmp/err"
    fi
    case $to in
    swtpm) stop_swtpm ;;
    tpmd) stop_tpmd ;;
    esac
}

mig_source swtpm
mig_source tpmd
for blob in permanent volatile; do
    [ -s "$tmp/mig.tpmd.$blob" ] && [ -s "$tmp/mig.swtpm.$blob" ] &&
        ok "migration: both give a $blob blob" || not_ok "migration: both give a $blob blob"
done
if [ -e "$tmp/mig.swtpm.savestate" ] && cmp -s "$tmp/mig.swtpm.savestate" "$tmp/mig.tpmd.savestate"; then
    ok "migration: the absent save state saves as swtpm's does ($(wc -c <"$tmp/mig.swtpm.savestate" | tr -d ' ') bytes)"
else
    not_ok "migration: the absent save state saves as swtpm's does"
fi
if [ -s "$tmp/mig.swtpm.raw3" ]; then
    if [ "$(cat "$tmp/mig.swtpm.raw3")" = "$(cat "$tmp/mig.tpmd.raw3")" ]; then
        ok "migration: GET_STATEBLOB of the save state answers as swtpm ($(cat "$tmp/mig.swtpm.raw3"))"
    else
        not_ok "migration: GET_STATEBLOB of the save state answers as swtpm" \
            "(swtpm $(cat "$tmp/mig.swtpm.raw3"), nvram-tpmd $(cat "$tmp/mig.tpmd.raw3"))"
    fi
else
    echo "ok - # SKIP raw GET_STATEBLOB comparison: python3 not found"
fi
mig_dest swtpm swtpm
mig_dest swtpm tpmd
mig_dest tpmd swtpm
mig_dest tpmd tpmd

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit 0
