#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has the SSE4.2 CRC32 instruction (x86-64, checked once with CPUID); 0 elsewhere.
int ccrc32c_hardware_available(void);

/// Continues the CRC-32C register `crc` (no initial or final inversion) over `length` bytes at `data` with the
/// SSE4.2 CRC32 instruction. Call only when ccrc32c_hardware_available() returned 1.
uint32_t ccrc32c_hardware_update(uint32_t crc, const void *data, size_t length);

#endif
