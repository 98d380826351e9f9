/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for zkpy's transaction log.
 *
 * Owned by the storage layer; the only consumer is zkpy/storage/crc.py through the cffi module
 * zkpy._crc32c built by csrc/crc32c_build.py.
 */
#ifndef ZKPY_CRC32C_H
#define ZKPY_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC32C: pass crc=0 to start. The pre/post inversion is done inside, so
 * zkpy_crc32c(zkpy_crc32c(0, a, n), b, m) == zkpy_crc32c(0, a||b, n+m). */
uint32_t zkpy_crc32c(uint32_t crc, const uint8_t *buf, size_t len);

/* 1 if the hardware (SSE4.2 crc32 instruction) path is used on this CPU, else 0. */
int zkpy_crc32c_hw(void);

/* Same result as zkpy_crc32c but always the portable slice-by-8 path (used by parity tests). */
uint32_t zkpy_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len);

#endif
