/*
 * libFuzzer target: header name and query name comparisons, on arbitrary
 * bytes.  Besides crashes and sanitizer reports it checks each answer
 * against a second, plain computation:
 *
 *   - two header names are equal exactly when the parameter names nginx's
 *     fastcgi module would make of them ("HTTP_" + a-z upper-cased, '-'
 *     made '_') are, and a prefix is an equal leading part;
 *   - the query's parameters lie in the query, in order, and with their
 *     separators give the query back;
 *   - a name is access_token exactly when its fully decoded bytes, with
 *     PHP's mangling spelled out here once more, are.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_name.h"


#define AT  (const unsigned char *) "access_token", sizeof("access_token") - 1

static void
fastcgi_name(unsigned char *dst, const unsigned char *src, size_t len)
{
    size_t         i;
    unsigned char  ch;

    for (i = 0; i < len; i++) {
        ch = src[i];

        if (ch >= 'a' && ch <= 'z') {
            ch &= ~0x20;

        } else if (ch == '-') {
            ch = '_';
        }

        dst[i] = ch;
    }
}


static int
php_is(const unsigned char *name, size_t len, const char *target)
{
    size_t          n, i, k, t;
    unsigned char  *d;
    int             rc;

    n = welby_query_decode(NULL, 0, name, len);

    d = malloc(n + 1);
    if (d == NULL) {
        abort();
    }

    if (welby_query_decode(d, n, name, len) != n) {
        abort();
    }

    d[n] = '\0';
    n = strlen((char *) d);

    for (i = 0; i < n && d[i] == ' '; i++) { /* void */ }

    t = strlen(target);
    rc = (n - i >= t);

    for (k = 0; rc && k < t; k++) {
        unsigned char  c = d[i + k];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c == '.' || c == ' ' || c == '[') {
            c = '_';
        }

        rc = (c == (unsigned char) target[k]);
    }

    if (rc && n - i > t && d[i + t] != '[') {
        rc = 0;
    }

    free(d);

    return rc;
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int                  eq, pre;
    size_t               half, blen, pos, n, next, cnt;
    unsigned char       *a, *b;
    welby_query_param_t  p;

    /* header names: the two halves */

    half = size / 2;
    blen = size - half;

    a = malloc(half + 1);
    b = malloc(blen + 1);
    if (a == NULL || b == NULL) {
        abort();
    }

    fastcgi_name(a, data, half);
    fastcgi_name(b, data + half, blen);

    eq = welby_header_name_eq(data, half, data + half, blen);

    if (eq != (half == blen && memcmp(a, b, half) == 0)) {
        abort();
    }

    if (eq != welby_header_name_eq(data + half, blen, data, half)) {
        abort();
    }

    pre = welby_header_name_prefix(data + half, blen, data, half);

    if (pre != (blen >= half && memcmp(a, b, half) == 0)) {
        abort();
    }

    if (!welby_header_name_eq(data, size, data, size)) {
        abort();
    }

    free(a);
    free(b);

    /* query parameters: the whole input */

    pos = 0;
    next = 0;
    n = 0;
    cnt = 0;

    while (welby_query_next(data, size, &pos, &p)) {

        if (p.name != data + next || next > size
            || p.name_len > size - next)
        {
            abort();
        }

        next += p.name_len;

        if (p.value) {
            if (p.value != data + next + 1 || data[next] != '=') {
                abort();
            }

            next += 1 + p.value_len;
        }

        if (next > size || (next < size && data[next] != '&'
                            && data[next] != ';'))
        {
            abort();
        }

        if (memchr(p.name, '&', p.name_len) || memchr(p.name, ';', p.name_len)
            || memchr(p.name, '=', p.name_len))
        {
            abort();
        }

        next++;

        if (welby_query_name_is(p.name, p.name_len, AT)
            != php_is(p.name, p.name_len, "access_token"))
        {
            abort();
        }

        cnt += welby_query_name_is(p.name, p.name_len, AT);

        if (welby_query_decode(NULL, 0, p.name, p.name_len) > p.name_len) {
            abort();
        }

        n++;
    }

    if (n == 0 || next != size + 1
        || cnt != welby_query_count(data, size, AT))
    {
        abort();
    }

    return 0;
}
