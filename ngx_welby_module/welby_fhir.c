/*
 * FHIR REST request classification.
 */

#include "welby_fhir.h"


static int welby_is_hex(unsigned char c);


int
welby_fhir_id_valid(const unsigned char *id, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len == 0 || len > WELBY_FHIR_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = id[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


int
welby_request_id_valid(const unsigned char *id, size_t len)
{
    unsigned char  c;

    if (!welby_fhir_id_valid(id, len)) {
        return 0;
    }

    c = id[0];

    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
}


welby_reason_e
welby_fhir_check_path(const unsigned char *raw, size_t raw_len,
    const unsigned char *uri, size_t uri_len)
{
    size_t         i, seg;
    unsigned char  c, h1, h2;

    /*
     * nginx routes on the decoded, normalised path, but a backend behind
     * "proxy_pass" without a URI part receives the raw one and decodes and
     * normalises it its own way.  Whatever the two could read differently
     * is refused: an encoded '/' or '.' (segments and dot segments that
     * appear only after decoding), an encoded '%' (decoded twice), '\\'
     * (a separator to some servers), dot segments and empty segments
     * (resolved or merged by some servers and not by others), and ';'
     * raw or encoded: servlet containers (Tomcat and Jetty host HAPI
     * FHIR) cut a segment's ";parameters" off before they resolve dot
     * segments, so "/fhir/public/..;/Patient/1" is /fhir/Patient/1 to
     * them.  FHIR paths carry no path parameters.
     */

    seg = 0;

    for (i = 0; i <= raw_len; i++) {
        c = (i < raw_len) ? raw[i] : '/';

        if (c == '/') {
            if (i > 0 && i - seg == 0 && i < raw_len) {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            if ((i - seg == 1 && raw[seg] == '.')
                || (i - seg == 2 && raw[seg] == '.' && raw[seg + 1] == '.'))
            {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            seg = i + 1;
            continue;
        }

        if (c == '\\' || c == ';') {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        if (c != '%') {
            continue;
        }

        if (raw_len - i < 3) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        h1 = raw[i + 1];
        h2 = raw[i + 2] | 0x20;

        if (!welby_is_hex(h1) || !welby_is_hex(h2)) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        if ((h1 == '2' && (h2 == 'f' || h2 == '5' || h2 == 'e'))
            || (h1 == '3' && h2 == 'b') || (h1 == '5' && h2 == 'c'))
        {
            return WELBY_REASON_REQUEST_MALFORMED;
        }
    }

    for (i = 0; i < uri_len; i++) {
        c = uri[i];

        if (c < 0x20 || c == 0x7f || c == ';') {
            return WELBY_REASON_REQUEST_MALFORMED;
        }
    }

    return WELBY_REASON_NONE;
}

static int
welby_is_hex(unsigned char c)
{
    c |= 0x20;

    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
