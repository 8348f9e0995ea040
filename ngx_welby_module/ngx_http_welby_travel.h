/*
 * Impossible travel (welby_travel): the same subject, or the same token,
 * seen from two countries within a window.
 */

#ifndef NGX_HTTP_WELBY_TRAVEL_H
#define NGX_HTTP_WELBY_TRAVEL_H

#include "ngx_http_welby_module.h"


char *ngx_http_welby_travel_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_travel_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);

/* The step after enumeration: the country against the key's last one. */
welby_reason_e ngx_http_welby_travel(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

#endif /* NGX_HTTP_WELBY_TRAVEL_H */
