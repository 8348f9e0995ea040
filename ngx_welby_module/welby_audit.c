/*
 * Audit records: JSON lines, FHIR AuditEvent lines, the hash chain, query
 * names and keyed query hashes, RFC 5424 messages.  See welby_audit.h for
 * the schemas and the exact chain rule.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "welby_audit.h"
#include "welby_json.h"
#include "welby_name.h"


#define WELBY_AUDIT_FACILITY_DEFAULT  13        /* "log audit" */

/* RFC 5424 section 6: header field lengths */
#define WELBY_SYSLOG_HOSTNAME_MAX     255
#define WELBY_SYSLOG_APP_NAME_MAX     48
#define WELBY_SYSLOG_PROCID_MAX       128
#define WELBY_SYSLOG_MSGID_MAX        32

/* FHIR R4 code systems and the IHE BALP agent extension */
#define WELBY_FHIR_EVENT_TYPE                                                \
    "http://terminology.hl7.org/CodeSystem/audit-event-type"
#define WELBY_FHIR_INTERACTION        "http://hl7.org/fhir/restful-interaction"
#define WELBY_FHIR_DCM                                                       \
    "http://dicom.nema.org/resources/ontology/DCM"
#define WELBY_FHIR_SOURCE_TYPE                                               \
    "http://terminology.hl7.org/CodeSystem/security-source-type"
#define WELBY_FHIR_ENTITY_TYPE                                               \
    "http://terminology.hl7.org/CodeSystem/audit-entity-type"
#define WELBY_FHIR_OBJECT_ROLE                                               \
    "http://terminology.hl7.org/CodeSystem/object-role"
#define WELBY_BALP_AGENT_DETAILS                                             \
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/ihe-agent-details"
#define WELBY_BALP_ENTITY_TYPE                                               \
    "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"


/*
 * Writes are all or nothing: once a piece does not fit, the output is
 * unusable anyway, and only the length still matters.
 */
typedef struct {
    unsigned char  *dst;
    size_t          cap;
    size_t          n;
    const void     *md;         /* the record's sha256, for the chain */
} welby_audit_out_t;


/*
 * A nested object is opened by its first present member, so an object
 * whose members are all absent leaves no trace.
 */
typedef struct {
    welby_audit_out_t  *out;
    const char         *open;       /* key of the object to open */
    unsigned            opened:1;
    unsigned            first:1;    /* the next member needs no ',' */
} welby_audit_json_t;


/* a FHIR restful-interaction code and the AuditEvent.action it implies */
typedef struct {
    const char  *code;
    char         action;
} welby_audit_interaction_t;


static void welby_audit_out_init(welby_audit_out_t *o, unsigned char *dst,
    size_t cap, const void *md);
static void welby_audit_raw(welby_audit_out_t *o, const void *s, size_t len);
static void welby_audit_str(welby_audit_out_t *o, const char *s);
static void welby_audit_int(welby_audit_out_t *o, int64_t v);
static void welby_audit_escape(welby_audit_out_t *o, const unsigned char *s,
    size_t len);
static void welby_audit_begin(welby_audit_json_t *j, const char *key);
static void welby_audit_end(welby_audit_json_t *j);
static void welby_audit_key(welby_audit_json_t *j, const char *key);
static void welby_audit_member_str(welby_audit_json_t *j, const char *key,
    const welby_str_t *s);
static void welby_audit_member_int(welby_audit_json_t *j, const char *key,
    int64_t v);
static void welby_audit_member_list(welby_audit_json_t *j, const char *key,
    const welby_str_t *s, unsigned char sep);
static void welby_audit_body(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static void welby_audit_continues(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static void welby_audit_tail(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static size_t welby_audit_seal(welby_audit_out_t *o,
    const unsigned char *prev_hex,
    unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1]);
static void welby_audit_fhir_body(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static void welby_audit_fhir_agents(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static void welby_audit_fhir_entities(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static void welby_audit_fhir_envelope(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static int welby_audit_fhir_str(welby_audit_out_t *o, const char *pre,
    const welby_str_t *s, const char *post);
static void welby_audit_fhir_ext(welby_audit_out_t *o, int *first,
    const char *url, const char *type, const welby_str_t *s);
static void welby_audit_fhir_node(welby_audit_out_t *o,
    const welby_audit_record_t *r);
static const welby_audit_interaction_t *welby_audit_interaction(
    const welby_str_t *s);
static char welby_audit_action(const welby_audit_interaction_t *in,
    const welby_str_t *method);
static size_t welby_audit_time(char *buf, int64_t ms);
static int welby_audit_chain_md(unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1],
    const unsigned char *prev_hex, const unsigned char *p, size_t len,
    const void *sha256);
static size_t welby_utf8_len(const unsigned char *p, size_t len);
static int welby_audit_name_ok(const unsigned char *p, size_t len);
static void welby_audit_hex(unsigned char *dst, const unsigned char *md,
    size_t len);
static void welby_syslog_write(welby_audit_out_t *o,
    const welby_audit_record_t *r, int facility, const char *hostname,
    const char *app, int pen);
static void welby_syslog_field(welby_audit_out_t *o, const unsigned char *s,
    size_t len, size_t max);
static void welby_syslog_param(welby_audit_out_t *o, const char *name,
    const unsigned char *s, size_t len);


static const char  *welby_audit_categories[] = {
    "authentication", "operation", "event"
};

static const char  *welby_audit_severities[] = {
    "emergency", "alert", "critical", "error", "warning", "notice",
    "informational", "debug"
};

static const char  *welby_audit_outcomes[] = {
    "allow", "deny", "error"
};

/*
 * The R4 restful-interaction codes; the actions are those of the BALP
 * patterns, where a search is an Execute whichever method carried it.
 */
static const welby_audit_interaction_t  welby_audit_interactions[] = {
    { "read", 'R' },
    { "vread", 'R' },
    { "update", 'U' },
    { "patch", 'U' },
    { "delete", 'D' },
    { "history", 'R' },
    { "history-instance", 'R' },
    { "history-type", 'R' },
    { "history-system", 'R' },
    { "create", 'C' },
    { "search", 'E' },
    { "search-type", 'E' },
    { "search-system", 'E' },
    { "capabilities", 'R' },
    { "transaction", 'E' },
    { "batch", 'E' },
    { "operation", 'E' }
};


void
welby_audit_record_init(welby_audit_record_t *r)
{
    memset(r, 0, sizeof(welby_audit_record_t));

    r->time_ms = -1;
    r->seq = -1;
    r->status = -1;
    r->bytes_in = -1;
    r->bytes_out = -1;
    r->time_taken_ms = -1;
    r->port = -1;
    r->asn = -1;
    r->tls_client_cert_error = -1;
    r->upstream_status = -1;
    r->waf_score = -1;
    r->alert_count = -1;
    r->alert_window_ms = -1;
    r->continues_seq = -1;

    r->category = WELBY_AUDIT_CAT_EVENT;
    r->severity = WELBY_AUDIT_SEV_INFORMATIONAL;

    /* a record nobody completed must not read as an allowed request */
    r->outcome = WELBY_AUDIT_OUTCOME_ERROR;
    r->reason = WELBY_REASON_NONE;
}


void
welby_audit_classify(welby_audit_record_t *r,
    welby_audit_decision_e decision, welby_reason_e reason, int64_t status)
{
    if (decision == WELBY_AUDIT_DECISION_DENY) {
        r->outcome = WELBY_AUDIT_OUTCOME_DENY;
        r->category = welby_reason_is_auth(reason)
                      ? WELBY_AUDIT_CAT_AUTHENTICATION : WELBY_AUDIT_CAT_EVENT;

        /* a refusal because the gateway could not decide needs a look */
        r->severity = status >= 500 ? WELBY_AUDIT_SEV_ERROR
                                    : WELBY_AUDIT_SEV_WARNING;
        return;
    }

    if (status >= 500) {
        r->outcome = WELBY_AUDIT_OUTCOME_ERROR;
        r->category = WELBY_AUDIT_CAT_EVENT;
        r->severity = WELBY_AUDIT_SEV_ERROR;
        return;
    }

    if (decision != WELBY_AUDIT_DECISION_ALLOW
        && decision != WELBY_AUDIT_DECISION_DETECT)
    {
        /*
         * Answered before any step ran (a rewrite-phase return): not an
         * error of the service, but a response nothing checked.
         */
        r->outcome = WELBY_AUDIT_OUTCOME_ERROR;
        r->category = WELBY_AUDIT_CAT_EVENT;
        r->severity = WELBY_AUDIT_SEV_WARNING;
        return;
    }

    r->outcome = WELBY_AUDIT_OUTCOME_ALLOW;
    r->category = WELBY_AUDIT_CAT_OPERATION;
    r->severity = decision == WELBY_AUDIT_DECISION_DETECT
                  ? WELBY_AUDIT_SEV_NOTICE : WELBY_AUDIT_SEV_INFORMATIONAL;
}


const char *
welby_audit_category_name(welby_audit_category_e category)
{
    if ((unsigned) category > WELBY_AUDIT_CAT_EVENT) {
        category = WELBY_AUDIT_CAT_EVENT;
    }

    return welby_audit_categories[category];
}


const char *
welby_audit_severity_name(welby_audit_severity_e severity)
{
    /* an out of range value is a bug worth looking at, not debug noise */
    if ((unsigned) severity > WELBY_AUDIT_SEV_DEBUG) {
        severity = WELBY_AUDIT_SEV_ERROR;
    }

    return welby_audit_severities[severity];
}


const char *
welby_audit_outcome_name(welby_audit_outcome_e outcome)
{
    if ((unsigned) outcome > WELBY_AUDIT_OUTCOME_ERROR) {
        outcome = WELBY_AUDIT_OUTCOME_ERROR;
    }

    return welby_audit_outcomes[outcome];
}


size_t
welby_audit_json(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r)
{
    welby_audit_out_t  o;

    welby_audit_out_init(&o, dst, cap, NULL);

    welby_audit_body(&o, r);
    welby_audit_tail(&o, r);
    welby_audit_raw(&o, "\n", 1);

    return o.n;
}


size_t
welby_audit_json_chained(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r, const unsigned char *prev_hex,
    unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1])
{
    welby_audit_out_t  o;

    welby_audit_out_init(&o, dst, cap, r->sha256);

    welby_audit_body(&o, r);

    return welby_audit_seal(&o, prev_hex, next_hex);
}


size_t
welby_audit_fhir(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r)
{
    welby_audit_out_t  o;

    welby_audit_out_init(&o, dst, cap, NULL);

    welby_audit_fhir_body(&o, r);

    if (r->chain != NULL) {
        welby_audit_fhir_envelope(&o, r);
        welby_audit_str(&o, ",\"chain\":\"");
        welby_audit_escape(&o, r->chain, WELBY_AUDIT_HEX_LEN);
        welby_audit_str(&o, "\"");
    }

    welby_audit_str(&o, "}\n");

    return o.n;
}


size_t
welby_audit_fhir_chained(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r, const unsigned char *prev_hex,
    unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1])
{
    welby_audit_out_t  o;

    welby_audit_out_init(&o, dst, cap, r->sha256);

    welby_audit_fhir_body(&o, r);
    welby_audit_fhir_envelope(&o, r);

    return welby_audit_seal(&o, prev_hex, next_hex);
}


int
welby_audit_chain(unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1],
    const unsigned char *prev_hex, const unsigned char *p, size_t len)
{
    return welby_audit_chain_md(next_hex, prev_hex, p, len, NULL);
}


static int
welby_audit_chain_md(unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1],
    const unsigned char *prev_hex, const unsigned char *p, size_t len,
    const void *sha256)
{
    int            rc;
    unsigned int   md_len;
    EVP_MD_CTX    *ctx;
    unsigned char  md[EVP_MAX_MD_SIZE], zero[WELBY_AUDIT_HEX_LEN];

    if (prev_hex == NULL) {
        memset(zero, '0', WELBY_AUDIT_HEX_LEN);
        prev_hex = zero;
    }

    ctx = EVP_MD_CTX_new();

    /* a fetched SHA-256 spares OpenSSL 3 a lookup on every record */

    rc = (ctx != NULL
          && EVP_DigestInit_ex(ctx, sha256 ? (const EVP_MD *) sha256
                                           : EVP_sha256(), NULL) == 1
          && EVP_DigestUpdate(ctx, prev_hex, WELBY_AUDIT_HEX_LEN) == 1
          && EVP_DigestUpdate(ctx, p, len) == 1
          && EVP_DigestFinal_ex(ctx, md, &md_len) == 1
          && md_len == WELBY_AUDIT_HEX_LEN / 2)
         ? 0 : -1;

    EVP_MD_CTX_free(ctx);

    if (rc == 0) {
        welby_audit_hex(next_hex, md, md_len);
    }

    return rc;
}


size_t
welby_audit_query_names(unsigned char *dst, size_t cap,
    const unsigned char *args, size_t len)
{
    size_t               pos, n, k, nnames;
    size_t               lens[WELBY_AUDIT_QUERY_NAMES];
    unsigned char        names[WELBY_AUDIT_QUERY_NAMES]
                              [WELBY_AUDIT_QUERY_NAME];
    welby_audit_out_t    o;
    welby_query_param_t  param;

    welby_audit_out_init(&o, dst, cap, NULL);

    if (args == NULL) {
        return 0;
    }

    nnames = 0;
    pos = 0;

    /*
     * The names as the backend reads them, decoded: "na%6De" is name to
     * it, and must be to whoever reads the record.
     */

    while (nnames < WELBY_AUDIT_QUERY_NAMES
           && welby_query_next(args, len, &pos, &param))
    {
        if (param.value == NULL) {
            continue;
        }

        n = welby_query_decode(names[nnames], WELBY_AUDIT_QUERY_NAME,
                               param.name, param.name_len);

        if (n == 0 || n > WELBY_AUDIT_QUERY_NAME
            || !welby_audit_name_ok(names[nnames], n))
        {
            continue;
        }

        for (k = 0; k < nnames; k++) {
            if (lens[k] == n && memcmp(names[k], names[nnames], n) == 0) {
                break;
            }
        }

        if (k < nnames) {
            continue;
        }

        lens[nnames] = n;
        nnames++;
    }

    for (k = 0; k < nnames; k++) {
        if (k) {
            welby_audit_raw(&o, ",", 1);
        }

        welby_audit_raw(&o, names[k], lens[k]);
    }

    return o.n;
}


int
welby_audit_query_hash(unsigned char out_hex[WELBY_AUDIT_HEX_LEN + 1],
    const unsigned char *key, size_t key_len, const unsigned char *args,
    size_t len)
{
    size_t         md_len;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (key == NULL || key_len == 0) {
        return -1;
    }

    if (args == NULL) {
        args = (const unsigned char *) "";
        len = 0;
    }

    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len, args,
                  len, md, sizeof(md), &md_len)
        == NULL
        || md_len != WELBY_AUDIT_HEX_LEN / 2)
    {
        return -1;
    }

    welby_audit_hex(out_hex, md, md_len);

    return 0;
}


size_t
welby_audit_syslog(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r, int facility, const char *hostname,
    const char *app, int pen, int octet_counting)
{
    char               prefix[32];
    welby_audit_out_t  o, count;

    welby_audit_out_init(&o, dst, cap, NULL);

    if (octet_counting) {
        /* RFC 6587 section 3.4.1: MSG-LEN is the octet count of the rest */
        count.dst = NULL;
        count.cap = 0;
        count.n = 0;

        welby_syslog_write(&count, r, facility, hostname, app, pen);

        snprintf(prefix, sizeof(prefix), "%zu ", count.n);
        welby_audit_str(&o, prefix);
    }

    welby_syslog_write(&o, r, facility, hostname, app, pen);

    return o.n;
}


static void
welby_audit_body(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    char                 time[32];
    size_t               k, n;
    welby_str_t          s;
    welby_audit_json_t   j;
    const welby_str_t    absent = { NULL, 0 };
    const char          *reason;

    j.out = o;
    j.open = NULL;
    j.opened = 0;
    j.first = 1;

    welby_audit_str(o, "{");
    welby_audit_key(&j, "schema");
    welby_audit_int(o, WELBY_AUDIT_SCHEMA);

    n = welby_audit_time(time, r->time_ms);
    s.data = (const unsigned char *) time;
    s.len = n;
    welby_audit_member_str(&j, "time", n ? &s : &absent);

    welby_audit_member_str(&j, "id", &r->id);
    welby_audit_member_str(&j, "client_request_id", &r->client_request_id);
    welby_audit_member_str(&j, "node", &r->node);
    welby_audit_member_str(&j, "stream", &r->stream);
    welby_audit_member_int(&j, "seq", r->seq);

    welby_audit_key(&j, "category");
    welby_audit_str(o, "\"");
    welby_audit_str(o, welby_audit_category_name(r->category));
    welby_audit_str(o, "\"");

    welby_audit_key(&j, "severity");
    welby_audit_str(o, "\"");
    welby_audit_str(o, welby_audit_severity_name(r->severity));
    welby_audit_str(o, "\"");

    welby_audit_key(&j, "outcome");
    welby_audit_str(o, "\"");
    welby_audit_str(o, welby_audit_outcome_name(r->outcome));
    welby_audit_str(o, "\"");

    if (r->reason != WELBY_REASON_NONE) {
        reason = welby_reason_get(r->reason)->code;

        welby_audit_key(&j, "reason");
        welby_audit_str(o, "\"");
        welby_audit_str(o, reason);
        welby_audit_str(o, "\"");
    }

    welby_audit_begin(&j, "http");
    welby_audit_member_str(&j, "method", &r->method);
    welby_audit_member_str(&j, "path", &r->path);

    if (r->query_names.data || r->query_hmac.data) {
        welby_audit_key(&j, "query");
        welby_audit_str(o, "{");

        if (r->query_names.data) {
            welby_audit_str(o, "\"names\":");

            /* names carry no ',' (welby_audit_query_names() drops them) */
            welby_audit_member_list(&j, NULL, &r->query_names, ',');
        }

        if (r->query_hmac.data) {
            welby_audit_str(o, r->query_names.data ? ",\"hmac\":\""
                                                   : "\"hmac\":\"");
            welby_audit_escape(o, r->query_hmac.data, r->query_hmac.len);
            welby_audit_str(o, "\"");
        }

        welby_audit_str(o, "}");
    }

    welby_audit_member_int(&j, "status", r->status);
    welby_audit_member_int(&j, "bytes_in", r->bytes_in);
    welby_audit_member_int(&j, "bytes_out", r->bytes_out);
    welby_audit_member_int(&j, "time_ms", r->time_taken_ms);
    welby_audit_end(&j);

    welby_audit_begin(&j, "fhir");
    welby_audit_member_str(&j, "interaction", &r->interaction);
    welby_audit_member_str(&j, "type", &r->resource_type);
    welby_audit_member_str(&j, "id", &r->resource_id);
    welby_audit_member_str(&j, "patient", &r->patient);
    welby_audit_end(&j);

    welby_audit_begin(&j, "agent");
    welby_audit_member_str(&j, "sub", &r->sub);
    welby_audit_member_str(&j, "client_id", &r->client_id);
    welby_audit_member_str(&j, "iss", &r->iss);
    welby_audit_member_str(&j, "fhir_user", &r->fhir_user);
    welby_audit_member_str(&j, "role", &r->role);
    welby_audit_member_list(&j, "amr", &r->amr, ' ');
    welby_audit_member_str(&j, "jti", &r->jti);
    welby_audit_member_str(&j, "cert_sha256", &r->cert_sha256);
    welby_audit_end(&j);

    welby_audit_begin(&j, "source");
    welby_audit_member_str(&j, "ip", &r->ip);
    welby_audit_member_int(&j, "port", r->port);
    welby_audit_member_str(&j, "country", &r->country);
    welby_audit_member_int(&j, "asn", r->asn);
    welby_audit_end(&j);

    welby_audit_begin(&j, "tls");
    welby_audit_member_str(&j, "protocol", &r->tls_protocol);
    welby_audit_member_str(&j, "cipher", &r->tls_cipher);
    welby_audit_member_str(&j, "client_cert", &r->tls_client_cert);
    welby_audit_member_int(&j, "client_cert_error", r->tls_client_cert_error);
    welby_audit_member_str(&j, "proxy", &r->tls_proxy);
    welby_audit_end(&j);

    if ((r->waf_rules != NULL && r->nwaf_rules > 0) || r->waf_score >= 0) {
        welby_audit_begin(&j, "waf");
        welby_audit_key(&j, "rules");
        welby_audit_str(o, "[");

        for (k = 0; r->waf_rules != NULL && k < r->nwaf_rules; k++) {
            if (k) {
                welby_audit_str(o, ",");
            }

            welby_audit_int(o, r->waf_rules[k]);
        }

        welby_audit_str(o, "]");

        if (r->waf_severities != NULL) {
            welby_audit_key(&j, "severities");
            welby_audit_str(o, "[");

            for (k = 0; k < r->nwaf_rules; k++) {
                if (k) {
                    welby_audit_str(o, ",");
                }

                welby_audit_int(o, r->waf_severities[k]);
            }

            welby_audit_str(o, "]");
        }

        welby_audit_member_int(&j, "score", r->waf_score);
        welby_audit_end(&j);
    }

    welby_audit_begin(&j, "limit");
    welby_audit_member_str(&j, "name", &r->limit_name);
    welby_audit_member_str(&j, "key", &r->limit_key);
    welby_audit_end(&j);

    welby_audit_begin(&j, "upstream");
    welby_audit_member_int(&j, "status", r->upstream_status);
    welby_audit_end(&j);

    welby_audit_begin(&j, "alert");
    welby_audit_member_str(&j, "event", &r->alert_event);
    welby_audit_member_int(&j, "count", r->alert_count);
    welby_audit_member_int(&j, "window_ms", r->alert_window_ms);
    welby_audit_member_str(&j, "key", &r->alert_key);
    welby_audit_end(&j);

    welby_audit_continues(o, r);
}


/* ,"continues":{"seq":N,"chain":"<hex>"} when the record has one */
static void
welby_audit_continues(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    if (r->continues_chain == NULL) {
        return;
    }

    welby_audit_str(o, ",\"continues\":{");

    if (r->continues_seq >= 0) {
        welby_audit_str(o, "\"seq\":");
        welby_audit_int(o, r->continues_seq);
        welby_audit_str(o, ",");
    }

    welby_audit_str(o, "\"chain\":\"");
    welby_audit_escape(o, r->continues_chain, WELBY_AUDIT_HEX_LEN);
    welby_audit_str(o, "\"}");
}


/*
 * Closes P (the line so far, starting with '{') with its chain member,
 * the closing brace and the LF.
 */
static size_t
welby_audit_seal(welby_audit_out_t *o, const unsigned char *prev_hex,
    unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1])
{
    size_t  len;

    len = o->n + WELBY_AUDIT_CHAIN_TAIL + 1;

    if (o->dst == NULL || len > o->cap) {
        return len;
    }

    if (welby_audit_chain_md(next_hex, prev_hex, o->dst, o->n, o->md) != 0)
    {
        return 0;
    }

    welby_audit_str(o, ",\"chain\":\"");
    welby_audit_raw(o, next_hex, WELBY_AUDIT_HEX_LEN);
    welby_audit_str(o, "\"}\n");

    return o->n;
}


/*
 * The AuditEvent without its closing brace.  FHIR allows no empty
 * string, so an empty value is absent here.
 */
static void
welby_audit_fhir_body(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    char                              time[32], action[2];
    size_t                            n;
    const char                       *outcome;
    const welby_audit_interaction_t  *in;

    welby_audit_str(o, "{\"resourceType\":\"AuditEvent\"");
    welby_audit_fhir_str(o, ",\"id\":\"", &r->id, "\"");

    welby_audit_str(o, ",\"type\":{\"system\":\"" WELBY_FHIR_EVENT_TYPE
                       "\",\"code\":\"rest\",\"display\":"
                       "\"RESTful Operation\"}");

    in = welby_audit_interaction(&r->interaction);

    if (in != NULL) {
        welby_audit_str(o, ",\"subtype\":[{\"system\":\""
                           WELBY_FHIR_INTERACTION "\",\"code\":\"");
        welby_audit_str(o, in->code);
        welby_audit_str(o, "\",\"display\":\"");
        welby_audit_str(o, in->code);
        welby_audit_str(o, "\"}]");
    }

    action[0] = welby_audit_action(in, &r->method);
    action[1] = '\0';

    if (action[0] != '\0') {
        welby_audit_str(o, ",\"action\":\"");
        welby_audit_str(o, action);
        welby_audit_str(o, "\"");
    }

    n = welby_audit_time(time, r->time_ms);

    if (n) {
        welby_audit_str(o, ",\"recorded\":\"");
        welby_audit_raw(o, time, n);
        welby_audit_str(o, "\"");
    }

    switch (r->outcome) {

    case WELBY_AUDIT_OUTCOME_ALLOW:
        outcome = "0";          /* success */
        break;

    case WELBY_AUDIT_OUTCOME_DENY:
        outcome = "4";          /* minor failure: refused as designed */
        break;

    default:
        outcome = "8";          /* serious failure */
        break;
    }

    welby_audit_str(o, ",\"outcome\":\"");
    welby_audit_str(o, outcome);
    welby_audit_str(o, "\"");

    if (r->reason != WELBY_REASON_NONE) {
        welby_audit_str(o, ",\"outcomeDesc\":\"");
        welby_audit_str(o, welby_reason_get(r->reason)->code);
        welby_audit_str(o, "\"");
    }

    welby_audit_fhir_agents(o, r);

    welby_audit_str(o, ",\"source\":{");

    if (welby_audit_fhir_str(o, "\"site\":\"", &r->node, "\"")) {
        welby_audit_str(o, ",");
    }

    welby_audit_str(o, "\"observer\":{\"display\":\"");
    welby_audit_fhir_node(o, r);
    welby_audit_str(o, "\"},\"type\":[{\"system\":\""
                       WELBY_FHIR_SOURCE_TYPE "\",\"code\":\"4\","
                       "\"display\":\"Application Server\"}]}");

    welby_audit_fhir_entities(o, r);
}


/*
 * agent[0] is the client, the requestor: the user and app of the token
 * and the peer address.  agent[1] is this gateway, which receives the
 * request: BALP names them Source and Destination Role ID.
 */
static void
welby_audit_fhir_agents(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    int  first;

    welby_audit_str(o, ",\"agent\":[{");

    if (r->sub.len || r->client_id.len || r->jti.len || r->iss.len) {
        welby_audit_str(o, "\"extension\":[{\"url\":\""
                           WELBY_BALP_AGENT_DETAILS "\",\"extension\":[");

        first = 1;
        welby_audit_fhir_ext(o, &first, "subject", "valueString", &r->sub);
        welby_audit_fhir_ext(o, &first, "clientId", "valueString",
                             &r->client_id);
        welby_audit_fhir_ext(o, &first, "tokenId", "valueString", &r->jti);
        welby_audit_fhir_ext(o, &first, "issuer", "valueUri", &r->iss);

        welby_audit_str(o, "]}],");
    }

    welby_audit_str(o, "\"type\":{\"coding\":[{\"system\":\"" WELBY_FHIR_DCM
                       "\",\"code\":\"110153\",\"display\":"
                       "\"Source Role ID\"}]}");

    /* the role names no code system we could cite: text only */
    welby_audit_fhir_str(o, ",\"role\":[{\"text\":\"", &r->role, "\"}]");

    if (r->sub.len || r->fhir_user.len) {
        welby_audit_str(o, ",\"who\":{");

        first = !welby_audit_fhir_str(o, "\"reference\":\"", &r->fhir_user,
                                      "\"");

        if (r->sub.len) {
            welby_audit_str(o, first ? "\"identifier\":{"
                                     : ",\"identifier\":{");
            welby_audit_fhir_str(o, "\"system\":\"", &r->iss, "\",");
            welby_audit_fhir_str(o, "\"value\":\"", &r->sub, "\"}");
        }

        welby_audit_str(o, "}");
    }

    welby_audit_str(o, ",\"requestor\":true");

    /* BALP: the token's id is the agent's policy */
    welby_audit_fhir_str(o, ",\"policy\":[\"", &r->jti, "\"]");

    /* network type 2: IP address */
    welby_audit_fhir_str(o, ",\"network\":{\"address\":\"", &r->ip,
                         "\",\"type\":\"2\"}");

    welby_audit_str(o, "},{\"type\":{\"coding\":[{\"system\":\""
                       WELBY_FHIR_DCM "\",\"code\":\"110152\",\"display\":"
                       "\"Destination Role ID\"}]},\"who\":{\"display\":\"");
    welby_audit_fhir_node(o, r);
    welby_audit_str(o, "\"},\"requestor\":false}]");
}


/*
 * The patient, the resource, the query and the transaction.  BALP would
 * put the raw query in entity.query; a query value may be health data, so
 * only its names and its keyed hash go in, as entity.detail.
 */
static void
welby_audit_fhir_entities(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    int                   first;
    welby_str_t           one;
    const unsigned char  *p, *e, *sp;

    first = 1;

    /* "patient" holds the request's patients space-separated: one
     * patient entity each, as BALP records every patient a request
     * reaches */

    p = r->patient.data;
    e = p + r->patient.len;

    while (p < e) {
        sp = memchr(p, ' ', e - p);
        one.data = p;
        one.len = (sp ? sp : e) - p;
        p = sp ? sp + 1 : e;

        if (one.len == 0) {
            continue;
        }

        welby_audit_str(o, first ? ",\"entity\":[" : ",");
        first = 0;

        welby_audit_fhir_str(o, "{\"what\":{\"reference\":\"Patient/",
                             &one, "\"}");
        welby_audit_str(o, ",\"type\":{\"system\":\"" WELBY_FHIR_ENTITY_TYPE
                           "\",\"code\":\"1\",\"display\":\"Person\"}"
                           ",\"role\":{\"system\":\"" WELBY_FHIR_OBJECT_ROLE
                           "\",\"code\":\"1\",\"display\":\"Patient\"}}");
    }

    if (r->resource_type.len) {
        welby_audit_str(o, first ? ",\"entity\":[" : ",");
        first = 0;

        welby_audit_str(o, "{\"what\":{");

        if (r->resource_id.len) {
            welby_audit_fhir_str(o, "\"reference\":\"", &r->resource_type,
                                 "/");
            welby_audit_escape(o, r->resource_id.data, r->resource_id.len);
            welby_audit_str(o, "\"");

        } else {
            /* a type-level interaction: Reference.type alone */
            welby_audit_fhir_str(o, "\"type\":\"", &r->resource_type, "\"");
        }

        welby_audit_str(o, "},\"type\":{\"system\":\""
                           WELBY_FHIR_ENTITY_TYPE "\",\"code\":\"2\","
                           "\"display\":\"System Object\"}"
                           ",\"role\":{\"system\":\"" WELBY_FHIR_OBJECT_ROLE
                           "\",\"code\":\"4\",\"display\":"
                           "\"Domain Resource\"}}");
    }

    if (r->query_names.len || r->query_hmac.len) {
        welby_audit_str(o, first ? ",\"entity\":[" : ",");
        first = 0;

        welby_audit_str(o, "{\"type\":{\"system\":\"" WELBY_FHIR_ENTITY_TYPE
                           "\",\"code\":\"2\",\"display\":"
                           "\"System Object\"},\"role\":{\"system\":\""
                           WELBY_FHIR_OBJECT_ROLE "\",\"code\":\"24\","
                           "\"display\":\"Query\"},\"detail\":[");

        welby_audit_fhir_str(o, "{\"type\":\"query-parameters\","
                                "\"valueString\":\"",
                             &r->query_names, "\"}");

        if (r->query_hmac.len) {
            welby_audit_str(o, r->query_names.len ? "," : "");
            welby_audit_fhir_str(o, "{\"type\":\"query-hmac\","
                                    "\"valueString\":\"",
                                 &r->query_hmac, "\"}");
        }

        welby_audit_str(o, "]}");
    }

    /*
     * BALP's transaction entity: the X-Request-Id the backend received,
     * which its own AuditEvents carry, and the client's own when the
     * gateway replaced it.
     */

    if (r->id.len) {
        welby_audit_str(o, first ? ",\"entity\":[" : ",");
        first = 0;

        welby_audit_fhir_str(o, "{\"what\":{\"identifier\":{\"value\":\"",
                             &r->id, "\"}}");
        welby_audit_str(o, ",\"type\":{\"system\":\"" WELBY_BALP_ENTITY_TYPE
                           "\",\"code\":\"XrequestId\"}");
        welby_audit_fhir_str(o, ",\"detail\":[{\"type\":"
                                "\"client-request-id\",\"valueString\":\"",
                             &r->client_request_id, "\"}]");
        welby_audit_str(o, "}");
    }

    if (!first) {
        welby_audit_str(o, "]");
    }
}


/*
 * The members that follow the resource in a file line: what audit-verify
 * keys a stream on, then (by the caller) the chain.  None of them is an
 * AuditEvent element, so a FHIR consumer can strip them by name.
 */
static void
welby_audit_fhir_envelope(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    if (r->node.data != NULL) {
        welby_audit_str(o, ",\"node\":\"");
        welby_audit_escape(o, r->node.data, r->node.len);
        welby_audit_str(o, "\"");
    }

    if (r->stream.data != NULL) {
        welby_audit_str(o, ",\"stream\":\"");
        welby_audit_escape(o, r->stream.data, r->stream.len);
        welby_audit_str(o, "\"");
    }

    if (r->seq >= 0) {
        welby_audit_str(o, ",\"seq\":");
        welby_audit_int(o, r->seq);
    }

    welby_audit_continues(o, r);
}


/* pre, s escaped, post; nothing when s is absent or empty */
static int
welby_audit_fhir_str(welby_audit_out_t *o, const char *pre,
    const welby_str_t *s, const char *post)
{
    if (s->data == NULL || s->len == 0) {
        return 0;
    }

    welby_audit_str(o, pre);
    welby_audit_escape(o, s->data, s->len);
    welby_audit_str(o, post);

    return 1;
}


/* a sub-extension of the BALP agent details, when s is present */
static void
welby_audit_fhir_ext(welby_audit_out_t *o, int *first, const char *url,
    const char *type, const welby_str_t *s)
{
    if (s->data == NULL || s->len == 0) {
        return;
    }

    welby_audit_str(o, *first ? "{\"url\":\"" : ",{\"url\":\"");
    welby_audit_str(o, url);
    welby_audit_str(o, "\",\"");
    welby_audit_str(o, type);
    welby_audit_str(o, "\":\"");
    welby_audit_escape(o, s->data, s->len);
    welby_audit_str(o, "\"}");

    *first = 0;
}


/* source.observer and agent[1].who are required: name ourselves */
static void
welby_audit_fhir_node(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    if (r->node.data != NULL && r->node.len > 0) {
        welby_audit_escape(o, r->node.data, r->node.len);

    } else {
        welby_audit_str(o, "welby");
    }
}


static const welby_audit_interaction_t *
welby_audit_interaction(const welby_str_t *s)
{
    size_t  i;

    if (s->data == NULL) {
        return NULL;
    }

    for (i = 0; i < sizeof(welby_audit_interactions)
                    / sizeof(welby_audit_interactions[0]); i++)
    {
        if (strlen(welby_audit_interactions[i].code) == s->len
            && memcmp(welby_audit_interactions[i].code, s->data, s->len)
               == 0)
        {
            return &welby_audit_interactions[i];
        }
    }

    return NULL;
}


/*
 * AuditEvent.action: from the interaction when it is known, else from the
 * method; '\0' when neither is known.
 */
static char
welby_audit_action(const welby_audit_interaction_t *in,
    const welby_str_t *method)
{
    size_t                i;
    const unsigned char  *m;

    static const struct {
        const char  *name;
        char         action;
    } methods[] = {
        { "POST", 'C' },
        { "GET", 'R' },
        { "HEAD", 'R' },
        { "PUT", 'U' },
        { "PATCH", 'U' },
        { "DELETE", 'D' }
    };

    if (in != NULL) {
        return in->action;
    }

    m = method->data;

    if (m == NULL || method->len == 0) {
        return '\0';
    }

    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strlen(methods[i].name) == method->len
            && memcmp(methods[i].name, m, method->len) == 0)
        {
            return methods[i].action;
        }
    }

    return 'E';
}


static void
welby_audit_tail(welby_audit_out_t *o, const welby_audit_record_t *r)
{
    if (r->chain != NULL) {
        welby_audit_str(o, ",\"chain\":\"");
        welby_audit_escape(o, r->chain, WELBY_AUDIT_HEX_LEN);
        welby_audit_str(o, "\"");
    }

    welby_audit_str(o, "}");
}


static void
welby_audit_begin(welby_audit_json_t *j, const char *key)
{
    j->open = key;
    j->opened = 0;
}


static void
welby_audit_end(welby_audit_json_t *j)
{
    if (j->opened) {
        welby_audit_str(j->out, "}");
    }

    j->open = NULL;
    j->opened = 0;
    j->first = 0;
}


static void
welby_audit_key(welby_audit_json_t *j, const char *key)
{
    if (j->open != NULL) {
        welby_audit_str(j->out, j->first ? "\"" : ",\"");
        welby_audit_str(j->out, j->open);
        welby_audit_str(j->out, "\":{");
        j->open = NULL;
        j->opened = 1;
        j->first = 1;
    }

    welby_audit_str(j->out, j->first ? "\"" : ",\"");
    welby_audit_str(j->out, key);
    welby_audit_str(j->out, "\":");
    j->first = 0;
}


static void
welby_audit_member_str(welby_audit_json_t *j, const char *key,
    const welby_str_t *s)
{
    if (s->data == NULL) {
        return;
    }

    welby_audit_key(j, key);
    welby_audit_str(j->out, "\"");
    welby_audit_escape(j->out, s->data, s->len);
    welby_audit_str(j->out, "\"");
}


static void
welby_audit_member_int(welby_audit_json_t *j, const char *key, int64_t v)
{
    if (v < 0) {
        return;
    }

    welby_audit_key(j, key);
    welby_audit_int(j->out, v);
}


static void
welby_audit_member_list(welby_audit_json_t *j, const char *key,
    const welby_str_t *s, unsigned char sep)
{
    size_t                i, end, items;
    const unsigned char  *p;

    if (s->data == NULL) {
        return;
    }

    if (key != NULL) {
        welby_audit_key(j, key);
    }

    welby_audit_str(j->out, "[");

    items = 0;

    for (i = 0; i < s->len; i = end + 1) {
        p = memchr(s->data + i, sep, s->len - i);
        end = p ? (size_t) (p - s->data) : s->len;

        if (end == i) {
            continue;
        }

        welby_audit_str(j->out, items ? ",\"" : "\"");
        welby_audit_escape(j->out, s->data + i, end - i);
        welby_audit_str(j->out, "\"");
        items++;
    }

    welby_audit_str(j->out, "]");
}


static void
welby_audit_out_init(welby_audit_out_t *o, unsigned char *dst, size_t cap,
    const void *md)
{
    o->dst = dst;
    o->cap = cap;
    o->n = 0;
    o->md = md;
}


static void
welby_audit_raw(welby_audit_out_t *o, const void *s, size_t len)
{
    if (o->dst != NULL && o->n <= o->cap && len <= o->cap - o->n) {
        memcpy(o->dst + o->n, s, len);
    }

    o->n += len;
}


static void
welby_audit_str(welby_audit_out_t *o, const char *s)
{
    welby_audit_raw(o, s, strlen(s));
}


static void
welby_audit_int(welby_audit_out_t *o, int64_t v)
{
    char      buf[24], *p;
    uint64_t  u;

    /* by hand: snprintf() was a third of the time of a record */

    p = buf + sizeof(buf);
    u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u);

    if (v < 0) {
        *--p = '-';
    }

    welby_audit_raw(o, p, (size_t) (buf + sizeof(buf) - p));
}


/*
 * welby_json_escape() copies bytes >= 0x80 as they are, so invalid UTF-8
 * is found here first: one bad byte in a path must not make the whole
 * line unparsable for a log shipper.
 */
static void
welby_audit_escape(welby_audit_out_t *o, const unsigned char *s, size_t len)
{
    size_t  i, start, n;

    i = 0;

    while (i < len) {
        start = i;

        while (i < len && s[i] < 0x80) {
            i++;
        }

        if (i > start) {

            /* most values need no escaping: copy them as they are */

            for (n = start; n < i; n++) {
                if (s[n] == '"' || s[n] == '\\' || s[n] < 0x20
                    || s[n] == 0x7f)
                {
                    break;
                }
            }

            if (n == i) {
                welby_audit_raw(o, s + start, i - start);
                goto utf8;
            }

            n = welby_json_escape(NULL, s + start, i - start);

            if (o->dst != NULL && o->n <= o->cap && n <= o->cap - o->n) {
                welby_json_escape(o->dst + o->n, s + start, i - start);
            }

            o->n += n;
        }

    utf8:

        while (i < len && s[i] >= 0x80) {
            n = welby_utf8_len(s + i, len - i);

            if (n == 0) {
                welby_audit_str(o, "\\ufffd");
                i++;

            } else {
                welby_audit_raw(o, s + i, n);
                i += n;
            }
        }
    }
}


/* The length of the well-formed UTF-8 sequence at p (Unicode table 3-7). */
static size_t
welby_utf8_len(const unsigned char *p, size_t len)
{
    size_t         need, i;
    unsigned char  c, lo, hi;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c < 0x80) {
        return 1;

    } else if (c >= 0xc2 && c <= 0xdf) {
        need = 1;

    } else if (c == 0xe0) {
        need = 2;
        lo = 0xa0;

    } else if (c == 0xed) {
        need = 2;
        hi = 0x9f;

    } else if (c >= 0xe1 && c <= 0xef) {
        need = 2;

    } else if (c == 0xf0) {
        need = 3;
        lo = 0x90;

    } else if (c == 0xf4) {
        need = 3;
        hi = 0x8f;

    } else if (c >= 0xf1 && c <= 0xf3) {
        need = 3;

    } else {
        return 0;
    }

    if (len <= need || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i <= need; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    return need + 1;
}


/* "2024-05-01T12:00:00.123Z" into buf[32]; 0 if ms is absent or too big */
static size_t
welby_audit_time(char *buf, int64_t ms)
{
    int      n;
    int64_t  days, secs, z, era, doe, yoe, y, doy, mp, d, m;

    /* 9999-12-31T23:59:59.999Z */
    if (ms < 0 || ms > INT64_C(253402300799999)) {
        return 0;
    }

    days = ms / 86400000;
    secs = (ms / 1000) % 86400;

    /* civil_from_days(), H. Hinnant, for days >= 0 */
    z = days + 719468;
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;

    /* YYYY-MM-DDTHH:MM:SS.mmmZ, by hand as in welby_audit_int() */

    n = 0;
    buf[n++] = (char) ('0' + y / 1000);
    buf[n++] = (char) ('0' + y / 100 % 10);
    buf[n++] = (char) ('0' + y / 10 % 10);
    buf[n++] = (char) ('0' + y % 10);
    buf[n++] = '-';
    buf[n++] = (char) ('0' + m / 10);
    buf[n++] = (char) ('0' + m % 10);
    buf[n++] = '-';
    buf[n++] = (char) ('0' + d / 10);
    buf[n++] = (char) ('0' + d % 10);
    buf[n++] = 'T';
    buf[n++] = (char) ('0' + secs / 36000);
    buf[n++] = (char) ('0' + secs / 3600 % 10);
    buf[n++] = ':';
    buf[n++] = (char) ('0' + secs / 60 % 60 / 10);
    buf[n++] = (char) ('0' + secs / 60 % 10);
    buf[n++] = ':';
    buf[n++] = (char) ('0' + secs % 60 / 10);
    buf[n++] = (char) ('0' + secs % 10);
    buf[n++] = '.';
    buf[n++] = (char) ('0' + ms % 1000 / 100);
    buf[n++] = (char) ('0' + ms % 100 / 10);
    buf[n++] = (char) ('0' + ms % 10);
    buf[n++] = 'Z';
    buf[n] = '\0';

    return (size_t) n;
}


/*
 * Names of FHIR search parameters, modifiers and chains: ALPHA, DIGIT and
 * "-._~:$%[]*".  Anything else may be data, or break the ',' list.
 */
static int
welby_audit_name_ok(const unsigned char *p, size_t len)
{
    size_t         i;
    unsigned char  c;

    for (i = 0; i < len; i++) {
        c = p[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9'))
        {
            continue;
        }

        if (c == '\0' || strchr("-._~:$%[]*", c) == NULL) {
            return 0;
        }
    }

    return 1;
}


static void
welby_audit_hex(unsigned char *dst, const unsigned char *md, size_t len)
{
    size_t                      i;
    static const unsigned char  hex[] = "0123456789abcdef";

    for (i = 0; i < len; i++) {
        dst[2 * i] = hex[md[i] >> 4];
        dst[2 * i + 1] = hex[md[i] & 0xf];
    }

    dst[2 * len] = '\0';
}


static void
welby_syslog_write(welby_audit_out_t *o, const welby_audit_record_t *r,
    int facility, const char *hostname, const char *app, int pen)
{
    char                     buf[64];
    size_t                   n;
    const char              *reason, *outcome;
    welby_audit_severity_e   sev;

    if (facility < 0 || facility > 23) {
        facility = WELBY_AUDIT_FACILITY_DEFAULT;
    }

    sev = r->severity;
    if ((unsigned) sev > WELBY_AUDIT_SEV_DEBUG) {
        sev = WELBY_AUDIT_SEV_ERROR;
    }

    snprintf(buf, sizeof(buf), "<%d>1 ", facility * 8 + (int) sev);
    welby_audit_str(o, buf);

    n = welby_audit_time(buf, r->time_ms);
    welby_audit_raw(o, n ? buf : "-", n ? n : 1);
    welby_audit_str(o, " ");

    if (hostname != NULL) {
        welby_syslog_field(o, (const unsigned char *) hostname,
                           strlen(hostname), WELBY_SYSLOG_HOSTNAME_MAX);

    } else {
        welby_syslog_field(o, r->node.data, r->node.len,
                           WELBY_SYSLOG_HOSTNAME_MAX);
    }

    welby_audit_str(o, " ");

    if (app == NULL) {
        app = "welby";
    }

    welby_syslog_field(o, (const unsigned char *) app, strlen(app),
                       WELBY_SYSLOG_APP_NAME_MAX);
    welby_audit_str(o, " ");

    welby_syslog_field(o, r->stream.data, r->stream.len,
                       WELBY_SYSLOG_PROCID_MAX);
    welby_audit_str(o, " ");

    welby_audit_str(o, welby_audit_category_name(r->category));
    welby_audit_str(o, " ");

    if (pen > 0) {
        snprintf(buf, sizeof(buf), "[welby@%d", pen);
        welby_audit_str(o, buf);

        welby_syslog_param(o, "id", r->id.data, r->id.len);

        outcome = welby_audit_outcome_name(r->outcome);
        welby_syslog_param(o, "outcome", (const unsigned char *) outcome,
                           strlen(outcome));

        if (r->reason != WELBY_REASON_NONE) {
            reason = welby_reason_get(r->reason)->code;
            welby_syslog_param(o, "reason", (const unsigned char *) reason,
                               strlen(reason));
        }

        if (r->status >= 0) {
            n = (size_t) snprintf(buf, sizeof(buf), "%" PRId64, r->status);
            welby_syslog_param(o, "status", (const unsigned char *) buf, n);
        }

        welby_syslog_param(o, "sub", r->sub.data, r->sub.len);
        welby_syslog_param(o, "client_id", r->client_id.data,
                           r->client_id.len);
        welby_syslog_param(o, "patient", r->patient.data, r->patient.len);
        welby_syslog_param(o, "ip", r->ip.data, r->ip.len);

        if (r->chain != NULL) {
            welby_syslog_param(o, "chain", r->chain, WELBY_AUDIT_HEX_LEN);
        }

        welby_audit_str(o, "]");

    } else {
        welby_audit_str(o, "-");
    }

    welby_audit_str(o, " ");

    welby_audit_body(o, r);
    welby_audit_tail(o, r);
}


/* A header field: PRINTUSASCII, at most max bytes, "-" when empty. */
static void
welby_syslog_field(welby_audit_out_t *o, const unsigned char *s, size_t len,
    size_t max)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len == 0) {
        welby_audit_str(o, "-");
        return;
    }

    if (len > max) {
        len = max;
    }

    for (i = 0; i < len; i++) {
        c = (s[i] >= 33 && s[i] <= 126) ? s[i] : '_';
        welby_audit_raw(o, &c, 1);
    }
}


/* SP PARAM-NAME="PARAM-VALUE", RFC 5424 section 6.3.3 */
static void
welby_syslog_param(welby_audit_out_t *o, const char *name,
    const unsigned char *s, size_t len)
{
    size_t                      i, n;
    unsigned char               c;
    static const unsigned char  replacement[] = { 0xef, 0xbf, 0xbd };

    if (s == NULL) {
        return;
    }

    welby_audit_str(o, " ");
    welby_audit_str(o, name);
    welby_audit_str(o, "=\"");

    for (i = 0; i < len; i += n) {
        c = s[i];
        n = 1;

        if (c == '"' || c == '\\' || c == ']') {
            welby_audit_raw(o, "\\", 1);
            welby_audit_raw(o, &c, 1);

        } else if (c < 0x20 || c == 0x7f) {
            welby_audit_raw(o, replacement, sizeof(replacement));

        } else if (c < 0x80) {
            welby_audit_raw(o, &c, 1);

        } else {
            n = welby_utf8_len(s + i, len - i);

            if (n == 0) {
                welby_audit_raw(o, replacement, sizeof(replacement));
                n = 1;

            } else {
                welby_audit_raw(o, s + i, n);
            }
        }
    }

    welby_audit_str(o, "\"");
}
