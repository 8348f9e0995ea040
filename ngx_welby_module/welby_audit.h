/*
 * The audit record: one per request, as a JSON Lines record or a FHIR R4
 * AuditEvent line for a file and as an RFC 5424 syslog message, with a
 * per-stream hash chain that makes a removed or altered line visible.  No
 * nginx types here: unit tests and fuzzers link it alone.
 *
 * Record schema, version WELBY_AUDIT_SCHEMA (1).  One compact JSON object
 * per line, members in this fixed order; a member whose value is absent is
 * omitted, and a nested object with no member present is omitted whole.
 * Aligned with the IHE Basic Audit Log Patterns (BALP): who (agent,
 * source), what (category, http, fhir), when (time), where (node),
 * outcome (outcome, reason, severity).
 *
 *   schema      1                              always
 *   time        "2024-05-01T12:00:00.123Z"     UTC, milliseconds
 *   id          request id: the gateway's own, or the one a
 *               welby_trusted_proxy with request_id=on passed on
 *   client_request_id
 *               the X-Request-Id the client sent, when the gateway
 *               did not take it as the id and it is a request id
 *               (welby_request_id_valid()); for a support desk to find
 *               the record a client quotes.  Never the record's key:
 *               any client can send any value, twice
 *   node        name of this node
 *   stream      id of one writer's chain (see "Hash chain" below)
 *   seq         1, 2, ... within the stream, for comparing with copies
 *   category    "authentication" | "operation" | "event"
 *   severity    "emergency" | "alert" | "critical" | "error" | "warning" |
 *               "notice" | "informational" | "debug" (RFC 5424 section
 *               6.2.1 severities, named as FHIR AuditEvent.severity)
 *   outcome     "allow" | "deny" | "error"
 *   reason      a code of welby_reason.h; omitted for WELBY_REASON_NONE
 *   http        {"method", "path" (normalised),
 *                "query": {"names": [parameter names], "hmac": hex},
 *                "status", "bytes_in", "bytes_out", "time_ms"}
 *   fhir        {"interaction", "type", "id", "patient" (the patients
 *                the request names, space-separated)}
 *   agent       {"sub", "client_id", "iss", "fhir_user", "role",
 *                "amr": [methods], "jti", "cert_sha256" (64 lowercase hex,
 *                SHA-256 of the client certificate's DER, as
 *                $welby_client_cert_sha256)}
 *   source      {"ip", "port", "country", "asn"}
 *   tls         {"protocol", "cipher", "client_cert": "none" | "verified" |
 *                "failed", "client_cert_error": X509 verification error
 *                number (10 expired, 23 revoked, ...), "proxy": the
 *                trusted proxy that vouched for HTTPS (then "protocol" is
 *                the protocol it reported, if configured)}
 *   waf         {"rules": [rule ids]}
 *   limit       {"name", "key"}   the welby_limit rule that refused (or,
 *               in detect mode, found) the request, and its key: an
 *               address, a subject, a client id, a patient id, or for a
 *               variable's value the hex of what the zone keeps of it
 *   upstream    {"status"}
 *   alert       {"event", "count", "window_ms", "key"}   alert records only
 *   continues   {"seq", "chain"}: the first line of a stream in a file
 *               that the writer went on to from another file (a reopen
 *               that found a new file): the seq and chain of the last
 *               line it wrote before, in the other file (chained lines
 *               only)
 *   chain       64 lowercase hex digits; always the last member
 *
 * Strings are written as valid UTF-8 JSON whatever bytes they hold: '"',
 * '\' and control characters are escaped by welby_json_escape(), and a
 * byte that does not start a well-formed UTF-8 sequence (overlong forms,
 * surrogates and code points above U+10FFFF included) becomes \ufffd.
 * Strings are not truncated; callers bound what they pass.
 *
 * FHIR form (welby_audit_fhir()): the same record as one FHIR R4
 * AuditEvent, after the IHE BALP RESTful patterns, one compact line:
 *
 *   resourceType "AuditEvent"
 *   id           request id
 *   type         audit-event-type#rest "RESTful Operation"
 *   subtype      [restful-interaction#<interaction>] when interaction is an
 *                R4 restful-interaction code (read, vread, update, patch,
 *                delete, history*, create, search, search-type,
 *                search-system, capabilities, transaction, batch,
 *                operation); omitted otherwise
 *   action       from the interaction when known (searches and operations
 *                E, as in BALP), else from the method: POST C, GET and
 *                HEAD R, PUT and PATCH U, DELETE D, any other E
 *   recorded     time, as above
 *   outcome      "0" allow, "4" deny, "8" error
 *   outcomeDesc  the reason code
 *   agent[0]     the client, requestor true, type DCM#110153 "Source Role
 *                ID"; extension [ihe-agent-details: subject (sub),
 *                clientId, tokenId (jti), issuer (iss, valueUri)];
 *                role [{"text": role}]; who {"reference": fhir_user,
 *                "identifier": {"system": iss, "value": sub}};
 *                network {"address": ip, "type": "2"}
 *   agent[1]     this gateway, requestor false, type DCM#110152
 *                "Destination Role ID" (BALP: the server), who.display node
 *   source       {"site": node, "observer": {"display": node}, "type":
 *                [security-source-type#4 "Application Server"]}
 *   entity       patient: what Patient/<patient>, type 1 Person, role 1
 *                Patient, one entity for each space-separated id of
 *                "patient"; resource: what <type>/<id> (what.type alone for
 *                a type-level request; an id without a type is left out),
 *                type 2 System Object, role 4 Domain Resource; query:
 *                type 2, role 24 Query, detail [{"type":
 *                "query-parameters", "valueString": "name,birthdate"},
 *                {"type": "query-hmac", "valueString": hex}] - never
 *                entity.query, which BALP fills with the raw query;
 *                transaction (BALP): what.identifier.value the request
 *                id, type BasicAuditEntityType#XrequestId, and detail
 *                [{"type": "client-request-id", "valueString": ...}]
 *                when the client sent one of its own
 *
 * FHIR has no empty strings, so there an empty value is absent; observer
 * and agent[1] read "welby" when node is absent.  The id should be a FHIR
 * id ([A-Za-z0-9-.]{1,64}, as $request_id is); it is written as it is.
 * Members of the JSON form with no AuditEvent element (category,
 * severity, http status, sizes and times, amr, cert_sha256, source port,
 * country and asn, tls, waf, limit, upstream) are not in the FHIR form.
 *
 * A FHIR file line is the AuditEvent followed by members that are not
 * FHIR - "node", "stream", "seq", "continues" (each when present) and
 * "chain", last - so that the chain rule below and conf/audit-verify
 * apply to it unchanged.  A FHIR consumer removes these five top-level
 * members (no AuditEvent element has these names) before validating or
 * storing the resource.  Without a chain (r->chain NULL,
 * welby_audit_fhir()) the line is a plain AuditEvent with none of them.
 *
 * Never in a record: the token, a query value, a request or response body.
 * The query is kept as its parameter names and a keyed hash, so two
 * records of the same query can be matched without the query being
 * readable (welby_audit_query_names(), welby_audit_query_hash()).
 *
 * Hash chain.  Let L be a file line without its final LF.  L ends with
 *
 *     ,"chain":"<64 lowercase hex>"}
 *
 * (WELBY_AUDIT_CHAIN_TAIL bytes).  Let P be L without those bytes (P
 * starts with '{').  Then
 *
 *     chain = lowercase hex of SHA-256(prev || P)
 *
 * where prev is the 64 ASCII hex digits of the chain of the previous line
 * of the same stream (same "node" and "stream") in the same file, or 64
 * '0' characters for the first line of a stream in a file.  The hash is
 * over the bytes as written, so a verifier needs no JSON canonicalisation.
 * A writer (a worker process) keeps prev per file, uses a stream id that
 * no other writer of that file uses (for example "<pid>.<start ms>", as
 * pids are reused), numbers its records 1, 2, ... ("seq"), and advances
 * prev only after the line was written.  A stream starts from zeros only
 * at its first line in a file: seq 1 for a new stream, or a line with
 * "continues" naming the stream's last line in the file before (the
 * writer reopened its file and found another one).  A reopen that finds
 * the same file goes on with the chain.  conf/audit-verify checks files
 * offline, and the continues links between the files it is given.
 *
 * The chain is unkeyed: it shows a line removed, altered, inserted or
 * reordered, and lines cut off the end of a file only by comparison with
 * a copy kept elsewhere (the syslog stream carries the same chain values)
 * or, for a rotated file, with the next file's continues link.  Whoever
 * can rewrite a stream from some line to its end can also recompute the
 * chain of what follows.
 */

#ifndef WELBY_AUDIT_H
#define WELBY_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "welby_jose.h"
#include "welby_reason.h"


#define WELBY_AUDIT_SCHEMA       1

#define WELBY_AUDIT_HEX_LEN      64     /* SHA-256 in hex, without NUL */

/* ,"chain":"<64 hex>"} */
#define WELBY_AUDIT_CHAIN_TAIL   (sizeof(",\"chain\":\"\"}") - 1            \
                                  + WELBY_AUDIT_HEX_LEN)

#define WELBY_AUDIT_QUERY_NAMES  32     /* names kept from one query */
#define WELBY_AUDIT_QUERY_NAME   64     /* longest name kept, bytes */


typedef enum {
    WELBY_AUDIT_CAT_AUTHENTICATION = 0,
    WELBY_AUDIT_CAT_OPERATION,
    WELBY_AUDIT_CAT_EVENT
} welby_audit_category_e;


/* the values are the RFC 5424 severities, so syslog uses them as they are */
typedef enum {
    WELBY_AUDIT_SEV_EMERGENCY = 0,
    WELBY_AUDIT_SEV_ALERT,
    WELBY_AUDIT_SEV_CRITICAL,
    WELBY_AUDIT_SEV_ERROR,
    WELBY_AUDIT_SEV_WARNING,
    WELBY_AUDIT_SEV_NOTICE,
    WELBY_AUDIT_SEV_INFORMATIONAL,
    WELBY_AUDIT_SEV_DEBUG
} welby_audit_severity_e;


typedef enum {
    WELBY_AUDIT_OUTCOME_ALLOW = 0,
    WELBY_AUDIT_OUTCOME_DENY,
    WELBY_AUDIT_OUTCOME_ERROR
} welby_audit_outcome_e;


/*
 * Strings: data == NULL when absent (an empty string with data != NULL is
 * written as "").  Numbers: -1 when absent.  Start from
 * welby_audit_record_init(), which marks everything absent.
 */
typedef struct {
    int64_t                  time_ms;       /* Unix time, milliseconds */
    welby_str_t              id;
    welby_str_t              client_request_id;
    welby_str_t              node;
    welby_str_t              stream;
    int64_t                  seq;

    welby_audit_category_e   category;
    welby_audit_severity_e   severity;
    welby_audit_outcome_e    outcome;
    welby_reason_e           reason;

    welby_str_t              method;
    welby_str_t              path;          /* normalised, no query */
    welby_str_t              query_names;   /* welby_audit_query_names() */
    welby_str_t              query_hmac;    /* welby_audit_query_hash() */
    int64_t                  status;
    int64_t                  bytes_in;
    int64_t                  bytes_out;
    int64_t                  time_taken_ms;

    welby_str_t              interaction;
    welby_str_t              resource_type;
    welby_str_t              resource_id;
    welby_str_t              patient;

    welby_str_t              sub;
    welby_str_t              client_id;
    welby_str_t              iss;
    welby_str_t              fhir_user;
    welby_str_t              role;
    welby_str_t              amr;           /* joined by spaces, as parsed */
    welby_str_t              jti;           /* the token id, never a token */
    welby_str_t              cert_sha256;   /* client certificate, hex */

    welby_str_t              ip;
    int64_t                  port;
    welby_str_t              country;       /* ISO 3166-1 alpha-2 */
    int64_t                  asn;

    welby_str_t              tls_protocol;
    welby_str_t              tls_cipher;
    welby_str_t              tls_client_cert;   /* none, verified, failed */
    int64_t                  tls_client_cert_error;
    welby_str_t              tls_proxy;

    /* the rules that matched, their severities (as many), the score */
    const int64_t           *waf_rules;
    const int64_t           *waf_severities;
    size_t                   nwaf_rules;
    int64_t                  waf_score;

    welby_str_t              limit_name;
    welby_str_t              limit_key;

    int64_t                  upstream_status;

    /* an alert record (welby_alert): the rule, the count that crossed
     * its threshold, its window, and the address of a per-address rule */
    welby_str_t              alert_event;
    int64_t                  alert_count;
    int64_t                  alert_window_ms;
    welby_str_t              alert_key;

    /* an EVP_MD * for SHA-256 fetched once by the caller, or NULL */
    const void              *sha256;

    /*
     * The stream's last line in the file before, for the first line of a
     * new chain in a file the writer went on to (chained lines only).
     */
    int64_t                  continues_seq;
    const unsigned char     *continues_chain;   /* 64 hex digits or NULL */

    /* written last when set; welby_audit_json_chained() computes it */
    const unsigned char     *chain;         /* 64 hex digits or NULL */
} welby_audit_record_t;


void welby_audit_record_init(welby_audit_record_t *r);

/*
 * What the gateway decided about a request; the access handler's
 * decision, as welby_audit_classify() reads it.
 */
typedef enum {
    WELBY_AUDIT_DECISION_NONE = 0,      /* no step ran */
    WELBY_AUDIT_DECISION_ALLOW,
    WELBY_AUDIT_DECISION_DENY,
    WELBY_AUDIT_DECISION_DETECT         /* a reason found, not enforced */
} welby_audit_decision_e;

/*
 * The outcome, category and severity of a request's record, from the
 * decision, the reason and the HTTP status (README.md, "The audit
 * trail", has the table):
 *
 *   refused                  deny   authentication (a client_cert_* or
 *                                   token_* reason) or event; warning,
 *                                   error when the status is 5xx
 *                                   (internal_error)
 *   allowed, 5xx             error  event          error
 *   not checked (no step
 *   ran), 5xx                error  event          error
 *   not checked, other       error  event          warning
 *   allowed in detect mode   allow  operation      notice
 *   allowed                  allow  operation      informational
 *
 * Only a refusal is an authentication record: a detect-mode request that
 * went through is an operation, with its reason kept.
 */
void welby_audit_classify(welby_audit_record_t *r,
    welby_audit_decision_e decision, welby_reason_e reason, int64_t status);

const char *welby_audit_category_name(welby_audit_category_e category);
const char *welby_audit_severity_name(welby_audit_severity_e severity);
const char *welby_audit_outcome_name(welby_audit_outcome_e outcome);

/*
 * The writers below return the length of their whole output and write at
 * most cap bytes.  With dst == NULL they only compute the length.  When
 * the length is greater than cap, dst holds an unusable prefix: retry
 * with a larger buffer.
 */

/* One record as a JSON line ending in LF, r->chain written when set. */
size_t welby_audit_json(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r);

/*
 * One record as a file line with its chain member computed from prev_hex
 * (NULL: the start of a stream); r->chain is ignored.  When the line fits
 * (dst != NULL, result <= cap), next_hex receives the new chain value and
 * a NUL; the caller makes it the next prev once the line is written.
 * Returns 0 if the digest failed.
 */
size_t welby_audit_json_chained(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r, const unsigned char *prev_hex,
    unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1]);

/*
 * One record as a FHIR R4 AuditEvent line ending in LF (see "FHIR form"
 * above).  When r->chain is set, the node, stream, seq and chain members
 * follow the resource, as in welby_audit_fhir_chained().
 */
size_t welby_audit_fhir(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r);

/*
 * One record as a chained FHIR file line, with the conventions of
 * welby_audit_json_chained(); r->chain is ignored.  A stream may mix JSON
 * and FHIR lines: the chain runs over the bytes either way.
 */
size_t welby_audit_fhir_chained(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r, const unsigned char *prev_hex,
    unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1]);

/*
 * The chain step: next_hex = hex(SHA-256(prev_hex || p)), with p the line
 * up to its chain member (see above) and prev_hex 64 hex digits or NULL
 * for 64 '0'.  next_hex gets a NUL.  Returns 0, or -1 if OpenSSL failed.
 */
int welby_audit_chain(unsigned char next_hex[WELBY_AUDIT_HEX_LEN + 1],
    const unsigned char *prev_hex, const unsigned char *p, size_t len);

/*
 * The distinct parameter names of a query string (without '?'), in the
 * order first seen, joined by ','.  Parameters are split on '&' and ';'
 * and names percent-decoded as welby_query_next() and
 * welby_query_decode() do.  A parameter without '=' is dropped, as it
 * cannot be told from a bare value; so is an empty name, a decoded name
 * longer than WELBY_AUDIT_QUERY_NAME bytes, and a decoded name with a
 * byte outside ALPHA / DIGIT / "-._~:$%[]*" (which leaves out control
 * characters, spaces, ',' and non-ASCII).  At most
 * WELBY_AUDIT_QUERY_NAMES names.  Returns the length; dst may be NULL.
 */
size_t welby_audit_query_names(unsigned char *dst, size_t cap,
    const unsigned char *args, size_t len);

/*
 * HMAC-SHA256 of the whole query string under a configured secret, as 64
 * lowercase hex digits and a NUL.  A plain hash would not do: queries are
 * short and guessable.  An empty key is refused.  Returns 0 or -1.
 */
int welby_audit_query_hash(unsigned char out_hex[WELBY_AUDIT_HEX_LEN + 1],
    const unsigned char *key, size_t key_len, const unsigned char *args,
    size_t len);

/*
 * One record as an RFC 5424 message:
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [welby@PEN ...] MSG
 *
 * PRI is facility * 8 + r->severity (a facility outside 0..23 becomes 13,
 * "log audit").  HOSTNAME is hostname, or r->node when NULL; APP-NAME is
 * app, or "welby" when NULL; PROCID is r->stream; MSGID is the category.
 * Header fields keep printable US-ASCII only (other bytes become '_') up
 * to their RFC lengths; an empty or absent one is "-".  The structured
 * data repeats the fields a collector filters on (id, outcome, reason,
 * status, sub, client_id, patient, ip, chain), its values escaped as in
 * section 6.3.3 ('"', '\' and ']' after a '\'), made valid UTF-8 and with
 * control characters replaced by U+FFFD, so a message stays one line.
 * pen <= 0: no structured data ("-").  MSG is the JSON record without its
 * LF and without a BOM, as RFC 8259 forbids one in JSON text; RFC 5424
 * allows that (MSG-ANY).  octet_counting != 0 prefixes "LEN " for TCP
 * (RFC 6587 section 3.4.1); otherwise the caller frames the message.
 */
size_t welby_audit_syslog(unsigned char *dst, size_t cap,
    const welby_audit_record_t *r, int facility, const char *hostname,
    const char *app, int pen, int octet_counting);

#endif /* WELBY_AUDIT_H */
