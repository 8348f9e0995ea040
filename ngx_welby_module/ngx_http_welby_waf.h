/*
 * The waf step (ngx_http_welby_waf.c): libmodsecurity run by the module,
 * on the request as the client sent it and its body as the body step read
 * it, after every step that can refuse on less.
 */

#ifndef NGX_HTTP_WELBY_WAF_H
#define NGX_HTTP_WELBY_WAF_H

#include "ngx_http_welby_module.h"


#define NGX_HTTP_WELBY_WAF_OFF      0
#define NGX_HTTP_WELBY_WAF_ON       1
#define NGX_HTTP_WELBY_WAF_DETECT   2

/* the rule whose msg is the inbound anomaly score (rules/welby-crs.conf) */
#define NGX_HTTP_WELBY_WAF_SCORE_RULE  440999

/* matches kept of one request; more are counted, not listed */
#define NGX_HTTP_WELBY_WAF_MATCHES_MAX  32


/* what the step found, for the refusal, the variables and the record */
struct ngx_http_welby_waf_result_s {
    int64_t                     rules[NGX_HTTP_WELBY_WAF_MATCHES_MAX];
    int64_t                     severities[NGX_HTTP_WELBY_WAF_MATCHES_MAX];
    ngx_uint_t                  nrules;
    ngx_uint_t                  dropped;    /* matches past the array */
    ngx_int_t                   score;      /* -1: not reported */
    ngx_uint_t                  status;     /* the intervention's, or 0 */
    ngx_str_t                   location;   /* a redirect's, or empty */
    void                       *transaction;    /* freed by a cleanup */
    unsigned                    ran:1;
    unsigned                    intervened:1;
};


char *ngx_http_welby_waf_rules(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_welby_waf_create_conf(ngx_http_welby_loc_conf_t *wlcf);
char *ngx_http_welby_waf_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);

welby_reason_e ngx_http_welby_waf(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/*
 * Response inspection (welby_waf_response on), called by the response
 * filters (ngx_http_welby_response.c) on the answer they hold: its
 * status and headers, then its body.  WELBY_REASON_WAF_BLOCK when the
 * rules intervene and the location enforces.
 */
welby_reason_e ngx_http_welby_waf_response_headers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
welby_reason_e ngx_http_welby_waf_response_body(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    u_char *data, size_t len);

ngx_int_t ngx_http_welby_waf_rules_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_welby_waf_score_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

#endif /* NGX_HTTP_WELBY_WAF_H */
