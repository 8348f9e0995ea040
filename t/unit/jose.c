/*
 * Unit tests: the JWS compact parser, the access-token claims and their
 * checks.  Tokens are built here from JSON literals; signatures are
 * arbitrary bytes, as nothing here verifies them.
 */

#include <stdlib.h>

#include "tap.h"
#include "welby_b64.h"
#include "welby_jose.h"

#define S(s)  (const unsigned char *) (s), sizeof(s) - 1

#define HDR   "{\"alg\":\"RS256\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}"

#define X5T   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

/* iss, sub, aud, exp, iat, jti, client_id: RFC 9068 complete */
#define CLAIMS_BASE                                                          \
    "\"iss\":\"https://as.example\",\"sub\":\"u1\","                        \
    "\"aud\":\"https://fhir.example\",\"iat\":1000,\"jti\":\"j1\","          \
    "\"client_id\":\"c1\""

#define PAYLOAD  "{" CLAIMS_BASE ",\"exp\":2000,\"scope\":\"patient/*.rs\"}"


static char            tok[16384];
static size_t          tok_len;
static unsigned char  *scratch;
static size_t          scratch_len;
static welby_token_t   t;


static size_t
put_b64(char *dst, const char *src, size_t len)
{
    return welby_b64url_encode((unsigned char *) dst,
                               (const unsigned char *) src, len);
}


/* Builds b64(header).b64(payload).b64(sig) into tok. */
static const char *
build(const char *header, const char *payload, const char *sig)
{
    size_t  n;

    n = put_b64(tok, header, strlen(header));
    tok[n++] = '.';
    n += put_b64(tok + n, payload, strlen(payload));
    tok[n++] = '.';
    n += put_b64(tok + n, sig, strlen(sig));
    tok[n] = '\0';

    tok_len = n;

    return tok;
}


/* Parses raw bytes with a scratch of the exact documented size. */
static welby_reason_e
parse_raw(const char *raw, size_t len)
{
    free(scratch);

    scratch_len = welby_token_scratch_size(len);
    scratch = malloc(scratch_len);
    if (scratch == NULL) {
        abort();
    }

    return welby_token_parse(&t, (const unsigned char *) raw, len, scratch);
}


static welby_reason_e
parse_str(const char *raw)
{
    return parse_raw(raw, strlen(raw));
}


static welby_reason_e
parse(const char *header, const char *payload)
{
    build(header, payload, "\x01sig\xff");

    return parse_raw(tok, tok_len);
}


static welby_reason_e
claims(const char *payload)
{
    return parse(HDR, payload);
}


static int
eq(const welby_str_t *s, const char *lit)
{
    return s->data != NULL && s->len == strlen(lit)
           && memcmp(s->data, lit, s->len) == 0;
}


static int
in_scratch(const welby_str_t *s)
{
    return s->data == NULL
           || (s->data >= scratch
               && s->data + s->len <= scratch + scratch_len);
}


static welby_token_rules_t  rules;
static welby_str_t          audiences[3];


static void
rules_reset(void)
{
    audiences[0].data = (const unsigned char *) "https://fhir.example";
    audiences[0].len = sizeof("https://fhir.example") - 1;

    memset(&rules, 0, sizeof(welby_token_rules_t));
    rules.audiences = audiences;
    rules.naudiences = 1;
    rules.leeway = 60;
    rules.max_lifetime = 3600;
    rules.typ = WELBY_TYP_AT_JWT;
    rules.required = WELBY_CLAIMS_RFC9068;
}


/* Parses, then checks at now; a parse failure is returned as it is. */
static welby_reason_e
check(const char *header, const char *payload, int64_t now)
{
    welby_reason_e  rc;

    rc = parse(header, payload);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    return welby_token_check(&rules, &t.header, &t.claims, now);
}


static welby_reason_e
check_typ(const char *typ, unsigned allowed)
{
    char  header[256];

    if (typ == NULL) {
        snprintf(header, sizeof(header), "{\"alg\":\"ES256\"}");

    } else {
        snprintf(header, sizeof(header),
                 "{\"alg\":\"ES256\",\"typ\":\"%s\"}", typ);
    }

    rules_reset();
    rules.typ = allowed;

    return check(header, PAYLOAD, 1500);
}


static void
test_algs(void)
{
    int          i, names_ok;
    const char  *name;

    names_ok = 1;

    for (i = 1; i < WELBY_ALG_COUNT; i++) {
        name = welby_alg_name((welby_alg_e) i);
        names_ok &= name != NULL
                    && welby_alg_find((const unsigned char *) name,
                                      strlen(name))
                       == (welby_alg_e) i;
    }

    ok(names_ok, "every algorithm is found by its own name");
    ok(welby_alg_find(S("none")) == WELBY_ALG_UNKNOWN,
       "\"none\" is not an algorithm");
    ok(welby_alg_find(S("rs256")) == WELBY_ALG_UNKNOWN,
       "alg names are case-sensitive");
    ok(welby_alg_find(S("RS256\0")) == WELBY_ALG_UNKNOWN,
       "a trailing NUL is not ignored");
    ok(welby_alg_find(S("EdDSA")) == WELBY_ALG_EDDSA, "EdDSA is found");
    ok(welby_alg_name(WELBY_ALG_UNKNOWN) == NULL
       && welby_alg_name(WELBY_ALG_COUNT) == NULL,
       "unknown algorithms have no name");
    ok((WELBY_ALGS_ASYMMETRIC & WELBY_ALGS_HMAC) == 0
       && (WELBY_ALGS_ASYMMETRIC & WELBY_ALG_BIT(WELBY_ALG_RS256))
       && (WELBY_ALGS_ASYMMETRIC & WELBY_ALG_BIT(WELBY_ALG_EDDSA))
       && !(WELBY_ALGS_ASYMMETRIC & WELBY_ALG_BIT(WELBY_ALG_UNKNOWN)),
       "the asymmetric set holds neither HMAC nor unknown");
}


static void
test_structure(void)
{
    char  raw[sizeof(tok) + 16];

    ok(parse(HDR, PAYLOAD) == WELBY_REASON_NONE, "a complete token parses");

    ok(t.header.alg == WELBY_ALG_RS256 && eq(&t.header.kid, "k1")
       && eq(&t.header.typ, "at+jwt"), "alg, kid and typ are read");
    ok(eq(&t.claims.iss, "https://as.example") && eq(&t.claims.sub, "u1")
       && eq(&t.claims.client_id, "c1") && eq(&t.claims.jti, "j1")
       && eq(&t.claims.scope, "patient/*.rs"),
       "string claims are copied");
    ok(t.claims.naud == 1 && eq(&t.claims.aud[0], "https://fhir.example"),
       "a string aud is one audience");
    ok(t.claims.exp == 2000 && t.claims.iat == 1000,
       "exp and iat are read");
    ok(t.claims.present == (WELBY_CLAIMS_RFC9068 | WELBY_CLAIM_SCOPE),
       "present names exactly the claims present");
    ok(t.signature.len == 5 && memcmp(t.signature.data, "\x01sig\xff", 5) == 0,
       "the signature is decoded");
    ok(eq(&t.payload, PAYLOAD), "the payload is the decoded JSON");
    ok(t.signing_input.data == (const unsigned char *) tok
       && t.signing_input.len == (size_t) (strrchr(tok, '.') - tok),
       "the signing input is header.payload of the token itself");
    ok(in_scratch(&t.header.kid) && in_scratch(&t.claims.iss)
       && in_scratch(&t.claims.aud[0]) && in_scratch(&t.payload)
       && in_scratch(&t.signature), "every copy lies in the scratch");
    ok(!t.header.has_jku && !t.header.has_x5u && !t.header.has_jwk
       && !t.header.has_x5c, "no key reference is noted when none is sent");

    build(HDR, PAYLOAD, "s");

    ok(parse_str("") == WELBY_REASON_TOKEN_MALFORMED,
       "an empty token is malformed");
    ok(parse_str("eyJhbGciOiJSUzI1NiJ9") == WELBY_REASON_TOKEN_MALFORMED,
       "one part is malformed");
    ok(parse_str("e30.e30") == WELBY_REASON_TOKEN_MALFORMED,
       "two parts are malformed");

    snprintf(raw, sizeof(raw), "%s.", tok);
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "a fourth, empty part is malformed");
    snprintf(raw, sizeof(raw), "%s.e30.e30", tok);
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "five parts (JWE compact) are malformed");

    build(HDR, PAYLOAD, "");
    ok(parse_raw(tok, tok_len) == WELBY_REASON_NONE
       && t.signature.len == 0,
       "an empty signature parses, to fail the length check later");

    build("{\"alg\":\"none\"}", PAYLOAD, "");
    ok(parse_raw(tok, tok_len) == WELBY_REASON_TOKEN_ALG,
       "an unsecured JWT (alg none, empty signature) is refused by alg");

    build("", PAYLOAD, "s");
    ok(parse_raw(tok, tok_len) == WELBY_REASON_TOKEN_MALFORMED,
       "an empty header part is malformed");

    build(HDR, "", "s");
    ok(parse_raw(tok, tok_len) == WELBY_REASON_TOKEN_MALFORMED,
       "an empty payload part is malformed");

    /* "s" encodes as "cw"; its padded and its non-canonical twins */
    build(HDR, PAYLOAD, "s");
    memcpy(raw, tok, tok_len);
    memcpy(raw + tok_len, "==", 3);
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "a padded signature is malformed");
    raw[tok_len - 1] = 'x';
    raw[tok_len] = '\0';
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "a signature with set trailing bits is malformed");

    build(HDR, PAYLOAD, "s");
    ok(parse_raw(tok, tok_len - 1) == WELBY_REASON_TOKEN_MALFORMED,
       "a truncated signature is malformed");

    memcpy(raw, tok, tok_len + 1);
    raw[3] = '+';
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "the standard alphabet is malformed");

    snprintf(raw, sizeof(raw), "%s\n", tok);
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "a trailing newline is malformed");

    snprintf(raw, sizeof(raw), " %s", tok);
    ok(parse_str(raw) == WELBY_REASON_TOKEN_MALFORMED,
       "leading whitespace is malformed");
}


static void
test_json(void)
{
    ok(parse("not json", PAYLOAD) == WELBY_REASON_TOKEN_MALFORMED,
       "a header that is not JSON is malformed");
    ok(parse("[\"alg\",\"RS256\"]", PAYLOAD) == WELBY_REASON_TOKEN_MALFORMED,
       "a header array is malformed");
    ok(parse("\"RS256\"", PAYLOAD) == WELBY_REASON_TOKEN_MALFORMED,
       "a header string is malformed");
    ok(claims("[" PAYLOAD "]") == WELBY_REASON_TOKEN_MALFORMED,
       "a payload array is malformed");
    ok(claims(PAYLOAD "x") == WELBY_REASON_TOKEN_MALFORMED,
       "trailing bytes after the payload are malformed");
    ok(claims(PAYLOAD " \n") == WELBY_REASON_NONE,
       "trailing whitespace after the payload is JSON");
    ok(claims(PAYLOAD PAYLOAD) == WELBY_REASON_TOKEN_MALFORMED,
       "two payload objects are malformed");
    ok(claims("{" CLAIMS_BASE ",\"x\":\"\xff\"}")
       == WELBY_REASON_TOKEN_MALFORMED, "invalid UTF-8 is malformed");
    ok(claims("{" CLAIMS_BASE ",\"x\":\"\xed\xa0\x80\"}")
       == WELBY_REASON_TOKEN_MALFORMED,
       "an encoded surrogate is malformed");
    ok(claims("{\"sub\":\"a\\u0000b\"}") == WELBY_REASON_TOKEN_MALFORMED,
       "an escaped NUL in a string is malformed");
    ok(claims("{\"sub\":\"u1\",\"sub\":\"admin\"}")
       == WELBY_REASON_TOKEN_MALFORMED, "a duplicate claim is malformed");
    ok(claims("{\"sub\":\"u1\",\"s\\u0075b\":\"admin\"}")
       == WELBY_REASON_TOKEN_MALFORMED,
       "a duplicate claim spelt with an escape is malformed");
    ok(claims("{\"x\":{\"a\":1,\"a\":2}}") == WELBY_REASON_TOKEN_MALFORMED,
       "a duplicate member deep inside is malformed");
    ok(parse("{\"alg\":\"RS256\",\"alg\":\"none\"}", PAYLOAD)
       == WELBY_REASON_TOKEN_MALFORMED,
       "a duplicate header member is malformed");
    ok(claims("{\"x\":[[[[[[[1]]]]]]]}") == WELBY_REASON_NONE,
       "nesting of depth 8 parses");
    ok(claims("{\"x\":[[[[[[[[1]]]]]]]]}") == WELBY_REASON_TOKEN_MALFORMED,
       "nesting of depth 9 is malformed");
    ok(claims("{\"x\":[{\"a\":[{\"b\":[{\"c\":[{}]}]}]}]}")
       == WELBY_REASON_TOKEN_MALFORMED,
       "depth 9 of mixed objects and arrays is malformed");
    ok(parse("{\"alg\":\"RS256\",\"x\":[[[[[[[[1]]]]]]]]}", PAYLOAD)
       == WELBY_REASON_TOKEN_MALFORMED, "a header of depth 9 is malformed");
    ok(claims("{\"x\":\"[[[[[[[[[[{{{{{{\",\"y\":[[1]]}") == WELBY_REASON_NONE,
       "brackets inside strings do not nest");
    ok(claims("{\"x\":\"\\\"[[[[[[[[[[\",\"y\":1}") == WELBY_REASON_NONE,
       "an escaped quote does not end a string");
    ok(claims("{\"x\":\"\\\\\",\"y\":[[[[[[[[1]]]]]]]]}")
       == WELBY_REASON_TOKEN_MALFORMED,
       "an escaped backslash ends the escape before the quote");
    ok(claims("{\"x\":1e400}") == WELBY_REASON_TOKEN_MALFORMED,
       "a number too large for a double is malformed");
}


static void
test_header(void)
{
    ok(parse("{\"typ\":\"at+jwt\"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "an absent alg is refused");
    ok(parse("{\"alg\":256}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "a numeric alg is refused");
    ok(parse("{\"alg\":null}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "a null alg is refused");
    ok(parse("{\"alg\":[\"RS256\"]}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "an alg array is refused");
    ok(parse("{\"alg\":\"none\"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "alg \"none\" is refused");
    ok(parse("{\"alg\":\"NONE\"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "alg \"NONE\" is refused");
    ok(parse("{\"alg\":\"nOnE\"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "alg \"nOnE\" is refused");
    ok(parse("{\"alg\":\"rs256\"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "alg \"rs256\" in the wrong case is refused");
    ok(parse("{\"alg\":\"RS256 \"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "an alg with a trailing space is refused");
    ok(parse("{\"alg\":\"ES256K\"}", PAYLOAD) == WELBY_REASON_TOKEN_ALG,
       "an unlisted alg is refused");
    ok(parse("{\"alg\":\"HS256\"}", PAYLOAD) == WELBY_REASON_NONE
       && t.header.alg == WELBY_ALG_HS256, "alg \"HS256\" is found");
    ok(parse("{\"alg\":\"EdDSA\"}", PAYLOAD) == WELBY_REASON_NONE
       && t.header.alg == WELBY_ALG_EDDSA && t.header.kid.data == NULL
       && t.header.typ.data == NULL,
       "alg \"EdDSA\" is found; kid and typ absent");

    ok(parse("{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}", PAYLOAD)
       == WELBY_REASON_TOKEN_CRIT, "a crit header is refused");
    ok(parse("{\"alg\":\"RS256\",\"crit\":[]}", PAYLOAD)
       == WELBY_REASON_TOKEN_CRIT, "even an empty crit is refused");
    ok(parse("{\"alg\":\"none\",\"crit\":[\"b64\"]}", PAYLOAD)
       == WELBY_REASON_TOKEN_ALG, "alg is judged before crit");

    ok(parse("{\"alg\":\"RS256\",\"kid\":7}", PAYLOAD)
       == WELBY_REASON_TOKEN_CLAIMS, "a numeric kid is refused");
    ok(parse("{\"alg\":\"RS256\",\"typ\":[\"at+jwt\"]}", PAYLOAD)
       == WELBY_REASON_TOKEN_CLAIMS, "a typ array is refused");
    ok(parse("{\"alg\":\"RS256\",\"kid\":\"k\\r\\nX: y\"}", PAYLOAD)
       == WELBY_REASON_TOKEN_CLAIMS, "a kid with CR LF is refused");
    ok(parse("{\"alg\":\"RS256\",\"kid\":\"\"}", PAYLOAD) == WELBY_REASON_NONE
       && t.header.kid.data != NULL && t.header.kid.len == 0,
       "an empty kid is present, not absent");
    ok(parse("{\"alg\":\"RS256\",\"jku\":\"https://x\",\"x5u\":1,"
             "\"jwk\":{},\"x5c\":[]}", PAYLOAD) == WELBY_REASON_NONE
       && t.header.has_jku && t.header.has_x5u && t.header.has_jwk
       && t.header.has_x5c, "jku, x5u, jwk and x5c are noted");
    ok(parse("{\"alg\":\"none\"}", "not json")
       == WELBY_REASON_TOKEN_MALFORMED,
       "a malformed payload is named before a refused alg");
}


static void
test_claims(void)
{
    char  payload[2048];

    ok(claims("{\"exp\":\"2000\"}") == WELBY_REASON_TOKEN_CLAIMS,
       "exp as a string is refused");
    ok(claims("{\"exp\":true}") == WELBY_REASON_TOKEN_CLAIMS,
       "exp as a boolean is refused");
    ok(claims("{\"nbf\":null}") == WELBY_REASON_TOKEN_CLAIMS,
       "nbf null is refused");
    ok(claims("{\"iat\":-1}") == WELBY_REASON_TOKEN_CLAIMS,
       "a negative iat is refused");
    ok(claims("{\"exp\":-0.5}") == WELBY_REASON_TOKEN_CLAIMS,
       "a negative real exp is refused");
    ok(claims("{\"exp\":9007199254740992}") == WELBY_REASON_NONE
       && t.claims.exp == 9007199254740992LL, "exp 2^53 is accepted");
    ok(claims("{\"exp\":9007199254740993}") == WELBY_REASON_TOKEN_CLAIMS,
       "exp 2^53 + 1 is refused");
    ok(claims("{\"exp\":1e300}") == WELBY_REASON_TOKEN_CLAIMS,
       "a huge real exp is refused");
    ok(claims("{\"exp\":1500.9,\"nbf\":0.0,\"iat\":1.5e3}")
       == WELBY_REASON_NONE && t.claims.exp == 1500 && t.claims.nbf == 0
       && t.claims.iat == 1500
       && (t.claims.present & (WELBY_CLAIM_EXP | WELBY_CLAIM_NBF
                               | WELBY_CLAIM_IAT))
          == (WELBY_CLAIM_EXP | WELBY_CLAIM_NBF | WELBY_CLAIM_IAT),
       "real dates are floored");

    ok(claims("{\"sub\":42}") == WELBY_REASON_TOKEN_CLAIMS,
       "a numeric sub is refused");
    ok(claims("{\"iss\":{\"x\":1}}") == WELBY_REASON_TOKEN_CLAIMS,
       "an object iss is refused");
    ok(claims("{\"client_id\":null}") == WELBY_REASON_TOKEN_CLAIMS,
       "a null client_id is refused");
    ok(claims("{\"scope\":[\"a\",\"b\"]}") == WELBY_REASON_TOKEN_CLAIMS,
       "a scope array is refused");
    ok(claims("{\"sub\":\"u\\u0007\"}") == WELBY_REASON_TOKEN_CLAIMS,
       "a control character in sub is refused");
    ok(claims("{\"sub\":\"u\\nX-Admin: 1\"}") == WELBY_REASON_TOKEN_CLAIMS,
       "a newline in sub is refused");
    ok(claims("{\"patient\":\"p\\u007f\"}") == WELBY_REASON_TOKEN_CLAIMS,
       "DEL in patient is refused");
    ok(claims("{\"fhirUser\":\"Practitioner/1\",\"patient\":\"p1\","
              "\"sub\":\"Ren\\u00e9\"}") == WELBY_REASON_NONE
       && eq(&t.claims.fhir_user, "Practitioner/1")
       && eq(&t.claims.patient, "p1") && eq(&t.claims.sub, "Ren\xc3\xa9")
       && (t.claims.present & WELBY_CLAIM_FHIR_USER)
       && (t.claims.present & WELBY_CLAIM_PATIENT),
       "fhirUser and patient are copied; escapes decode to UTF-8");

    snprintf(payload, sizeof(payload), "{\"sub\":\"%01024d\"}", 0);
    ok(claims(payload) == WELBY_REASON_NONE && t.claims.sub.len == 1024,
       "a sub of 1024 bytes is accepted");
    snprintf(payload, sizeof(payload), "{\"sub\":\"%01025d\"}", 0);
    ok(claims(payload) == WELBY_REASON_TOKEN_CLAIMS,
       "a sub of 1025 bytes is refused");

    ok(claims("{\"aud\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]}")
       == WELBY_REASON_NONE && t.claims.naud == 8
       && eq(&t.claims.aud[7], "h"), "aud of 8 strings is accepted");
    ok(claims("{\"aud\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\","
              "\"i\"]}") == WELBY_REASON_TOKEN_CLAIMS,
       "aud of 9 strings is refused");
    ok(claims("{\"aud\":[]}") == WELBY_REASON_TOKEN_CLAIMS,
       "an empty aud array is refused");
    ok(claims("{\"aud\":[\"a\",1]}") == WELBY_REASON_TOKEN_CLAIMS,
       "aud holding a number is refused");
    ok(claims("{\"aud\":[[\"a\"]]}") == WELBY_REASON_TOKEN_CLAIMS,
       "aud holding an array is refused");
    ok(claims("{\"aud\":7}") == WELBY_REASON_TOKEN_CLAIMS,
       "a numeric aud is refused");

    ok(claims("{\"amr\":[\"pwd\",\"mfa\",\"hwk\"]}") == WELBY_REASON_NONE
       && eq(&t.claims.amr, "pwd mfa hwk")
       && (t.claims.present & WELBY_CLAIM_AMR),
       "amr is joined by single spaces");
    ok(claims("{\"amr\":[]}") == WELBY_REASON_NONE
       && t.claims.amr.data != NULL && t.claims.amr.len == 0,
       "an empty amr is present and empty");
    ok(claims("{\"amr\":\"pwd\"}") == WELBY_REASON_TOKEN_CLAIMS,
       "an amr string is refused");
    ok(claims("{\"amr\":[\"pwd\",2]}") == WELBY_REASON_TOKEN_CLAIMS,
       "amr holding a number is refused");
    ok(claims("{\"amr\":[\"pwd mfa\"]}") == WELBY_REASON_TOKEN_CLAIMS,
       "an amr value with a space is refused");
    ok(claims("{\"amr\":[\"pwd\",\"\"]}") == WELBY_REASON_TOKEN_CLAIMS,
       "an empty amr value is refused");

    ok(claims("{\"cnf\":{\"x5t#S256\":\"" X5T "\"}}") == WELBY_REASON_NONE
       && (t.claims.present & WELBY_CLAIM_CNF)
       && t.claims.x5t_s256[0] == 0 && t.claims.x5t_s256[31] == 31,
       "cnf x5t#S256 is decoded");
    ok(claims("{\"cnf\":{\"jkt\":\"" X5T "\"}}") == WELBY_REASON_TOKEN_CLAIMS,
       "cnf with jkt is refused");
    ok(claims("{\"cnf\":{\"x5t#S256\":\"" X5T "\",\"jkt\":\"" X5T "\"}}")
       == WELBY_REASON_TOKEN_CLAIMS, "cnf with a second member is refused");
    ok(claims("{\"cnf\":{}}") == WELBY_REASON_TOKEN_CLAIMS,
       "an empty cnf is refused");
    ok(claims("{\"cnf\":\"" X5T "\"}") == WELBY_REASON_TOKEN_CLAIMS,
       "a cnf string is refused");
    ok(claims("{\"cnf\":{\"x5t#S256\":\"" X5T "AAAA\"}}")
       == WELBY_REASON_TOKEN_CLAIMS, "a 35-byte thumbprint is refused");
    ok(claims("{\"cnf\":{\"x5t#S256\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"
              "GBkaGxwdHh9\"}}") == WELBY_REASON_TOKEN_CLAIMS,
       "a non-canonical thumbprint is refused");
    ok(claims("{\"cnf\":{\"x5t#S256\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"
              "GBkaGxwdHh8=\"}}") == WELBY_REASON_TOKEN_CLAIMS,
       "a padded thumbprint is refused");
    ok(claims("{\"cnf\":{\"x5t#S256\":32}}") == WELBY_REASON_TOKEN_CLAIMS,
       "a numeric thumbprint is refused");

    ok(claims("{\"nonce\":\"n\",\"at_hash\":null}") == WELBY_REASON_NONE
       && (t.claims.present & WELBY_CLAIM_NONCE)
       && (t.claims.present & WELBY_CLAIM_AT_HASH),
       "nonce and at_hash are noted, whatever their type");
    ok(claims("{\"unknown\":[1,{\"a\":null}],\"ext\":\"\\u0001\"}")
       == WELBY_REASON_NONE && t.claims.present == 0,
       "unknown claims are ignored");
}


static const char *
claim_of(void *data, const welby_str_t *iss)
{
    /* the test's issuer "https://care.test" names its own claim */

    if (iss->len == sizeof("https://care.test") - 1
        && memcmp(iss->data, "https://care.test", iss->len) == 0)
    {
        return "care_team";
    }

    return (iss->len == 1 && iss->data[0] == 'x') ? NULL : data;
}


/*
 * Parses a token of this payload, reading the patients claim its iss
 * names ("patients" unless iss says otherwise), with an exact scratch;
 * INTERNAL_ERROR if the patients land outside it.
 */
static welby_reason_e
patients(const char *payload)
{
    welby_reason_e   rc;
    welby_issuers_t  issuers;

    build(HDR, payload, "\x01sig\xff");

    free(scratch);

    scratch_len = welby_token_scratch_size(tok_len);
    scratch = malloc(scratch_len);
    if (scratch == NULL) {
        abort();
    }

    issuers.patients_claim = claim_of;
    issuers.data = (void *) "patients";

    rc = welby_token_parse_issuers(&t, (const unsigned char *) tok, tok_len,
                                   scratch, NULL, &issuers);

    if (rc == WELBY_REASON_NONE && !in_scratch(&t.claims.patients)) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    return rc;
}


static void
test_scp_patients(void)
{
    size_t  i, n;
    char    payload[12000], id65[66];

    ok(claims("{\"scp\":[\"patient/*.rs\",\"openid\"]}")
       == WELBY_REASON_NONE && eq(&t.claims.scope, "patient/*.rs openid")
       && (t.claims.present & WELBY_CLAIM_SCOPE)
       && in_scratch(&t.claims.scope),
       "scp: an array is joined by single spaces into scope");
    ok(claims("{\"scp\":\"patient/*.rs openid\"}") == WELBY_REASON_NONE
       && eq(&t.claims.scope, "patient/*.rs openid")
       && (t.claims.present & WELBY_CLAIM_SCOPE),
       "scp: a string is the scope as it is");
    ok(claims("{\"scp\":[]}") == WELBY_REASON_NONE
       && t.claims.scope.data != NULL && t.claims.scope.len == 0
       && (t.claims.present & WELBY_CLAIM_SCOPE),
       "scp: an empty array is a present, empty scope");
    ok(claims("{\"scope\":\"patient/*.rs\",\"scp\":[\"user/*.rs\"]}")
       == WELBY_REASON_TOKEN_CLAIMS, "scp: with scope as well, refused");
    ok(claims("{\"scp\":[\"user/*.rs\"],\"scope\":\"patient/*.rs\"}")
       == WELBY_REASON_TOKEN_CLAIMS,
       "scp: with scope as well, in either order, refused");
    ok(claims("{\"scope\":\"\",\"scp\":[]}") == WELBY_REASON_TOKEN_CLAIMS,
       "scp: with an empty scope as well, refused");
    ok(claims("{\"scp\":[\"patient/*.rs\",2]}") == WELBY_REASON_TOKEN_CLAIMS,
       "scp: a number element is refused");
    ok(claims("{\"scp\":[\"patient/*.rs\",null]}")
       == WELBY_REASON_TOKEN_CLAIMS, "scp: a null element is refused");
    ok(claims("{\"scp\":[[\"patient/*.rs\"]]}") == WELBY_REASON_TOKEN_CLAIMS,
       "scp: a nested array is refused");
    ok(claims("{\"scp\":[\"patient/Patient.r user/*.cruds\"]}")
       == WELBY_REASON_TOKEN_CLAIMS,
       "scp: an element with a space (two scopes in one) is refused");
    ok(claims("{\"scp\":[\"patient/*.rs\",\"\"]}")
       == WELBY_REASON_TOKEN_CLAIMS, "scp: an empty element is refused");
    ok(claims("{\"scp\":[\"patient/*.rs\\n\"]}")
       == WELBY_REASON_TOKEN_CLAIMS,
       "scp: an element with a newline is refused");
    ok(claims("{\"scp\":{\"a\":1}}") == WELBY_REASON_TOKEN_CLAIMS,
       "scp: an object is refused");
    ok(claims("{\"scp\":null}") == WELBY_REASON_TOKEN_CLAIMS,
       "scp: null is refused");
    ok(claims("{\"scp\":7}") == WELBY_REASON_TOKEN_CLAIMS,
       "scp: a number is refused");

    /* 1024 bytes joined: 204 elements of 4 bytes and one of 4, spaces */

    n = snprintf(payload, sizeof(payload), "{\"scp\":[");
    for (i = 0; i < 205; i++) {
        n += snprintf(payload + n, sizeof(payload) - n, "%s\"%04zu\"",
                      i ? "," : "", i);
    }
    snprintf(payload + n, sizeof(payload) - n, "]}");
    ok(claims(payload) == WELBY_REASON_NONE && t.claims.scope.len == 1024,
       "scp: 1024 bytes joined are accepted");

    n = snprintf(payload, sizeof(payload), "{\"scp\":[");
    for (i = 0; i < 205; i++) {
        n += snprintf(payload + n, sizeof(payload) - n, "%s\"%04zu%s\"",
                      i ? "," : "", i, i == 0 ? "x" : "");
    }
    snprintf(payload + n, sizeof(payload) - n, "]}");
    ok(claims(payload) == WELBY_REASON_TOKEN_CLAIMS,
       "scp: 1025 bytes joined are refused");

    ok(patients("{\"iss\":\"i\",\"patients\":[\"p1\",\"p2\"]}")
       == WELBY_REASON_NONE && eq(&t.claims.patients, "p1 p2"),
       "patients: an array of ids is joined by spaces");
    ok(patients("{\"iss\":\"i\",\"sub\":\"u\"}") == WELBY_REASON_NONE
       && t.claims.patients.data == NULL, "patients: absent stays absent");
    ok(patients("{\"iss\":\"i\",\"patients\":[]}") == WELBY_REASON_NONE
       && t.claims.patients.data != NULL && t.claims.patients.len == 0,
       "patients: an empty array is present and empty");
    ok(patients("{\"iss\":\"https://care.test\","
                "\"care_team\":[\"p3\",\"p-4.x\"],\"patients\":7}")
       == WELBY_REASON_NONE && eq(&t.claims.patients, "p3 p-4.x"),
       "patients: the issuer's claim name is read, and only it");
    ok(patients("{\"iss\":\"i\",\"care_team\":[\"p3\"]}")
       == WELBY_REASON_NONE && t.claims.patients.data == NULL,
       "patients: another issuer's name is not read");
    ok(patients("{\"patients\":[\"p1\"]}") == WELBY_REASON_NONE
       && t.claims.patients.data == NULL,
       "patients: without iss no claim is read");
    ok(patients("{\"iss\":\"x\",\"patients\":7}") == WELBY_REASON_NONE
       && t.claims.patients.data == NULL,
       "patients: an issuer that names no claim reads none");
    ok(claims("{\"iss\":\"i\",\"patients\":7}") == WELBY_REASON_NONE
       && t.claims.patients.data == NULL,
       "patients: welby_token_parse() reads no patients claim");
    ok(patients("{\"iss\":\"i\",\"patients\":\"p1\"}")
       == WELBY_REASON_TOKEN_CLAIMS, "patients: a string is refused");
    ok(patients("{\"iss\":\"i\",\"patients\":null}")
       == WELBY_REASON_TOKEN_CLAIMS, "patients: null is refused");
    ok(patients("{\"iss\":\"i\",\"patients\":{\"p1\":1}}")
       == WELBY_REASON_TOKEN_CLAIMS, "patients: an object is refused");
    ok(patients("{\"iss\":\"i\",\"patients\":[\"p1\",2]}")
       == WELBY_REASON_TOKEN_CLAIMS, "patients: a number element is refused");
    ok(patients("{\"iss\":\"i\",\"patients\":[\"p 1\"]}")
       == WELBY_REASON_TOKEN_CLAIMS,
       "patients: an id with a space is refused");
    ok(patients("{\"iss\":\"i\",\"patients\":[\"Patient/p1\"]}")
       == WELBY_REASON_TOKEN_CLAIMS,
       "patients: a reference is not an id: refused");
    ok(patients("{\"iss\":\"i\",\"patients\":[\"p_1\"]}")
       == WELBY_REASON_TOKEN_CLAIMS,
       "patients: '_' is not in the id grammar: refused");
    ok(patients("{\"iss\":\"i\",\"patients\":[\"p1\",\"\"]}")
       == WELBY_REASON_TOKEN_CLAIMS, "patients: an empty id is refused");
    ok(patients("{\"iss\":\"i\",\"patients\":[\"p\\u00e9\"]}")
       == WELBY_REASON_TOKEN_CLAIMS, "patients: a non-ASCII id is refused");

    memset(id65, 'a', 65);
    id65[65] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"i\",\"patients\":[\"%.64s\"]}", id65);
    ok(patients(payload) == WELBY_REASON_NONE
       && t.claims.patients.len == 64, "patients: a 64-byte id is accepted");
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"i\",\"patients\":[\"%s\"]}", id65);
    ok(patients(payload) == WELBY_REASON_TOKEN_CLAIMS,
       "patients: a 65-byte id is refused");

    n = snprintf(payload, sizeof(payload), "{\"iss\":\"i\",\"patients\":[");
    for (i = 0; i < WELBY_PATIENTS_MAX; i++) {
        n += snprintf(payload + n, sizeof(payload) - n, "%s\"p%zu\"",
                      i ? "," : "", i);
    }
    snprintf(payload + n, sizeof(payload) - n, "]}");
    ok(patients(payload) == WELBY_REASON_NONE
       && t.claims.patients.len > 0,
       "patients: %d ids are accepted", WELBY_PATIENTS_MAX);

    n = snprintf(payload, sizeof(payload), "{\"iss\":\"i\",\"patients\":[");
    for (i = 0; i < WELBY_PATIENTS_MAX + 1; i++) {
        n += snprintf(payload + n, sizeof(payload) - n, "%s\"p%zu\"",
                      i ? "," : "", i);
    }
    snprintf(payload + n, sizeof(payload) - n, "]}");
    ok(patients(payload) == WELBY_REASON_TOKEN_CLAIMS,
       "patients: %d ids are refused", WELBY_PATIENTS_MAX + 1);
}


static void
test_check(void)
{
    welby_str_t  many[2];

    rules_reset();

    ok(check(HDR, PAYLOAD, 1500) == WELBY_REASON_NONE,
       "a complete access token passes");

    ok(check_typ("at+jwt", WELBY_TYP_AT_JWT) == WELBY_REASON_NONE,
       "typ at+jwt passes");
    ok(check_typ("AT+JWT", WELBY_TYP_AT_JWT) == WELBY_REASON_NONE,
       "typ AT+JWT passes: media types ignore case");
    ok(check_typ("application/at+jwt", WELBY_TYP_AT_JWT) == WELBY_REASON_NONE,
       "typ application/at+jwt passes");
    ok(check_typ("Application/At+JWT", WELBY_TYP_AT_JWT) == WELBY_REASON_NONE,
       "typ Application/At+JWT passes");
    ok(check_typ("JWT", WELBY_TYP_AT_JWT) == WELBY_REASON_TOKEN_TYPE,
       "typ JWT is refused when at+jwt is required");
    ok(check_typ(NULL, WELBY_TYP_AT_JWT) == WELBY_REASON_TOKEN_TYPE,
       "an absent typ is refused when at+jwt is required");
    ok(check_typ("JWT", WELBY_TYP_JWT) == WELBY_REASON_NONE,
       "typ JWT passes when allowed");
    ok(check_typ("jwt", WELBY_TYP_JWT) == WELBY_REASON_NONE,
       "typ jwt passes when allowed");
    ok(check_typ("application/jwt", WELBY_TYP_JWT) == WELBY_REASON_NONE,
       "typ application/jwt passes when allowed");
    ok(check_typ(NULL, WELBY_TYP_JWT) == WELBY_REASON_NONE,
       "an absent typ passes when JWT is allowed");
    ok(check_typ("at+jwt", WELBY_TYP_JWT) == WELBY_REASON_NONE,
       "typ at+jwt passes when JWT is allowed");
    ok(check_typ("JOSE", WELBY_TYP_JWT) == WELBY_REASON_TOKEN_TYPE,
       "typ JOSE is refused");
    ok(check_typ("at+jwt ", WELBY_TYP_AT_JWT) == WELBY_REASON_TOKEN_TYPE,
       "typ with a trailing space is refused");
    ok(check_typ("", WELBY_TYP_JWT) == WELBY_REASON_TOKEN_TYPE,
       "an empty typ is not an absent one");

    rules_reset();
    rules.typ = WELBY_TYP_JWT;
    rules.required = 0;

    ok(check("{\"alg\":\"RS256\"}", "{" CLAIMS_BASE ",\"exp\":2000,"
             "\"nonce\":\"n\"}", 1500) == WELBY_REASON_TOKEN_TYPE,
       "an ID token with nonce is refused");
    ok(check("{\"alg\":\"RS256\"}", "{" CLAIMS_BASE ",\"exp\":2000,"
             "\"at_hash\":\"h\"}", 1500) == WELBY_REASON_TOKEN_TYPE,
       "an ID token with at_hash is refused");
    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u1\","
             "\"aud\":\"https://fhir.example\",\"exp\":2000}", 1500)
       == WELBY_REASON_TOKEN_TYPE,
       "a token without client_id is an ID token, even with at+jwt");

    rules_reset();

    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u1\",\"client_id\":\"c\","
             "\"aud\":\"https://fhir.example\",\"exp\":2000,\"iat\":1000}",
             1500) == WELBY_REASON_TOKEN_CLAIMS,
       "a token without the required jti is refused");
    rules.required = WELBY_CLAIMS_RFC9068 & ~WELBY_CLAIM_JTI;
    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u1\",\"client_id\":\"c\","
             "\"aud\":\"https://fhir.example\",\"exp\":2000,\"iat\":1000}",
             1500) == WELBY_REASON_NONE,
       "the same token passes when jti is not required");

    rules_reset();

    ok(check(HDR, PAYLOAD, 2060) == WELBY_REASON_NONE,
       "now exactly exp + leeway passes");
    ok(check(HDR, PAYLOAD, 2061) == WELBY_REASON_TOKEN_EXPIRED,
       "now one second after exp + leeway is expired");
    rules.leeway = 0;
    ok(check(HDR, PAYLOAD, 2000) == WELBY_REASON_NONE,
       "without leeway now == exp passes");
    ok(check(HDR, PAYLOAD, 2001) == WELBY_REASON_TOKEN_EXPIRED,
       "without leeway now == exp + 1 is expired");

    rules_reset();

    ok(check(HDR, "{" CLAIMS_BASE ",\"exp\":2000,\"nbf\":1300}", 1240)
       == WELBY_REASON_NONE, "now + leeway exactly nbf passes");
    ok(check(HDR, "{" CLAIMS_BASE ",\"exp\":2000,\"nbf\":1300}", 1239)
       == WELBY_REASON_TOKEN_NOT_YET_VALID, "now + leeway < nbf is refused");
    ok(check(HDR, PAYLOAD, 940) == WELBY_REASON_NONE,
       "now + leeway exactly iat passes");
    ok(check(HDR, PAYLOAD, 939) == WELBY_REASON_TOKEN_NOT_YET_VALID,
       "an iat beyond now + leeway is refused");

    ok(check(HDR, "{" CLAIMS_BASE ",\"exp\":4600}", 1500) == WELBY_REASON_NONE,
       "a lifetime of exactly max_lifetime passes");
    ok(check(HDR, "{" CLAIMS_BASE ",\"exp\":4601}", 1500)
       == WELBY_REASON_TOKEN_LIFETIME, "one second more is refused");
    rules.max_lifetime = 0;
    ok(check(HDR, "{" CLAIMS_BASE ",\"exp\":9000000}", 1500)
       == WELBY_REASON_NONE, "max_lifetime 0 allows any lifetime");

    rules_reset();
    rules.required = 0;

    ok(check(HDR, "{\"client_id\":\"c\",\"aud\":\"https://fhir.example\"}",
             1500) == WELBY_REASON_TOKEN_LIFETIME,
       "a token that never expires exceeds max_lifetime");
    ok(check(HDR, "{\"client_id\":\"c\",\"aud\":\"https://fhir.example\","
             "\"exp\":5100}", 1500) == WELBY_REASON_NONE,
       "without iat the lifetime counts from now: bound passes");
    ok(check(HDR, "{\"client_id\":\"c\",\"aud\":\"https://fhir.example\","
             "\"exp\":5101}", 1500) == WELBY_REASON_TOKEN_LIFETIME,
       "without iat the lifetime counts from now: bound + 1 is refused");

    rules_reset();

    many[0].data = (const unsigned char *) "https://x.example";
    many[0].len = sizeof("https://x.example") - 1;
    many[1].data = (const unsigned char *) "c";
    many[1].len = 1;
    rules.audiences = many;
    rules.naudiences = 2;

    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u\",\"iat\":1000,\"jti\":\"j\","
             "\"client_id\":\"x\",\"exp\":2000,\"aud\":[\"a\",\"b\",\"c\"]}",
             1500) == WELBY_REASON_NONE,
       "one of several audiences matching one of several configured passes");
    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u\",\"iat\":1000,\"jti\":\"j\","
             "\"client_id\":\"x\",\"exp\":2000,\"aud\":[\"a\",\"b\",\"C\"]}",
             1500) == WELBY_REASON_TOKEN_AUDIENCE,
       "audiences compare case-sensitively");
    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u\",\"iat\":1000,\"jti\":\"j\","
             "\"client_id\":\"x\",\"exp\":2000,"
             "\"aud\":\"https://x.example/\"}", 1500)
       == WELBY_REASON_TOKEN_AUDIENCE,
       "an audience with a trailing slash does not match");
    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u\",\"iat\":1000,\"jti\":\"j\","
             "\"client_id\":\"x\",\"exp\":2000,\"aud\":\"https://x.exampl\"}",
             1500) == WELBY_REASON_TOKEN_AUDIENCE,
       "a prefix of an audience does not match");
    rules.naudiences = 0;
    ok(check(HDR, PAYLOAD, 1500) == WELBY_REASON_TOKEN_AUDIENCE,
       "no configured audience matches nothing");

    rules_reset();

    ok(check("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", PAYLOAD, 9999)
       == WELBY_REASON_TOKEN_TYPE, "the type is named before expiry");
    ok(check(HDR, "{\"iss\":\"i\",\"client_id\":\"c\",\"exp\":2000}", 9999)
       == WELBY_REASON_TOKEN_CLAIMS, "missing claims before expiry");
    ok(check(HDR, "{" CLAIMS_BASE ",\"exp\":2000,\"nbf\":3000}", 9999)
       == WELBY_REASON_TOKEN_EXPIRED, "expiry before not-yet-valid");
    ok(check(HDR, "{\"iss\":\"i\",\"sub\":\"u\",\"iat\":1000,\"jti\":\"j\","
             "\"client_id\":\"x\",\"exp\":9000,\"aud\":\"nope\"}", 1500)
       == WELBY_REASON_TOKEN_LIFETIME, "lifetime before audience");

    rules.leeway = INT64_MAX;
    ok(check(HDR, PAYLOAD, INT64_MAX) == WELBY_REASON_NONE,
       "an enormous leeway saturates instead of overflowing");
    rules.leeway = INT64_MIN;
    ok(check(HDR, PAYLOAD, INT64_MIN) == WELBY_REASON_TOKEN_NOT_YET_VALID,
       "a negative leeway at the smallest now saturates too");
    rules_reset();
    rules.max_lifetime = INT64_MAX;
    ok(check(HDR, PAYLOAD, 1500) == WELBY_REASON_NONE,
       "an enormous max_lifetime does not overflow");
}


int
main(void)
{
    test_algs();
    test_structure();
    test_json();
    test_header();
    test_claims();
    test_scp_patients();
    test_check();

    free(scratch);

    return done_testing();
}
