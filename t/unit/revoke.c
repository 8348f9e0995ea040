/*
 * Unit tests: the revocation list (welby_revoke.c).
 */

#define _DEFAULT_SOURCE

#include <stdlib.h>
#include <unistd.h>

#include "tap.h"
#include "welby_revoke.h"

#define S(s)  (const unsigned char *) (s), sizeof(s) - 1


static welby_revocation_t *
parse(const char *text, char *err, size_t err_len)
{
    err[0] = '\0';
    return welby_revocation_parse((const unsigned char *) text, strlen(text),
                                  err, err_len);
}


static int
refused(const char *text, const char *phrase)
{
    char                 err[128];
    welby_revocation_t  *rv;

    rv = parse(text, err, sizeof(err));

    if (rv != NULL) {
        welby_revocation_free(rv);
        return 0;
    }

    if (strstr(err, phrase) == NULL) {
        printf("#   message: %s\n", err);
        return 0;
    }

    return 1;
}


int
main(void)
{
    int                  fd;
    FILE                *f;
    char                 err[128], path[] = "/tmp/welby-revoke-XXXXXX";
    welby_revocation_t  *rv;

    rv = parse("# staff who left\n"
               "jti 6c1f-a\n"
               "\n"
               "sub nurse-7 1700000000\n"
               "  sub\tnurse-7   1800000000  \r\n"
               "sub doctor-2 1700000000\n"
               "jti b", err, sizeof(err));

    ok(rv != NULL, "comments, blank lines, tabs, CRLF and a last line "
       "without newline parse");

    if (rv == NULL) {
        printf("#   %s\n", err);
        return done_testing();
    }

    ok(welby_revocation_count(rv) == 4,
       "a subject listed twice counts once");
    ok(welby_revocation_jti(rv, S("6c1f-a")), "a listed jti is revoked");
    ok(welby_revocation_jti(rv, S("b")), "the last line's jti is revoked");
    ok(!welby_revocation_jti(rv, S("6c1f")), "a prefix of a jti is not");
    ok(!welby_revocation_jti(rv, S("6c1f-ab")), "a longer jti is not");
    ok(!welby_revocation_jti(rv, S("nurse-7")),
       "a subject is not a jti");
    ok(welby_revocation_sub(rv, S("nurse-7"), 1799999999),
       "a token issued before the subject's latest time is revoked");
    ok(!welby_revocation_sub(rv, S("nurse-7"), 1800000000),
       "a token issued at that time is not");
    ok(!welby_revocation_sub(rv, S("doctor-2"), 1700000001),
       "a token issued after the subject's time is not");
    ok(welby_revocation_sub(rv, S("doctor-2"), 0),
       "a token issued long before is");
    ok(!welby_revocation_sub(rv, S("nurse"), 0),
       "a prefix of a subject is not listed");
    ok(!welby_revocation_sub(rv, S("6c1f-a"), 0), "a jti is not a subject");

    welby_revocation_free(rv);

    rv = parse("", err, sizeof(err));
    ok(rv != NULL && welby_revocation_count(rv) == 0,
       "an empty list is valid");
    ok(rv != NULL && !welby_revocation_jti(rv, S("x"))
       && !welby_revocation_sub(rv, S("x"), 0),
       "an empty list revokes nothing");
    welby_revocation_free(rv);

    rv = parse("sub nurse-0042 1795650000     # every token of nurse-0042\n"
               "jti c-1\t# revoked by the help desk\n"
               "jti c#2 #\n"
               "   # an indented comment line\n"
               "jti c-3#\n", err, sizeof(err));

    ok(rv != NULL, "a '#' after an entry starts a trailing comment");

    if (rv == NULL) {
        printf("#   %s\n", err);
    }
    ok(rv != NULL && welby_revocation_count(rv) == 4,
       "trailing comments add no entries");
    ok(rv != NULL && welby_revocation_sub(rv, S("nurse-0042"), 1795649999),
       "a sub line with a trailing comment keeps its time");
    ok(rv != NULL && welby_revocation_jti(rv, S("c-1")),
       "a jti before a tab and a comment is revoked");
    ok(rv != NULL && welby_revocation_jti(rv, S("c#2"))
       && welby_revocation_jti(rv, S("c-3#")),
       "a '#' inside or at the end of a value is part of the value");
    ok(rv != NULL && !welby_revocation_jti(rv, S("c")),
       "a value is not cut at a '#' inside it");
    welby_revocation_free(rv);

    ok(refused("jti #c-4\n", "line 1: no value"),
       "a value cannot start with '#': it starts a comment");
    ok(refused("sub x # 1700000000\n", "a sub needs a time"),
       "a time after a '#' is part of the comment");
    ok(refused("sub x 1700000000 2 # c\n", "unexpected \"2\""),
       "a fourth field before a comment is still refused");

    ok(refused("jti\n", "line 1: no value"), "a jti needs a value");
    ok(refused("jti a\nsub x\n", "line 2: a sub needs a time"),
       "a sub needs a time, and the line is named");
    ok(refused("sub x 17e8\n", "invalid time"), "a time is digits only");
    ok(refused("sub x 1234567890123\n", "a sub needs a time"),
       "a time of more than 12 digits is refused");
    ok(refused("jti a 1700000000\n", "a jti takes no time"),
       "a jti takes no time");
    ok(refused("sub x 1 2\n", "unexpected \"2\""),
       "a fourth field is refused");
    ok(refused("kid a\n", "unknown kind \"kid\""), "an unknown kind is named");
    ok(refused("JTI a\n", "unknown kind"), "kinds are lower case");
    ok(refused("jti a\x01" "b\n", "control character"),
       "a control character in a value is refused");

    fd = mkstemp(path);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;

    ok(f != NULL, "a temporary file");

    if (f != NULL) {
        fputs("jti from-file\n", f);
        fclose(f);

        rv = welby_revocation_load(path, err, sizeof(err));
        ok(rv != NULL && welby_revocation_jti(rv, S("from-file")),
           "a file loads");
        welby_revocation_free(rv);
        unlink(path);
    }

    rv = welby_revocation_load(path, err, sizeof(err));
    ok(rv == NULL && strstr(err, "cannot open") != NULL,
       "a missing file says it cannot be opened");

    return done_testing();
}
