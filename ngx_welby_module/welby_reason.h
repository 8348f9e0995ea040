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

#endif /* WELBY_REASON_H */
