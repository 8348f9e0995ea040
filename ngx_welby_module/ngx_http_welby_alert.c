/*
 * Threshold alerts (welby_alert): counters of event classes in a shared
 * zone, across workers, in fixed windows.  Crossing a threshold writes one
 * alert record to the audit trail, and the next only after the window has
 * passed.  Per-address counters live in an rbtree with an LRU queue, as in
 * the limit_req module; a full zone forgets the oldest addresses.
 */

#include "ngx_http_welby_module.h"


#define NGX_HTTP_WELBY_ALERT_ZONE_SIZE  (1024 * 1024)
#define NGX_HTTP_WELBY_ALERT_RULES      64


typedef struct {
    ngx_msec_t                  start;      /* of the current window */
    ngx_uint_t                  count;
    ngx_uint_t                  fired;
} ngx_http_welby_alert_window_t;


typedef struct {
    ngx_rbtree_node_t           node;       /* key: hash of rule and key */
    ngx_queue_t                 queue;
    ngx_uint_t                  rule;
    ngx_http_welby_alert_window_t  window;
    u_short                     len;
    u_char                      data[1];    /* the address */
} ngx_http_welby_alert_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
    ngx_http_welby_alert_window_t  global[1];   /* one per rule */
} ngx_http_welby_alert_shctx_t;


typedef struct {
    ngx_http_welby_alert_shctx_t  *sh;
    ngx_slab_pool_t               *shpool;
    ngx_uint_t                     nrules;
} ngx_http_welby_alert_zone_t;


static ngx_int_t ngx_http_welby_alert_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_uint_t ngx_http_welby_alert_matches(ngx_http_welby_alert_t *rule,
    ngx_http_welby_ctx_t *ctx, ngx_int_t upstream_status);
static ngx_uint_t ngx_http_welby_alert_count(ngx_http_welby_alert_zone_t *z,
    ngx_uint_t i, ngx_http_welby_alert_t *rule, ngx_str_t *key,
    ngx_msec_t now, ngx_uint_t *count);
static ngx_http_welby_alert_window_t *ngx_http_welby_alert_lookup(
    ngx_http_welby_alert_zone_t *z, ngx_uint_t i, ngx_str_t *key,
    ngx_msec_t now);


static ngx_str_t  ngx_http_welby_alert_zone_name =
    ngx_string("welby_alerts");


/*
 * welby_alert <event> <count>/<window> [severity=<severity>]
 *
 * events: auth_failures, auth_failures_per_ip, refusals,
 * reason:<code>, upstream_5xx, waf_block, and what limits and detectors
 * found: rate_limited, geo_denied, auth_throttled, enumeration,
 * impossible_travel (in detect and alert modes too)
 */
char *
ngx_http_welby_alert(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    u_char                  *p;
    ngx_int_t                n;
    ngx_str_t               *value, s;
    ngx_uint_t               i;
    ngx_shm_zone_t          *shm_zone;
    ngx_http_welby_alert_t  *rule;

    static ngx_str_t  severities[] = {
        ngx_string("emergency"), ngx_string("alert"),
        ngx_string("critical"), ngx_string("error"),
        ngx_string("warning"), ngx_string("notice"),
        ngx_string("informational"), ngx_string("debug")
    };

    value = cf->args->elts;

    if (wmcf->alerts && wmcf->alerts->nelts >= NGX_HTTP_WELBY_ALERT_RULES) {
        return "is repeated too often";
    }

    if (wmcf->alerts == NULL) {
        wmcf->alerts = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_welby_alert_t));
        if (wmcf->alerts == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rule = ngx_array_push(wmcf->alerts);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_http_welby_alert_t));

    rule->name = value[1];
    rule->severity = WELBY_AUDIT_SEV_ALERT;

    if (ngx_strcmp(value[1].data, "auth_failures") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_AUTH;

    } else if (ngx_strcmp(value[1].data, "auth_failures_per_ip") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_AUTH;
        rule->per_ip = 1;

    } else if (ngx_strcmp(value[1].data, "refusals") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_REFUSAL;

    } else if (ngx_strcmp(value[1].data, "upstream_5xx") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_UPSTREAM;

    } else if (ngx_strcmp(value[1].data, "waf_block") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_REASON;
        rule->reason = WELBY_REASON_WAF_BLOCK;

    } else if (ngx_strcmp(value[1].data, "rate_limited") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_DETECTED;
        rule->detected = NGX_HTTP_WELBY_DETECTED_RATE;

    } else if (ngx_strcmp(value[1].data, "geo_denied") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_DETECTED;
        rule->detected = NGX_HTTP_WELBY_DETECTED_GEO;

    } else if (ngx_strcmp(value[1].data, "auth_throttled") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_DETECTED;
        rule->detected = NGX_HTTP_WELBY_DETECTED_THROTTLE;

    } else if (ngx_strcmp(value[1].data, "enumeration") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_DETECTED;
        rule->detected = NGX_HTTP_WELBY_DETECTED_ENUMERATION;

    } else if (ngx_strcmp(value[1].data, "impossible_travel") == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_DETECTED;
        rule->detected = NGX_HTTP_WELBY_DETECTED_TRAVEL;

    } else if (ngx_strncmp(value[1].data, "reason:", 7) == 0) {
        rule->event = NGX_HTTP_WELBY_ALERT_REASON;
        rule->reason = welby_reason_find(value[1].data + 7, value[1].len - 7);

        if (rule->reason == WELBY_REASON_COUNT
            || rule->reason == WELBY_REASON_NONE)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown reason code in \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown welby_alert event \"%V\", it must be "
                           "\"auth_failures\", \"auth_failures_per_ip\", "
                           "\"refusals\", \"upstream_5xx\", \"waf_block\", "
                           "\"rate_limited\", \"geo_denied\", "
                           "\"auth_throttled\", \"enumeration\", "
                           "\"impossible_travel\" or \"reason:<code>\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    p = ngx_strlchr(value[2].data, value[2].data + value[2].len, '/');

    if (p == NULL) {
        goto invalid;
    }

    n = ngx_atoi(value[2].data, p - value[2].data);

    s.data = p + 1;
    s.len = value[2].data + value[2].len - s.data;

    rule->window = ngx_parse_time(&s, 0);

    if (n == NGX_ERROR || n == 0 || rule->window == (ngx_msec_t) NGX_ERROR
        || rule->window == 0)
    {
        goto invalid;
    }

    rule->threshold = n;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "severity=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            for (n = 0; n < 8; n++) {
                if (severities[n].len == s.len
                    && ngx_strncmp(severities[n].data, s.data, s.len) == 0)
                {
                    break;
                }
            }

            if (n == 8) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid severity \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            rule->severity = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (wmcf->alert_zone == NULL) {
        shm_zone = ngx_shared_memory_add(cf, &ngx_http_welby_alert_zone_name,
                                         NGX_HTTP_WELBY_ALERT_ZONE_SIZE,
                                         &ngx_http_welby_module);
        if (shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        shm_zone->init = ngx_http_welby_alert_init_zone;
        shm_zone->data = ngx_pcalloc(cf->pool,
                                     sizeof(ngx_http_welby_alert_zone_t));
        if (shm_zone->data == NULL) {
            return NGX_CONF_ERROR;
        }

        wmcf->alert_zone = shm_zone;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid threshold \"%V\", it must be "
                       "<count>/<window>, as in 10/1m", &value[2]);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_welby_alert_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_welby_alert_zone_t  *oz = data;

    size_t                        len;
    ngx_http_welby_alert_zone_t  *z;

    z = shm_zone->data;
    z->nrules = NGX_HTTP_WELBY_ALERT_RULES;

    if (oz) {
        /*
         * The counters go on across a reload, by the position of their
         * rule in the configuration.
         */
        z->sh = oz->sh;
        z->shpool = oz->shpool;
        return NGX_OK;
    }

    z->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        z->sh = z->shpool->data;
        return NGX_OK;
    }

    z->sh = ngx_slab_calloc(z->shpool, sizeof(ngx_http_welby_alert_shctx_t)
                            + z->nrules
                              * sizeof(ngx_http_welby_alert_window_t));
    if (z->sh == NULL) {
        return NGX_ERROR;
    }

    z->shpool->data = z->sh;

    ngx_rbtree_init(&z->sh->rbtree, &z->sh->sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&z->sh->queue);

    len = sizeof(" in welby_alert zone \"\"") + shm_zone->shm.name.len;

    z->shpool->log_ctx = ngx_slab_alloc(z->shpool, len);
    if (z->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(z->shpool->log_ctx, " in welby_alert zone \"%V\"%Z",
                &shm_zone->shm.name);

    z->shpool->log_nomem = 0;

    return NGX_OK;
}


/* Counts the request in every rule it matches; writes crossed alerts. */
void
ngx_http_welby_alert_count_request(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_int_t upstream_status)
{
    ngx_str_t                     key;
    ngx_uint_t                    i, count;
    ngx_msec_t                    now;
    ngx_time_t                   *tp;
    ngx_http_welby_alert_t       *rule;
    ngx_http_welby_alert_zone_t  *z;
    ngx_http_welby_main_conf_t   *wmcf;

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    if (wmcf->alerts == NULL) {
        return;
    }

    z = wmcf->alert_zone->data;
    rule = wmcf->alerts->elts;

    tp = ngx_timeofday();
    now = (ngx_msec_t) tp->sec * 1000 + tp->msec;

    for (i = 0; i < wmcf->alerts->nelts && i < z->nrules; i++) {

        if (!ngx_http_welby_alert_matches(&rule[i], ctx, upstream_status)) {
            continue;
        }

        key.len = 0;
        key.data = NULL;

        if (rule[i].per_ip) {
            key = r->connection->addr_text;
        }

        if (ngx_http_welby_alert_count(z, i, &rule[i], &key, now, &count)) {
            ngx_http_welby_audit_alert(r, ctx, &rule[i], &key, count);
        }
    }
}


static ngx_uint_t
ngx_http_welby_alert_matches(ngx_http_welby_alert_t *rule,
    ngx_http_welby_ctx_t *ctx, ngx_int_t upstream_status)
{
    switch (rule->event) {

    case NGX_HTTP_WELBY_ALERT_AUTH:
        return ctx->decision == NGX_HTTP_WELBY_DECISION_DENY
               && welby_reason_is_auth(ctx->reason);

    case NGX_HTTP_WELBY_ALERT_REFUSAL:
        return ctx->decision == NGX_HTTP_WELBY_DECISION_DENY;

    case NGX_HTTP_WELBY_ALERT_REASON:
        return ctx->reason == rule->reason;

    case NGX_HTTP_WELBY_ALERT_DETECTED:
        return (ctx->detected & rule->detected) != 0;

    default: /* NGX_HTTP_WELBY_ALERT_UPSTREAM */
        return upstream_status >= 500;
    }
}


/* 1 when this count crosses the threshold of its window. */
static ngx_uint_t
ngx_http_welby_alert_count(ngx_http_welby_alert_zone_t *z, ngx_uint_t i,
    ngx_http_welby_alert_t *rule, ngx_str_t *key, ngx_msec_t now,
    ngx_uint_t *count)
{
    ngx_uint_t                      crossed;
    ngx_http_welby_alert_window_t  *w;

    crossed = 0;

    ngx_shmtx_lock(&z->shpool->mutex);

    w = key->len ? ngx_http_welby_alert_lookup(z, i, key, now)
                 : &z->sh->global[i];

    if (w != NULL) {

        if ((ngx_msec_int_t) (now - w->start) >= (ngx_msec_int_t) rule->window)
        {
            w->start = now;
            w->count = 0;
            w->fired = 0;
        }

        w->count++;

        if (!w->fired && w->count >= rule->threshold) {
            w->fired = 1;
            crossed = 1;
            *count = w->count;
        }
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return crossed;
}


static ngx_http_welby_alert_window_t *
ngx_http_welby_alert_lookup(ngx_http_welby_alert_zone_t *z, ngx_uint_t i,
    ngx_str_t *key, ngx_msec_t now)
{
    uint32_t                      hash;
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_welby_alert_node_t  *an;

    hash = ngx_crc32_short(key->data, key->len) ^ (uint32_t) i;

    node = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        an = (ngx_http_welby_alert_node_t *) node;

        if (an->rule == i && an->len == key->len
            && ngx_memcmp(an->data, key->data, key->len) == 0)
        {
            ngx_queue_remove(&an->queue);
            ngx_queue_insert_head(&z->sh->queue, &an->queue);
            return &an->window;
        }

        node = node->right;
    }

    an = ngx_slab_alloc_locked(z->shpool,
                               sizeof(ngx_http_welby_alert_node_t) + key->len);

    if (an == NULL && !ngx_queue_empty(&z->sh->queue)) {
        /* forget the address seen longest ago */
        q = ngx_queue_last(&z->sh->queue);
        ngx_queue_remove(q);
        an = ngx_queue_data(q, ngx_http_welby_alert_node_t, queue);
        ngx_rbtree_delete(&z->sh->rbtree, &an->node);
        ngx_slab_free_locked(z->shpool, an);

        an = ngx_slab_alloc_locked(z->shpool,
                                   sizeof(ngx_http_welby_alert_node_t)
                                   + key->len);
    }

    if (an == NULL) {
        return NULL;
    }

    ngx_memzero(an, sizeof(ngx_http_welby_alert_node_t));

    an->node.key = hash;
    an->rule = i;
    an->len = (u_short) key->len;
    ngx_memcpy(an->data, key->data, key->len);
    an->window.start = now;

    ngx_rbtree_insert(&z->sh->rbtree, &an->node);
    ngx_queue_insert_head(&z->sh->queue, &an->queue);

    return &an->window;
}
