/* CRC32C (Castagnoli) with a runtime-selected SSE4.2 path and a portable slice-by-8 fallback.
 *
 * Owned by the storage layer (transaction log record checksums). Exposed to Python only via the
 * cffi module zkpy._crc32c; zkpy/storage/crc.py keeps a pure-Python twin that must agree bit for bit.
 */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static int table_ready = 0;

/* Built lazily rather than as a 8 KiB static initializer. A race on first use is benign: every
 * thread computes identical values, and zkpy/storage/crc.py warms it up at import time anyway. */
static void build_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][n] = c;
        }
    }
    table_ready = 1;
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    if (!table_ready)
        build_table();
    while (len && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        uint32_t lo = (uint32_t)w ^ crc;
        uint32_t hi = (uint32_t)(w >> 32);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_HW_CANDIDATE 1

/* Compiled for SSE4.2 via the target attribute so the rest of the file (and the build) stays
 * baseline x86-64; only called after __builtin_cpu_supports says the CPU has it. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = crc;
    while (len && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#else
#define HAVE_HW_CANDIDATE 0
#endif

/* -1 = not probed yet, 0 = software, 1 = hardware. */
static int use_hw = -1;

int zkpy_crc32c_hw(void)
{
    if (use_hw < 0) {
#if HAVE_HW_CANDIDATE
        __builtin_cpu_init();
        use_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
        use_hw = 0;
#endif
    }
    return use_hw;
}

uint32_t zkpy_crc32c(uint32_t crc, const uint8_t *buf, size_t len)
{
    crc = ~crc;
#if HAVE_HW_CANDIDATE
    if (zkpy_crc32c_hw())
        return ~crc_hw(crc, buf, len);
#endif
    return ~crc_sw(crc, buf, len);
}

/* For the parity test: force the software path regardless of the CPU. */
uint32_t zkpy_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len)
{
    return ~crc_sw(~crc, buf, len);
}
