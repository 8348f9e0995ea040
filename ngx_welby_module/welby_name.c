/*
 * Header and query parameter names as backends read them.
 */

#include "welby_name.h"


static unsigned char welby_name_fold(unsigned char c);
static int welby_name_hex(unsigned char c);
static int welby_query_byte(const unsigned char *p, size_t len, size_t *i);


int
welby_header_name_eq(const unsigned char *a, size_t a_len,
    const unsigned char *b, size_t b_len)
{
    if (a_len != b_len) {
        return 0;
    }

    return welby_header_name_prefix(a, a_len, b, b_len);
}


int
welby_header_name_prefix(const unsigned char *name, size_t len,
    const unsigned char *prefix, size_t prefix_len)
{
    size_t  i;

    if (len < prefix_len) {
        return 0;
    }

    for (i = 0; i < prefix_len; i++) {
        if (welby_name_fold(name[i]) != welby_name_fold(prefix[i])) {
            return 0;
        }
    }

    return 1;
}


int
welby_query_next(const unsigned char *args, size_t len, size_t *pos,
    welby_query_param_t *param)
{
    size_t  i, start;

    if (args == NULL || *pos > len) {
        return 0;
    }

    start = *pos;

    for (i = start; i < len && args[i] != '&' && args[i] != ';'; i++) {
        /* void */
    }

    *pos = i + 1;

    param->name = args + start;
    param->name_len = i - start;
    param->value = NULL;
    param->value_len = 0;

    for (i = start; i < start + param->name_len; i++) {
        if (args[i] == '=') {
            param->value = args + i + 1;
            param->value_len = param->name_len - (i - start) - 1;
            param->name_len = i - start;
            break;
        }
    }

    return 1;
}


size_t
welby_query_decode(unsigned char *dst, size_t cap, const unsigned char *src,
    size_t len)
{
    int     c;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; /* void */) {
        c = welby_query_byte(src, len, &i);

        if (n < cap) {
            dst[n] = (unsigned char) c;
        }

        n++;
    }

    return n;
}


int
welby_query_name_is(const unsigned char *name, size_t len,
    const unsigned char *target, size_t target_len)
{
    int            c, leading;
    size_t         i, k;
    unsigned char  t;

    i = 0;
    k = 0;
    leading = 1;

    for ( ;; ) {
        c = (i < len) ? welby_query_byte(name, len, &i) : -1;

        /* PHP keeps names as C strings */
        if (c == 0) {
            c = -1;
        }

        if (leading && c == ' ') {
            continue;
        }

        leading = 0;

        if (k == target_len) {
            return c == -1 || c == '[';
        }

        if (c == -1) {
            return 0;
        }

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        t = target[k];

        if (t >= 'A' && t <= 'Z') {
            t |= 0x20;
        }

        if (t == '_') {
            if (c != '_' && c != '.' && c != ' ' && c != '[') {
                return 0;
            }

        } else if (c != t) {
            return 0;
        }

        k++;
    }
}


size_t
welby_query_count(const unsigned char *args, size_t len,
    const unsigned char *target, size_t target_len)
{
    size_t               pos, n;
    welby_query_param_t  param;

    n = 0;
    pos = 0;

    while (welby_query_next(args, len, &pos, &param)) {
        n += welby_query_name_is(param.name, param.name_len, target,
                                 target_len);
    }

    return n;
}


static unsigned char
welby_name_fold(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c | 0x20;
    }

    return (c == '-') ? '_' : c;
}


static int
welby_name_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* the next byte of a query name once decoded; i < len on entry */
static int
welby_query_byte(const unsigned char *p, size_t len, size_t *i)
{
    int  h1, h2;

    if (p[*i] == '+') {
        (*i)++;
        return ' ';
    }

    if (p[*i] == '%' && len - *i >= 3) {
        h1 = welby_name_hex(p[*i + 1]);
        h2 = welby_name_hex(p[*i + 2]);

        if (h1 >= 0 && h2 >= 0) {
            *i += 3;
            return h1 * 16 + h2;
        }
    }

    return p[(*i)++];
}
