/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* crc32c.h — CRC-32C (Castagnoli), the checksum of superblocks and records. */
#ifndef NVT_CRC32C_H
#define NVT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0; crc32c(0, "123456789", 9) = 0xE3069283. */
uint32_t nvt_crc32c(uint32_t crc, const void *data, size_t len);

#endif /* NVT_CRC32C_H */
