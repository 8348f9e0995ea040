/*
 * The classify step: the first of the pipeline, cheapest of all.  Under a
 * welby_fhir_base it also classifies the FHIR request (welby_fhir.c).
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_waf.h"


/* The FHIR RESTful API's methods; WebDAV and the like never reach it. */
#define NGX_HTTP_WELBY_METHODS                                               \
    (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH    \
     |NGX_HTTP_DELETE|NGX_HTTP_OPTIONS)


static welby_reason_e ngx_http_welby_fhir_classify(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static ngx_uint_t ngx_http_welby_fhir_has_body(ngx_http_request_t *r);
static ngx_uint_t ngx_http_welby_fhir_media_type(ngx_http_request_t *r,
    ngx_str_t *type);
static ngx_uint_t ngx_http_welby_fhir_header(ngx_http_request_t *r,
    ngx_str_t *names);


/*
 * Headers that make some servers and frameworks take another method than
 * the request line's: the gateway would check a GET that the backend runs
 * as a DELETE.
 */
static ngx_str_t  ngx_http_welby_fhir_refused_headers[] = {
    ngx_string("X-HTTP-Method-Override"),
    ngx_string("X-HTTP-Method"),
    ngx_string("X-Method-Override"),

    /*
     * A conditional create runs a search of the header's parameters on
     * the server, and answers with what it found: a search the gateway
     * cannot see.
     */
    ngx_string("If-None-Exist"),
    ngx_null_string
};

static ngx_str_t  ngx_http_welby_fhir_form =
    ngx_string("application/x-www-form-urlencoded");
static ngx_str_t  ngx_http_welby_fhir_multipart =
    ngx_string("multipart/form-data");


welby_reason_e
ngx_http_welby_classify(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    u_char          *raw, *q;
    size_t           raw_len;
    welby_reason_e   rc;

    /* after an internal redirect the request is classified again */
    ctx->fhir = NULL;

    if (!(r->method & NGX_HTTP_WELBY_METHODS)) {
        return WELBY_REASON_METHOD_NOT_ALLOWED;
    }

    raw = r->unparsed_uri.data;
    raw_len = r->unparsed_uri.len;

    /*
     * nginx ends r->uri and r->args at a '#' that it finds while it
     * decodes them, but "proxy_pass" sends the raw URI on, and a backend
     * may read "?patient=p1#&patient=p2" to its end: no request target
     * has a fragment (RFC 9112, 3.2).
     */

    if (ngx_strlchr(raw, raw + raw_len, '#') != NULL) {
        return WELBY_REASON_REQUEST_MALFORMED;
    }

    q = ngx_strlchr(raw, raw + raw_len, '?');
    if (q) {
        raw_len = q - raw;
    }

    rc = welby_fhir_check_path(raw, raw_len, r->uri.data, r->uri.len);

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /* the WAF reads every body, whatever the location */

    if (wlcf->waf != NGX_HTTP_WELBY_WAF_OFF
        && ngx_http_welby_fhir_has_body(r))
    {
        ctx->body_wanted = 1;
    }

    if (wlcf->fhir_base.len == 0) {
        return WELBY_REASON_NONE;
    }

    /* under a FHIR base every body is read: writes are checked on it */

    if (ngx_http_welby_fhir_has_body(r)) {
        ctx->body_wanted = 1;
    }

    return ngx_http_welby_fhir_classify(r, ctx, wlcf);
}


static welby_reason_e
ngx_http_welby_fhir_classify(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    u_char                *scratch;
    size_t                 len;
    ngx_int_t              rc;
    ngx_uint_t             form;
    welby_reason_e         reason;
    welby_fhir_input_t    *in;
    welby_fhir_request_t  *fr;

    /* kept in the ctx: the policy and the response check read it too */

    in = &ctx->fhir_in;

    rc = ngx_http_welby_fhir_input(r, ctx, wlcf, in);

    if (rc == NGX_DECLINED) {
        /* in the location, outside the base: nothing says what it is */
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (rc != NGX_OK) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    if (ngx_http_welby_fhir_header(r, ngx_http_welby_fhir_refused_headers)) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    /*
     * A servlet container reads the parameters of a form body as if they
     * were in the query, for any POST: a form is understood only where
     * FHIR defines one, the POST of a search, and there it is read and
     * classified with the query (by the policy step, once the body step
     * has it).
     */

    form = 0;

    if (ngx_http_welby_fhir_has_body(r)) {
        form = ngx_http_welby_fhir_media_type(r, &ngx_http_welby_fhir_form);

        /* Jetty reads a PUT's form too, frameworks any method's */

        if (form && r->method != NGX_HTTP_POST) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (ngx_http_welby_fhir_media_type(r,
                                           &ngx_http_welby_fhir_multipart))
        {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }
    }

    fr = ngx_palloc(r->pool, sizeof(welby_fhir_request_t));
    if (fr == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    len = in->path.len + in->query.len + in->form.len + 1;

    scratch = ngx_pnalloc(r->pool, len);
    if (scratch == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    reason = welby_fhir_classify(in, fr, scratch, len);

    if (reason != WELBY_REASON_NONE) {
        return reason;
    }

    if (r->method == NGX_HTTP_POST && ngx_http_welby_fhir_has_body(r)
        && (fr->interaction == WELBY_FHIR_SEARCH_TYPE
            || fr->interaction == WELBY_FHIR_SEARCH_SYSTEM
            || fr->interaction == WELBY_FHIR_OPERATION))
    {
        if (form != (fr->interaction != WELBY_FHIR_OPERATION)) {
            /* a search's body that is no form, or an operation's form */
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

    } else if (form) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (fr->needs_body) {
        ctx->body_wanted = 1;
    }

    ctx->fhir = fr;

    return WELBY_REASON_NONE;
}


/*
 * What the classifier reads of a request under wlcf's FHIR base; the
 * policy step classifies a POST search again with the same input once
 * the body step has read its form (in->form is the body then).
 * NGX_DECLINED: r->uri is not under the base.
 */
ngx_int_t
ngx_http_welby_fhir_input(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf, welby_fhir_input_t *in)
{
    u_char     *p;
    ngx_str_t  *base, host;

    base = &wlcf->fhir_base;

    if (base->len == 0 || r->uri.len < base->len
        || ngx_strncmp(r->uri.data, base->data, base->len) != 0
        || (r->uri.len > base->len && r->uri.data[base->len] != '/'))
    {
        return NGX_DECLINED;
    }

    ngx_memzero(in, sizeof(welby_fhir_input_t));

    switch (r->method) {
    case NGX_HTTP_GET:
        in->method = WELBY_FHIR_M_GET;
        break;
    case NGX_HTTP_HEAD:
        in->method = WELBY_FHIR_M_HEAD;
        break;
    case NGX_HTTP_POST:
        in->method = WELBY_FHIR_M_POST;
        break;
    case NGX_HTTP_PUT:
        in->method = WELBY_FHIR_M_PUT;
        break;
    case NGX_HTTP_PATCH:
        in->method = WELBY_FHIR_M_PATCH;
        break;
    case NGX_HTTP_DELETE:
        in->method = WELBY_FHIR_M_DELETE;
        break;
    case NGX_HTTP_OPTIONS:
        in->method = WELBY_FHIR_M_OPTIONS;
        break;
    default:
        return NGX_DECLINED;
    }

    in->path.data = r->uri.data + base->len;
    in->path.len = r->uri.len - base->len;
    in->query.data = r->args.data;
    in->query.len = r->args.len;

    /* without a body there is no form: the query says it all */

    if (!ngx_http_welby_fhir_has_body(r)) {
        in->form.data = (const unsigned char *) "";
        in->form.len = 0;

    } else if (ctx->body_read && r->method == NGX_HTTP_POST
               && ngx_http_welby_fhir_media_type(r,
                                                 &ngx_http_welby_fhir_form))
    {
        in->form.data = ctx->body ? ctx->body : (u_char *) "";
        in->form.len = ctx->body_len;
    }

    /*
     * The absolute base a client names this server by: the scheme it
     * reached the gateway with, the Host it sent (nginx has checked its
     * syntax), the base path.
     */

    if (r->headers_in.host) {
        host = r->headers_in.host->value;

    } else {
        host = r->headers_in.server;
    }

    if (host.len) {
        p = ngx_pnalloc(r->pool, sizeof("https://") - 1 + host.len
                                 + base->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        in->bases[0].data = p;

        if (ctx->tls_secure || r->connection->ssl) {
            p = ngx_cpymem(p, "https://", sizeof("https://") - 1);

        } else {
            p = ngx_cpymem(p, "http://", sizeof("http://") - 1);
        }

        p = ngx_cpymem(p, host.data, host.len);
        p = ngx_cpymem(p, base->data, base->len);

        in->bases[0].len = p - in->bases[0].data;
        in->nbases = 1;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_welby_fhir_has_body(ngx_http_request_t *r)
{
    return r->headers_in.content_length_n > 0 || r->headers_in.chunked;
}


/* whether Content-Type is the media type, parameters and case aside */
static ngx_uint_t
ngx_http_welby_fhir_media_type(ngx_http_request_t *r, ngx_str_t *type)
{
    u_char  *p, *e;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    p = r->headers_in.content_type->value.data;
    e = p + r->headers_in.content_type->value.len;

    while (p < e && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if ((size_t) (e - p) < type->len
        || ngx_strncasecmp(p, type->data, type->len) != 0)
    {
        return 0;
    }

    p += type->len;

    while (p < e && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p == e || *p == ';';
}


static ngx_uint_t
ngx_http_welby_fhir_header(ngx_http_request_t *r, ngx_str_t *names)
{
    ngx_str_t        *n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        /*
         * "X_HTTP_Method_Override" too, with underscores_in_headers on:
         * FastCGI, uwsgi and SCGI backends read both as one name.
         */

        for (n = names; n->len; n++) {
            if (welby_header_name_eq(h[i].key.data, h[i].key.len,
                                     n->data, n->len))
            {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * The patients a classified request names, space-separated, for
 * $welby_fhir_patient and the audit record: FHIR ids, never a space in
 * them.  Empty when it names none.
 */
ngx_int_t
ngx_http_welby_fhir_patients(ngx_pool_t *pool, welby_fhir_request_t *fr,
    ngx_str_t *s)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    ngx_str_null(s);

    if (fr == NULL || fr->npatients == 0) {
        return NGX_OK;
    }

    len = 0;

    for (i = 0; i < fr->npatients; i++) {
        len += fr->patients[i].len + 1;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->data = p;

    for (i = 0; i < fr->npatients; i++) {
        if (i) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, fr->patients[i].data, fr->patients[i].len);
    }

    s->len = p - s->data;

    return NGX_OK;
}
