/*
 * Prometheus text exposition format helpers (see welby_prom.h).
 */

#include <string.h>

#include "welby_prom.h"


const char  *welby_prom_bucket_le[WELBY_PROM_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5", "1", "2.5", "5", "10"
};

const uint64_t  welby_prom_bucket_us[WELBY_PROM_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
    500000, 1000000, 2500000, 5000000, 10000000
};

const char  *welby_prom_class_name[WELBY_PROM_CLASSES] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
};


static size_t welby_prom_utf8(const unsigned char *p, size_t len);


size_t
welby_prom_bucket(uint64_t ms)
{
    size_t    i;
    uint64_t  us;

    if (ms > UINT64_MAX / 1000) {
        return WELBY_PROM_BUCKETS;
    }

    us = ms * 1000;

    /* "le": a duration equal to a bound is in its bucket */

    for (i = 0; i < WELBY_PROM_BUCKETS; i++) {
        if (us <= welby_prom_bucket_us[i]) {
            return i;
        }
    }

    return WELBY_PROM_BUCKETS;
}


int
welby_prom_status_class(unsigned long status)
{
    if (status < 100 || status > 599) {
        return -1;
    }

    return (int) (status / 100) - 1;
}


size_t
welby_prom_escape(unsigned char *dst, const unsigned char *src, size_t len)
{
    size_t          i, n, k;
    unsigned char   c;

    static const char  hex[] = "0123456789abcdef";

    n = 0;

    for (i = 0; i < len; /* void */ ) {
        c = src[i];

        if (c == '\\' || c == '"' || c == '\n') {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = (c == '\n') ? 'n' : c;
            }

            n += 2;
            i++;
            continue;
        }

        if (c >= 0x20 && c < 0x7f) {
            if (dst) {
                dst[n] = c;
            }

            n++;
            i++;
            continue;
        }

        k = (c >= 0x80) ? welby_prom_utf8(src + i, len - i) : 0;

        if (k) {
            if (dst) {
                while (k--) {
                    dst[n++] = src[i++];
                }

            } else {
                n += k;
                i += k;
            }

            continue;
        }

        /* a control byte or a byte that starts no UTF-8 character */

        if (dst) {
            dst[n] = '\\';
            dst[n + 1] = '\\';
            dst[n + 2] = 'x';
            dst[n + 3] = hex[c >> 4];
            dst[n + 4] = hex[c & 0x0f];
        }

        n += 5;
        i++;
    }

    return n;
}


/* The length of the well-formed UTF-8 character at p (RFC 3629), or 0. */
static size_t
welby_prom_utf8(const unsigned char *p, size_t len)
{
    size_t         n, i;
    unsigned char  lo, hi;

    lo = 0x80;
    hi = 0xbf;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;

        if (p[0] == 0xe0) {
            lo = 0xa0;             /* overlong */

        } else if (p[0] == 0xed) {
            hi = 0x9f;             /* surrogates */
        }

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;

        if (p[0] == 0xf0) {
            lo = 0x90;             /* overlong */

        } else if (p[0] == 0xf4) {
            hi = 0x8f;             /* above U+10FFFF */
        }

    } else {
        return 0;
    }

    if (len < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


size_t
welby_prom_name_find(const welby_prom_name_t *names, size_t used,
    unsigned family, const unsigned char *label, size_t len)
{
    size_t  i;

    for (i = 0; i < used; i++) {
        if (names[i].family == family && names[i].len == len
            && memcmp(names[i].data, label, len) == 0)
        {
            return i;
        }
    }

    return used;
}


size_t
welby_prom_name_add(welby_prom_name_t *names, uint32_t *used, size_t cap,
    unsigned family, const unsigned char *label, size_t len)
{
    size_t  i;

    if (len > WELBY_PROM_LABEL_MAX || family > 255) {
        return cap;
    }

    i = welby_prom_name_find(names, *used, family, label, len);

    if (i < *used) {
        return i;
    }

    if (*used >= cap) {
        return cap;
    }

    names[i].family = (unsigned char) family;
    names[i].len = (unsigned char) len;
    memcpy(names[i].data, label, len);

    (*used)++;

    return i;
}


size_t
welby_prom_seconds(unsigned char *dst, uint64_t ms)
{
    size_t         n, i;
    uint64_t       s;
    unsigned char  tmp[24];

    s = ms / 1000;
    n = 0;

    do {
        tmp[n++] = (unsigned char) ('0' + s % 10);
        s /= 10;
    } while (s);

    for (i = 0; i < n; i++) {
        dst[i] = tmp[n - 1 - i];
    }

    dst[n++] = '.';
    dst[n++] = (unsigned char) ('0' + ms % 1000 / 100);
    dst[n++] = (unsigned char) ('0' + ms % 100 / 10);
    dst[n++] = (unsigned char) ('0' + ms % 10);

    return n;
}
