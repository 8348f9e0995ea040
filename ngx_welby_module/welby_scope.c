/*
 * SMART App Launch scopes and the policy's decision over one classified
 * FHIR request.  See welby_scope.h.
 */

#include <string.h>

#include "welby_scope.h"


/*
 * What a request must prove about its patients in a patient/ or user/
 * context when it reads or writes resources of the Patient compartment
 * and does not name their patients (is not bound).
 */
typedef enum {
    WELBY_BIND_NONE = 0,    /* nothing read: the body is checked */
    WELBY_BIND_SEARCH,      /* unbound: patient_unbound */
    WELBY_BIND_ANSWER,      /* unbound: the answer is checked */
    WELBY_BIND_INSTANCE     /* unbound: patient_unverifiable */
} welby_bind_e;


/* which types beyond types[] a request needs its letters on */
#define WELBY_TYPES_LISTED       0
#define WELBY_TYPES_COMPARTMENT  1      /* every compartment type */
#define WELBY_TYPES_ALL          2      /* every type */


/* a bound on the type table's walk, far above R4's 145 types */
#define WELBY_TYPES_CAP          1024


/* Where a known operation may be invoked. */
#define WELBY_OP_ANY             0
#define WELBY_OP_PATIENT         1      /* Patient only */
#define WELBY_OP_OBSERVATION     2
#define WELBY_OP_TERMINOLOGY     3      /* types outside the compartment */
#define WELBY_OP_EXPORT          4      /* system, Patient, Group/{id} */

#define WELBY_LEVEL(l)           (1u << (l))
#define WELBY_LEVELS_TI          (WELBY_LEVEL(WELBY_FHIR_LEVEL_TYPE)        \
                                  | WELBY_LEVEL(WELBY_FHIR_LEVEL_INSTANCE))
#define WELBY_LEVELS_ALL         (WELBY_LEVELS_TI                           \
                                  | WELBY_LEVEL(WELBY_FHIR_LEVEL_SYSTEM))

typedef struct {
    const char              *name;      /* without '$' */
    unsigned                 levels;
    unsigned                 where;     /* WELBY_OP_* */
    unsigned                 letters;
} welby_operation_t;


/*
 * The operations the policy understands, by what they do to the data:
 * FHIR R4's operations on resources (Patient $everything reads the whole
 * compartment, $validate checks a resource without storing it, $meta
 * reads tags), Observation $lastn (a search), the terminology operations,
 * and Bulk Data $export.
 */
static const welby_operation_t  welby_operations[] = {
    { "everything", WELBY_LEVELS_TI, WELBY_OP_PATIENT,
      WELBY_SCOPE_R | WELBY_SCOPE_S },
    { "export", WELBY_LEVELS_ALL, WELBY_OP_EXPORT,
      WELBY_SCOPE_R | WELBY_SCOPE_S },
    { "validate", WELBY_LEVELS_TI, WELBY_OP_ANY, WELBY_SCOPE_C },
    { "meta", WELBY_LEVELS_ALL, WELBY_OP_ANY, WELBY_SCOPE_R },
    { "lastn", WELBY_LEVEL(WELBY_FHIR_LEVEL_TYPE), WELBY_OP_OBSERVATION,
      WELBY_SCOPE_S },
    { "expand", WELBY_LEVELS_TI, WELBY_OP_TERMINOLOGY, WELBY_SCOPE_R },
    { "lookup", WELBY_LEVELS_TI, WELBY_OP_TERMINOLOGY, WELBY_SCOPE_R },
    { "validate-code", WELBY_LEVELS_TI, WELBY_OP_TERMINOLOGY,
      WELBY_SCOPE_R },
    { "translate", WELBY_LEVELS_TI, WELBY_OP_TERMINOLOGY, WELBY_SCOPE_R },
    { "subsumes", WELBY_LEVELS_TI, WELBY_OP_TERMINOLOGY, WELBY_SCOPE_R },
    { NULL, 0, 0, 0 }
};


/* What one request needs, worked out once for every context. */
typedef struct {
    unsigned                 letters;
    unsigned                 types;     /* WELBY_TYPES_* */
    welby_bind_e             bind;
    unsigned                 system_only:1;
    unsigned                 granular:1;    /* granular scopes may count */
    unsigned                 compartment:1; /* touches compartment types */
    unsigned                 new_patient:1; /* creates a Patient */
} welby_need_t;


static void welby_scope_one(welby_scopes_t *s, const unsigned char *p,
    size_t n, unsigned char *out);
static int welby_scope_word(const unsigned char *p, size_t n,
    const char *word);
static int welby_scope_letters(const unsigned char *p, size_t n,
    unsigned *letters);
static int welby_scope_params(welby_scope_t *sc, size_t room,
    const unsigned char *p, size_t n, unsigned char *out);
static int welby_scope_decode(welby_str_t *dst, const unsigned char *p,
    size_t n, unsigned char *out);
static int welby_hex(unsigned char c);
static welby_reason_e welby_policy_need(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, welby_need_t *need);
static welby_reason_e welby_policy_operation(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, welby_need_t *need);
static int welby_policy_letters(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, const welby_need_t *need,
    unsigned context, int *refused);
static unsigned welby_policy_grants(const welby_fhir_request_t *req,
    const welby_scopes_t *scopes, unsigned context, int type,
    unsigned granular);
static int welby_policy_params_match(const welby_scope_t *sc,
    const welby_fhir_request_t *req);
static welby_reason_e welby_policy_patients(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, const welby_need_t *need,
    unsigned context, unsigned *check);
static int welby_str_eq(const welby_str_t *a, const welby_str_t *b);


void
welby_scopes_parse(welby_scopes_t *s, const unsigned char *scope,
    size_t len, unsigned char *scratch)
{
    size_t  i, start;

    /*
     * RFC 6749 section 3.3: scopes are separated by single spaces.  Each
     * scope decodes into scratch at its own offset: a decoded value is
     * never longer than its text, so no two scopes share bytes.
     */

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && scope[i] != ' ') {
            continue;
        }

        if (i > start) {
            welby_scope_one(s, scope + start, i - start, scratch + start);
        }

        start = i + 1;
    }
}


static void
welby_scope_one(welby_scopes_t *s, const unsigned char *p, size_t n,
    unsigned char *out)
{
    int             type;
    size_t          slash, dot, q;
    unsigned        context, letters, v1;
    welby_scope_t  *sc;

    for (slash = 0; slash < n && p[slash] != '/'; slash++) {
        /* void */
    }

    if (slash == n) {

        /* identity and launch scopes: they grant no resource access */

        if (welby_scope_word(p, n, "openid")
            || welby_scope_word(p, n, "profile")
            || welby_scope_word(p, n, "fhirUser")
            || welby_scope_word(p, n, "launch")
            || welby_scope_word(p, n, "online_access")
            || welby_scope_word(p, n, "offline_access"))
        {
            return;
        }

        goto ignored;
    }

    if (welby_scope_word(p, slash, "launch")) {
        return;     /* launch/patient, launch/encounter: context requests */
    }

    if (welby_scope_word(p, slash, "patient")) {
        context = WELBY_SCOPE_PATIENT;

    } else if (welby_scope_word(p, slash, "user")) {
        context = WELBY_SCOPE_USER;

    } else if (welby_scope_word(p, slash, "system")) {
        context = WELBY_SCOPE_SYSTEM;

    } else {
        goto ignored;
    }

    for (dot = slash + 1; dot < n && p[dot] != '.'; dot++) {
        /* void */
    }

    if (dot == n) {
        goto ignored;
    }

    if (dot - slash - 1 == 1 && p[slash + 1] == '*') {
        type = WELBY_FHIR_TYPE_NONE;

    } else {
        type = welby_fhir_type_find(p + slash + 1, dot - slash - 1);

        if (type == WELBY_FHIR_TYPE_NONE) {
            goto ignored;
        }
    }

    for (q = dot + 1; q < n && p[q] != '?'; q++) {
        /* void */
    }

    /* SMART v1: read is r and s, write is c, u and d, "*" all five */

    v1 = 1;

    if (welby_scope_word(p + dot + 1, q - dot - 1, "read")) {
        letters = WELBY_SCOPE_R | WELBY_SCOPE_S;

    } else if (welby_scope_word(p + dot + 1, q - dot - 1, "write")) {
        letters = WELBY_SCOPE_C | WELBY_SCOPE_U | WELBY_SCOPE_D;

    } else if (welby_scope_word(p + dot + 1, q - dot - 1, "*")) {
        letters = WELBY_SCOPE_ALL;

    } else if (welby_scope_letters(p + dot + 1, q - dot - 1, &letters)) {
        v1 = 0;

    } else {
        goto ignored;
    }

    if (s->n == WELBY_SCOPES_MAX) {
        goto ignored;
    }

    sc = &s->scopes[s->n];

    sc->context = context;
    sc->type = type;
    sc->letters = letters;
    sc->params = &s->params[s->nparams];
    sc->nparams = 0;

    if (q < n) {

        /*
         * Granular scopes are SMART v2 only, and what the request shows
         * of them is a search's parameters: only 's' can be checked.  A
         * granular scope without 's' grants nothing the gateway can
         * verify, so it grants nothing.
         */

        if (v1 || !(letters & WELBY_SCOPE_S)) {
            goto ignored;
        }

        if (!welby_scope_params(sc, WELBY_SCOPES_PARAMS_MAX - s->nparams,
                                p + q + 1, n - q - 1, out + q + 1))
        {
            goto ignored;
        }

        s->nparams += sc->nparams;

        sc->letters = WELBY_SCOPE_S;
    }

    s->n++;

    return;

ignored:

    s->ignored++;
}


static int
welby_scope_word(const unsigned char *p, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(p, word, n) == 0;
}


/* SMART v2: letters of "cruds", in that order, each at most once. */
static int
welby_scope_letters(const unsigned char *p, size_t n, unsigned *letters)
{
    size_t                i, next;
    const char           *c;
    static const char     order[] = "cruds";

    *letters = 0;
    next = 0;

    if (n == 0) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        c = memchr(order, p[i], sizeof(order) - 1);

        if (c == NULL || (size_t) (c - order) < next) {
            return 0;
        }

        next = (size_t) (c - order) + 1;
        *letters |= 1u << (c - order);
    }

    return 1;
}


/*
 * "name=value(&name=value)*", each part percent-decoded into out; room:
 * how many the shared array still holds.
 */
static int
welby_scope_params(welby_scope_t *sc, size_t room, const unsigned char *p,
    size_t n, unsigned char *out)
{
    size_t               i, start, eq, colon;
    welby_str_t          name;
    welby_fhir_param_t  *fp;

    start = 0;

    for (i = 0; i <= n; i++) {
        if (i < n && p[i] != '&') {
            continue;
        }

        for (eq = start; eq < i && p[eq] != '='; eq++) {
            /* void */
        }

        if (eq == start || eq >= i - 1
            || sc->nparams == WELBY_SCOPE_PARAMS_MAX || sc->nparams == room)
        {
            return 0;
        }

        fp = &sc->params[sc->nparams++];

        if (!welby_scope_decode(&name, p + start, eq - start, out + start)
            || !welby_scope_decode(&fp->value, p + eq + 1, i - eq - 1,
                                   out + eq + 1))
        {
            return 0;
        }

        /* "code:below=..." names a modifier, as a search would */

        for (colon = 0; colon < name.len && name.data[colon] != ':'; colon++)
        {
            /* void */
        }

        fp->name.data = name.data;
        fp->name.len = colon;
        fp->modifier.data = NULL;
        fp->modifier.len = 0;

        if (colon < name.len) {
            fp->modifier.data = name.data + colon + 1;
            fp->modifier.len = name.len - colon - 1;

            if (fp->modifier.len == 0) {
                return 0;
            }
        }

        if (fp->name.len == 0) {
            return 0;
        }

        start = i + 1;
    }

    return 1;
}


static int
welby_scope_decode(welby_str_t *dst, const unsigned char *p, size_t n,
    unsigned char *out)
{
    int     h, l;
    size_t  i, k;

    k = 0;

    for (i = 0; i < n; i++) {
        if (p[i] != '%') {
            out[k++] = p[i];
            continue;
        }

        if (n - i < 3) {
            return 0;
        }

        h = welby_hex(p[i + 1]);
        l = welby_hex(p[i + 2]);

        if (h < 0 || l < 0) {
            return 0;
        }

        out[k++] = (unsigned char) (h << 4 | l);
        i += 2;
    }

    dst->data = out;
    dst->len = k;

    return k > 0;
}


static int
welby_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


welby_reason_e
welby_policy_decide(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, welby_policy_result_t *res)
{
    int              refused, first_refused;
    unsigned         i, context, check, allowed_check, refused_set;
    welby_need_t     need;
    welby_reason_e   rc, patient_rc, system_rc;

    static const unsigned  contexts[] = {
        WELBY_SCOPE_PATIENT, WELBY_SCOPE_USER, WELBY_SCOPE_SYSTEM
    };

    memset(res, 0, sizeof(welby_policy_result_t));
    res->type = WELBY_FHIR_TYPE_NONE;

    rc = welby_policy_need(req, subj, &need);

    res->letters = need.letters;

    if (rc != WELBY_REASON_NONE) {
        res->type = req->type;
        return rc;
    }

    if (need.letters == 0) {
        /* capabilities; a Bundle, whose entries are decided one by one */
        return WELBY_REASON_NONE;
    }

    /*
     * One context must grant everything: letters on every type and every
     * patient reached.  A context that allows without the answer being
     * checked is preferred to one that needs the check.
     */

    allowed_check = 0;
    patient_rc = WELBY_REASON_NONE;
    system_rc = WELBY_REASON_NONE;
    first_refused = WELBY_FHIR_TYPE_NONE;
    refused_set = 0;

    for (i = 0; i < sizeof(contexts) / sizeof(contexts[0]); i++) {
        context = contexts[i];

        if (need.system_only && context != WELBY_SCOPE_SYSTEM) {
            continue;
        }

        /* patient/ scopes mean nothing without the patient they are for */

        if (context == WELBY_SCOPE_PATIENT
            && (subj->patient.data == NULL || subj->patient.len == 0))
        {
            continue;
        }

        refused = WELBY_FHIR_TYPE_NONE;

        if (!welby_policy_letters(req, subj, &need, context, &refused)) {
            if (!refused_set) {
                first_refused = refused;
                refused_set = 1;
            }

            continue;
        }

        if (context == WELBY_SCOPE_SYSTEM && !subj->system_ok) {
            system_rc = WELBY_REASON_SYSTEM_SCOPE_REFUSED;
            continue;
        }

        check = 0;
        rc = welby_policy_patients(req, subj, &need, context, &check);

        if (rc != WELBY_REASON_NONE) {
            if (patient_rc == WELBY_REASON_NONE) {
                patient_rc = rc;
            }

            continue;
        }

        if (!check) {
            res->context = context;
            return WELBY_REASON_NONE;
        }

        if (allowed_check == 0) {
            allowed_check = context;
        }
    }

    if (allowed_check) {
        res->context = allowed_check;
        res->check_response = 1;
        return WELBY_REASON_NONE;
    }

    if (patient_rc != WELBY_REASON_NONE) {
        return patient_rc;
    }

    if (system_rc != WELBY_REASON_NONE) {
        return system_rc;
    }

    res->type = refused_set ? first_refused : req->type;

    return WELBY_REASON_SCOPE_INSUFFICIENT;
}


int
welby_policy_patient_ok(const welby_policy_subject_t *subj,
    unsigned context, const unsigned char *id, size_t len)
{
    size_t       i;
    welby_str_t  s;

    s.data = id;
    s.len = len;

    if (len == 0) {
        return 0;
    }

    switch (context) {

    case WELBY_SCOPE_PATIENT:
        return subj->patient.data != NULL && welby_str_eq(&subj->patient, &s);

    case WELBY_SCOPE_USER:
        for (i = 0; i < subj->npatients; i++) {
            if (welby_str_eq(&subj->patients[i], &s)) {
                return 1;
            }
        }

        return 0;

    case WELBY_SCOPE_SYSTEM:
        return 1;

    default:
        return 0;
    }
}


/* The letters, types and proof of patients a request needs. */
static welby_reason_e
welby_policy_need(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, welby_need_t *need)
{
    size_t  i;

    memset(need, 0, sizeof(welby_need_t));

    switch (req->interaction) {

    case WELBY_FHIR_CAPABILITIES:
    case WELBY_FHIR_BATCH:
    case WELBY_FHIR_TRANSACTION:
        return WELBY_REASON_NONE;

    case WELBY_FHIR_READ:
    case WELBY_FHIR_VREAD:
    case WELBY_FHIR_HISTORY_INSTANCE:
        need->letters = WELBY_SCOPE_R;
        need->bind = WELBY_BIND_ANSWER;
        break;

    case WELBY_FHIR_UPDATE:
    case WELBY_FHIR_PATCH:
        need->letters = WELBY_SCOPE_U;
        need->bind = WELBY_BIND_INSTANCE;
        break;

    case WELBY_FHIR_DELETE:
        need->letters = WELBY_SCOPE_D;
        need->bind = WELBY_BIND_INSTANCE;
        break;

    case WELBY_FHIR_CREATE:
        need->letters = WELBY_SCOPE_C;
        need->bind = WELBY_BIND_NONE;
        need->new_patient = (req->type == welby_fhir_type_patient());
        break;

    case WELBY_FHIR_SEARCH_TYPE:
        need->letters = WELBY_SCOPE_S;
        need->bind = WELBY_BIND_SEARCH;
        need->granular = (req->type != WELBY_FHIR_TYPE_NONE);
        break;

    case WELBY_FHIR_SEARCH_SYSTEM:
    case WELBY_FHIR_HISTORY_TYPE:
    case WELBY_FHIR_HISTORY_SYSTEM:
        need->letters = WELBY_SCOPE_S;
        need->bind = WELBY_BIND_SEARCH;
        break;

    case WELBY_FHIR_OPERATION:
        if (welby_policy_operation(req, subj, need) != WELBY_REASON_NONE) {
            return WELBY_REASON_OPERATION_UNKNOWN;
        }

        break;

    default:
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    /* no type at all reads every type, compartment types among them */

    if (need->types != WELBY_TYPES_LISTED
        || (req->ntypes == 0 && req->type == WELBY_FHIR_TYPE_NONE))
    {
        need->compartment = 1;
    }

    if (welby_fhir_in_compartment(req->type)) {
        need->compartment = 1;
    }

    for (i = 0; i < req->ntypes && i < WELBY_FHIR_TYPES_MAX; i++) {
        if (welby_fhir_in_compartment(req->types[i])) {
            need->compartment = 1;
        }
    }

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_policy_operation(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, welby_need_t *need)
{
    size_t                    i, len;
    const unsigned char      *name;
    const welby_operation_t  *op;

    for (op = welby_operations; op->name != NULL; op++) {
        if (welby_scope_word(req->operation.data, req->operation.len,
                             op->name))
        {
            break;
        }
    }

    if (op->name == NULL) {

        /*
         * What an operation the gateway does not know does is unknown:
         * one the location lets through needs every letter on its types.
         */

        for (i = 0; i < subj->noperations; i++) {
            name = subj->operations[i].data;
            len = subj->operations[i].len;

            if (len > 0 && name[0] == '$') {
                name++;
                len--;
            }

            if (len > 0 && len == req->operation.len
                && memcmp(name, req->operation.data, len) == 0)
            {
                need->letters = WELBY_SCOPE_ALL;
                need->bind = (req->level == WELBY_FHIR_LEVEL_INSTANCE)
                             ? WELBY_BIND_INSTANCE : WELBY_BIND_SEARCH;
                return WELBY_REASON_NONE;
            }
        }

        return WELBY_REASON_OPERATION_UNKNOWN;
    }

    if (req->level > WELBY_FHIR_LEVEL_INSTANCE
        || !(op->levels & WELBY_LEVEL(req->level)))
    {
        return WELBY_REASON_OPERATION_UNKNOWN;
    }

    switch (op->where) {

    case WELBY_OP_PATIENT:
        if (req->type != welby_fhir_type_patient()) {
            return WELBY_REASON_OPERATION_UNKNOWN;
        }

        break;

    case WELBY_OP_OBSERVATION:
        if (req->type == WELBY_FHIR_TYPE_NONE
            || req->type != welby_fhir_type_find(
                                (const unsigned char *) "Observation", 11))
        {
            return WELBY_REASON_OPERATION_UNKNOWN;
        }

        break;

    case WELBY_OP_TERMINOLOGY:
        if (req->type == WELBY_FHIR_TYPE_NONE
            || welby_fhir_in_compartment(req->type))
        {
            return WELBY_REASON_OPERATION_UNKNOWN;
        }

        break;

    case WELBY_OP_EXPORT:
        if ((req->level == WELBY_FHIR_LEVEL_TYPE
             && req->type != welby_fhir_type_patient())
            || (req->level == WELBY_FHIR_LEVEL_INSTANCE
                && (req->type == WELBY_FHIR_TYPE_NONE
                    || req->type != welby_fhir_type_find(
                                        (const unsigned char *) "Group", 5))))
        {
            return WELBY_REASON_OPERATION_UNKNOWN;
        }

        break;

    default:
        break;
    }

    need->letters = op->letters;
    need->bind = (req->level == WELBY_FHIR_LEVEL_INSTANCE)
                 ? WELBY_BIND_INSTANCE : WELBY_BIND_SEARCH;

    if (op->where == WELBY_OP_PATIENT) {
        /* $everything reads the whole compartment of its patient */
        need->types = WELBY_TYPES_COMPARTMENT;
        need->bind = WELBY_BIND_SEARCH;

    } else if (op->where == WELBY_OP_EXPORT) {
        need->system_only = 1;

        /* without _type, an export is of every type it can reach */

        for (i = 0; i < req->nparams && i < WELBY_FHIR_PARAMS_MAX; i++) {
            if (welby_scope_word(req->params[i].name.data,
                                 req->params[i].name.len, "_type"))
            {
                break;
            }
        }

        if (i == req->nparams || i == WELBY_FHIR_PARAMS_MAX) {
            need->types = (req->level == WELBY_FHIR_LEVEL_SYSTEM)
                          ? WELBY_TYPES_ALL : WELBY_TYPES_COMPARTMENT;
        }

    } else if (op->where == WELBY_OP_OBSERVATION) {
        need->granular = 1;

    } else if (op->letters == WELBY_SCOPE_C) {

        /* $validate: a type's checks a body; an instance's reads it */

        if (req->level == WELBY_FHIR_LEVEL_INSTANCE) {
            need->letters |= WELBY_SCOPE_R;

        } else {
            need->bind = WELBY_BIND_NONE;
        }
    }

    return WELBY_REASON_NONE;
}


/* Whether the context's scopes grant the letters on every type needed. */
static int
welby_policy_letters(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, const welby_need_t *need,
    unsigned context, int *refused)
{
    int          t;
    size_t       i;
    unsigned     g;
    const char  *name;

    for (i = 0; i < req->ntypes && i < WELBY_FHIR_TYPES_MAX; i++) {
        t = req->types[i];
        g = welby_policy_grants(req, subj->scopes, context, t, need->granular);

        if ((g & need->letters) != need->letters) {
            *refused = t;
            return 0;
        }
    }

    if (req->ntypes == 0) {

        /* the path's type, or, with no type at all, "*" scopes only */

        t = req->type;
        g = welby_policy_grants(req, subj->scopes, context, t, need->granular);

        if ((g & need->letters) != need->letters) {
            *refused = t;
            return 0;
        }
    }

    if (need->types == WELBY_TYPES_LISTED) {
        return 1;
    }

    for (t = 0;
         t < WELBY_TYPES_CAP && (name = welby_fhir_type_name(t)) != NULL;
         t++)
    {
        if (need->types == WELBY_TYPES_COMPARTMENT
            && !welby_fhir_in_compartment(t))
        {
            continue;
        }

        g = welby_policy_grants(req, subj->scopes, context, t, 0);

        if ((g & need->letters) != need->letters) {
            *refused = t;
            return 0;
        }
    }

    return 1;
}


/* The letters a context's scopes grant on a type (NONE: "*" only). */
static unsigned
welby_policy_grants(const welby_fhir_request_t *req,
    const welby_scopes_t *scopes, unsigned context, int type,
    unsigned granular)
{
    size_t                i;
    unsigned              g;
    const welby_scope_t  *sc;

    if (scopes == NULL) {
        return 0;
    }

    g = 0;

    for (i = 0; i < scopes->n && i < WELBY_SCOPES_MAX; i++) {
        sc = &scopes->scopes[i];

        if (sc->context != context) {
            continue;
        }

        if (sc->type != WELBY_FHIR_TYPE_NONE && sc->type != type) {
            continue;
        }

        /*
         * A granular scope speaks of the searched type's parameters: it
         * counts for that type only, and only when the search carries
         * every one of its parameters with exactly its value.
         */

        if (sc->nparams > 0
            && (!granular || type != req->type
                || !welby_policy_params_match(sc, req)))
        {
            continue;
        }

        g |= sc->letters;
    }

    return g;
}


static int
welby_policy_params_match(const welby_scope_t *sc,
    const welby_fhir_request_t *req)
{
    size_t                     i, j;
    const welby_fhir_param_t  *a, *b;

    for (i = 0; i < sc->nparams && i < WELBY_SCOPE_PARAMS_MAX; i++) {
        a = &sc->params[i];

        for (j = 0; j < req->nparams && j < WELBY_FHIR_PARAMS_MAX; j++) {
            b = &req->params[j];

            if (welby_str_eq(&a->name, &b->name)
                && (a->modifier.data == NULL
                    ? b->modifier.data == NULL
                    : (b->modifier.data != NULL
                       && welby_str_eq(&a->modifier, &b->modifier)))
                && welby_str_eq(&a->value, &b->value))
            {
                break;
            }
        }

        if (j == req->nparams || j == WELBY_FHIR_PARAMS_MAX) {
            return 0;
        }
    }

    return 1;
}


/* Whether every patient the request reaches is the context's. */
static welby_reason_e
welby_policy_patients(const welby_fhir_request_t *req,
    const welby_policy_subject_t *subj, const welby_need_t *need,
    unsigned context, unsigned *check)
{
    size_t  i;

    *check = 0;

    if (context == WELBY_SCOPE_SYSTEM) {
        return WELBY_REASON_NONE;
    }

    for (i = 0; i < req->npatients && i < WELBY_FHIR_PATIENTS_MAX; i++) {
        if (!welby_policy_patient_ok(subj, context, req->patients[i].data,
                                     req->patients[i].len))
        {
            return WELBY_REASON_PATIENT_MISMATCH;
        }
    }

    /* a patient created under a patient's own grant is not that patient */

    if (need->new_patient && context == WELBY_SCOPE_PATIENT) {
        return WELBY_REASON_PATIENT_MISMATCH;
    }

    if (!need->compartment || (req->bound && req->npatients > 0)) {
        return WELBY_REASON_NONE;
    }

    switch (need->bind) {

    case WELBY_BIND_NONE:
        return WELBY_REASON_NONE;

    case WELBY_BIND_ANSWER:

        /* HEAD has no body to check */

        if (req->method & WELBY_FHIR_M_HEAD) {
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }

        *check = 1;
        return WELBY_REASON_NONE;

    case WELBY_BIND_INSTANCE:
        return WELBY_REASON_PATIENT_UNVERIFIABLE;

    default:
        return WELBY_REASON_PATIENT_UNBOUND;
    }
}


static int
welby_str_eq(const welby_str_t *a, const welby_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}
