/*
 * Enumeration detection (welby_enumeration).  After the policy allowed a
 * request, the patients it names (the classifier's patients: the path's,
 * the compartment's, each compartment parameter's) are added to the set
 * of distinct patients its subject, and its client, reached in the
 * window (welby_distinct.c: exact up to exact= patients, a linear-
 * counting bitmap past them).  The request that would take a set past
 * the bound is refused, and its patients are not added; patients already
 * in the set never count again.  The window is fixed: it starts at a
 * key's first counted request and lasts window=.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_enumeration.h"
#include "ngx_http_welby_zone.h"
#include "welby_distinct.h"

#include <openssl/rand.h>


#define NGX_HTTP_WELBY_BY_SUB     0x01
#define NGX_HTTP_WELBY_BY_CLIENT  0x02

#define NGX_HTTP_WELBY_ENUM_CHECK  0   /* decide, change nothing */
#define NGX_HTTP_WELBY_ENUM_APPLY  1   /* decide and add */
#define NGX_HTTP_WELBY_ENUM_AFTER  2   /* add, or note a refusal decided */


struct ngx_http_welby_enumeration_conf_s {
    ngx_shm_zone_t             *zone;
    uint32_t                    space[2];   /* sub, client_id */
    ngx_uint_t                  by;
    int64_t                     window;     /* ns */
    ngx_flag_t                  alert_only; /* action=alert */
    welby_distinct_bound_t      bound;
    ngx_http_welby_alert_t      alert;

    /* the hash key of the sets this rule starts; each set keeps its own */
    u_char                      secret[16];
};


typedef struct {
    int64_t                     start;      /* of the window, ns */
    uint32_t                    alerted;    /* the window's alert written */
    uint32_t                    crossed;    /* the bound was reached */
    welby_distinct_t            set;
} ngx_http_welby_enumeration_rec_t;


typedef struct {
    ngx_http_welby_enumeration_conf_t  *ec;
    welby_fhir_request_t       *fhir;
    ngx_uint_t                  phase;
    ngx_uint_t                  force;      /* added even past the bound */
    ngx_uint_t                  refused;    /* AFTER: the request is */
    ngx_uint_t                  over;       /* out */
    ngx_uint_t                  alert;      /* out: write the alert */
    ngx_uint_t                  count;      /* out: with the request */
} ngx_http_welby_enumeration_arg_t;


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

    if (RAND_bytes(ec->secret, sizeof(ec->secret)) != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_enumeration: RAND_bytes() failed");
        return NGX_CONF_ERROR;
    }

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
    int64_t                             now;
    ngx_str_t                           key[2], name;
    ngx_uint_t                          i, n, over;
    welby_str_t                        *id;
    welby_claims_t                     *c;
    ngx_http_welby_enumeration_arg_t    arg[2];
    ngx_http_welby_enumeration_conf_t  *ec;

    ec = wlcf->enumeration;

    if (ec == NULL || ctx->fhir == NULL || ctx->fhir->npatients == 0
        || !ctx->token_valid)
    {
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

    n = (key[0].len != 0) + (key[1].len != 0);

    if (n == 0) {
        return WELBY_REASON_NONE;
    }

    for (i = 0; i < 2; i++) {
        ngx_memzero(&arg[i], sizeof(ngx_http_welby_enumeration_arg_t));

        arg[i].ec = ec;
        arg[i].fhir = ctx->fhir;

        /* what reaches the backend counts: alert and detect modes */
        arg[i].force = ec->alert_only || wlcf->mode == NGX_HTTP_WELBY_DETECT;

        arg[i].phase = (n == 1) ? NGX_HTTP_WELBY_ENUM_APPLY
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

    if (n == 2) {
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
    uint64_t                            h[WELBY_FHIR_PATIENTS_MAX];
    welby_distinct_t                    copy;
    welby_fhir_request_t               *fr;
    ngx_http_welby_enumeration_conf_t  *ec;

    ec = a->ec;
    fr = a->fhir;

    /* a record past its window is fresh: the window is fixed */

    if (fresh) {
        ngx_memzero(rec, sizeof(ngx_http_welby_enumeration_rec_t));
        rec->start = now;
        welby_distinct_init(&rec->set, ec->secret);
    }

    for (i = 0; i < fr->npatients; i++) {
        h[i] = welby_distinct_hash(&rec->set, fr->patients[i].data,
                                   fr->patients[i].len);
    }

    if (a->phase == NGX_HTTP_WELBY_ENUM_AFTER) {

        if (!a->refused) {
            (void) welby_distinct_add(&rec->set, h, fr->npatients,
                                      &ec->bound, 1);
        }

        return rec->start + ec->window;
    }

    copy = rec->set;

    rc = welby_distinct_add(&copy, h, fr->npatients, &ec->bound, 0);

    /*
     * Past the bound, the bitmap cannot tell a patient seen before from
     * a new one whose bit is taken: while refusing, every patient is
     * refused until the window ends.  The exact part can tell.
     */

    if (rc == WELBY_DISTINCT_SEEN && rec->crossed && !a->force
        && !welby_distinct_exact(&rec->set))
    {
        rc = WELBY_DISTINCT_OVER;
    }

    if (rc == WELBY_DISTINCT_OVER) {
        a->over = 1;
        rec->crossed = 1;

        a->count = welby_distinct_count_with(&rec->set, h, fr->npatients,
                                             &ec->bound);

        if (!rec->alerted) {
            rec->alerted = 1;
            a->alert = 1;
        }
    }

    if (a->phase == NGX_HTTP_WELBY_ENUM_APPLY && (!a->over || a->force)) {
        (void) welby_distinct_add(&rec->set, h, fr->npatients, &ec->bound,
                                  1);
    }

    return rec->start + ec->window;
}
