/*
 * JOSE for access tokens: the algorithm list, the JWS compact parser, the
 * access-token claims and their checks (RFC 7515, RFC 7519, RFC 8725,
 * RFC 9068).  No nginx types here: unit tests and the fuzzer link it alone.
 * Signatures are verified in welby_jwk.c.
 */

#ifndef WELBY_JOSE_H
#define WELBY_JOSE_H

#include <stddef.h>
#include <stdint.h>

#include "welby_reason.h"


typedef struct {
    const unsigned char  *data;
    size_t                len;
} welby_str_t;


/* X(name, "JWS alg") */
#define WELBY_ALGS(X)                                                        \
    X(RS256, "RS256")                                                       \
    X(RS384, "RS384")                                                       \
    X(RS512, "RS512")                                                       \
    X(PS256, "PS256")                                                       \
    X(PS384, "PS384")                                                       \
    X(PS512, "PS512")                                                       \
    X(ES256, "ES256")                                                       \
    X(ES384, "ES384")                                                       \
    X(ES512, "ES512")                                                       \
    X(EDDSA, "EdDSA")                                                       \
    X(HS256, "HS256")                                                       \
    X(HS384, "HS384")                                                       \
    X(HS512, "HS512")

#define WELBY_ALG_ENUM(name, jws)  WELBY_ALG_##name,

typedef enum {
    WELBY_ALG_UNKNOWN = 0,
    WELBY_ALGS(WELBY_ALG_ENUM)
    WELBY_ALG_COUNT
} welby_alg_e;

#undef WELBY_ALG_ENUM

#define WELBY_ALG_BIT(alg)       (1u << (alg))
#define WELBY_ALGS_HMAC          (WELBY_ALG_BIT(WELBY_ALG_HS256)            \
                                  | WELBY_ALG_BIT(WELBY_ALG_HS384)          \
                                  | WELBY_ALG_BIT(WELBY_ALG_HS512))
#define WELBY_ALGS_ASYMMETRIC    (((1u << WELBY_ALG_COUNT) - 2)             \
                                  & ~WELBY_ALGS_HMAC)

/* Exact, case-sensitive match; "none" (any casing) is WELBY_ALG_UNKNOWN. */
welby_alg_e welby_alg_find(const unsigned char *name, size_t len);
const char *welby_alg_name(welby_alg_e alg);


/* Claim presence bits, for welby_claims_t.present and required sets. */
#define WELBY_CLAIM_ISS        0x0001
#define WELBY_CLAIM_SUB        0x0002
#define WELBY_CLAIM_AUD        0x0004
#define WELBY_CLAIM_EXP        0x0008
#define WELBY_CLAIM_NBF        0x0010
#define WELBY_CLAIM_IAT        0x0020
#define WELBY_CLAIM_JTI        0x0040
#define WELBY_CLAIM_CLIENT_ID  0x0080
#define WELBY_CLAIM_SCOPE      0x0100
#define WELBY_CLAIM_PATIENT    0x0200
#define WELBY_CLAIM_FHIR_USER  0x0400
#define WELBY_CLAIM_AMR        0x0800
#define WELBY_CLAIM_CNF        0x1000
#define WELBY_CLAIM_NONCE      0x2000
#define WELBY_CLAIM_AT_HASH    0x4000

/* RFC 9068 section 2.2: what every JWT access token carries. */
#define WELBY_CLAIMS_RFC9068   (WELBY_CLAIM_ISS | WELBY_CLAIM_EXP           \
                                | WELBY_CLAIM_AUD | WELBY_CLAIM_SUB         \
                                | WELBY_CLAIM_CLIENT_ID | WELBY_CLAIM_IAT   \
                                | WELBY_CLAIM_JTI)

#define WELBY_AUD_MAX          8       /* audiences in one token */
#define WELBY_CLAIM_STR_MAX    1024    /* bytes in one string claim */
#define WELBY_JSON_DEPTH_MAX   8       /* nesting of header and claims */


typedef struct {
    welby_alg_e           alg;
    welby_str_t           kid;          /* data == NULL: absent */
    welby_str_t           typ;          /* data == NULL: absent */
    unsigned              has_jku:1;    /* noted, never used */
    unsigned              has_x5u:1;
    unsigned              has_jwk:1;
    unsigned              has_x5c:1;
} welby_jose_header_t;


/*
 * The claims later steps need.  Strings are copies, without control
 * characters (they become backend headers), at most WELBY_CLAIM_STR_MAX
 * bytes; data == NULL when absent.  amr is the array joined by spaces;
 * scope is the "scope" string or the "scp" array joined by spaces.
 * patients is the issuer's patients claim (welby_issuers_t): FHIR ids
 * joined by spaces, data == NULL when absent or when no issuer names
 * one.
 */
typedef struct {
    unsigned              present;      /* WELBY_CLAIM_* */

    welby_str_t           iss;
    welby_str_t           sub;
    welby_str_t           client_id;
    welby_str_t           jti;
    welby_str_t           scope;
    welby_str_t           patient;
    welby_str_t           fhir_user;
    welby_str_t           amr;
    welby_str_t           patients;

    welby_str_t           aud[WELBY_AUD_MAX];
    size_t                naud;

    int64_t               exp;
    int64_t               nbf;
    int64_t               iat;

    /* cnf.x5t#S256 (RFC 8705 section 3.1), decoded */
    unsigned char         x5t_s256[32];
} welby_claims_t;


typedef struct {
    welby_jose_header_t   header;
    welby_claims_t        claims;

    welby_str_t           signing_input;   /* into the token: header.payload */
    welby_str_t           signature;       /* decoded, in scratch */
    welby_str_t           payload;         /* decoded JSON, in scratch */
} welby_token_t;


/* The scratch a token of len bytes needs in welby_token_parse(). */
#define welby_token_scratch_size(len)  (2 * (len) + 64)

/*
 * Parses a JWS compact serialization (three base64url parts, nothing
 * else) into t, with every string, the decoded payload and the signature
 * copied into scratch (welby_token_scratch_size(len) bytes), so t stays
 * valid after the call.  No signature is checked here; no required claim
 * either (welby_token_check() does that).  Returns:
 *
 *   WELBY_REASON_NONE             parsed
 *   WELBY_REASON_TOKEN_MALFORMED  not three canonical base64url parts;
 *                                 header or payload not a JSON object;
 *                                 invalid UTF-8, duplicate member names,
 *                                 nesting deeper than WELBY_JSON_DEPTH_MAX
 *   WELBY_REASON_TOKEN_ALG        alg absent, not a string, "none" in any
 *                                 casing, or not in WELBY_ALGS
 *   WELBY_REASON_TOKEN_CRIT       a "crit" header member (no extension is
 *                                 understood, RFC 7515 section 4.1.11)
 *   WELBY_REASON_TOKEN_CLAIMS     a known claim of the wrong type: iss,
 *                                 sub, client_id, jti, scope, patient,
 *                                 fhirUser not strings (or with control
 *                                 characters, or too long); scp not a
 *                                 string or an array of strings (each
 *                                 non-empty and without spaces, as they
 *                                 are joined by spaces), or both scope
 *                                 and scp present; the issuer's patients
 *                                 claim not an array of at most
 *                                 WELBY_PATIENTS_MAX FHIR ids
 *                                 (welby_fhir_id_valid); aud not a
 *                                 string or an array of 1..WELBY_AUD_MAX
 *                                 strings; exp, nbf, iat not numbers in
 *                                 0..2^53; amr not an array of strings
 *                                 (each non-empty and without spaces,
 *                                 as they are joined by spaces);
 *                                 cnf not an object holding exactly a
 *                                 base64url "x5t#S256" of 32 bytes;
 *                                 kid or typ in the header not a string
 *                                 (with the same limits as claims)
 */
welby_reason_e welby_token_parse(welby_token_t *t,
    const unsigned char *token, size_t len, unsigned char *scratch);


/*
 * The tokens of one key share one encoded header, so a worker remembers
 * the last few headers that parsed cleanly, byte for byte, and skips their
 * base64url and JSON work.  A hit gives exactly what parsing would.  The
 * cache must not move once used: slots point into themselves.
 */
#define WELBY_HEADER_CACHE_SLOTS  8
#define WELBY_HEADER_CACHE_MAX    256   /* encoded header bytes cached */

typedef struct {
    size_t                len;          /* 0: empty */
    unsigned char         encoded[WELBY_HEADER_CACHE_MAX];
    welby_jose_header_t   header;       /* kid, typ: into text */
    unsigned char         text[WELBY_HEADER_CACHE_MAX];
} welby_header_slot_t;

typedef struct {
    welby_header_slot_t   slots[WELBY_HEADER_CACHE_SLOTS];
    unsigned              next;         /* the slot to replace */
} welby_header_cache_t;

/* welby_token_parse() with a header cache (hc may be NULL). */
welby_reason_e welby_token_parse_cached(welby_token_t *t,
    const unsigned char *token, size_t len, unsigned char *scratch,
    welby_header_cache_t *hc);


#define WELBY_PATIENTS_MAX  128     /* ids in one patients claim */

/*
 * What the parser needs to know of the configured issuers: the name of
 * the claim that lists a token's patients, by the token's iss (NULL: no
 * claim is read).  The name is known only once iss is read, so it is
 * asked for while the payload is parsed, once.
 */
typedef struct {
    const char           *(*patients_claim)(void *data,
                                            const welby_str_t *iss);
    void                  *data;
} welby_issuers_t;

/*
 * welby_token_parse_cached() that also reads the issuer's patients
 * claim into claims.patients, within the same scratch (issuers may be
 * NULL: none is read).
 */
welby_reason_e welby_token_parse_issuers(welby_token_t *t,
    const unsigned char *token, size_t len, unsigned char *scratch,
    welby_header_cache_t *hc, const welby_issuers_t *issuers);


#define WELBY_TYP_AT_JWT  0   /* "at+jwt" or "application/at+jwt" only */
#define WELBY_TYP_JWT     1   /* also "JWT" and an absent typ */

typedef struct {
    const welby_str_t    *audiences;       /* at least one must match */
    size_t                naudiences;
    int64_t               leeway;          /* seconds */
    int64_t               max_lifetime;    /* seconds, exp - iat; 0: any */
    unsigned              typ;             /* WELBY_TYP_* */
    unsigned              required;        /* WELBY_CLAIM_* */
} welby_token_rules_t;

/*
 * The checks after the signature, in this order, the first failure named:
 *
 *   WELBY_REASON_TOKEN_TYPE           typ not allowed by rules->typ (media
 *                                     types compare case-insensitively,
 *                                     RFC 7515 section 4.1.9); or an ID
 *                                     token: nonce or at_hash present, or
 *                                     no client_id
 *   WELBY_REASON_TOKEN_CLAIMS         a rules->required claim is absent
 *   WELBY_REASON_TOKEN_EXPIRED        now > exp + leeway
 *   WELBY_REASON_TOKEN_NOT_YET_VALID  now + leeway < nbf, or < iat
 *   WELBY_REASON_TOKEN_LIFETIME       exp - iat > max_lifetime (when set;
 *                                     no exp exceeds it, no iat counts
 *                                     from now)
 *   WELBY_REASON_TOKEN_AUDIENCE       no aud equals a configured audience
 *
 * The issuer is matched by the caller, which selected the rules by iss.
 */
welby_reason_e welby_token_check(const welby_token_rules_t *rules,
    const welby_jose_header_t *header, const welby_claims_t *claims,
    int64_t now);

#endif /* WELBY_JOSE_H */
