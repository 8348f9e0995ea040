/*
 * The revocation list: sorted arrays, searched in O(log n) on every
 * request.  See welby_revoke.h for the file format.
 */

#define _DEFAULT_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "welby_revoke.h"


typedef struct {
    unsigned char  *data;
    size_t          len;
    int64_t         time;       /* sub entries: not before */
} welby_revoked_t;


struct welby_revocation_s {
    welby_revoked_t  *jtis;
    size_t            njtis;
    welby_revoked_t  *subs;
    size_t            nsubs;
    unsigned char    *text;     /* entries point into this copy */
};


static int welby_revoked_cmp(const void *a, const void *b);
static const welby_revoked_t *welby_revoked_find(const welby_revoked_t *a,
    size_t n, const unsigned char *data, size_t len);
static size_t welby_field(const unsigned char **p, const unsigned char *end,
    const unsigned char **field);


welby_revocation_t *
welby_revocation_parse(const unsigned char *text, size_t len, char *err,
    size_t err_len)
{
    size_t                lines, line, n, i, j;
    int64_t               t;
    welby_revoked_t      *e;
    welby_revocation_t   *rv;
    const unsigned char  *p, *end, *eol, *last, *kind, *name, *time, *extra;
    size_t                kind_len, name_len, time_len;

    rv = calloc(1, sizeof(welby_revocation_t));
    if (rv == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }

    lines = 1;
    for (i = 0; i < len; i++) {
        lines += text[i] == '\n';
    }

    rv->text = malloc(len + 1);
    rv->jtis = calloc(lines, sizeof(welby_revoked_t));
    rv->subs = calloc(lines, sizeof(welby_revoked_t));

    if (rv->text == NULL || rv->jtis == NULL || rv->subs == NULL) {
        snprintf(err, err_len, "out of memory");
        goto failed;
    }

    if (len) {
        memcpy(rv->text, text, len);
    }

    p = rv->text;
    end = rv->text + len;
    line = 0;

    while (p < end) {
        line++;

        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        /*
         * A '#' that starts a field starts a comment, at the start of a
         * line or after an entry: "sub nurse-7 1700000000  # left".  One
         * inside a value ("a#b") is part of the value.
         */

        for (last = p; last < eol; last++) {
            if (*last == '#'
                && (last == p || last[-1] == ' ' || last[-1] == '\t'))
            {
                break;
            }
        }

        kind_len = welby_field(&p, last, &kind);

        if (kind_len == 0) {
            p = eol + 1;
            continue;
        }

        name_len = welby_field(&p, last, &name);
        time_len = welby_field(&p, last, &time);

        if (name_len == 0) {
            snprintf(err, err_len, "line %zu: no value", line);
            goto failed;
        }

        n = welby_field(&p, last, &extra);

        if (n != 0) {
            snprintf(err, err_len, "line %zu: unexpected \"%.*s\"", line,
                     (int) (n > 32 ? 32 : n), extra);
            goto failed;
        }

        for (i = 0; i < name_len; i++) {
            if (name[i] < 0x21 || name[i] == 0x7f) {
                snprintf(err, err_len, "line %zu: control character",
                         line);
                goto failed;
            }
        }

        if (kind_len == 3 && memcmp(kind, "jti", 3) == 0) {

            if (time_len) {
                snprintf(err, err_len, "line %zu: a jti takes no time",
                         line);
                goto failed;
            }

            e = &rv->jtis[rv->njtis++];
            e->data = (unsigned char *) name;
            e->len = name_len;

        } else if (kind_len == 3 && memcmp(kind, "sub", 3) == 0) {

            if (time_len == 0 || time_len > 12) {
                snprintf(err, err_len,
                         "line %zu: a sub needs a time in unix seconds",
                         line);
                goto failed;
            }

            t = 0;
            for (i = 0; i < time_len; i++) {
                if (time[i] < '0' || time[i] > '9') {
                    snprintf(err, err_len,
                             "line %zu: invalid time \"%.*s\"", line,
                             (int) time_len, time);
                    goto failed;
                }

                t = t * 10 + (time[i] - '0');
            }

            e = &rv->subs[rv->nsubs++];
            e->data = (unsigned char *) name;
            e->len = name_len;
            e->time = t;

        } else {
            snprintf(err, err_len,
                     "line %zu: unknown kind \"%.*s\", "
                     "it must be \"jti\" or \"sub\"", line,
                     (int) (kind_len > 32 ? 32 : kind_len), kind);
            goto failed;
        }

        p = eol + 1;
    }

    qsort(rv->jtis, rv->njtis, sizeof(welby_revoked_t), welby_revoked_cmp);
    qsort(rv->subs, rv->nsubs, sizeof(welby_revoked_t), welby_revoked_cmp);

    /* a subject listed twice keeps its latest time */

    n = 0;

    for (i = 0; i < rv->nsubs; i = j) {
        rv->subs[n] = rv->subs[i];

        for (j = i + 1; j < rv->nsubs
                        && welby_revoked_cmp(&rv->subs[i], &rv->subs[j]) == 0;
             j++)
        {
            if (rv->subs[j].time > rv->subs[n].time) {
                rv->subs[n].time = rv->subs[j].time;
            }
        }

        n++;
    }

    rv->nsubs = n;

    return rv;

failed:

    welby_revocation_free(rv);
    return NULL;
}


welby_revocation_t *
welby_revocation_load(const char *path, char *err, size_t err_len)
{
    long                 size;
    FILE                *f;
    size_t               n;
    unsigned char       *text;
    welby_revocation_t  *rv;

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "cannot open: %s", strerror(errno));
        return NULL;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        snprintf(err, err_len, "cannot read: %s", strerror(errno));
        fclose(f);
        return NULL;
    }

    if (size > WELBY_REVOKE_FILE_MAX) {
        snprintf(err, err_len, "larger than %d bytes", WELBY_REVOKE_FILE_MAX);
        fclose(f);
        return NULL;
    }

    text = malloc((size_t) size + 1);
    if (text == NULL) {
        snprintf(err, err_len, "out of memory");
        fclose(f);
        return NULL;
    }

    n = fread(text, 1, (size_t) size, f);

    if (n != (size_t) size || ferror(f)) {
        snprintf(err, err_len, "cannot read: %s", strerror(errno));
        free(text);
        fclose(f);
        return NULL;
    }

    fclose(f);

    rv = welby_revocation_parse(text, n, err, err_len);

    free(text);

    return rv;
}


void
welby_revocation_free(welby_revocation_t *rv)
{
    if (rv == NULL) {
        return;
    }

    free(rv->jtis);
    free(rv->subs);
    free(rv->text);
    free(rv);
}


size_t
welby_revocation_count(const welby_revocation_t *rv)
{
    return rv->njtis + rv->nsubs;
}


int
welby_revocation_jti(const welby_revocation_t *rv, const unsigned char *jti,
    size_t len)
{
    return welby_revoked_find(rv->jtis, rv->njtis, jti, len) != NULL;
}


int
welby_revocation_sub(const welby_revocation_t *rv, const unsigned char *sub,
    size_t len, int64_t iat)
{
    const welby_revoked_t  *e;

    e = welby_revoked_find(rv->subs, rv->nsubs, sub, len);

    return e != NULL && iat < e->time;
}


static int
welby_revoked_cmp(const void *a, const void *b)
{
    int                     rc;
    const welby_revoked_t  *x = a, *y = b;

    rc = memcmp(x->data, y->data, x->len < y->len ? x->len : y->len);

    if (rc != 0) {
        return rc;
    }

    return (x->len > y->len) - (x->len < y->len);
}


static const welby_revoked_t *
welby_revoked_find(const welby_revoked_t *a, size_t n,
    const unsigned char *data, size_t len)
{
    welby_revoked_t  key;

    if (n == 0) {
        return NULL;
    }

    key.data = (unsigned char *) data;
    key.len = len;

    return bsearch(&key, a, n, sizeof(welby_revoked_t), welby_revoked_cmp);
}


/* The next space-separated field before end; 0 when none is left. */
static size_t
welby_field(const unsigned char **p, const unsigned char *end,
    const unsigned char **field)
{
    const unsigned char  *s;

    s = *p;

    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) {
        s++;
    }

    *field = s;

    while (s < end && *s != ' ' && *s != '\t' && *s != '\r') {
        s++;
    }

    *p = s;

    return (size_t) (s - *field);
}
