/*
 * The response check: where the request alone cannot prove whose data it
 * reads, the backend's answer is held (a header filter that waits and a
 * body filter that buffers, bounded, as nginx's xslt and image filters
 * do), parsed, and checked against the token's patients before any byte
 * of it reaches the client.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_waf.h"
#include "ngx_http_welby_enumeration.h"


#define NGX_HTTP_WELBY_RESPONSE_HOLD    0   /* buffering the body */
#define NGX_HTTP_WELBY_RESPONSE_PASS    1   /* sent, or passed unchecked */
#define NGX_HTTP_WELBY_RESPONSE_REFUSE  2   /* replaced: the body goes */

/* the first buffer when the backend sends no Content-Length */
#define NGX_HTTP_WELBY_RESPONSE_CHUNK   16384


struct ngx_http_welby_response_s {
    u_char                     *data;
    size_t                      len;
    size_t                      size;
    ngx_uint_t                  state;
    unsigned                    check:1;    /* the policy's check */
    unsigned                    waf:1;      /* the WAF reads the body */
};


static ngx_int_t ngx_http_welby_response_header(ngx_http_request_t *r);
static ngx_int_t ngx_http_welby_response_body(ngx_http_request_t *r,
    ngx_chain_t *in);
static welby_reason_e ngx_http_welby_response_verifiable(
    ngx_http_request_t *r, ngx_http_welby_loc_conf_t *wlcf);
static ngx_uint_t ngx_http_welby_response_encoded(ngx_http_request_t *r);
static ngx_uint_t ngx_http_welby_response_json_type(ngx_str_t *type);
static ngx_int_t ngx_http_welby_response_add(ngx_http_request_t *r,
    ngx_http_welby_response_t *resp, ngx_buf_t *b, size_t max);
static welby_reason_e ngx_http_welby_response_check(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static ngx_int_t ngx_http_welby_response_send(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_chain_t *rest);
static ngx_uint_t ngx_http_welby_response_record(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_reason_e reason);
static ngx_int_t ngx_http_welby_response_refuse(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_reason_e reason);
static void ngx_http_welby_response_clear(ngx_http_request_t *r);
static ngx_http_welby_loc_conf_t *ngx_http_welby_response_conf(
    ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx);


static ngx_str_t  ngx_http_welby_response_step = ngx_string("response");

/*
 * What the request must not carry when its answer is checked: a part of
 * a resource (206) cannot be parsed, a compressed one cannot be read,
 * and a 304 (from the backend or from nginx's not-modified filter, which
 * runs before this one) passes unchecked.
 */
static ngx_str_t  ngx_http_welby_response_drop[] = {
    ngx_string("Range"),
    ngx_string("If-Range"),
    ngx_string("Accept-Encoding"),
    ngx_string("If-None-Match"),
    ngx_string("If-Modified-Since")
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_welby_response_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_welby_response_header;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_welby_response_body;

    return NGX_OK;
}


/*
 * Called by the policy step when it sets ctx->check_response: the
 * request goes to the backend without what would make its answer
 * impossible to check or let it pass unchecked.
 */
ngx_int_t
ngx_http_welby_response_prepare(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx)
{
    ngx_array_t  names;

    names.elts = ngx_http_welby_response_drop;
    names.nelts = sizeof(ngx_http_welby_response_drop) / sizeof(ngx_str_t);
    names.size = sizeof(ngx_str_t);
    names.nalloc = names.nelts;
    names.pool = r->pool;

    return ngx_http_welby_remove_headers(r, &r->headers_in.headers, &names,
                                         NULL);
}


static ngx_int_t
ngx_http_welby_response_header(ngx_http_request_t *r)
{
    ngx_uint_t                  check, waf;
    welby_reason_e              reason;
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_response_t  *resp;
    ngx_http_welby_loc_conf_t  *wlcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL || (!ctx->check_response && !ctx->waf_response)
        || ctx->response != NULL)
    {
        return ngx_http_next_header_filter(r);
    }

    /*
     * Decided on the first answer that reaches the filters: an answer of
     * the backend that error_page replaces never reaches them.
     */

    check = ctx->check_response;
    waf = ctx->waf_response;

    ctx->check_response = 0;
    ctx->waf_response = 0;

    resp = ngx_pcalloc(r->pool, sizeof(ngx_http_welby_response_t));
    if (resp == NULL) {
        return NGX_ERROR;
    }

    ctx->response = resp;

    wlcf = ngx_http_welby_response_conf(r, ctx);

    if (waf) {

        /* the WAF sees every answer, errors included: its status first */

        reason = ngx_http_welby_waf_response_headers(r, ctx, wlcf);

        /*
         * A compressed body is not what the rules match: a backend that
         * compresses what the client did not ask for is not read.
         */

        if (reason == WELBY_REASON_NONE && !r->header_only
            && r->method != NGX_HTTP_HEAD
            && ngx_http_welby_response_encoded(r))
        {
            reason = WELBY_REASON_RESPONSE_UNVERIFIABLE;
        }

        if (reason != WELBY_REASON_NONE
            && ngx_http_welby_response_record(r, ctx, wlcf, reason))
        {
            return ngx_http_welby_response_refuse(r, ctx, wlcf, reason);
        }

        resp->waf = (reason == WELBY_REASON_NONE && !r->header_only);
    }

    if (check
        && (r->headers_out.status < NGX_HTTP_OK
            || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE))
    {
        /* the backend's refusal or error shows no resource of anyone */
        check = 0;
    }

    if (check) {
        reason = ngx_http_welby_response_verifiable(r, wlcf);

        if (reason != WELBY_REASON_NONE) {
            if (ngx_http_welby_response_record(r, ctx, wlcf, reason)) {
                return ngx_http_welby_response_refuse(r, ctx, wlcf, reason);
            }

            check = 0;
        }
    }

    resp->check = check;

    if (!resp->check && !resp->waf) {
        resp->state = NGX_HTTP_WELBY_RESPONSE_PASS;
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.content_length_n >= 0) {
        resp->size = (size_t) ngx_min(r->headers_out.content_length_n,
                                      (off_t) wlcf->fhir_response_max);

    } else {
        resp->size = ngx_min(NGX_HTTP_WELBY_RESPONSE_CHUNK,
                             wlcf->fhir_response_max);
    }

    if (resp->size) {
        resp->data = ngx_pnalloc(r->pool, resp->size);
        if (resp->data == NULL) {
            return NGX_ERROR;
        }
    }

    /* the body is read, not sent: files come to this filter in memory */

    r->main_filter_need_in_memory = 1;
    r->allow_ranges = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_response_body(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                   rc;
    ngx_uint_t                  last;
    ngx_chain_t                *cl;
    welby_reason_e              reason;
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_response_t  *resp;
    ngx_http_welby_loc_conf_t  *wlcf;

    ctx = ngx_http_welby_get_ctx(r);

    if (r != r->main) {

        /*
         * A subrequest's answer (an SSI include, add_after_body) goes into
         * the inspected one unread by the rules: where the WAF reads the
         * answer, none is sent, and the answer is cut short.
         */

        if (ctx != NULL && ctx->response != NULL && ctx->response->waf) {
            for (cl = in; cl; cl = cl->next) {
                if (ngx_buf_size(cl->buf) > 0) {
                    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                                  "welby: id:%V a subrequest's answer "
                                  "cannot be inspected", &ctx->request_id);
                    return NGX_ERROR;
                }
            }
        }

        return ngx_http_next_body_filter(r, in);
    }

    if (ctx == NULL || ctx->response == NULL
        || ctx->response->state == NGX_HTTP_WELBY_RESPONSE_PASS)
    {
        return ngx_http_next_body_filter(r, in);
    }

    resp = ctx->response;

    if (resp->state == NGX_HTTP_WELBY_RESPONSE_REFUSE) {

        /* the backend's answer is read to its end and dropped */

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        /* what of the refusal is still to be written */

        return ngx_http_next_body_filter(r, NULL);
    }

    wlcf = ngx_http_welby_response_conf(r, ctx);
    last = 0;

    for (cl = in; cl; cl = cl->next) {

        rc = ngx_http_welby_response_add(r, resp, cl->buf,
                                         wlcf->fhir_response_max);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            break;
        }

        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (cl) {
        /* too large, or not in memory */

        reason = WELBY_REASON_RESPONSE_UNVERIFIABLE;

        if (!ngx_http_welby_response_record(r, ctx, wlcf, reason)) {
            return ngx_http_welby_response_send(r, ctx, cl);
        }

        for ( /* void */ ; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        return ngx_http_welby_response_refuse(r, ctx, wlcf, reason);
    }

    if (!last) {
        return NGX_OK;
    }

    if (resp->waf) {
        reason = ngx_http_welby_waf_response_body(r, ctx, wlcf, resp->data,
                                                  resp->len);

        if (reason != WELBY_REASON_NONE
            && ngx_http_welby_response_record(r, ctx, wlcf, reason))
        {
            return ngx_http_welby_response_refuse(r, ctx, wlcf, reason);
        }
    }

    if (!resp->check) {
        return ngx_http_welby_response_send(r, ctx, NULL);
    }

    reason = ngx_http_welby_response_check(r, ctx, wlcf);

    if (reason == WELBY_REASON_NONE
        || !ngx_http_welby_response_record(r, ctx, wlcf, reason))
    {
        return ngx_http_welby_response_send(r, ctx, NULL);
    }

    return ngx_http_welby_response_refuse(r, ctx, wlcf, reason);
}


/*
 * Whether the answer's headers let its body be checked: all of it (not
 * a 206), as it is (no Content-Encoding but identity), FHIR JSON, within
 * the bound.
 */
static welby_reason_e
ngx_http_welby_response_verifiable(ngx_http_request_t *r,
    ngx_http_welby_loc_conf_t *wlcf)
{
    /*
     * A HEAD has no body to check (r->header_only is set for it only by
     * nginx's header filter, after this one).
     */

    if (r->headers_out.status == NGX_HTTP_PARTIAL_CONTENT
        || r->method == NGX_HTTP_HEAD || r->header_only)
    {
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    if (ngx_http_welby_response_encoded(r)) {
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    if (!ngx_http_welby_response_json_type(&r->headers_out.content_type)) {
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    if (r->headers_out.content_length_n > 0
        && (uint64_t) r->headers_out.content_length_n
           > (uint64_t) wlcf->fhir_response_max)
    {
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    return WELBY_REASON_NONE;
}


/* every Content-Encoding line counts, not only the one nginx keeps */
static ngx_uint_t
ngx_http_welby_response_encoded(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0
                || h[i].key.len != sizeof("Content-Encoding") - 1
                || ngx_strncasecmp(h[i].key.data,
                                   (u_char *) "Content-Encoding",
                                   h[i].key.len)
                   != 0)
            {
                continue;
            }

            if (h[i].value.len != sizeof("identity") - 1
                || ngx_strncasecmp(h[i].value.data, (u_char *) "identity",
                                   h[i].value.len)
                   != 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


/* application/fhir+json or application/json, parameters allowed */
static ngx_uint_t
ngx_http_welby_response_json_type(ngx_str_t *type)
{
    u_char  *p, *end;
    size_t   len;

    static ngx_str_t  types[] = {
        ngx_string("application/fhir+json"),
        ngx_string("application/json")
    };

    p = type->data;
    end = p + type->len;

    while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
        p++;
    }

    len = p - type->data;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p != end && *p != ';') {
        return 0;
    }

    return (len == types[0].len
            && ngx_strncasecmp(type->data, types[0].data, len) == 0)
           || (len == types[1].len
               && ngx_strncasecmp(type->data, types[1].data, len) == 0);
}


/*
 * Copies a buffer of the answer.  NGX_DECLINED when the answer grows
 * beyond max or a part of it is not in memory.
 */
static ngx_int_t
ngx_http_welby_response_add(ngx_http_request_t *r,
    ngx_http_welby_response_t *resp, ngx_buf_t *b, size_t max)
{
    u_char  *data;
    size_t   n, size;

    if (ngx_buf_special(b)) {
        return NGX_OK;
    }

    if (!ngx_buf_in_memory(b)) {
        return NGX_DECLINED;
    }

    n = b->last - b->pos;

    if (n > max - resp->len) {
        return NGX_DECLINED;
    }

    if (n > resp->size - resp->len) {
        size = ngx_max(resp->size * 2, resp->len + n);
        size = ngx_min(size, max);

        data = ngx_pnalloc(r->pool, size);
        if (data == NULL) {
            return NGX_ERROR;
        }

        if (resp->len) {
            ngx_memcpy(data, resp->data, resp->len);
        }

        if (resp->data) {
            ngx_pfree(r->pool, resp->data);
        }

        resp->data = data;
        resp->size = size;
    }

    if (n) {
        ngx_memcpy(resp->data + resp->len, b->pos, n);
        resp->len += n;
    }

    return NGX_OK;
}


static welby_reason_e
ngx_http_welby_response_check(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf)
{
    json_t          *json, *rt;
    const char      *name;
    json_error_t     err;
    welby_reason_e   reason;

    if (ctx->response->len == 0) {
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    json = json_loadb((const char *) ctx->response->data, ctx->response->len,
                      JSON_REJECT_DUPLICATES, &err);

    if (json == NULL) {
        /* err.text may quote the body: never logged */
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    /*
     * A read is answered with the resource it names, a history with a
     * Bundle: a Parameters, a List or an OperationOutcome in their place
     * would carry other resources that no compartment element names.
     */

    name = NULL;

    if (ctx->fhir != NULL) {
        switch (ctx->fhir->interaction) {

        case WELBY_FHIR_READ:
        case WELBY_FHIR_VREAD:
            name = welby_fhir_type_name(ctx->fhir->type);
            break;

        case WELBY_FHIR_HISTORY_INSTANCE:
            name = "Bundle";
            break;

        default:
            break;
        }
    }

    rt = json_object_get(json, "resourceType");

    if (name != NULL
        && (!json_is_string(rt) || strcmp(json_string_value(rt), name) != 0))
    {
        json_decref(json);
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    /* the bases the request was classified with */

    reason = welby_compartment_check_answer(json, &ctx->subject,
                                            ctx->policy.context,
                                            ctx->fhir_in.bases,
                                            ctx->fhir_in.nbases);

    /* the patients only the answer shows count for enumeration too */

    if (reason == WELBY_REASON_NONE) {
        reason = ngx_http_welby_enumeration_answer(r, ctx, wlcf, json);
        json_decref(json);
        return reason;
    }

    json_decref(json);

    /* the request's reasons, said of the answer */

    switch (reason) {

    case WELBY_REASON_RESPONSE_PATIENT_MISMATCH:
        return reason;

    case WELBY_REASON_PATIENT_MISMATCH:
        return WELBY_REASON_RESPONSE_PATIENT_MISMATCH;

    default:
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }
}


/*
 * The held answer as the backend sent it, and then rest, the part not
 * held (detect mode: too large to check), if any.
 */
static ngx_int_t
ngx_http_welby_response_send(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_chain_t *rest)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_chain_t                 out;
    ngx_http_welby_response_t  *resp;

    resp = ctx->response;
    resp->state = NGX_HTTP_WELBY_RESPONSE_PASS;

    if (rest == NULL) {
        ngx_http_clear_content_length(r);
        r->headers_out.content_length_n = resp->len;
    }

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    if (resp->len == 0) {
        return ngx_http_next_body_filter(r, rest);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = resp->data;
    b->last = resp->data + resp->len;
    b->memory = 1;

    if (rest == NULL) {
        b->last_buf = 1;
        b->last_in_chain = 1;
    }

    out.buf = b;
    out.next = rest;

    return ngx_http_next_body_filter(r, &out);
}


/*
 * Records a reason the answer is not shown: in the ctx for the audit
 * record and $welby_reason, and in the error log as the pipeline does.
 * Returns 1 when the answer is to be replaced, 0 in detect mode.
 */
static ngx_uint_t
ngx_http_welby_response_record(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_reason_e reason)
{
    const welby_reason_t  *rs;

    rs = welby_reason_get(reason);

    if (ctx->reason == WELBY_REASON_NONE) {
        ctx->reason = reason;
        ctx->step = &ngx_http_welby_response_step;
    }

    if (wlcf->mode == NGX_HTTP_WELBY_DETECT) {
        if (ctx->decision != NGX_HTTP_WELBY_DECISION_DENY) {
            ctx->decision = NGX_HTTP_WELBY_DECISION_DETECT;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: detect id:%V step:response reason:%s",
                      &ctx->request_id, rs->code);
        return 0;
    }

    ctx->decision = NGX_HTTP_WELBY_DECISION_DENY;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "welby: refused id:%V step:response reason:%s",
                  &ctx->request_id, rs->code);
    return 1;
}


/*
 * The answer replaced by the refusal: the backend's headers dropped, the
 * OperationOutcome sent at once, and the rest of the backend's body read
 * and dropped by the body filter.
 */
static ngx_int_t
ngx_http_welby_response_refuse(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_reason_e reason)
{
    ngx_int_t     rc;
    ngx_uint_t    status;
    ngx_chain_t  *out;

    ctx->response->state = NGX_HTTP_WELBY_RESPONSE_REFUSE;

    ngx_http_welby_response_clear(r);

    status = 0;

    if (reason == WELBY_REASON_RESPONSE_PATIENT_MISMATCH) {
        status = wlcf->fhir_response_status;
    }

    out = ngx_http_welby_refusal(r, ctx, status);
    if (out == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_next_body_filter(r, out);
}


/*
 * None of the backend's headers goes with a refusal (its ETag, Location,
 * Content-Location, Last-Modified, cookies), nor its status line: the
 * header filter would send that instead of the status.
 */
static void
ngx_http_welby_response_clear(ngx_http_request_t *r)
{
    ngx_http_headers_out_t  *ho;

    ho = &r->headers_out;

    ho->headers.part.nelts = 0;
    ho->headers.part.next = NULL;
    ho->headers.last = &ho->headers.part;

    ho->trailers.part.nelts = 0;
    ho->trailers.part.next = NULL;
    ho->trailers.last = &ho->trailers.part;

    /* every field after the lists: their layout differs across 1.2x */

    ngx_memzero(&ho->status, sizeof(ngx_http_headers_out_t)
                             - offsetof(ngx_http_headers_out_t, status));

    ho->content_length_n = -1;
    ho->last_modified_time = -1;

    r->allow_ranges = 0;
}


/* the location whose steps decided, even after an internal redirect */
static ngx_http_welby_loc_conf_t *
ngx_http_welby_response_conf(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx)
{
    if (ctx->pipeline_conf) {
        return ctx->pipeline_conf;
    }

    return ngx_http_get_module_loc_conf(r, ngx_http_welby_module);
}
