/*
 * Unit tests: the Prometheus text format helpers (label escaping, the
 * duration buckets, status classes, seconds).
 */

#include <string.h>

#include "tap.h"
#include "welby_prom.h"


static const char *
escape(const char *in, size_t len)
{
    size_t                n;
    static unsigned char  buf[256];

    n = welby_prom_escape(NULL, (const unsigned char *) in, len);

    if (n >= sizeof(buf)
        || welby_prom_escape(buf, (const unsigned char *) in, len) != n)
    {
        return "(length mismatch)";
    }

    buf[n] = '\0';

    return (const char *) buf;
}


static const char *
seconds(uint64_t ms)
{
    size_t                n;
    static unsigned char  buf[32];

    n = welby_prom_seconds(buf, ms);
    buf[n] = '\0';

    return (const char *) buf;
}


int
main(void)
{
    size_t             i;
    int                sorted;
    uint32_t           used;
    welby_prom_name_t  names[3];
    unsigned char      label[WELBY_PROM_LABEL_MAX + 1];

    /* label values */

    is_str(escape("tokens", 6), "tokens", "plain text as it is");
    is_str(escape("a\\b", 3), "a\\\\b", "a backslash doubled");
    is_str(escape("a\"b", 3), "a\\\"b", "a quote escaped");
    is_str(escape("a\nb", 3), "a\\nb", "LF as \\n");
    is_str(escape("a\rb", 3), "a\\\\x0db", "CR as the text \\x0d");
    is_str(escape("a\0b", 3), "a\\\\x00b", "NUL as the text \\x00");
    is_str(escape("\x7f", 1), "\\\\x7f", "DEL as the text \\x7f");
    is_str(escape("\xe6\x9d\xb1\xe4\xba\xac", 6), "\xe6\x9d\xb1\xe4\xba\xac",
           "UTF-8 (Tokyo in kanji) as it is");
    is_str(escape("\xc3\xa9", 2), "\xc3\xa9", "a two-byte character");
    is_str(escape("\xf0\x9f\x98\x80", 4), "\xf0\x9f\x98\x80",
           "a four-byte character");
    is_str(escape("\xff", 1), "\\\\xff", "0xff is no UTF-8");
    is_str(escape("\xc0\xaf", 2), "\\\\xc0\\\\xaf", "overlong '/' refused");
    is_str(escape("\xe0\x80\xaf", 3), "\\\\xe0\\\\x80\\\\xaf",
           "overlong three-byte '/' refused");
    is_str(escape("\xed\xa0\x80", 3), "\\\\xed\\\\xa0\\\\x80",
           "a surrogate refused");
    is_str(escape("\xf4\x90\x80\x80", 4),
           "\\\\xf4\\\\x90\\\\x80\\\\x80", "above U+10FFFF refused");
    is_str(escape("\xe6\x9d", 2), "\\\\xe6\\\\x9d",
           "a character cut short refused");
    is_str(escape("\x80", 1), "\\\\x80", "a lone continuation byte refused");
    is_str(escape("", 0), "", "empty");

    /* buckets: a duration equal to a bound is in its bucket */

    ok(welby_prom_bucket(0) == 0, "0 ms: le 0.001");
    ok(welby_prom_bucket(1) == 0, "1 ms: le 0.001");
    ok(welby_prom_bucket(2) == 1, "2 ms: le 0.0025");
    ok(welby_prom_bucket(3) == 2, "3 ms: le 0.005");
    ok(welby_prom_bucket(10) == 3, "10 ms: le 0.01");
    ok(welby_prom_bucket(11) == 4, "11 ms: le 0.025");
    ok(welby_prom_bucket(1000) == 9, "1 s: le 1");
    ok(welby_prom_bucket(10000) == 12, "10 s: le 10");
    ok(welby_prom_bucket(10001) == WELBY_PROM_BUCKETS, "10.001 s: +Inf");
    ok(welby_prom_bucket(UINT64_MAX) == WELBY_PROM_BUCKETS,
       "the largest duration: +Inf, no overflow");

    sorted = 1;

    for (i = 1; i < WELBY_PROM_BUCKETS; i++) {
        if (welby_prom_bucket_us[i] <= welby_prom_bucket_us[i - 1]) {
            sorted = 0;
        }
    }

    ok(sorted, "the bounds increase");
    is_str(welby_prom_bucket_le[0], "0.001", "the first bound is 1 ms");
    is_str(welby_prom_bucket_le[WELBY_PROM_BUCKETS - 1], "10",
           "the last is 10 s");

    /* status classes */

    ok(welby_prom_status_class(200) == 1, "200: 2xx");
    ok(welby_prom_status_class(499) == 3, "499: 4xx");
    ok(welby_prom_status_class(599) == 4, "599: 5xx");
    ok(welby_prom_status_class(100) == 0, "100: 1xx");
    ok(welby_prom_status_class(99) == -1, "99: none");
    ok(welby_prom_status_class(600) == -1, "600: none");
    ok(welby_prom_status_class(0) == -1, "0: none");

    /* the table of named counters */

    used = 0;

    ok(welby_prom_name_add(names, &used, 3, 0, (const unsigned char *) "a", 1)
       == 0 && used == 1, "a first name takes place 0");
    ok(welby_prom_name_add(names, &used, 3, 0, (const unsigned char *) "b", 1)
       == 1 && used == 2, "a second one place 1");
    ok(welby_prom_name_add(names, &used, 3, 0, (const unsigned char *) "a", 1)
       == 0 && used == 2, "the first again: its place, nothing added");
    ok(welby_prom_name_add(names, &used, 3, 1, (const unsigned char *) "a", 1)
       == 2 && used == 3, "the same label in another family: a name of its "
       "own");
    ok(welby_prom_name_add(names, &used, 3, 0, (const unsigned char *) "ab",
                           2) == 3 && used == 3,
       "the table full: cap, nothing added");
    ok(welby_prom_name_add(names, &used, 3, 0, (const unsigned char *) "b", 1)
       == 1, "full, a known name still has its place");
    ok(welby_prom_name_find(names, used, 0, (const unsigned char *) "ab", 2)
       == used, "a name not there: used");
    ok(welby_prom_name_find(names, used, 1, (const unsigned char *) "a", 1)
       == 2, "found by family and label");

    memset(label, 'x', sizeof(label));
    used = 0;

    ok(welby_prom_name_add(names, &used, 3, 0, label, WELBY_PROM_LABEL_MAX)
       == 0, "a label of the longest length");
    ok(welby_prom_name_add(names, &used, 3, 0, label,
                           WELBY_PROM_LABEL_MAX + 1) == 3 && used == 1,
       "one byte longer: refused");

    /* seconds */

    is_str(seconds(0), "0.000", "0 ms");
    is_str(seconds(7), "0.007", "7 ms");
    is_str(seconds(1234), "1.234", "1234 ms");
    is_str(seconds(60000), "60.000", "a minute");
    is_str(seconds(UINT64_MAX), "18446744073709551.615", "the largest sum");

    return done_testing();
}
