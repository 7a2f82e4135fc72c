#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# tool-crypt.sh — nvram-tool on encrypted images: create --encrypt, the
# key options of every command, info, check with and without the key, a
# plaintext that never reaches the file, wrong and missing keys.
# One "ok"/"not ok" line per check; exit 0 pass, 1 fail, 77 skip.

tmp_name=nvram-tool-crypt
. "$(dirname "$0")/toollib.sh"

check() {
    desc=$1
    shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
in_file() { grep -q -a -- "$1" "$2"; }

img=$tmp/enc.img
key=$tmp/key
printf '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n' >"$key"
printf 'fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0\n' >"$tmp/wrong"
printf 'correct horse battery\n' >"$tmp/pass"
secret=NVRAMTDB-KNOWN-PLAINTEXT-7d1f0c2a
printf '%s' "$secret" >"$tmp/value"

expect 2 "--encrypt without a key is a usage error" create --encrypt "$img" --blob tpm0/permall:4K
expect 2 "create with a key but without --encrypt is a usage error" create --key-file="$key" "$img" --blob tpm0/permall:4K
expect 2 "--key-file and --passphrase-file together are a usage error" list --key-file="$key" --passphrase-file="$tmp/pass" "$img"
expect 2 "--encrypt outside create is a usage error" list --encrypt "$img"
expect 2 "--key-file without a file is a usage error" list "$img" --key-file

expect 0 "create --encrypt --key-file" create --encrypt --key-file="$key" "$img" --blob tpm0/permall:4K --blob tpm0/volatilestate:4K
expect 0 "import with the key" import --key-file "$key" "$img" tpm0/permall "$tmp/value"
check "the plaintext is not in the image" sh -c "! grep -q -a '$secret' '$img'"
expect 0 "info without the key" info "$img"
check "info says encrypted, no key" in_file "AES-256-GCM, key file, no key given" "$tmp/out"
expect 0 "info --json with the key" info --json --key-file="$key" "$img"
check "info --json says encrypted" in_file '"encrypted" : true' "$tmp/out"
expect 0 "list without the key shows names and sizes" list "$img"
check "list names the blob" in_file "tpm0/permall" "$tmp/out"
expect 1 "dump without the key fails" dump "$img" tpm0/permall
check "the error says no key was given" in_file "no key" "$tmp/err"
expect 1 "dump with a wrong key fails" dump --key-file="$tmp/wrong" "$img" tpm0/permall
check "the error says wrong key" in_file "wrong key" "$tmp/err"
expect 1 "dump with a passphrase for a key-file image fails" dump --passphrase-file="$tmp/pass" "$img" tpm0/permall
expect 0 "dump with the key" dump --key-file="$key" "$img" tpm0/permall -o "$tmp/back"
check "the value reads back" cmp -s "$tmp/value" "$tmp/back"
expect 0 "check without the key (structure)" check "$img"
check "check says the tags were not verified" in_file "tags not verified" "$tmp/out"
expect 0 "check with the key" check --key-file="$key" "$img"
expect 1 "delete without the key fails" delete "$img" tpm0/permall
expect 0 "the value is still there" dump --key-file="$key" "$img" tpm0/permall -o "$tmp/back2"
check "unchanged" cmp -s "$tmp/value" "$tmp/back2"
expect 1 "export-tdb of an encrypted image is refused" export-tdb --key-file="$key" "$img" "$tmp/x.tdb"

# A byte of the ciphertext flipped: check with the key names the blob.
off=$(grep -a -b -o 'tpm0/permallNVB1' "$img" | head -n 1 | cut -d: -f1)
if [ -n "$off" ]; then
    cp "$img" "$tmp/flip.img"
    at=$((off + 12 + 32 + 12 + 2))
    printf 'Z' | dd of="$tmp/flip.img" bs=1 seek="$at" conv=notrunc 2>/dev/null
    expect 1 "check with the key finds the flipped byte" check --key-file="$key" "$tmp/flip.img"
    check "check names the blob" in_file "tpm0/permall" "$tmp/out"
    expect 1 "dump of the damaged blob fails" dump --key-file="$key" "$tmp/flip.img" tpm0/permall
else
    not_ok "the record of tpm0/permall is found in the image"
fi

# rekey: to a passphrase, then back to a key file.
expect 2 "rekey without a new key is a usage error" rekey --key-file="$key" "$img"
expect 2 "rekey without the current key is a usage error" rekey "$img" --new-key-file="$tmp/wrong"
expect 1 "rekey with a wrong current key fails" rekey --key-file="$tmp/wrong" "$img" --new-passphrase-file="$tmp/pass"
expect 0 "rekey to a passphrase" rekey --key-file="$key" "$img" --new-passphrase-file="$tmp/pass"
expect 1 "the old key is refused after rekey" dump --key-file="$key" "$img" tpm0/permall
expect 0 "the new passphrase reads the value" dump --passphrase-file="$tmp/pass" "$img" tpm0/permall -o "$tmp/rk"
check "the value survived the rekey" cmp -s "$tmp/value" "$tmp/rk"
expect 0 "rekey back to a key file" rekey --passphrase-file="$tmp/pass" "$img" --new-key-file="$tmp/wrong"
expect 0 "check with the newest key" check --key-file="$tmp/wrong" "$img"
check "the plaintext is still not in the image" sh -c "! grep -q -a '$secret' '$img'"

pimg=$tmp/pass.img
expect 0 "create --encrypt --passphrase-file" create --encrypt --passphrase-file="$tmp/pass" "$pimg" --blob a/b:1K
expect 0 "import with the passphrase" import --passphrase-file="$tmp/pass" "$pimg" a/b "$tmp/value"
expect 0 "info shows scrypt" info "$pimg"
check "info names scrypt" in_file "scrypt N=2^16 r=8 p=1" "$tmp/out"
expect 0 "dump with the passphrase" dump --passphrase-file="$tmp/pass" "$pimg" a/b -o "$tmp/pback"
check "the value reads back" cmp -s "$tmp/value" "$tmp/pback"
check "the plaintext is not in the passphrase image" sh -c "! grep -q -a '$secret' '$pimg'"

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
