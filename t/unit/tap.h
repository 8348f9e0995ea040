/*
 * A minimal TAP producer for the pure-C unit tests, run by prove.
 */

#ifndef WELBY_TAP_H
#define WELBY_TAP_H

#include <stdio.h>
#include <string.h>

static int  tap_n;
static int  tap_failed;

#define ok(cond, ...)                                                        \
    do {                                                                     \
        int tap_ok_ = (cond) ? 1 : 0;                                        \
        tap_n++;                                                             \
        if (!tap_ok_) {                                                      \
            tap_failed++;                                                    \
        }                                                                    \
        printf("%sok %d - ", tap_ok_ ? "" : "not ", tap_n);                  \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        if (!tap_ok_) {                                                      \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);        \
        }                                                                    \
    } while (0)

#define is_str(got, expected, ...)                                           \
    do {                                                                     \
        const char *tap_g_ = (got), *tap_e_ = (expected);                    \
        ok(strcmp(tap_g_, tap_e_) == 0, __VA_ARGS__);                        \
        if (strcmp(tap_g_, tap_e_) != 0) {                                   \
            printf("#   got:      '%s'\n#   expected: '%s'\n", tap_g_,      \
                   tap_e_);                                                  \
        }                                                                    \
    } while (0)

static int
done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif /* WELBY_TAP_H */
