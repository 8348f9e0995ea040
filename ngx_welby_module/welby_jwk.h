/*
 * Verification keys and JWS signatures, with OpenSSL 3 EVP: JWKS (RFC 7517,
 * RFC 7518 section 6, RFC 8037) and PEM public keys loaded and checked at
 * configuration time; signatures checked at request time.  No nginx types
 * here: unit tests link it alone.
 */

#ifndef WELBY_JWK_H
#define WELBY_JWK_H

#include <stddef.h>

#include <openssl/evp.h>

#include "welby_jose.h"
#include "welby_reason.h"


#define WELBY_RSA_MIN_BITS  2048

/* Key files are small; a bigger one is a wrong path, not a key. */
#define WELBY_JWK_FILE_MAX  (1024 * 1024)


/* One key, pinned to one algorithm and one key type. */
typedef struct {
    welby_alg_e           alg;
    char                 *kid;          /* NUL-terminated; NULL: none */
    size_t                kid_len;

    EVP_PKEY             *pkey;         /* RS*, PS*, ES*, EdDSA */
    const EVP_MD         *md;           /* fetched once; NULL for EdDSA */
    void                 *order;        /* ES*: the group order, a BIGNUM */

    /*
     * RS*, PS*, ES*: an EVP_PKEY_CTX set up once for verification over a
     * digest (padding, hash, salt), reused by every request of the worker:
     * setting one up per request costs more than an RSA verification.
     */
    void                 *verify_ctx;
    unsigned char        *secret;       /* HS* */
    size_t                secret_len;

    size_t                sig_len;      /* the exact signature length */

    /*
     * SHA-256 over the algorithm, the kid and the public key (or secret):
     * the token cache remembers which key verified a token, so a rotated
     * key takes its cached tokens with it.
     */
    unsigned char         thumbprint[32];
} welby_key_t;


typedef struct {
    welby_key_t          *keys;
    size_t                nkeys;
} welby_keyset_t;


/*
 * Loads a JWKS file ({"keys": [...]}) or, when the file starts with
 * "-----BEGIN", one PEM public key.
 *
 * JWKS: keys with "use" other than "sig" are skipped; every other key must
 * be complete and valid, or the load fails: kty RSA (n, e; at least
 * WELBY_RSA_MIN_BITS), EC (crv P-256, P-384, P-521 with ES256, ES384,
 * ES512; the point on the curve), OKP (crv Ed25519, EdDSA).  A key's alg
 * is its "alg" member; without one, EC and OKP keys take the alg their
 * curve implies, and RSA keys take default_alg (the issuer's only RSA
 * algorithm), failing if that is WELBY_ALG_UNKNOWN.  A key whose alg is
 * not in allowed (WELBY_ALG_BIT mask) is skipped.  Fails on: kty "oct"
 * (symmetric keys are configured only with welby_keyset_secret()),
 * private key members (d, p, q, dp, dq, qi, k), an alg that contradicts
 * the key type or curve, duplicate kids, two keys without kid, zero usable
 * keys, any JSON error (duplicates rejected).
 *
 * PEM: a SubjectPublicKeyInfo (RSA, EC, Ed25519) with alg default_alg
 * (or, for EC and Ed25519 when WELBY_ALG_UNKNOWN, the alg the curve
 * implies) and the given kid (NULL: none).
 *
 * Returns NULL on failure with a one-line reason in err, naming the key
 * by position and kid ("key 2 (kid \"k2\"): RSA key of 1024 bits, at
 * least 2048 required"); the caller adds the file name.
 */
welby_keyset_t *welby_keyset_load(const char *path, unsigned allowed,
    welby_alg_e default_alg, const char *kid, char *err, size_t err_len);

/*
 * The same from the bytes of such a file, as read by the caller; text[len]
 * must be '\0'.
 */
welby_keyset_t *welby_keyset_parse(const char *text, size_t len,
    unsigned allowed, welby_alg_e default_alg, const char *kid, char *err,
    size_t err_len);

/*
 * An HMAC key: the raw bytes of the file (a trailing newline is not
 * stripped), at least as long as the hash (RFC 7518 section 3.2).
 */
welby_keyset_t *welby_keyset_secret(const char *path, welby_alg_e alg,
    const char *kid, char *err, size_t err_len);

/* The same from the bytes of such a file; the caller cleanses them. */
welby_keyset_t *welby_keyset_secret_parse(const unsigned char *text,
    size_t len, welby_alg_e alg, const char *kid, char *err, size_t err_len);

void welby_keyset_free(welby_keyset_t *ks);

/*
 * With a kid: the key with exactly that kid.  Without (kid == NULL): the
 * key when the set holds exactly one.  NULL otherwise.
 */
const welby_key_t *welby_keyset_find(const welby_keyset_t *ks,
    const unsigned char *kid, size_t kid_len);

/*
 * WELBY_REASON_NONE when sig is key's signature over input, else
 * WELBY_REASON_TOKEN_SIGNATURE.  The caller has checked that the token's
 * alg is key->alg.  Lengths are exact (key->sig_len); ECDSA r and s are
 * raw big-endian halves that must satisfy 1 <= r, s < n (CVE-2022-21449);
 * RSA-PSS uses a salt of the hash length (RFC 7518 section 3.5); HMAC is
 * compared in constant time.
 */
welby_reason_e welby_jws_verify(const welby_key_t *key,
    const unsigned char *input, size_t input_len,
    const unsigned char *sig, size_t sig_len);

#endif /* WELBY_JWK_H */
