/*
 * conf/bench/mint.c -- mint signed access tokens for `make bench`.
 *
 * conf/bench/run builds it (cc ... -lcrypto) into build/bench/mint.
 * OpenSSL signs an RS256 token in about 0.3 ms, CryptX in about 2 ms: the
 * benchmark needs some 10^5 unique tokens per run, so they are minted here.
 *
 *   mint ALG KEY.pem KID ISS AUD IAT EXP JTI_PREFIX FIRST COUNT
 *
 * ALG is RS256, ES256 or EdDSA; KEY.pem a private key (RSA, EC P-256,
 * Ed25519).  Prints COUNT tokens, one a line, numbered FIRST.. in the
 * sub and jti claims, all else equal:
 *
 *   header  {"alg":ALG,"typ":"at+jwt","kid":KID}
 *   payload {"iss":ISS,"sub":"bench-user-N","aud":AUD,
 *            "client_id":"bench-client","scope":"patient/Patient.rs",
 *            "iat":IAT,"exp":EXP,"jti":"JTI_PREFIX-N"}
 *
 * The string arguments are written into JSON as they are: pass plain ASCII
 * without quotes or backslashes (checked).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>


static void
die(const char *msg)
{
    fprintf(stderr, "mint: %s\n", msg);
    ERR_print_errors_fp(stderr);
    exit(1);
}


static size_t
b64url(char *out, const unsigned char *in, size_t len)
{
    static const char  tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t             i, n = 0;
    unsigned long      v;

    for (i = 0; i + 2 < len; i += 3) {
        v = (unsigned long) in[i] << 16 | in[i + 1] << 8 | in[i + 2];
        out[n++] = tab[v >> 18 & 63];
        out[n++] = tab[v >> 12 & 63];
        out[n++] = tab[v >> 6 & 63];
        out[n++] = tab[v & 63];
    }

    if (len - i == 1) {
        v = (unsigned long) in[i] << 16;
        out[n++] = tab[v >> 18 & 63];
        out[n++] = tab[v >> 12 & 63];

    } else if (len - i == 2) {
        v = (unsigned long) in[i] << 16 | in[i + 1] << 8;
        out[n++] = tab[v >> 18 & 63];
        out[n++] = tab[v >> 12 & 63];
        out[n++] = tab[v >> 6 & 63];
    }

    out[n] = '\0';
    return n;
}


static const char *
plain(const char *s)
{
    const char  *p;

    if (*s == '\0' || strlen(s) > 200) {
        die("empty or long argument");
    }

    for (p = s; *p; p++) {
        if (*p < 0x20 || *p > 0x7e || *p == '"' || *p == '\\') {
            die("arguments must be printable ASCII without \" or \\");
        }
    }

    return s;
}


int
main(int argc, char **argv)
{
    const char     *alg, *kid, *iss, *aud, *prefix;
    const EVP_MD   *md;
    unsigned char   sig[1024], raw[64];
    const unsigned char *p;
    char            json[1024], input[4096], sigb64[1400];
    size_t          siglen, n, hlen;
    long            iat, exp, first, count, i;
    int             is_ec;
    FILE           *f;
    EVP_PKEY       *pkey;
    EVP_MD_CTX     *ctx;
    ECDSA_SIG      *es;
    const BIGNUM   *r, *s;

    if (argc != 11) {
        fprintf(stderr, "usage: mint ALG KEY.pem KID ISS AUD IAT EXP "
                        "JTI_PREFIX FIRST COUNT\n");
        return 2;
    }

    alg = argv[1];
    kid = plain(argv[3]);
    iss = plain(argv[4]);
    aud = plain(argv[5]);
    iat = atol(argv[6]);
    exp = atol(argv[7]);
    prefix = plain(argv[8]);
    first = atol(argv[9]);
    count = atol(argv[10]);

    is_ec = 0;
    if (strcmp(alg, "RS256") == 0) {
        md = EVP_sha256();
    } else if (strcmp(alg, "ES256") == 0) {
        md = EVP_sha256();
        is_ec = 1;
    } else if (strcmp(alg, "EdDSA") == 0) {
        md = NULL;
    } else {
        die("ALG must be RS256, ES256 or EdDSA");
    }

    f = fopen(argv[2], "r");
    if (f == NULL) {
        die("cannot open the key file");
    }
    pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (pkey == NULL) {
        die("cannot read the private key");
    }

    snprintf(json, sizeof(json), "{\"alg\":\"%s\",\"typ\":\"at+jwt\","
             "\"kid\":\"%s\"}", alg, kid);
    hlen = b64url(input, (unsigned char *) json, strlen(json));
    input[hlen++] = '.';

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        die("out of memory");
    }

    for (i = first; i < first + count; i++) {
        n = snprintf(json, sizeof(json),
                     "{\"iss\":\"%s\",\"sub\":\"bench-user-%ld\","
                     "\"aud\":\"%s\",\"client_id\":\"bench-client\","
                     "\"scope\":\"patient/Patient.rs\",\"iat\":%ld,"
                     "\"exp\":%ld,\"jti\":\"%s-%ld\"}",
                     iss, i, aud, iat, exp, prefix, i);
        n = hlen + b64url(input + hlen, (unsigned char *) json, n);

        siglen = sizeof(sig);
        if (EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) != 1
            || EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) input, n)
               != 1)
        {
            die("signing failed (does the key match ALG?)");
        }

        if (is_ec) {
            /* JWS ES256 wants R || S, 32 bytes each, not DER */
            p = sig;
            es = d2i_ECDSA_SIG(NULL, &p, (long) siglen);
            if (es == NULL) {
                die("bad ECDSA signature");
            }
            ECDSA_SIG_get0(es, &r, &s);
            if (BN_bn2binpad(r, raw, 32) != 32
                || BN_bn2binpad(s, raw + 32, 32) != 32)
            {
                die("ECDSA signature too long (key not P-256?)");
            }
            ECDSA_SIG_free(es);
            memcpy(sig, raw, 64);
            siglen = 64;
        }

        b64url(sigb64, sig, siglen);
        if (printf("%.*s.%s\n", (int) n, input, sigb64) < 0) {
            die("write error");
        }
    }

    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);

    return fflush(stdout) == 0 ? 0 : 1;
}
