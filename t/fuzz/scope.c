/*
 * libFuzzer target: the SMART scope parser and the policy's decision.
 * The input is a scope string, a newline, then bytes that choose a
 * request and a subject.  Besides crashes and sanitizer reports it
 * checks, by its own reading of the text and not by the parser's:
 *
 *   - every parsed scope's letters are among those its text names
 *     (v1 read = r s, write = c u d, "*" all; v2 the letters written),
 *     for the context and type the text names, and a granular scope
 *     grants 's' alone;
 *   - an allowed request's letters are at least those its interaction
 *     needs, and the allowing context's scopes hold them on every type
 *     the request reads (granular ones only when the search carries
 *     their parameters);
 *   - the patients reached are the context's, system/ only for an
 *     allowed client, $export only with system/, no unbound search of
 *     compartment data under patient/ or user/, the answer checked for
 *     an unbound instance read there, none promised for a HEAD, and no
 *     Patient created under patient/.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_scope.h"


#define NELTS(a)  (sizeof(a) / sizeof((a)[0]))


static const char  *type_names[] = {
    "Patient", "Observation", "Condition", "Medication", "Practitioner",
    "Encounter", "Group", "ValueSet", "CodeSystem", "MedicationRequest"
};

static const char  *op_names[] = {
    "everything", "export", "validate", "meta", "lastn", "expand",
    "lookup", "purge", "unknown"
};

static const char  *ids[] = { "p1", "p2", "p3" };

static const struct {
    const char  *name;
    const char  *modifier;
    const char  *value;
} param_choices[] = {
    { "category", NULL, "laboratory" },
    { "category", NULL, "vital-signs" },
    { "code", NULL, "x" },
    { "code", "below", "x" },
    { "_type", NULL, "Observation" },
};


typedef struct {
    const unsigned char  *p;
    size_t                n;
} bytes_t;


static unsigned
next(bytes_t *b)
{
    unsigned  v;

    if (b->n == 0) {
        return 0;
    }

    v = *b->p++;
    b->n--;

    return v;
}


static welby_str_t
str(const char *s)
{
    welby_str_t  r;

    r.data = (const unsigned char *) s;
    r.len = strlen(s);

    return r;
}


static int
eq(const welby_str_t *a, const char *s)
{
    return a->len == strlen(s) && memcmp(a->data, s, a->len) == 0;
}


static int
word(const unsigned char *p, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(p, w, n) == 0;
}


static int
contains(const unsigned char *p, size_t n, const char *w)
{
    size_t  i, k;

    k = strlen(w);

    for (i = 0; i + k <= n; i++) {
        if (memcmp(p + i, w, k) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * Whether some space-separated word of the text names this scope's
 * context and type and at least its letters.
 */
static int
named(const unsigned char *text, size_t len, const welby_scope_t *sc)
{
    size_t                i, start, slash, dot, q;
    unsigned              letters, context;
    const char           *tname;
    const unsigned char  *w;

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && text[i] != ' ') {
            continue;
        }

        w = text + start;

        for (slash = 0; start + slash < i && w[slash] != '/'; slash++) {
            /* void */
        }

        context = word(w, slash, "patient") ? WELBY_SCOPE_PATIENT
                  : word(w, slash, "user") ? WELBY_SCOPE_USER
                  : word(w, slash, "system") ? WELBY_SCOPE_SYSTEM : 0;

        for (dot = slash + 1; start + dot < i && w[dot] != '.'; dot++) {
            /* void */
        }

        for (q = dot + 1; start + q < i && w[q] != '?'; q++) {
            /* void */
        }

        if (start + slash < i && start + dot < i && context == sc->context) {
            tname = (sc->type == WELBY_FHIR_TYPE_NONE)
                    ? "*" : welby_fhir_type_name(sc->type);

            letters = 0;

            if (contains(w + dot + 1, q - dot - 1, "read")) {
                letters |= WELBY_SCOPE_R | WELBY_SCOPE_S;
            }

            if (contains(w + dot + 1, q - dot - 1, "write")) {
                letters |= WELBY_SCOPE_C | WELBY_SCOPE_U | WELBY_SCOPE_D;
            }

            if (contains(w + dot + 1, q - dot - 1, "*")) {
                letters |= WELBY_SCOPE_ALL;
            }

            letters |= contains(w + dot + 1, q - dot - 1, "c")
                       ? WELBY_SCOPE_C : 0;
            letters |= contains(w + dot + 1, q - dot - 1, "r")
                       ? WELBY_SCOPE_R : 0;
            letters |= contains(w + dot + 1, q - dot - 1, "u")
                       ? WELBY_SCOPE_U : 0;
            letters |= contains(w + dot + 1, q - dot - 1, "d")
                       ? WELBY_SCOPE_D : 0;
            letters |= contains(w + dot + 1, q - dot - 1, "s")
                       ? WELBY_SCOPE_S : 0;

            if (tname != NULL && word(w + slash + 1, dot - slash - 1, tname)
                && (sc->letters & ~letters) == 0
                && (sc->nparams == 0 || start + q < i))
            {
                return 1;
            }
        }

        start = i + 1;
    }

    return 0;
}


/* What the interaction needs at the least, by this target's own table. */
static unsigned
needed(const welby_fhir_request_t *req)
{
    switch (req->interaction) {

    case WELBY_FHIR_READ:
    case WELBY_FHIR_VREAD:
    case WELBY_FHIR_HISTORY_INSTANCE:
        return WELBY_SCOPE_R;

    case WELBY_FHIR_UPDATE:
    case WELBY_FHIR_PATCH:
        return WELBY_SCOPE_U;

    case WELBY_FHIR_DELETE:
        return WELBY_SCOPE_D;

    case WELBY_FHIR_CREATE:
        return WELBY_SCOPE_C;

    case WELBY_FHIR_SEARCH_TYPE:
    case WELBY_FHIR_SEARCH_SYSTEM:
    case WELBY_FHIR_HISTORY_TYPE:
    case WELBY_FHIR_HISTORY_SYSTEM:
        return WELBY_SCOPE_S;

    case WELBY_FHIR_OPERATION:
        if (eq(&req->operation, "everything")
            || eq(&req->operation, "export"))
        {
            return WELBY_SCOPE_R | WELBY_SCOPE_S;
        }

        if (eq(&req->operation, "validate")) {
            return WELBY_SCOPE_C;
        }

        if (eq(&req->operation, "lastn")) {
            return WELBY_SCOPE_S;
        }

        if (eq(&req->operation, "purge")) {
            return WELBY_SCOPE_ALL;
        }

        return WELBY_SCOPE_R;

    default:
        return 0;
    }
}


static int
params_carried(const welby_scope_t *sc, const welby_fhir_request_t *req)
{
    size_t                     i, j;
    const welby_fhir_param_t  *a, *b;

    for (i = 0; i < sc->nparams; i++) {
        a = &sc->params[i];

        for (j = 0; j < req->nparams; j++) {
            b = &req->params[j];

            if (a->name.len == b->name.len && a->value.len == b->value.len
                && memcmp(a->name.data, b->name.data, a->name.len) == 0
                && memcmp(a->value.data, b->value.data, a->value.len) == 0
                && (a->modifier.data == NULL) == (b->modifier.data == NULL)
                && (a->modifier.data == NULL
                    || (a->modifier.len == b->modifier.len
                        && memcmp(a->modifier.data, b->modifier.data,
                                  a->modifier.len) == 0)))
            {
                break;
            }
        }

        if (j == req->nparams) {
            return 0;
        }
    }

    return 1;
}


static unsigned
held(const welby_scopes_t *s, unsigned context, int type,
    const welby_fhir_request_t *req)
{
    size_t                i;
    unsigned              g;
    const welby_scope_t  *sc;

    g = 0;

    for (i = 0; i < s->n; i++) {
        sc = &s->scopes[i];

        if (sc->context != context
            || (sc->type != WELBY_FHIR_TYPE_NONE && sc->type != type))
        {
            continue;
        }

        if (sc->nparams > 0
            && (req->interaction == WELBY_FHIR_READ
                || !params_carried(sc, req)))
        {
            continue;
        }

        g |= sc->letters;
    }

    return g;
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int                      t;
    size_t                   i, n, len;
    unsigned                 v, need;
    bytes_t                  b;
    unsigned char           *scratch;
    const unsigned char     *nl;
    welby_str_t              patients[3], ops[1];
    welby_reason_e           rc;
    welby_scopes_t           s;
    welby_fhir_request_t     req;
    welby_policy_result_t    res;
    welby_policy_subject_t   subj;

    nl = memchr(data, '\n', size);
    len = nl ? (size_t) (nl - data) : size;

    /* an exact-size copy, so ASan sees any read past the text */

    scratch = malloc(len ? len : 1);
    if (scratch == NULL) {
        return 0;
    }

    memset(&s, 0, sizeof(s));
    welby_scopes_parse(&s, data, len, scratch);

    if (s.n > WELBY_SCOPES_MAX) {
        abort();
    }

    for (i = 0; i < s.n; i++) {
        if (s.scopes[i].letters == 0
            || (s.scopes[i].letters & ~WELBY_SCOPE_ALL)
            || !named(data, len, &s.scopes[i])
            || (s.scopes[i].nparams > 0
                && s.scopes[i].letters != WELBY_SCOPE_S)
            || s.scopes[i].nparams > WELBY_SCOPE_PARAMS_MAX)
        {
            abort();
        }
    }

    /* the request and the subject */

    b.p = nl ? nl + 1 : data + size;
    b.n = nl ? size - len - 1 : 0;

    memset(&req, 0, sizeof(req));

    req.interaction = (welby_fhir_interaction_e)
                      (next(&b) % WELBY_FHIR_INTERACTION_COUNT);
    v = next(&b);
    req.method = (v & 1) ? WELBY_FHIR_M_HEAD : WELBY_FHIR_M_GET;
    req.bound = (v >> 1) & 1;
    req.level = (v >> 2) % 3;

    v = next(&b) % (NELTS(type_names) + 1);
    req.type = (v == NELTS(type_names))
               ? WELBY_FHIR_TYPE_NONE
               : welby_fhir_type_find((const unsigned char *) type_names[v],
                                      strlen(type_names[v]));

    n = next(&b) % 4;

    for (i = 0; i < n; i++) {
        v = next(&b) % NELTS(type_names);
        req.types[req.ntypes++] = welby_fhir_type_find(
            (const unsigned char *) type_names[v], strlen(type_names[v]));
    }

    n = next(&b) % 3;

    for (i = 0; i < n; i++) {
        req.patients[req.npatients++] = str(ids[next(&b) % NELTS(ids)]);
    }

    n = next(&b) % 3;

    for (i = 0; i < n; i++) {
        v = next(&b) % NELTS(param_choices);
        req.params[req.nparams].name = str(param_choices[v].name);
        req.params[req.nparams].value = str(param_choices[v].value);

        if (param_choices[v].modifier) {
            req.params[req.nparams].modifier =
                str(param_choices[v].modifier);
        }

        req.nparams++;
    }

    req.operation = str(op_names[next(&b) % NELTS(op_names)]);

    memset(&subj, 0, sizeof(subj));
    subj.scopes = &s;

    v = next(&b);

    if (v % 3) {
        subj.patient = str(ids[v % 3 - 1]);
    }

    for (i = 0; i < NELTS(ids); i++) {
        if ((v >> (2 + i)) & 1) {
            patients[subj.npatients++] = str(ids[i]);
        }
    }

    subj.patients = patients;
    subj.system_ok = (v >> 5) & 1;

    ops[0] = str("$purge");
    subj.operations = ops;
    subj.noperations = (v >> 6) & 1;

    rc = welby_policy_decide(&req, &subj, &res);

    if (rc != WELBY_REASON_NONE || res.letters == 0) {
        free(scratch);
        return 0;
    }

    need = needed(&req);

    if ((need & ~res.letters) != 0) {
        abort();
    }

    if (res.context != WELBY_SCOPE_PATIENT && res.context != WELBY_SCOPE_USER
        && res.context != WELBY_SCOPE_SYSTEM)
    {
        abort();
    }

    for (i = 0; i < req.ntypes; i++) {
        if ((res.letters & ~held(&s, res.context, req.types[i], &req)) != 0) {
            abort();
        }
    }

    t = req.type;

    if (req.ntypes == 0
        && (res.letters & ~held(&s, res.context, t, &req)) != 0)
    {
        abort();
    }

    for (i = 0; i < req.npatients; i++) {
        if (!welby_policy_patient_ok(&subj, res.context,
                                     req.patients[i].data,
                                     req.patients[i].len))
        {
            abort();
        }

        if (res.context == WELBY_SCOPE_PATIENT
            && !(subj.patient.len == req.patients[i].len
                 && memcmp(subj.patient.data, req.patients[i].data,
                           subj.patient.len) == 0))
        {
            abort();
        }
    }

    if (res.context == WELBY_SCOPE_SYSTEM && !subj.system_ok) {
        abort();
    }

    if (req.interaction == WELBY_FHIR_OPERATION
        && eq(&req.operation, "export")
        && res.context != WELBY_SCOPE_SYSTEM)
    {
        abort();
    }

    if ((req.interaction == WELBY_FHIR_SEARCH_TYPE
         || req.interaction == WELBY_FHIR_SEARCH_SYSTEM
         || req.interaction == WELBY_FHIR_HISTORY_TYPE)
        && res.context != WELBY_SCOPE_SYSTEM
        && (!req.bound || req.npatients == 0))
    {
        for (i = 0; i < req.ntypes; i++) {
            if (welby_fhir_in_compartment(req.types[i])) {
                abort();
            }
        }

        if (welby_fhir_in_compartment(req.type)) {
            abort();
        }
    }

    if (res.check_response && (req.method & WELBY_FHIR_M_HEAD)) {
        abort();
    }

    /* an unbound instance read under patient/ or user/: its answer */

    if ((req.interaction == WELBY_FHIR_READ
         || req.interaction == WELBY_FHIR_VREAD
         || req.interaction == WELBY_FHIR_HISTORY_INSTANCE)
        && res.context != WELBY_SCOPE_SYSTEM
        && (!req.bound || req.npatients == 0)
        && welby_fhir_in_compartment(req.type) && !res.check_response)
    {
        abort();
    }

    /* a new Patient is never the token's own */

    if (req.interaction == WELBY_FHIR_CREATE
        && req.type == welby_fhir_type_patient()
        && res.context == WELBY_SCOPE_PATIENT)
    {
        abort();
    }

    free(scratch);

    return 0;
}
