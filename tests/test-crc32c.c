/* SPDX-License-Identifier: LGPL-3.0-or-later */
/* test-crc32c: CRC-32C against published check values. */
#include "config.h"

#include <glib.h>
#include <string.h>

#include "crc32c.h"

static void test_check_value(void)
{
    /* The standard check value of CRC-32C (RFC 3720 appendix B.4). */
    g_assert_cmphex(nvt_crc32c(0, "123456789", 9), ==, 0xE3069283u);
}

static void test_rfc3720_vectors(void)
{
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    g_assert_cmphex(nvt_crc32c(0, buf, 32), ==, 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    g_assert_cmphex(nvt_crc32c(0, buf, 32), ==, 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    g_assert_cmphex(nvt_crc32c(0, buf, 32), ==, 0x46DD794Eu);
}

static void test_incremental_equals_whole(void)
{
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = nvt_crc32c(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 37) {
        uint32_t c = nvt_crc32c(0, buf, cut);
        c = nvt_crc32c(c, buf + cut, sizeof buf - cut);
        g_assert_cmphex(c, ==, whole);
    }
    /* Unaligned starts give the same result as aligned copies. */
    g_assert_cmphex(nvt_crc32c(0, buf + 3, 500), ==, nvt_crc32c(0, memcpy(g_alloca(500), buf + 3, 500), 500));
}

/* Long buffers take the three-stripe path: compare with a byte-at-a-time
 * reference at many lengths and alignments. */
static uint32_t crc_reference(const uint8_t *p, size_t len)
{
    uint32_t c = ~0u;
    while (len--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_long_buffers_match_reference(void)
{
    size_t max = 3 * 8192 * 3 + 100;
    uint8_t *buf = g_malloc(max + 8);
    for (size_t i = 0; i < max + 8; i++)
        buf[i] = (uint8_t)(i * 131 + (i >> 7));
    static const size_t lens[] = { 24575, 24576, 24577, 49152, 65536, 73728, 3 * 8192 * 3 + 100 };
    for (size_t k = 0; k < G_N_ELEMENTS(lens); k++)
        for (size_t off = 0; off < 4; off++)
            g_assert_cmphex(nvt_crc32c(0, buf + off, lens[k]), ==, crc_reference(buf + off, lens[k]));
    /* Continuing a CRC across the stripe path. */
    uint32_t c = nvt_crc32c(0, buf, 1000);
    g_assert_cmphex(nvt_crc32c(c, buf + 1000, 70000), ==, crc_reference(buf, 71000));
    g_free(buf);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/crc32c/check-value", test_check_value);
    g_test_add_func("/crc32c/rfc3720-vectors", test_rfc3720_vectors);
    g_test_add_func("/crc32c/incremental", test_incremental_equals_whole);
    g_test_add_func("/crc32c/long-buffers-match-reference", test_long_buffers_match_reference);
    return g_test_run();
}
