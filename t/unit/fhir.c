/*
 * Unit tests: FHIR id grammar and the path checks of the classify step.
 */

#include "tap.h"
#include "welby_fhir.h"

#define S(s)  (const unsigned char *) (s), sizeof(s) - 1


static welby_reason_e
check(const char *raw, const char *uri)
{
    return welby_fhir_check_path((const unsigned char *) raw, strlen(raw),
                                 (const unsigned char *) uri, strlen(uri));
}


int
main(void)
{
    char  id64[65], id65[66];

    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'a', 65);
    id65[65] = '\0';

    ok(welby_fhir_id_valid(S("abc-DEF.123")),
       "letters, digits, - and . form an id");
    ok(welby_fhir_id_valid((const unsigned char *) id64, 64),
       "64 chars is the longest id");
    ok(!welby_fhir_id_valid((const unsigned char *) id65, 65),
       "65 chars is too long");
    ok(!welby_fhir_id_valid(S("")), "an empty id is refused");
    ok(!welby_fhir_id_valid(S("a_b")), "underscore is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a/b")), "slash is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a b")), "space is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a\"b")), "quote is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a\xc3\xa9")),
       "non-ASCII is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a\0b")), "NUL is not in the id grammar");

    ok(welby_request_id_valid(S("0a-b.C")),
       "request id: a FHIR id that starts with a digit");
    ok(welby_request_id_valid(S("Z")), "request id: one letter");
    ok(welby_request_id_valid((const unsigned char *) id64, 64),
       "request id: 64 chars");
    ok(!welby_request_id_valid((const unsigned char *) id65, 65),
       "request id: 65 chars is too long");
    ok(!welby_request_id_valid(S("..")), "request id: \"..\" is refused");
    ok(!welby_request_id_valid(S(".")), "request id: \".\" is refused");
    ok(!welby_request_id_valid(S(".a")),
       "request id: a leading dot is refused");
    ok(!welby_request_id_valid(S("-rf")),
       "request id: a leading dash is refused");
    ok(!welby_request_id_valid(S("a_b")),
       "request id: outside the FHIR id grammar is refused");
    ok(!welby_request_id_valid(S("")), "request id: empty is refused");

    ok(check("/fhir/Patient/1", "/fhir/Patient/1") == WELBY_REASON_NONE,
       "a plain path passes");
    ok(check("/fhir/Patient/%41", "/fhir/Patient/A") == WELBY_REASON_NONE,
       "an encoded letter passes");
    ok(check("/fhir/Patient%2F1", "/fhir/Patient/1")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded slash is refused");
    ok(check("/fhir/Patient%2f1", "/fhir/Patient/1")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a lower-case encoded slash is refused");
    ok(check("/fhir/%2541", "/fhir/%41")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded percent is refused");
    ok(check("/fhir/a%5Cb", "/fhir/a\\b")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded backslash is refused");
    ok(check("/fhir/a\\b", "/fhir/a\\b")
       == WELBY_REASON_REQUEST_MALFORMED, "a raw backslash is refused");
    ok(check("/fhir/a%", "/fhir/a%")
       == WELBY_REASON_REQUEST_MALFORMED, "a truncated escape is refused");
    ok(check("/fhir/a%4", "/fhir/a%4")
       == WELBY_REASON_REQUEST_MALFORMED, "a one-digit escape is refused");
    ok(check("/fhir/a%zz", "/fhir/a%zz")
       == WELBY_REASON_REQUEST_MALFORMED, "a non-hex escape is refused");
    ok(check("/fhir/a%09b", "/fhir/a\tb")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a decoded control character is refused");
    ok(check("/fhir/a%7Fb", "/fhir/a\x7f" "b")
       == WELBY_REASON_REQUEST_MALFORMED, "a decoded DEL is refused");
    ok(check("/", "/") == WELBY_REASON_NONE, "the root passes");
    ok(check("/fhir/", "/fhir/") == WELBY_REASON_NONE,
       "a trailing slash passes");
    ok(check("/fhir/...", "/fhir/...") == WELBY_REASON_NONE,
       "three dots are a name, not a dot segment");
    ok(check("/fhir/Patient/a.b", "/fhir/Patient/a.b") == WELBY_REASON_NONE,
       "a dot inside an id passes");
    ok(check("/fhir//Patient", "/fhir/Patient")
       == WELBY_REASON_REQUEST_MALFORMED, "an empty segment is refused");
    ok(check("//fhir", "/fhir")
       == WELBY_REASON_REQUEST_MALFORMED, "a leading empty segment is refused");
    ok(check("/fhir/./Patient", "/fhir/Patient")
       == WELBY_REASON_REQUEST_MALFORMED, "a . segment is refused");
    ok(check("/fhir/x/../Patient", "/fhir/Patient")
       == WELBY_REASON_REQUEST_MALFORMED, "a .. segment is refused");
    ok(check("/fhir/Patient/..", "/fhir/")
       == WELBY_REASON_REQUEST_MALFORMED, "a trailing .. segment is refused");
    ok(check("/fhir/Patient/.", "/fhir/Patient/")
       == WELBY_REASON_REQUEST_MALFORMED, "a trailing . segment is refused");
    ok(check("/fhir/%2e%2e/admin", "/admin")
       == WELBY_REASON_REQUEST_MALFORMED, "encoded dots are refused");
    ok(check("/fhir/a%2Eb", "/fhir/a.b")
       == WELBY_REASON_REQUEST_MALFORMED,
       "an upper-case encoded dot is refused");
    ok(welby_fhir_check_path(S("/a%00b"), S("/a\0b"))
       == WELBY_REASON_REQUEST_MALFORMED, "a decoded NUL is refused");
    ok(check("/fhir/.well-known/..;/Patient/p1",
             "/fhir/.well-known/..;/Patient/p1")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a '..;' segment is refused (a dot segment to servlet containers)");
    ok(check("/fhir/Patient;jsessionid=1/p1", "/fhir/Patient;jsessionid=1/p1")
       == WELBY_REASON_REQUEST_MALFORMED, "a path parameter is refused");
    ok(check("/fhir/Patient/p1;", "/fhir/Patient/p1;")
       == WELBY_REASON_REQUEST_MALFORMED, "a trailing ';' is refused");
    ok(check("/fhir/.well-known/..%3B/Patient/p1",
             "/fhir/.well-known/..;/Patient/p1")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded ';' is refused");
    ok(check("/fhir/a%3bb", "/fhir/a;b")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a lower-case encoded ';' is refused");
    ok(check("/fhir/a;b", "/fhir/a")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a raw ';' is refused when the decoded path lost it (rewrite)");
    ok(check("/fhir/a%3Bb", "/fhir/a")
       == WELBY_REASON_REQUEST_MALFORMED,
       "an encoded ';' is refused when the decoded path lost it");
    ok(check("/fhir/a", "/fhir/a;b")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a ';' in the decoded path alone is refused");
    ok(check("/fhir/Patient/%3A", "/fhir/Patient/:") == WELBY_REASON_NONE,
       "an encoded ':' (next to ';' in ASCII) passes");

    return done_testing();
}
