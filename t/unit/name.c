/*
 * Unit tests: header names and query parameter names compared as the
 * backends behind the gateway read them.
 */

#include "tap.h"
#include "welby_name.h"

#define S(s)  (const unsigned char *) (s), sizeof(s) - 1


static int
heq(const char *a, const char *b)
{
    return welby_header_name_eq((const unsigned char *) a, strlen(a),
                                (const unsigned char *) b, strlen(b));
}


static int
hpre(const char *a, const char *b)
{
    return welby_header_name_prefix((const unsigned char *) a, strlen(a),
                                    (const unsigned char *) b, strlen(b));
}


static int
qis(const char *name, const char *target)
{
    return welby_query_name_is((const unsigned char *) name, strlen(name),
                               (const unsigned char *) target,
                               strlen(target));
}


static size_t
qcount(const char *args, const char *target)
{
    return welby_query_count((const unsigned char *) args, strlen(args),
                             (const unsigned char *) target, strlen(target));
}


/* the parameters of a query as "name|value;..." ('-' for no value) */
static void
params(char *out, size_t cap, const char *args)
{
    size_t               pos, n;
    welby_query_param_t  p;

    pos = 0;
    n = 0;
    out[0] = '\0';

    while (welby_query_next((const unsigned char *) args, strlen(args), &pos,
                            &p))
    {
        n += snprintf(out + n, cap - n, "%.*s|%.*s;", (int) p.name_len,
                      (const char *) p.name,
                      p.value ? (int) p.value_len : 1,
                      p.value ? (const char *) p.value : "-");
    }
}


static void
decode(char *out, size_t cap, const char *in)
{
    size_t  n;

    n = welby_query_decode((unsigned char *) out, cap - 1,
                           (const unsigned char *) in, strlen(in));
    out[n < cap - 1 ? n : cap - 1] = '\0';
}


int
main(void)
{
    char           buf[256];
    unsigned char  small[4];

    /* header names */

    ok(heq("X-Welby-Sub", "X-Welby-Sub"), "a name equals itself");
    ok(heq("x-welby-sub", "X-WELBY-SUB"), "case does not matter");
    ok(heq("X_Welby_Sub", "X-Welby-Sub"), "'_' equals '-'");
    ok(heq("X-Welby_Fhir-User", "x_welby-fhir_user"),
       "'-' and '_' mixed, any case");
    ok(!heq("X-Welby-Sub", "X-Welby-Sux"), "another letter differs");
    ok(!heq("X-Welby-Sub", "X-Welby-Su"), "a shorter name differs");
    ok(!heq("X-Welby-Sub", "X-Welby-Sub_"), "a longer name differs");
    ok(!heq("X.Welby.Sub", "X-Welby-Sub"),
       "'.' is not folded (nginx passes it as it is)");
    ok(!heq("X Welby Sub", "X-Welby-Sub"), "a space is not folded");
    ok(!heq("X-Welby-Sub\xc5", "X-Welby-Sub\xe5"),
       "non-ASCII bytes are compared as they are, without case");
    ok(heq("X-Welby-Sub\xc5", "x_welby_sub\xc5"),
       "an equal non-ASCII byte matches");
    ok(!heq("a@", "a`"), "'@' and '`' are not letters");
    ok(!heq("a[", "a{"), "'[' and '{' are not letters");
    ok(heq("", ""), "empty names are equal");
    ok(welby_header_name_eq(S("A\0b"), S("a\0B")),
       "a NUL is compared like any byte");

    ok(hpre("X-Welby-Sub", "X-Welby-"), "a prefix matches");
    ok(hpre("x_welby_anything", "X-Welby-"),
       "a prefix matches with '_' and another case");
    ok(hpre("X-Welby-", "X-Welby-"), "the prefix alone matches");
    ok(!hpre("X-Welby", "X-Welby-"), "a shorter name does not");
    ok(!hpre("X-Welbyx", "X-Welby-"), "another byte after the prefix");
    ok(!hpre("Y-Welby-Sub", "X-Welby-"), "another first letter");

    /* query parameters */

    params(buf, sizeof(buf), "a=1&b=2;c=3");
    is_str(buf, "a|1;b|2;c|3;", "'&' and ';' both split parameters");
    params(buf, sizeof(buf), "a&=x&&b==2&");
    is_str(buf, "a|-;|x;|-;b|=2;|-;",
           "no '=', an empty name, an empty parameter, '=' in a value, "
           "a trailing separator");
    params(buf, sizeof(buf), "");
    is_str(buf, "|-;", "an empty query is one empty parameter");
    ok(welby_query_count(NULL, 0, S("a")) == 0, "a NULL query has none");

    decode(buf, sizeof(buf), "access%5Ftoken");
    is_str(buf, "access_token", "%%5F decodes to '_'");
    decode(buf, sizeof(buf), "%61%63cess");
    is_str(buf, "access", "lower-case hex letters decode");
    decode(buf, sizeof(buf), "a+b%20c");
    is_str(buf, "a b c", "'+' and %%20 decode to a space");
    decode(buf, sizeof(buf), "a%2g%4%");
    is_str(buf, "a%2g%4%", "a '%%' without two hex digits stays");
    decode(buf, sizeof(buf), "%2541");
    is_str(buf, "%41", "decoded once only");
    ok(welby_query_decode(small, sizeof(small), S("abcdef")) == 6
       && memcmp(small, "abcd", 4) == 0,
       "a name longer than the buffer: its length, its first bytes");

    ok(qis("access_token", "access_token"), "the name itself");
    ok(qis("access%5Ftoken", "access_token"), "'_' encoded");
    ok(qis("access%5ftoken", "access_token"), "'_' encoded, lower-case hex");
    ok(qis("%61ccess_token", "access_token"), "'a' encoded");
    ok(qis("%61%63%63%65%73%73%5f%74%6f%6b%65%6e", "access_token"),
       "every byte encoded");
    ok(qis("Access_Token", "access_token"), "mixed case");
    ok(qis("ACCESS%5FTOKEN", "access_token"), "upper case, encoded");
    ok(qis("access.token", "access_token"), "'.' (PHP makes it '_')");
    ok(qis("access+token", "access_token"), "'+' (a space, PHP's '_')");
    ok(qis("access%20token", "access_token"), "%%20 (a space)");
    ok(qis("access[token", "access_token"), "an unmatched '[' (PHP)");
    ok(qis("access_token[]", "access_token"), "an array (PHP, Rack)");
    ok(qis("access_token%5B0%5D", "access_token"), "an encoded array");
    ok(qis("+ access_token", "access_token"),
       "leading spaces (PHP drops them)");
    ok(qis("access_token%00junk", "access_token"),
       "a NUL ends the name (PHP)");
    ok(!qis("access_tokens", "access_token"), "a longer name");
    ok(!qis("access_toke", "access_token"), "a shorter name");
    ok(!qis("xaccess_token", "access_token"), "a name with a prefix");
    ok(!qis("access-token", "access_token"), "'-' is not '_' in a query");
    ok(!qis("access%255Ftoken", "access_token"),
       "a double-encoded '_' decodes once");
    ok(!qis("", "access_token"), "an empty name");
    ok(!qis("%00access_token", "access_token"), "a NUL first");
    ok(qis("a%74", "at") && qis("AT", "at") && qis("at", "AT"),
       "a short target, encoded, either side in upper case");
    ok(qis("__Host-at", "__host-AT") && !qis("__Host_at", "__Host-at"),
       "a target with '-': compared as it is, no '_' for it");
    ok(qis("x.y", "x_y") && !qis("x_y", "x.y"),
       "'.' stands for a '_' of the target, not the other way round");

    ok(qcount("a=1&access_token=x&b=2", "access_token") == 1, "one");
    ok(qcount("a=1;access%5Ftoken=x", "access_token") == 1,
       "after a ';', encoded");
    ok(qcount("access_token&Access_Token=", "access_token") == 2,
       "without a value, and with an empty one");
    ok(qcount("x=access_token&y=a%26access_token%3D1", "access_token") == 0,
       "values are not names, an encoded '&' does not split");
    ok(qcount("", "access_token") == 0, "an empty query");

    return done_testing();
}
