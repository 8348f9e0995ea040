/*
 * Impossible travel (welby_travel).  A key (the token's subject, or its
 * jti) has a home: the country it was last allowed from, and when.  A
 * request from another country within the window of the home's last
 * request is travel: refused (or only alerted), and the home stays: a
 * token stolen abroad must not make its owner's country the foreign
 * one.  The other country and its time are kept for the alert.  Once
 * the home has been quiet for the window, the next country is the home.
 * A request whose country is unknown is never evidence: it neither
 * moves nor refreshes a home.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_travel.h"
#include "ngx_http_welby_geo.h"
#include "ngx_http_welby_zone.h"


#define NGX_HTTP_WELBY_BY_SUB  0x01
#define NGX_HTTP_WELBY_BY_JTI  0x02

#define NGX_HTTP_WELBY_TRAVEL_CHECK  0     /* decide, note travel */
#define NGX_HTTP_WELBY_TRAVEL_APPLY  1     /* decide, note, refresh */
#define NGX_HTTP_WELBY_TRAVEL_AFTER  2     /* refresh, a refusal decided */


struct ngx_http_welby_travel_conf_s {
    ngx_shm_zone_t             *zone;
    uint32_t                    space[2];   /* sub, jti */
    ngx_uint_t                  by;
    int64_t                     window;     /* ns */
    ngx_flag_t                  alert_only;
    ngx_http_welby_alert_t      alert;
    u_char                     *file;       /* the directive's, for errors */
    ngx_uint_t                  line;
};


typedef struct {
    int64_t                     seen;       /* the home's last request */
    int64_t                     other_seen; /* the other's last */
    int64_t                     alert_until;
    u_char                      home[2];
    u_char                      other[2];
    uint32_t                    reserved;
} ngx_http_welby_travel_rec_t;


typedef struct {
    ngx_http_welby_travel_conf_t  *tc;
    u_char                     *country;
    ngx_uint_t                  phase;
    ngx_uint_t                  travel;     /* out */
    ngx_uint_t                  alert;      /* out: write the alert */
} ngx_http_welby_travel_arg_t;


static ngx_int_t ngx_http_welby_travel_update(ngx_http_request_t *r,
    ngx_http_welby_travel_conf_t *tc, ngx_uint_t i, ngx_str_t *key,
    int64_t now, ngx_http_welby_travel_arg_t *arg);
static ngx_int_t ngx_http_welby_travel_key(ngx_http_request_t *r,
    welby_str_t *iss, welby_str_t *id, ngx_str_t *key);
static int64_t ngx_http_welby_travel_seen(void *data, ngx_uint_t fresh,
    int64_t now, void *arg);


static ngx_str_t  ngx_http_welby_travel_kind = ngx_string("travel");
static ngx_str_t  ngx_http_welby_travel_event =
    ngx_string("impossible_travel");


/*
 * welby_travel zone=<zone> window=<time> [by=sub|jti|both]
 *              [action=refuse|alert];
 * welby_travel off;
 */
char *
ngx_http_welby_travel_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_str_t                     *value, s, zone, name;
    ngx_uint_t                     i;
    ngx_msec_t                     ms;
    ngx_http_welby_travel_conf_t  *tc;

    static const char  *by[] = { "sub", "jti" };

    if (wlcf->travel != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->travel = NULL;
        return NGX_CONF_OK;
    }

    tc = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_travel_conf_t));
    if (tc == NULL) {
        return NGX_CONF_ERROR;
    }

    tc->by = NGX_HTTP_WELBY_BY_SUB;
    zone.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            zone.data = value[i].data + 5;
            zone.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;
            ms = ngx_parse_time(&s, 0);

            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            tc->window = (int64_t) ms * 1000000;
            continue;
        }

        if (ngx_strcmp(value[i].data, "by=sub") == 0) {
            tc->by = NGX_HTTP_WELBY_BY_SUB;
            continue;
        }

        if (ngx_strcmp(value[i].data, "by=jti") == 0) {
            tc->by = NGX_HTTP_WELBY_BY_JTI;
            continue;
        }

        if (ngx_strcmp(value[i].data, "by=both") == 0) {
            tc->by = NGX_HTTP_WELBY_BY_SUB|NGX_HTTP_WELBY_BY_JTI;
            continue;
        }

        if (ngx_strcmp(value[i].data, "action=refuse") == 0) {
            tc->alert_only = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "action=alert") == 0) {
            tc->alert_only = 1;
            continue;
        }

        goto invalid;
    }

    if (zone.len == 0 || tc->window == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_travel needs zone= and window=");
        return NGX_CONF_ERROR;
    }

    /* the homes are of the window: a reload that keeps it keeps them */

    for (i = 0; i < 2; i++) {
        name.data = ngx_pnalloc(cf->pool, sizeof("sub ") - 1 + NGX_INT64_LEN);
        if (name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        name.len = ngx_sprintf(name.data, "%s %L", by[i],
                               tc->window / 1000000)
                   - name.data;

        tc->space[i] = ngx_http_welby_zone_space(&ngx_http_welby_travel_kind,
                                                 &name);
    }

    tc->alert.name = ngx_http_welby_travel_event;
    tc->alert.event = NGX_HTTP_WELBY_ALERT_DETECTED;
    tc->alert.detected = NGX_HTTP_WELBY_DETECTED_TRAVEL;
    tc->alert.reason = WELBY_REASON_IMPOSSIBLE_TRAVEL;
    tc->alert.threshold = 2;
    tc->alert.window = (ngx_msec_t) (tc->window / 1000000);
    tc->alert.severity = WELBY_AUDIT_SEV_ALERT;

    tc->zone = ngx_http_welby_zone_use(cf, &zone);
    if (tc->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    tc->file = cf->conf_file->file.name.data;
    tc->line = cf->conf_file->line;

    wlcf->travel = tc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


char *
ngx_http_welby_travel_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_http_welby_main_conf_t  *wmcf;

    ngx_conf_merge_ptr_value(conf->travel, prev->travel, NULL);

    if (conf->travel == NULL) {
        return NGX_CONF_OK;
    }

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

    if (wmcf->geo == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"welby_travel\" in %s:%ui needs \"welby_geoip2\" "
                      "(the country database) in the http block",
                      conf->travel->file, conf->travel->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


welby_reason_e
ngx_http_welby_travel(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    int64_t                        now;
    ngx_str_t                      key[2], name;
    ngx_uint_t                     i, n, travel, force;
    welby_str_t                   *id;
    welby_claims_t                *c;
    ngx_http_welby_travel_arg_t    arg[2];
    ngx_http_welby_travel_conf_t  *tc;

    tc = wlcf->travel;

    if (tc == NULL || !ctx->token_valid) {
        return WELBY_REASON_NONE;
    }

    (void) ngx_http_welby_geo_lookup(r, ctx);

    /* an unknown country proves nothing, and changes nothing */

    if (ctx->country.len != 2) {
        return WELBY_REASON_NONE;
    }

    c = &ctx->claims;

    for (i = 0; i < 2; i++) {
        key[i].len = 0;

        if ((tc->by & (1 << i))
            && ngx_http_welby_travel_key(r, &c->iss,
                                         i == 0 ? &c->sub : &c->jti, &key[i])
               != NGX_OK)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    n = (key[0].len != 0) + (key[1].len != 0);

    if (n == 0) {
        return WELBY_REASON_NONE;
    }

    /* what reaches the backend moves no home either: alert, detect */
    force = tc->alert_only || wlcf->mode == NGX_HTTP_WELBY_DETECT;

    /* one instant for the request's homes */
    now = ngx_http_welby_now_ns();
    travel = 0;

    for (i = 0; i < 2; i++) {
        ngx_memzero(&arg[i], sizeof(ngx_http_welby_travel_arg_t));

        if (key[i].len == 0) {
            continue;
        }

        arg[i].tc = tc;
        arg[i].country = ctx->country.data;
        arg[i].phase = (n == 1) ? NGX_HTTP_WELBY_TRAVEL_APPLY
                                : NGX_HTTP_WELBY_TRAVEL_CHECK;

        if (ngx_http_welby_travel_update(r, tc, i, &key[i], now, &arg[i])
            != NGX_OK)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        travel |= arg[i].travel;
    }

    /* two keys: a request refused by one refreshes neither home */

    if (n == 2 && !(travel && !force)) {
        for (i = 0; i < 2; i++) {
            arg[i].phase = NGX_HTTP_WELBY_TRAVEL_AFTER;

            if (ngx_http_welby_travel_update(r, tc, i, &key[i], now, &arg[i])
                != NGX_OK)
            {
                return WELBY_REASON_INTERNAL_ERROR;
            }
        }
    }

    if (!travel) {
        return WELBY_REASON_NONE;
    }

    ctx->detected |= NGX_HTTP_WELBY_DETECTED_TRAVEL;

    for (i = 0; i < 2; i++) {
        if (arg[i].alert) {
            /* the record names the subject or the token, no place */

            id = (i == 0) ? &c->sub : &c->jti;
            name.data = (u_char *) id->data;
            name.len = id->len;

            ngx_http_welby_audit_alert(r, ctx, &tc->alert, &name, 2);
        }
    }

    if (tc->alert_only) {
        return WELBY_REASON_NONE;
    }

    return WELBY_REASON_IMPOSSIBLE_TRAVEL;
}


static ngx_int_t
ngx_http_welby_travel_update(ngx_http_request_t *r,
    ngx_http_welby_travel_conf_t *tc, ngx_uint_t i, ngx_str_t *key,
    int64_t now, ngx_http_welby_travel_arg_t *arg)
{
    if (ngx_http_welby_zone_update_at(tc->zone, tc->space[i], key,
                                      sizeof(ngx_http_welby_travel_rec_t),
                                      now, ngx_http_welby_travel_seen, arg,
                                      r->connection->log)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "welby: travel has no room in zone \"%V\"",
                      &tc->zone->shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* The issuer and the id, apart by a newline, which neither may hold. */
static ngx_int_t
ngx_http_welby_travel_key(ngx_http_request_t *r, welby_str_t *iss,
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


/* Under the zone's lock. */
static int64_t
ngx_http_welby_travel_seen(void *data, ngx_uint_t fresh, int64_t now,
    void *arg)
{
    ngx_http_welby_travel_rec_t  *rec = data;
    ngx_http_welby_travel_arg_t  *a = arg;

    int64_t                        keep, window;
    ngx_uint_t                     home;
    ngx_http_welby_travel_conf_t  *tc;

    tc = a->tc;
    window = tc->window;

    home = !fresh && now - rec->seen < window;

    if (home && ngx_memcmp(rec->home, a->country, 2) != 0) {

        /* travel: noted, the home stays */

        a->travel = 1;

        if (a->phase != NGX_HTTP_WELBY_TRAVEL_AFTER) {
            ngx_memcpy(rec->other, a->country, 2);
            rec->other_seen = now;

            if (now >= rec->alert_until) {
                rec->alert_until = now + window;
                a->alert = 1;
            }
        }

    } else if (a->phase != NGX_HTTP_WELBY_TRAVEL_CHECK) {

        if (!home && !fresh && ngx_memcmp(rec->home, a->country, 2) != 0) {
            /* the home was quiet long enough: this is the new one */
            ngx_memcpy(rec->other, rec->home, 2);
            rec->other_seen = rec->seen;
        }

        ngx_memcpy(rec->home, a->country, 2);
        rec->seen = now;
    }

    if (fresh && a->phase == NGX_HTTP_WELBY_TRAVEL_CHECK) {
        /* nothing to keep yet: the second phase makes the home */
        return now;
    }

    keep = ngx_max(rec->seen, rec->other_seen) + window;

    return ngx_max(keep, rec->alert_until);
}
