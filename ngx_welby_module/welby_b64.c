/*
 * Strict base64url.  Canonical input only: see welby_b64.h.
 */

#include "welby_b64.h"


/* 0..63, or 0xff for a character outside the alphabet. */
static const unsigned char  welby_b64url_values[256] = {
#define XX  0xff
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, 62, XX, XX,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, XX, XX, XX, XX, XX, XX,
    XX,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, XX, XX, XX, XX, 63,
    XX, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX,
    XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX, XX
#undef XX
};

static const char  welby_b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


int
welby_b64url_decode(unsigned char *dst, size_t *dst_len,
    const unsigned char *src, size_t len)
{
    size_t          i, rest;
    unsigned char  *d;
    unsigned int    a, b, c, e;

    rest = len % 4;

    if (rest == 1) {
        return -1;
    }

    d = dst;

    for (i = 0; i + 4 <= len; i += 4) {
        a = welby_b64url_values[src[i]];
        b = welby_b64url_values[src[i + 1]];
        c = welby_b64url_values[src[i + 2]];
        e = welby_b64url_values[src[i + 3]];

        if ((a | b | c | e) == 0xff) {
            return -1;
        }

        *d++ = (unsigned char) (a << 2 | b >> 4);
        *d++ = (unsigned char) (b << 4 | c >> 2);
        *d++ = (unsigned char) (c << 6 | e);
    }

    if (rest) {
        a = welby_b64url_values[src[i]];
        b = welby_b64url_values[src[i + 1]];
        c = rest == 3 ? welby_b64url_values[src[i + 2]] : 0;

        if ((a | b | c) == 0xff) {
            return -1;
        }

        *d++ = (unsigned char) (a << 2 | b >> 4);

        if (rest == 2) {
            /* the low 4 bits of b are padding and must be zero */
            if (b & 0x0f) {
                return -1;
            }

        } else {
            *d++ = (unsigned char) (b << 4 | c >> 2);

            if (c & 0x03) {
                return -1;
            }
        }
    }

    *dst_len = (size_t) (d - dst);

    return 0;
}


size_t
welby_b64url_encode(unsigned char *dst, const unsigned char *src, size_t len)
{
    size_t          i;
    unsigned char  *d;

    d = dst;

    for (i = 0; i + 3 <= len; i += 3) {
        *d++ = welby_b64url_alphabet[src[i] >> 2];
        *d++ = welby_b64url_alphabet[(src[i] & 0x03) << 4 | src[i + 1] >> 4];
        *d++ = welby_b64url_alphabet[(src[i + 1] & 0x0f) << 2
                                     | src[i + 2] >> 6];
        *d++ = welby_b64url_alphabet[src[i + 2] & 0x3f];
    }

    if (len - i == 1) {
        *d++ = welby_b64url_alphabet[src[i] >> 2];
        *d++ = welby_b64url_alphabet[(src[i] & 0x03) << 4];

    } else if (len - i == 2) {
        *d++ = welby_b64url_alphabet[src[i] >> 2];
        *d++ = welby_b64url_alphabet[(src[i] & 0x03) << 4 | src[i + 1] >> 4];
        *d++ = welby_b64url_alphabet[(src[i + 1] & 0x0f) << 2];
    }

    return (size_t) (d - dst);
}
