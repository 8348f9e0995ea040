/*
 * The $welby_* variables.  None is cacheable: their values are set by the
 * access-phase pipeline, and a variable read earlier (in a rewrite-phase
 * "set", say) must not freeze an empty value.
 */

#include "ngx_http_welby_module.h"


static ngx_int_t ngx_http_welby_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_decision_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_welby_set_variable(ngx_http_variable_value_t *v,
    u_char *data, size_t len);


static ngx_http_variable_t  ngx_http_welby_vars[] = {

    { ngx_string("welby_request_id"), NULL,
      ngx_http_welby_request_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_decision"), NULL,
      ngx_http_welby_decision_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_reason"), NULL,
      ngx_http_welby_reason_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_welby_decisions[] = {
    ngx_null_string,
    ngx_string("allow"),
    ngx_string("deny"),
    ngx_string("detect")
};


ngx_int_t
ngx_http_welby_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_welby_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || ctx->request_id.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_welby_set_variable(v, ctx->request_id.data, ctx->request_id.len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_decision_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t             *s;
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || ctx->decision == NGX_HTTP_WELBY_DECISION_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = &ngx_http_welby_decisions[ctx->decision];
    ngx_http_welby_set_variable(v, s->data, s->len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char            *code;
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || ctx->reason == WELBY_REASON_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    code = welby_reason_get(ctx->reason)->code;
    ngx_http_welby_set_variable(v, (u_char *) code, ngx_strlen(code));

    return NGX_OK;
}


static void
ngx_http_welby_set_variable(ngx_http_variable_value_t *v, u_char *data,
    size_t len)
{
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = data;
}
