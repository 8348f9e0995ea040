/*
 * Auth-failure throttling (welby_auth_throttle): addresses, and networks
 * by ASN, that fail token validation too often are banned for a while,
 * longer each time.
 */

#ifndef NGX_HTTP_WELBY_THROTTLE_H
#define NGX_HTTP_WELBY_THROTTLE_H

#include "ngx_http_welby_module.h"


char *ngx_http_welby_auth_throttle(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_throttle_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);

/* The step before the token step: a banned address or ASN is refused. */
welby_reason_e ngx_http_welby_throttle(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/*
 * Called by the pipeline when the token step refused, with its reason,
 * before the refusal is sent: the failure is counted (once per request,
 * whatever internal redirects follow) and may start a ban.
 */
void ngx_http_welby_throttle_failed(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_reason_e reason);

#endif /* NGX_HTTP_WELBY_THROTTLE_H */
