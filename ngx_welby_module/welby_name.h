/*
 * Request header names and query parameter names compared the way the
 * backends behind the gateway read them, not byte for byte.  No nginx
 * types: unit tests and fuzzers link it alone.
 */

#ifndef WELBY_NAME_H
#define WELBY_NAME_H

#include <stddef.h>


/*
 * Header names.  nginx's fastcgi, uwsgi and scgi modules pass a request
 * header as the parameter "HTTP_" + the name with a-z upper-cased and '-'
 * made '_', every other byte as it is; WSGI, Rack and PHP build the same
 * names.  So two names are one header to such a backend exactly when they
 * are equal with ASCII letters compared without case and '-' and '_'
 * taken as the same byte.  Nothing else is folded: a byte outside
 * A-Z a-z '-' '_' must match itself.
 */
int welby_header_name_eq(const unsigned char *a, size_t a_len,
    const unsigned char *b, size_t b_len);

/* name starts with prefix, in the same sense */
int welby_header_name_prefix(const unsigned char *name, size_t len,
    const unsigned char *prefix, size_t prefix_len);


/*
 * Query parameters.  A query string (without '?') is split on '&' and
 * ';' (CGI.pm and older Pythons split on both); a parameter's name is
 * what precedes its first '=', its value what follows (value is NULL for
 * a parameter without '=').  welby_query_next() gives each parameter in
 * turn, raw, empty ones included; *pos starts at 0.  Returns 1, or 0 at
 * the end.
 */
typedef struct {
    const unsigned char   *name;
    size_t                 name_len;
    const unsigned char   *value;
    size_t                 value_len;
} welby_query_param_t;

int welby_query_next(const unsigned char *args, size_t len, size_t *pos,
    welby_query_param_t *param);

/*
 * Percent-decodes a name once ("%XX" to its byte, '+' to a space; a '%'
 * without two hex digits stays as it is), as backends do before they
 * look a parameter up.  Writes at most cap bytes and returns the decoded
 * length, which may be more than cap: then dst holds its first cap bytes.
 */
size_t welby_query_decode(unsigned char *dst, size_t cap,
    const unsigned char *src, size_t len);

/*
 * 1 when a backend could take the raw name (a query parameter's or a
 * cookie's) for target, 0 otherwise.  The raw name is percent-decoded
 * first, then compared without ASCII case (ASP.NET looks parameters up
 * that way; for a cookie, it errs on the side of a second token).  PHP's
 * mangling is followed too: leading spaces are dropped, a '.', a space
 * (from '+' or "%20") and a '[' are each taken for a '_' of target, a
 * decoded NUL ends the name, and "target[...]" is target as an array.
 * So "access%5Ftoken", "ACCESS_TOKEN", "access.token", "access+token" and
 * "access_token[]" are all access_token.
 */
int welby_query_name_is(const unsigned char *name, size_t len,
    const unsigned char *target, size_t target_len);

/* the number of parameters of the query that welby_query_name_is() */
size_t welby_query_count(const unsigned char *args, size_t len,
    const unsigned char *target, size_t target_len);

#endif /* WELBY_NAME_H */
