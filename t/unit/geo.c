/*
 * Unit tests: country codes (welby_geo.c), the grammar welby_geo_allow
 * and welby_geo_deny take and the sets they build.
 */

#include <string.h>

#include "tap.h"
#include "welby_geo.h"


static int
index_of(const char *s)
{
    return welby_country_index((const unsigned char *) s, strlen(s));
}


int
main(void)
{
    int                  i, n, all, any;
    unsigned char        code[2];
    welby_country_set_t  set;

    ok(index_of("AA") == 0, "AA is index 0");
    ok(index_of("ZZ") == WELBY_COUNTRY_CODES - 1, "ZZ is the last index");
    ok(index_of("JP") == ('J' - 'A') * 26 + ('P' - 'A'), "JP's index");
    ok(index_of("jp") == index_of("JP"), "lowercase is the same code");
    ok(index_of("Jp") == index_of("JP"), "mixed case is the same code");

    ok(index_of("J") == -1, "one letter is no code");
    ok(index_of("JPN") == -1, "three letters (alpha-3) is no code");
    ok(index_of("") == -1, "empty is no code");
    ok(index_of("J1") == -1, "a digit is no code");
    ok(index_of("J@") == -1 && index_of("@J") == -1 && index_of("J[") == -1,
       "the bytes next to A and Z are no letters");
    ok(index_of("J`") == -1 && index_of("J{") == -1,
       "the bytes next to a and z are no letters");
    ok(welby_country_index((const unsigned char *) "J\0", 2) == -1,
       "a NUL is no letter");
    ok(welby_country_index((const unsigned char *) "\xc3\x9c", 2) == -1,
       "a non-ASCII byte is no letter");
    ok(welby_country_index(NULL, 2) == -1, "NULL is no code");

    n = 0;

    for (i = 0; i < WELBY_COUNTRY_CODES; i++) {
        n += welby_country_assigned(i);
    }

    ok(n == 250, "249 ISO 3166-1 codes and XK are assigned (got %d)", n);

    ok(welby_country_assigned(index_of("JP"))
       && welby_country_assigned(index_of("US"))
       && welby_country_assigned(index_of("DE"))
       && welby_country_assigned(index_of("GB"))
       && welby_country_assigned(index_of("AD"))
       && welby_country_assigned(index_of("ZW")),
       "JP US DE GB AD ZW are assigned");
    ok(welby_country_assigned(index_of("XK")), "XK (Kosovo) is accepted");
    ok(welby_country_assigned(index_of("SS"))
       && welby_country_assigned(index_of("BQ"))
       && welby_country_assigned(index_of("SX"))
       && welby_country_assigned(index_of("CW")),
       "the codes of 2010-2011 (SS BQ SX CW) are assigned");
    ok(!welby_country_assigned(index_of("UK")), "UK is not (GB is)");
    ok(!welby_country_assigned(index_of("EU")), "EU is not");
    ok(!welby_country_assigned(index_of("XX")), "XX is not");
    ok(!welby_country_assigned(index_of("ZZ")), "ZZ is not");
    ok(!welby_country_assigned(index_of("AA")), "AA is not");
    ok(!welby_country_assigned(index_of("AN")), "AN (withdrawn) is not");
    ok(!welby_country_assigned(-1)
       && !welby_country_assigned(WELBY_COUNTRY_CODES),
       "indexes out of range are not");

    all = 1;

    for (i = 0; i < WELBY_COUNTRY_CODES; i++) {
        welby_country_code(i, code);

        if (welby_country_index(code, 2) != i
            || code[0] < 'A' || code[0] > 'Z'
            || code[1] < 'A' || code[1] > 'Z')
        {
            all = 0;
        }
    }

    ok(all, "every index's code is two uppercase letters that index it");

    memset(&set, 0, sizeof(set));
    any = 0;

    for (i = 0; i < WELBY_COUNTRY_CODES; i++) {
        any |= welby_country_set_has(&set, i);
    }

    ok(!any, "an empty set has no code");

    welby_country_set_add(&set, index_of("JP"));
    welby_country_set_add(&set, index_of("US"));
    welby_country_set_add(&set, 0);
    welby_country_set_add(&set, WELBY_COUNTRY_CODES - 1);
    welby_country_set_add(&set, -1);
    welby_country_set_add(&set, WELBY_COUNTRY_CODES);

    n = 0;

    for (i = 0; i < WELBY_COUNTRY_CODES; i++) {
        n += welby_country_set_has(&set, i);
    }

    ok(n == 4, "the set has the 4 codes added, out-of-range ones ignored");
    ok(welby_country_set_has(&set, index_of("JP"))
       && welby_country_set_has(&set, index_of("US"))
       && welby_country_set_has(&set, 0)
       && welby_country_set_has(&set, WELBY_COUNTRY_CODES - 1),
       "the set has JP, US, AA and ZZ");
    ok(!welby_country_set_has(&set, index_of("JQ"))
       && !welby_country_set_has(&set, index_of("JO")),
       "the neighbours of JP are not in it");
    ok(!welby_country_set_has(&set, -1)
       && !welby_country_set_has(&set, WELBY_COUNTRY_CODES),
       "out of range is never in it");

    return done_testing();
}
