/*
 * Unit tests: the reason list, OperationOutcome bodies and RFC 6750
 * challenges.
 */

#include <string.h>
#include <jansson.h>

#include "tap.h"
#include "welby_json.h"
#include "welby_reason.h"


static int
rfc6750_text(const char *s)
{
    /* error_description and error: %x20-21 / %x23-5B / %x5D-7E */
    for ( /* void */ ; *s; s++) {
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\') {
            return 0;
        }
    }

    return 1;
}


int
main(void)
{
    size_t                 n, m;
    json_t                *doc, *issue;
    json_error_t           err;
    unsigned char          buf[1024];
    const welby_reason_t  *rs;
    int                    i, texts_ok, codes_ok, statuses_ok;

    /* the list itself */

    texts_ok = codes_ok = statuses_ok = 1;

    for (i = 1; i < WELBY_REASON_COUNT; i++) {
        rs = welby_reason_get((welby_reason_e) i);

        texts_ok &= rfc6750_text(rs->text) && strlen(rs->text) > 0;
        codes_ok &= strlen(rs->code) > 0
                    && strspn(rs->code, "abcdefghijklmnopqrstuvwxyz_")
                       == strlen(rs->code)
                    && welby_reason_find((const unsigned char *) rs->code,
                                         strlen(rs->code))
                       == (welby_reason_e) i;
        statuses_ok &= rs->status >= 400 && rs->status <= 599;
    }

    ok(texts_ok, "every fixed text is RFC 6750 error_description safe");
    ok(codes_ok, "every code is snake_case, unique, and found by name");
    ok(statuses_ok, "every refusal status is 4xx or 5xx");
    ok(welby_reason_find((const unsigned char *) "nope", 4)
       == WELBY_REASON_COUNT, "an unknown code is not found");
    ok(welby_reason_get((welby_reason_e) 9999)
       == welby_reason_get(WELBY_REASON_INTERNAL_ERROR),
       "an out-of-range reason falls back to internal_error");
    is_str(welby_reason_get(WELBY_REASON_METHOD_NOT_ALLOWED)->code,
           "method_not_allowed", "method_not_allowed is named as such");
    ok(welby_reason_get(WELBY_REASON_METHOD_NOT_ALLOWED)->status == 405,
       "method_not_allowed is a 405");
    {
        int  r, auth_ok = 1;

        /* authentication failures: client_cert_* and token_*, nothing else */

        for (r = 0; r < WELBY_REASON_COUNT; r++) {
            const char *code = welby_reason_get((welby_reason_e) r)->code;
            int want = strncmp(code, "client_cert_", 12) == 0
                       || strncmp(code, "token_", 6) == 0;

            if ((welby_reason_is_auth(r) ? 1 : 0) != want) {
                auth_ok = 0;
            }
        }

        ok(auth_ok, "authentication reasons are exactly client_cert_* and "
                    "token_*");
    }
    ok(welby_reason_get(WELBY_REASON_TLS_REQUIRED)->status == 403
       && welby_reason_get(WELBY_REASON_CLIENT_CERT_NOT_ALLOWED)->status
          == 403, "tls and certificate refusals are 403");
    ok(welby_reason_get(WELBY_REASON_REQUEST_MALFORMED)->status == 400,
       "request_malformed is a 400");

    /* OperationOutcome */

    rs = welby_reason_get(WELBY_REASON_REQUEST_MALFORMED);
    n = welby_outcome_json(NULL, rs, (const unsigned char *) "r-1", 3);
    m = welby_outcome_json(buf, rs, (const unsigned char *) "r-1", 3);
    ok(n == m && n < sizeof(buf), "measured and written lengths agree");

    doc = json_loadb((const char *) buf, m, JSON_REJECT_DUPLICATES, &err);
    ok(doc != NULL, "the OperationOutcome is valid JSON");

    is_str(json_string_value(json_object_get(doc, "resourceType")),
           "OperationOutcome", "resourceType is OperationOutcome");
    is_str(json_string_value(json_object_get(doc, "id")), "r-1",
           "id is the request id");

    issue = json_array_get(json_object_get(doc, "issue"), 0);
    is_str(json_string_value(json_object_get(issue, "severity")), "error",
           "severity is error");
    is_str(json_string_value(json_object_get(issue, "code")), "invalid",
           "issue code is the FHIR issue type");
    is_str(json_string_value(json_object_get(json_array_get(
               json_object_get(json_object_get(issue, "details"), "coding"),
               0), "code")),
           "request_malformed", "details.coding carries the reason code");
    is_str(json_string_value(json_object_get(issue, "diagnostics")),
           "request-id r-1", "diagnostics quote the request id");
    json_decref(doc);

    m = welby_outcome_json(buf, rs, (const unsigned char *) "a\"b\\c\n", 6);
    doc = json_loadb((const char *) buf, m, 0, &err);
    is_str(doc ? json_string_value(json_object_get(doc, "id")) : "",
           "a\"b\\c\n", "an id with quotes and controls stays valid JSON");
    json_decref(doc);

    /* JSON escaping */

    m = welby_json_escape(buf, (const unsigned char *) "\x01\x7f", 2);
    buf[m] = '\0';
    is_str((char *) buf, "\\u0001\\u007f", "controls and DEL become \\u00XX");

    /* WWW-Authenticate */

    m = welby_www_authenticate(buf, (const unsigned char *) "welby", 5,
                               NULL, NULL, NULL);
    buf[m] = '\0';
    is_str((char *) buf, "Bearer realm=\"welby\"",
           "a bare challenge names only the realm");

    n = welby_www_authenticate(NULL, (const unsigned char *) "PHR \"x\"", 7,
                               "insufficient_scope", "Scope too narrow.",
                               "patient/*.read");
    m = welby_www_authenticate(buf, (const unsigned char *) "PHR \"x\"", 7,
                               "insufficient_scope", "Scope too narrow.",
                               "patient/*.read");
    buf[m] = '\0';
    ok(n == m, "challenge measured and written lengths agree");
    is_str((char *) buf,
           "Bearer realm=\"PHR \\\"x\\\"\", error=\"insufficient_scope\", "
           "error_description=\"Scope too narrow.\", "
           "scope=\"patient/*.read\"",
           "a full challenge escapes the realm and orders its parameters");

    return done_testing();
}
