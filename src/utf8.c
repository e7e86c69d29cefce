/*
 * utf8.c - UTF-8 validation (see utf8.h).
 */
#include "utf8.h"

#include <stdint.h>

/* Length of the sequence that starts with byte c and the bits it carries;
 * 0 for a byte that cannot start one. */
static size_t lead_length(unsigned char c, uint32_t *cp)
{
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        *cp = c & 0x1f;
        return 2;
    }
    if ((c & 0xf0) == 0xe0) {
        *cp = c & 0x0f;
        return 3;
    }
    if ((c & 0xf8) == 0xf0) {
        *cp = c & 0x07;
        return 4;
    }
    return 0;
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = lead_length(p[i], &cp);
        if (len == 0 || p[i] == 0 || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}
