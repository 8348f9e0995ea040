/*
 * ngx_http_welby_module: the structures every welby source file shares.
 * Each concern's file exports its own functions here, in its own section.
 */

#ifndef NGX_HTTP_WELBY_MODULE_H
#define NGX_HTTP_WELBY_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "welby_reason.h"
#include "welby_fhir.h"


#define NGX_HTTP_WELBY_ENFORCE  0
#define NGX_HTTP_WELBY_DETECT   1

#define NGX_HTTP_WELBY_DECISION_NONE    0
#define NGX_HTTP_WELBY_DECISION_ALLOW   1
#define NGX_HTTP_WELBY_DECISION_DENY    2
#define NGX_HTTP_WELBY_DECISION_DETECT  3

/* 16 random bytes, hex: unique enough across nodes without coordination. */
#define NGX_HTTP_WELBY_REQUEST_ID_BYTES  16


typedef struct {
    ngx_flag_t                  used;
} ngx_http_welby_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_uint_t                  mode;
} ngx_http_welby_loc_conf_t;


typedef struct {
    ngx_str_t                   request_id;
    u_char                      request_id_data[WELBY_FHIR_ID_MAX];

    ngx_str_t                  *step;
    welby_reason_e              reason;
    ngx_uint_t                  decision;

    unsigned                    pipeline_done:1;
} ngx_http_welby_ctx_t;


/*
 * A pipeline step allows (WELBY_REASON_NONE) or names the reason it
 * refuses.  Steps never send responses themselves: the pipeline decides
 * between refusing and, in detect mode, only recording.
 */
typedef welby_reason_e (*ngx_http_welby_step_pt)(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);


extern ngx_module_t  ngx_http_welby_module;


/* ngx_http_welby_module.c */
ngx_http_welby_ctx_t *ngx_http_welby_get_ctx(ngx_http_request_t *r);

/* ngx_http_welby_fhir.c */
welby_reason_e ngx_http_welby_classify(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/* ngx_http_welby_variables.c */
ngx_int_t ngx_http_welby_add_variables(ngx_conf_t *cf);

#endif /* NGX_HTTP_WELBY_MODULE_H */
