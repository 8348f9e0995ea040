/*
 * Enumeration detection (welby_enumeration): a subject, or a client,
 * that reaches more distinct patients in a window than the bound allows.
 */

#ifndef NGX_HTTP_WELBY_ENUMERATION_H
#define NGX_HTTP_WELBY_ENUMERATION_H

#include "ngx_http_welby_module.h"


char *ngx_http_welby_enumeration_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

/* The step after the policy: the patients it verified, counted. */
welby_reason_e ngx_http_welby_enumeration(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/*
 * Called by the response check with an answer it allowed (a resource, or
 * a searchset or history Bundle): the patients only the answer shows are
 * counted as the step counts a request's, before any byte of the answer
 * is sent.  WELBY_REASON_ENUMERATION when the answer is to be refused.
 */
welby_reason_e ngx_http_welby_enumeration_answer(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    json_t *answer);

#endif /* NGX_HTTP_WELBY_ENUMERATION_H */
