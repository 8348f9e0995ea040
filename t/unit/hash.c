/*
 * Unit tests: welby_hash64 (FNV-1a, 64 bits) against the published
 * vectors, its continuation over split input, and the 32-bit fold;
 * SipHash-2-4 with 64- and 128-bit output against the reference
 * implementation's vectors and OpenSSL's SIPHASH for every length 0..63.
 */

#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "tap.h"
#include "welby_hash.h"


static uint64_t
h64(const char *s)
{
    return welby_hash64(WELBY_HASH64_INIT, (const unsigned char *) s,
                        strlen(s));
}


/* OpenSSL's SIPHASH of data, size 8 or 16 bytes, into out; 0 or -1 */
static int
openssl_siphash(const unsigned char *key, const unsigned char *data,
    size_t len, unsigned int size, unsigned char *out)
{
    int           rc;
    size_t        out_len;
    EVP_MAC      *mac;
    OSSL_PARAM    params[2];
    EVP_MAC_CTX  *ctx;

    params[0] = OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_SIZE, &size);
    params[1] = OSSL_PARAM_construct_end();

    mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

    rc = (ctx && EVP_MAC_init(ctx, key, 16, params)
          && EVP_MAC_update(ctx, data, len)
          && EVP_MAC_final(ctx, out, &out_len, 16) && out_len == size)
         ? 0 : -1;

    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);

    return rc;
}


static void
test_siphash(void)
{
    size_t         len;
    uint64_t       k[2], v;
    unsigned int   i, bad64, bad128, failed;
    unsigned char  key[16], msg[64], out[16], ref[16];

    /* the reference implementation's vectors.h, 128-bit, messages 0 and 1 */
    static const unsigned char  vec128_0[16] = {
        0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6,
        0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93 };
    static const unsigned char  vec128_1[16] = {
        0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44,
        0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45 };

    for (i = 0; i < 16; i++) {
        key[i] = (unsigned char) i;
    }

    for (i = 0; i < 64; i++) {
        msg[i] = (unsigned char) i;
    }

    memcpy(&k[0], key, 8);
    memcpy(&k[1], key + 8, 8);

    ok(welby_siphash(k, msg, 0) == 0x726fdb47dd0e0e31ULL,
       "SipHash-2-4 of the empty message: the paper's vector");
    ok(welby_siphash(k, msg, 15) == 0xa129ca6149be45e5ULL,
       "SipHash-2-4 of 00..0e: the paper's appendix A vector");

    welby_siphash128(k, msg, 0, out);
    ok(memcmp(out, vec128_0, 16) == 0,
       "SipHash-2-4-128 of the empty message: the reference's vector");

    welby_siphash128(k, msg, 1, out);
    ok(memcmp(out, vec128_1, 16) == 0,
       "SipHash-2-4-128 of 00: the reference's vector");

    bad64 = 0;
    bad128 = 0;
    failed = 0;

    for (len = 0; len < 64; len++) {
        if (openssl_siphash(key, msg, len, 8, ref) != 0) {
            failed++;
            continue;
        }

        memcpy(&v, ref, 8);     /* little-endian, as the tests run on */

        if (welby_siphash(k, msg, len) != v) {
            bad64++;
        }

        if (openssl_siphash(key, msg, len, 16, ref) != 0) {
            failed++;
            continue;
        }

        welby_siphash128(k, msg, len, out);

        if (memcmp(out, ref, 16) != 0) {
            bad128++;
        }
    }

    ok(failed == 0, "OpenSSL's SIPHASH answered for every length (%u did not)",
       failed);
    ok(bad64 == 0, "SipHash-2-4 equals OpenSSL's SIPHASH (size 8) for every "
       "length 0..63 (%u differ)", bad64);
    ok(bad128 == 0, "SipHash-2-4-128 equals OpenSSL's SIPHASH (size 16) for "
       "every length 0..63 (%u differ)", bad128);

    k[0] ^= 1;
    welby_siphash128(k, msg, 16, out);
    openssl_siphash(key, msg, 16, 16, ref);
    ok(memcmp(out, ref, 16) != 0, "another key, another 128-bit hash");
}


int
main(void)
{
    uint64_t  h;

    ok(h64("") == 0xcbf29ce484222325ULL, "FNV-1a 64 of \"\"");
    ok(h64("a") == 0xaf63dc4c8601ec8cULL, "FNV-1a 64 of \"a\"");
    ok(h64("foobar") == 0x85944171f73967e8ULL, "FNV-1a 64 of \"foobar\"");

    h = welby_hash64(WELBY_HASH64_INIT, (const unsigned char *) "foo", 3);
    h = welby_hash64(h, (const unsigned char *) "bar", 3);
    ok(h == h64("foobar"), "hashing on from a prefix is the whole hash");

    ok(h64("ab") != h64("ba"), "the order of bytes counts");

    ok(welby_hash32_fold(0x0123456789abcdefULL) == 0x88888888U,
       "the fold xors the two halves");

    test_siphash();

    return done_testing();
}
