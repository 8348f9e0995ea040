/*
 * JWS compact parsing and access-token claim checks.  See welby_jose.h.
 */

#include <string.h>

#include <jansson.h>

#include "welby_b64.h"
#include "welby_jose.h"
#include "welby_fhir.h"             /* welby_fhir_id_valid */


/* The largest integer a double holds exactly (RFC 7493 section 2.2). */
#define WELBY_NUMERIC_DATE_MAX  9007199254740992LL


/* A bump allocator over the caller's scratch. */
typedef struct {
    unsigned char        *pos;
    unsigned char        *end;
} welby_scratch_t;


static unsigned char *welby_scratch_alloc(welby_scratch_t *s, size_t n);
static welby_reason_e welby_part_decode(welby_scratch_t *s, welby_str_t *dst,
    const unsigned char *src, size_t len);
static welby_reason_e welby_token_parse_payload(welby_token_t *t,
    const unsigned char *token, size_t len, size_t dot1, size_t dot2,
    welby_scratch_t *s, welby_header_slot_t *slot,
    const welby_issuers_t *issuers);
static welby_reason_e welby_header_copy(welby_str_t *dst,
    const welby_str_t *src, welby_scratch_t *s);
static welby_header_slot_t *welby_header_cache_find(
    welby_header_cache_t *hc, const unsigned char *encoded, size_t len);
static void welby_header_cache_add(welby_header_cache_t *hc,
    const unsigned char *encoded, size_t len, const welby_jose_header_t *h);
static welby_reason_e welby_json_load(json_t **doc, const welby_str_t *text);
static size_t welby_json_depth(const unsigned char *p, size_t len);
static welby_reason_e welby_header_parse(welby_jose_header_t *h,
    json_t *doc, welby_scratch_t *s);
static welby_reason_e welby_claims_parse(welby_claims_t *c, json_t *doc,
    welby_scratch_t *s, const welby_issuers_t *issuers);
static int welby_text_valid(json_t *v);
static welby_reason_e welby_string_copy(welby_str_t *dst, json_t *v,
    welby_scratch_t *s);
static welby_reason_e welby_string_claim(welby_claims_t *c, json_t *doc,
    const char *name, unsigned bit, welby_str_t *dst, welby_scratch_t *s);
static welby_reason_e welby_aud_parse(welby_claims_t *c, json_t *v,
    welby_scratch_t *s);
static welby_reason_e welby_date_claim(welby_claims_t *c, json_t *doc,
    const char *name, unsigned bit, int64_t *dst);
static welby_reason_e welby_words_join(json_t *v, welby_str_t *dst,
    size_t max, int ids, welby_scratch_t *s);
static welby_reason_e welby_cnf_parse(welby_claims_t *c, json_t *v);
static int welby_typ_allowed(unsigned typ, const welby_str_t *value);
static int welby_str_caseeq(const welby_str_t *s, const char *lit);
static int64_t welby_add_sat(int64_t a, int64_t b);


#define WELBY_ALG_NAME(name, jws)  jws,

static const char  *welby_alg_names[] = {
    NULL,
    WELBY_ALGS(WELBY_ALG_NAME)
};

#undef WELBY_ALG_NAME


welby_alg_e
welby_alg_find(const unsigned char *name, size_t len)
{
    size_t  i;

    /*
     * An exact match only: RFC 7515 section 4.1.1 makes "alg" case
     * sensitive, and "none" in any casing is simply absent from the list.
     */

    for (i = 1; i < WELBY_ALG_COUNT; i++) {
        if (strlen(welby_alg_names[i]) == len
            && memcmp(welby_alg_names[i], name, len) == 0)
        {
            return (welby_alg_e) i;
        }
    }

    return WELBY_ALG_UNKNOWN;
}


const char *
welby_alg_name(welby_alg_e alg)
{
    if (alg == WELBY_ALG_UNKNOWN || (unsigned) alg >= WELBY_ALG_COUNT) {
        return NULL;
    }

    return welby_alg_names[alg];
}


welby_reason_e
welby_token_parse(welby_token_t *t, const unsigned char *token, size_t len,
    unsigned char *scratch)
{
    return welby_token_parse_cached(t, token, len, scratch, NULL);
}


welby_reason_e
welby_token_parse_cached(welby_token_t *t, const unsigned char *token,
    size_t len, unsigned char *scratch, welby_header_cache_t *hc)
{
    return welby_token_parse_issuers(t, token, len, scratch, hc, NULL);
}


welby_reason_e
welby_token_parse_issuers(welby_token_t *t, const unsigned char *token,
    size_t len, unsigned char *scratch, welby_header_cache_t *hc,
    const welby_issuers_t *issuers)
{
    size_t                i, dot1, dot2, ndots;
    json_t               *hdoc, *pdoc;
    welby_str_t           htext;
    welby_reason_e        rc;
    welby_scratch_t       s;
    welby_header_slot_t  *slot;

    memset(t, 0, sizeof(welby_token_t));

    s.pos = scratch;
    s.end = scratch + welby_token_scratch_size(len);

    /* JWS compact only: a JWE has four dots, JSON serialization none */

    ndots = 0;
    dot1 = 0;
    dot2 = 0;

    for (i = 0; i < len; i++) {
        if (token[i] != '.') {
            continue;
        }

        if (ndots == 0) {
            dot1 = i;

        } else {
            dot2 = i;
        }

        if (++ndots > 2) {
            return WELBY_REASON_TOKEN_MALFORMED;
        }
    }

    if (ndots != 2) {
        return WELBY_REASON_TOKEN_MALFORMED;
    }

    t->signing_input.data = token;
    t->signing_input.len = dot2;

    /*
     * Each decoded part takes at most 3/4 of its text, and each copied
     * string at most its JSON text: header, payload and signature, plus
     * the strings copied from header and payload, stay within
     * 1.5 * len + a few bytes of rounding, well inside the scratch.
     */

    slot = welby_header_cache_find(hc, token, dot1);

    if (slot != NULL) {
        return welby_token_parse_payload(t, token, len, dot1, dot2, &s,
                                         slot, issuers);
    }

    rc = welby_part_decode(&s, &htext, token, dot1);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    rc = welby_part_decode(&s, &t->payload, token + dot1 + 1,
                           dot2 - dot1 - 1);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    rc = welby_part_decode(&s, &t->signature, token + dot2 + 1,
                           len - dot2 - 1);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /* every malformation is named before any header or claim problem */

    rc = welby_json_load(&hdoc, &htext);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    rc = welby_json_load(&pdoc, &t->payload);
    if (rc != WELBY_REASON_NONE) {
        json_decref(hdoc);
        return rc;
    }

    rc = welby_header_parse(&t->header, hdoc, &s);

    if (rc == WELBY_REASON_NONE) {
        welby_header_cache_add(hc, token, dot1, &t->header);
        rc = welby_claims_parse(&t->claims, pdoc, &s, issuers);
    }

    json_decref(hdoc);
    json_decref(pdoc);

    return rc;
}


/* The rest of welby_token_parse() when the header is known. */
static welby_reason_e
welby_token_parse_payload(welby_token_t *t, const unsigned char *token,
    size_t len, size_t dot1, size_t dot2, welby_scratch_t *s,
    welby_header_slot_t *slot, const welby_issuers_t *issuers)
{
    json_t          *pdoc;
    welby_reason_e   rc;

    rc = welby_part_decode(s, &t->payload, token + dot1 + 1,
                           dot2 - dot1 - 1);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    rc = welby_part_decode(s, &t->signature, token + dot2 + 1,
                           len - dot2 - 1);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    rc = welby_json_load(&pdoc, &t->payload);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /* the token owns copies, as after parsing: the slot may be replaced */

    t->header = slot->header;

    rc = welby_header_copy(&t->header.kid, &slot->header.kid, s);

    if (rc == WELBY_REASON_NONE) {
        rc = welby_header_copy(&t->header.typ, &slot->header.typ, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_claims_parse(&t->claims, pdoc, s, issuers);
    }

    json_decref(pdoc);

    return rc;
}


static welby_reason_e
welby_header_copy(welby_str_t *dst, const welby_str_t *src,
    welby_scratch_t *s)
{
    unsigned char  *p;

    if (src->data == NULL) {
        dst->data = NULL;
        dst->len = 0;
        return WELBY_REASON_NONE;
    }

    p = welby_scratch_alloc(s, src->len);
    if (p == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    memcpy(p, src->data, src->len);

    dst->data = p;
    dst->len = src->len;

    return WELBY_REASON_NONE;
}


static welby_header_slot_t *
welby_header_cache_find(welby_header_cache_t *hc,
    const unsigned char *encoded, size_t len)
{
    unsigned  i;

    if (hc == NULL || len == 0 || len > WELBY_HEADER_CACHE_MAX) {
        return NULL;
    }

    for (i = 0; i < WELBY_HEADER_CACHE_SLOTS; i++) {
        if (hc->slots[i].len == len
            && memcmp(hc->slots[i].encoded, encoded, len) == 0)
        {
            return &hc->slots[i];
        }
    }

    return NULL;
}


static void
welby_header_cache_add(welby_header_cache_t *hc,
    const unsigned char *encoded, size_t len, const welby_jose_header_t *h)
{
    size_t                n;
    welby_header_slot_t  *slot;

    if (hc == NULL || len == 0 || len > WELBY_HEADER_CACHE_MAX
        || h->kid.len + h->typ.len > WELBY_HEADER_CACHE_MAX)
    {
        return;
    }

    slot = &hc->slots[hc->next];
    hc->next = (hc->next + 1) % WELBY_HEADER_CACHE_SLOTS;

    memcpy(slot->encoded, encoded, len);
    slot->len = len;
    slot->header = *h;

    n = 0;

    /* the cache is allocated once, so a slot may point into itself */

    if (h->kid.data != NULL) {
        memcpy(slot->text, h->kid.data, h->kid.len);
        slot->header.kid.data = slot->text;
        n += h->kid.len;
    }

    if (h->typ.data != NULL) {
        memcpy(slot->text + n, h->typ.data, h->typ.len);
        slot->header.typ.data = slot->text + n;
    }
}


welby_reason_e
welby_token_check(const welby_token_rules_t *rules,
    const welby_jose_header_t *header, const welby_claims_t *claims,
    int64_t now)
{
    size_t              i, j;
    int64_t             late, start;
    const welby_str_t  *aud, *want;

    /* RFC 8725 section 3.11: explicit typing keeps other JWTs out */

    if (!welby_typ_allowed(rules->typ, &header->typ)) {
        return WELBY_REASON_TOKEN_TYPE;
    }

    /*
     * An OpenID Connect ID token signed by the same issuer would otherwise
     * pass as an access token under the weaker "JWT" typing.
     */

    if ((claims->present & (WELBY_CLAIM_NONCE | WELBY_CLAIM_AT_HASH))
        || !(claims->present & WELBY_CLAIM_CLIENT_ID))
    {
        return WELBY_REASON_TOKEN_TYPE;
    }

    if ((rules->required & ~claims->present) != 0) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    /* exp, nbf and iat are within 0..2^53; now and leeway are not bound */

    if (claims->present & WELBY_CLAIM_EXP) {
        if (now > welby_add_sat(claims->exp, rules->leeway)) {
            return WELBY_REASON_TOKEN_EXPIRED;
        }
    }

    late = welby_add_sat(now, rules->leeway);

    if (((claims->present & WELBY_CLAIM_NBF) && late < claims->nbf)
        || ((claims->present & WELBY_CLAIM_IAT) && late < claims->iat))
    {
        return WELBY_REASON_TOKEN_NOT_YET_VALID;
    }

    if (rules->max_lifetime > 0) {

        /*
         * A token without exp never ends, and one without iat is measured
         * from now: neither may outlive the configured bound.
         */

        if (!(claims->present & WELBY_CLAIM_EXP)) {
            return WELBY_REASON_TOKEN_LIFETIME;
        }

        start = (claims->present & WELBY_CLAIM_IAT) ? claims->iat : now;

        if (start < claims->exp - rules->max_lifetime) {
            return WELBY_REASON_TOKEN_LIFETIME;
        }
    }

    /* aud compares as exact strings, RFC 7519 section 4.1.3 */

    for (i = 0; i < claims->naud; i++) {
        aud = &claims->aud[i];

        for (j = 0; j < rules->naudiences; j++) {
            want = &rules->audiences[j];

            if (aud->len == want->len
                && memcmp(aud->data, want->data, aud->len) == 0)
            {
                return WELBY_REASON_NONE;
            }
        }
    }

    return WELBY_REASON_TOKEN_AUDIENCE;
}


static unsigned char *
welby_scratch_alloc(welby_scratch_t *s, size_t n)
{
    unsigned char  *p;

    if ((size_t) (s->end - s->pos) < n) {
        return NULL;
    }

    p = s->pos;
    s->pos += n;

    return p;
}


static welby_reason_e
welby_part_decode(welby_scratch_t *s, welby_str_t *dst,
    const unsigned char *src, size_t len)
{
    size_t          n;
    unsigned char  *p;

    /*
     * An empty part is canonical base64url of nothing: an empty header
     * or payload then fails as JSON, and an empty signature reaches the
     * alg check ("none" tokens end with '.') and the length check.
     */

    if (len == 0) {
        dst->data = s->pos;
        dst->len = 0;
        return WELBY_REASON_NONE;
    }

    /* the decoder may need its upper bound; only n bytes are kept */

    if ((size_t) (s->end - s->pos) < welby_b64url_decoded_max(len)) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    if (welby_b64url_decode(s->pos, &n, src, len) != 0) {
        return WELBY_REASON_TOKEN_MALFORMED;
    }

    p = welby_scratch_alloc(s, n);
    if (p == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    dst->data = p;
    dst->len = n;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_json_load(json_t **doc, const welby_str_t *text)
{
    json_t        *d;
    json_error_t   err;

    /* jansson recurses once per level: bound it before it starts */

    if (welby_json_depth(text->data, text->len) > WELBY_JSON_DEPTH_MAX) {
        return WELBY_REASON_TOKEN_MALFORMED;
    }

    /*
     * Two parsers that keep different copies of a duplicated member read
     * different claims from one signed token: refuse duplicates.  \u0000
     * stays refused (no JSON_ALLOW_NUL), so strings are C-safe.
     */

    d = json_loadb((const char *) text->data, text->len,
                   JSON_REJECT_DUPLICATES, &err);

    if (d == NULL) {
        return json_error_code(&err) == json_error_out_of_memory
               ? WELBY_REASON_INTERNAL_ERROR : WELBY_REASON_TOKEN_MALFORMED;
    }

    if (!json_is_object(d)) {
        json_decref(d);
        return WELBY_REASON_TOKEN_MALFORMED;
    }

    *doc = d;

    return WELBY_REASON_NONE;
}


static size_t
welby_json_depth(const unsigned char *p, size_t len)
{
    size_t  i, depth, max;
    int     in_string;

    /*
     * Up to the first byte jansson refuses, it reads strings and brackets
     * exactly like this, so it never nests deeper than the maximum seen.
     */

    depth = 0;
    max = 0;
    in_string = 0;

    for (i = 0; i < len; i++) {

        if (in_string) {
            if (p[i] == '\\') {
                i++;

            } else if (p[i] == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (p[i]) {

        case '"':
            in_string = 1;
            break;

        case '[':
        case '{':
            if (++depth > max) {
                max = depth;
            }
            break;

        case ']':
        case '}':
            if (depth > 0) {
                depth--;
            }
            break;

        default:
            break;
        }
    }

    return max;
}


static welby_reason_e
welby_header_parse(welby_jose_header_t *h, json_t *doc, welby_scratch_t *s)
{
    json_t          *v;
    welby_reason_e   rc;

    v = json_object_get(doc, "alg");

    if (v == NULL || !json_is_string(v)) {
        return WELBY_REASON_TOKEN_ALG;
    }

    h->alg = welby_alg_find((const unsigned char *) json_string_value(v),
                            json_string_length(v));

    if (h->alg == WELBY_ALG_UNKNOWN) {
        return WELBY_REASON_TOKEN_ALG;
    }

    /* no extension is understood, so any "crit" must be refused */

    if (json_object_get(doc, "crit") != NULL) {
        return WELBY_REASON_TOKEN_CRIT;
    }

    /* kid reaches the logs and typ the checks: the claim rules apply */

    v = json_object_get(doc, "kid");

    if (v != NULL) {
        rc = welby_string_copy(&h->kid, v, s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    v = json_object_get(doc, "typ");

    if (v != NULL) {
        rc = welby_string_copy(&h->typ, v, s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    h->has_jku = json_object_get(doc, "jku") != NULL;
    h->has_x5u = json_object_get(doc, "x5u") != NULL;
    h->has_jwk = json_object_get(doc, "jwk") != NULL;
    h->has_x5c = json_object_get(doc, "x5c") != NULL;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_claims_parse(welby_claims_t *c, json_t *doc, welby_scratch_t *s,
    const welby_issuers_t *issuers)
{
    json_t          *v;
    const char      *name;
    welby_reason_e   rc;

    rc = welby_string_claim(c, doc, "iss", WELBY_CLAIM_ISS, &c->iss, s);

    if (rc == WELBY_REASON_NONE) {
        rc = welby_string_claim(c, doc, "sub", WELBY_CLAIM_SUB, &c->sub, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_string_claim(c, doc, "client_id", WELBY_CLAIM_CLIENT_ID,
                                &c->client_id, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_string_claim(c, doc, "jti", WELBY_CLAIM_JTI, &c->jti, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_string_claim(c, doc, "scope", WELBY_CLAIM_SCOPE,
                                &c->scope, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_string_claim(c, doc, "patient", WELBY_CLAIM_PATIENT,
                                &c->patient, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_string_claim(c, doc, "fhirUser", WELBY_CLAIM_FHIR_USER,
                                &c->fhir_user, s);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_date_claim(c, doc, "exp", WELBY_CLAIM_EXP, &c->exp);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_date_claim(c, doc, "nbf", WELBY_CLAIM_NBF, &c->nbf);
    }

    if (rc == WELBY_REASON_NONE) {
        rc = welby_date_claim(c, doc, "iat", WELBY_CLAIM_IAT, &c->iat);
    }

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    v = json_object_get(doc, "aud");

    if (v != NULL) {
        rc = welby_aud_parse(c, v, s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    /*
     * RFC 9068 names "scope"; some issuers send "scp", an array (or, as
     * Microsoft Entra ID does, a string).  With both, which one counts
     * would be a guess: the token is refused.
     */

    v = json_object_get(doc, "scp");

    if (v != NULL) {
        if (c->present & WELBY_CLAIM_SCOPE) {
            return WELBY_REASON_TOKEN_CLAIMS;
        }

        if (json_is_string(v)) {
            rc = welby_string_copy(&c->scope, v, s);

        } else {
            rc = welby_words_join(v, &c->scope, WELBY_CLAIM_STR_MAX, 0, s);
        }

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }

        c->present |= WELBY_CLAIM_SCOPE;
    }

    v = json_object_get(doc, "amr");

    if (v != NULL) {
        rc = welby_words_join(v, &c->amr, WELBY_CLAIM_STR_MAX, 0, s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }

        c->present |= WELBY_CLAIM_AMR;
    }

    v = json_object_get(doc, "cnf");

    if (v != NULL) {
        rc = welby_cnf_parse(c, v);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    /*
     * The patients claim's name is the issuer's.  An array's joined ids
     * are within its JSON text, which no other copied string shares, so
     * they fit the scratch too.
     */

    name = (issuers != NULL && (c->present & WELBY_CLAIM_ISS))
           ? issuers->patients_claim(issuers->data, &c->iss) : NULL;

    v = (name != NULL) ? json_object_get(doc, name) : NULL;

    if (v != NULL) {
        rc = welby_words_join(v, &c->patients,
                              WELBY_PATIENTS_MAX * (WELBY_FHIR_ID_MAX + 1),
                              1, s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    if (json_object_get(doc, "nonce") != NULL) {
        c->present |= WELBY_CLAIM_NONCE;
    }

    if (json_object_get(doc, "at_hash") != NULL) {
        c->present |= WELBY_CLAIM_AT_HASH;
    }

    return WELBY_REASON_NONE;
}


static int
welby_text_valid(json_t *v)
{
    size_t                i, len;
    const unsigned char  *p;

    if (!json_is_string(v)) {
        return 0;
    }

    p = (const unsigned char *) json_string_value(v);
    len = json_string_length(v);

    if (len > WELBY_CLAIM_STR_MAX) {
        return 0;
    }

    /* claims become backend headers and log fields */

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


static welby_reason_e
welby_string_copy(welby_str_t *dst, json_t *v, welby_scratch_t *s)
{
    size_t          len;
    unsigned char  *p;

    if (!welby_text_valid(v)) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    len = json_string_length(v);

    p = welby_scratch_alloc(s, len);
    if (p == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    memcpy(p, json_string_value(v), len);

    dst->data = p;
    dst->len = len;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_string_claim(welby_claims_t *c, json_t *doc, const char *name,
    unsigned bit, welby_str_t *dst, welby_scratch_t *s)
{
    json_t          *v;
    welby_reason_e   rc;

    v = json_object_get(doc, name);

    if (v == NULL) {
        return WELBY_REASON_NONE;
    }

    rc = welby_string_copy(dst, v, s);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    c->present |= bit;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_aud_parse(welby_claims_t *c, json_t *v, welby_scratch_t *s)
{
    size_t           i, n;
    welby_reason_e   rc;

    if (json_is_string(v)) {
        rc = welby_string_copy(&c->aud[0], v, s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }

        c->naud = 1;
        c->present |= WELBY_CLAIM_AUD;

        return WELBY_REASON_NONE;
    }

    if (!json_is_array(v)) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    n = json_array_size(v);

    if (n == 0 || n > WELBY_AUD_MAX) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    for (i = 0; i < n; i++) {
        rc = welby_string_copy(&c->aud[i], json_array_get(v, i), s);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    c->naud = n;
    c->present |= WELBY_CLAIM_AUD;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_date_claim(welby_claims_t *c, json_t *doc, const char *name,
    unsigned bit, int64_t *dst)
{
    double      r;
    json_t     *v;
    json_int_t  n;

    v = json_object_get(doc, name);

    if (v == NULL) {
        return WELBY_REASON_NONE;
    }

    /* NumericDate may carry a fraction (RFC 7519 section 2) */

    if (json_is_integer(v)) {
        n = json_integer_value(v);

        if (n < 0 || n > WELBY_NUMERIC_DATE_MAX) {
            return WELBY_REASON_TOKEN_CLAIMS;
        }

        *dst = (int64_t) n;

    } else if (json_is_real(v)) {
        r = json_real_value(v);

        /* the negated test also refuses NaN */

        if (!(r >= 0.0 && r <= (double) WELBY_NUMERIC_DATE_MAX)) {
            return WELBY_REASON_TOKEN_CLAIMS;
        }

        /* truncation is floor() here, and needs no libm */
        *dst = (int64_t) r;

    } else {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    c->present |= bit;

    return WELBY_REASON_NONE;
}


/*
 * An array of strings joined by single spaces into dst: each non-empty,
 * without spaces, and with ids, a FHIR id; the whole at most max bytes
 * (or, with ids, WELBY_PATIENTS_MAX ids).
 */
static welby_reason_e
welby_words_join(json_t *v, welby_str_t *dst, size_t max, int ids,
    welby_scratch_t *s)
{
    size_t          i, n, len, total;
    json_t         *e;
    unsigned char  *p;

    if (!json_is_array(v)) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    n = json_array_size(v);
    total = 0;

    if (ids && n > WELBY_PATIENTS_MAX) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    /*
     * A value that is empty or holds a space would read as other values
     * once joined: ["pwd mfa"] must not pass for ["pwd", "mfa"].
     */

    for (i = 0; i < n; i++) {
        e = json_array_get(v, i);

        if (!welby_text_valid(e)) {
            return WELBY_REASON_TOKEN_CLAIMS;
        }

        len = json_string_length(e);

        if (len == 0 || memchr(json_string_value(e), ' ', len) != NULL) {
            return WELBY_REASON_TOKEN_CLAIMS;
        }

        if (ids
            && !welby_fhir_id_valid((const unsigned char *)
                                    json_string_value(e), len))
        {
            return WELBY_REASON_TOKEN_CLAIMS;
        }

        total += len + (i > 0);

        if (total > max) {
            return WELBY_REASON_TOKEN_CLAIMS;
        }
    }

    /* total is within the array's JSON text: quotes outnumber spaces */

    p = welby_scratch_alloc(s, total);
    if (p == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    dst->data = p;
    dst->len = total;

    for (i = 0; i < n; i++) {
        e = json_array_get(v, i);
        len = json_string_length(e);

        if (i > 0) {
            *p++ = ' ';
        }

        memcpy(p, json_string_value(e), len);
        p += len;
    }

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_cnf_parse(welby_claims_t *c, json_t *v)
{
    size_t          n;
    json_t         *x5t;
    unsigned char   buf[welby_b64url_decoded_max(43)];

    /*
     * Only certificate binding (RFC 8705) is understood; a token bound
     * any other way (jkt, jwk) must not pass as unbound.
     */

    if (!json_is_object(v) || json_object_size(v) != 1) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    x5t = json_object_get(v, "x5t#S256");

    if (x5t == NULL || !json_is_string(x5t)
        || json_string_length(x5t) != welby_b64url_encoded_len(32))
    {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    if (welby_b64url_decode(buf, &n,
                            (const unsigned char *) json_string_value(x5t),
                            json_string_length(x5t))
        != 0
        || n != sizeof(c->x5t_s256))
    {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    memcpy(c->x5t_s256, buf, sizeof(c->x5t_s256));
    c->present |= WELBY_CLAIM_CNF;

    return WELBY_REASON_NONE;
}


static int
welby_typ_allowed(unsigned typ, const welby_str_t *value)
{
    if (value->data == NULL) {
        return typ == WELBY_TYP_JWT;
    }

    /* media types compare case-insensitively, RFC 7515 section 4.1.9 */

    if (welby_str_caseeq(value, "at+jwt")
        || welby_str_caseeq(value, "application/at+jwt"))
    {
        return 1;
    }

    /* "JWT" is short for "application/JWT", as "at+jwt" is above */

    return typ == WELBY_TYP_JWT
           && (welby_str_caseeq(value, "JWT")
               || welby_str_caseeq(value, "application/JWT"));
}


static int
welby_str_caseeq(const welby_str_t *s, const char *lit)
{
    size_t         i, len;
    unsigned char  a, b;

    len = strlen(lit);

    if (s->len != len) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        a = s->data[i];
        b = (unsigned char) lit[i];

        if (a >= 'A' && a <= 'Z') {
            a |= 0x20;
        }

        if (b >= 'A' && b <= 'Z') {
            b |= 0x20;
        }

        if (a != b) {
            return 0;
        }
    }

    return 1;
}


static int64_t
welby_add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b) {
        return INT64_MAX;
    }

    if (b < 0 && a < INT64_MIN - b) {
        return INT64_MIN;
    }

    return a + b;
}
