/*
 * JSON string escaping.
 */

#include "welby_json.h"


size_t
welby_json_escape(unsigned char *dst, const unsigned char *src, size_t len)
{
    size_t                      n, i;
    unsigned char               c;
    static const unsigned char  hex[] = "0123456789abcdef";

    n = 0;

    for (i = 0; i < len; i++) {
        c = src[i];

        if (c == '"' || c == '\\') {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = c;
            }
            n += 2;

        } else if (c < 0x20 || c == 0x7f) {
            if (dst) {
                dst[n] = '\\';
                dst[n + 1] = 'u';
                dst[n + 2] = '0';
                dst[n + 3] = '0';
                dst[n + 4] = hex[c >> 4];
                dst[n + 5] = hex[c & 0xf];
            }
            n += 6;

        } else {
            if (dst) {
                dst[n] = c;
            }
            n++;
        }
    }

    return n;
}
