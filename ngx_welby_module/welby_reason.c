/*
 * Reason codes, refusal bodies and RFC 6750 challenges.
 */

#include <string.h>

#include "welby_json.h"
#include "welby_reason.h"


#define WELBY_REASON_ROW(name, code, status, issue, text, bearer)           \
    { code, status, issue, text, bearer },

static const welby_reason_t  welby_reasons[] = {
    WELBY_REASONS(WELBY_REASON_ROW)
};

#undef WELBY_REASON_ROW


static size_t welby_put(unsigned char *dst, size_t n, const char *s);
static size_t welby_put_json(unsigned char *dst, size_t n, const char *s);


const welby_reason_t *
welby_reason_get(welby_reason_e reason)
{
    if ((unsigned) reason >= WELBY_REASON_COUNT) {
        reason = WELBY_REASON_INTERNAL_ERROR;
    }

    return &welby_reasons[reason];
}


welby_reason_e
welby_reason_find(const unsigned char *code, size_t len)
{
    size_t  i;

    for (i = 1; i < WELBY_REASON_COUNT; i++) {
        if (strlen(welby_reasons[i].code) == len
            && memcmp(welby_reasons[i].code, code, len) == 0)
        {
            return (welby_reason_e) i;
        }
    }

    return WELBY_REASON_COUNT;
}


size_t
welby_outcome_json(unsigned char *dst, const welby_reason_t *reason,
    const unsigned char *id, size_t id_len)
{
    size_t  n;

    n = 0;

    n += welby_put(dst, n, "{\"resourceType\":\"OperationOutcome\",\"id\":\"");
    n += welby_json_escape(dst ? dst + n : NULL, id, id_len);
    n += welby_put(dst, n, "\",\"issue\":[{\"severity\":\"error\",\"code\":\"");
    n += welby_put_json(dst, n, reason->issue);
    n += welby_put(dst, n, "\",\"details\":{\"coding\":[{\"system\":"
                           "\"urn:welby:reason\",\"code\":\"");
    n += welby_put_json(dst, n, reason->code);
    n += welby_put(dst, n, "\"}],\"text\":\"");
    n += welby_put_json(dst, n, reason->text);
    n += welby_put(dst, n, "\"},\"diagnostics\":\"request-id ");
    n += welby_json_escape(dst ? dst + n : NULL, id, id_len);
    n += welby_put(dst, n, "\"}]}");

    return n;
}


size_t
welby_www_authenticate(unsigned char *dst, const unsigned char *realm,
    size_t realm_len, const char *error, const char *description,
    const char *scope)
{
    size_t  n, i;

    n = welby_put(dst, 0, "Bearer realm=\"");

    for (i = 0; i < realm_len; i++) {
        if (realm[i] == '"' || realm[i] == '\\') {
            if (dst) {
                dst[n] = '\\';
            }
            n++;
        }

        if (dst) {
            dst[n] = realm[i];
        }
        n++;
    }

    n += welby_put(dst, n, "\"");

    if (error) {
        n += welby_put(dst, n, ", error=\"");
        n += welby_put(dst, n, error);
        n += welby_put(dst, n, "\"");
    }

    if (description) {
        n += welby_put(dst, n, ", error_description=\"");
        n += welby_put(dst, n, description);
        n += welby_put(dst, n, "\"");
    }

    if (scope) {
        n += welby_put(dst, n, ", scope=\"");
        n += welby_put(dst, n, scope);
        n += welby_put(dst, n, "\"");
    }

    return n;
}


static size_t
welby_put(unsigned char *dst, size_t n, const char *s)
{
    size_t  len;

    len = strlen(s);

    if (dst) {
        memcpy(dst + n, s, len);
    }

    return len;
}


static size_t
welby_put_json(unsigned char *dst, size_t n, const char *s)
{
    return welby_json_escape(dst ? dst + n : NULL, (const unsigned char *) s,
                             strlen(s));
}
