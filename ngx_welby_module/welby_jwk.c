/*
 * Verification keys and JWS signatures with OpenSSL 3 EVP.  All that a
 * key needs at request time (its algorithm, digest, signature length and
 * group order) is settled when it is loaded, so a request only verifies.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "welby_b64.h"
#include "welby_jwk.h"


/* Bytes of a kid or a member value quoted in an error message. */
#define WELBY_JWK_QUOTE_MAX   64

#define WELBY_JWK_ALGS_RSA    (WELBY_ALG_BIT(WELBY_ALG_RS256)              \
                               | WELBY_ALG_BIT(WELBY_ALG_RS384)            \
                               | WELBY_ALG_BIT(WELBY_ALG_RS512)            \
                               | WELBY_ALG_BIT(WELBY_ALG_PS256)            \
                               | WELBY_ALG_BIT(WELBY_ALG_PS384)            \
                               | WELBY_ALG_BIT(WELBY_ALG_PS512))


typedef enum {
    WELBY_KTY_NONE = 0,
    WELBY_KTY_RSA,
    WELBY_KTY_EC,
    WELBY_KTY_OKP,
    WELBY_KTY_OCT
} welby_kty_e;


typedef struct {
    welby_kty_e           kty;
    const char           *md;           /* NULL: EdDSA hashes itself */
    unsigned              pss;
} welby_jwk_alg_t;


typedef struct {
    welby_kty_e           kty;
    const char           *crv;          /* JWK name, RFC 7518, RFC 8037 */
    const char           *group;        /* OpenSSL name */
    int                   nid;
    size_t                size;         /* bytes of x (and y) */
    welby_alg_e           alg;          /* the one alg the curve takes */
} welby_jwk_curve_t;


static const welby_jwk_alg_t  welby_jwk_algs[WELBY_ALG_COUNT] = {
    [WELBY_ALG_RS256] = { WELBY_KTY_RSA, "SHA256", 0 },
    [WELBY_ALG_RS384] = { WELBY_KTY_RSA, "SHA384", 0 },
    [WELBY_ALG_RS512] = { WELBY_KTY_RSA, "SHA512", 0 },
    [WELBY_ALG_PS256] = { WELBY_KTY_RSA, "SHA256", 1 },
    [WELBY_ALG_PS384] = { WELBY_KTY_RSA, "SHA384", 1 },
    [WELBY_ALG_PS512] = { WELBY_KTY_RSA, "SHA512", 1 },
    [WELBY_ALG_ES256] = { WELBY_KTY_EC, "SHA256", 0 },
    [WELBY_ALG_ES384] = { WELBY_KTY_EC, "SHA384", 0 },
    [WELBY_ALG_ES512] = { WELBY_KTY_EC, "SHA512", 0 },
    [WELBY_ALG_EDDSA] = { WELBY_KTY_OKP, NULL, 0 },
    [WELBY_ALG_HS256] = { WELBY_KTY_OCT, "SHA256", 0 },
    [WELBY_ALG_HS384] = { WELBY_KTY_OCT, "SHA384", 0 },
    [WELBY_ALG_HS512] = { WELBY_KTY_OCT, "SHA512", 0 }
};


static const welby_jwk_curve_t  welby_jwk_curves[] = {
    { WELBY_KTY_EC, "P-256", "prime256v1", NID_X9_62_prime256v1, 32,
      WELBY_ALG_ES256 },
    { WELBY_KTY_EC, "P-384", "secp384r1", NID_secp384r1, 48,
      WELBY_ALG_ES384 },
    { WELBY_KTY_EC, "P-521", "secp521r1", NID_secp521r1, 66,
      WELBY_ALG_ES512 },
    { WELBY_KTY_OKP, "Ed25519", "ED25519", NID_ED25519, 32,
      WELBY_ALG_EDDSA }
};

#define WELBY_JWK_NCURVES                                                    \
    (sizeof(welby_jwk_curves) / sizeof(welby_jwk_curves[0]))


/* Members that only a private or symmetric key has (RFC 7518 section 6). */
static const char  *welby_jwk_private[] = {
    "d", "p", "q", "dp", "dq", "qi", "oth", "k"
};

#define WELBY_JWK_NPRIVATE                                                   \
    (sizeof(welby_jwk_private) / sizeof(welby_jwk_private[0]))


static int welby_jwk_read(const char *path, char **text, size_t *len,
    char *err, size_t err_len);
static welby_keyset_t *welby_jwks_load(const char *text, size_t len,
    unsigned allowed, welby_alg_e default_alg, char *err, size_t err_len);
static int welby_jwk_parse(welby_key_t *key, json_t *jwk, size_t n,
    unsigned allowed, welby_alg_e default_alg, char *err, size_t err_len);
static EVP_PKEY *welby_jwk_rsa(json_t *jwk, const char *prefix, char *err,
    size_t err_len);
static EVP_PKEY *welby_jwk_ec(json_t *jwk, const welby_jwk_curve_t *curve,
    const char *prefix, char *err, size_t err_len);
static EVP_PKEY *welby_jwk_okp(json_t *jwk, const welby_jwk_curve_t *curve,
    const char *prefix, char *err, size_t err_len);
static unsigned char *welby_jwk_member(json_t *jwk, const char *name,
    size_t *len, const char *prefix, char *err, size_t err_len);
static EVP_PKEY *welby_jwk_fromdata(const char *type, OSSL_PARAM_BLD *bld);
static welby_keyset_t *welby_pem_load(const char *text, size_t len,
    unsigned allowed, welby_alg_e default_alg, const char *kid, char *err,
    size_t err_len);
static welby_keyset_t *welby_keyset_new(size_t n);
static int welby_key_init(welby_key_t *key, EVP_PKEY *pkey,
    welby_alg_e alg, const char *kid, size_t kid_len, const char *prefix,
    char *err, size_t err_len);
static int welby_key_check_rsa(EVP_PKEY *pkey, const char *prefix,
    char *err, size_t err_len);
static int welby_key_verify_ctx(welby_key_t *key);
static int welby_key_thumbprint(welby_key_t *key);
static void welby_key_clear(welby_key_t *key);
static const welby_jwk_curve_t *welby_jwk_curve(welby_kty_e kty,
    const char *crv, const char *group, welby_alg_e alg);
static const char *welby_kty_name(welby_kty_e kty);
static int welby_verify_evp(const welby_key_t *key,
    const unsigned char *input, size_t input_len, const unsigned char *sig,
    size_t sig_len);
static int welby_verify_ecdsa(const welby_key_t *key,
    const unsigned char *input, size_t input_len, const unsigned char *sig,
    size_t sig_len);
static int welby_verify_hmac(const welby_key_t *key,
    const unsigned char *input, size_t input_len, const unsigned char *sig,
    size_t sig_len);
static const char *welby_jwk_quote(char *dst, const char *s, size_t len);
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static void welby_jwk_error(char *err, size_t err_len, const char *prefix,
    const char *fmt, ...);


welby_keyset_t *
welby_keyset_load(const char *path, unsigned allowed,
    welby_alg_e default_alg, const char *kid, char *err, size_t err_len)
{
    char            *text;
    size_t           len;
    welby_keyset_t  *ks;

    if (welby_jwk_read(path, &text, &len, err, err_len) != 0) {
        return NULL;
    }

    ks = welby_keyset_parse(text, len, allowed, default_alg, kid, err,
                            err_len);

    free(text);

    return ks;
}


welby_keyset_t *
welby_keyset_parse(const char *text, size_t len, unsigned allowed,
    welby_alg_e default_alg, const char *kid, char *err, size_t err_len)
{
    welby_keyset_t  *ks;

    if (len > WELBY_JWK_FILE_MAX) {
        welby_jwk_error(err, err_len, "", "larger than %d bytes",
                        WELBY_JWK_FILE_MAX);
        return NULL;
    }

    if (len >= 10 && memcmp(text, "-----BEGIN", 10) == 0) {
        ks = welby_pem_load(text, len, allowed, default_alg, kid, err,
                            err_len);

    } else {
        ks = welby_jwks_load(text, len, allowed, default_alg, err, err_len);
    }

    /*
     * Failed parses leave errors in the thread's OpenSSL queue, which
     * nginx would later report against an unrelated TLS connection.
     */
    ERR_clear_error();

    return ks;
}


welby_keyset_t *
welby_keyset_secret(const char *path, welby_alg_e alg, const char *kid,
    char *err, size_t err_len)
{
    char            *text;
    size_t           len;
    welby_keyset_t  *ks;

    if (welby_jwk_read(path, &text, &len, err, err_len) != 0) {
        return NULL;
    }

    ks = welby_keyset_secret_parse((unsigned char *) text, len, alg, kid,
                                   err, err_len);

    OPENSSL_cleanse(text, len);
    free(text);

    return ks;
}


welby_keyset_t *
welby_keyset_secret_parse(const unsigned char *text, size_t len,
    welby_alg_e alg, const char *kid, char *err, size_t err_len)
{
    int              md_size;
    welby_key_t     *key;
    welby_keyset_t  *ks;

    if ((unsigned) alg >= WELBY_ALG_COUNT
        || welby_jwk_algs[alg].kty != WELBY_KTY_OCT)
    {
        welby_jwk_error(err, err_len, "", "alg \"%s\" is not an HMAC "
                        "algorithm", alg == WELBY_ALG_UNKNOWN
                                     || (unsigned) alg >= WELBY_ALG_COUNT
                                     ? "none" : welby_alg_name(alg));
        return NULL;
    }

    if (len > WELBY_JWK_FILE_MAX) {
        welby_jwk_error(err, err_len, "", "larger than %d bytes",
                        WELBY_JWK_FILE_MAX);
        return NULL;
    }

    ks = welby_keyset_new(1);
    if (ks == NULL) {
        welby_jwk_error(err, err_len, "", "out of memory");
        goto failed;
    }

    key = &ks->keys[0];
    ks->nkeys = 1;

    key->alg = alg;
    key->md = EVP_MD_fetch(NULL, welby_jwk_algs[alg].md, NULL);

    if (key->md == NULL) {
        welby_jwk_error(err, err_len, "", "OpenSSL has no %s",
                        welby_jwk_algs[alg].md);
        goto failed;
    }

    md_size = EVP_MD_get_size(key->md);

    /* RFC 7518 section 3.2: a shorter key weakens the MAC */
    if (md_size <= 0 || len < (size_t) md_size) {
        welby_jwk_error(err, err_len, "", "secret of %zu bytes, %s needs at "
                        "least %d", len, welby_alg_name(alg), md_size);
        goto failed;
    }

    key->sig_len = (size_t) md_size;

    key->secret = malloc(len);
    if (key->secret == NULL) {
        welby_jwk_error(err, err_len, "", "out of memory");
        goto failed;
    }

    memcpy(key->secret, text, len);
    key->secret_len = len;

    if (kid != NULL) {
        key->kid_len = strlen(kid);
        key->kid = malloc(key->kid_len + 1);

        if (key->kid == NULL) {
            welby_jwk_error(err, err_len, "", "out of memory");
            goto failed;
        }

        memcpy(key->kid, kid, key->kid_len + 1);
    }

    if (welby_key_thumbprint(key) != 0) {
        welby_jwk_error(err, err_len, "", "cannot hash the secret");
        goto failed;
    }

    ERR_clear_error();

    return ks;

failed:

    welby_keyset_free(ks);
    ERR_clear_error();

    return NULL;
}


void
welby_keyset_free(welby_keyset_t *ks)
{
    size_t  i;

    if (ks == NULL) {
        return;
    }

    for (i = 0; i < ks->nkeys; i++) {
        welby_key_clear(&ks->keys[i]);
    }

    free(ks->keys);
    free(ks);
}


const welby_key_t *
welby_keyset_find(const welby_keyset_t *ks, const unsigned char *kid,
    size_t kid_len)
{
    size_t              i;
    const welby_key_t  *key;

    if (ks == NULL) {
        return NULL;
    }

    if (kid == NULL) {
        return ks->nkeys == 1 ? &ks->keys[0] : NULL;
    }

    for (i = 0; i < ks->nkeys; i++) {
        key = &ks->keys[i];

        if (key->kid != NULL && key->kid_len == kid_len
            && memcmp(key->kid, kid, kid_len) == 0)
        {
            return key;
        }
    }

    return NULL;
}


welby_reason_e
welby_jws_verify(const welby_key_t *key, const unsigned char *input,
    size_t input_len, const unsigned char *sig, size_t sig_len)
{
    int  ok;

    if (key == NULL || (unsigned) key->alg >= WELBY_ALG_COUNT
        || key->sig_len == 0 || sig_len != key->sig_len)
    {
        return WELBY_REASON_TOKEN_SIGNATURE;
    }

    switch (welby_jwk_algs[key->alg].kty) {

    case WELBY_KTY_RSA:
    case WELBY_KTY_OKP:
        ok = welby_verify_evp(key, input, input_len, sig, sig_len);
        break;

    case WELBY_KTY_EC:
        ok = welby_verify_ecdsa(key, input, input_len, sig, sig_len);
        break;

    case WELBY_KTY_OCT:
        ok = welby_verify_hmac(key, input, input_len, sig, sig_len);
        break;

    default:
        ok = 0;
    }

    if (!ok) {
        /* a bad signature is routine; keep it out of nginx's TLS errors */
        ERR_clear_error();
        return WELBY_REASON_TOKEN_SIGNATURE;
    }

    return WELBY_REASON_NONE;
}


static int
welby_jwk_read(const char *path, char **text, size_t *len, char *err,
    size_t err_len)
{
    int      rc;
    FILE    *f;
    char    *buf;
    size_t   n;

    f = fopen(path, "rb");
    if (f == NULL) {
        welby_jwk_error(err, err_len, "", "cannot open: %s", strerror(errno));
        return -1;
    }

    /* one byte more than the limit tells a full file from a cut one */
    buf = malloc(WELBY_JWK_FILE_MAX + 2);
    if (buf == NULL) {
        fclose(f);
        welby_jwk_error(err, err_len, "", "out of memory");
        return -1;
    }

    n = fread(buf, 1, WELBY_JWK_FILE_MAX + 1, f);
    rc = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);

    if (rc != 0) {
        free(buf);
        welby_jwk_error(err, err_len, "", "cannot read: %s", strerror(rc));
        return -1;
    }

    if (n > WELBY_JWK_FILE_MAX) {
        free(buf);
        welby_jwk_error(err, err_len, "", "larger than %d bytes",
                        WELBY_JWK_FILE_MAX);
        return -1;
    }

    buf[n] = '\0';

    *text = buf;
    *len = n;

    return 0;
}


static welby_keyset_t *
welby_jwks_load(const char *text, size_t len, unsigned allowed,
    welby_alg_e default_alg, char *err, size_t err_len)
{
    int              rc;
    char             name[WELBY_JWK_QUOTE_MAX + 8];
    json_t          *root, *keys;
    size_t           i, j, n;
    welby_key_t     *key, *prev;
    json_error_t     jerr;
    welby_keyset_t  *ks;

    ks = NULL;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        welby_jwk_error(err, err_len, "", "invalid JSON at line %d: %s",
                        jerr.line, jerr.text);
        return NULL;
    }

    keys = json_object_get(root, "keys");
    if (!json_is_object(root) || !json_is_array(keys)) {
        welby_jwk_error(err, err_len, "", "not a JWKS: no \"keys\" array");
        goto failed;
    }

    n = json_array_size(keys);

    ks = welby_keyset_new(n);
    if (ks == NULL) {
        welby_jwk_error(err, err_len, "", "out of memory");
        goto failed;
    }

    for (i = 0; i < n; i++) {
        key = &ks->keys[ks->nkeys];

        rc = welby_jwk_parse(key, json_array_get(keys, i), i + 1, allowed,
                             default_alg, err, err_len);

        if (rc == 0) {
            continue;
        }

        if (rc < 0) {
            welby_key_clear(key);
            goto failed;
        }

        /*
         * welby_keyset_find() picks by kid alone, or takes the only key:
         * two keys it cannot tell apart make the choice arbitrary.
         */

        for (j = 0; j < ks->nkeys; j++) {
            prev = &ks->keys[j];

            if (prev->kid == NULL && key->kid == NULL) {
                welby_jwk_error(err, err_len, "", "key %zu: a second key "
                                "without \"kid\"", i + 1);
                welby_key_clear(key);
                goto failed;
            }

            if (prev->kid != NULL && key->kid != NULL
                && prev->kid_len == key->kid_len
                && memcmp(prev->kid, key->kid, key->kid_len) == 0)
            {
                welby_jwk_error(err, err_len, "", "key %zu: duplicate kid "
                                "\"%s\"", i + 1,
                                welby_jwk_quote(name, key->kid,
                                                key->kid_len));
                welby_key_clear(key);
                goto failed;
            }
        }

        ks->nkeys++;
    }

    if (ks->nkeys == 0) {
        welby_jwk_error(err, err_len, "", "no usable signing key");
        goto failed;
    }

    json_decref(root);

    return ks;

failed:

    welby_keyset_free(ks);
    json_decref(root);

    return NULL;
}


/* Returns 1 when key is loaded, 0 when the JWK is skipped, -1 on error. */

static int
welby_jwk_parse(welby_key_t *key, json_t *jwk, size_t n, unsigned allowed,
    welby_alg_e default_alg, char *err, size_t err_len)
{
    char                      prefix[WELBY_JWK_QUOTE_MAX + 64];
    char                      name[WELBY_JWK_QUOTE_MAX + 8];
    json_t                   *kid, *use, *kty, *crv, *alg;
    size_t                    i;
    EVP_PKEY                 *pkey;
    welby_kty_e               type;
    welby_alg_e               a;
    const welby_jwk_curve_t  *curve;

    snprintf(prefix, sizeof(prefix), "key %zu: ", n);

    if (!json_is_object(jwk)) {
        welby_jwk_error(err, err_len, prefix, "not a JSON object");
        return -1;
    }

    kid = json_object_get(jwk, "kid");

    if (kid != NULL) {
        if (!json_is_string(kid)) {
            welby_jwk_error(err, err_len, prefix, "\"kid\" is not a string");
            return -1;
        }

        snprintf(prefix, sizeof(prefix), "key %zu (kid \"%s\"): ", n,
                 welby_jwk_quote(name, json_string_value(kid),
                                 json_string_length(kid)));
    }

    use = json_object_get(jwk, "use");

    if (use != NULL) {
        if (!json_is_string(use)) {
            welby_jwk_error(err, err_len, prefix, "\"use\" is not a string");
            return -1;
        }

        /* an encryption key published next to the signing keys */
        if (strcmp(json_string_value(use), "sig") != 0) {
            return 0;
        }
    }

    kty = json_object_get(jwk, "kty");

    if (!json_is_string(kty)) {
        welby_jwk_error(err, err_len, prefix,
                        "\"kty\" is missing or not a string");
        return -1;
    }

    if (strcmp(json_string_value(kty), "RSA") == 0) {
        type = WELBY_KTY_RSA;

    } else if (strcmp(json_string_value(kty), "EC") == 0) {
        type = WELBY_KTY_EC;

    } else if (strcmp(json_string_value(kty), "OKP") == 0) {
        type = WELBY_KTY_OKP;

    } else if (strcmp(json_string_value(kty), "oct") == 0) {
        /*
         * A published key that verifies HS* tokens also forges them;
         * a shared secret belongs in a file of its own.
         */
        welby_jwk_error(err, err_len, prefix, "kty \"oct\" is not accepted "
                        "in a JWKS file; configure secret=");
        return -1;

    } else {
        welby_jwk_error(err, err_len, prefix, "unknown kty \"%s\"",
                        welby_jwk_quote(name, json_string_value(kty),
                                        json_string_length(kty)));
        return -1;
    }

    /* a private key in a file that is meant to be public is a leak */
    for (i = 0; i < WELBY_JWK_NPRIVATE; i++) {
        if (json_object_get(jwk, welby_jwk_private[i]) != NULL) {
            welby_jwk_error(err, err_len, prefix, "holds private key member "
                            "\"%s\"", welby_jwk_private[i]);
            return -1;
        }
    }

    curve = NULL;

    if (type == WELBY_KTY_EC || type == WELBY_KTY_OKP) {
        crv = json_object_get(jwk, "crv");

        if (!json_is_string(crv)) {
            welby_jwk_error(err, err_len, prefix,
                            "\"crv\" is missing or not a string");
            return -1;
        }

        curve = welby_jwk_curve(type, json_string_value(crv), NULL,
                                WELBY_ALG_UNKNOWN);

        if (curve == NULL) {
            welby_jwk_error(err, err_len, prefix, "unknown crv \"%s\"",
                            welby_jwk_quote(name, json_string_value(crv),
                                            json_string_length(crv)));
            return -1;
        }
    }

    alg = json_object_get(jwk, "alg");

    if (alg != NULL) {
        if (!json_is_string(alg)) {
            welby_jwk_error(err, err_len, prefix, "\"alg\" is not a string");
            return -1;
        }

        a = welby_alg_find((const unsigned char *) json_string_value(alg),
                           json_string_length(alg));

        if (a == WELBY_ALG_UNKNOWN) {
            welby_jwk_error(err, err_len, prefix, "unknown alg \"%s\"",
                            welby_jwk_quote(name, json_string_value(alg),
                                            json_string_length(alg)));
            return -1;
        }

        if (welby_jwk_algs[a].kty != type) {
            welby_jwk_error(err, err_len, prefix, "alg \"%s\" does not match "
                            "kty \"%s\"", welby_alg_name(a),
                            welby_kty_name(type));
            return -1;
        }

        if (curve != NULL && curve->alg != a) {
            welby_jwk_error(err, err_len, prefix, "alg \"%s\" does not match "
                            "crv \"%s\"", welby_alg_name(a), curve->crv);
            return -1;
        }

    } else if (curve != NULL) {
        a = curve->alg;

    } else if (default_alg != WELBY_ALG_UNKNOWN
               && (unsigned) default_alg < WELBY_ALG_COUNT
               && welby_jwk_algs[default_alg].kty == WELBY_KTY_RSA)
    {
        a = default_alg;

    } else {
        /* the issuer takes no RSA algorithm: the key could never verify */
        if ((allowed & WELBY_JWK_ALGS_RSA) == 0) {
            return 0;
        }

        welby_jwk_error(err, err_len, prefix, "kty \"RSA\" without \"alg\", "
                        "and no default RSA algorithm");
        return -1;
    }

    if ((allowed & WELBY_ALG_BIT(a)) == 0) {
        return 0;
    }

    switch (type) {

    case WELBY_KTY_RSA:
        pkey = welby_jwk_rsa(jwk, prefix, err, err_len);
        break;

    case WELBY_KTY_EC:
        pkey = welby_jwk_ec(jwk, curve, prefix, err, err_len);
        break;

    default: /* WELBY_KTY_OKP */
        pkey = welby_jwk_okp(jwk, curve, prefix, err, err_len);
        break;
    }

    if (pkey == NULL) {
        return -1;
    }

    if (welby_key_init(key, pkey, a, kid ? json_string_value(kid) : NULL,
                       kid ? json_string_length(kid) : 0, prefix, err,
                       err_len)
        != 0)
    {
        return -1;
    }

    return 1;
}


static EVP_PKEY *
welby_jwk_rsa(json_t *jwk, const char *prefix, char *err, size_t err_len)
{
    size_t           n_len, e_len;
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    unsigned char   *n_bytes, *e_bytes;
    OSSL_PARAM_BLD  *bld;

    pkey = NULL;
    n = NULL;
    e = NULL;
    bld = NULL;
    e_bytes = NULL;

    n_bytes = welby_jwk_member(jwk, "n", &n_len, prefix, err, err_len);
    if (n_bytes == NULL) {
        return NULL;
    }

    e_bytes = welby_jwk_member(jwk, "e", &e_len, prefix, err, err_len);
    if (e_bytes == NULL) {
        goto done;
    }

    n = BN_bin2bn(n_bytes, (int) n_len, NULL);
    e = BN_bin2bn(e_bytes, (int) e_len, NULL);
    bld = OSSL_PARAM_BLD_new();

    if (n == NULL || e == NULL || bld == NULL
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
    {
        welby_jwk_error(err, err_len, prefix, "out of memory");
        goto done;
    }

    pkey = welby_jwk_fromdata("RSA", bld);
    if (pkey == NULL) {
        welby_jwk_error(err, err_len, prefix, "\"n\" and \"e\" are not an "
                        "RSA public key");
    }

done:

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(n_bytes);
    free(e_bytes);

    return pkey;
}


static EVP_PKEY *
welby_jwk_ec(json_t *jwk, const welby_jwk_curve_t *curve, const char *prefix,
    char *err, size_t err_len)
{
    size_t           x_len, y_len;
    EVP_PKEY        *pkey;
    unsigned char   *x, *y, point[1 + 2 * 66];
    OSSL_PARAM_BLD  *bld;

    pkey = NULL;
    y = NULL;
    bld = NULL;

    x = welby_jwk_member(jwk, "x", &x_len, prefix, err, err_len);
    if (x == NULL) {
        return NULL;
    }

    y = welby_jwk_member(jwk, "y", &y_len, prefix, err, err_len);
    if (y == NULL) {
        goto done;
    }

    /*
     * RFC 7518 section 6.2.1.2: the coordinates are exactly the field
     * size, so one key has exactly one JWK.
     */

    if (x_len != curve->size || y_len != curve->size) {
        welby_jwk_error(err, err_len, prefix, "\"%s\" is %zu bytes, crv "
                        "\"%s\" needs %zu", x_len != curve->size ? "x" : "y",
                        x_len != curve->size ? x_len : y_len, curve->crv,
                        curve->size);
        goto done;
    }

    point[0] = 0x04;
    memcpy(point + 1, x, x_len);
    memcpy(point + 1 + x_len, y, y_len);

    bld = OSSL_PARAM_BLD_new();

    if (bld == NULL
        || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            curve->group, 0)
        || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                             point, 1 + x_len + y_len))
    {
        welby_jwk_error(err, err_len, prefix, "out of memory");
        goto done;
    }

    pkey = welby_jwk_fromdata("EC", bld);
    if (pkey == NULL) {
        welby_jwk_error(err, err_len, prefix, "\"x\" and \"y\" are not a "
                        "point on %s", curve->crv);
    }

done:

    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);

    return pkey;
}


static EVP_PKEY *
welby_jwk_okp(json_t *jwk, const welby_jwk_curve_t *curve,
    const char *prefix, char *err, size_t err_len)
{
    size_t          x_len;
    EVP_PKEY       *pkey;
    unsigned char  *x;

    x = welby_jwk_member(jwk, "x", &x_len, prefix, err, err_len);
    if (x == NULL) {
        return NULL;
    }

    pkey = NULL;

    if (x_len != curve->size) {
        welby_jwk_error(err, err_len, prefix, "\"x\" is %zu bytes, crv "
                        "\"%s\" needs %zu", x_len, curve->crv, curve->size);

    } else {
        pkey = EVP_PKEY_new_raw_public_key(curve->nid, NULL, x, x_len);

        if (pkey == NULL) {
            welby_jwk_error(err, err_len, prefix, "\"x\" is not an %s "
                            "public key", curve->crv);
        }
    }

    free(x);

    return pkey;
}


/* A decoded, non-empty base64url member, or NULL with err set. */

static unsigned char *
welby_jwk_member(json_t *jwk, const char *name, size_t *len,
    const char *prefix, char *err, size_t err_len)
{
    json_t         *v;
    size_t          slen;
    unsigned char  *buf;

    v = json_object_get(jwk, name);

    if (!json_is_string(v)) {
        welby_jwk_error(err, err_len, prefix, "\"%s\" is missing or not a "
                        "string", name);
        return NULL;
    }

    slen = json_string_length(v);

    buf = malloc(welby_b64url_decoded_max(slen) + 1);
    if (buf == NULL) {
        welby_jwk_error(err, err_len, prefix, "out of memory");
        return NULL;
    }

    if (welby_b64url_decode(buf, len,
                            (const unsigned char *) json_string_value(v),
                            slen)
        != 0)
    {
        welby_jwk_error(err, err_len, prefix, "\"%s\" is not base64url",
                        name);
        free(buf);
        return NULL;
    }

    if (*len == 0) {
        welby_jwk_error(err, err_len, prefix, "\"%s\" is empty", name);
        free(buf);
        return NULL;
    }

    return buf;
}


static EVP_PKEY *
welby_jwk_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx;

    pkey = NULL;

    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    return pkey;
}


static welby_keyset_t *
welby_pem_load(const char *text, size_t len, unsigned allowed,
    welby_alg_e default_alg, const char *kid, char *err, size_t err_len)
{
    BIO                      *bio;
    char                      group[32];
    size_t                    group_len;
    EVP_PKEY                 *pkey;
    welby_kty_e               type;
    welby_alg_e               alg;
    welby_keyset_t           *ks;
    const welby_jwk_curve_t  *curve;

    if (strstr(text, "PRIVATE KEY-----") != NULL) {
        welby_jwk_error(err, err_len, "", "holds a private key; configure "
                        "the public key only");
        return NULL;
    }

    bio = BIO_new_mem_buf(text, (int) len);
    if (bio == NULL) {
        welby_jwk_error(err, err_len, "", "out of memory");
        return NULL;
    }

    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);

    if (pkey == NULL) {
        welby_jwk_error(err, err_len, "", "no PEM public key "
                        "(\"BEGIN PUBLIC KEY\")");
        return NULL;
    }

    curve = NULL;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        type = WELBY_KTY_RSA;

    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        type = WELBY_KTY_EC;

        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), &group_len)
            == 1)
        {
            curve = welby_jwk_curve(type, NULL, group, WELBY_ALG_UNKNOWN);
        }

        if (curve == NULL) {
            welby_jwk_error(err, err_len, "", "EC key on an unsupported "
                            "curve; P-256, P-384 and P-521 are");
            goto failed;
        }

    } else if (EVP_PKEY_is_a(pkey, "ED25519")) {
        type = WELBY_KTY_OKP;
        curve = welby_jwk_curve(type, "Ed25519", NULL, WELBY_ALG_UNKNOWN);

    } else {
        welby_jwk_error(err, err_len, "", "unsupported key type \"%s\"",
                        EVP_PKEY_get0_type_name(pkey)
                        ? EVP_PKEY_get0_type_name(pkey) : "?");
        goto failed;
    }

    alg = default_alg;

    if ((unsigned) alg >= WELBY_ALG_COUNT) {
        alg = WELBY_ALG_UNKNOWN;
    }

    if (alg == WELBY_ALG_UNKNOWN) {
        if (curve == NULL) {
            welby_jwk_error(err, err_len, "", "an RSA key needs an alg");
            goto failed;
        }

        alg = curve->alg;

    } else if (welby_jwk_algs[alg].kty != type) {
        welby_jwk_error(err, err_len, "", "alg \"%s\" does not match kty "
                        "\"%s\"", welby_alg_name(alg), welby_kty_name(type));
        goto failed;

    } else if (curve != NULL && curve->alg != alg) {
        welby_jwk_error(err, err_len, "", "alg \"%s\" does not match crv "
                        "\"%s\"", welby_alg_name(alg), curve->crv);
        goto failed;
    }

    if ((allowed & WELBY_ALG_BIT(alg)) == 0) {
        welby_jwk_error(err, err_len, "", "alg \"%s\" is not allowed",
                        welby_alg_name(alg));
        goto failed;
    }

    ks = welby_keyset_new(1);
    if (ks == NULL) {
        welby_jwk_error(err, err_len, "", "out of memory");
        goto failed;
    }

    ks->nkeys = 1;

    if (welby_key_init(&ks->keys[0], pkey, alg, kid,
                       kid ? strlen(kid) : 0, "", err, err_len)
        != 0)
    {
        welby_keyset_free(ks);
        return NULL;
    }

    return ks;

failed:

    EVP_PKEY_free(pkey);

    return NULL;
}


static welby_keyset_t *
welby_keyset_new(size_t n)
{
    welby_keyset_t  *ks;

    ks = calloc(1, sizeof(welby_keyset_t));
    if (ks == NULL) {
        return NULL;
    }

    ks->keys = calloc(n ? n : 1, sizeof(welby_key_t));
    if (ks->keys == NULL) {
        free(ks);
        return NULL;
    }

    return ks;
}


/*
 * Takes pkey, which key owns from here on even on failure, and checks
 * what the parsers cannot: the RSA size and exponent, the EC point.
 */

static int
welby_key_init(welby_key_t *key, EVP_PKEY *pkey, welby_alg_e alg,
    const char *kid, size_t kid_len, const char *prefix, char *err,
    size_t err_len)
{
    int                       size;
    EC_GROUP                 *group;
    EVP_PKEY_CTX             *ctx;
    const welby_jwk_alg_t    *a;
    const welby_jwk_curve_t  *curve;

    a = &welby_jwk_algs[alg];

    key->alg = alg;
    key->pkey = pkey;

    if (kid != NULL) {
        key->kid = malloc(kid_len + 1);
        if (key->kid == NULL) {
            welby_jwk_error(err, err_len, prefix, "out of memory");
            return -1;
        }

        memcpy(key->kid, kid, kid_len);
        key->kid[kid_len] = '\0';
        key->kid_len = kid_len;
    }

    switch (a->kty) {

    case WELBY_KTY_RSA:
        if (welby_key_check_rsa(pkey, prefix, err, err_len) != 0) {
            return -1;
        }

        size = EVP_PKEY_get_size(pkey);
        if (size <= 0) {
            welby_jwk_error(err, err_len, prefix, "RSA key of no size");
            return -1;
        }

        key->sig_len = (size_t) size;
        break;

    case WELBY_KTY_EC:
        curve = welby_jwk_curve(WELBY_KTY_EC, NULL, NULL, alg);

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        size = ctx ? EVP_PKEY_public_check(ctx) : 0;
        EVP_PKEY_CTX_free(ctx);

        if (size != 1) {
            welby_jwk_error(err, err_len, prefix, "the public key is not a "
                            "point on %s", curve->crv);
            return -1;
        }

        /*
         * The order bounds r and s at request time; a public EC key does
         * not export it in every OpenSSL 3 release, the curve always does.
         */

        group = EC_GROUP_new_by_curve_name(curve->nid);
        if (group != NULL) {
            key->order = BN_dup(EC_GROUP_get0_order(group));
            EC_GROUP_free(group);
        }

        if (key->order == NULL) {
            welby_jwk_error(err, err_len, prefix, "no order for %s",
                            curve->crv);
            return -1;
        }

        key->sig_len = 2 * curve->size;
        break;

    default: /* WELBY_KTY_OKP */
        key->sig_len = 64;
        break;
    }

    if (a->md != NULL) {
        key->md = EVP_MD_fetch(NULL, a->md, NULL);

        if (key->md == NULL) {
            welby_jwk_error(err, err_len, prefix, "OpenSSL has no %s",
                            a->md);
            return -1;
        }
    }

    if (a->kty != WELBY_KTY_OKP && welby_key_verify_ctx(key) != 0) {
        welby_jwk_error(err, err_len, prefix, "OpenSSL cannot verify %s",
                        a->md);
        return -1;
    }

    if (welby_key_thumbprint(key) != 0) {
        welby_jwk_error(err, err_len, prefix, "cannot encode the key");
        return -1;
    }

    return 0;
}


static int
welby_key_verify_ctx(welby_key_t *key)
{
    int                     ok;
    EVP_PKEY_CTX           *ctx;
    const welby_jwk_alg_t  *a;

    a = &welby_jwk_algs[key->alg];

    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
    if (ctx == NULL) {
        return -1;
    }

    ok = EVP_PKEY_verify_init(ctx) == 1;

    if (ok && a->kty == WELBY_KTY_RSA) {
        if (a->pss) {
            /* RFC 7518 section 3.5: MGF1 with the same hash, salt its size */
            ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0
                 && EVP_PKEY_CTX_set_signature_md(ctx, key->md) > 0
                 && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx,
                                                     RSA_PSS_SALTLEN_DIGEST)
                    > 0
                 && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, key->md) > 0;

        } else {
            /* the DigestInfo must name this hash */
            ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0
                 && EVP_PKEY_CTX_set_signature_md(ctx, key->md) > 0;
        }

    } else if (ok) {
        ok = EVP_PKEY_CTX_set_signature_md(ctx, key->md) > 0;
    }

    if (!ok) {
        EVP_PKEY_CTX_free(ctx);
        return -1;
    }

    key->verify_ctx = ctx;

    return 0;
}


static int
welby_key_check_rsa(EVP_PKEY *pkey, const char *prefix, char *err,
    size_t err_len)
{
    int      rc, bits;
    BIGNUM  *n, *e;

    bits = EVP_PKEY_get_bits(pkey);

    if (bits < WELBY_RSA_MIN_BITS) {
        welby_jwk_error(err, err_len, prefix, "RSA key of %d bits, at least "
                        "%d required", bits, WELBY_RSA_MIN_BITS);
        return -1;
    }

    /* OpenSSL refuses to verify with a larger modulus */
    if (bits > OPENSSL_RSA_MAX_MODULUS_BITS) {
        welby_jwk_error(err, err_len, prefix, "RSA key of %d bits, at most "
                        "%d supported", bits, OPENSSL_RSA_MAX_MODULUS_BITS);
        return -1;
    }

    n = NULL;
    e = NULL;
    rc = -1;

    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1
        || EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
    {
        welby_jwk_error(err, err_len, prefix, "cannot read the RSA key");
        goto done;
    }

    /* an even n or e, or e = 1, is a corrupt key that verifies nonsense */

    if (!BN_is_odd(n)) {
        welby_jwk_error(err, err_len, prefix, "RSA modulus is even");
        goto done;
    }

    if (!BN_is_odd(e) || BN_is_one(e)) {
        welby_jwk_error(err, err_len, prefix, "RSA exponent must be odd and "
                        "greater than 1");
        goto done;
    }

    rc = 0;

done:

    BN_free(n);
    BN_free(e);

    return rc;
}


static int
welby_key_thumbprint(welby_key_t *key)
{
    int                   rc, der_len;
    size_t                len;
    const char           *name;
    EVP_MD_CTX           *ctx;
    unsigned char        *der;
    const unsigned char  *data;

    der = NULL;

    if (key->pkey != NULL) {
        der_len = i2d_PUBKEY(key->pkey, &der);
        if (der_len <= 0) {
            return -1;
        }

        data = der;
        len = (size_t) der_len;

    } else {
        data = key->secret;
        len = key->secret_len;
    }

    name = welby_alg_name(key->alg);

    ctx = EVP_MD_CTX_new();

    rc = (ctx != NULL
          && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1
          && EVP_DigestUpdate(ctx, name, strlen(name) + 1) == 1
          && EVP_DigestUpdate(ctx, key->kid ? key->kid : "",
                              key->kid_len) == 1
          && EVP_DigestUpdate(ctx, "", 1) == 1
          && EVP_DigestUpdate(ctx, data, len) == 1
          && EVP_DigestFinal_ex(ctx, key->thumbprint, NULL) == 1)
         ? 0 : -1;

    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);

    return rc;
}


static void
welby_key_clear(welby_key_t *key)
{
    free(key->kid);
    EVP_PKEY_free(key->pkey);

    /* fetched, so reference counted; the const is for the callers */
    EVP_MD_free((EVP_MD *) key->md);

    BN_free(key->order);
    EVP_PKEY_CTX_free(key->verify_ctx);

    if (key->secret != NULL) {
        OPENSSL_cleanse(key->secret, key->secret_len);
        free(key->secret);
    }

    memset(key, 0, sizeof(welby_key_t));
}


/* The curve by JWK name, OpenSSL group name, or alg: whichever is given. */

static const welby_jwk_curve_t *
welby_jwk_curve(welby_kty_e kty, const char *crv, const char *group,
    welby_alg_e alg)
{
    size_t                    i;
    const welby_jwk_curve_t  *c;

    for (i = 0; i < WELBY_JWK_NCURVES; i++) {
        c = &welby_jwk_curves[i];

        if (c->kty == kty
            && (crv == NULL || strcmp(c->crv, crv) == 0)
            && (group == NULL || strcmp(c->group, group) == 0)
            && (alg == WELBY_ALG_UNKNOWN || c->alg == alg))
        {
            return c;
        }
    }

    return NULL;
}


static const char *
welby_kty_name(welby_kty_e kty)
{
    switch (kty) {
    case WELBY_KTY_RSA:
        return "RSA";
    case WELBY_KTY_EC:
        return "EC";
    case WELBY_KTY_OKP:
        return "OKP";
    case WELBY_KTY_OCT:
        return "oct";
    default:
        return "?";
    }
}


/*
 * RSA PKCS #1 v1.5, RSA-PSS and ECDSA (once in DER): the input is hashed,
 * and the hash verified with the key's prepared context.  Ed25519 signs
 * the message itself, in one shot.
 */

static int
welby_verify_evp(const welby_key_t *key, const unsigned char *input,
    size_t input_len, const unsigned char *sig, size_t sig_len)
{
    int            ok;
    EVP_MD_CTX    *mctx;
    unsigned int   md_len;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (key->verify_ctx != NULL) {

        if (EVP_Digest(input, input_len, md, &md_len, key->md, NULL) != 1) {
            return 0;
        }

        return EVP_PKEY_verify(key->verify_ctx, sig, sig_len, md, md_len)
               == 1;
    }

    mctx = EVP_MD_CTX_new();
    if (mctx == NULL) {
        return 0;
    }

    ok = EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, key->pkey) == 1
         && EVP_DigestVerify(mctx, sig, sig_len, input, input_len) == 1;

    EVP_MD_CTX_free(mctx);

    return ok;
}


static int
welby_verify_ecdsa(const welby_key_t *key, const unsigned char *input,
    size_t input_len, const unsigned char *sig, size_t sig_len)
{
    int             ok, der_len;
    size_t          half;
    BIGNUM         *r, *s;
    ECDSA_SIG      *es;
    const BIGNUM   *order;
    unsigned char  *der;

    ok = 0;
    es = NULL;
    der = NULL;
    order = key->order;
    half = sig_len / 2;

    r = BN_bin2bn(sig, (int) half, NULL);
    s = BN_bin2bn(sig + half, (int) half, NULL);

    if (r == NULL || s == NULL || order == NULL) {
        goto done;
    }

    /*
     * Out of range r or s must fail here, not in the library:
     * CVE-2022-21449 accepted r = s = 0 for any message.
     */

    if (BN_is_zero(r) || BN_is_zero(s)
        || BN_cmp(r, order) >= 0 || BN_cmp(s, order) >= 0)
    {
        goto done;
    }

    es = ECDSA_SIG_new();
    if (es == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        goto done;
    }

    r = NULL;
    s = NULL;

    der_len = i2d_ECDSA_SIG(es, &der);
    if (der_len <= 0) {
        goto done;
    }

    ok = welby_verify_evp(key, input, input_len, der, (size_t) der_len);

done:

    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);

    return ok;
}


static int
welby_verify_hmac(const welby_key_t *key, const unsigned char *input,
    size_t input_len, const unsigned char *sig, size_t sig_len)
{
    size_t         mac_len;
    unsigned char  mac[EVP_MAX_MD_SIZE];

    if (EVP_Q_mac(NULL, "HMAC", NULL, welby_jwk_algs[key->alg].md, NULL,
                  key->secret, key->secret_len, input, input_len, mac,
                  sizeof(mac), &mac_len)
        == NULL)
    {
        return 0;
    }

    return mac_len == sig_len && CRYPTO_memcmp(mac, sig, sig_len) == 0;
}


/*
 * A kid or member value fit for one log line: at most
 * WELBY_JWK_QUOTE_MAX bytes, anything but printable ASCII (and '"',
 * '\') as '?'.  dst holds WELBY_JWK_QUOTE_MAX + 4 bytes.
 */

static const char *
welby_jwk_quote(char *dst, const char *s, size_t len)
{
    size_t         i, n;
    unsigned char  c;

    n = len > WELBY_JWK_QUOTE_MAX ? WELBY_JWK_QUOTE_MAX : len;

    for (i = 0; i < n; i++) {
        c = (unsigned char) s[i];
        dst[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
    }

    if (n < len) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }

    dst[n] = '\0';

    return dst;
}


static void
welby_jwk_error(char *err, size_t err_len, const char *prefix,
    const char *fmt, ...)
{
    size_t   n;
    va_list  args;

    if (err == NULL || err_len == 0) {
        return;
    }

    n = (size_t) snprintf(err, err_len, "%s", prefix);

    if (n >= err_len) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err + n, err_len - n, fmt, args);
    va_end(args);
}
