/*
 * Auth-failure throttling (welby_auth_throttle).  A failure is a token
 * the token step refused as invalid_token (malformed, badly signed,
 * expired, revoked, ...): not a missing token, which guesses nothing.
 * The times of a key's last N failures are kept in the zone, so "N
 * failures in the window" is exact: a sliding window.  The N-th starts a
 * ban of the key, twice as long as its previous one (up to max_ban),
 * counted from its first ban again once the key has been quiet for
 * max_ban after a ban.  The ban is checked in a step before the token
 * step: a banned client never costs a signature check.  Success resets
 * nothing: a valid token must not launder the failures around it.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_throttle.h"
#include "ngx_http_welby_geo.h"
#include "ngx_http_welby_zone.h"


/* failures= bound: the times of 250 fill the largest record a zone holds */
#define NGX_HTTP_WELBY_THROTTLE_MAX      250
#define NGX_HTTP_WELBY_THROTTLE_MAX_BAN  (86400 * 1000)  /* 24h, in ms */

#define NGX_HTTP_WELBY_NS  ((int64_t) 1000000000)

/*
 * An address as the zone's key: 4 bytes for IPv4, the prefix of an IPv6
 * address and its length for IPv6.
 */
#define NGX_HTTP_WELBY_THROTTLE_KEY  17


/* One rule of counting: per address, or per ASN. */
typedef struct {
    uint32_t                    space;
    ngx_uint_t                  failures;
    int64_t                     window;     /* ns */
    ngx_http_welby_alert_t      alert;      /* the ban's audit record */
} ngx_http_welby_throttle_count_t;


struct ngx_http_welby_throttle_conf_s {
    ngx_shm_zone_t             *zone;
    ngx_http_welby_throttle_count_t  ip;
    ngx_http_welby_throttle_count_t  asn;   /* failures 0: not per ASN */
    int64_t                     ban;        /* ns */
    int64_t                     max_ban;
    ngx_uint_t                  ipv6_prefix;    /* bits of a client */
    ngx_flag_t                  detect;     /* bans counted, none refused */
    u_char                     *file;       /* the directive's, for errors */
    ngx_uint_t                  line;
};


/*
 * A key's record: its bans and the times of its last failures, a ring
 * of `failures` slots (the record's size is fixed by the rule).
 */
typedef struct {
    int64_t                     ban_until;  /* the last ban's end, or 0 */
    int64_t                     last;       /* the last failure */
    uint32_t                    strikes;    /* bans since it was quiet */
    uint32_t                    next;       /* the ring's next slot */
    uint32_t                    count;      /* failures in the ring */
    uint32_t                    reserved;
    int64_t                     times[1];
} ngx_http_welby_throttle_rec_t;


typedef struct {
    ngx_http_welby_throttle_conf_t   *tc;
    ngx_http_welby_throttle_count_t  *count;
    int64_t                     ban_until;  /* out */
    int64_t                     ban;        /* out: a ban that began */
    ngx_uint_t                  strikes;    /* out: its number */
} ngx_http_welby_throttle_arg_t;


static ngx_int_t ngx_http_welby_throttle_count(ngx_conf_t *cf,
    ngx_str_t *value, ngx_uint_t skip, ngx_http_welby_throttle_count_t *c,
    const char *kind);
static ngx_int_t ngx_http_welby_throttle_time(ngx_str_t *s, int64_t *ns);
static size_t ngx_http_welby_throttle_size(
    ngx_http_welby_throttle_count_t *c);
static ngx_int_t ngx_http_welby_throttle_update(ngx_http_request_t *r,
    ngx_http_welby_throttle_conf_t *tc, ngx_http_welby_throttle_count_t *c,
    ngx_str_t *key, int64_t now, ngx_http_welby_zone_update_pt update,
    ngx_http_welby_throttle_arg_t *arg);
static int64_t ngx_http_welby_throttle_check(void *data, ngx_uint_t fresh,
    int64_t now, void *arg);
static int64_t ngx_http_welby_throttle_fail(void *data, ngx_uint_t fresh,
    int64_t now, void *arg);
static int64_t ngx_http_welby_throttle_keep(
    ngx_http_welby_throttle_rec_t *rec, ngx_http_welby_throttle_arg_t *a);
static ngx_uint_t ngx_http_welby_throttle_addr(ngx_http_request_t *r,
    ngx_http_welby_throttle_conf_t *tc, ngx_str_t *key, u_char *buf);
static size_t ngx_http_welby_throttle_name(ngx_str_t *key, u_char *text);
static ngx_uint_t ngx_http_welby_throttle_asn(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_str_t *key, u_char *buf);
static void ngx_http_welby_throttle_banned(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_throttle_count_t *c,
    ngx_http_welby_throttle_arg_t *arg, ngx_str_t *name);
static ngx_int_t ngx_http_welby_throttle_retry_after(ngx_http_request_t *r,
    int64_t left);


static ngx_str_t  ngx_http_welby_throttle_step = ngx_string("auth_throttle");
static ngx_str_t  ngx_http_welby_throttle_kind = ngx_string("auth_throttle");
static ngx_str_t  ngx_http_welby_throttle_event =
    ngx_string("auth_throttled");


/*
 * welby_auth_throttle zone=<zone> failures=<N>/<window> ban=<time>
 *                     [max_ban=<time>] [asn=<N>/<window>]
 *                     [ipv6_prefix=<bits>] [mode=detect];
 * welby_auth_throttle off;
 */
char *
ngx_http_welby_auth_throttle(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_int_t                        n;
    ngx_str_t                       *value, s, zone;
    ngx_uint_t                       i;
    ngx_http_welby_throttle_conf_t  *tc;

    if (wlcf->throttle != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->throttle = NULL;
        return NGX_CONF_OK;
    }

    tc = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_throttle_conf_t));
    if (tc == NULL) {
        return NGX_CONF_ERROR;
    }

    tc->max_ban = -1;
    tc->ipv6_prefix = 64;
    zone.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            zone.data = value[i].data + 5;
            zone.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "failures=", 9) == 0) {
            if (ngx_http_welby_throttle_count(cf, &value[i], 9, &tc->ip,
                                              "ip")
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "asn=", 4) == 0) {
            if (ngx_http_welby_throttle_count(cf, &value[i], 4, &tc->asn,
                                              "asn")
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ban=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (ngx_http_welby_throttle_time(&s, &tc->ban) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_ban=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            if (ngx_http_welby_throttle_time(&s, &tc->max_ban) != NGX_OK) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ipv6_prefix=", 12) == 0) {
            n = ngx_atoi(value[i].data + 12, value[i].len - 12);

            if (n == NGX_ERROR || n < 16 || n > 128) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\", ipv6_prefix= "
                                   "must be 16 to 128", &value[i]);
                return NGX_CONF_ERROR;
            }

            tc->ipv6_prefix = n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=detect") == 0) {
            tc->detect = 1;
            continue;
        }

        goto invalid;
    }

    if (zone.len == 0 || tc->ip.failures == 0 || tc->ban == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_auth_throttle needs zone=, failures= "
                           "and ban=");
        return NGX_CONF_ERROR;
    }

    if (tc->max_ban == -1) {
        tc->max_ban = ngx_max(tc->ban, (int64_t) NGX_HTTP_WELBY_THROTTLE_MAX_BAN
                                       * 1000000);

    } else if (tc->max_ban < tc->ban) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_auth_throttle max_ban= must not be "
                           "shorter than ban=");
        return NGX_CONF_ERROR;
    }

    tc->zone = ngx_http_welby_zone_use(cf, &zone);
    if (tc->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    tc->file = cf->conf_file->file.name.data;
    tc->line = cf->conf_file->line;

    wlcf->throttle = tc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * failures=<N>/<window> or asn=<N>/<window>; the namespace is named after
 * them, so a reload with the same counting keeps the bans.
 */
static ngx_int_t
ngx_http_welby_throttle_count(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t skip, ngx_http_welby_throttle_count_t *c, const char *kind)
{
    u_char     *p, *last;
    ngx_int_t   n;
    ngx_str_t   s, name;

    last = value->data + value->len;
    p = ngx_strlchr(value->data + skip, last, '/');

    if (p == NULL) {
        goto invalid;
    }

    n = ngx_atoi(value->data + skip, p - value->data - skip);

    s.data = p + 1;
    s.len = last - s.data;

    if (n == NGX_ERROR || n == 0 || n > NGX_HTTP_WELBY_THROTTLE_MAX
        || ngx_http_welby_throttle_time(&s, &c->window) != NGX_OK)
    {
        goto invalid;
    }

    c->failures = n;

    name.data = ngx_pnalloc(cf->pool, sizeof("asn ") - 1 + NGX_INT_T_LEN
                                      + 1 + NGX_INT64_LEN);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    name.len = ngx_sprintf(name.data, "%s %ui/%L", kind, c->failures,
                           c->window / 1000000)
               - name.data;

    c->space = ngx_http_welby_zone_space(&ngx_http_welby_throttle_kind,
                                         &name);

    c->alert.name = ngx_http_welby_throttle_event;
    c->alert.event = NGX_HTTP_WELBY_ALERT_DETECTED;
    c->alert.detected = NGX_HTTP_WELBY_DETECTED_THROTTLE;
    c->alert.reason = WELBY_REASON_AUTH_THROTTLED;
    c->alert.threshold = c->failures;
    c->alert.window = (ngx_msec_t) (c->window / 1000000);
    c->alert.severity = WELBY_AUDIT_SEV_ALERT;

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\", it must be "
                       "<count>/<window> with a count of 1 to %d, "
                       "as in 10/10m", value, NGX_HTTP_WELBY_THROTTLE_MAX);

    return NGX_ERROR;
}


/* A time of nginx's syntax (500ms, 10m, 1h), not 0, in nanoseconds. */
static ngx_int_t
ngx_http_welby_throttle_time(ngx_str_t *s, int64_t *ns)
{
    ngx_msec_t  ms;

    ms = ngx_parse_time(s, 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
        return NGX_ERROR;
    }

    *ns = (int64_t) ms * 1000000;

    return NGX_OK;
}


char *
ngx_http_welby_throttle_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_http_welby_main_conf_t  *wmcf;

    ngx_conf_merge_ptr_value(conf->throttle, prev->throttle, NULL);

    if (conf->throttle == NULL || conf->throttle->asn.failures == 0) {
        return NGX_CONF_OK;
    }

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

    if (wmcf->geo == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"welby_auth_throttle ... asn=\" in %s:%ui needs "
                      "\"welby_geoip2 ... asn=\" (the ASN database) in the "
                      "http block", conf->throttle->file,
                      conf->throttle->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


welby_reason_e
ngx_http_welby_throttle(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    int64_t                          now, until;
    ngx_str_t                        key;
    ngx_http_welby_throttle_arg_t    arg;
    ngx_http_welby_throttle_conf_t  *tc;
    u_char                           buf[NGX_HTTP_WELBY_THROTTLE_KEY];

    tc = wlcf->throttle;

    if (tc == NULL) {
        return WELBY_REASON_NONE;
    }

    ngx_memzero(&arg, sizeof(ngx_http_welby_throttle_arg_t));

    if (!ngx_http_welby_throttle_addr(r, tc, &key, buf)) {
        return WELBY_REASON_NONE;
    }

    now = ngx_http_welby_now_ns();

    if (ngx_http_welby_throttle_update(r, tc, &tc->ip, &key, now,
                                       ngx_http_welby_throttle_check, &arg)
        != NGX_OK)
    {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    until = arg.ban_until;

    /* a banned network refuses all its addresses */

    if (tc->asn.failures && ngx_http_welby_throttle_asn(r, ctx, &key, buf)) {
        ngx_memzero(&arg, sizeof(ngx_http_welby_throttle_arg_t));

        if (ngx_http_welby_throttle_update(r, tc, &tc->asn, &key, now,
                                           ngx_http_welby_throttle_check,
                                           &arg)
            != NGX_OK)
        {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        until = ngx_max(until, arg.ban_until);
    }

    if (until <= now) {
        return WELBY_REASON_NONE;
    }

    ctx->detected |= NGX_HTTP_WELBY_DETECTED_THROTTLE;

    if (tc->detect) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: detect id:%V step:%V reason:auth_throttled",
                      &ctx->request_id, &ngx_http_welby_throttle_step);
        return WELBY_REASON_NONE;
    }

    if (wlcf->mode == NGX_HTTP_WELBY_ENFORCE
        && ngx_http_welby_throttle_retry_after(r, until - now) != NGX_OK)
    {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    return WELBY_REASON_AUTH_THROTTLED;
}


void
ngx_http_welby_throttle_failed(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_reason_e reason)
{
    int64_t                          now;
    ngx_str_t                        key, name;
    ngx_http_welby_throttle_arg_t    arg;
    ngx_http_welby_throttle_conf_t  *tc;
    u_char                           buf[NGX_HTTP_WELBY_THROTTLE_KEY];
    u_char                           text[NGX_INET6_ADDRSTRLEN
                                          + sizeof("/128")];

    tc = wlcf->throttle;

    /* the refusals that carry invalid_token: a token was tried */

    if (tc == NULL || ctx->throttle_counted
        || reason < WELBY_REASON_TOKEN_TOO_LARGE
        || reason > WELBY_REASON_TOKEN_BINDING)
    {
        return;
    }

    ctx->throttle_counted = 1;
    now = ngx_http_welby_now_ns();

    if (ngx_http_welby_throttle_addr(r, tc, &key, buf)) {
        ngx_memzero(&arg, sizeof(ngx_http_welby_throttle_arg_t));

        if (ngx_http_welby_throttle_update(r, tc, &tc->ip, &key, now,
                                           ngx_http_welby_throttle_fail, &arg)
            == NGX_OK
            && arg.ban)
        {
            name.data = text;
            name.len = ngx_http_welby_throttle_name(&key, text);

            ngx_http_welby_throttle_banned(r, ctx, &tc->ip, &arg, &name);
        }
    }

    if (tc->asn.failures && ngx_http_welby_throttle_asn(r, ctx, &key, buf)) {
        ngx_memzero(&arg, sizeof(ngx_http_welby_throttle_arg_t));

        if (ngx_http_welby_throttle_update(r, tc, &tc->asn, &key, now,
                                           ngx_http_welby_throttle_fail, &arg)
            == NGX_OK
            && arg.ban)
        {
            name.data = text;
            name.len = ngx_sprintf(text, "AS%uD", ctx->asn) - text;

            ngx_http_welby_throttle_banned(r, ctx, &tc->asn, &arg, &name);
        }
    }
}


/* A ban began: one notice line and one alert record, naming the key. */
static void
ngx_http_welby_throttle_banned(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_throttle_count_t *c,
    ngx_http_welby_throttle_arg_t *arg, ngx_str_t *name)
{
    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "welby: auth_throttle bans %V for %L ms (ban %ui), id:%V",
                  name, arg->ban / 1000000, arg->strikes, &ctx->request_id);

    ngx_http_welby_audit_alert(r, ctx, &c->alert, name, c->failures);
}


static size_t
ngx_http_welby_throttle_size(ngx_http_welby_throttle_count_t *c)
{
    return offsetof(ngx_http_welby_throttle_rec_t, times)
           + c->failures * sizeof(int64_t);
}


static ngx_int_t
ngx_http_welby_throttle_update(ngx_http_request_t *r,
    ngx_http_welby_throttle_conf_t *tc, ngx_http_welby_throttle_count_t *c,
    ngx_str_t *key, int64_t now, ngx_http_welby_zone_update_pt update,
    ngx_http_welby_throttle_arg_t *arg)
{
    ngx_int_t  rc;

    arg->tc = tc;
    arg->count = c;

    /* the check reads only a live record: a new address costs none */

    if (update == ngx_http_welby_throttle_check) {
        rc = ngx_http_welby_zone_update_live(tc->zone, c->space, key,
                                             ngx_http_welby_throttle_size(c),
                                             now, update, arg,
                                             r->connection->log);
        if (rc == NGX_DECLINED) {
            return NGX_OK;
        }

    } else {
        rc = ngx_http_welby_zone_update_at(tc->zone, c->space, key,
                                           ngx_http_welby_throttle_size(c),
                                           now, update, arg,
                                           r->connection->log);
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "welby: auth_throttle has no room in zone \"%V\"",
                      &tc->zone->shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Under the zone's lock: only reads the ban. */
static int64_t
ngx_http_welby_throttle_check(void *data, ngx_uint_t fresh, int64_t now,
    void *arg)
{
    ngx_http_welby_throttle_rec_t  *rec = data;
    ngx_http_welby_throttle_arg_t  *a = arg;

    a->ban_until = rec->ban_until;

    /* a key never seen needs no record */

    if (fresh) {
        return now;
    }

    return ngx_http_welby_throttle_keep(rec, a);
}


/* Under the zone's lock: one more failure, and maybe a ban. */
static int64_t
ngx_http_welby_throttle_fail(void *data, ngx_uint_t fresh, int64_t now,
    void *arg)
{
    ngx_http_welby_throttle_rec_t  *rec = data;
    ngx_http_welby_throttle_arg_t  *a = arg;

    int64_t                          ban;
    ngx_uint_t                       n, k;
    ngx_http_welby_throttle_conf_t  *tc;

    tc = a->tc;
    n = a->count->failures;

    /* failures while banned (detect modes) count towards no other ban */

    if (rec->ban_until > now) {
        a->ban_until = rec->ban_until;
        return ngx_http_welby_throttle_keep(rec, a);
    }

    rec->last = now;
    rec->times[rec->next] = now;
    rec->next = (rec->next + 1) % n;

    if (rec->count < n) {
        rec->count++;
    }

    /* full, the oldest of the last n is in the next slot */

    if (rec->count == n && now - rec->times[rec->next] < a->count->window) {

        if (rec->ban_until && now - rec->ban_until >= tc->max_ban) {
            rec->strikes = 0;
        }

        /* doubled once per earlier ban, up to max_ban */

        ban = tc->ban;

        for (k = 0; k < rec->strikes && ban < tc->max_ban; k++) {
            ban *= 2;
        }

        ban = ngx_min(ban, tc->max_ban);

        rec->strikes++;
        rec->ban_until = now + ban;
        rec->count = 0;
        rec->next = 0;

        a->ban = ban;
        a->strikes = rec->strikes;
    }

    a->ban_until = rec->ban_until;

    return ngx_http_welby_throttle_keep(rec, a);
}


/*
 * Until the failures in the ring leave the window, and after a ban for
 * max_ban more: the quiet period after which the next ban is the first.
 */
static int64_t
ngx_http_welby_throttle_keep(ngx_http_welby_throttle_rec_t *rec,
    ngx_http_welby_throttle_arg_t *a)
{
    int64_t  keep;

    keep = rec->last + a->count->window;

    if (rec->ban_until) {
        keep = ngx_max(keep, rec->ban_until + a->tc->max_ban);
    }

    return keep;
}


/*
 * The client address after realip, as the zone's key: 4 bytes for IPv4,
 * and for an IPv6 address that embeds an IPv4 one (v4-mapped, 6to4,
 * Teredo, NAT64), that one: one IPv4 address stands behind each.  Any
 * other IPv6 address is keyed by its first ipv6_prefix bits and their
 * number: a subscriber picks any of the 2^64 addresses of its /64, and
 * would otherwise fail from each one as a new client.  0 for a
 * UNIX-domain client, which has no address to ban.
 */
static ngx_uint_t
ngx_http_welby_throttle_addr(ngx_http_request_t *r,
    ngx_http_welby_throttle_conf_t *tc, ngx_str_t *key, u_char *buf)
{
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    u_char               *p;
    ngx_uint_t            n, bits;
    struct sockaddr_in    v4;
    struct sockaddr_in6  *sin6;
#endif

    switch (r->connection->sockaddr->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) r->connection->sockaddr;
        ngx_memcpy(buf, &sin->sin_addr, 4);
        key->len = 4;
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) r->connection->sockaddr;
        p = sin6->sin6_addr.s6_addr;

        if (ngx_http_welby_geo_embedded(p, &v4) == NGX_OK) {
            ngx_memcpy(buf, &v4.sin_addr, 4);
            key->len = 4;
            break;
        }

        bits = tc->ipv6_prefix;
        n = (bits + 7) / 8;

        ngx_memcpy(buf, p, n);

        if (bits % 8) {
            buf[n - 1] &= (u_char) (0xff << (8 - bits % 8));
        }

        buf[n] = (u_char) bits;
        key->len = n + 1;

        break;
#endif

    default:
        return 0;
    }

    key->data = buf;

    return 1;
}


/*
 * What an address key bans, as text: the IPv4 address, the IPv6 one, or
 * the IPv6 network (2001:db8:1:2::/64).
 */
static size_t
ngx_http_welby_throttle_name(ngx_str_t *key, u_char *text)
{
#if (NGX_HAVE_INET6)
    u_char      *p;
    ngx_uint_t   bits;
    u_char       addr[16];
#endif

    if (key->len == 4) {
        return ngx_inet_ntop(AF_INET, key->data, text, NGX_INET_ADDRSTRLEN);
    }

#if (NGX_HAVE_INET6)
    bits = key->data[key->len - 1];

    ngx_memzero(addr, sizeof(addr));
    ngx_memcpy(addr, key->data, key->len - 1);

    p = text + ngx_inet6_ntop(addr, text, NGX_INET6_ADDRSTRLEN);

    if (bits < 128) {
        p = ngx_sprintf(p, "/%ui", bits);
    }

    return p - text;
#else
    return 0;
#endif
}


/* The client's ASN as 4 bytes, 0 when it is unknown. */
static ngx_uint_t
ngx_http_welby_throttle_asn(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_str_t *key, u_char *buf)
{
    if (ngx_http_welby_geo_asn(r, ctx) == 0) {
        return 0;
    }

    buf[0] = (u_char) (ctx->asn >> 24);
    buf[1] = (u_char) (ctx->asn >> 16);
    buf[2] = (u_char) (ctx->asn >> 8);
    buf[3] = (u_char) ctx->asn;

    key->data = buf;
    key->len = 4;

    return 1;
}


/* Retry-After: the ban's seconds left, rounded up. */
static ngx_int_t
ngx_http_welby_throttle_retry_after(ngx_http_request_t *r, int64_t left)
{
    ngx_str_t  value;

    static ngx_str_t  retry_after = ngx_string("Retry-After");

    value.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%L",
                            (left + NGX_HTTP_WELBY_NS - 1) / NGX_HTTP_WELBY_NS)
                - value.data;

    if (ngx_http_welby_push_header(&r->headers_out.headers, &retry_after,
                                   &value)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
