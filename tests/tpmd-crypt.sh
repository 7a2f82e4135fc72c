#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# tpmd-crypt.sh — nvram-tpmd on an encrypted image, with tpm2-tools:
# a new image created encrypted (--key-file), an NV index written and read
# back, orderly stop and restart, the value read back again; the NV data
# never in clear in the image; a restart without the key or with a wrong
# one fails clearly; swtpm's --key pwdfile= and fd= forms.
# One "ok"/"not ok" line per check; exit 0 pass, 1 fail, 77 skip.

tmp_name=nvram-tpmd-crypt
show_tail=20
. "$(dirname "$0")/tpmlib.sh"
need_commands "install tpm2-tools" \
    tpm2_startup tpm2_shutdown tpm2_nvdefine tpm2_nvwrite tpm2_nvread

img=$tmp/tpm.img
key=$tmp/key
head -c 32 /dev/urandom >"$key"
head -c 32 /dev/urandom >"$tmp/wrong"
printf 'tpm passphrase\n' >"$tmp/pass"
secret=NVRAMTDB-TPM-NV-PLAINTEXT-4b1e9a77c2d0
printf '%s' "$secret" >"$tmp/nvdata"
INDEX=0x1500020

run_check() {
    desc=$1
    shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then ok "$desc"; else not_ok "$desc"; show "$tmp/err"; show "$tmp/tpmd.err"; fi
}

# start_tpmd ARGS...: the daemon on $img; 0 once it serves, 1 if it exits.
start_tpmd() {
    next_port
    rm -f "$tmp/pid"
    "$tpmd" --image "$img" --tcp-port "$port" --pid-file "$tmp/pid" "$@" 2>"$tmp/tpmd.err" &
    tpmd_pid=$!
    if wait_for "$tpmd_pid" test -s "$tmp/pid"; then
        set_tcti "$port"
        return 0
    fi
    wait "$tpmd_pid" 2>/dev/null
    tpmd_pid=
    return 1
}
stop_tpmd() {
    kill -TERM "$tpmd_pid" 2>/dev/null
    wait "$tpmd_pid" 2>/dev/null
    tpmd_pid=
}

if start_tpmd --key-file="$key"; then ok "nvram-tpmd creates an encrypted image"; else not_ok "nvram-tpmd creates an encrypted image"; show "$tmp/tpmd.err"; fi
run_check "tpm2_startup" tpm2_startup -c
run_check "tpm2_nvdefine" tpm2_nvdefine "$INDEX" -C o -s ${#secret} -a "ownerread|ownerwrite"
run_check "tpm2_nvwrite" tpm2_nvwrite "$INDEX" -C o -i "$tmp/nvdata"
run_check "tpm2_nvread" tpm2_nvread "$INDEX" -C o -s ${#secret} -o "$tmp/back"
run_check "the NV data reads back" cmp -s "$tmp/nvdata" "$tmp/back"
run_check "tpm2_shutdown" tpm2_shutdown
stop_tpmd
run_check "nvram-tool info says the image is encrypted" sh -c "'$tool' info '$img' | grep -q AES-256-GCM"
run_check "nvram-tool check with the key verifies every tag" "$tool" check --key-file="$key" "$img"
if grep -q -a "$secret" "$img"; then not_ok "the NV data is not in clear in the image"; else ok "the NV data is not in clear in the image"; fi

if start_tpmd; then
    not_ok "a restart without the key fails"
    stop_tpmd
else
    ok "a restart without the key fails"
fi
run_check "the error says the image is encrypted and no key was given" grep -q "encrypted and no key" "$tmp/tpmd.err"
if start_tpmd --key-file="$tmp/wrong"; then
    not_ok "a restart with a wrong key fails"
    stop_tpmd
else
    ok "a restart with a wrong key fails"
fi
run_check "the error says wrong key" grep -q "wrong key" "$tmp/tpmd.err"

if start_tpmd --key "file=$key,format=binary,mode=aes-256-cbc"; then ok "restart with swtpm's --key file="; else not_ok "restart with swtpm's --key file="; show "$tmp/tpmd.err"; fi
run_check "tpm2_startup after restart" tpm2_startup
run_check "tpm2_nvread after restart" tpm2_nvread "$INDEX" -C o -s ${#secret} -o "$tmp/back2"
run_check "the NV data survived the restart" cmp -s "$tmp/nvdata" "$tmp/back2"
run_check "tpm2_shutdown" tpm2_shutdown
stop_tpmd

# A passphrase image through swtpm's pwdfd= (libvirt's form), then pwdfile=.
img=$tmp/pass.img
if start_tpmd --key pwdfd=5 5<"$tmp/pass"; then ok "nvram-tpmd --key pwdfd= creates a passphrase image"; else not_ok "nvram-tpmd --key pwdfd= creates a passphrase image"; show "$tmp/tpmd.err"; fi
run_check "tpm2_startup (passphrase image)" tpm2_startup -c
run_check "tpm2_nvdefine (passphrase image)" tpm2_nvdefine "$INDEX" -C o -s ${#secret} -a "ownerread|ownerwrite"
run_check "tpm2_nvwrite (passphrase image)" tpm2_nvwrite "$INDEX" -C o -i "$tmp/nvdata"
run_check "tpm2_shutdown (passphrase image)" tpm2_shutdown
stop_tpmd
if start_tpmd --key "pwdfile=$tmp/pass"; then ok "restart with --key pwdfile="; else not_ok "restart with --key pwdfile="; show "$tmp/tpmd.err"; fi
run_check "tpm2_startup (passphrase image, restarted)" tpm2_startup
run_check "tpm2_nvread (passphrase image)" tpm2_nvread "$INDEX" -C o -s ${#secret} -o "$tmp/back3"
run_check "the NV data reads back (passphrase image)" cmp -s "$tmp/nvdata" "$tmp/back3"
stop_tpmd
run_check "nvram-tpmd refuses a 128-bit swtpm key mode" sh -c "! '$tpmd' --image '$img' --key 'file=$key,mode=aes-128-cbc' --tcp-port 1 2>'$tmp/e'"
run_check "--print-capabilities offers cmdarg-key-fd and cmdarg-pwd-fd" sh -c "'$tpmd' --print-capabilities | grep -q cmdarg-pwd-fd"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
