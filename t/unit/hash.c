/*
 * Unit tests: welby_hash64 (FNV-1a, 64 bits) against the published
 * vectors, its continuation over split input, and the 32-bit fold.
 */

#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "welby_hash.h"


static uint64_t
h64(const char *s)
{
    return welby_hash64(WELBY_HASH64_INIT, (const unsigned char *) s,
                        strlen(s));
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

    return done_testing();
}
