/*
 * The policy step: SMART scopes and the patient compartment over the
 * classified request, and the directives that configure them.
 */

#include "ngx_http_welby_module.h"


static welby_reason_e ngx_http_welby_policy_subject(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_scopes_t *scopes, u_char *decoded);
static welby_reason_e ngx_http_welby_policy_decide(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, welby_fhir_request_t *req,
    welby_fhir_input_t *in);
static welby_reason_e ngx_http_welby_policy_body(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
static char *ngx_http_welby_policy_operations(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *conf);
static ngx_uint_t ngx_http_welby_policy_groups(welby_fhir_request_t *req);


static ngx_conf_enum_t  ngx_http_welby_response_statuses[] = {
    { ngx_string("403"), NGX_HTTP_FORBIDDEN },
    { ngx_string("404"), NGX_HTTP_NOT_FOUND },
    { ngx_null_string, 0 }
};


/*
 * Deny by default: under a FHIR base, with a token required, a request
 * passes only when one scope context of its token grants every letter it
 * needs on every type it reads or writes, and reaches every patient it
 * names; a write's body, and a Bundle's every entry, are held to the
 * same.  Whatever only the answer can prove is left to the response
 * check, which this step arms.
 */
welby_reason_e
ngx_http_welby_policy(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    u_char                *scratch;
    size_t                 len;
    welby_reason_e         rc;
    welby_scopes_t         scopes;
    welby_fhir_input_t    *in;
    welby_fhir_request_t  *req;
    u_char                 decoded[WELBY_CLAIM_STR_MAX];

    if (ctx->fhir == NULL || wlcf->token == NGX_HTTP_WELBY_TOKEN_OFF) {
        return WELBY_REASON_NONE;
    }

    if (!ctx->token_valid) {
        /* detect mode let an unverified token through: it grants nothing */
        return WELBY_REASON_SCOPE_INSUFFICIENT;
    }

    req = ctx->fhir;
    in = &ctx->fhir_in;

    if (r->method == NGX_HTTP_POST && ctx->body_read
        && (req->interaction == WELBY_FHIR_SEARCH_TYPE
            || req->interaction == WELBY_FHIR_SEARCH_SYSTEM))
    {
        /* a POST search: its parameters are in the form the body holds */

        if (ngx_http_welby_fhir_input(r, ctx, wlcf, in) != NGX_OK) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        len = in->path.len + in->query.len + in->form.len + 1;

        scratch = ngx_pnalloc(r->pool, len);
        if (scratch == NULL) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        rc = welby_fhir_classify(in, req, scratch, len);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    /*
     * The scopes live on the stack: they are decided over here, Bundle
     * entries included, and nothing after this step reads them.
     */

    scopes.n = 0;
    scopes.ignored = 0;
    scopes.nparams = 0;

    rc = ngx_http_welby_policy_subject(r, ctx, wlcf, &scopes, decoded);

    if (rc == WELBY_REASON_NONE) {
        rc = ngx_http_welby_policy_decide(r, ctx, req, in);
    }

    ctx->subject.scopes = NULL;

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (ctx->policy.check_response
        || (ctx->policy.context != WELBY_SCOPE_SYSTEM
            && (req->interaction == WELBY_FHIR_SEARCH_TYPE
                || req->interaction == WELBY_FHIR_SEARCH_SYSTEM
                || req->interaction == WELBY_FHIR_HISTORY_TYPE
                || req->interaction == WELBY_FHIR_HISTORY_SYSTEM
                || req->interaction == WELBY_FHIR_HISTORY_INSTANCE)
            && (wlcf->fhir_search_check
                || ngx_http_welby_policy_groups(req))))
    {
        ctx->check_response = 1;

        if (ngx_http_welby_response_prepare(r, ctx) != NGX_OK) {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    return WELBY_REASON_NONE;
}


/* The request, and a write's body (a Bundle's every entry), decided. */
static welby_reason_e
ngx_http_welby_policy_decide(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    welby_fhir_request_t *req, welby_fhir_input_t *in)
{
    welby_reason_e  rc;

    rc = welby_policy_decide(req, &ctx->subject, &ctx->policy);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (req->interaction != WELBY_FHIR_CREATE
        && req->interaction != WELBY_FHIR_UPDATE
        && req->interaction != WELBY_FHIR_PATCH
        && req->interaction != WELBY_FHIR_BATCH
        && req->interaction != WELBY_FHIR_TRANSACTION)
    {
        return WELBY_REASON_NONE;
    }

    rc = ngx_http_welby_policy_body(r, ctx);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /* a POST to the base is a batch or a transaction by its Bundle */

    if (req->interaction == WELBY_FHIR_BATCH
        && welby_compartment_is_transaction(ctx->body_json))
    {
        req->interaction = WELBY_FHIR_TRANSACTION;
    }

    return welby_compartment_check_write(req, ctx->body_json, &ctx->subject,
                                         ctx->policy.context, in->bases,
                                         in->nbases);
}


/*
 * The token's grants, once per request: the scopes (into the caller's
 * scopes, granular values decoded into decoded), the "patient" claim,
 * the user's patients, and whether its client may use system scopes.
 */
static welby_reason_e
ngx_http_welby_policy_subject(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_scopes_t *scopes, u_char *decoded)
{
    u_char                  *p, *end, *start;
    ngx_str_t               *client;
    ngx_uint_t               i, n;
    welby_str_t             *ids;
    welby_claims_t          *c;
    welby_policy_subject_t  *subj;

    c = &ctx->claims;
    subj = &ctx->subject;

    /* the token step holds claims to WELBY_CLAIM_STR_MAX bytes */

    if (c->scope.len && c->scope.len <= WELBY_CLAIM_STR_MAX) {
        welby_scopes_parse(scopes, c->scope.data, c->scope.len, decoded);
    }

    ngx_memzero(subj, sizeof(welby_policy_subject_t));

    subj->scopes = scopes;
    subj->patient = c->patient;

/* the patients claim, joined by spaces by the token step */

    if (c->patients.len) {
        p = (u_char *) c->patients.data;
        end = p + c->patients.len;

        for (n = 1; p < end; p++) {
            n += (*p == ' ');
        }

        ids = ngx_palloc(r->pool, n * sizeof(welby_str_t));
        if (ids == NULL) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        n = 0;
        p = (u_char *) c->patients.data;

        while (p < end) {
            start = p;

            while (p < end && *p != ' ') {
                p++;
            }

            if (p > start) {
                ids[n].data = start;
                ids[n].len = p - start;
                n++;
            }

            p++;
        }

        subj->patients = ids;
        subj->npatients = n;
    }

    if (wlcf->fhir_system_clients && c->client_id.len) {
        client = wlcf->fhir_system_clients->elts;

        for (i = 0; i < wlcf->fhir_system_clients->nelts; i++) {
            if (client[i].len == c->client_id.len
                && ngx_memcmp(client[i].data, c->client_id.data,
                              client[i].len)
                   == 0)
            {
                subj->system_ok = 1;
                break;
            }
        }
    }

    subj->operations = wlcf->fhir_ops;
    subj->noperations = wlcf->fhir_nops;

    return WELBY_REASON_NONE;
}


/*
 * Whether the request reads Groups: a Group names all its members, so a
 * search bound to one of them (Group?member=p1) answers with the others
 * too.  Its answers are checked whatever welby_fhir_search_check says.
 */
static ngx_uint_t
ngx_http_welby_policy_groups(welby_fhir_request_t *req)
{
    int      group;
    size_t   i;

    group = welby_fhir_type_find((const unsigned char *) "Group", 5);

    if (req->type == group) {
        return 1;
    }

    for (i = 0; i < req->ntypes && i < WELBY_FHIR_TYPES_MAX; i++) {
        if (req->types[i] == group) {
            return 1;
        }
    }

    return 0;
}


/* A write is checked on its body: JSON, read whole, parsed once. */
static welby_reason_e
ngx_http_welby_policy_body(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    if (ctx->body_json != NULL) {
        return WELBY_REASON_NONE;
    }

    if (ctx->body_json_error) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    if (ctx->body_len == 0) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    /* a body in another format (XML, FHIRPath Patch as XML) */

    return WELBY_REASON_FHIR_FORMAT_UNSUPPORTED;
}


/* welby_fhir_base /fhir; */
char *
ngx_http_welby_fhir_base(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_str_t  *value;
    u_char     *p;

    if (wlcf->fhir_base.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /*
     * The base is a path prefix in nginx's decoded form: "/" and nothing
     * a FHIR path would not carry, and no trailing "/" (a request for
     * "/fhir" itself is the system level).
     */

    if (value[1].len < 2 || value[1].data[0] != '/'
        || value[1].data[value[1].len - 1] == '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid welby_fhir_base \"%V\": a path such "
                           "as /fhir, without a trailing \"/\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '/' || *p == '-'
              || *p == '_' || *p == '.'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid welby_fhir_base \"%V\": only "
                               "letters, digits, \"/\", \"-\", \"_\" and "
                               "\".\" are allowed", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_strstr(value[1].data, "//") || ngx_strstr(value[1].data, "/.")) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid welby_fhir_base \"%V\": empty or dot "
                           "segments", &value[1]);
        return NGX_CONF_ERROR;
    }

    wlcf->fhir_base = value[1];

    return NGX_CONF_OK;
}


/* welby_fhir_response_status 403|404; */
char *
ngx_http_welby_fhir_response_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    if (wlcf->fhir_response_status != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = ngx_http_welby_response_statuses; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strcmp(e->name.data, value[1].data) == 0)
        {
            wlcf->fhir_response_status = e->value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid welby_fhir_response_status \"%V\", "
                       "it must be 403 or 404", &value[1]);
    return NGX_CONF_ERROR;
}


void
ngx_http_welby_policy_create_conf(ngx_http_welby_loc_conf_t *wlcf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     wlcf->fhir_base = { 0, NULL };
     */

    wlcf->fhir_system_clients = NGX_CONF_UNSET_PTR;
    wlcf->fhir_operations = NGX_CONF_UNSET_PTR;
    wlcf->fhir_search_check = NGX_CONF_UNSET;
    wlcf->fhir_response_max = NGX_CONF_UNSET_SIZE;
    wlcf->fhir_response_status = NGX_CONF_UNSET_UINT;
    wlcf->body_max_size = NGX_CONF_UNSET_SIZE;
}


char *
ngx_http_welby_policy_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    if (conf->fhir_base.data == NULL) {
        conf->fhir_base = prev->fhir_base;
    }

    ngx_conf_merge_ptr_value(conf->fhir_system_clients,
                             prev->fhir_system_clients, NULL);
    ngx_conf_merge_ptr_value(conf->fhir_operations, prev->fhir_operations,
                             NULL);

    if (conf->fhir_operations == prev->fhir_operations) {
        conf->fhir_ops = prev->fhir_ops;
        conf->fhir_nops = prev->fhir_nops;

    } else if (ngx_http_welby_policy_operations(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_value(conf->fhir_search_check, prev->fhir_search_check, 0);
    ngx_conf_merge_size_value(conf->fhir_response_max,
                              prev->fhir_response_max, 1024 * 1024);
    ngx_conf_merge_uint_value(conf->fhir_response_status,
                              prev->fhir_response_status, NGX_HTTP_FORBIDDEN);
    ngx_conf_merge_size_value(conf->body_max_size, prev->body_max_size,
                              1024 * 1024);

    return NGX_CONF_OK;
}


/*
 * welby_fhir_operations name ...: operations beyond the known ones, by
 * name without "$", decided once here into the form the policy reads.
 */
static char *
ngx_http_welby_policy_operations(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *conf)
{
    u_char      *p;
    ngx_str_t   *name;
    ngx_uint_t   i;

    if (conf->fhir_operations == NULL) {
        return NGX_CONF_OK;
    }

    name = conf->fhir_operations->elts;

    conf->fhir_ops = ngx_palloc(cf->pool, conf->fhir_operations->nelts
                                          * sizeof(welby_str_t));
    if (conf->fhir_ops == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < conf->fhir_operations->nelts; i++) {
        p = name[i].data;

        if (name[i].len > 1 && p[0] == '$') {
            p++;
        }

        if (!welby_fhir_id_valid(p, name[i].data + name[i].len - p)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid operation \"%V\" in "
                               "welby_fhir_operations", &name[i]);
            return NGX_CONF_ERROR;
        }

        conf->fhir_ops[i].data = p;
        conf->fhir_ops[i].len = name[i].data + name[i].len - p;
    }

    conf->fhir_nops = conf->fhir_operations->nelts;

    return NGX_CONF_OK;
}
