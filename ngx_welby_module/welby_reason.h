/*
 * The one list of reason codes.  A refusal names exactly one of them, and
 * the response, $welby_reason, the audit record and the metrics all use
 * the same code.  No nginx types here: unit tests link it alone.
 */

#ifndef WELBY_REASON_H
#define WELBY_REASON_H

#include <stddef.h>


/*
 * X(name, code, status, FHIR issue type, fixed text, RFC 6750 error)
 *
 * The FHIR issue type is from http://hl7.org/fhir/issue-type; the RFC 6750
 * error, when set, makes the refusal carry a WWW-Authenticate challenge.
 * Texts are fixed, short, and never carry request data: they end up in
 * OperationOutcome.issue.details.text and RFC 6750 error_description,
 * whose grammar allows no '"' and no '\'.
 */
#define WELBY_REASONS(X)                                                     \
    X(NONE, "", 200, "informational", "", NULL)                             \
    X(REQUEST_MALFORMED, "request_malformed", 400, "invalid",               \
      "The request is malformed.", NULL)                                    \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", 405, "not-supported",       \
      "The method is not allowed.", NULL)                                   \
    X(TLS_REQUIRED, "tls_required", 403, "security",                        \
      "This resource requires HTTPS with a current TLS version.",           \
      NULL)                                                                 \
    X(CLIENT_CERT_REQUIRED, "client_cert_required", 403, "security",        \
      "A client certificate is required.", NULL)                            \
    X(CLIENT_CERT_INVALID, "client_cert_invalid", 403, "security",          \
      "The client certificate could not be verified.", NULL)                \
    X(CLIENT_CERT_NOT_ALLOWED, "client_cert_not_allowed", 403, "security",  \
      "The client certificate is not allowed here.", NULL)                  \
    X(TOKEN_MISSING, "token_missing", 401, "login",                         \
      "An access token is required.", NULL)                                 \
    X(TOKEN_AMBIGUOUS, "token_ambiguous", 400, "invalid",                   \
      "The request carries more than one access token.", "invalid_request") \
    X(TOKEN_IN_QUERY, "token_in_query", 400, "invalid",                     \
      "Access tokens are not accepted in the query.", "invalid_request")    \
    X(TOKEN_TOO_LARGE, "token_too_large", 401, "login",                     \
      "The access token is too large.", "invalid_token")                    \
    X(TOKEN_MALFORMED, "token_malformed", 401, "login",                     \
      "The access token is malformed.", "invalid_token")                    \
    X(TOKEN_ALG, "token_alg", 401, "login",                                 \
      "The access token algorithm is not accepted.", "invalid_token")       \
    X(TOKEN_CRIT, "token_crit", 401, "login",                               \
      "The access token has unsupported critical parameters.",              \
      "invalid_token")                                                      \
    X(TOKEN_ISSUER, "token_issuer", 401, "login",                           \
      "The access token issuer is not accepted.", "invalid_token")          \
    X(TOKEN_KEY, "token_key", 401, "login",                                 \
      "The access token key is unknown.", "invalid_token")                  \
    X(TOKEN_SIGNATURE, "token_signature", 401, "login",                     \
      "The access token signature is invalid.", "invalid_token")            \
    X(TOKEN_TYPE, "token_type", 401, "login",                               \
      "The token is not an access token.", "invalid_token")                 \
    X(TOKEN_CLAIMS, "token_claims", 401, "login",                           \
      "The access token claims are incomplete or invalid.",                 \
      "invalid_token")                                                      \
    X(TOKEN_EXPIRED, "token_expired", 401, "login",                         \
      "The access token expired.", "invalid_token")                         \
    X(TOKEN_NOT_YET_VALID, "token_not_yet_valid", 401, "login",             \
      "The access token is not valid yet.", "invalid_token")                \
    X(TOKEN_LIFETIME, "token_lifetime", 401, "login",                       \
      "The access token lifetime is too long.", "invalid_token")            \
    X(TOKEN_AUDIENCE, "token_audience", 401, "login",                       \
      "The access token audience is not accepted.", "invalid_token")        \
    X(TOKEN_REVOKED, "token_revoked", 401, "login",                         \
      "The access token was revoked.", "invalid_token")                     \
    X(TOKEN_BINDING, "token_binding", 401, "login",                         \
      "The access token is not bound to this client certificate.",          \
      "invalid_token")                                                      \
    X(SUBREQUEST_UNCHECKED, "subrequest_unchecked", 403, "security",        \
      "A subrequest into a protected location was not checked", NULL)     \
    X(FHIR_UNCLASSIFIABLE, "fhir_unclassifiable", 403, "security",          \
      "The request cannot be checked against the access policy.", NULL)    \
    X(FHIR_TYPE_UNKNOWN, "fhir_type_unknown", 404, "not-supported",         \
      "The resource type is not supported.", NULL)                         \
    X(FHIR_FORMAT_UNSUPPORTED, "fhir_format_unsupported", 415,              \
      "not-supported", "Only FHIR JSON can be checked here.", NULL)        \
    X(FHIR_BODY_INVALID, "fhir_body_invalid", 400, "invalid",               \
      "The request body is not a FHIR JSON resource for this request.",    \
      NULL)                                                                 \
    X(FHIR_ID_MISMATCH, "fhir_id_mismatch", 400, "invalid",                 \
      "The resource id does not match the request URL.", NULL)             \
    X(BODY_TOO_LARGE, "body_too_large", 413, "too-costly",                  \
      "The request body is too large to be checked.", NULL)                \
    X(SCOPE_INSUFFICIENT, "scope_insufficient", 403, "forbidden",           \
      "The access token's scopes do not permit this request.",             \
      "insufficient_scope")                                                 \
    X(SYSTEM_SCOPE_REFUSED, "system_scope_refused", 403, "forbidden",       \
      "System scopes are not accepted from this client.",                  \
      "insufficient_scope")                                                 \
    X(OPERATION_UNKNOWN, "operation_unknown", 403, "not-supported",         \
      "The operation is not allowed here.", NULL)                          \
    X(PATIENT_MISMATCH, "patient_mismatch", 403, "forbidden",               \
      "The request reaches a patient the access token does not.",          \
      "insufficient_scope")                                                 \
    X(PATIENT_UNBOUND, "patient_unbound", 403, "forbidden",                 \
      "A search of patient data must name the patient.",                   \
      "insufficient_scope")                                                 \
    X(PATIENT_UNVERIFIABLE, "patient_unverifiable", 403, "forbidden",       \
      "Whose data this request reaches cannot be verified.",               \
      "insufficient_scope")                                                 \
    X(RESPONSE_PATIENT_MISMATCH, "response_patient_mismatch", 403,          \
      "forbidden", "The answer holds data the access token does not reach.", \
      NULL)                                                                 \
    X(RESPONSE_UNVERIFIABLE, "response_unverifiable", 502, "exception",     \
      "The answer could not be checked.", NULL)                            \
    X(WAF_BLOCK, "waf_block", 403, "security",                              \
      "The request was refused by a security rule.", NULL)                 \
    X(RATE_LIMITED, "rate_limited", 429, "throttled",                       \
      "Too many requests.", NULL)                                          \
    X(GEO_DENIED, "geo_denied", 403, "security",                            \
      "Requests from this location are not accepted here.", NULL)          \
    X(AUTH_THROTTLED, "auth_throttled", 429, "throttled",                   \
      "Too many failed authentications.", NULL)                            \
    X(ENUMERATION, "enumeration", 403, "security",                          \
      "Too many patients reached in a short time.", NULL)                  \
    X(IMPOSSIBLE_TRAVEL, "impossible_travel", 403, "security",              \
      "The access token was used from another country too soon.", NULL)   \
    X(INTERNAL_ERROR, "internal_error", 500, "exception",                   \
      "The request could not be checked.", NULL)


#define WELBY_REASON_ENUM(name, code, status, issue, text, bearer)          \
    WELBY_REASON_##name,

typedef enum {
    WELBY_REASONS(WELBY_REASON_ENUM)
    WELBY_REASON_COUNT
} welby_reason_e;

#undef WELBY_REASON_ENUM


typedef struct {
    const char    *code;
    int            status;
    const char    *issue;
    const char    *text;
    const char    *bearer_error;
} welby_reason_t;


const welby_reason_t *welby_reason_get(welby_reason_e reason);
welby_reason_e welby_reason_find(const unsigned char *code, size_t len);

/*
 * The FHIR OperationOutcome body of a refusal.  With dst == NULL only the
 * length is computed.  The request id goes into the resource id and the
 * diagnostics, so a client can quote it to support.
 */
size_t welby_outcome_json(unsigned char *dst, const welby_reason_t *reason,
    const unsigned char *id, size_t id_len);

/*
 * An RFC 6750 section 3 challenge: Bearer realm="...", error="...",
 * error_description="...", scope="...".  error, description and scope may
 * be NULL.  The realm is a quoted-string; '"' and '\' are escaped.  With
 * dst == NULL only the length is computed.
 */
size_t welby_www_authenticate(unsigned char *dst, const unsigned char *realm,
    size_t realm_len, const char *error, const char *description,
    const char *scope);

/*
 * Authentication failures: a client certificate or an access token
 * missing, unverifiable or not accepted (the audit category
 * "authentication", the auth_failures alerts).
 */
#define welby_reason_is_auth(r)                                             \
    ((r) >= WELBY_REASON_CLIENT_CERT_REQUIRED                               \
     && (r) <= WELBY_REASON_TOKEN_BINDING)

#endif /* WELBY_REASON_H */
