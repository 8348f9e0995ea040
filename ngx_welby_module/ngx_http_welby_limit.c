/*
 * welby_limit: named rate limits (GCRA, welby_gcra.c) with hourly and
 * daily quotas, per key, counted by all workers together in a welby_zone.
 *
 * Two steps of the pipeline run them: limit_address, before the token
 * step, for the rules keyed by the connection (the address, a variable
 * not derived from the token), so that a flood without tokens never
 * costs a signature check; limit_identity, after the policy, for the
 * rules keyed by the token and the request it allowed (the subject, the
 * client, the patients, a $welby_* variable of the token).
 *
 * Each step decides its rules as limit_req does, in two passes: every
 * (rule, key) is checked, the last one checked and charged at once, and
 * only when none refused are the others charged; a refused request
 * charges nothing.  A rule charges a request once, whatever internal
 * redirects run the steps again.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_limit.h"
#include "ngx_http_welby_metrics.h"
#include "ngx_http_welby_zone.h"
#include "welby_gcra.h"

#include <openssl/evp.h>


#define NGX_HTTP_WELBY_LIMIT_KEY_IP         0
#define NGX_HTTP_WELBY_LIMIT_KEY_SUB        1
#define NGX_HTTP_WELBY_LIMIT_KEY_CLIENT_ID  2
#define NGX_HTTP_WELBY_LIMIT_KEY_PATIENT    3
#define NGX_HTTP_WELBY_LIMIT_KEY_VARIABLE   4

#define NGX_HTTP_WELBY_LIMIT_NAME_MAX       32

/*
 * A string key (a subject, a client, a patient, a variable's value) is
 * kept as the first 16 bytes of its SHA-256: every record is the same
 * 128 bytes whatever the key's length, and the zone holds no identifier
 * in clear.  Finding two values with the same 128 bits costs 2^64.
 */
#define NGX_HTTP_WELBY_LIMIT_KEY_LEN        16

/* the keys of a step kept on the stack before the pool is used */
#define NGX_HTTP_WELBY_LIMIT_STACK          4


typedef struct {
    ngx_str_t                       name;
    uint32_t                        space;
    ngx_shm_zone_t                 *zone;
    ngx_uint_t                      key;        /* ..._LIMIT_KEY_* */
    ngx_uint_t                      ipv6_prefix;    /* key=ip: bits */
    ngx_http_complex_value_t       *value;      /* key=$... */
    ngx_flag_t                      identity;   /* limit_identity's */
    ngx_flag_t                      detect;     /* mode=detect */
    welby_gcra_limit_t              limit;
    ngx_uint_t                      metric;     /* rate_limited_total */

    /* "name", "name.hour", "name.day" quoted, and each policy item */
    ngx_str_t                       label[WELBY_GCRA_WINDOWS];
    ngx_str_t                       policy[WELBY_GCRA_WINDOWS];
} ngx_http_welby_limit_rule_t;


/*
 * A rule the request was charged by (its records, by zone and space),
 * and whether it refused the request: a subrequest or a rerun that
 * reaches the rule again gets the same answer without a lookup.
 */
typedef struct {
    ngx_shm_zone_t                 *zone;
    uint32_t                        space;
    ngx_uint_t                      refused;
} ngx_http_welby_limit_charge_t;


/* one key of one rule in a request */
typedef struct {
    ngx_http_welby_limit_rule_t    *rule;
    u_char                          key[NGX_HTTP_WELBY_LIMIT_KEY_LEN];
    size_t                          key_len;
    ngx_str_t                       text;       /* an id, for the record */
    welby_gcra_answer_t             answer;
    unsigned                        failed:1;   /* no record to be had */
} ngx_http_welby_limit_item_t;


/* what the zone's callback is given */
typedef struct {
    const welby_gcra_limit_t       *limit;
    welby_gcra_mode_e               mode;
    welby_gcra_answer_t            *answer;
} ngx_http_welby_limit_arg_t;


struct ngx_http_welby_limit_ctx_s {
    int64_t                         now;        /* ns, once per step run */
    ngx_array_t                     charged;

    /* the window that binds the request, for the RateLimit fields */
    ngx_http_welby_limit_rule_t    *rule;
    ngx_uint_t                      window;
    welby_gcra_window_t             answer;

    /* the rule that refused, or else the first that detected */
    ngx_str_t                       fired_name;
    ngx_str_t                       fired_key;

    unsigned                        have:1;     /* a window binds */
    unsigned                        refusal:1;  /* it refused */
    unsigned                        enforced:1; /* fired_* refused */
    unsigned                        headers:1;  /* welby_limit_headers */
};


static welby_reason_e ngx_http_welby_limit_run(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    ngx_uint_t identity, const char *step);
static ngx_http_welby_limit_ctx_t *ngx_http_welby_limit_get_ctx(
    ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx);
static ngx_http_welby_limit_charge_t *ngx_http_welby_limit_charged(
    ngx_http_welby_limit_ctx_t *lctx, ngx_http_welby_limit_rule_t *rule);
static ngx_int_t ngx_http_welby_limit_keys(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_limit_rule_t *rule,
    ngx_array_t *items);
static ngx_int_t ngx_http_welby_limit_address_key(ngx_http_request_t *r,
    ngx_http_welby_limit_rule_t *rule, ngx_http_welby_limit_item_t *it);
static ngx_int_t ngx_http_welby_limit_push(ngx_http_request_t *r,
    ngx_array_t *items, ngx_http_welby_limit_rule_t *rule,
    const u_char *a, size_t alen, const u_char *b, size_t blen,
    ngx_str_t *text);
static int64_t ngx_http_welby_limit_update(void *data, ngx_uint_t fresh,
    int64_t now, void *arg);
static void ngx_http_welby_limit_bind(ngx_http_welby_limit_ctx_t *lctx,
    ngx_http_welby_limit_item_t *it, ngx_uint_t refusal);
static ngx_int_t ngx_http_welby_limit_number(ngx_str_t *s, size_t skip,
    ngx_int_t min, ngx_int_t max);
static ngx_flag_t ngx_http_welby_limit_token_variable(ngx_str_t *value);
static ngx_int_t ngx_http_welby_limit_policies(ngx_conf_t *cf,
    ngx_http_welby_limit_rule_t *rule);


static ngx_str_t  ngx_http_welby_limit_kind = ngx_string("limit");
static ngx_str_t  ngx_http_welby_limit_subrequest_step =
    ngx_string("subrequest");


/*
 * welby_limit name=<name> zone=<zone> key=<ip|sub|client_id|patient|$var>
 *             [ipv6_prefix=<bits>] rate=<n>r/s|r/m|r/h [burst=<n>]
 *             [hour=<n>] [day=<n>] [mode=enforce|detect]
 */
char *
ngx_http_welby_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    u_char                            *p, c;
    int64_t                            period;
    ngx_int_t                          n, burst, hour, day, rate, metric,
                                       prefix;
    ngx_str_t                         *value, s, key;
    ngx_uint_t                         i, k;
    ngx_http_welby_limit_rule_t       *rule, *rules;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->limits == NULL) {
        wlcf->limits = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_welby_limit_rule_t));
        if (wlcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rule = ngx_array_push(wlcf->limits);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_http_welby_limit_rule_t));

    value = cf->args->elts;

    key.len = 0;
    rate = 0;
    period = 0;
    burst = 0;
    hour = 0;
    day = 0;
    prefix = NGX_CONF_UNSET;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "name=", 5) == 0) {

            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            for (k = 0; k < s.len; k++) {
                c = s.data[k];

                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                      || c == '_' || c == '-'))
                {
                    break;
                }
            }

            if (s.len == 0 || s.len > NGX_HTTP_WELBY_LIMIT_NAME_MAX
                || k < s.len)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid welby_limit name \"%V\": 1 to "
                                   "32 of a-z, 0-9, '_' and '-'", &s);
                return NGX_CONF_ERROR;
            }

            rule->name = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rule->zone = ngx_http_welby_zone_use(cf, &s);
            if (rule->zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            key.data = value[i].data + 4;
            key.len = value[i].len - 4;
            continue;
        }

        if (ngx_strncmp(value[i].data, "ipv6_prefix=", 12) == 0) {

            prefix = ngx_http_welby_limit_number(&value[i], 12, 1, 128);
            if (prefix == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid ipv6_prefix \"%V\": 1 to 128",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {

            p = value[i].data + value[i].len - 3;

            if (value[i].len > 8 && ngx_strncmp(p, "r/s", 3) == 0) {
                period = WELBY_GCRA_SECOND;

            } else if (value[i].len > 8 && ngx_strncmp(p, "r/m", 3) == 0) {
                period = WELBY_GCRA_MINUTE;

            } else if (value[i].len > 8 && ngx_strncmp(p, "r/h", 3) == 0) {
                period = WELBY_GCRA_HOUR;
            }

            s.data = value[i].data + 5;
            s.len = value[i].len - 8;

            rate = period ? ngx_http_welby_limit_number(&s, 0, 1,
                                                        WELBY_GCRA_N_MAX)
                          : NGX_ERROR;

            if (rate == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\": 1 to %d r/s, r/m "
                                   "or r/h", &value[i], WELBY_GCRA_N_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {

            burst = ngx_http_welby_limit_number(&value[i], 6, 0,
                                                WELBY_GCRA_BURST_MAX);
            if (burst == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\": 0 to %d",
                                   &value[i], WELBY_GCRA_BURST_MAX);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "hour=", 5) == 0) {

            hour = ngx_http_welby_limit_number(&value[i], 5, 1,
                                               NGX_MAX_INT32_VALUE);
            if (hour == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid quota \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "day=", 4) == 0) {

            day = ngx_http_welby_limit_number(&value[i], 4, 1,
                                              NGX_MAX_INT32_VALUE);
            if (day == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid quota \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=detect") == 0) {
            rule->detect = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=enforce") == 0) {
            rule->detect = 0;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rule->name.len == 0 || rule->zone == NULL || key.len == 0
        || rate == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"welby_limit\" must have \"%s\" parameter",
                           rule->name.len == 0 ? "name"
                           : rule->zone == NULL ? "zone"
                           : key.len == 0 ? "key" : "rate");
        return NGX_CONF_ERROR;
    }

    rules = wlcf->limits->elts;

    for (i = 0; i < wlcf->limits->nelts - 1; i++) {
        if (rules[i].name.len == rule->name.len
            && ngx_strncmp(rules[i].name.data, rule->name.data,
                           rule->name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate welby_limit name \"%V\"",
                               &rule->name);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_strlchr(key.data, key.data + key.len, '$')) {

        rule->key = NGX_HTTP_WELBY_LIMIT_KEY_VARIABLE;

        rule->value = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (rule->value == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &key;
        ccv.complex_value = rule->value;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        rule->identity = ngx_http_welby_limit_token_variable(&key);

    } else if (key.len == 2 && ngx_strncmp(key.data, "ip", 2) == 0) {
        rule->key = NGX_HTTP_WELBY_LIMIT_KEY_IP;

        /*
         * An IPv6 subscriber is given a /64 (RFC 6177) and may use any
         * address in it: counted by address, it has 2^64 fresh keys.
         */
        rule->ipv6_prefix = (prefix == NGX_CONF_UNSET) ? 64
                                                       : (ngx_uint_t) prefix;

    } else if (key.len == 3 && ngx_strncmp(key.data, "sub", 3) == 0) {
        rule->key = NGX_HTTP_WELBY_LIMIT_KEY_SUB;
        rule->identity = 1;

    } else if (key.len == 9 && ngx_strncmp(key.data, "client_id", 9) == 0) {
        rule->key = NGX_HTTP_WELBY_LIMIT_KEY_CLIENT_ID;
        rule->identity = 1;

    } else if (key.len == 7 && ngx_strncmp(key.data, "patient", 7) == 0) {
        rule->key = NGX_HTTP_WELBY_LIMIT_KEY_PATIENT;
        rule->identity = 1;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown welby_limit key \"%V\": it must be ip, "
                           "sub, client_id, patient or a variable", &key);
        return NGX_CONF_ERROR;
    }

    if (prefix != NGX_CONF_UNSET
        && rule->key != NGX_HTTP_WELBY_LIMIT_KEY_IP)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ipv6_prefix\" is for key=ip only");
        return NGX_CONF_ERROR;
    }

    n = (ngx_int_t) welby_gcra_init(&rule->limit.rate, (uint64_t) rate,
                                    period, (uint64_t) burst);
    if (n != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate or burst in welby_limit \"%V\"",
                           &rule->name);
        return NGX_CONF_ERROR;
    }

    rule->limit.hour = (uint64_t) hour;
    rule->limit.day = (uint64_t) day;

    rule->space = ngx_http_welby_zone_space(&ngx_http_welby_limit_kind,
                                            &rule->name);

    metric = ngx_http_welby_metrics_register(cf, "limit", &rule->name);
    if (metric == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    rule->metric = (ngx_uint_t) metric;

    if (ngx_http_welby_limit_policies(cf, rule) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_http_welby_limit_create_conf(ngx_http_welby_loc_conf_t *wlcf)
{
    wlcf->limits = NULL;
    wlcf->limit_headers = NGX_CONF_UNSET;
}


/*
 * As limit_req's: a level with welby_limit lines of its own has those
 * alone, one without inherits its parent's.
 */
char *
ngx_http_welby_limit_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_uint_t                    i;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_welby_limit_rule_t  *rules;

    /*
     * The steps run only where welby is on: rules of a level of their
     * own, with welby off and no nested location to inherit them, would
     * limit nothing, silently.
     */

    if (conf->limits && conf->limits != prev->limits && !conf->enable) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->locations == NULL) {
            rules = conf->limits->elts;

            for (i = 0; i < conf->limits->nelts; i++) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "welby_limit \"%V\" has no effect: "
                                   "\"welby\" is off here", &rules[i].name);
            }
        }
    }

    if (conf->limits == NULL) {
        conf->limits = prev->limits;
    }

    ngx_conf_merge_value(conf->limit_headers, prev->limit_headers, 0);

    return NGX_CONF_OK;
}


welby_reason_e
ngx_http_welby_limit_address(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    return ngx_http_welby_limit_run(r, ctx, wlcf, 0, "limit_address");
}


welby_reason_e
ngx_http_welby_limit_identity(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf)
{
    return ngx_http_welby_limit_run(r, ctx, wlcf, 1, "limit_identity");
}


/*
 * nginx runs no access phase for a subrequest: a subrequest into a
 * location with limits (SSI, auth_request, mirror) is charged here, in
 * the rewrite phase, to the main request's keys, once per rule for the
 * whole request, and refused, as its main request would be, when a rule
 * refuses.  What the main request's record tells of it is what a
 * subrequest_unchecked refusal tells.
 */
ngx_int_t
ngx_http_welby_limit_subrequest(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf)
{
    welby_reason_e         rc;
    const welby_reason_t  *reason;

    rc = ngx_http_welby_limit_run(r, ctx, wlcf, 0, "subrequest");

    if (rc == WELBY_REASON_NONE) {
        rc = ngx_http_welby_limit_run(r, ctx, wlcf, 1, "subrequest");
    }

    if (rc == WELBY_REASON_NONE) {
        return NGX_DECLINED;
    }

    ctx->trail = 1;

    if (ctx->reason == WELBY_REASON_NONE) {
        ctx->reason = rc;
        ctx->step = &ngx_http_welby_limit_subrequest_step;
    }

    reason = welby_reason_get(rc);

    if (wlcf->mode == NGX_HTTP_WELBY_DETECT) {
        if (ctx->decision != NGX_HTTP_WELBY_DECISION_DENY) {
            ctx->decision = NGX_HTTP_WELBY_DECISION_DETECT;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: detect id:%V step:subrequest reason:%s",
                      &ctx->request_id, reason->code);
        return NGX_DECLINED;
    }

    ctx->decision = NGX_HTTP_WELBY_DECISION_DENY;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "welby: refused id:%V step:subrequest reason:%s",
                  &ctx->request_id, reason->code);

    return (ngx_int_t) reason->status;
}


static welby_reason_e
ngx_http_welby_limit_run(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf, ngx_uint_t identity, const char *step)
{
    ngx_int_t                       rc;
    ngx_str_t                       key;
    ngx_uint_t                      i, k, n, refused, again;
    ngx_array_t                     items;
    welby_gcra_answer_t             scratch;
    ngx_http_welby_limit_item_t     stack[NGX_HTTP_WELBY_LIMIT_STACK];
    ngx_http_welby_limit_ctx_t     *lctx;
    ngx_http_welby_limit_arg_t      arg;
    ngx_http_welby_limit_item_t    *it;
    ngx_http_welby_limit_rule_t    *rules;
    ngx_http_welby_limit_charge_t  *ch;

    if (wlcf->limits == NULL) {
        return WELBY_REASON_NONE;
    }

    rules = wlcf->limits->elts;

    for (i = 0; i < wlcf->limits->nelts; i++) {
        if ((ngx_uint_t) rules[i].identity == identity) {
            break;
        }
    }

    if (i == wlcf->limits->nelts) {
        return WELBY_REASON_NONE;
    }

    lctx = ngx_http_welby_limit_get_ctx(r, ctx);
    if (lctx == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    lctx->headers = wlcf->limit_headers ? 1 : 0;

    /*
     * One instant for the rules of a step, taken when it runs: a request
     * may wait for its body between the two steps, and decided at its
     * arrival after a long upload it would be refused for the time the
     * upload took.
     */
    lctx->now = ngx_http_welby_now_ns();

    /*
     * The keys live only while the step runs: on the stack for the
     * usual few, so that they take nothing of the request's pool (a
     * kilobyte a step, enough to make nginx allocate another pool block
     * for the rest of the request); ngx_array_push() moves them to the
     * pool past NGX_HTTP_WELBY_LIMIT_STACK (a search naming many
     * patients).
     */

    items.elts = stack;
    items.nelts = 0;
    items.size = sizeof(ngx_http_welby_limit_item_t);
    items.nalloc = NGX_HTTP_WELBY_LIMIT_STACK;
    items.pool = r->pool;

    again = 0;

    for (i = 0; i < wlcf->limits->nelts; i++) {

        if ((ngx_uint_t) rules[i].identity != identity) {
            continue;
        }

        ch = ngx_http_welby_limit_charged(lctx, &rules[i]);

        if (ch) {
            again |= ch->refused;
            continue;
        }

        if (ngx_http_welby_limit_keys(r, ctx, &rules[i], &items) != NGX_OK) {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    if (again) {
        /* a rule of this step refused the request already */
        return WELBY_REASON_RATE_LIMITED;
    }

    n = items.nelts;
    it = items.elts;

    if (n == 0) {
        return WELBY_REASON_NONE;
    }

    /*
     * The first pass: every key checked, the last one charged at once
     * when it conforms and none refused before it, so that a single rule
     * decides under one lock.  The keys after a refusal are still
     * checked, never charged: Retry-After is the longest wait of the
     * rules that refuse, and each of them counts what it found.
     */

    refused = n;

    for (k = 0; k < n; k++) {

        key.data = it[k].key;
        key.len = it[k].key_len;

        arg.limit = &it[k].rule->limit;
        arg.mode = (k == n - 1 && refused == n) ? WELBY_GCRA_TAKE
                                                : WELBY_GCRA_CHECK;
        arg.answer = &it[k].answer;

        rc = ngx_http_welby_zone_update_at(it[k].rule->zone,
                                           it[k].rule->space, &key,
                                           sizeof(welby_gcra_state_t),
                                           lctx->now,
                                           ngx_http_welby_limit_update,
                                           &arg, r->connection->log);

        if (rc != NGX_OK) {

            if (it[k].rule->detect || refused < n) {
                it[k].failed = 1;
                continue;
            }

            /* a zone that can give no record fails closed */
            return WELBY_REASON_INTERNAL_ERROR;
        }

        if (it[k].answer.allowed) {
            continue;
        }

        ctx->detected |= NGX_HTTP_WELBY_DETECTED_RATE;
        ngx_http_welby_metrics_add(it[k].rule->metric, 1);

        if (!it[k].rule->detect) {
            if (refused == n
                || it[k].answer.windows[it[k].answer.binding].retry_after
                   > it[refused].answer.windows[
                         it[refused].answer.binding].retry_after)
            {
                refused = k;
            }

            continue;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: detect id:%V step:%s reason:rate_limited "
                      "limit:%V", &ctx->request_id, step,
                      &it[k].rule->name);

        if (lctx->fired_name.len == 0) {
            lctx->fired_name = it[k].rule->name;
            lctx->fired_key = it[k].text;
        }
    }

    /* each rule charges this request once, whatever reruns the steps */

    for (k = 0; k < n; k++) {

        ch = ngx_http_welby_limit_charged(lctx, it[k].rule);

        if (ch == NULL) {
            ch = ngx_array_push(&lctx->charged);
            if (ch == NULL) {
                return WELBY_REASON_INTERNAL_ERROR;
            }

            ch->zone = it[k].rule->zone;
            ch->space = it[k].rule->space;
            ch->refused = 0;
        }

        if (!it[k].failed && !it[k].answer.allowed && !it[k].rule->detect) {
            ch->refused = 1;
        }
    }

    if (refused < n) {
        lctx->fired_name = it[refused].rule->name;
        lctx->fired_key = it[refused].text;
        lctx->enforced = 1;

        ngx_http_welby_limit_bind(lctx, &it[refused], 1);

        return WELBY_REASON_RATE_LIMITED;
    }

    /* the second pass: the keys checked before the last, charged */

    for (k = 0; k + 1 < n; k++) {

        if (it[k].failed || !it[k].answer.allowed) {
            continue;
        }

        key.data = it[k].key;
        key.len = it[k].key_len;

        arg.limit = &it[k].rule->limit;
        arg.mode = WELBY_GCRA_COMMIT;
        arg.answer = &scratch;

        rc = ngx_http_welby_zone_update_at(it[k].rule->zone,
                                           it[k].rule->space, &key,
                                           sizeof(welby_gcra_state_t),
                                           lctx->now,
                                           ngx_http_welby_limit_update,
                                           &arg, r->connection->log);

        if (rc != NGX_OK && !it[k].rule->detect) {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    /* a rule in detect mode tells the client nothing */

    for (k = 0; k < n; k++) {
        if (!it[k].failed && !it[k].rule->detect) {
            ngx_http_welby_limit_bind(lctx, &it[k], 0);
        }
    }

    return WELBY_REASON_NONE;
}


static ngx_http_welby_limit_ctx_t *
ngx_http_welby_limit_get_ctx(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    ngx_http_welby_limit_ctx_t  *lctx;

    if (ctx->limit) {
        return ctx->limit;
    }

    lctx = ngx_pcalloc(r->pool, sizeof(ngx_http_welby_limit_ctx_t));
    if (lctx == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lctx->charged, r->pool, 4,
                       sizeof(ngx_http_welby_limit_charge_t))
        != NGX_OK)
    {
        return NULL;
    }

    ctx->limit = lctx;

    return lctx;
}


static ngx_http_welby_limit_charge_t *
ngx_http_welby_limit_charged(ngx_http_welby_limit_ctx_t *lctx,
    ngx_http_welby_limit_rule_t *rule)
{
    ngx_uint_t                      i;
    ngx_http_welby_limit_charge_t  *ch;

    ch = lctx->charged.elts;

    for (i = 0; i < lctx->charged.nelts; i++) {
        if (ch[i].zone == rule->zone && ch[i].space == rule->space) {
            return &ch[i];
        }
    }

    return NULL;
}


/*
 * The keys of a rule in this request, pushed to items: none when the
 * rule does not apply (an empty value, no token, no patient named).
 */
static ngx_int_t
ngx_http_welby_limit_keys(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_limit_rule_t *rule, ngx_array_t *items)
{
    size_t                        len;
    ngx_str_t                     v, text;
    ngx_uint_t                    i;
    welby_str_t                  *id;
    ngx_http_welby_limit_item_t  *it;

    switch (rule->key) {

    case NGX_HTTP_WELBY_LIMIT_KEY_IP:

        it = ngx_array_push(items);
        if (it == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(it, sizeof(ngx_http_welby_limit_item_t));
        it->rule = rule;

        return ngx_http_welby_limit_address_key(r, rule, it);

    case NGX_HTTP_WELBY_LIMIT_KEY_SUB:
    case NGX_HTTP_WELBY_LIMIT_KEY_CLIENT_ID:

        if (!ctx->token_valid) {
            return NGX_OK;
        }

        id = (rule->key == NGX_HTTP_WELBY_LIMIT_KEY_SUB)
             ? &ctx->claims.sub : &ctx->claims.client_id;

        if (id->data == NULL || id->len == 0) {
            return NGX_OK;
        }

        /* a subject or a client is one of its issuer's */

        text.data = (u_char *) id->data;
        text.len = id->len;

        return ngx_http_welby_limit_push(r, items, rule,
                                         ctx->claims.iss.data,
                                         ctx->claims.iss.len,
                                         id->data, id->len, &text);

    case NGX_HTTP_WELBY_LIMIT_KEY_PATIENT:

        if (ctx->fhir == NULL) {
            return NGX_OK;
        }

        for (i = 0; i < ctx->fhir->npatients; i++) {
            id = &ctx->fhir->patients[i];

            if (id->len == 0) {
                continue;
            }

            text.data = (u_char *) id->data;
            text.len = id->len;

            if (ngx_http_welby_limit_push(r, items, rule, NULL, 0, id->data,
                                          id->len, &text)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        return NGX_OK;

    default: /* NGX_HTTP_WELBY_LIMIT_KEY_VARIABLE */

        if (ngx_http_complex_value(r, rule->value, &v) != NGX_OK) {
            return NGX_ERROR;
        }

        if (v.len == 0) {
            return NGX_OK;
        }

        if (ngx_http_welby_limit_push(r, items, rule, NULL, 0, v.data, v.len,
                                      NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /*
         * A variable's value may be anything (an API key, a header):
         * the record gets the key as the zone holds it, in hex.
         */

        it = (ngx_http_welby_limit_item_t *) items->elts + items->nelts - 1;
        len = 2 * NGX_HTTP_WELBY_LIMIT_KEY_LEN;

        it->text.data = ngx_pnalloc(r->pool, len);
        if (it->text.data == NULL) {
            return NGX_ERROR;
        }

        it->text.len = ngx_hex_dump(it->text.data, it->key, it->key_len)
                       - it->text.data;

        return NGX_OK;
    }
}


/*
 * The key of the client address after realip, as the audit record's: an
 * IPv4 address (or an IPv4-mapped IPv6 one: the same client on a
 * dual-stack socket) as its 4 bytes, an IPv6 address as its first
 * ipv6_prefix bits and zeros, which the record shows as the prefix.
 */
static ngx_int_t
ngx_http_welby_limit_address_key(ngx_http_request_t *r,
    ngx_http_welby_limit_rule_t *rule, ngx_http_welby_limit_item_t *it)
{
    struct sockaddr      *sa;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    u_char               *p;
    size_t                len;
    ngx_uint_t            i, bits;
    struct sockaddr_in6  *sin6;
#endif

    it->text = r->connection->addr_text;

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        ngx_memcpy(it->key, &sin->sin_addr, 4);
        it->key_len = 4;
        return NGX_OK;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            ngx_memcpy(it->key, sin6->sin6_addr.s6_addr + 12, 4);
            it->key_len = 4;
            return NGX_OK;
        }

        ngx_memcpy(it->key, sin6->sin6_addr.s6_addr, 16);
        it->key_len = 16;

        bits = rule->ipv6_prefix;

        if (bits == 128) {
            return NGX_OK;
        }

        for (i = bits / 8; i < 16; i++) {
            it->key[i] = (i == bits / 8 && bits % 8)
                         ? (u_char) (it->key[i] & (0xff << (8 - bits % 8)))
                         : 0;
        }

        len = NGX_INET6_ADDRSTRLEN + sizeof("/128") - 1;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        it->text.data = p;
        it->text.len = ngx_inet6_ntop(it->key, p, len);
        it->text.len = ngx_sprintf(p + it->text.len, "/%ui", bits) - p;

        return NGX_OK;
#endif

    default:
        /* a unix socket: every local client is one */
        ngx_memcpy(it->key, "unix", 4);
        it->key_len = 4;
        return NGX_OK;
    }
}


/*
 * A string key: the zone's digest of (a NUL b), or of b alone when a is
 * NULL.
 */
static ngx_int_t
ngx_http_welby_limit_push(ngx_http_request_t *r, ngx_array_t *items,
    ngx_http_welby_limit_rule_t *rule, const u_char *a, size_t alen,
    const u_char *b, size_t blen, ngx_str_t *text)
{
    u_char                       *buf, *p;
    const u_char                 *in;
    size_t                        len;
    ngx_http_welby_limit_item_t  *it;

    it = ngx_array_push(items);
    if (it == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(it, sizeof(ngx_http_welby_limit_item_t));
    it->rule = rule;

    if (text) {
        it->text = *text;
    }

    in = b;
    len = blen;

    if (a) {
        buf = ngx_pnalloc(r->pool, alen + 1 + blen);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(buf, a, alen);
        *p++ = '\0';
        p = ngx_cpymem(p, b, blen);

        in = buf;
        len = p - buf;
    }

    ngx_http_welby_zone_digest(rule->zone, in, len, it->key);
    it->key_len = NGX_HTTP_WELBY_LIMIT_KEY_LEN;

    return NGX_OK;
}


/*
 * Under the zone's lock: no allocation, no log.  The clock is read here
 * for welby_gcra_clamp(), when it may be due: later than the request's
 * instant, never earlier than what another worker charged before this
 * one got the lock.
 */
static int64_t
ngx_http_welby_limit_update(void *data, ngx_uint_t fresh, int64_t now,
    void *arg)
{
    ngx_http_welby_limit_arg_t *a = arg;

    int64_t  clock;

    /*
     * The bound at max(clock, now) is no earlier than at now: a TAT
     * within it at now needs no clamp, and the clock is read only when
     * one may be due.
     */

    if (welby_gcra_clamps(a->limit, data, now)) {
        clock = ngx_http_welby_now_ns();
        welby_gcra_clamp(a->limit, data, ngx_max(clock, now));
    }

    (void) welby_gcra_limit(a->limit, data, now, a->mode, a->answer);

    return welby_gcra_expire(a->limit, data);
}


/*
 * The RateLimit fields tell the window that binds the request: a
 * refusal's, or else the one with the fewest requests left (then the
 * longest effective window), over every rule of both steps.
 */
static void
ngx_http_welby_limit_bind(ngx_http_welby_limit_ctx_t *lctx,
    ngx_http_welby_limit_item_t *it, ngx_uint_t refusal)
{
    welby_gcra_window_t  *w;

    w = &it->answer.windows[it->answer.binding];

    if (lctx->have) {

        if (lctx->refusal && !refusal) {
            return;
        }

        if (!refusal
            && (w->remaining > lctx->answer.remaining
                || (w->remaining == lctx->answer.remaining
                    && w->window <= lctx->answer.window)))
        {
            return;
        }
    }

    lctx->have = 1;
    lctx->refusal = refusal ? 1 : 0;
    lctx->rule = it->rule;
    lctx->window = (ngx_uint_t) it->answer.binding;
    lctx->answer = *w;
}


ngx_int_t
ngx_http_welby_limit_headers(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    u_char                      *p;
    ngx_str_t                    value;
    ngx_uint_t                   refused;
    ngx_http_welby_limit_ctx_t  *lctx;

    static ngx_str_t  policy = ngx_string("RateLimit-Policy");
    static ngx_str_t  ratelimit = ngx_string("RateLimit");
    static ngx_str_t  retry_after = ngx_string("Retry-After");

    lctx = ctx->limit;

    if (lctx == NULL || !lctx->have) {
        return NGX_OK;
    }

    refused = (ctx->decision == NGX_HTTP_WELBY_DECISION_DENY
               && ctx->reason == WELBY_REASON_RATE_LIMITED);

    if (!refused && !lctx->headers) {
        return NGX_OK;
    }

    if (ngx_http_welby_push_header(&r->headers_out.headers, &policy,
                                   &lctx->rule->policy[lctx->window])
        == NULL)
    {
        return NGX_ERROR;
    }

    value.len = lctx->rule->label[lctx->window].len
                + sizeof(";r=;t=") - 1 + 2 * NGX_INT64_LEN;

    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(value.data, "%V;r=%uL;t=%L",
                    &lctx->rule->label[lctx->window],
                    (uint64_t) lctx->answer.remaining,
                    (int64_t) lctx->answer.window);
    value.len = p - value.data;

    if (ngx_http_welby_push_header(&r->headers_out.headers, &ratelimit,
                                   &value)
        == NULL)
    {
        return NGX_ERROR;
    }

    if (!refused) {
        return NGX_OK;
    }

    value.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%L",
                            (int64_t) lctx->answer.retry_after)
                - value.data;

    if (ngx_http_welby_push_header(&r->headers_out.headers, &retry_after,
                                   &value)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_welby_limit_fired(ngx_http_welby_ctx_t *ctx, ngx_str_t *name,
    ngx_str_t *key)
{
    if (ctx->limit == NULL || ctx->limit->fired_name.len == 0) {
        name->len = 0;
        key->len = 0;
        return;
    }

    *name = ctx->limit->fired_name;
    *key = ctx->limit->fired_key;
}


ngx_int_t
ngx_http_welby_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || ctx->limit == NULL
        || ctx->limit->fired_name.len == 0)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ctx->limit->fired_name.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = ctx->limit->fired_name.data;

    return NGX_OK;
}


/* The digits of s after skip bytes, from min to max, or NGX_ERROR. */
static ngx_int_t
ngx_http_welby_limit_number(ngx_str_t *s, size_t skip, ngx_int_t min,
    ngx_int_t max)
{
    ngx_int_t  n;

    if (s->len <= skip) {
        return NGX_ERROR;
    }

    n = ngx_atoi(s->data + skip, s->len - skip);

    if (n == NGX_ERROR || n < min || n > max) {
        return NGX_ERROR;
    }

    return n;
}


/*
 * Whether a key names a $welby_* variable that the token or a later step
 * sets: then the rule runs after the policy.  The connection's and the
 * classification's are known before the token step.
 */
static ngx_flag_t
ngx_http_welby_limit_token_variable(ngx_str_t *value)
{
    u_char      *p, *end, *start;
    size_t       len;
    ngx_uint_t   i;

    static ngx_str_t  early[] = {
        ngx_string("welby_request_id"),
        ngx_string("welby_client_cert_sha256"),
        ngx_string("welby_country"),
        ngx_string("welby_asn"),
        ngx_string("welby_fhir_interaction"),
        ngx_string("welby_fhir_type"),
        ngx_string("welby_fhir_id"),
        ngx_string("welby_fhir_patient"),
        ngx_null_string
    };

    end = value->data + value->len;

    for (p = value->data; p < end; p++) {

        if (*p != '$') {
            continue;
        }

        p++;

        if (p < end && *p == '{') {
            p++;
        }

        for (start = p;
             p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                         || (*p >= '0' && *p <= '9') || *p == '_');
             p++)
        { /* void */ }

        len = p - start;

        if (len < 6 || ngx_strncasecmp(start, (u_char *) "welby_", 6) != 0) {
            p--;
            continue;
        }

        for (i = 0; early[i].len; i++) {
            if (early[i].len == len
                && ngx_strncasecmp(start, early[i].data, len) == 0)
            {
                break;
            }
        }

        if (early[i].len == 0) {
            return 1;
        }

        p--;
    }

    return 0;
}


/*
 * The RateLimit-Policy items of a rule (draft-ietf-httpapi-ratelimit-
 * headers-11): "name";q=..;w=.., and "name.hour", "name.day" for its
 * quotas ('.' is in no rule's name).
 */
static ngx_int_t
ngx_http_welby_limit_policies(ngx_conf_t *cf,
    ngx_http_welby_limit_rule_t *rule)
{
    u_char      *p;
    int64_t      w;
    uint64_t     q;
    ngx_uint_t   i;

    static const char  *suffix[] = { "", ".hour", ".day" };

    for (i = 0; i < WELBY_GCRA_WINDOWS; i++) {

        if ((i == WELBY_GCRA_HOURLY && rule->limit.hour == 0)
            || (i == WELBY_GCRA_DAILY && rule->limit.day == 0))
        {
            continue;
        }

        rule->label[i].data = ngx_pnalloc(cf->pool, rule->name.len + 8);
        if (rule->label[i].data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(rule->label[i].data, "\"%V%s\"", &rule->name,
                        suffix[i]);
        rule->label[i].len = p - rule->label[i].data;

        welby_gcra_policy(&rule->limit, (int) i, &q, &w);

        rule->policy[i].data = ngx_pnalloc(cf->pool, rule->label[i].len
                                           + sizeof(";q=;w=") - 1
                                           + 2 * NGX_INT64_LEN);
        if (rule->policy[i].data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(rule->policy[i].data, "%V;q=%uL;w=%L",
                        &rule->label[i], q, w);
        rule->policy[i].len = p - rule->policy[i].data;
    }

    return NGX_OK;
}
