/*
 * Prometheus metrics (welby_metrics): counters in one shared zone,
 * "welby_metrics", one row of counters per worker slot, summed when the
 * page is scraped.  The request path only adds atomically to its own
 * worker's row: no lock, no allocation, no lookup.
 *
 * Two kinds of counters:
 *
 *   - fixed ones, named by ngx_http_welby_metric_e below; their label
 *     sets are fixed lists (reason codes, decisions, status classes), so
 *     the page never grows with the traffic;
 *   - named ones, registered at configuration time by the code that owns
 *     them (ngx_http_welby_metrics_register(cf, "limit", &rule_name)),
 *     one counter per name of a family, kept by name across reloads in a
 *     table in the zone.
 *
 * No counter has a subject, patient, client or address label, ever.
 */

#ifndef NGX_HTTP_WELBY_METRICS_H
#define NGX_HTTP_WELBY_METRICS_H

#include "ngx_http_welby_module.h"
#include "welby_prom.h"


/* the decisions, NGX_HTTP_WELBY_DECISION_NONE .. _DETECT */
#define NGX_HTTP_WELBY_METRICS_DECISIONS  4

/* what the limits and detectors found: the NGX_HTTP_WELBY_DETECTED_* bits */
#define NGX_HTTP_WELBY_METRICS_DETECTORS  5

/*
 * welby_alerts_total{event}: the fixed event names, "other" for a rule
 * named otherwise, then "reason:<code>" for every reason code.
 */
#define NGX_HTTP_WELBY_METRICS_ALERT_NAMED   9
#define NGX_HTTP_WELBY_METRICS_ALERT_OTHER   NGX_HTTP_WELBY_METRICS_ALERT_NAMED
#define NGX_HTTP_WELBY_METRICS_ALERT_REASON                                  \
    (NGX_HTTP_WELBY_METRICS_ALERT_OTHER + 1)
#define NGX_HTTP_WELBY_METRICS_ALERT_EVENTS  \
    (NGX_HTTP_WELBY_METRICS_ALERT_REASON + WELBY_REASON_COUNT)


typedef enum {
    /* ngx_http_welby_token.c: signatures checked, by their result */
    NGX_HTTP_WELBY_METRIC_TOKEN_VALID = 0,
    NGX_HTTP_WELBY_METRIC_TOKEN_INVALID,

    /* ngx_http_welby_token.c: lookups in welby_token_cache */
    NGX_HTTP_WELBY_METRIC_CACHE_HIT,
    NGX_HTTP_WELBY_METRIC_CACHE_MISS,

    /* ngx_http_welby_waf.c: interventions that refuse */
    NGX_HTTP_WELBY_METRIC_WAF_REQUEST,
    NGX_HTTP_WELBY_METRIC_WAF_RESPONSE,

    /* ngx_http_welby_audit.c: copies of records, one per sink */
    NGX_HTTP_WELBY_METRIC_AUDIT_WRITTEN,
    NGX_HTTP_WELBY_METRIC_AUDIT_HELD,
    NGX_HTTP_WELBY_METRIC_AUDIT_FAILED,

    /*
     * The log phase (ngx_http_welby_metrics_request()): requests by
     * decision * WELBY_REASON_COUNT + reason, ...
     */
    NGX_HTTP_WELBY_METRIC_REQUESTS,

    /* ... by the policy step's reason, */
    NGX_HTTP_WELBY_METRIC_POLICY = NGX_HTTP_WELBY_METRIC_REQUESTS
        + NGX_HTTP_WELBY_METRICS_DECISIONS * WELBY_REASON_COUNT,

    /* by status class, of the answer and of the backend's answer, */
    NGX_HTTP_WELBY_METRIC_RESPONSES = NGX_HTTP_WELBY_METRIC_POLICY
        + WELBY_REASON_COUNT,
    NGX_HTTP_WELBY_METRIC_UPSTREAM = NGX_HTTP_WELBY_METRIC_RESPONSES
        + WELBY_PROM_CLASSES,

    /* by duration (one bucket each, +Inf last; the sum in ms), */
    NGX_HTTP_WELBY_METRIC_DURATION = NGX_HTTP_WELBY_METRIC_UPSTREAM
        + WELBY_PROM_CLASSES,
    NGX_HTTP_WELBY_METRIC_DURATION_SUM = NGX_HTTP_WELBY_METRIC_DURATION
        + WELBY_PROM_BUCKETS + 1,

    /* and by what a limit or a detector found (ctx->detected's bits) */
    NGX_HTTP_WELBY_METRIC_DETECTIONS,

    /* ngx_http_welby_audit_alert(): alert records by event */
    NGX_HTTP_WELBY_METRIC_ALERTS = NGX_HTTP_WELBY_METRIC_DETECTIONS
        + NGX_HTTP_WELBY_METRICS_DETECTORS,

    /* the named counters' indexes start here */
    NGX_HTTP_WELBY_METRIC_FIXED = NGX_HTTP_WELBY_METRIC_ALERTS
        + NGX_HTTP_WELBY_METRICS_ALERT_EVENTS
} ngx_http_welby_metric_e;


/*
 * Adds n to a counter of this worker: a fixed one, or the index a
 * registration returned.  Anywhere in a worker (a request, a timer, the
 * exit of the process); a no-op without the zone, in the master and for
 * an unknown index.
 */
void ngx_http_welby_metrics_add(ngx_uint_t counter, ngx_uint_t n);

/*
 * At configuration time (http, server, location): the counter of label
 * in a family ("limit": welby_rate_limited_total{limit="<label>"}), the
 * same index for the same name, registered once or many times.  The
 * label is at most 126 bytes.  NGX_ERROR, logged, otherwise.
 */
ngx_int_t ngx_http_welby_metrics_register(ngx_conf_t *cf, const char *family,
    ngx_str_t *label);

/* Records counted in bytes of audit lines (one per LF). */
void ngx_http_welby_metrics_lines(ngx_uint_t counter, u_char *data,
    size_t len);

/* The log phase, once per request of the trail. */
void ngx_http_welby_metrics_request(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);

/* An alert record written for rule. */
void ngx_http_welby_metrics_alert(ngx_http_welby_alert_t *rule);

/* welby_metrics; */
char *ngx_http_welby_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* postconfiguration: the zone, sized for this configuration */
ngx_int_t ngx_http_welby_metrics_init(ngx_conf_t *cf,
    ngx_http_welby_main_conf_t *wmcf);

/* a worker's own row of counters */
ngx_int_t ngx_http_welby_metrics_init_process(ngx_cycle_t *cycle);

#endif /* NGX_HTTP_WELBY_METRICS_H */
