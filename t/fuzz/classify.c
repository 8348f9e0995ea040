/*
 * libFuzzer target: the FHIR classifier on arbitrary requests.  Input: a
 * method byte, then the path up to the first '?', the query up to the
 * first '#', and after it a form body.  Besides crashes and sanitizer
 * reports it checks that
 *
 *   - the same request with its query's unreserved characters
 *     percent-encoded classifies alike: the same reason, interaction,
 *     type, types, patients and binding (an encoding trick never changes
 *     whom a request reaches);
 *   - every patient id it returns is a FHIR id;
 *   - a bound request names at least one patient;
 *   - an id welby_fhir_patient_ref() returns is a FHIR id.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_fhir.h"


static const unsigned  methods[] = {
    WELBY_FHIR_M_GET, WELBY_FHIR_M_HEAD, WELBY_FHIR_M_POST, WELBY_FHIR_M_PUT,
    WELBY_FHIR_M_PATCH, WELBY_FHIR_M_DELETE, WELBY_FHIR_M_OPTIONS
};

static const char  base[] = "https://gw.example/fhir";


static int
unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
           || c == '~';
}


/* escapes stay as they are, well-formed or not: only the bytes around */
static size_t
encode(const unsigned char *src, size_t len, unsigned char *dst)
{
    size_t              i, n, k;
    static const char   hex[] = "0123456789ABCDEF";

    n = 0;

    for (i = 0; i < len; i++) {
        if (src[i] == '%') {
            for (k = 0; k < 3 && i + k < len; k++) {
                dst[n++] = src[i + k];
            }

            i += k - 1;
            continue;
        }

        if (unreserved(src[i])) {
            dst[n++] = '%';
            dst[n++] = hex[src[i] >> 4];
            dst[n++] = hex[src[i] & 0xf];
            continue;
        }

        dst[n++] = src[i];
    }

    return n;
}


static int
same_str(const welby_str_t *a, const welby_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}


static void
check(const welby_fhir_request_t *r)
{
    size_t  i;

    for (i = 0; i < r->npatients; i++) {
        if (!welby_fhir_id_valid(r->patients[i].data, r->patients[i].len)) {
            abort();
        }
    }

    if (r->bound && r->npatients == 0) {
        abort();
    }

    if (r->npatients > WELBY_FHIR_PATIENTS_MAX
        || r->ntypes > WELBY_FHIR_TYPES_MAX
        || r->nparams > WELBY_FHIR_PARAMS_MAX)
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int                    rc1;
    size_t                 i, qlen;
    unsigned char         *scratch, *scratch2, *enc, *q, *f;
    welby_str_t            id;
    welby_reason_e         r1, r2;
    welby_fhir_input_t     in;
    welby_fhir_request_t  *a, *b;

    if (size < 1) {
        return 0;
    }

    memset(&in, 0, sizeof(in));
    in.method = methods[data[0] % 7];
    in.bases[0].data = (const unsigned char *) base;
    in.bases[0].len = sizeof(base) - 1;
    in.nbases = 1;

    data++;
    size--;

    id.data = NULL;
    id.len = 0;
    rc1 = welby_fhir_patient_ref(data, size, in.bases, 1, &id);

    if (rc1 == 1 && !welby_fhir_id_valid(id.data, id.len)) {
        abort();
    }

    q = memchr(data, '?', size);
    in.path.data = data;
    in.path.len = q ? (size_t) (q - data) : size;

    if (q) {
        q++;
        f = memchr(q, '#', size - (q - data));
        in.query.data = q;
        in.query.len = f ? (size_t) (f - q) : size - (q - data);

        if (f) {
            in.form.data = f + 1;
            in.form.len = size - (f + 1 - data);
        }
    }

    a = malloc(sizeof(welby_fhir_request_t));
    b = malloc(sizeof(welby_fhir_request_t));
    scratch = malloc(size + 1);
    scratch2 = malloc(4 * size + 1);
    enc = malloc(3 * size + 1);

    if (a == NULL || b == NULL || scratch == NULL || scratch2 == NULL
        || enc == NULL)
    {
        abort();
    }

    r1 = welby_fhir_classify(&in, a, scratch, size + 1);
    check(a);

    /* the same request, its query's unreserved characters encoded */

    qlen = encode(in.query.data, in.query.len, enc);
    in.query.data = enc;
    in.query.len = qlen;

    r2 = welby_fhir_classify(&in, b, scratch2, 4 * size + 1);
    check(b);

    if (r1 != r2) {
        abort();
    }

    if (r1 == WELBY_REASON_NONE) {
        if (a->interaction != b->interaction || a->type != b->type
            || a->bound != b->bound || a->npatients != b->npatients
            || a->ntypes != b->ntypes || !same_str(&a->id, &b->id))
        {
            abort();
        }

        for (i = 0; i < a->npatients; i++) {
            if (!same_str(&a->patients[i], &b->patients[i])) {
                abort();
            }
        }

        for (i = 0; i < a->ntypes; i++) {
            if (a->types[i] != b->types[i]) {
                abort();
            }
        }
    }

    free(a);
    free(b);
    free(scratch);
    free(scratch2);
    free(enc);

    return 0;
}
