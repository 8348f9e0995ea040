/*
 * Enumeration detection (welby_enumeration).  After the policy allowed a
 * request, the patients it reaches (the classifier's patients: the
 * path's, the compartment's, each compartment parameter's; a write's
 * resource's and each entry's of a batch or transaction) are added to
 * the set of distinct patients its subject, and its client, reached in
 * the window (welby_distinct.c: exact up to exact= patients, a linear-
 * counting bitmap past them).  Where only the answer shows whose data a
 * read returns, the response check counts the answer's patients the same
 * way before any byte of it is sent.  The request that would take a set
 * past the bound is refused, and its patients are not added; patients
 * already in the set never count again.  The window is fixed: it starts
 * at a key's first counted request and lasts window=.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_enumeration.h"
#include "ngx_http_welby_zone.h"
#include "welby_compartment.h"
#include "welby_distinct.h"

#include <openssl/rand.h>


#define NGX_HTTP_WELBY_BY_SUB     0x01
#define NGX_HTTP_WELBY_BY_CLIENT  0x02

#define NGX_HTTP_WELBY_ENUM_CHECK  0   /* decide, change nothing */
#define NGX_HTTP_WELBY_ENUM_APPLY  1   /* decide and add */
#define NGX_HTTP_WELBY_ENUM_AFTER  2   /* add, or note a refusal decided */

/*
 * Ids added to a set at a time: the exact part compares each of one
 * call's ids with the others, so a Bundle of thousands of patients is
 * added in slices, and the lock is held for a time linear in them.
 */
#define NGX_HTTP_WELBY_ENUM_SLICE  64


struct ngx_http_welby_enumeration_conf_s {
    ngx_shm_zone_t             *zone;
    uint32_t                    space[2];   /* sub, client_id */
    ngx_uint_t                  by;
    int64_t                     window;     /* ns */
    ngx_flag_t                  alert_only; /* action=alert */
    welby_distinct_bound_t      bound;
    ngx_http_welby_alert_t      alert;

    /*
     * The set a window starts with, under this configuration's random
     * key; a set keeps its key across reloads.
     */
    welby_distinct_t            empty;
};


/*
 * alerted and crossed name the bound (count) they are of: a reload that
 * keeps the sets under another bound decides them afresh.
 */
typedef struct {
    int64_t                     start;      /* of the window, ns */
    uint32_t                    alerted;    /* the bound whose alert the
                                               window wrote, or 0 */
    uint32_t                    crossed;    /* the bound a request would
                                               have passed, or 0 */
    welby_distinct_t            set;
} ngx_http_welby_enumeration_rec_t;


/* One patient of a request, and its hash under the rule's key. */
typedef struct {
    uint64_t                    hash;
    welby_str_t                 id;
} ngx_http_welby_enumeration_id_t;


typedef struct {
    ngx_http_request_t         *r;
    ngx_array_t                *ids;        /* welby_str_t */
} ngx_http_welby_enumeration_collect_t;


typedef struct {
    ngx_http_welby_enumeration_conf_t  *ec;
    ngx_http_welby_enumeration_id_t    *ids;    /* distinct, by hash */
    uint64_t                   *h;          /* the hashes of ids */
    uint64_t                   *other;      /* room for them under a
                                               set's own key */
    size_t                      n;
    ngx_uint_t                  phase;
    ngx_uint_t                  force;      /* added even past the bound */
    ngx_uint_t                  refused;    /* AFTER: the request is */
    ngx_uint_t                  over;       /* out */
    ngx_uint_t                  alert;      /* out: write the alert */
    ngx_uint_t                  count;      /* out: with the request */
} ngx_http_welby_enumeration_arg_t;


static welby_reason_e ngx_http_welby_enumeration_decide(
    ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf, ngx_array_t *ids);
static int ngx_http_welby_enumeration_reached(void *data,
    const unsigned char *id, size_t len);
static ngx_int_t ngx_http_welby_enumeration_push(ngx_array_t *ids,
    const unsigned char *id, size_t len);
static ngx_int_t ngx_http_welby_enumeration_answer_add(ngx_array_t *ids,
    json_t *resource, welby_fhir_input_t *in);
static int ngx_libc_cdecl ngx_http_welby_enumeration_cmp(const void *one,
    const void *two);
static int ngx_http_welby_enumeration_add(welby_distinct_t *set,
    const uint64_t *h, size_t n, const welby_distinct_bound_t *b);
static unsigned ngx_http_welby_enumeration_count_with(welby_distinct_t *set,
    welby_distinct_t *with, const uint64_t *h, size_t n,
    const welby_distinct_bound_t *b);
static ngx_int_t ngx_http_welby_enumeration_key(ngx_http_request_t *r,
    welby_str_t *iss, welby_str_t *id, ngx_str_t *key);
static ngx_int_t ngx_http_welby_enumeration_update(ngx_http_request_t *r,
    ngx_http_welby_enumeration_conf_t *ec, ngx_uint_t i, ngx_str_t *key,
    int64_t now, ngx_http_welby_enumeration_arg_t *arg);
static int64_t ngx_http_welby_enumeration_count(void *data,
    ngx_uint_t fresh, int64_t now, void *arg);


static ngx_str_t  ngx_http_welby_enumeration_kind = ngx_string("enumeration");
static ngx_str_t  ngx_http_welby_enumeration_event =
    ngx_string("enumeration");


/*
 * welby_enumeration zone=<zone> patients=<N>/<window>
 *                   [by=sub|client_id|both] [action=refuse|alert]
 *                   [exact=<E>];
 * welby_enumeration off;
 */
char *
ngx_http_welby_enumeration_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    u_char                             *p, *last;
    ngx_int_t                           n, exact;
    ngx_str_t                          *value, s, zone, name;
    ngx_uint_t                          i;
    ngx_msec_t                          ms;
    ngx_http_welby_enumeration_conf_t  *ec;
    u_char                              secret[16];

    static const char  *by[] = { "sub", "client_id" };

    if (wlcf->enumeration != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->enumeration = NULL;
        return NGX_CONF_OK;
    }

    ec = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_enumeration_conf_t));
    if (ec == NULL) {
        return NGX_CONF_ERROR;
    }

    ec->by = NGX_HTTP_WELBY_BY_SUB;
    zone.len = 0;
    n = 0;
    exact = WELBY_DISTINCT_EXACT_MAX;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            zone.data = value[i].data + 5;
            zone.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "patients=", 9) == 0) {
            last = value[i].data + value[i].len;
            p = ngx_strlchr(value[i].data + 9, last, '/');

            if (p == NULL) {
                goto bound;
            }

            n = ngx_atoi(value[i].data + 9, p - value[i].data - 9);

            s.data = p + 1;
            s.len = last - s.data;
            ms = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0 || n > WELBY_DISTINCT_LIMIT_MAX
                || ms == (ngx_msec_t) NGX_ERROR || ms == 0)
            {
                goto bound;
            }

            ec->window = (int64_t) ms * 1000000;
            continue;
        }

        if (ngx_strcmp(value[i].data, "by=sub") == 0) {
            ec->by = NGX_HTTP_WELBY_BY_SUB;
            continue;
        }

        if (ngx_strcmp(value[i].data, "by=client_id") == 0) {
            ec->by = NGX_HTTP_WELBY_BY_CLIENT;
            continue;
        }

        if (ngx_strcmp(value[i].data, "by=both") == 0) {
            ec->by = NGX_HTTP_WELBY_BY_SUB|NGX_HTTP_WELBY_BY_CLIENT;
            continue;
        }

        if (ngx_strcmp(value[i].data, "action=refuse") == 0) {
            ec->alert_only = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "action=alert") == 0) {
            ec->alert_only = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "exact=", 6) == 0) {
            exact = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (exact == NGX_ERROR || exact == 0
                || exact > WELBY_DISTINCT_EXACT_MAX)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\", exact= must "
                                   "be 1 to %d", &value[i],
                                   WELBY_DISTINCT_EXACT_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (zone.len == 0 || n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_enumeration needs zone= and patients=");
        return NGX_CONF_ERROR;
    }

    if (welby_distinct_bound(&ec->bound, (unsigned) n, (unsigned) exact)
        != 0)
    {
        goto bound;
    }

    /*
     * The sets are of the window and of the exact part: a reload that
     * keeps both keeps the sets, whatever the bound.
     */

    for (i = 0; i < 2; i++) {
        name.data = ngx_pnalloc(cf->pool, sizeof("client_id //") - 1
                                          + NGX_INT64_LEN + NGX_INT_T_LEN);
        if (name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        name.len = ngx_sprintf(name.data, "%s %L/%i", by[i],
                               ec->window / 1000000, exact)
                   - name.data;

        ec->space[i] = ngx_http_welby_zone_space(
                                      &ngx_http_welby_enumeration_kind, &name);
    }

    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_enumeration: RAND_bytes() failed");
        return NGX_CONF_ERROR;
    }

    welby_distinct_init(&ec->empty, secret);
    ngx_explicit_memzero(secret, sizeof(secret));

    ec->alert.name = ngx_http_welby_enumeration_event;
    ec->alert.event = NGX_HTTP_WELBY_ALERT_DETECTED;
    ec->alert.detected = NGX_HTTP_WELBY_DETECTED_ENUMERATION;
    ec->alert.reason = WELBY_REASON_ENUMERATION;
    ec->alert.threshold = n;
    ec->alert.window = (ngx_msec_t) (ec->window / 1000000);
    ec->alert.severity = WELBY_AUDIT_SEV_ALERT;

    ec->zone = ngx_http_welby_zone_use(cf, &zone);
    if (ec->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    wlcf->enumeration = ec;

    return NGX_CONF_OK;

bound:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\", it must be "
                       "patients=<count>/<window> with a count of 1 to %d "
                       "(the distinct count's accurate range), as in "
                       "patients=100/1h", &value[i], WELBY_DISTINCT_LIMIT_MAX);

    return NGX_CONF_ERROR;
}


welby_reason_e
ngx_http_welby_enumeration(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    size_t                                 i;
    ngx_array_t                           *ids;
    welby_fhir_request_t                  *fr;
    ngx_http_welby_enumeration_collect_t   c;

    fr = ctx->fhir;

    if (wlcf->enumeration == NULL || fr == NULL || !ctx->token_valid) {
        return WELBY_REASON_NONE;
    }

    ids = ngx_array_create(r->pool, ngx_max(fr->npatients, 4),
                           sizeof(welby_str_t));
    if (ids == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    for (i = 0; i < fr->npatients; i++) {
        if (ngx_http_welby_enumeration_push(ids, fr->patients[i].data,
                                            fr->patients[i].len)
            != NGX_OK)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    /*
     * A write reaches the patients its body names, a batch those of each
     * of its entries: a Bundle of reads of a hundred patients is a
     * hundred patients, not none.
     */

    if (ctx->body_json != NULL) {
        c.r = r;
        c.ids = ids;

        if (welby_compartment_reached(fr, ctx->body_json, ctx->fhir_in.bases,
                                      ctx->fhir_in.nbases,
                                      ngx_http_welby_enumeration_reached, &c)
            != WELBY_REASON_NONE)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    return ngx_http_welby_enumeration_decide(r, ctx, wlcf, ids);
}


welby_reason_e
ngx_http_welby_enumeration_answer(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    json_t *answer)
{
    size_t        i;
    json_t       *entries, *entry, *rt;
    ngx_array_t  *ids;

    if (wlcf->enumeration == NULL || ctx->fhir == NULL || !ctx->token_valid)
    {
        return WELBY_REASON_NONE;
    }

    ids = ngx_array_create(r->pool, 4, sizeof(welby_str_t));
    if (ids == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    /* a searchset or a history: each entry's resource */

    rt = json_object_get(answer, "resourceType");

    if (json_is_string(rt) && ngx_strcmp(json_string_value(rt), "Bundle") == 0)
    {
        entries = json_object_get(answer, "entry");

        if (json_is_array(entries)) {
            json_array_foreach(entries, i, entry) {
                if (ngx_http_welby_enumeration_answer_add(ids,
                        json_object_get(entry, "resource"), &ctx->fhir_in)
                    != NGX_OK)
                {
                    return WELBY_REASON_INTERNAL_ERROR;
                }
            }
        }

    } else if (ngx_http_welby_enumeration_answer_add(ids, answer,
                                                     &ctx->fhir_in)
               != NGX_OK)
    {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    return ngx_http_welby_enumeration_decide(r, ctx, wlcf, ids);
}


/* The compartment patients of one resource of an answer. */
static ngx_int_t
ngx_http_welby_enumeration_answer_add(ngx_array_t *ids, json_t *resource,
    welby_fhir_input_t *in)
{
    size_t               i;
    welby_patient_set_t  set;

    /* the answer check read every resource it let through */

    if (resource == NULL
        || welby_compartment_patients(resource, NULL, in->bases, in->nbases,
                                      &set)
           != WELBY_REASON_NONE)
    {
        return NGX_OK;
    }

    for (i = 0; i < set.n; i++) {
        if (ngx_http_welby_enumeration_push(ids, set.ids[i].data,
                                            set.ids[i].len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* welby_compartment_reached()'s callback: its ids live only for the call */
static int
ngx_http_welby_enumeration_reached(void *data, const unsigned char *id,
    size_t len)
{
    ngx_http_welby_enumeration_collect_t *c = data;

    u_char  *p;

    p = ngx_pnalloc(c->r->pool, len);
    if (p == NULL) {
        return -1;
    }

    ngx_memcpy(p, id, len);

    return ngx_http_welby_enumeration_push(c->ids, p, len) == NGX_OK ? 0 : -1;
}


static ngx_int_t
ngx_http_welby_enumeration_push(ngx_array_t *ids, const unsigned char *id,
    size_t len)
{
    welby_str_t  *s;

    s = ngx_array_push(ids);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->data = id;
    s->len = len;

    return NGX_OK;
}


/* The patients ids reached, added to the sets of the token's keys. */
static welby_reason_e
ngx_http_welby_enumeration_decide(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    ngx_array_t *ids)
{
    size_t                              i, k, n;
    int64_t                             now;
    uint64_t                           *h, *other;
    ngx_str_t                           key[2], name;
    ngx_uint_t                          nkeys, over;
    welby_str_t                        *id, *s;
    welby_claims_t                     *c;
    ngx_http_welby_enumeration_id_t    *d;
    ngx_http_welby_enumeration_arg_t    arg[2];
    ngx_http_welby_enumeration_conf_t  *ec;

    ec = wlcf->enumeration;

    if (ids->nelts == 0) {
        return WELBY_REASON_NONE;
    }

    c = &ctx->claims;

    for (i = 0; i < 2; i++) {
        key[i].len = 0;

        if (!(ec->by & (1 << i))) {
            continue;
        }

        if (ngx_http_welby_enumeration_key(r, &c->iss,
                                           i == 0 ? &c->sub : &c->client_id,
                                           &key[i])
            != NGX_OK)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    nkeys = (key[0].len != 0) + (key[1].len != 0);

    if (nkeys == 0) {
        return WELBY_REASON_NONE;
    }

    /*
     * Hashed and made distinct here, outside the zone's lock; under it,
     * only a set of an earlier configuration's key hashes them again.
     */

    n = ids->nelts;
    s = ids->elts;

    d = ngx_palloc(r->pool, n * sizeof(ngx_http_welby_enumeration_id_t));
    h = ngx_palloc(r->pool, 2 * n * sizeof(uint64_t));

    if (d == NULL || h == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    for (i = 0; i < n; i++) {
        d[i].hash = welby_distinct_hash(&ec->empty, s[i].data, s[i].len);
        d[i].id = s[i];
    }

    ngx_qsort(d, n, sizeof(ngx_http_welby_enumeration_id_t),
              ngx_http_welby_enumeration_cmp);

    for (i = 0, k = 0; i < n; i++) {
        if (k == 0 || d[i].hash != d[k - 1].hash) {
            d[k++] = d[i];
        }
    }

    n = k;
    other = h + n;

    for (i = 0; i < n; i++) {
        h[i] = d[i].hash;
    }

    for (i = 0; i < 2; i++) {
        ngx_memzero(&arg[i], sizeof(ngx_http_welby_enumeration_arg_t));

        arg[i].ec = ec;
        arg[i].ids = d;
        arg[i].h = h;
        arg[i].other = other;
        arg[i].n = n;

        /* what reaches the backend counts: alert and detect modes */
        arg[i].force = ec->alert_only || wlcf->mode == NGX_HTTP_WELBY_DETECT;

        arg[i].phase = (nkeys == 1) ? NGX_HTTP_WELBY_ENUM_APPLY
                                    : NGX_HTTP_WELBY_ENUM_CHECK;
    }

    /* one instant for the request's sets */
    now = ngx_http_welby_now_ns();
    over = 0;

    for (i = 0; i < 2; i++) {
        if (key[i].len
            && ngx_http_welby_enumeration_update(r, ec, i, &key[i], now,
                                                 &arg[i])
               != NGX_OK)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        over |= arg[i].over;
    }

    /* two sets: a request refused by one is added to neither */

    if (nkeys == 2) {
        for (i = 0; i < 2; i++) {
            arg[i].phase = NGX_HTTP_WELBY_ENUM_AFTER;
            arg[i].refused = over && !arg[i].force;

            if (ngx_http_welby_enumeration_update(r, ec, i, &key[i], now,
                                                  &arg[i])
                != NGX_OK)
            {
                return WELBY_REASON_INTERNAL_ERROR;
            }
        }
    }

    if (!over) {
        return WELBY_REASON_NONE;
    }

    ctx->detected |= NGX_HTTP_WELBY_DETECTED_ENUMERATION;

    for (i = 0; i < 2; i++) {
        if (arg[i].alert) {
            /* the record names the subject or the client, no patient */

            id = (i == 0) ? &c->sub : &c->client_id;
            name.data = (u_char *) id->data;
            name.len = id->len;

            ngx_http_welby_audit_alert(r, ctx, &ec->alert, &name,
                                       arg[i].count);
        }
    }

    if (ec->alert_only) {
        return WELBY_REASON_NONE;
    }

    return WELBY_REASON_ENUMERATION;
}


static int ngx_libc_cdecl
ngx_http_welby_enumeration_cmp(const void *one, const void *two)
{
    const ngx_http_welby_enumeration_id_t  *a = one;
    const ngx_http_welby_enumeration_id_t  *b = two;

    return (a->hash > b->hash) - (a->hash < b->hash);
}


/*
 * The issuer and the id, apart by a newline, which neither may hold: two
 * issuers' subjects of the same name never share a set.  An empty key
 * when the token has no such id.
 */
static ngx_int_t
ngx_http_welby_enumeration_key(ngx_http_request_t *r, welby_str_t *iss,
    welby_str_t *id, ngx_str_t *key)
{
    u_char  *p;

    if (id->len == 0) {
        key->len = 0;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, iss->len + 1 + id->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;

    p = ngx_cpymem(p, iss->data, iss->len);
    *p++ = '\n';
    p = ngx_cpymem(p, id->data, id->len);

    key->len = p - key->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_enumeration_update(ngx_http_request_t *r,
    ngx_http_welby_enumeration_conf_t *ec, ngx_uint_t i, ngx_str_t *key,
    int64_t now, ngx_http_welby_enumeration_arg_t *arg)
{
    if (ngx_http_welby_zone_update_at(ec->zone, ec->space[i], key,
                                      sizeof(ngx_http_welby_enumeration_rec_t),
                                      now, ngx_http_welby_enumeration_count,
                                      arg, r->connection->log)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "welby: enumeration has no room in zone \"%V\"",
                      &ec->zone->shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Under the zone's lock. */
static int64_t
ngx_http_welby_enumeration_count(void *data, ngx_uint_t fresh, int64_t now,
    void *arg)
{
    ngx_http_welby_enumeration_rec_t  *rec = data;
    ngx_http_welby_enumeration_arg_t  *a = arg;

    int                                 rc;
    size_t                              i;
    uint32_t                            limit;
    uint64_t                           *h;
    welby_distinct_t                    with;
    ngx_http_welby_enumeration_conf_t  *ec;

    ec = a->ec;
    limit = ec->bound.limit;

    /* a record past its window is fresh: the window is fixed */

    if (fresh) {
        ngx_memzero(rec, sizeof(ngx_http_welby_enumeration_rec_t));
        rec->start = now;
        rec->set = ec->empty;
    }

    h = a->h;

    if (ngx_memcmp(rec->set.key, ec->empty.key, sizeof(rec->set.key)) != 0) {
        h = a->other;

        for (i = 0; i < a->n; i++) {
            h[i] = welby_distinct_hash(&rec->set, a->ids[i].id.data,
                                       a->ids[i].id.len);
        }
    }

    if (a->phase == NGX_HTTP_WELBY_ENUM_AFTER) {

        if (!a->refused) {
            (void) ngx_http_welby_enumeration_add(&rec->set, h, a->n,
                                                  &ec->bound);
        }

        return rec->start + ec->window;
    }

    with = rec->set;

    rc = ngx_http_welby_enumeration_add(&with, h, a->n, &ec->bound);

    /*
     * Past the bound, the bitmap cannot tell a patient seen before from
     * a new one whose bit is taken: while refusing, every patient is
     * refused until the window ends.  The exact part can tell.
     */

    if (rc == WELBY_DISTINCT_SEEN && rec->crossed == limit && !a->force
        && !welby_distinct_exact(&rec->set))
    {
        rc = WELBY_DISTINCT_OVER;
    }

    if (rc == WELBY_DISTINCT_OVER) {
        a->over = 1;
        rec->crossed = limit;

        a->count = ngx_http_welby_enumeration_count_with(&rec->set, &with, h,
                                                         a->n, &ec->bound);

        if (rec->alerted != limit) {
            rec->alerted = limit;
            a->alert = 1;
        }
    }

    if (a->phase == NGX_HTTP_WELBY_ENUM_APPLY && (!a->over || a->force)) {
        rec->set = with;
    }

    return rec->start + ec->window;
}


/*
 * All of h[0..n-1] (distinct) added to set, a slice at a time, even past
 * the bound: WELBY_DISTINCT_SEEN when none was new, OVER when the set
 * with them passes the bound, else ADDED.
 */
static int
ngx_http_welby_enumeration_add(welby_distinct_t *set, const uint64_t *h,
    size_t n, const welby_distinct_bound_t *b)
{
    int     rc, result;
    size_t  i, k;

    result = WELBY_DISTINCT_SEEN;

    for (i = 0; i < n; i += k) {
        k = ngx_min(n - i, NGX_HTTP_WELBY_ENUM_SLICE);

        rc = welby_distinct_add(set, h + i, k, b, 1);

        if (rc == WELBY_DISTINCT_OVER
            || (rc == WELBY_DISTINCT_ADDED && result == WELBY_DISTINCT_SEEN))
        {
            result = rc;
        }
    }

    return result;
}


/*
 * The count the set would have with h[0..n-1] (with: the set with them):
 * exact while the set is, else the estimate.
 */
static unsigned
ngx_http_welby_enumeration_count_with(welby_distinct_t *set,
    welby_distinct_t *with, const uint64_t *h, size_t n,
    const welby_distinct_bound_t *b)
{
    size_t    i, k;
    unsigned  count;

    if (!welby_distinct_exact(set)) {
        return welby_distinct_estimate(with);
    }

    /* the slices are distinct: each one's new ids, counted exactly */

    count = welby_distinct_estimate(set);

    for (i = 0; i < n; i += k) {
        k = ngx_min(n - i, NGX_HTTP_WELBY_ENUM_SLICE);
        count += welby_distinct_count_with(set, h + i, k, b)
                 - welby_distinct_estimate(set);
    }

    return count;
}
