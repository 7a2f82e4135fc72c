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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/crc32c/check-value", test_check_value);
    g_test_add_func("/crc32c/rfc3720-vectors", test_rfc3720_vectors);
    g_test_add_func("/crc32c/incremental", test_incremental_equals_whole);
    return g_test_run();
}
