/*
 * Unit tests: audit records as JSON lines and FHIR AuditEvent lines, query
 * names and keyed hashes, the hash chain, RFC 5424 syslog messages.
 */

#include <stdlib.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "tap.h"
#include "welby_audit.h"


#define S(s)  { (const unsigned char *) (s), sizeof(s) - 1 }


static json_t *
load(const unsigned char *buf, size_t len)
{
    json_error_t  err;

    /* one line: the LF last, and nowhere else */
    if (len == 0 || buf[len - 1] != '\n'
        || memchr(buf, '\n', len - 1) != NULL)
    {
        return NULL;
    }

    return json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, &err);
}


static const char *
get_str(json_t *doc, const char *path1, const char *path2)
{
    json_t  *v;

    v = json_object_get(doc, path1);
    if (path2 != NULL) {
        v = json_object_get(v, path2);
    }

    return json_is_string(v) ? json_string_value(v) : "(not a string)";
}


static json_int_t
get_int(json_t *doc, const char *path1, const char *path2)
{
    json_t  *v;

    v = json_object_get(doc, path1);
    if (path2 != NULL) {
        v = json_object_get(v, path2);
    }

    return json_is_integer(v) ? json_integer_value(v) : -999;
}


/* whether needle occurs in the len bytes of buf */
static int
contains(const unsigned char *buf, size_t len, const char *needle)
{
    size_t  i, n;

    n = strlen(needle);

    for (i = 0; i + n <= len; i++) {
        if (memcmp(buf + i, needle, n) == 0) {
            return 1;
        }
    }

    return 0;
}


/* the value at a path of object keys and array indexes: "agent.0.who" */
static json_t *
jget(json_t *v, const char *path)
{
    char        key[64], *end;
    size_t      n;
    const char *p;

    for (p = path; v != NULL && *p != '\0'; p += n + (p[n] == '.')) {
        n = strcspn(p, ".");
        if (n >= sizeof(key)) {
            return NULL;
        }

        memcpy(key, p, n);
        key[n] = '\0';

        if (json_is_array(v)) {
            v = json_array_get(v, strtoul(key, &end, 10));

        } else {
            v = json_object_get(v, key);
        }
    }

    return v;
}


static const char *
jstr(json_t *doc, const char *path)
{
    json_t  *v;

    v = jget(doc, path);

    return json_is_string(v) ? json_string_value(v) : "(not a string)";
}


static void
sha256_hex(char out[65], const char *prev, const unsigned char *p,
    size_t len)
{
    size_t              i;
    unsigned int        md_len;
    EVP_MD_CTX         *ctx;
    unsigned char       md[EVP_MAX_MD_SIZE];
    static const char   hex[] = "0123456789abcdef";

    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, prev, 64);
    EVP_DigestUpdate(ctx, p, len);
    EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);

    for (i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }

    out[64] = '\0';
}


static size_t
names(char *out, size_t cap, const char *args)
{
    size_t  n;

    n = welby_audit_query_names((unsigned char *) out, cap - 1,
                                (const unsigned char *) args, strlen(args));
    out[n < cap ? n : cap - 1] = '\0';

    return n;
}


int
main(void)
{
    int                    i, all;
    char                   expect[65], nm[4096], query[8192], *p;
    size_t                 n, m, k;
    json_t                *doc, *v;
    unsigned char         *big, *buf, hex[65], prev[65], next[65];
    welby_audit_record_t   r;
    static const int64_t   rules[] = { 942100, 941110 };
    static const char     *methods[] = {
        "POST", "GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "get"
    };
    static const char     *actions[] = {
        "C", "R", "R", "U", "U", "D", "E", "E"
    };
    static const char      zeros[] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    static const struct {
        const char              *name;
        welby_audit_decision_e   decision;
        welby_reason_e           reason;
        int64_t                  status;
        const char              *expect;
    } cells[] = {
        { "allowed", WELBY_AUDIT_DECISION_ALLOW, WELBY_REASON_NONE, 200,
          "allow/operation/informational" },
        { "allowed", WELBY_AUDIT_DECISION_ALLOW, WELBY_REASON_NONE, 404,
          "allow/operation/informational" },
        { "allowed", WELBY_AUDIT_DECISION_ALLOW, WELBY_REASON_NONE, 499,
          "allow/operation/informational" },
        { "allowed", WELBY_AUDIT_DECISION_ALLOW, WELBY_REASON_NONE, 502,
          "error/event/error" },
        { "detect", WELBY_AUDIT_DECISION_DETECT, WELBY_REASON_TOKEN_MISSING,
          200, "allow/operation/notice" },
        { "detect", WELBY_AUDIT_DECISION_DETECT,
          WELBY_REASON_CLIENT_CERT_REQUIRED, 200, "allow/operation/notice" },
        { "detect", WELBY_AUDIT_DECISION_DETECT,
          WELBY_REASON_METHOD_NOT_ALLOWED, 200, "allow/operation/notice" },
        { "detect", WELBY_AUDIT_DECISION_DETECT, WELBY_REASON_TOKEN_MISSING,
          502, "error/event/error" },
        { "refused", WELBY_AUDIT_DECISION_DENY, WELBY_REASON_TOKEN_MISSING,
          401, "deny/authentication/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY, WELBY_REASON_TOKEN_BINDING,
          401, "deny/authentication/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY,
          WELBY_REASON_CLIENT_CERT_REQUIRED, 403,
          "deny/authentication/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY,
          WELBY_REASON_CLIENT_CERT_NOT_ALLOWED, 403,
          "deny/authentication/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY, WELBY_REASON_TOKEN_MISSING,
          499, "deny/authentication/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY,
          WELBY_REASON_REQUEST_MALFORMED, 400, "deny/event/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY,
          WELBY_REASON_METHOD_NOT_ALLOWED, 405, "deny/event/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY, WELBY_REASON_TLS_REQUIRED,
          403, "deny/event/warning" },
        { "refused", WELBY_AUDIT_DECISION_DENY, WELBY_REASON_INTERNAL_ERROR,
          500, "deny/event/error" },
        { "not checked", WELBY_AUDIT_DECISION_NONE, WELBY_REASON_NONE, 200,
          "error/event/warning" },
        { "not checked", WELBY_AUDIT_DECISION_NONE, WELBY_REASON_NONE, 301,
          "error/event/warning" },
        { "not checked", WELBY_AUDIT_DECISION_NONE, WELBY_REASON_NONE, 404,
          "error/event/warning" },
        { "not checked", WELBY_AUDIT_DECISION_NONE, WELBY_REASON_NONE, 503,
          "error/event/error" }
    };

    buf = malloc(256 * 1024);
    big = malloc(128 * 1024);
    if (buf == NULL || big == NULL) {
        return 2;
    }

    /* an empty record: the required members only */

    welby_audit_record_init(&r);
    n = welby_audit_json(NULL, 0, &r);
    m = welby_audit_json(buf, 65536, &r);
    ok(n == m, "length-only mode gives the written length (empty record)");
    doc = load(buf, m);
    ok(doc != NULL, "an empty record is one JSON line");
    ok(json_object_size(doc) == 4,
       "an empty record holds schema, category, severity, outcome only");
    ok(get_int(doc, "schema", NULL) == WELBY_AUDIT_SCHEMA,
       "schema is WELBY_AUDIT_SCHEMA");
    is_str(get_str(doc, "outcome", NULL), "error",
           "an outcome nobody set reads as error, not allow");
    ok(json_object_get(doc, "http") == NULL
       && json_object_get(doc, "agent") == NULL
       && json_object_get(doc, "chain") == NULL
       && json_object_get(doc, "reason") == NULL,
       "absent objects, chain and reason are omitted");
    ok(buf[0] == '{' && buf[m - 2] == '}', "compact: no leading or "
       "trailing space");
    json_decref(doc);

    /* a full record */

    welby_audit_record_init(&r);
    r.time_ms = INT64_C(1714564800123);
    r.id = (welby_str_t) S("req-1");
    r.client_request_id = (welby_str_t) S("victim-req-42");
    r.node = (welby_str_t) S("node-a");
    r.stream = (welby_str_t) S("4242.1714560000000");
    r.seq = 7;
    r.category = WELBY_AUDIT_CAT_AUTHENTICATION;
    r.severity = WELBY_AUDIT_SEV_WARNING;
    r.outcome = WELBY_AUDIT_OUTCOME_DENY;
    r.reason = WELBY_REASON_TOKEN_EXPIRED;
    r.method = (welby_str_t) S("GET");
    r.path = (welby_str_t) S("/fhir/Observation");
    r.query_names = (welby_str_t) S("patient,code");
    r.query_hmac = (welby_str_t) S("ab12");
    r.status = 401;
    r.bytes_in = 0;
    r.bytes_out = 345;
    r.time_taken_ms = 3;
    r.interaction = (welby_str_t) S("search-type");
    r.resource_type = (welby_str_t) S("Observation");
    r.patient = (welby_str_t) S("p-9");
    r.sub = (welby_str_t) S("user-1");
    r.client_id = (welby_str_t) S("app-1");
    r.iss = (welby_str_t) S("https://idp.example");
    r.fhir_user = (welby_str_t) S("Patient/p-9");
    r.role = (welby_str_t) S("patient");
    r.amr = (welby_str_t) S("pwd otp");
    r.jti = (welby_str_t) S("jti-1");
    r.cert_sha256 = (welby_str_t) S("0c9c07");
    r.ip = (welby_str_t) S("192.0.2.7");
    r.port = 51234;
    r.country = (welby_str_t) S("JP");
    r.asn = 64500;
    r.tls_protocol = (welby_str_t) S("TLSv1.3");
    r.tls_cipher = (welby_str_t) S("TLS_AES_256_GCM_SHA384");
    r.tls_client_cert = (welby_str_t) S("failed");
    r.tls_client_cert_error = 10;
    r.tls_proxy = (welby_str_t) S("10.0.0.5");
    r.waf_rules = rules;
    r.nwaf_rules = 2;
    r.limit_name = (welby_str_t) S("per-user");
    r.limit_key = (welby_str_t) S("sub:user-1");
    r.upstream_status = 502;

    n = welby_audit_json(NULL, 0, &r);
    m = welby_audit_json(buf, 65536, &r);
    ok(n == m, "length-only mode gives the written length (full record)");
    doc = load(buf, m);
    ok(doc != NULL, "a full record is one JSON line");
    is_str(get_str(doc, "time", NULL), "2024-05-01T12:00:00.123Z",
           "time is UTC with milliseconds");
    is_str(get_str(doc, "id", NULL), "req-1", "id");
    is_str(get_str(doc, "client_request_id", NULL), "victim-req-42",
           "client_request_id: the id the client sent, apart from id");
    ok(strstr((char *) buf, "\"id\":\"req-1\",\"client_request_id\":"
                            "\"victim-req-42\",\"node\":") != NULL,
       "client_request_id follows id, before node");
    is_str(get_str(doc, "node", NULL), "node-a", "node");
    is_str(get_str(doc, "stream", NULL), "4242.1714560000000", "stream");
    ok(get_int(doc, "seq", NULL) == 7, "seq");
    is_str(get_str(doc, "category", NULL), "authentication", "category");
    is_str(get_str(doc, "severity", NULL), "warning", "severity");
    is_str(get_str(doc, "outcome", NULL), "deny", "outcome");
    is_str(get_str(doc, "reason", NULL), "token_expired",
           "reason is the code of the one reason list");
    is_str(get_str(doc, "http", "method"), "GET", "http.method");
    is_str(get_str(doc, "http", "path"), "/fhir/Observation", "http.path");
    v = json_object_get(json_object_get(json_object_get(doc, "http"),
                                        "query"), "names");
    ok(json_is_array(v) && json_array_size(v) == 2
       && strcmp(json_string_value(json_array_get(v, 1)), "code") == 0,
       "http.query.names is an array of the names");
    is_str(json_string_value(json_object_get(json_object_get(
               json_object_get(doc, "http"), "query"), "hmac")), "ab12",
           "http.query.hmac");
    ok(get_int(doc, "http", "status") == 401, "http.status");
    ok(get_int(doc, "http", "bytes_in") == 0, "a zero number is present");
    ok(get_int(doc, "http", "bytes_out") == 345, "http.bytes_out");
    ok(get_int(doc, "http", "time_ms") == 3, "http.time_ms");
    is_str(get_str(doc, "fhir", "interaction"), "search-type",
           "fhir.interaction");
    is_str(get_str(doc, "fhir", "patient"), "p-9", "fhir.patient");
    ok(json_object_get(json_object_get(doc, "fhir"), "id") == NULL,
       "an absent member of a present object is omitted");
    is_str(get_str(doc, "agent", "fhir_user"), "Patient/p-9",
           "agent.fhir_user");
    v = json_object_get(json_object_get(doc, "agent"), "amr");
    ok(json_is_array(v) && json_array_size(v) == 2
       && strcmp(json_string_value(json_array_get(v, 0)), "pwd") == 0,
       "agent.amr is an array");
    is_str(get_str(doc, "agent", "jti"), "jti-1", "agent.jti");
    is_str(get_str(doc, "agent", "cert_sha256"), "0c9c07",
           "agent.cert_sha256");
    is_str(get_str(doc, "source", "ip"), "192.0.2.7", "source.ip");
    ok(get_int(doc, "source", "port") == 51234
       && get_int(doc, "source", "asn") == 64500, "source.port, asn");
    is_str(get_str(doc, "tls", "protocol"), "TLSv1.3", "tls.protocol");
    is_str(get_str(doc, "tls", "cipher"), "TLS_AES_256_GCM_SHA384",
           "tls.cipher");
    is_str(get_str(doc, "tls", "client_cert"), "failed", "tls.client_cert");
    ok(get_int(doc, "tls", "client_cert_error") == 10,
       "tls.client_cert_error is the X509 error number");
    is_str(get_str(doc, "tls", "proxy"), "10.0.0.5", "tls.proxy");
    v = json_object_get(json_object_get(doc, "waf"), "rules");
    ok(json_is_array(v) && json_array_size(v) == 2
       && json_integer_value(json_array_get(v, 1)) == 941110,
       "waf.rules is an array of numbers");
    is_str(get_str(doc, "limit", "name"), "per-user", "limit.name");
    is_str(get_str(doc, "limit", "key"), "sub:user-1", "limit.key");
    ok(get_int(doc, "upstream", "status") == 502, "upstream.status");
    ok(strncmp((char *) buf, "{\"schema\":1,\"time\":", 19) == 0,
       "schema is the first member");
    json_decref(doc);

    /* a buffer too small: the full length, nothing written past cap */

    k = welby_audit_json(NULL, 0, &r);
    p = malloc(k - 1);
    ok(p != NULL && welby_audit_json((unsigned char *) p, k - 1, &r) == k,
       "a short buffer gets the needed length and no overflow");
    free(p);

    /* hostile strings */

    welby_audit_record_init(&r);
    r.id = (welby_str_t) S("a\"b\\c\nd\re\tf\x01g\x1fh\x7f");
    r.path = (welby_str_t) S("/x\xff" "y\xc0\xaf" "z\xed\xa0\x80" "w\xe2\x82");
    r.sub = (welby_str_t) S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e");
    r.iss = (welby_str_t) S("\xf4\x90\x80\x80");
    r.role = (welby_str_t) S("\",\"outcome\":\"allow");
    n = welby_audit_json(NULL, 0, &r);
    m = welby_audit_json(buf, 65536, &r);
    ok(n == m, "length-only mode gives the written length (hostile)");
    doc = load(buf, m);
    ok(doc != NULL, "hostile strings still make one valid JSON line");
    is_str(get_str(doc, "id", NULL), "a\"b\\c\nd\re\tf\x01g\x1fh\x7f",
           "quotes, backslashes and control characters round-trip");
    is_str(get_str(doc, "agent", "sub"),
           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e",
           "valid UTF-8 passes as it is");
    is_str(get_str(doc, "http", "path"),
           "/x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd"
           "\xef\xbf\xbdw\xef\xbf\xbd\xef\xbf\xbd",
           "invalid, overlong, surrogate and cut UTF-8 become U+FFFD");
    is_str(get_str(doc, "agent", "iss"),
           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd",
           "a code point above U+10FFFF becomes U+FFFD");
    is_str(get_str(doc, "outcome", NULL), "error",
           "a string cannot inject a member");
    is_str(get_str(doc, "agent", "role"), "\",\"outcome\":\"allow",
           "the injected text stays inside its string");
    json_decref(doc);

    memset(big, 'A', 100000);
    big[50000] = '"';
    big[60000] = '\\';
    big[70000] = 0xfe;
    welby_audit_record_init(&r);
    r.path.data = big;
    r.path.len = 100000;
    n = welby_audit_json(NULL, 0, &r);
    m = welby_audit_json(buf, 256 * 1024, &r);
    ok(n == m, "length-only mode gives the written length (100 kB)");
    doc = load(buf, m);
    ok(doc != NULL, "a 100 kB value makes valid JSON");
    ok(doc != NULL
       && strlen(get_str(doc, "http", "path")) == 100000 + 2,
       "a long value is kept whole (one byte became three)");
    json_decref(doc);

    welby_audit_record_init(&r);
    r.patient = (welby_str_t) S("p");
    r.id.data = (const unsigned char *) "";
    r.id.len = 0;
    m = welby_audit_json(buf, 65536, &r);
    doc = load(buf, m);
    ok(doc != NULL && json_object_size(json_object_get(doc, "fhir")) == 1,
       "an object with one present member holds just it");
    is_str(get_str(doc, "id", NULL), "", "an empty string is present");
    json_decref(doc);

    /* timestamps */

    welby_audit_record_init(&r);
    r.time_ms = 0;
    m = welby_audit_json(buf, 65536, &r);
    doc = load(buf, m);
    is_str(get_str(doc, "time", NULL), "1970-01-01T00:00:00.000Z",
           "the epoch");
    json_decref(doc);

    r.time_ms = INT64_C(951782400999);
    m = welby_audit_json(buf, 65536, &r);
    doc = load(buf, m);
    is_str(get_str(doc, "time", NULL), "2000-02-29T00:00:00.999Z",
           "a leap day");
    json_decref(doc);

    r.time_ms = INT64_C(253402300799999);
    m = welby_audit_json(buf, 65536, &r);
    doc = load(buf, m);
    is_str(get_str(doc, "time", NULL), "9999-12-31T23:59:59.999Z",
           "the last four-digit year");
    json_decref(doc);

    r.time_ms = INT64_C(253402300800000);
    m = welby_audit_json(buf, 65536, &r);
    doc = load(buf, m);
    ok(doc != NULL && json_object_get(doc, "time") == NULL,
       "a time past year 9999 is omitted, not garbled");
    json_decref(doc);

    /* query names */

    names(nm, sizeof(nm), "patient=1&code=2&patient=3");
    is_str(nm, "patient,code", "duplicate names appear once, first order");
    names(nm, sizeof(nm), "=x&&a=1&=&b=");
    is_str(nm, "a,b", "empty names and empty parameters are dropped");
    names(nm, sizeof(nm), "flag&John%20Smith&a=1");
    is_str(nm, "a", "a parameter without '=' is dropped");
    names(nm, sizeof(nm), "a\x01" "b=1&c\n=2&d\x7f=3&e=4");
    is_str(nm, "e", "names with control characters are dropped");
    names(nm, sizeof(nm), "a b=1&c,d=2&\xc3\xa9=3&\"=4&f=5");
    is_str(nm, "f", "spaces, ',', '\"' and non-ASCII drop a name");
    names(nm, sizeof(nm),
          "_has:Observation:patient:code=1&subject:Patient.name=2"
          "&code:text=3&_id=4&a%5B0%5D=5");
    is_str(nm, "_has:Observation:patient:code,subject:Patient.name,"
               "code:text,_id,a[0]",
           "FHIR modifiers and chains are kept, encoded names decoded");
    names(nm, sizeof(nm), "na%6De=Yamada&birth%64ate=1970&name=x");
    is_str(nm, "name,birthdate",
           "an encoded name is listed as the backend reads it, once");
    names(nm, sizeof(nm), "a=1;b=2&c=3");
    is_str(nm, "a,b,c", "';' separates parameters too");
    names(nm, sizeof(nm), "a%2Cb=1&a%20b=2&a+b=3&a%00=4&%25=5&c=6");
    is_str(nm, "%,c", "a name that decodes to ',', a space or a NUL is "
           "dropped; '%%' once decoded is kept");
    memset(query, 'n', 64);
    strcpy(query + 64, "=1&");
    memset(query + 67, 'm', 65);
    strcpy(query + 132, "=2&z=3");
    names(nm, sizeof(nm), query);
    ok(strlen(nm) == 66 && nm[63] == 'n' && strcmp(nm + 64, ",z") == 0,
       "a 64-byte name is kept, a 65-byte name dropped");
    p = query;
    for (i = 0; i < 40; i++) {
        p += sprintf(p, "%sp%d=v%d", i ? "&" : "", i, i);
    }
    names(nm, sizeof(nm), query);
    for (p = nm, k = 0; *p; p++) {
        k += *p == ',';
    }
    ok(k + 1 == WELBY_AUDIT_QUERY_NAMES, "at most 32 names");
    ok(strncmp(nm, "p0,p1,", 6) == 0 && strcmp(nm + strlen(nm) - 4, ",p31")
       == 0, "the first 32 names, in order");
    ok(strstr(nm, "v1") == NULL, "no value appears");
    n = welby_audit_query_names(NULL, 0, (const unsigned char *) query,
                                strlen(query));
    ok(n == strlen(nm), "length-only mode gives the written length (names)");
    ok(welby_audit_query_names(NULL, 0, NULL, 0) == 0
       && names(nm, sizeof(nm), "") == 0, "an empty query has no names");
    names(nm, sizeof(nm), "a=1&a=2&a=3&b");
    is_str(nm, "a", "repeats do not count against the limit");

    /* the query in a record: names and a keyed hash, never values */

    strcpy(query, "name=Yamada%20Taro&birthdate=1970-01-01&code=E11");
    k = names(nm, sizeof(nm), query);
    ok(welby_audit_query_hash(hex, (const unsigned char *) "k3y", 3,
                              (const unsigned char *) query, strlen(query))
       == 0, "the query hash is computed");
    welby_audit_record_init(&r);
    r.query_names.data = (const unsigned char *) nm;
    r.query_names.len = k;
    r.query_hmac.data = hex;
    r.query_hmac.len = 64;
    m = welby_audit_json(buf, 65536, &r);
    ok(!contains(buf, m, "Yamada") && !contains(buf, m, "1970")
       && !contains(buf, m, "E11"), "no query value reaches the record");
    ok(contains(buf, m, "\"names\":[\"name\",\"birthdate\",\"code\"]"),
       "the names do");

    ok(welby_audit_query_hash(hex, (const unsigned char *) "Jefe", 4,
                              (const unsigned char *)
                              "what do ya want for nothing?", 28) == 0,
       "HMAC of RFC 4231 test case 2");
    is_str((char *) hex,
           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
           "HMAC-SHA256 matches RFC 4231 test case 2");
    memcpy(expect, hex, 65);
    welby_audit_query_hash(hex, (const unsigned char *) "Jeff", 4,
                           (const unsigned char *)
                           "what do ya want for nothing?", 28);
    ok(strcmp(expect, (char *) hex) != 0, "another key, another hash");
    ok(welby_audit_query_hash(hex, (const unsigned char *) "", 0,
                              (const unsigned char *) "a=1", 3) == -1,
       "an empty key is refused");
    ok(welby_audit_query_hash(hex, (const unsigned char *) "k", 1, NULL, 0)
       == 0 && strlen((char *) hex) == 64, "an empty query is hashed");

    /* the hash chain */

    ok(welby_audit_chain(next, NULL, (const unsigned char *) "{\"a\":1", 6)
       == 0, "a chain step is computed");
    sha256_hex(expect, zeros, (const unsigned char *) "{\"a\":1", 6);
    is_str((char *) next, expect, "the first step hashes 64 '0' || P");
    welby_audit_chain(hex, (const unsigned char *) zeros,
                      (const unsigned char *) "{\"a\":1", 6);
    is_str((char *) hex, (char *) next, "prev NULL is 64 '0'");
    welby_audit_chain(hex, next, (const unsigned char *) "{\"a\":1", 6);
    ok(strcmp((char *) hex, (char *) next) != 0,
       "the same text after another prev chains differently");
    welby_audit_chain(hex, NULL, (const unsigned char *) "{\"a\":2", 6);
    ok(strcmp((char *) hex, (char *) next) != 0,
       "one byte altered changes the chain");

    welby_audit_record_init(&r);
    r.time_ms = INT64_C(1714564800123);
    r.id = (welby_str_t) S("req-1");
    r.stream = (welby_str_t) S("1.1");
    r.seq = 1;
    r.outcome = WELBY_AUDIT_OUTCOME_ALLOW;

    n = welby_audit_json_chained(NULL, 0, &r, NULL, next);
    m = welby_audit_json_chained(buf, 65536, &r, NULL, next);
    ok(n == m, "length-only mode gives the written length (chained)");
    doc = load(buf, m);
    ok(doc != NULL, "a chained record is one JSON line");
    is_str(get_str(doc, "chain", NULL), (char *) next,
           "the line carries the chain value returned");
    json_decref(doc);
    ok(m > WELBY_AUDIT_CHAIN_TAIL + 1
       && memcmp(buf + m - 1 - WELBY_AUDIT_CHAIN_TAIL, ",\"chain\":\"", 10)
          == 0
       && memcmp(buf + m - 3, "\"}\n", 3) == 0,
       "chain is the last member, in the fixed tail");
    sha256_hex(expect, zeros, buf, m - 1 - WELBY_AUDIT_CHAIN_TAIL);
    is_str((char *) next, expect,
           "chain = SHA-256(64 '0' || the line before ,\"chain\")");

    memcpy(prev, next, 65);
    r.seq = 2;
    r.id = (welby_str_t) S("req-2");
    m = welby_audit_json_chained(buf, 65536, &r, prev, next);
    sha256_hex(expect, (char *) prev, buf, m - 1 - WELBY_AUDIT_CHAIN_TAIL);
    is_str((char *) next, expect, "the second line chains from the first");

    n = welby_audit_json_chained(buf, 65536, &r, prev, hex);
    ok(n == m && strcmp((char *) hex, (char *) next) == 0,
       "the chain is deterministic");

    memcpy(hex, "unchanged", 10);
    ok(welby_audit_json_chained(buf, m - 1, &r, prev, hex) == m
       && strcmp((char *) hex, "unchanged") == 0,
       "a line that does not fit leaves next_hex alone");

    r.chain = next;
    n = welby_audit_json(NULL, 0, &r);
    k = welby_audit_json(buf + 4096, 65536, &r);
    welby_audit_json_chained(buf, 65536, &r, prev, hex);
    ok(n == k && k == m && memcmp(buf, buf + 4096, m) == 0,
       "welby_audit_json() with r->chain writes the same line");

    /* a new chain in another file names the line before it */

    r.chain = NULL;
    r.seq = 3;
    r.id = (welby_str_t) S("req-3");
    r.continues_seq = 2;
    r.continues_chain = next;
    memcpy(prev, next, 65);
    m = welby_audit_json_chained(buf, 65536, &r, NULL, hex);
    doc = load(buf, m);
    ok(get_int(doc, "continues", "seq") == 2
       && strcmp(get_str(doc, "continues", "chain"), (char *) prev) == 0,
       "continues holds the seq and chain of the line before");
    json_decref(doc);
    k = sizeof(",\"continues\":{\"seq\":2,\"chain\":\"\"}") - 1 + 64;
    ok(m > k + WELBY_AUDIT_CHAIN_TAIL + 1
       && memcmp(buf + m - 1 - WELBY_AUDIT_CHAIN_TAIL - k,
                 ",\"continues\":{\"seq\":2,\"chain\":\"", 31) == 0
       && memcmp(buf + m - 1 - WELBY_AUDIT_CHAIN_TAIL - 2, "\"}", 2) == 0,
       "continues is the member before the chain");
    sha256_hex(expect, zeros, buf, m - 1 - WELBY_AUDIT_CHAIN_TAIL);
    is_str((char *) hex, expect,
           "a continues line chains from 64 '0', continues included");
    r.continues_chain = NULL;
    m = welby_audit_json_chained(buf, 65536, &r, NULL, hex);
    ok(!contains(buf, m, "continues"),
       "without continues_chain there is no continues member");
    r.continues_seq = -1;

    /* FHIR AuditEvent */

    welby_audit_record_init(&r);
    r.time_ms = INT64_C(1714564800123);
    r.id = (welby_str_t) S("req-1");
    r.client_request_id = (welby_str_t) S("client-7");
    r.node = (welby_str_t) S("node-a");
    r.stream = (welby_str_t) S("4242.1");
    r.seq = 7;
    r.outcome = WELBY_AUDIT_OUTCOME_DENY;
    r.reason = WELBY_REASON_TOKEN_EXPIRED;
    r.method = (welby_str_t) S("GET");
    r.path = (welby_str_t) S("/fhir/Observation");
    r.query_names = (welby_str_t) S("patient,code");
    r.query_hmac = (welby_str_t) S("ab12");
    r.status = 401;
    r.interaction = (welby_str_t) S("search-type");
    r.resource_type = (welby_str_t) S("Observation");
    r.patient = (welby_str_t) S("p-9");
    r.sub = (welby_str_t) S("user-1");
    r.client_id = (welby_str_t) S("app-1");
    r.iss = (welby_str_t) S("https://idp.example");
    r.fhir_user = (welby_str_t) S("Practitioner/pr-1");
    r.role = (welby_str_t) S("clinician");
    r.jti = (welby_str_t) S("jti-1");
    r.ip = (welby_str_t) S("192.0.2.7");
    r.port = 51234;

    n = welby_audit_fhir(NULL, 0, &r);
    m = welby_audit_fhir(buf, 65536, &r);
    ok(n == m, "length-only mode gives the written length (FHIR)");
    doc = load(buf, m);
    ok(doc != NULL, "a FHIR record is one JSON line");
    ok(strncmp((char *) buf, "{\"resourceType\":\"AuditEvent\",", 29) == 0,
       "resourceType AuditEvent is the first member");
    is_str(jstr(doc, "id"), "req-1", "id is the request id");
    is_str(jstr(doc, "recorded"), "2024-05-01T12:00:00.123Z",
           "recorded is an instant in UTC with milliseconds");
    is_str(jstr(doc, "type.system"),
           "http://terminology.hl7.org/CodeSystem/audit-event-type",
           "type.system is audit-event-type");
    is_str(jstr(doc, "type.code"), "rest", "type.code is rest");
    is_str(jstr(doc, "subtype.0.system"),
           "http://hl7.org/fhir/restful-interaction",
           "subtype is a restful-interaction");
    is_str(jstr(doc, "subtype.0.code"), "search-type",
           "subtype.code is the interaction");
    is_str(jstr(doc, "action"), "E",
           "a search is an Execute even over GET, as in BALP");
    is_str(jstr(doc, "outcome"), "4", "deny is outcome 4, minor failure");
    is_str(jstr(doc, "outcomeDesc"), "token_expired",
           "outcomeDesc is the reason code");
    ok(json_array_size(jget(doc, "agent")) == 2, "two agents");
    ok(json_is_true(jget(doc, "agent.0.requestor"))
       && json_is_false(jget(doc, "agent.1.requestor")),
       "the client is the requestor, the gateway is not");
    is_str(jstr(doc, "agent.0.type.coding.0.code"), "110153",
           "agent[0] is the Source Role ID");
    is_str(jstr(doc, "agent.0.extension.0.url"),
           "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
           "ihe-agent-details", "agent[0] carries the BALP agent details");
    v = jget(doc, "agent.0.extension.0.extension");
    ok(json_array_size(v) == 4, "four agent details present");
    ok(strcmp(jstr(v, "0.url"), "subject") == 0
       && strcmp(jstr(v, "0.valueString"), "user-1") == 0
       && strcmp(jstr(v, "1.url"), "clientId") == 0
       && strcmp(jstr(v, "1.valueString"), "app-1") == 0
       && strcmp(jstr(v, "2.url"), "tokenId") == 0
       && strcmp(jstr(v, "2.valueString"), "jti-1") == 0,
       "subject, clientId and tokenId are valueStrings");
    ok(strcmp(jstr(v, "3.url"), "issuer") == 0
       && strcmp(jstr(v, "3.valueUri"), "https://idp.example") == 0,
       "issuer is a valueUri");
    is_str(jstr(doc, "agent.0.policy.0"), "jti-1",
           "agent[0].policy holds the token id, as BALP records it");
    is_str(jstr(doc, "agent.0.who.identifier.value"), "user-1",
           "who.identifier.value is sub");
    is_str(jstr(doc, "agent.0.who.identifier.system"), "https://idp.example",
           "who.identifier.system is iss");
    is_str(jstr(doc, "agent.0.who.reference"), "Practitioner/pr-1",
           "who.reference is fhirUser");
    is_str(jstr(doc, "agent.0.role.0.text"), "clinician",
           "the user role is agent.role");
    ok(strcmp(jstr(doc, "agent.0.network.address"), "192.0.2.7") == 0
       && strcmp(jstr(doc, "agent.0.network.type"), "2") == 0,
       "network is the client IP address, type 2");
    ok(strcmp(jstr(doc, "agent.1.who.display"), "node-a") == 0
       && strcmp(jstr(doc, "agent.1.type.coding.0.code"), "110152") == 0,
       "agent[1] is this node, the Destination Role ID");
    ok(strcmp(jstr(doc, "source.site"), "node-a") == 0
       && strcmp(jstr(doc, "source.observer.display"), "node-a") == 0
       && strcmp(jstr(doc, "source.type.0.code"), "4") == 0,
       "source is this node, an Application Server");
    is_str(jstr(doc, "entity.0.what.reference"), "Patient/p-9",
           "the first entity is the patient");
    ok(strcmp(jstr(doc, "entity.0.type.code"), "1") == 0
       && strcmp(jstr(doc, "entity.0.role.code"), "1") == 0,
       "the patient entity is a Person in the Patient role");
    ok(strcmp(jstr(doc, "entity.1.what.type"), "Observation") == 0
       && strcmp(jstr(doc, "entity.1.type.code"), "2") == 0
       && strcmp(jstr(doc, "entity.1.role.code"), "4") == 0,
       "a type-level request names the type, a System Object");
    ok(strcmp(jstr(doc, "entity.2.role.code"), "24") == 0
       && strcmp(jstr(doc, "entity.2.detail.0.type"), "query-parameters")
          == 0
       && strcmp(jstr(doc, "entity.2.detail.0.valueString"),
                 "patient,code") == 0
       && strcmp(jstr(doc, "entity.2.detail.1.type"), "query-hmac") == 0
       && strcmp(jstr(doc, "entity.2.detail.1.valueString"), "ab12") == 0,
       "the query entity holds the names and the hash as details");
    ok(jget(doc, "entity.2.query") == NULL,
       "no entity.query, which would hold the raw query");
    ok(strcmp(jstr(doc, "entity.3.what.identifier.value"), "req-1") == 0
       && strcmp(jstr(doc, "entity.3.type.system"),
                 "https://profiles.ihe.net/ITI/BALP/CodeSystem/"
                 "BasicAuditEntityType") == 0
       && strcmp(jstr(doc, "entity.3.type.code"), "XrequestId") == 0,
       "the last entity is BALP's transaction, with the request id");
    ok(strcmp(jstr(doc, "entity.3.detail.0.type"), "client-request-id") == 0
       && strcmp(jstr(doc, "entity.3.detail.0.valueString"), "client-7")
          == 0 && json_array_size(jget(doc, "entity.3.detail")) == 1,
       "the client's own request id is the transaction's one detail");
    ok(json_array_size(jget(doc, "entity")) == 4,
       "four entities: patient, resource, query, transaction");
    ok(jget(doc, "node") == NULL && jget(doc, "stream") == NULL
       && jget(doc, "seq") == NULL && jget(doc, "chain") == NULL,
       "without a chain the line is a plain AuditEvent");
    json_decref(doc);

    /* a request that reaches two patients: one entity each */

    r.patient = (welby_str_t) S("p-9 p-10");
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    ok(doc != NULL
       && strcmp(jstr(doc, "entity.0.what.reference"), "Patient/p-9") == 0
       && strcmp(jstr(doc, "entity.1.what.reference"), "Patient/p-10") == 0
       && strcmp(jstr(doc, "entity.1.role.code"), "1") == 0
       && strcmp(jstr(doc, "entity.2.what.type"), "Observation") == 0
       && json_array_size(jget(doc, "entity")) == 5,
       "space-separated patients are one Patient entity each");
    json_decref(doc);
    r.patient = (welby_str_t) S("p-9");

    k = welby_audit_fhir(NULL, 0, &r);
    p = malloc(k - 1);
    ok(p != NULL && welby_audit_fhir((unsigned char *) p, k - 1, &r) == k,
       "a short buffer gets the needed FHIR length and no overflow");
    free(p);

    /* the query in a FHIR record: names and the hash only */

    strcpy(query, "name=Yamada%20Taro&birthdate=1970-01-01&code=E11");
    k = names(nm, sizeof(nm), query);
    welby_audit_query_hash(hex, (const unsigned char *) "k3y", 3,
                           (const unsigned char *) query, strlen(query));
    welby_audit_record_init(&r);
    r.interaction = (welby_str_t) S("search-type");
    r.resource_type = (welby_str_t) S("Patient");
    r.query_names.data = (const unsigned char *) nm;
    r.query_names.len = k;
    r.query_hmac.data = hex;
    r.query_hmac.len = 64;
    m = welby_audit_fhir(buf, 65536, &r);
    ok(!contains(buf, m, "Yamada") && !contains(buf, m, "1970")
       && !contains(buf, m, "E11"), "no query value reaches a FHIR record");
    doc = load(buf, m);
    is_str(jstr(doc, "entity.1.detail.0.valueString"), "name,birthdate,code",
           "the names do");
    is_str(jstr(doc, "entity.1.detail.1.valueString"), (char *) hex,
           "and the keyed hash");
    json_decref(doc);

    /* actions, outcomes, absences */

    for (i = 0; i < 8; i++) {
        welby_audit_record_init(&r);
        r.method.data = (const unsigned char *) methods[i];
        r.method.len = strlen(methods[i]);
        m = welby_audit_fhir(buf, 65536, &r);
        doc = load(buf, m);
        is_str(jstr(doc, "action"), actions[i], "%s is action %s",
               methods[i], actions[i]);
        json_decref(doc);
    }

    welby_audit_record_init(&r);
    r.method = (welby_str_t) S("POST");
    r.interaction = (welby_str_t) S("update");
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    ok(strcmp(jstr(doc, "action"), "U") == 0
       && strcmp(jstr(doc, "subtype.0.code"), "update") == 0,
       "a known interaction sets the action over the method");
    json_decref(doc);

    r.interaction = (welby_str_t) S("bogus");
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    ok(jget(doc, "subtype") == NULL && strcmp(jstr(doc, "action"), "C") == 0,
       "an unknown interaction: no subtype, the action from the method");
    json_decref(doc);

    welby_audit_record_init(&r);
    r.outcome = WELBY_AUDIT_OUTCOME_ALLOW;
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    is_str(jstr(doc, "outcome"), "0", "allow is outcome 0, success");
    json_decref(doc);

    welby_audit_record_init(&r);
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    ok(doc != NULL, "an empty record is a FHIR line too");
    is_str(jstr(doc, "outcome"), "8",
           "an outcome nobody set is 8, serious failure");
    ok(jget(doc, "id") == NULL && jget(doc, "recorded") == NULL
       && jget(doc, "action") == NULL && jget(doc, "subtype") == NULL
       && jget(doc, "outcomeDesc") == NULL && jget(doc, "entity") == NULL,
       "absent values leave their elements out");
    ok(jget(doc, "agent.0.extension") == NULL
       && jget(doc, "agent.0.who") == NULL
       && jget(doc, "agent.0.role") == NULL
       && jget(doc, "agent.0.network") == NULL
       && json_is_true(jget(doc, "agent.0.requestor")),
       "an anonymous client: requestor, no details, who or network");
    ok(strcmp(jstr(doc, "source.observer.display"), "welby") == 0
       && jget(doc, "source.site") == NULL
       && strcmp(jstr(doc, "agent.1.who.display"), "welby") == 0,
       "no node: the required observer names welby");
    json_decref(doc);

    welby_audit_record_init(&r);
    r.client_id = (welby_str_t) S("app-2");
    r.sub.data = (const unsigned char *) "";
    r.sub.len = 0;
    r.patient.data = (const unsigned char *) "";
    r.patient.len = 0;
    r.resource_type = (welby_str_t) S("Observation");
    r.resource_id = (welby_str_t) S("o-1");
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    v = jget(doc, "agent.0.extension.0.extension");
    ok(json_array_size(v) == 1
       && strcmp(jstr(v, "0.url"), "clientId") == 0,
       "only the agent details present are written");
    ok(jget(doc, "agent.0.who") == NULL,
       "an empty sub is absent: FHIR has no empty strings");
    ok(json_array_size(jget(doc, "entity")) == 1
       && strcmp(jstr(doc, "entity.0.what.reference"), "Observation/o-1")
          == 0, "an instance is referenced as type/id; no empty patient");
    json_decref(doc);

    welby_audit_record_init(&r);
    r.id = (welby_str_t) S("gw-1");
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    ok(json_array_size(jget(doc, "entity")) == 1
       && strcmp(jstr(doc, "entity.0.what.identifier.value"), "gw-1") == 0
       && jget(doc, "entity.0.detail") == NULL,
       "no client request id: the transaction entity has no detail");
    json_decref(doc);

    welby_audit_record_init(&r);
    r.id = (welby_str_t) S("a\"b\\c\nd");
    r.sub = (welby_str_t) S("x\xff\",\"outcome\":\"0");
    r.patient = (welby_str_t) S("p\"}]},{\"x");
    r.node = (welby_str_t) S("n\x01");
    n = welby_audit_fhir(NULL, 0, &r);
    m = welby_audit_fhir(buf, 65536, &r);
    doc = load(buf, m);
    ok(n == m && doc != NULL, "hostile strings make one valid FHIR line");
    ok(strcmp(jstr(doc, "outcome"), "8") == 0
       && strcmp(jstr(doc, "agent.0.who.identifier.value"),
                 "x\xef\xbf\xbd\",\"outcome\":\"0") == 0
       && strcmp(jstr(doc, "entity.0.what.reference"),
                 "Patient/p\"}]},{\"x") == 0,
       "values stay inside their strings, invalid UTF-8 made U+FFFD");
    json_decref(doc);

    /* the FHIR line chained */

    welby_audit_record_init(&r);
    r.time_ms = INT64_C(1714564800123);
    r.id = (welby_str_t) S("req-1");
    r.node = (welby_str_t) S("node-a");
    r.stream = (welby_str_t) S("1.1");
    r.seq = 1;
    r.outcome = WELBY_AUDIT_OUTCOME_ALLOW;
    r.method = (welby_str_t) S("GET");
    r.patient = (welby_str_t) S("p-9");

    n = welby_audit_fhir_chained(NULL, 0, &r, NULL, next);
    m = welby_audit_fhir_chained(buf, 65536, &r, NULL, next);
    ok(n == m, "length-only mode gives the written length (FHIR chained)");
    doc = load(buf, m);
    ok(doc != NULL, "a chained FHIR record is one JSON line");
    is_str(jstr(doc, "chain"), (char *) next,
           "the FHIR line carries the chain value returned");
    ok(strcmp(jstr(doc, "stream"), "1.1") == 0
       && strcmp(jstr(doc, "node"), "node-a") == 0
       && json_integer_value(jget(doc, "seq")) == 1,
       "stream, node and seq are top-level members, for audit-verify");
    is_str(jstr(doc, "resourceType"), "AuditEvent",
           "the rest is the AuditEvent");
    json_decref(doc);
    ok(m > WELBY_AUDIT_CHAIN_TAIL + 1
       && memcmp(buf + m - 1 - WELBY_AUDIT_CHAIN_TAIL, ",\"chain\":\"", 10)
          == 0
       && memcmp(buf + m - 3, "\"}\n", 3) == 0,
       "chain is the last member of the FHIR line, in the fixed tail");
    sha256_hex(expect, zeros, buf, m - 1 - WELBY_AUDIT_CHAIN_TAIL);
    is_str((char *) next, expect,
           "FHIR chain = SHA-256(64 '0' || the line before ,\"chain\")");

    memcpy(prev, next, 65);
    r.seq = 2;
    r.id = (welby_str_t) S("req-2");
    m = welby_audit_fhir_chained(buf, 65536, &r, prev, next);
    sha256_hex(expect, (char *) prev, buf, m - 1 - WELBY_AUDIT_CHAIN_TAIL);
    is_str((char *) next, expect,
           "the second FHIR line chains from the first");

    memcpy(hex, "unchanged", 10);
    ok(welby_audit_fhir_chained(buf, m - 1, &r, prev, hex) == m
       && strcmp((char *) hex, "unchanged") == 0,
       "a FHIR line that does not fit leaves next_hex alone");

    r.chain = next;
    n = welby_audit_fhir(NULL, 0, &r);
    k = welby_audit_fhir(buf + 4096, 65536, &r);
    welby_audit_fhir_chained(buf, 65536, &r, prev, hex);
    ok(n == k && k == m && memcmp(buf, buf + 4096, m) == 0,
       "welby_audit_fhir() with r->chain writes the same line");

    r.chain = NULL;
    r.seq = 9;
    r.continues_seq = 8;
    r.continues_chain = prev;
    m = welby_audit_fhir_chained(buf, 65536, &r, NULL, hex);
    doc = load(buf, m);
    ok(json_integer_value(jget(doc, "continues.seq")) == 8
       && strcmp(jstr(doc, "continues.chain"), (char *) prev) == 0
       && json_integer_value(jget(doc, "seq")) == 9,
       "a FHIR line names the line before it too");
    json_decref(doc);
    sha256_hex(expect, zeros, buf, m - 1 - WELBY_AUDIT_CHAIN_TAIL);
    is_str((char *) hex, expect,
           "and chains from 64 '0', continues included");
    r.continues_chain = NULL;
    r.continues_seq = -1;

    /* RFC 5424 */

    welby_audit_record_init(&r);
    r.time_ms = INT64_C(1714564800123);
    r.id = (welby_str_t) S("req-1");
    r.node = (welby_str_t) S("node a");
    r.stream = (welby_str_t) S("4242.1");
    r.category = WELBY_AUDIT_CAT_AUTHENTICATION;
    r.severity = WELBY_AUDIT_SEV_WARNING;
    r.outcome = WELBY_AUDIT_OUTCOME_DENY;
    r.reason = WELBY_REASON_TOKEN_SIGNATURE;
    r.status = 401;
    r.sub = (welby_str_t) S("a\"b\\c]d");
    r.client_id = (welby_str_t) S("x\ny\xff");
    r.chain = next;

    n = welby_audit_syslog(NULL, 0, &r, 13, NULL, NULL, 32473, 0);
    m = welby_audit_syslog(buf, 65536, &r, 13, NULL, NULL, 32473, 0);
    buf[m] = '\0';
    ok(n == m, "length-only mode gives the written length (syslog)");
    ok(strncmp((char *) buf, "<108>1 2024-05-01T12:00:00.123Z node_a welby "
                             "4242.1 authentication [welby@32473 ", 76) == 0,
       "PRI = 13 * 8 + warning; timestamp; node as hostname; app; "
       "stream as PROCID; category as MSGID");
    ok(strstr((char *) buf, " sub=\"a\\\"b\\\\c\\]d\"") != NULL,
       "SD-PARAM values escape '\"', '\\' and ']'");
    ok(strstr((char *) buf, " client_id=\"x\xef\xbf\xbdy\xef\xbf\xbd\"")
       != NULL, "a control character or invalid UTF-8 becomes U+FFFD");
    ok(strstr((char *) buf, " id=\"req-1\" outcome=\"deny\" "
                            "reason=\"token_signature\" status=\"401\"")
       != NULL, "id, outcome, reason and status are structured data");
    ok(strstr((char *) buf, " chain=\"") != NULL,
       "the chain value is structured data too");
    ok(memchr(buf, '\n', m) == NULL, "a syslog message is one line");
    k = welby_audit_json(buf + 65536, 65536, &r);
    ok(m > k && memcmp(buf + m - (k - 1), buf + 65536, k - 1) == 0
       && buf[m - k] == ' ',
       "MSG is the JSON record without LF or BOM");

    m = welby_audit_syslog(buf, 65536, &r, 13, NULL, NULL, 32473, 1);
    buf[m] = '\0';
    k = strtoul((char *) buf, &p, 10);
    ok(*p == ' ' && k == m - (size_t) (p + 1 - (char *) buf),
       "the octet count equals the byte length of the rest");
    ok(k == n, "the counted message is the unframed one");
    ok(welby_audit_syslog(NULL, 0, &r, 13, NULL, NULL, 32473, 1) == m,
       "length-only mode gives the written length (octet counting)");

    m = welby_audit_syslog(buf, 65536, &r, 4, "gw-1.example", "phr", 0, 0);
    buf[m] = '\0';
    ok(strncmp((char *) buf, "<36>1 2024-05-01T12:00:00.123Z gw-1.example "
                             "phr 4242.1 authentication - {", 70) == 0,
       "hostname and app as given; no PEN, no structured data");

    all = 1;
    for (i = WELBY_AUDIT_SEV_EMERGENCY; i <= WELBY_AUDIT_SEV_DEBUG; i++) {
        r.severity = (welby_audit_severity_e) i;
        m = welby_audit_syslog(buf, 65536, &r, 10, NULL, NULL, 0, 0);
        buf[m] = '\0';
        all &= (size_t) atoi((char *) buf + 1) == (size_t) (10 * 8 + i);
    }
    ok(all, "every severity maps to its RFC 5424 value");

    r.severity = WELBY_AUDIT_SEV_NOTICE;
    m = welby_audit_syslog(buf, 65536, &r, 99, NULL, NULL, 0, 0);
    ok(strncmp((char *) buf, "<109>1 ", 7) == 0,
       "a facility out of range becomes 13 (log audit)");

    welby_audit_record_init(&r);
    m = welby_audit_syslog(buf, 65536, &r, 13, NULL, NULL, 1, 0);
    buf[m] = '\0';
    ok(strncmp((char *) buf, "<110>1 - - welby - event [welby@1 "
                             "outcome=\"error\"] {\"schema\":1,", 54) == 0,
       "absent header fields are NILVALUE");

    memset(big, 'h', 300);
    big[300] = '\0';
    m = welby_audit_syslog(buf, 65536, &r, 13, (char *) big, NULL, 0, 0);
    buf[m] = '\0';
    ok(strncmp((char *) buf + 9, (char *) big, 255) == 0
       && buf[9 + 255] == ' ', "HOSTNAME is cut at 255 bytes");

    /* outcome, category and severity: one cell each (README.md's table) */

    for (i = 0; i < (int) (sizeof(cells) / sizeof(cells[0])); i++) {
        welby_audit_record_init(&r);
        welby_audit_classify(&r, cells[i].decision, cells[i].reason,
                             cells[i].status);
        snprintf(expect, sizeof(expect), "%s/%s/%s",
                 welby_audit_outcome_name(r.outcome),
                 welby_audit_category_name(r.category),
                 welby_audit_severity_name(r.severity));
        is_str(expect, cells[i].expect, "%s, %s, status %d: %s",
               cells[i].name, welby_reason_get(cells[i].reason)->code[0]
               ? welby_reason_get(cells[i].reason)->code : "no reason",
               (int) cells[i].status, cells[i].expect);
    }

    free(buf);
    free(big);

    return done_testing();
}
