/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Assertions for unit tests: on failure print the expression, both values and
 * the location, then abort, so a failing test names what went wrong.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT_TRUE(expr)                                                               \
        do {                                                                            \
                if (!(expr)) {                                                          \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s\n",            \
                                __FILE__, __LINE__, __func__, #expr);                   \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

/* Integers compared as intmax_t (ASSERT_CMP_INT) or uintmax_t (ASSERT_CMP_UINT). */
#define ASSERT_CMP_INT(a, op, b)                                                        \
        do {                                                                            \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                      \
                if (!(_a op _b)) {                                                      \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s %s %s "        \
                                "(%jd %s %jd, 0x%jx vs 0x%jx)\n",                       \
                                __FILE__, __LINE__, __func__, #a, #op, #b,              \
                                _a, #op, _b, (uintmax_t) _a, (uintmax_t) _b);           \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_CMP_UINT(a, op, b)                                                       \
        do {                                                                            \
                uintmax_t _a = (uintmax_t) (a), _b = (uintmax_t) (b);                   \
                if (!(_a op _b)) {                                                      \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s %s %s "        \
                                "(%ju %s %ju, 0x%jx vs 0x%jx)\n",                       \
                                __FILE__, __LINE__, __func__, #a, #op, #b,              \
                                _a, #op, _b, _a, _b);                                   \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP_INT(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP_INT(a, !=, b)
#define ASSERT_UEQ(a, b) ASSERT_CMP_UINT(a, ==, b)

/* A 0-or-negative-errno result that must be 0. */
#define ASSERT_OK(expr)                                                                 \
        do {                                                                            \
                intmax_t _r = (intmax_t) (expr);                                        \
                if (_r < 0) {                                                           \
                        fprintf(stderr, "%s:%d: %s: %s failed: %jd (%s)\n",             \
                                __FILE__, __LINE__, __func__, #expr, _r,                \
                                strerror((int) -_r));                                   \
                        abort();                                                        \
                }                                                                       \
        } while (0)

/* A result that must be exactly the negative errno err. */
#define ASSERT_ERROR(expr, err)                                                         \
        do {                                                                            \
                intmax_t _r = (intmax_t) (expr);                                        \
                if (_r != -(intmax_t) (err)) {                                          \
                        fprintf(stderr, "%s:%d: %s: %s returned %jd (%s), expected -%s\n", \
                                __FILE__, __LINE__, __func__, #expr, _r,                \
                                _r < 0 ? strerror((int) -_r) : "success", #err);        \
                        abort();                                                        \
                }                                                                       \
        } while (0)

/* A 0-or-negative-errno result that must be exactly `expected` (0 included). */
#define ASSERT_RET(expr, expected)                                                      \
        do {                                                                            \
                int _r = (expr), _e = (expected);                                       \
                if (_r != _e) {                                                         \
                        fprintf(stderr, "%s:%d: %s: %s returned %d (%s), expected %d (%s)\n", \
                                __FILE__, __LINE__, __func__, #expr, _r, strerror(-_r), \
                                _e, strerror(-_e));                                     \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_STREQ(a, b)                                                              \
        do {                                                                            \
                const char *_a = (a), *_b = (b);                                        \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s == %s "        \
                                "(\"%s\" vs \"%s\")\n",                                 \
                                __FILE__, __LINE__, __func__, #a, #b,                   \
                                _a ?: "(null)", _b ?: "(null)");                        \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

#define TEST(fn)                                                                        \
        do {                                                                            \
                fprintf(stderr, "== %s\n", #fn);                                        \
                fn();                                                                   \
        } while (0)
