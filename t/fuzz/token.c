/*
 * libFuzzer target: the JWS compact parser and the claim checks.  The
 * input is tried twice: as a raw token, and as JSON text that becomes a
 * well-formed token (header and payload split at the first NUL, else a
 * fixed header), so the fuzzer reaches the claims without having to
 * invent base64url.  Besides crashes, leaks and sanitizer reports it
 * aborts when a parsed token breaks what welby_jose.h promises, the
 * patients claim's FHIR ids among it.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_b64.h"
#include "welby_jose.h"
#include "welby_fhir.h"


#define FUZZ_HDR  "{\"alg\":\"RS256\",\"typ\":\"at+jwt\"}"


static void
check_str(const welby_str_t *s, const unsigned char *scratch, size_t size,
    size_t max, int text)
{
    size_t  i;

    if (s->data == NULL) {
        if (s->len != 0) {
            abort();
        }

        return;
    }

    if (s->data < scratch || s->len > size
        || (size_t) (s->data - scratch) > size - s->len)
    {
        abort();
    }

    if (s->len > max) {
        abort();
    }

    for (i = 0; text && i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            abort();
        }
    }
}


static int
check_date(const welby_claims_t *c, unsigned bit, int64_t v)
{
    return !(c->present & bit) || (v >= 0 && v <= 9007199254740992LL);
}


static void
check_part(const welby_str_t *decoded, const unsigned char *src, size_t len)
{
    size_t          n;
    unsigned char  *buf;

    buf = malloc(welby_b64url_decoded_max(len) + 1);
    if (buf == NULL) {
        abort();
    }

    if (welby_b64url_decode(buf, &n, src, len) != 0 || n != decoded->len
        || memcmp(buf, decoded->data, n) != 0)
    {
        abort();
    }

    free(buf);
}


static void
check_token(const welby_token_t *t, const unsigned char *data, size_t size,
    const unsigned char *scratch)
{
    size_t                 i, dot1, dot2, ndots, ssize;
    int64_t                now;
    welby_str_t            aud[2];
    welby_reason_e         rc;
    welby_token_rules_t    rules;
    const welby_claims_t  *c;

    ssize = welby_token_scratch_size(size);
    c = &t->claims;

    /* the signing input ends right before the second and last '.' */

    ndots = 0;
    dot1 = dot2 = 0;

    for (i = 0; i < size; i++) {
        if (data[i] == '.') {
            if (ndots++ == 0) {
                dot1 = i;

            } else {
                dot2 = i;
            }
        }
    }

    if (ndots != 2 || t->signing_input.data != data
        || t->signing_input.len != dot2)
    {
        abort();
    }

    check_part(&t->payload, data + dot1 + 1, dot2 - dot1 - 1);
    check_part(&t->signature, data + dot2 + 1, size - dot2 - 1);

    if (t->payload.len == 0) {
        abort();
    }

    if (t->header.alg == WELBY_ALG_UNKNOWN
        || (unsigned) t->header.alg >= WELBY_ALG_COUNT
        || welby_alg_name(t->header.alg) == NULL)
    {
        abort();
    }

    check_str(&t->payload, scratch, ssize, ssize, 0);
    check_str(&t->signature, scratch, ssize, ssize, 0);
    check_str(&t->header.kid, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&t->header.typ, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->iss, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->sub, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->client_id, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->jti, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->scope, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->patient, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->fhir_user, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    check_str(&c->amr, scratch, ssize, WELBY_CLAIM_STR_MAX, 1);

    if (c->naud > WELBY_AUD_MAX
        || ((c->present & WELBY_CLAIM_AUD) != 0) != (c->naud > 0))
    {
        abort();
    }

    for (i = 0; i < c->naud; i++) {
        if (c->aud[i].data == NULL) {
            abort();
        }

        check_str(&c->aud[i], scratch, ssize, WELBY_CLAIM_STR_MAX, 1);
    }

    if (((c->present & WELBY_CLAIM_ISS) != 0) != (c->iss.data != NULL)
        || ((c->present & WELBY_CLAIM_SUB) != 0) != (c->sub.data != NULL)
        || ((c->present & WELBY_CLAIM_AMR) != 0) != (c->amr.data != NULL)
        || !check_date(c, WELBY_CLAIM_EXP, c->exp)
        || !check_date(c, WELBY_CLAIM_NBF, c->nbf)
        || !check_date(c, WELBY_CLAIM_IAT, c->iat))
    {
        abort();
    }

    /* the checks, with rules and clocks taken from the token itself */

    aud[0].data = (const unsigned char *) "https://fhir.example";
    aud[0].len = sizeof("https://fhir.example") - 1;
    aud[1] = c->naud ? c->aud[c->naud - 1] : aud[0];

    now = (c->present & WELBY_CLAIM_EXP) ? c->exp : (int64_t) size;

    for (i = 0; i < 8; i++) {
        memset(&rules, 0, sizeof(welby_token_rules_t));

        rules.audiences = aud;
        rules.naudiences = i % 3;
        rules.leeway = (i & 4) ? INT64_MAX : (int64_t) (i * 30);
        rules.max_lifetime = (i & 1) ? 3600 : 0;
        rules.typ = (i & 2) ? WELBY_TYP_JWT : WELBY_TYP_AT_JWT;
        rules.required = (i & 1) ? WELBY_CLAIMS_RFC9068 : 0;

        rc = welby_token_check(&rules, &t->header, c,
                               (i & 4) ? INT64_MIN + (int64_t) i : now);

        switch (rc) {

        case WELBY_REASON_NONE:
            if (rules.naudiences == 0
                || !(c->present & WELBY_CLAIM_CLIENT_ID)
                || (c->present & (WELBY_CLAIM_NONCE | WELBY_CLAIM_AT_HASH))
                || (rules.required & ~c->present))
            {
                abort();
            }
            break;

        case WELBY_REASON_TOKEN_TYPE:
        case WELBY_REASON_TOKEN_CLAIMS:
        case WELBY_REASON_TOKEN_EXPIRED:
        case WELBY_REASON_TOKEN_NOT_YET_VALID:
        case WELBY_REASON_TOKEN_LIFETIME:
        case WELBY_REASON_TOKEN_AUDIENCE:
            break;

        default:
            abort();
        }
    }
}


static welby_header_cache_t  hcache;


static const char *
patients_claim(void *data, const welby_str_t *iss)
{
    /* an iss starting with 'x' names no claim */
    return (iss->len > 0 && iss->data[0] == 'x') ? NULL : data;
}


/*
 * The patients claim, read while parsing: the same answer otherwise,
 * and FHIR ids joined by single spaces within the scratch.
 */
static void
check_patients(const unsigned char *data, size_t size, welby_reason_e rc0)
{
    size_t              i, start;
    unsigned char      *scratch;
    welby_token_t       t;
    welby_reason_e      rc;
    welby_issuers_t     issuers;
    const welby_str_t  *p;

    scratch = malloc(welby_token_scratch_size(size));
    if (scratch == NULL) {
        abort();
    }

    issuers.patients_claim = patients_claim;
    issuers.data = (void *) "patients";

    rc = welby_token_parse_issuers(&t, data, size, scratch, NULL, &issuers);

    /* a patients claim can only add TOKEN_CLAIMS to a clean parse */

    if (rc != rc0 && !(rc0 == WELBY_REASON_NONE
                       && rc == WELBY_REASON_TOKEN_CLAIMS))
    {
        abort();
    }

    p = &t.claims.patients;

    if (rc == WELBY_REASON_NONE && p->data != NULL) {
        check_str(p, scratch, welby_token_scratch_size(size),
                  welby_token_scratch_size(size), 1);

        start = 0;

        for (i = 0; i <= p->len; i++) {
            if (i < p->len && p->data[i] != ' ') {
                continue;
            }

            if (p->len > 0 && !welby_fhir_id_valid(p->data + start,
                                                   i - start))
            {
                abort();
            }

            start = i + 1;
        }
    }

    free(scratch);
}


static int
same_str(const welby_str_t *a, const welby_str_t *b)
{
    if ((a->data == NULL) != (b->data == NULL) || a->len != b->len) {
        return 0;
    }

    return a->len == 0 || memcmp(a->data, b->data, a->len) == 0;
}


static void
same_token(const welby_token_t *a, const welby_token_t *b)
{
    size_t  i;

    if (a->header.alg != b->header.alg
        || !same_str(&a->header.kid, &b->header.kid)
        || !same_str(&a->header.typ, &b->header.typ)
        || a->header.has_jku != b->header.has_jku
        || a->header.has_x5u != b->header.has_x5u
        || a->header.has_jwk != b->header.has_jwk
        || a->header.has_x5c != b->header.has_x5c
        || !same_str(&a->payload, &b->payload)
        || !same_str(&a->signature, &b->signature)
        || a->signing_input.len != b->signing_input.len
        || a->claims.present != b->claims.present
        || !same_str(&a->claims.iss, &b->claims.iss)
        || !same_str(&a->claims.sub, &b->claims.sub)
        || !same_str(&a->claims.jti, &b->claims.jti)
        || !same_str(&a->claims.amr, &b->claims.amr)
        || a->claims.naud != b->claims.naud
        || a->claims.exp != b->claims.exp
        || a->claims.iat != b->claims.iat
        || a->claims.nbf != b->claims.nbf)
    {
        abort();
    }

    for (i = 0; i < a->claims.naud; i++) {
        if (!same_str(&a->claims.aud[i], &b->claims.aud[i])) {
            abort();
        }
    }
}


static void
run(const unsigned char *data, size_t size)
{
    unsigned char   *scratch, *cached;
    welby_token_t    t, tc;
    welby_reason_e   rc;

    /* exactly the documented size, so ASan sees any overrun */

    scratch = malloc(welby_token_scratch_size(size));
    if (scratch == NULL) {
        abort();
    }

    rc = welby_token_parse(&t, data, size, scratch);

    /*
     * The header cache, which lives across inputs as it lives across
     * requests in a worker, must give exactly what a full parse gives.
     */

    cached = malloc(welby_token_scratch_size(size));
    if (cached == NULL) {
        abort();
    }

    if (welby_token_parse_cached(&tc, data, size, cached, &hcache) != rc) {
        abort();
    }

    if (rc == WELBY_REASON_NONE) {
        same_token(&t, &tc);
    }

    free(cached);

    check_patients(data, size, rc);

    switch (rc) {

    case WELBY_REASON_NONE:
        check_token(&t, data, size, scratch);
        break;

    case WELBY_REASON_TOKEN_MALFORMED:
    case WELBY_REASON_TOKEN_ALG:
    case WELBY_REASON_TOKEN_CRIT:
    case WELBY_REASON_TOKEN_CLAIMS:
        break;

    default:
        abort();
    }

    free(scratch);
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t                hlen, plen, n;
    unsigned char        *tok;
    const unsigned char  *header, *payload, *nul;

    run(data, size);

    nul = memchr(data, '\0', size);

    if (nul != NULL) {
        header = data;
        hlen = (size_t) (nul - data);
        payload = nul + 1;
        plen = size - hlen - 1;

    } else {
        header = (const unsigned char *) FUZZ_HDR;
        hlen = sizeof(FUZZ_HDR) - 1;
        payload = data;
        plen = size;
    }

    tok = malloc(welby_b64url_encoded_len(hlen)
                 + welby_b64url_encoded_len(plen) + 6);
    if (tok == NULL) {
        abort();
    }

    n = welby_b64url_encode(tok, header, hlen);
    tok[n++] = '.';
    n += welby_b64url_encode(tok + n, payload, plen);
    tok[n++] = '.';
    n += welby_b64url_encode(tok + n, (const unsigned char *) "sig", 3);

    run(tok, n);

    free(tok);

    return 0;
}
