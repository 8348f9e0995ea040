/*
 * SMART App Launch scopes (v1 and v2, granular v2) and the policy's
 * decision over one classified FHIR request, without nginx types.
 */

#ifndef WELBY_SCOPE_H
#define WELBY_SCOPE_H

#include <stddef.h>

#include "welby_fhir.h"


#define WELBY_SCOPES_MAX        64
#define WELBY_SCOPE_PARAMS_MAX  4       /* of one granular scope */
#define WELBY_SCOPES_PARAMS_MAX 16      /* of all scopes of a token */

/* SMART v2 letters, in their required order c r u d s */
#define WELBY_SCOPE_C    0x01
#define WELBY_SCOPE_R    0x02
#define WELBY_SCOPE_U    0x04
#define WELBY_SCOPE_D    0x08
#define WELBY_SCOPE_S    0x10
#define WELBY_SCOPE_ALL  0x1f

/* contexts, also used as masks */
#define WELBY_SCOPE_PATIENT  0x01
#define WELBY_SCOPE_USER     0x02
#define WELBY_SCOPE_SYSTEM   0x04


typedef struct {
    unsigned                 context;   /* one WELBY_SCOPE_PATIENT, ... */
    int                      type;      /* WELBY_FHIR_TYPE_NONE: '*' */
    unsigned                 letters;

    /*
     * Granular (v2 "?name=value&..."), decoded: the scope grants only
     * searches that carry each of these parameters with exactly this
     * value, and nothing but 's'.
     */
    welby_fhir_param_t      *params;    /* in welby_scopes_t's params */
    size_t                   nparams;
} welby_scope_t;


/*
 * The granular parameters of all scopes share one array: few tokens
 * carry any, and the whole set stays small enough for a request pool's
 * block (no allocation of its own per request).
 */
typedef struct {
    welby_scope_t            scopes[WELBY_SCOPES_MAX];
    size_t                   n;
    size_t                   ignored;   /* malformed: never widen */

    welby_fhir_param_t       params[WELBY_SCOPES_PARAMS_MAX];
    size_t                   nparams;
} welby_scopes_t;


/*
 * Adds the scopes of a space-separated "scope" claim (or of one element
 * of an "scp" array) to s.  Scopes that are not resource scopes (openid,
 * fhirUser, launch/patient, offline_access) are skipped; malformed ones
 * (letters out of order or unknown, unknown types, a v1 suffix mixed
 * with v2 letters) are counted in ignored and grant nothing.  Decoded
 * granular values are written to scratch, which must hold len bytes;
 * the scopes point into scope and scratch.
 */
void welby_scopes_parse(welby_scopes_t *s, const unsigned char *scope,
    size_t len, unsigned char *scratch);


/* What the policy decides over: the token's grants and the location's. */
typedef struct {
    const welby_scopes_t    *scopes;
    welby_str_t              patient;       /* the "patient" claim */
    const welby_str_t       *patients;      /* the patients claim */
    size_t                   npatients;
    unsigned                 system_ok:1;   /* client may use system/ */

    /* operations the location lets through, beyond the known ones */
    const welby_str_t       *operations;
    size_t                   noperations;
} welby_policy_subject_t;


typedef struct {
    unsigned                 context;       /* the context that allowed */
    unsigned                 letters;       /* what the request needed */
    int                      type;          /* the type refused, or NONE */

    /*
     * The answer must be checked: an instance read of a compartment type
     * whose patient the request does not name.
     */
    unsigned                 check_response:1;
} welby_policy_result_t;


/*
 * Decides one classified request (a Bundle entry is one request).
 * Returns WELBY_REASON_NONE, or SCOPE_INSUFFICIENT, SYSTEM_SCOPE_REFUSED,
 * OPERATION_UNKNOWN, PATIENT_MISMATCH, PATIENT_UNBOUND (a search of a
 * compartment type that names no patient), PATIENT_UNVERIFIABLE, and
 * FHIR_UNCLASSIFIABLE for a request that was not classified.
 */
welby_reason_e welby_policy_decide(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, welby_policy_result_t *res);

/*
 * Whether the patient id is reachable in the context that allowed:
 * patient, the "patient" claim; user, the patients claim; system, any.
 */
int welby_policy_patient_ok(const welby_policy_subject_t *subj,
    unsigned context, const unsigned char *id, size_t len);

#endif /* WELBY_SCOPE_H */
