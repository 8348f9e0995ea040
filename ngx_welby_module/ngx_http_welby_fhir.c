/*
 * The classify step: the first of the pipeline, cheapest of all.
 */

#include "ngx_http_welby_module.h"


/* The FHIR RESTful API's methods; WebDAV and the like never reach it. */
#define NGX_HTTP_WELBY_METHODS                                               \
    (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH    \
     |NGX_HTTP_DELETE|NGX_HTTP_OPTIONS)


welby_reason_e
ngx_http_welby_classify(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    u_char          *raw, *q;
    size_t           raw_len;
    welby_reason_e   rc;

    if (!(r->method & NGX_HTTP_WELBY_METHODS)) {
        return WELBY_REASON_METHOD_NOT_ALLOWED;
    }

    raw = r->unparsed_uri.data;
    raw_len = r->unparsed_uri.len;

    q = ngx_strlchr(raw, raw + raw_len, '?');
    if (q) {
        raw_len = q - raw;
    }

    rc = welby_fhir_check_path(raw, raw_len, r->uri.data, r->uri.len);

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /* under a FHIR base every body is read: writes are checked on it */

    if (wlcf->fhir_base.len
        && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
    {
        ctx->body_wanted = 1;
    }

    return WELBY_REASON_NONE;
}
