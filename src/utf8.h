/*
 * utf8.h - UTF-8 validation shared by the library (item and user ids) and
 * the HTTP front (keys, names). No allocation, no state.
 */
#ifndef SQLCACHED_UTF8_H
#define SQLCACHED_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF) and contains no NUL byte. Cannot fail. */
bool utf8_valid(const char *s, size_t n);

#endif
