/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * tdb-compat.c — the one symbol Debian's libtdb.a expects from Samba's
 * "replace" library: rep_memset_s(), C11 Annex K memset_s().  tdb uses it
 * to wipe its context before freeing; the writes must not be optimised
 * away, hence the volatile pointer.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>

int rep_memset_s(void *dest, size_t destsz, int ch, size_t count);

int rep_memset_s(void *dest, size_t destsz, int ch, size_t count)
{
    if (!dest)
        return EINVAL;
    volatile unsigned char *p = dest;
    size_t n = count < destsz ? count : destsz;
    while (n--)
        *p++ = (unsigned char)ch;
    return count > destsz ? EOVERFLOW : 0;
}
