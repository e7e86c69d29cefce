/*
 * fuzz.h - helpers shared by the libFuzzer targets in fuzz/ (built and run
 * by `make fuzz`, see scripts/fuzz).
 *
 * Each target feeds the input to one of the pure parsers (no MHD
 * connection, no files, no network) and checks the invariants its contract
 * promises; a broken invariant aborts, so libFuzzer records it as a crash.
 */
#ifndef SQLCACHED_FUZZ_H
#define SQLCACHED_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Abort with a message (libFuzzer saves the input) unless cond holds. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a NUL-terminated copy cut at its first NUL, as a header value
 * or a URL arrives from MHD. The caller frees it. */
static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
