// The hardware CRC-32C (Castagnoli) update for PSCheckpoint: the SSE4.2 CRC32 instruction computes exactly the
// reflected 0x82F63B78 table step of PSCheckpoint/CRC32C.swift, 8 bytes per instruction. Swift cannot reach the
// instruction itself (short of building the whole module for SSE4.2), so this one function is C, as are
// CFusedUpdate's AVX2 loops; everything else (inversions, seeds, the table fallback) stays in Swift.
#include "ccrc32c.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>

int ccrc32c_hardware_available(void) {
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    return (ecx & bit_SSE4_2) != 0;
}

// One stream, 8 bytes per instruction (about 8 bytes per 3 cycles, the instruction's latency).
__attribute__((target("sse4.2"))) static uint64_t update_words(uint64_t crc, const unsigned char *p, size_t words) {
    for (size_t i = 0; i < words; i++) {
        uint64_t word;
        memcpy(&word, p + 8 * i, 8);
        crc = _mm_crc32_u64(crc, word);
    }
    return crc;
}

__attribute__((target("sse4.2"))) uint32_t ccrc32c_hardware_update(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    while (length > 0 && ((uintptr_t)p & 7) != 0) {
        crc = _mm_crc32_u8(crc, *p++);
        length--;
    }
    uint64_t wide = update_words(crc, p, length / 8);
    p += length & ~(size_t)7;
    length &= 7;
    crc = (uint32_t)wide;
    while (length > 0) {
        crc = _mm_crc32_u8(crc, *p++);
        length--;
    }
    return crc;
}

#else

int ccrc32c_hardware_available(void) { return 0; }

uint32_t ccrc32c_hardware_update(uint32_t crc, const void *data, size_t length) {
    (void)data;
    (void)length;
    return crc;
}

#endif
