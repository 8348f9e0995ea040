/*
 * The body step: the request body, read in the access phase when a step
 * asked for it (ctx->body_wanted), made one contiguous buffer and, for
 * JSON, parsed once for every step after it.  While the client is still
 * sending, the pipeline waits and resumes here, as nginx's mirror module
 * and ModSecurity-nginx do; the body stays in r->request_body, so the
 * content handler (proxy_pass and the like) sends it on unchanged.
 */

#include "ngx_http_welby_module.h"

#include <jansson.h>


static void ngx_http_welby_body_handler(ngx_http_request_t *r);
static void ngx_http_welby_body_collect(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static welby_reason_e ngx_http_welby_body_copy(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, off_t len);
static ngx_uint_t ngx_http_welby_body_is_json(ngx_http_request_t *r);
static welby_reason_e ngx_http_welby_body_parse(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
static void ngx_http_welby_body_json_cleanup(void *data);


/* the media types whose bodies are parsed; compared case-insensitively */
static ngx_str_t  ngx_http_welby_json_types[] = {
    ngx_string("application/json"),
    ngx_string("application/fhir+json"),
    ngx_string("application/json-patch+json"),
    ngx_null_string
};


welby_reason_e
ngx_http_welby_body(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_int_t  rc;

    if (!ctx->body_wanted) {
        return WELBY_REASON_NONE;
    }

    if (ctx->body_read) {

        /*
         * Read here before the pipeline waited, or in an earlier location
         * of this request: never read again, but each location's bound
         * stands.
         */

        if (ctx->body_reason != WELBY_REASON_NONE) {
            return ctx->body_reason;
        }

        if (ctx->body_len > wlcf->body_max_size) {
            return WELBY_REASON_BODY_TOO_LARGE;
        }

        /* read for the WAF of a location without a FHIR base */

        if (wlcf->fhir_base.len && ctx->body_json == NULL
            && !ctx->body_json_error && ngx_http_welby_body_is_json(r))
        {
            ctx->body_reason = ngx_http_welby_body_parse(r, ctx);
            return ctx->body_reason;
        }

        return WELBY_REASON_NONE;
    }

    /* refused before a byte of the body is read */

    if (r->headers_in.content_length_n > (off_t) wlcf->body_max_size) {
        return WELBY_REASON_BODY_TOO_LARGE;
    }

    if (r->request_body
        && (r->request_body_no_buffering || r->reading_body))
    {
        /*
         * An earlier location of this request sends the body on as it
         * arrives (proxy_request_buffering off): it is not all here, and
         * a body seen in part is not checked.  A warning: the
         * configuration does it, for every such request.
         */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: the request body of id:%V was sent on "
                      "unbuffered before this location", &ctx->request_id);
        ctx->body_read = 1;
        ctx->body_reason = WELBY_REASON_INTERNAL_ERROR;
        return ctx->body_reason;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: body read id:%V", &ctx->request_id);

    rc = ngx_http_read_client_request_body(r, ngx_http_welby_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
        /*
         * nginx's own refusal of the body (client_max_body_size, a broken
         * chunk): it answers with its status, nothing was decided.
         */
        ctx->body_status = rc;
        return NGX_HTTP_WELBY_AGAIN;
    }

    if (rc == NGX_OK) {
        /*
         * Complete in the call: the handler ran and goes on with the
         * pipeline here, so the count the read took is given back.
         */
        r->main->count--;

        if (!ctx->body_read) {
            /* nginx calls the handler whenever the read is complete */
            return WELBY_REASON_INTERNAL_ERROR;
        }

        return ngx_http_welby_body(r, ctx, wlcf);
    }

    /*
     * The client is still sending.  The request's count the read took is
     * given back now, as the mirror module does: should the read fail
     * later (a timeout, a 413 of a chunked body), nginx finalizes the
     * request with its status and it closes.
     */

    ctx->body_waiting = 1;

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_HTTP_WELBY_AGAIN;
}


static void
ngx_http_welby_body_handler(ngx_http_request_t *r)
{
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_loc_conf_t  *wlcf;

    ctx = ngx_http_welby_get_ctx(r);
    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_welby_module);

    if (ctx == NULL) {
        /* cannot happen: the step that asked for the body made it */
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_welby_body_collect(r, ctx, wlcf);

    if (!ctx->body_waiting) {
        return;
    }

    ctx->body_waiting = 0;

    /* the read restored nothing of the phases' handlers */

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * The body as one buffer, and its JSON.  Failures are remembered in
 * ctx->body_reason: the step returns them when the pipeline resumes.
 */
static void
ngx_http_welby_body_collect(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    off_t                     len;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_http_request_body_t  *rb;

    ctx->body_read = 1;

    rb = r->request_body;

    if (rb == NULL) {
        /*
         * An earlier location discarded the body: whatever the client
         * sent is gone, and what is gone cannot be checked.
         */
        if (r->discard_body || r->headers_in.content_length_n > 0
            || r->headers_in.chunked)
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "welby: the request body of id:%V was discarded "
                          "before this location", &ctx->request_id);
            ctx->body_reason = WELBY_REASON_INTERNAL_ERROR;
        }

        return;
    }

    len = 0;

    for (cl = rb->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            len += b->file_last - b->file_pos;

        } else if (ngx_buf_in_memory(b)) {
            len += b->last - b->pos;
        }
    }

    ctx->body_len = (size_t) len;

    if (len > (off_t) wlcf->body_max_size) {
        /* a chunked body, whose length nobody announced */
        ctx->body_reason = WELBY_REASON_BODY_TOO_LARGE;
        return;
    }

    /*
     * A body an earlier location's unbuffered proxying took away is no
     * longer all here: refused rather than checked in part.
     */

    if (rb->rest > 0 || r->discard_body
        || (r->headers_in.content_length_n >= 0
            && len != r->headers_in.content_length_n))
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: the request body of id:%V is not complete "
                      "here, an earlier location sent it on",
                      &ctx->request_id);
        ctx->body_reason = WELBY_REASON_INTERNAL_ERROR;
        return;
    }

    ctx->body_reason = ngx_http_welby_body_copy(r, ctx, len);

    if (ctx->body_reason != WELBY_REASON_NONE) {
        return;
    }

    /*
     * Parsed for the policy, under a FHIR base; a location that read the
     * body only for the WAF leaves the parsing to libmodsecurity.
     */

    if (wlcf->fhir_base.len && ngx_http_welby_body_is_json(r)) {
        ctx->body_reason = ngx_http_welby_body_parse(r, ctx);
    }
}


static welby_reason_e
ngx_http_welby_body_copy(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    off_t len)
{
    u_char       *p;
    off_t         offset;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (len == 0) {
        ctx->body = (u_char *) "";
        return WELBY_REASON_NONE;
    }

    /* one buffer in memory, the usual small body: no copy */

    if (cl && cl->next == NULL && !cl->buf->in_file
        && ngx_buf_in_memory(cl->buf))
    {
        ctx->body = cl->buf->pos;
        return WELBY_REASON_NONE;
    }

    ctx->body = ngx_pnalloc(r->pool, (size_t) len);
    if (ctx->body == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    p = ctx->body;

    for ( /* void */ ; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            size = (size_t) (b->file_last - b->file_pos);

            /*
             * ngx_read_file() moves the file's offset, which the request
             * body's writer appends at: it is put back.
             */

            offset = b->file->offset;
            n = ngx_read_file(b->file, p, size, b->file_pos);
            b->file->offset = offset;

            if (n == NGX_ERROR || (size_t) n != size) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "welby: the request body of id:%V could "
                              "not be read back from \"%V\"",
                              &ctx->request_id, &b->file->name);
                return WELBY_REASON_INTERNAL_ERROR;
            }

            p += size;

        } else if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    return WELBY_REASON_NONE;
}


/*
 * Content-Type: a JSON type of ngx_http_welby_json_types, any case, with
 * or without media-type parameters (RFC 9110 section 8.3.1).
 */
static ngx_uint_t
ngx_http_welby_body_is_json(ngx_http_request_t *r)
{
    u_char     *p, *last, *end;
    ngx_str_t  *t;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    p = r->headers_in.content_type->value.data;
    last = p + r->headers_in.content_type->value.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    for (end = p; end < last; end++) {
        if (*end == ';' || *end == ' ' || *end == '\t') {
            break;
        }
    }

    for (t = ngx_http_welby_json_types; t->len; t++) {
        if ((size_t) (end - p) == t->len
            && ngx_strncasecmp(p, t->data, t->len) == 0)
        {
            break;
        }
    }

    if (t->len == 0) {
        return 0;
    }

    /* after the type, only white space and parameters */

    while (end < last && (*end == ' ' || *end == '\t')) {
        end++;
    }

    return end == last || *end == ';';
}


static welby_reason_e
ngx_http_welby_body_parse(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    json_t              *json;
    json_error_t         error;
    ngx_pool_cleanup_t  *cln;

    /* the cleanup first: a parsed body is never left without one */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    json = json_loadb((const char *) ctx->body, ctx->body_len,
                      JSON_REJECT_DUPLICATES, &error);

    if (json == NULL) {
        /* the position only: the text would quote the body */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "welby: body of id:%V is not JSON at %d",
                       &ctx->request_id, error.position);
        ctx->body_json_error = 1;
        return WELBY_REASON_NONE;
    }

    cln->handler = ngx_http_welby_body_json_cleanup;
    cln->data = json;

    ctx->body_json = json;

    return WELBY_REASON_NONE;
}


static void
ngx_http_welby_body_json_cleanup(void *data)
{
    json_decref(data);
}
