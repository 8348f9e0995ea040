/*
 * The $welby_* variables.  None is cacheable: their values are set by the
 * access-phase pipeline, and a variable read earlier (in a rewrite-phase
 * "set", say) must not freeze an empty value.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_waf.h"
#include "ngx_http_welby_geo.h"
#include "ngx_http_welby_limit.h"

#include <jansson.h>


static ngx_int_t ngx_http_welby_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_decision_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_reason_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_claim_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_cert_sha256_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_fhir_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_welby_body_json_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_welby_set_variable(ngx_http_variable_value_t *v,
    u_char *data, size_t len);


#define NGX_HTTP_WELBY_FHIR_INTERACTION  0
#define NGX_HTTP_WELBY_FHIR_TYPE         1
#define NGX_HTTP_WELBY_FHIR_ID           2
#define NGX_HTTP_WELBY_FHIR_PATIENT      3


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

    { ngx_string("welby_sub"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, sub),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_client_id"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, client_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_iss"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, iss),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_jti"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, jti),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_scope"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, scope),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_patient"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, patient),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_fhir_user"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, fhir_user),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_amr"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, amr),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_patients"), NULL,
      ngx_http_welby_claim_str_variable, offsetof(welby_claims_t, patients),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_client_cert_sha256"), NULL,
      ngx_http_welby_cert_sha256_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_body_json"), NULL,
      ngx_http_welby_body_json_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_fhir_interaction"), NULL,
      ngx_http_welby_fhir_variable, NGX_HTTP_WELBY_FHIR_INTERACTION,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_fhir_type"), NULL,
      ngx_http_welby_fhir_variable, NGX_HTTP_WELBY_FHIR_TYPE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_fhir_id"), NULL,
      ngx_http_welby_fhir_variable, NGX_HTTP_WELBY_FHIR_ID,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_fhir_patient"), NULL,
      ngx_http_welby_fhir_variable, NGX_HTTP_WELBY_FHIR_PATIENT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_waf_rules"), NULL,
      ngx_http_welby_waf_rules_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_waf_score"), NULL,
      ngx_http_welby_waf_score_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_country"), NULL,
      ngx_http_welby_country_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_asn"), NULL,
      ngx_http_welby_asn_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_limit"), NULL,
      ngx_http_welby_limit_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("welby_claim_"), NULL,
      ngx_http_welby_claim_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

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


/* A claim of the verified token; empty (not found) without one. */
static ngx_int_t
ngx_http_welby_claim_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    welby_str_t           *s;
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || !ctx->token_valid) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (welby_str_t *) ((u_char *) &ctx->claims + data);

    if (s->data == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_welby_set_variable(v, (u_char *) s->data, s->len);

    return NGX_OK;
}


/*
 * $welby_claim_<name>: any top-level claim of the verified token.  A
 * string as it is, a number as text, an array of strings joined by
 * spaces; anything else, or a string with a control character (the value
 * may end up in a header or a log line), is not found.  The claims are
 * parsed again only when such a variable is read.
 */
static ngx_int_t
ngx_http_welby_claim_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t *name = (ngx_str_t *) data;

    u_char                *p;
    size_t                 i, len, n;
    json_t                *doc, *claim, *item;
    ngx_str_t              key;
    const char            *str;
    ngx_http_welby_ctx_t  *ctx;
    u_char                 buf[NGX_INT64_LEN + 32];

    v->not_found = 1;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || !ctx->token_valid || ctx->payload.data == NULL) {
        return NGX_OK;
    }

    key.len = name->len - (sizeof("welby_claim_") - 1);
    key.data = ngx_pnalloc(r->pool, key.len + 1);
    if (key.data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(key.data, name->data + sizeof("welby_claim_") - 1,
                       key.len + 1);

    doc = json_loadb((const char *) ctx->payload.data, ctx->payload.len,
                     JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL) {
        return NGX_OK;
    }

    claim = json_object_get(doc, (const char *) key.data);

    p = NULL;
    len = 0;

    if (json_is_string(claim)) {
        str = json_string_value(claim);
        len = json_string_length(claim);

        p = ngx_pnalloc(r->pool, len ? len : 1);
        if (p != NULL) {
            ngx_memcpy(p, str, len);
        }

    } else if (json_is_integer(claim)) {
        p = buf;
        len = ngx_sprintf(buf, "%L", (int64_t) json_integer_value(claim))
              - buf;

    } else if (json_is_real(claim)) {
        len = snprintf((char *) buf, sizeof(buf), "%.17g",
                       json_real_value(claim));
        p = buf;

    } else if (json_is_array(claim) && json_array_size(claim)) {
        len = 0;

        json_array_foreach(claim, i, item) {
            if (!json_is_string(item)) {
                len = 0;
                break;
            }

            len += json_string_length(item) + 1;
        }

        if (len) {
            p = ngx_pnalloc(r->pool, len);

            if (p != NULL) {
                n = 0;

                json_array_foreach(claim, i, item) {
                    if (n) {
                        p[n++] = ' ';
                    }

                    n = ngx_cpymem(p + n, json_string_value(item),
                                   json_string_length(item))
                        - p;
                }

                len = n;
            }
        }
    }

    if (p != NULL && p == buf) {
        p = ngx_pnalloc(r->pool, len);
        if (p != NULL) {
            ngx_memcpy(p, buf, len);
        }
    }

    json_decref(doc);

    if (p == NULL || len == 0) {
        return NGX_OK;
    }

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            return NGX_OK;
        }
    }

    ngx_http_welby_set_variable(v, p, len);

    return NGX_OK;
}


/*
 * "ok" when the body step parsed a JSON body, "error" when the body was
 * JSON by its Content-Type and did not parse; empty otherwise.
 */
static ngx_int_t
ngx_http_welby_body_json_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ctx->body_json) {
        ngx_http_welby_set_variable(v, (u_char *) "ok", 2);

    } else if (ctx->body_json_error) {
        ngx_http_welby_set_variable(v, (u_char *) "error", 5);

    } else {
        ngx_http_welby_set_variable(v, (u_char *) "", 0);
    }

    return NGX_OK;
}


/*
 * What the classify step made of a request under a FHIR base: codes and
 * ids, never health data.  Empty (not found) when it was not classified.
 */
static ngx_int_t
ngx_http_welby_fhir_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char            *name;
    ngx_str_t              s;
    ngx_http_welby_ctx_t  *ctx;
    welby_fhir_request_t  *fr;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || ctx->fhir == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    fr = ctx->fhir;
    ngx_str_null(&s);

    switch (data) {

    case NGX_HTTP_WELBY_FHIR_INTERACTION:
        name = welby_fhir_interaction_name(fr->interaction);
        s.data = (u_char *) name;
        s.len = ngx_strlen(name);
        break;

    case NGX_HTTP_WELBY_FHIR_TYPE:
        name = welby_fhir_type_name(fr->type);

        if (name) {
            s.data = (u_char *) name;
            s.len = ngx_strlen(name);
        }

        break;

    case NGX_HTTP_WELBY_FHIR_ID:
        s.data = (u_char *) fr->id.data;
        s.len = fr->id.len;
        break;

    default: /* NGX_HTTP_WELBY_FHIR_PATIENT */
        if (ngx_http_welby_fhir_patients(r->pool, fr, &s) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (s.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_welby_set_variable(v, s.data, s.len);

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


/*
 * The SHA-256 of the client certificate, in hex: nginx's own
 * $ssl_client_fingerprint is SHA-1.  Any location: without a welby
 * context the hash is made into a throwaway one.
 */
static ngx_int_t
ngx_http_welby_cert_sha256_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    ngx_int_t              rc;
    ngx_http_welby_ctx_t  *ctx, tmp;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL) {
        ngx_memzero(&tmp, sizeof(ngx_http_welby_ctx_t));
        ctx = &tmp;
    }

    rc = ngx_http_welby_client_cert_sha256(r->main, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_welby_set_variable(v, NULL, 0);
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_hex_dump(p, ctx->cert_sha256, 32);
    ngx_http_welby_set_variable(v, p, 64);

    return NGX_OK;
}
