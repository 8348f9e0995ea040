/*
 * Unit tests: strict base64url, the encoding of every JWS part.
 */

#include <stdlib.h>

#include "tap.h"
#include "welby_b64.h"


/* 0 when src decodes, with the decoded bytes in out. */
static int
decode(const char *src, unsigned char *out, size_t *out_len)
{
    size_t          len;
    unsigned char  *dst;
    int             rc;

    len = strlen(src);

    /* exactly the documented bound, so ASan sees any overrun */
    dst = malloc(welby_b64url_decoded_max(len) + 1);
    if (dst == NULL) {
        abort();
    }

    rc = welby_b64url_decode(dst, out_len, (const unsigned char *) src, len);

    if (rc == 0 && out != NULL) {
        memcpy(out, dst, *out_len);
    }

    free(dst);

    return rc;
}


static int
refused(const char *src)
{
    size_t  n;

    return decode(src, NULL, &n) == -1;
}


static int
vector(const char *plain, const char *encoded)
{
    size_t         n, plen;
    unsigned char  enc[64], dec[64];

    plen = strlen(plain);

    n = welby_b64url_encode(enc, (const unsigned char *) plain, plen);

    if (n != strlen(encoded) || memcmp(enc, encoded, n) != 0
        || n != welby_b64url_encoded_len(plen))
    {
        return 0;
    }

    if (decode(encoded, dec, &n) != 0) {
        return 0;
    }

    return n == plen && memcmp(dec, plain, n) == 0;
}


int
main(void)
{
    int             alphabet_ok, sizes_ok;
    size_t          i, len, n, elen;
    unsigned char   src[70], out[8], *enc, *dec;

    /* RFC 4648 section 10 and 9, without padding, in the url alphabet */

    ok(vector("", ""), "RFC 4648: \"\" is \"\"");
    ok(vector("f", "Zg"), "RFC 4648: \"f\" is \"Zg\" without padding");
    ok(vector("fo", "Zm8"), "RFC 4648: \"fo\" is \"Zm8\" without padding");
    ok(vector("foo", "Zm9v"), "RFC 4648: \"foo\" is \"Zm9v\"");
    ok(vector("foob", "Zm9vYg"), "RFC 4648: \"foob\" is \"Zm9vYg\"");
    ok(vector("fooba", "Zm9vYmE"), "RFC 4648: \"fooba\" is \"Zm9vYmE\"");
    ok(vector("foobar", "Zm9vYmFy"), "RFC 4648: \"foobar\" is \"Zm9vYmFy\"");
    ok(vector("\xfb\xff\xbf", "-_-_"),
       "values 62 and 63 are '-' and '_', the url alphabet");
    ok(vector("\xfb\xff", "-_8"), "a 2-byte tail of the url alphabet");
    ok(vector("\x14\xfb\x9c\x03\xd9\x7e", "FPucA9l-"),
       "RFC 4648 section 9: 0x14fb9c03d97e is \"FPucA9l-\"");
    ok(vector("\x14\xfb\x9c\x03\xd9", "FPucA9k"),
       "RFC 4648 section 9: 0x14fb9c03d9 is \"FPucA9k\"");
    ok(vector("\x14\xfb\x9c\x03", "FPucAw"),
       "RFC 4648 section 9: 0x14fb9c03 is \"FPucAw\"");

    /* round trips through buffers of the exact documented size */

    alphabet_ok = 1;
    sizes_ok = 1;

    for (len = 0; len <= 70; len++) {
        for (i = 0; i < len; i++) {
            src[i] = (unsigned char) (i * 151 + len * 29 + 7);
        }

        elen = welby_b64url_encoded_len(len);

        enc = malloc(elen + 1);
        dec = malloc(welby_b64url_decoded_max(elen) + 1);
        if (enc == NULL || dec == NULL) {
            abort();
        }

        n = welby_b64url_encode(enc, src, len);

        sizes_ok &= n == elen && elen % 4 != 1
                    && welby_b64url_decoded_max(elen) >= len
                    && welby_b64url_decoded_max(elen) < len + 3;

        for (i = 0; i < n; i++) {
            alphabet_ok &= strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz0123456789-_",
                                  enc[i]) != NULL;
        }

        ok(welby_b64url_decode(dec, &n, enc, elen) == 0 && n == len
           && memcmp(dec, src, len) == 0, "%zu bytes round-trip", len);

        free(enc);
        free(dec);
    }

    ok(sizes_ok, "encoded_len is exact and decoded_max a tight upper bound");
    ok(alphabet_ok, "the encoder writes only [A-Za-z0-9_-]");

    /* everything but the one canonical encoding is refused */

    ok(refused("Zg=="), "padding '==' is refused");
    ok(refused("Zm8="), "padding '=' is refused");
    ok(refused("Zm9v===="), "a padding group is refused");
    ok(refused("+_8"), "'+' of the standard alphabet is refused");
    ok(refused("-/8"), "'/' of the standard alphabet is refused");
    ok(refused("Zm 9"), "a space is refused");
    ok(refused("Zm9v\nYg"), "a newline is refused");
    ok(refused("Zm9v\r\nYg"), "a CRLF line break is refused");
    ok(refused("Zm\t9"), "a tab is refused");
    ok(refused("Zm9v.Yg"), "a '.' is refused");
    ok(refused("Z"), "a length of 1 is refused");
    ok(refused("Zm9vY"), "a length of 5 (1 mod 4) is refused");
    ok(refused("Zh"), "set trailing bits in a 2-char tail are refused");
    ok(refused("Z_"), "all trailing bits set in a 2-char tail are refused");
    ok(refused("Zm9"), "set trailing bits in a 3-char tail are refused");
    ok(refused("Zm-"), "trailing bits 0b10 in a 3-char tail are refused");
    ok(refused("Zm9vYh"), "set trailing bits after a full group are refused");
    ok(refused("Zm9\x80"), "a byte 0x80 is refused");
    ok(refused("\xffm9v"), "a byte 0xff is refused");
    ok(refused("Zm\xc3\xa9"), "UTF-8 letters are refused");
    ok(decode("Zm9v", out, &n) == 0 && n == 3
       && welby_b64url_decode(out, &n, (const unsigned char *) "Zm\0v", 4)
          == -1, "an embedded NUL is refused");
    ok(decode("Zg", out, &n) == 0 && n == 1 && out[0] == 'f'
       && decode("Zm8", out, &n) == 0 && n == 2,
       "the canonical tails of 2 and 3 chars decode");

    return done_testing();
}
