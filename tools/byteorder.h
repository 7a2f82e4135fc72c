/* SPDX-License-Identifier: LGPL-3.0-or-later */
/*
 * byteorder.h — big-endian loads and stores, the byte order of TPM
 * commands, swtpm's control channel and its state files.
 */
#ifndef NVT_TOOLS_BYTEORDER_H
#define NVT_TOOLS_BYTEORDER_H

#include <stdint.h>

static inline uint16_t load_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif /* NVT_TOOLS_BYTEORDER_H */
