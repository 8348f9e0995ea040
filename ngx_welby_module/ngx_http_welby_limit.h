/*
 * welby_limit (ngx_http_welby_limit.c): named rate limits with hourly and
 * daily quotas per key, kept in a welby_zone, in two steps of the
 * pipeline: limit_address before the token step (keys of the connection:
 * the address, variables not derived from the token), limit_identity
 * after the policy (the subject, the client, the patients, the token's
 * variables).
 */

#ifndef NGX_HTTP_WELBY_LIMIT_H
#define NGX_HTTP_WELBY_LIMIT_H

#include "ngx_http_welby_module.h"


char *ngx_http_welby_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
void ngx_http_welby_limit_create_conf(ngx_http_welby_loc_conf_t *wlcf);
char *ngx_http_welby_limit_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);

welby_reason_e ngx_http_welby_limit_address(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
welby_reason_e ngx_http_welby_limit_identity(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/*
 * A subrequest into a "welby on" location whose main request's steps
 * cover it: the location's limits, charged to the main request's keys.
 * NGX_DECLINED, or the status of the refusal.
 */
ngx_int_t ngx_http_welby_limit_subrequest(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/*
 * From the header filter: Retry-After and the RateLimit fields on a
 * refusal of the limits, the RateLimit fields on every response where
 * welby_limit_headers is on.
 */
ngx_int_t ngx_http_welby_limit_headers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);

/* For the audit record: the rule that refused or detected, and its key. */
void ngx_http_welby_limit_fired(ngx_http_welby_ctx_t *ctx, ngx_str_t *name,
    ngx_str_t *key);

/* $welby_limit */
ngx_int_t ngx_http_welby_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

#endif /* NGX_HTTP_WELBY_LIMIT_H */
