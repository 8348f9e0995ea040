/*
 * Unit tests: JWKS, PEM and secret loading, and JWS signature checks,
 * with keys generated at run time and files in a temporary directory.
 */

#define _DEFAULT_SOURCE  /* mkdtemp() under -std=c99 */

#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tap.h"
#include "welby_b64.h"
#include "welby_jwk.h"

#define S(s)       (const unsigned char *) (s), sizeof(s) - 1
#define ALL        (WELBY_ALGS_ASYMMETRIC)
#define BIT(a)     WELBY_ALG_BIT(WELBY_ALG_##a)
#define NFILES     64


static char          tmp_dir[] = "/tmp/welby-jwk-XXXXXX";
static char          tmp_files[NFILES][128];
static int           tmp_n;
static char          err[256];

static EVP_PKEY     *rsa2048, *rsa1024, *p256, *p384, *p521, *ed25519;

static const unsigned char  input[] =
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwYXRpZW50LTEifQ";


static const char *
write_file(const char *name, const void *data, size_t len)
{
    FILE  *f;
    char  *path;

    path = tmp_files[tmp_n++];
    snprintf(path, sizeof(tmp_files[0]), "%s/%s", tmp_dir, name);

    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(2);
    }

    fclose(f);

    return path;
}


static const char *
write_str(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}


static json_t *
b64_json(const unsigned char *data, size_t len)
{
    size_t          n;
    json_t         *s;
    unsigned char  *enc;

    enc = malloc(welby_b64url_encoded_len(len) + 1);
    n = welby_b64url_encode(enc, data, len);
    s = json_stringn((const char *) enc, n);
    free(enc);

    return s;
}


static json_t *
bn_json(EVP_PKEY *pkey, const char *param, int pad)
{
    int             len;
    BIGNUM         *bn;
    json_t         *s;
    unsigned char   buf[2048];

    bn = NULL;
    EVP_PKEY_get_bn_param(pkey, param, &bn);

    len = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    s = b64_json(buf, (size_t) len);
    BN_free(bn);

    return s;
}


/* A public JWK of pkey; alg and kid when not NULL. */

static json_t *
jwk(EVP_PKEY *pkey, const char *alg, const char *kid)
{
    json_t         *k;
    size_t          len;
    unsigned char   raw[32];

    k = json_object();

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        json_object_set_new(k, "kty", json_string("RSA"));
        json_object_set_new(k, "n", bn_json(pkey, OSSL_PKEY_PARAM_RSA_N, 0));
        json_object_set_new(k, "e", bn_json(pkey, OSSL_PKEY_PARAM_RSA_E, 0));

    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        json_object_set_new(k, "kty", json_string("EC"));
        len = pkey == p256 ? 32 : pkey == p384 ? 48 : 66;
        json_object_set_new(k, "crv", json_string(len == 32 ? "P-256"
                                                  : len == 48 ? "P-384"
                                                  : "P-521"));
        json_object_set_new(k, "x", bn_json(pkey, OSSL_PKEY_PARAM_EC_PUB_X,
                                            (int) len));
        json_object_set_new(k, "y", bn_json(pkey, OSSL_PKEY_PARAM_EC_PUB_Y,
                                            (int) len));

    } else {
        len = sizeof(raw);
        EVP_PKEY_get_raw_public_key(pkey, raw, &len);
        json_object_set_new(k, "kty", json_string("OKP"));
        json_object_set_new(k, "crv", json_string("Ed25519"));
        json_object_set_new(k, "x", b64_json(raw, len));
    }

    if (alg != NULL) {
        json_object_set_new(k, "alg", json_string(alg));
    }

    if (kid != NULL) {
        json_object_set_new(k, "kid", json_string(kid));
    }

    return k;
}


/* Writes {"keys": [...]} with the given keys (references taken). */

static const char *
jwks(const char *name, json_t *k1, json_t *k2, json_t *k3)
{
    char        *text;
    json_t      *keys, *root;
    const char  *path;

    keys = json_array();

    if (k1 != NULL) {
        json_array_append_new(keys, k1);
    }

    if (k2 != NULL) {
        json_array_append_new(keys, k2);
    }

    if (k3 != NULL) {
        json_array_append_new(keys, k3);
    }

    root = json_object();
    json_object_set_new(root, "keys", keys);

    text = json_dumps(root, JSON_INDENT(1));
    path = write_file(name, text, strlen(text));

    free(text);
    json_decref(root);

    return path;
}


static const char *
pem(const char *name, EVP_PKEY *pkey, int private)
{
    BIO         *bio;
    char        *data;
    long         len;
    const char  *path;

    bio = BIO_new(BIO_s_mem());

    if (private) {
        PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);

    } else {
        PEM_write_bio_PUBKEY(bio, pkey);
    }

    len = BIO_get_mem_data(bio, &data);
    path = write_file(name, data, (size_t) len);
    BIO_free(bio);

    return path;
}


static welby_keyset_t *
load(const char *path, unsigned allowed, welby_alg_e default_alg,
    const char *kid)
{
    err[0] = '\0';
    return welby_keyset_load(path, allowed, default_alg, kid, err,
                             sizeof(err));
}


/* The load fails, and says why. */

static int
fails(welby_keyset_t *ks, const char *phrase)
{
    if (ks != NULL) {
        welby_keyset_free(ks);
        printf("#   loaded, expected \"%s\"\n", phrase);
        return 0;
    }

    if (strstr(err, phrase) == NULL) {
        printf("#   error: '%s'\n#   expected: '%s'\n", err, phrase);
        return 0;
    }

    return 1;
}


static const char *
md_of(welby_alg_e alg)
{
    switch (alg) {
    case WELBY_ALG_RS384: case WELBY_ALG_PS384: case WELBY_ALG_ES384:
    case WELBY_ALG_HS384:
        return "SHA384";
    case WELBY_ALG_RS512: case WELBY_ALG_PS512: case WELBY_ALG_ES512:
    case WELBY_ALG_HS512:
        return "SHA512";
    case WELBY_ALG_EDDSA:
        return NULL;
    default:
        return "SHA256";
    }
}


/* A JWS signature: ECDSA as raw r || s, as RFC 7518 section 3.4 has it. */

static size_t
sign(EVP_PKEY *pkey, welby_alg_e alg, const unsigned char *in, size_t len,
    unsigned char *out)
{
    int                   half;
    size_t                sig_len;
    EVP_MD               *md;
    ECDSA_SIG            *es;
    EVP_MD_CTX           *mctx;
    EVP_PKEY_CTX         *pctx;
    const BIGNUM         *r, *s;
    unsigned char         der[1024];
    const unsigned char  *p;

    md = md_of(alg) ? EVP_MD_fetch(NULL, md_of(alg), NULL) : NULL;
    mctx = EVP_MD_CTX_new();

    EVP_DigestSignInit(mctx, &pctx, md, NULL, pkey);

    if (alg >= WELBY_ALG_PS256 && alg <= WELBY_ALG_PS512) {
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md);
    }

    sig_len = sizeof(der);
    if (EVP_DigestSign(mctx, der, &sig_len, in, len) != 1) {
        printf("#   signing failed\n");
        sig_len = 0;
    }

    EVP_MD_CTX_free(mctx);
    EVP_MD_free(md);

    if (alg < WELBY_ALG_ES256 || alg > WELBY_ALG_ES512) {
        memcpy(out, der, sig_len);
        return sig_len;
    }

    half = alg == WELBY_ALG_ES256 ? 32 : alg == WELBY_ALG_ES384 ? 48 : 66;

    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long) sig_len);
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, out, half);
    BN_bn2binpad(s, out + half, half);
    ECDSA_SIG_free(es);

    return (size_t) (2 * half);
}


static int
verifies(const welby_key_t *key, const unsigned char *in, size_t in_len,
    const unsigned char *sig, size_t sig_len)
{
    return key != NULL
           && welby_jws_verify(key, in, in_len, sig, sig_len)
              == WELBY_REASON_NONE;
}


static int
refused(const welby_key_t *key, const unsigned char *in, size_t in_len,
    const unsigned char *sig, size_t sig_len)
{
    return key != NULL
           && welby_jws_verify(key, in, in_len, sig, sig_len)
              == WELBY_REASON_TOKEN_SIGNATURE;
}


static void
test_algs(void)
{
    size_t              i, len, expect;
    char                name[32];
    const char         *path;
    welby_keyset_t     *ks;
    unsigned char       sig[1100], in[sizeof(input)];
    const welby_key_t  *key;

    static const struct {
        welby_alg_e     alg;
        EVP_PKEY      **pkey;
        size_t          sig_len;
    } algs[] = {
        { WELBY_ALG_RS256, &rsa2048, 256 },
        { WELBY_ALG_RS384, &rsa2048, 256 },
        { WELBY_ALG_RS512, &rsa2048, 256 },
        { WELBY_ALG_PS256, &rsa2048, 256 },
        { WELBY_ALG_PS384, &rsa2048, 256 },
        { WELBY_ALG_PS512, &rsa2048, 256 },
        { WELBY_ALG_ES256, &p256, 64 },
        { WELBY_ALG_ES384, &p384, 96 },
        { WELBY_ALG_ES512, &p521, 132 },
        { WELBY_ALG_EDDSA, &ed25519, 64 }
    };

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        snprintf(name, sizeof(name), "alg-%s.json",
                 welby_alg_name(algs[i].alg));

        path = jwks(name, jwk(*algs[i].pkey, welby_alg_name(algs[i].alg),
                              "k1"),
                    NULL, NULL);

        ks = load(path, ALL, WELBY_ALG_UNKNOWN, NULL);
        key = welby_keyset_find(ks, S("k1"));
        expect = algs[i].sig_len;

        ok(key != NULL && key->alg == algs[i].alg
           && key->sig_len == expect,
           "%s: the JWK loads, signatures are %zu bytes",
           welby_alg_name(algs[i].alg), expect);

        len = sign(*algs[i].pkey, algs[i].alg, input, sizeof(input) - 1,
                   sig);

        ok(len == expect && verifies(key, input, sizeof(input) - 1, sig, len),
           "%s: a valid signature verifies", welby_alg_name(algs[i].alg));

        sig[len - 1] ^= 0x01;
        ok(refused(key, input, sizeof(input) - 1, sig, len),
           "%s: a flipped signature bit fails", welby_alg_name(algs[i].alg));
        sig[len - 1] ^= 0x01;

        memcpy(in, input, sizeof(input));
        in[5] ^= 0x20;
        ok(refused(key, in, sizeof(input) - 1, sig, len),
           "%s: a changed input fails", welby_alg_name(algs[i].alg));

        ok(refused(key, input, sizeof(input) - 1, sig, len - 1),
           "%s: a short signature fails", welby_alg_name(algs[i].alg));

        sig[len] = 0;
        ok(refused(key, input, sizeof(input) - 1, sig, len + 1),
           "%s: a long signature fails", welby_alg_name(algs[i].alg));

        welby_keyset_free(ks);
    }
}


static void
test_ecdsa_range(void)
{
    int                 half;
    size_t              len;
    BIGNUM             *n1;
    EC_GROUP           *group;
    const char         *path;
    welby_keyset_t     *ks;
    const BIGNUM       *order;
    unsigned char       sig[132], bad[132];
    const welby_key_t  *key;

    static const struct {
        int             nid;
        EVP_PKEY      **pkey;
        welby_alg_e     alg;
        const char     *name;
    } curves[] = {
        { NID_X9_62_prime256v1, &p256, WELBY_ALG_ES256, "ES256" },
        { NID_secp521r1, &p521, WELBY_ALG_ES512, "ES512" }
    };
    size_t  i;

    for (i = 0; i < 2; i++) {
        path = jwks(i ? "range-521.json" : "range-256.json",
                    jwk(*curves[i].pkey, NULL, NULL), NULL, NULL);
        ks = load(path, ALL, WELBY_ALG_UNKNOWN, NULL);
        key = welby_keyset_find(ks, NULL, 0);

        ok(key != NULL && key->alg == curves[i].alg,
           "%s: an EC key without alg takes the curve's alg",
           curves[i].name);

        len = sign(*curves[i].pkey, curves[i].alg, input, sizeof(input) - 1,
                   sig);
        half = (int) len / 2;

        group = EC_GROUP_new_by_curve_name(curves[i].nid);
        order = EC_GROUP_get0_order(group);

        memset(bad, 0, len);
        ok(refused(key, input, sizeof(input) - 1, bad, len),
           "%s: r = s = 0 fails (CVE-2022-21449)", curves[i].name);

        memcpy(bad, sig, len);
        memset(bad, 0, half);
        ok(refused(key, input, sizeof(input) - 1, bad, len),
           "%s: r = 0 fails", curves[i].name);

        memcpy(bad, sig, len);
        BN_bn2binpad(order, bad, half);
        ok(refused(key, input, sizeof(input) - 1, bad, len),
           "%s: r = n fails", curves[i].name);

        memcpy(bad, sig, len);
        BN_bn2binpad(order, bad + half, half);
        ok(refused(key, input, sizeof(input) - 1, bad, len),
           "%s: s = n fails", curves[i].name);

        /* s + n is the same residue, and must not pass as the same s */
        memcpy(bad, sig, len);
        n1 = BN_bin2bn(sig + half, half, NULL);
        BN_add(n1, n1, order);

        /* P-256 leaves no room above n in 32 bytes; P-521 does in 66 */
        if (BN_num_bytes(n1) <= half) {
            BN_bn2binpad(n1, bad + half, half);
            ok(refused(key, input, sizeof(input) - 1, bad, len),
               "%s: s + n fails", curves[i].name);
        }

        BN_free(n1);

        memset(bad, 0xff, len);
        ok(refused(key, input, sizeof(input) - 1, bad, len),
           "%s: r = s = 2^k - 1 fails", curves[i].name);

        ok(verifies(key, input, sizeof(input) - 1, sig, len),
           "%s: the untouched signature still verifies", curves[i].name);

        EC_GROUP_free(group);
        welby_keyset_free(ks);
    }
}


static void
test_cross(void)
{
    size_t              len;
    const char         *path;
    welby_keyset_t     *ks, *ks2;
    unsigned char       sig[512];
    const welby_key_t  *rs, *ps, *rs2;

    path = jwks("cross.json", jwk(rsa2048, "RS256", "rs"),
                jwk(rsa2048, "PS256", "ps"), NULL);
    ks = load(path, ALL, WELBY_ALG_UNKNOWN, NULL);
    rs = welby_keyset_find(ks, S("rs"));
    ps = welby_keyset_find(ks, S("ps"));

    ok(ks != NULL && ks->nkeys == 2, "one RSA key under two algs loads");

    len = sign(rsa2048, WELBY_ALG_RS256, input, sizeof(input) - 1, sig);
    ok(refused(ps, input, sizeof(input) - 1, sig, len),
       "an RS256 signature fails under the PS256 key");

    len = sign(rsa2048, WELBY_ALG_PS256, input, sizeof(input) - 1, sig);
    ok(refused(rs, input, sizeof(input) - 1, sig, len),
       "a PS256 signature fails under the RS256 key");

    ok(rs != NULL && ps != NULL
       && memcmp(rs->thumbprint, ps->thumbprint, 32) != 0,
       "the thumbprint covers the alg and kid");

    ks2 = load(path, ALL, WELBY_ALG_UNKNOWN, NULL);
    rs2 = welby_keyset_find(ks2, S("rs"));

    ok(rs != NULL && rs2 != NULL
       && memcmp(rs->thumbprint, rs2->thumbprint, 32) == 0,
       "the same key loaded twice has the same thumbprint");

    welby_keyset_free(ks);
    welby_keyset_free(ks2);

    path = jwks("cross-kid.json", jwk(rsa2048, "RS256", "rs-2"), NULL, NULL);
    ks2 = load(path, ALL, WELBY_ALG_UNKNOWN, NULL);
    ks = load(jwks("cross-again.json", jwk(rsa2048, "RS256", "rs"), NULL,
                   NULL),
              ALL, WELBY_ALG_UNKNOWN, NULL);

    ok(ks != NULL && ks2 != NULL
       && memcmp(ks->keys[0].thumbprint, ks2->keys[0].thumbprint, 32) != 0,
       "a new kid gives a new thumbprint");

    welby_keyset_free(ks);
    welby_keyset_free(ks2);
}


static void
test_hmac(void)
{
    size_t              len;
    const char         *path, *path31;
    welby_keyset_t     *ks;
    unsigned char       secret[64], sig[64];
    const welby_key_t  *key;

    RAND_bytes(secret, sizeof(secret));

    path = write_file("hs.key", secret, 32);
    path31 = write_file("hs31.key", secret, 31);

    err[0] = '\0';
    ks = welby_keyset_secret(path, WELBY_ALG_HS256, "h1", err, sizeof(err));
    key = welby_keyset_find(ks, S("h1"));

    ok(key != NULL && key->alg == WELBY_ALG_HS256 && key->sig_len == 32,
       "HS256: a 32-byte secret loads");

    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secret, 32, input,
              sizeof(input) - 1, sig, sizeof(sig), &len);

    ok(verifies(key, input, sizeof(input) - 1, sig, len),
       "HS256: a valid MAC verifies");

    sig[0] ^= 0x80;
    ok(refused(key, input, sizeof(input) - 1, sig, len),
       "HS256: a flipped MAC bit fails");
    sig[0] ^= 0x80;

    ok(refused(key, input, sizeof(input) - 1, sig, len - 1),
       "HS256: a truncated MAC fails");

    ok(refused(key, input, sizeof(input) - 2, sig, len),
       "HS256: a shorter input fails");

    welby_keyset_free(ks);

    path = write_file("hs512.key", secret, 64);

    ks = welby_keyset_secret(path, WELBY_ALG_HS512, NULL, err, sizeof(err));
    key = welby_keyset_find(ks, NULL, 0);

    EVP_Q_mac(NULL, "HMAC", NULL, "SHA512", NULL, secret, 64, input,
              sizeof(input) - 1, sig, sizeof(sig), &len);

    ok(key != NULL && key->sig_len == 64
       && verifies(key, input, sizeof(input) - 1, sig, len),
       "HS512: a 64-byte secret verifies its MAC");

    ok(key != NULL && welby_keyset_find(ks, S("h1")) == NULL,
       "a secret without kid is not found by a kid");

    welby_keyset_free(ks);

    ks = welby_keyset_secret(path31, WELBY_ALG_HS256, NULL, err,
                             sizeof(err));
    ok(fails(ks, "secret of 31 bytes, HS256 needs at least 32"),
       "HS256: a 31-byte secret is refused");

    ks = welby_keyset_secret(write_file("hs48.key", secret, 48),
                             WELBY_ALG_HS512, NULL, err, sizeof(err));
    ok(fails(ks, "secret of 48 bytes, HS512 needs at least 64"),
       "HS512: a 48-byte secret is refused");

    ks = welby_keyset_secret(path, WELBY_ALG_RS256, NULL, err, sizeof(err));
    ok(fails(ks, "alg \"RS256\" is not an HMAC algorithm"),
       "a secret with an RSA alg is refused");

    ks = welby_keyset_secret("/nonexistent/welby.key", WELBY_ALG_HS256,
                             NULL, err, sizeof(err));
    ok(fails(ks, "cannot open: No such file"),
       "a missing secret file is refused");
}


static void
test_load_errors(void)
{
    json_t          *k;
    const char      *path;
    unsigned char    big[2100];
    welby_keyset_t  *ks;

    ks = load(jwks("rsa1024.json", jwk(rsa2048, "RS256", "k1"),
                   jwk(rsa1024, "RS256", "k2"), NULL),
              ALL, WELBY_ALG_UNKNOWN, NULL);
    ok(ks == NULL, "a 1024-bit RSA key fails the load");
    is_str(err, "key 2 (kid \"k2\"): RSA key of 1024 bits, at least 2048 "
           "required", "the error names the key and its size");

    k = json_object();
    json_object_set_new(k, "kty", json_string("oct"));
    json_object_set_new(k, "kid", json_string("a"));
    json_object_set_new(k, "k", json_string("c2VjcmV0"));
    ks = load(jwks("oct.json", k, NULL, NULL), ALL | WELBY_ALGS_HMAC,
              WELBY_ALG_UNKNOWN, NULL);
    ok(ks == NULL, "a kty oct key fails the load");
    is_str(err, "key 1 (kid \"a\"): kty \"oct\" is not accepted in a JWKS "
           "file; configure secret=", "the error points at secret=");

    k = json_object();
    json_object_set_new(k, "kty", json_string("OKP"));
    json_object_set_new(k, "crv", json_string("Ed448"));
    json_object_set_new(k, "x", json_string("AAAA"));
    ks = load(jwks("ed448.json", jwk(p256, NULL, "a"), jwk(p384, NULL, "b"),
                   k),
              ALL, WELBY_ALG_UNKNOWN, NULL);
    ok(ks == NULL, "an Ed448 key fails the load");
    is_str(err, "key 3: unknown crv \"Ed448\"",
           "the error names the position and the curve");

    k = jwk(p256, "ES256", "x");
    json_object_set_new(k, "d", json_string("AAAA"));
    ok(fails(load(jwks("private.json", k, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "key 1 (kid \"x\"): holds private key member \"d\""),
       "a private EC key fails the load");

    k = jwk(rsa2048, "RS256", "x");
    json_object_set_new(k, "qi", json_string("AAAA"));
    ok(fails(load(jwks("private-rsa.json", k, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "holds private key member \"qi\""),
       "a private RSA key fails the load");

    ok(fails(load(jwks("es384-p256.json", jwk(p384, NULL, "k"),
                       jwk(p256, "ES384", NULL), NULL),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "key 2: alg \"ES384\" does not match crv \"P-256\""),
       "an alg that contradicts the curve fails the load");

    ok(fails(load(jwks("rs256-ec.json", jwk(p256, "RS256", NULL), NULL,
                       NULL),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "key 1: alg \"RS256\" does not match kty \"EC\""),
       "an alg that contradicts the key type fails the load");

    ok(fails(load(jwks("eddsa-rsa.json", jwk(rsa2048, "EdDSA", NULL), NULL,
                       NULL),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "alg \"EdDSA\" does not match kty \"RSA\""),
       "EdDSA on an RSA key fails the load");

    ok(fails(load(jwks("hs-rsa.json", jwk(rsa2048, "HS256", NULL), NULL,
                       NULL),
                  ALL | WELBY_ALGS_HMAC, WELBY_ALG_UNKNOWN, NULL),
             "alg \"HS256\" does not match kty \"RSA\""),
       "HS256 on an RSA key fails the load");

    ok(fails(load(jwks("none.json", jwk(rsa2048, "none", NULL), NULL, NULL),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "key 1: unknown alg \"none\""),
       "alg none fails the load");

    ok(fails(load(jwks("dup.json", jwk(p256, NULL, "a"), jwk(p384, NULL, "a"),
                       NULL),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "duplicate kid \"a\""),
       "a duplicate kid fails the load");

    ok(fails(load(jwks("nokid2.json", jwk(p256, NULL, NULL),
                       jwk(p384, NULL, "b"), jwk(ed25519, NULL, NULL)),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "key 3: a second key without \"kid\""),
       "two keys without kid fail the load");

    k = jwk(p256, NULL, "e");
    json_object_set_new(k, "use", json_string("enc"));
    ok(fails(load(jwks("enc-only.json", k, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "no usable signing key"),
       "a JWKS of encryption keys only fails the load");

    ok(fails(load(jwks("empty.json", NULL, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "no usable signing key"),
       "an empty JWKS fails the load");

    ok(fails(load("/nonexistent/jwks.json", ALL, WELBY_ALG_UNKNOWN, NULL),
             "cannot open: No such file or directory"),
       "a missing file fails the load");

    path = write_str("bad.json", "{\n  \"keys\": [\n    ,\n  ]\n}\n");
    ok(fails(load(path, ALL, WELBY_ALG_UNKNOWN, NULL),
             "invalid JSON at line 3: "),
       "invalid JSON fails the load with its line");

    path = write_str("dupkeys.json", "{\"keys\": [], \"keys\": []}");
    ok(fails(load(path, ALL, WELBY_ALG_UNKNOWN, NULL), "invalid JSON"),
       "duplicate JSON members fail the load");

    path = write_str("array.json", "[]");
    ok(fails(load(path, ALL, WELBY_ALG_UNKNOWN, NULL),
             "no \"keys\" array"),
       "a JSON array is not a JWKS");

    ok(fails(load(jwks("rsa-noalg.json", jwk(rsa2048, NULL, "r"), NULL, NULL),
                  ALL, WELBY_ALG_UNKNOWN, NULL),
             "kty \"RSA\" without \"alg\""),
       "an RSA key without alg and no default fails the load");

    k = jwk(rsa2048, "RS256", "r");
    json_object_set_new(k, "e", json_string("AQAA"));
    ok(fails(load(jwks("e-even.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "exponent must be odd and greater than 1"),
       "an even RSA exponent fails the load");

    k = jwk(rsa2048, "RS256", "r");
    json_object_set_new(k, "e", json_string("AQ"));
    ok(fails(load(jwks("e-one.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "exponent must be odd and greater than 1"),
       "an RSA exponent of 1 fails the load");

    k = jwk(rsa2048, "RS256", "r");
    json_object_set_new(k, "n", json_string("AQAB=="));
    ok(fails(load(jwks("n-pad.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "\"n\" is not base64url"),
       "a padded modulus fails the load");

    k = jwk(rsa2048, "RS256", "r");
    json_object_del(k, "e");
    ok(fails(load(jwks("no-e.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "\"e\" is missing or not a string"),
       "an RSA key without e fails the load");

    memset(big, 0xff, sizeof(big));
    k = jwk(rsa2048, "RS256", "r");
    json_object_set_new(k, "n", b64_json(big, 2049));
    ok(fails(load(jwks("n-huge.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "RSA key of 16392 bits, at most 16384 supported"),
       "an RSA key too large to verify fails the load");

    /* (x, x) is off the curve but for a negligible chance */
    k = jwk(p256, "ES256", "p");
    json_object_set(k, "y", json_object_get(k, "x"));
    ok(fails(load(jwks("off-curve.json", k, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "not a point on P-256"),
       "a point off the curve fails the load");

    k = jwk(p256, "ES256", "p");
    json_object_set_new(k, "x", b64_json(big, 31));
    ok(fails(load(jwks("x31.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "\"x\" is 31 bytes, crv \"P-256\" needs 32"),
       "a short EC coordinate fails the load");

    k = jwk(p521, "ES512", "p");
    json_object_set_new(k, "y", b64_json(big, 65));
    ok(fails(load(jwks("y65.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "\"y\" is 65 bytes, crv \"P-521\" needs 66"),
       "a P-521 coordinate without its leading zero fails the load");

    k = jwk(ed25519, "EdDSA", "o");
    json_object_set_new(k, "x", b64_json(big, 33));
    ok(fails(load(jwks("ed33.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "\"x\" is 33 bytes, crv \"Ed25519\" needs 32"),
       "a long Ed25519 key fails the load");

    k = json_object();
    json_object_set_new(k, "kty", json_string("DSA"));
    ok(fails(load(jwks("dsa.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "key 1: unknown kty \"DSA\""),
       "an unknown kty fails the load");

    k = jwk(p256, "ES256", NULL);
    json_object_set_new(k, "kid", json_integer(7));
    ok(fails(load(jwks("kid-int.json", k, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "key 1: \"kid\" is not a string"),
       "a numeric kid fails the load");

    k = jwk(p256, "ES256", "a\n\"b");
    json_object_set_new(k, "crv", json_string("P-255"));
    ok(fails(load(jwks("kid-ctl.json", k, NULL, NULL), ALL,
                  WELBY_ALG_UNKNOWN, NULL),
             "key 1 (kid \"a??b\"): unknown crv \"P-255\""),
       "a kid is quoted without control characters or quotes");

    path = write_str("not-pem.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n");
    ok(fails(load(path, ALL, WELBY_ALG_RS256, NULL), "no PEM public key"),
       "a broken PEM file fails the load");
}


static void
test_selection(void)
{
    json_t             *k;
    size_t              len;
    const char         *path;
    welby_keyset_t     *ks;
    unsigned char       sig[512];
    const welby_key_t  *key;

    k = jwk(p384, NULL, "e1");
    json_object_set_new(k, "use", json_string("enc"));
    ks = load(jwks("use.json", k, jwk(p256, NULL, "s1"), NULL), ALL,
              WELBY_ALG_UNKNOWN, NULL);
    ok(ks != NULL && ks->nkeys == 1 && welby_keyset_find(ks, S("e1")) == NULL
       && welby_keyset_find(ks, S("s1")) != NULL,
       "a use:enc key is skipped");
    welby_keyset_free(ks);

    k = jwk(p384, NULL, "s2");
    json_object_set_new(k, "use", json_string("sig"));
    ks = load(jwks("use-sig.json", k, NULL, NULL), ALL, WELBY_ALG_UNKNOWN,
              NULL);
    ok(welby_keyset_find(ks, S("s2")) != NULL, "a use:sig key is loaded");
    welby_keyset_free(ks);

    path = jwks("allowed.json", jwk(rsa2048, "RS256", "r"),
                jwk(p256, "ES256", "e"), jwk(rsa1024, "RS256", "weak"));
    ks = load(path, BIT(ES256), WELBY_ALG_UNKNOWN, NULL);
    ok(ks != NULL && ks->nkeys == 1 && welby_keyset_find(ks, S("r")) == NULL
       && welby_keyset_find(ks, S("e")) != NULL,
       "keys whose alg is not allowed are skipped, weak ones too");
    welby_keyset_free(ks);

    ok(fails(load(path, BIT(PS256), WELBY_ALG_UNKNOWN, NULL),
             "no usable signing key"),
       "no key with an allowed alg fails the load");

    path = jwks("rsa-default.json", jwk(rsa2048, NULL, "r"),
                jwk(p256, NULL, "e"), NULL);
    ks = load(path, ALL, WELBY_ALG_PS384, NULL);
    key = welby_keyset_find(ks, S("r"));
    len = sign(rsa2048, WELBY_ALG_PS384, input, sizeof(input) - 1, sig);
    ok(key != NULL && key->alg == WELBY_ALG_PS384
       && verifies(key, input, sizeof(input) - 1, sig, len),
       "an RSA key without alg takes the default alg");
    welby_keyset_free(ks);

    ks = load(path, BIT(ES256), WELBY_ALG_UNKNOWN, NULL);
    ok(ks != NULL && ks->nkeys == 1,
       "an RSA key without alg is skipped when no RSA alg is allowed");
    welby_keyset_free(ks);

    ks = load(jwks("find2.json", jwk(p256, NULL, "k1"),
                   jwk(ed25519, NULL, "k2"), NULL),
              ALL, WELBY_ALG_UNKNOWN, NULL);

    key = welby_keyset_find(ks, S("k2"));
    ok(key != NULL && key->alg == WELBY_ALG_EDDSA, "find: the kid matches");
    ok(welby_keyset_find(ks, S("k3")) == NULL, "find: an unknown kid fails");
    ok(welby_keyset_find(ks, S("k")) == NULL, "find: a kid prefix fails");
    ok(welby_keyset_find(ks, S("k22")) == NULL, "find: a longer kid fails");
    ok(welby_keyset_find(ks, NULL, 0) == NULL,
       "find: no kid with two keys fails");
    welby_keyset_free(ks);

    ks = load(jwks("find1.json", jwk(p256, NULL, "only"), NULL, NULL), ALL,
              WELBY_ALG_UNKNOWN, NULL);
    ok(welby_keyset_find(ks, NULL, 0) == &ks->keys[0],
       "find: no kid with one key takes it");
    ok(welby_keyset_find(ks, S("other")) == NULL,
       "find: a wrong kid fails even with one key");
    welby_keyset_free(ks);

    ok(welby_keyset_find(NULL, S("k1")) == NULL, "find: no set, no key");
}


static void
test_pem(void)
{
    size_t              len;
    const char         *path;
    welby_keyset_t     *ks;
    unsigned char       sig[512];
    const welby_key_t  *key;

    path = pem("rsa.pem", rsa2048, 0);

    ks = load(path, ALL, WELBY_ALG_RS384, "pem1");
    key = welby_keyset_find(ks, S("pem1"));
    len = sign(rsa2048, WELBY_ALG_RS384, input, sizeof(input) - 1, sig);
    ok(key != NULL && key->alg == WELBY_ALG_RS384 && key->sig_len == 256
       && verifies(key, input, sizeof(input) - 1, sig, len),
       "PEM RSA: loads with the default alg and kid, and verifies");
    welby_keyset_free(ks);

    ok(fails(load(path, ALL, WELBY_ALG_UNKNOWN, NULL),
             "an RSA key needs an alg"),
       "PEM RSA: no default alg fails the load");

    ok(fails(load(path, BIT(ES256), WELBY_ALG_RS256, NULL),
             "alg \"RS256\" is not allowed"),
       "PEM RSA: an alg that is not allowed fails the load");

    ok(fails(load(path, ALL, WELBY_ALG_ES256, NULL),
             "alg \"ES256\" does not match kty \"RSA\""),
       "PEM RSA: an EC alg fails the load");

    ok(fails(load(pem("rsa1024.pem", rsa1024, 0), ALL, WELBY_ALG_RS256, NULL),
             "RSA key of 1024 bits, at least 2048 required"),
       "PEM RSA: a 1024-bit key fails the load");

    path = pem("p384.pem", p384, 0);
    ks = load(path, ALL, WELBY_ALG_UNKNOWN, NULL);
    key = welby_keyset_find(ks, NULL, 0);
    len = sign(p384, WELBY_ALG_ES384, input, sizeof(input) - 1, sig);
    ok(key != NULL && key->alg == WELBY_ALG_ES384 && key->kid == NULL
       && verifies(key, input, sizeof(input) - 1, sig, len),
       "PEM P-384: takes ES384 and verifies");
    welby_keyset_free(ks);

    ok(fails(load(path, ALL, WELBY_ALG_ES256, NULL),
             "alg \"ES256\" does not match crv \"P-384\""),
       "PEM P-384: ES256 fails the load");

    ks = load(pem("ed.pem", ed25519, 0), ALL, WELBY_ALG_UNKNOWN, "ed");
    key = welby_keyset_find(ks, S("ed"));
    len = sign(ed25519, WELBY_ALG_EDDSA, input, sizeof(input) - 1, sig);
    ok(key != NULL && key->alg == WELBY_ALG_EDDSA
       && verifies(key, input, sizeof(input) - 1, sig, len),
       "PEM Ed25519: takes EdDSA and verifies");
    welby_keyset_free(ks);

    ok(fails(load(pem("p256-private.pem", p256, 1), ALL, WELBY_ALG_UNKNOWN,
                  NULL),
             "holds a private key"),
       "PEM: a private key fails the load");
}


static void
test_file_size(void)
{
    char        *text;
    const char  *path;
    size_t       len;

    len = 1024 * 1024 + 1;
    text = malloc(len);
    memset(text, ' ', len);
    path = write_file("big.json", text, len);
    free(text);

    ok(fails(load(path, ALL, WELBY_ALG_UNKNOWN, NULL), "larger than"),
       "a file over 1 MiB fails the load");
}


/* The watcher reads the file itself and parses what it hashed. */

static void
test_parse_buffer(void)
{
    char            *text;
    json_t          *root, *keys;
    size_t           len;
    unsigned char    secret[64];
    welby_keyset_t  *ks;

    keys = json_array();
    json_array_append_new(keys, jwk(p256, "ES256", "b1"));
    root = json_object();
    json_object_set_new(root, "keys", keys);
    text = json_dumps(root, 0);
    json_decref(root);

    err[0] = '\0';
    ks = welby_keyset_parse(text, strlen(text), ALL, WELBY_ALG_UNKNOWN, NULL,
                            err, sizeof(err));
    ok(ks != NULL && welby_keyset_find(ks, S("b1")) != NULL,
       "a JWKS parses from a buffer as from its file");
    welby_keyset_free(ks);
    free(text);

    len = 1024 * 1024 + 1;
    text = calloc(1, len + 1);
    memset(text, ' ', len);
    ok(fails(welby_keyset_parse(text, len, ALL, WELBY_ALG_UNKNOWN, NULL, err,
                                sizeof(err)), "larger than"),
       "a buffer over 1 MiB is refused as its file is");

    RAND_bytes(secret, sizeof(secret));
    ks = welby_keyset_secret_parse(secret, 64, WELBY_ALG_HS512, NULL, err,
                                   sizeof(err));
    ok(ks != NULL && ks->nkeys == 1 && ks->keys[0].secret_len == 64
       && memcmp(ks->keys[0].secret, secret, 64) == 0,
       "an HMAC secret parses from a buffer, byte for byte");
    welby_keyset_free(ks);

    ok(fails(welby_keyset_secret_parse((unsigned char *) text, len,
                                       WELBY_ALG_HS256, NULL, err,
                                       sizeof(err)), "larger than"),
       "a secret over 1 MiB is refused");
    free(text);
}


int
main(void)
{
    int  i;

    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }

    rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
    p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    if (rsa2048 == NULL || rsa1024 == NULL || p256 == NULL || p384 == NULL
        || p521 == NULL || ed25519 == NULL)
    {
        printf("Bail out! key generation failed\n");
        return 2;
    }

    test_algs();
    test_ecdsa_range();
    test_cross();
    test_hmac();
    test_load_errors();
    test_selection();
    test_pem();
    test_file_size();
    test_parse_buffer();

    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(ed25519);

    for (i = 0; i < tmp_n; i++) {
        unlink(tmp_files[i]);
    }

    rmdir(tmp_dir);

    return done_testing();
}
