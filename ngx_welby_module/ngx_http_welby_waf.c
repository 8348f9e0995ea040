/*
 * The waf step: libmodsecurity, run by the module itself on what the
 * client sent - its connection, the URI as it came, every request header
 * and the whole body the body step read - after every step that can
 * refuse on less (tls, classify, token, policy): a request they refuse
 * never costs a transaction.  One rules set per distinct welby_waf_rules
 * list, loaded at configuration time (a rule file's error fails nginx -t
 * with libmodsecurity's message); one transaction per request, freed by a
 * pool cleanup.  Response inspection is not done: nothing of the answer
 * is fed.
 *
 * The step stays in front of libmodsecurity so that a first stage (the
 * FHIR grammar, in C) can clear requests before a transaction is made:
 * ngx_http_welby_waf_run() is what such a stage would skip.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_waf.h"
#include "ngx_http_welby_metrics.h"
#include "welby_msc.h"

#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>
#include <modsecurity/intervention.h>

#if (__GLIBC__)
#include <malloc.h>
#endif


/* one rules set, shared by the locations of one welby_waf_rules list */
typedef struct {
    ngx_array_t                *files;      /* ngx_str_t */
    RulesSet                   *rules;
} ngx_http_welby_waf_set_t;


static ModSecurity *ngx_http_welby_waf_msc(ngx_conf_t *cf,
    ngx_http_welby_main_conf_t *wmcf);
static RulesSet *ngx_http_welby_waf_set(ngx_conf_t *cf,
    ngx_array_t *files);
static ngx_uint_t ngx_http_welby_waf_same(ngx_array_t *a, ngx_array_t *b);
static void ngx_http_welby_waf_msc_cleanup(void *data);
static void ngx_http_welby_waf_rules_cleanup(void *data);
static void ngx_http_welby_waf_transaction_cleanup(void *data);
static ngx_int_t ngx_http_welby_waf_run(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    ngx_http_welby_waf_result_t *res);
static ngx_int_t ngx_http_welby_waf_intervened(ngx_http_request_t *r,
    Transaction *t, ngx_http_welby_waf_result_t *res);
static ngx_uint_t ngx_http_welby_waf_url_ok(u_char *url);
static welby_reason_e ngx_http_welby_waf_response_decide(
    ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf);
static void ngx_http_welby_waf_match(void *data, const welby_msc_match_t *m);
static char *ngx_http_welby_waf_cstr(ngx_pool_t *pool, ngx_str_t *s);
static ngx_int_t ngx_http_welby_waf_list(ngx_http_request_t *r,
    ngx_http_welby_waf_result_t *res, ngx_str_t *out);


static ngx_str_t  ngx_http_welby_waf_step_name = ngx_string("waf");


char *
ngx_http_welby_waf_rules(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_str_t  *value, *file;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty file name";
    }

    if (wlcf->waf_files == NULL) {
        wlcf->waf_files = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (wlcf->waf_files == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    file = ngx_array_push(wlcf->waf_files);
    if (file == NULL) {
        return NGX_CONF_ERROR;
    }

    *file = value[1];

    /* NUL-terminated, for libmodsecurity */
    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_http_welby_waf_create_conf(ngx_http_welby_loc_conf_t *wlcf)
{
    wlcf->waf = NGX_CONF_UNSET_UINT;
    wlcf->waf_response = NGX_CONF_UNSET;
    wlcf->waf_files = NULL;
    wlcf->waf_rules = NULL;
}


/*
 * A location without welby_waf_rules of its own has its parent's list
 * (and set), as nginx's array directives do; one with its own replaces
 * it.  Sets are loaded only where the WAF is on or in detect mode.
 */
char *
ngx_http_welby_waf_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_conf_merge_uint_value(conf->waf, prev->waf, NGX_HTTP_WELBY_WAF_OFF);
    ngx_conf_merge_value(conf->waf_response, prev->waf_response, 0);

    if (conf->waf_files == NULL) {
        conf->waf_files = prev->waf_files;
        conf->waf_rules = prev->waf_rules;
    }

    if (conf->waf == NGX_HTTP_WELBY_WAF_OFF) {
        return NGX_CONF_OK;
    }

    if (conf->waf_files == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"welby_waf\" is on here but no "
                           "\"welby_waf_rules\" names its rules");
        return NGX_CONF_ERROR;
    }

    if (conf->waf_rules == NULL) {
        conf->waf_rules = ngx_http_welby_waf_set(cf, conf->waf_files);
        if (conf->waf_rules == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ModSecurity *
ngx_http_welby_waf_msc(ngx_conf_t *cf, ngx_http_welby_main_conf_t *wmcf)
{
    ModSecurity         *msc;
    ngx_pool_cleanup_t  *cln;

    if (wmcf->waf_msc) {
        return wmcf->waf_msc;
    }

    /*
     * Its cleanup is added before any rules set's: the cycle pool runs
     * cleanups newest first, so the sets are freed before the library.
     */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    msc = msc_init();
    if (msc == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby: libmodsecurity could not be started");
        return NULL;
    }

    cln->handler = ngx_http_welby_waf_msc_cleanup;
    cln->data = msc;

    /*
     * The matches are read from the transaction once it is done
     * (welby_msc.h); the log callback discards what it is given, so that
     * libmodsecurity neither formats a text that quotes what matched nor
     * writes one to stderr (the error log) for want of a callback.
     */
    msc_set_connector_info(msc, "ngx_http_welby_module");
    welby_msc_quiet(msc);

    wmcf->waf_msc = msc;

    return msc;
}


static RulesSet *
ngx_http_welby_waf_set(ngx_conf_t *cf, ngx_array_t *files)
{
    ngx_str_t                   *file;
    ngx_uint_t                   i;
    RulesSet                    *rules;
    const char                  *error, *warning;
    ngx_pool_cleanup_t          *cln;
    ngx_http_welby_waf_set_t    *set;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

    if (wmcf->waf_sets == NULL) {
        wmcf->waf_sets = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_welby_waf_set_t));
        if (wmcf->waf_sets == NULL) {
            return NULL;
        }
    }

    set = wmcf->waf_sets->elts;

    for (i = 0; i < wmcf->waf_sets->nelts; i++) {
        if (ngx_http_welby_waf_same(set[i].files, files)) {
            return set[i].rules;
        }
    }

    if (ngx_http_welby_waf_msc(cf, wmcf) == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    rules = msc_create_rules_set();
    if (rules == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_welby_waf_rules_cleanup;
    cln->data = rules;

    file = files->elts;

    for (i = 0; i < files->nelts; i++) {
        error = NULL;

        if (msc_rules_add_file(rules, (const char *) file[i].data, &error)
            < 0)
        {
            /* libmodsecurity's message names the file and the line */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "welby_waf_rules \"%V\": %s", &file[i],
                               error ? error : "cannot be loaded");
            free((void *) error);
            return NULL;
        }
    }

    error = welby_msc_rules_check(rules, &warning);

    if (warning != NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "welby_waf_rules \"%V\"%s: %s", &file[0],
                           files->nelts > 1 ? " and the files after it" : "",
                           warning);
    }

    if (error != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_waf_rules \"%V\"%s: %s", &file[0],
                           files->nelts > 1 ? " and the files after it" : "",
                           error);
        return NULL;
    }

    set = ngx_array_push(wmcf->waf_sets);
    if (set == NULL) {
        return NULL;
    }

    set->files = files;
    set->rules = rules;

    return rules;
}


static ngx_uint_t
ngx_http_welby_waf_same(ngx_array_t *a, ngx_array_t *b)
{
    ngx_str_t   *fa, *fb;
    ngx_uint_t   i;

    if (a == b) {
        return 1;
    }

    if (a->nelts != b->nelts) {
        return 0;
    }

    fa = a->elts;
    fb = b->elts;

    for (i = 0; i < a->nelts; i++) {
        if (fa[i].len != fb[i].len
            || ngx_memcmp(fa[i].data, fb[i].data, fa[i].len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_welby_waf_msc_cleanup(void *data)
{
    msc_cleanup(data);

#if (__GLIBC__)

    /*
     * The old cycle's rules sets, freed in the master at a reload, leave
     * glibc's heap as large as it was with both sets loaded, and every
     * worker forked after it starts with that heap resident: it goes
     * back to the system here.  The last of the module's cleanups of the
     * cycle (the library's was added first).
     */
    (void) malloc_trim(0);

#endif
}


static void
ngx_http_welby_waf_rules_cleanup(void *data)
{
    msc_rules_cleanup(data);
}


static void
ngx_http_welby_waf_transaction_cleanup(void *data)
{
    msc_transaction_cleanup(data);
}


welby_reason_e
ngx_http_welby_waf(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_str_t                     list;
    ngx_table_elt_t              *h;
    ngx_http_welby_waf_result_t  *res;

    static ngx_str_t  location = ngx_string("Location");

    if (wlcf->waf == NGX_HTTP_WELBY_WAF_OFF || wlcf->waf_rules == NULL) {
        return WELBY_REASON_NONE;
    }

    /* once per location the request reaches: a new transaction each */

    res = ngx_pcalloc(r->pool, sizeof(ngx_http_welby_waf_result_t));
    if (res == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    res->score = -1;
    ctx->waf = res;

    if (ngx_http_welby_waf_run(r, ctx, wlcf, res) != NGX_OK) {

        if (wlcf->waf == NGX_HTTP_WELBY_WAF_DETECT) {
            /* the location said detect: it chose not to fail closed */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "welby: waf could not check id:%V, detect mode "
                          "lets it through", &ctx->request_id);
            return WELBY_REASON_NONE;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "welby: waf could not check id:%V", &ctx->request_id);
        return WELBY_REASON_INTERNAL_ERROR;
    }

    res->ran = 1;

    if (!res->intervened) {

        if (wlcf->waf_response) {

            /*
             * The answer is inspected whole, as the backend sends it: no
             * part of it (206), nothing compressed, no 304.
             */

            if (ngx_http_welby_response_prepare(r, ctx) != NGX_OK) {
                return WELBY_REASON_INTERNAL_ERROR;
            }

            ctx->waf_response = 1;
        }

        return WELBY_REASON_NONE;
    }

    if (wlcf->waf == NGX_HTTP_WELBY_WAF_DETECT) {

        if (ngx_http_welby_waf_list(r, res, &list) != NGX_OK) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        /* ids and the score only: never what matched */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: waf detect id:%V rules:%V score:%i",
                      &ctx->request_id, &list, res->score);

        if (ctx->reason == WELBY_REASON_NONE) {
            ctx->reason = WELBY_REASON_WAF_BLOCK;
            ctx->step = &ngx_http_welby_waf_step_name;
        }

        ctx->decision = NGX_HTTP_WELBY_DECISION_DETECT;

        return WELBY_REASON_NONE;
    }

    /*
     * The rules' status (deny,status:406) when it is an error status, a
     * redirect when they asked for one, 403 otherwise (drop is a deny in
     * libmodsecurity 3).  In detect mode (welby_mode) the request goes on
     * to the backend, which must not get a Location of ours.
     */

    if (res->location.len && res->status >= 301 && res->status <= 308
        && wlcf->mode != NGX_HTTP_WELBY_DETECT)
    {
        h = ngx_http_welby_push_header(&r->headers_out.headers, &location,
                                       &res->location);
        if (h == NULL) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        ctx->refusal_status = res->status;

    } else if (res->status >= 400 && res->status <= 599) {
        ctx->refusal_status = res->status;
    }

    ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_WAF_REQUEST, 1);

    return WELBY_REASON_WAF_BLOCK;
}


static ngx_int_t
ngx_http_welby_waf_run(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf, ngx_http_welby_waf_result_t *res)
{
    char                        *id, *client, *server, *uri, *method;
    const char                  *version;
    u_char                      *p, *name;
    ngx_str_t                    s;
    ngx_uint_t                   i, k;
    Transaction                 *t;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h;
    ngx_pool_cleanup_t          *cln;
    ngx_http_core_srv_conf_t    *cscf;
    ngx_http_welby_main_conf_t  *wmcf;
    u_char                       addr[NGX_SOCKADDR_STRLEN];

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);
    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    id = ngx_http_welby_waf_cstr(r->pool, &ctx->request_id);
    client = ngx_http_welby_waf_cstr(r->pool, &r->connection->addr_text);
    uri = ngx_http_welby_waf_cstr(r->pool, &r->unparsed_uri);
    method = ngx_http_welby_waf_cstr(r->pool, &r->method_name);

    if (id == NULL || client == NULL || uri == NULL || method == NULL) {
        return NGX_ERROR;
    }

    s.len = NGX_SOCKADDR_STRLEN;
    s.data = addr;

    if (ngx_connection_local_sockaddr(r->connection, &s, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    s.len = ngx_sock_ntop(r->connection->local_sockaddr,
                          r->connection->local_socklen, addr,
                          NGX_SOCKADDR_STRLEN, 0);

    server = ngx_http_welby_waf_cstr(r->pool, &s);
    if (server == NULL) {
        return NGX_ERROR;
    }

    switch (r->http_version) {
    case NGX_HTTP_VERSION_9:
        version = "0.9";
        break;
    case NGX_HTTP_VERSION_10:
        version = "1.0";
        break;
    case NGX_HTTP_VERSION_20:
        version = "2.0";
        break;
    default:
        version = "1.1";
        break;
    }

    /* the cleanup first: a transaction is never left without one */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    /* our request id: libmodsecurity need not draw one of its own */
    t = msc_new_transaction_with_id(wmcf->waf_msc, wlcf->waf_rules, id,
                                    NULL);
    if (t == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_welby_waf_transaction_cleanup;
    cln->data = t;

    res->transaction = t;

    msc_process_connection(t, client,
                           (int) ngx_inet_get_port(r->connection->sockaddr),
                           server,
                           (int) ngx_inet_get_port(
                                     r->connection->local_sockaddr));

    if (ngx_http_welby_waf_intervened(r, t, res)) {
        goto done;
    }

    msc_process_uri(t, uri, method, version);

    if (ngx_http_welby_waf_intervened(r, t, res)) {
        goto done;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        msc_add_n_request_header(t, h[i].key.data, h[i].key.len,
                                 h[i].value.data, h[i].value.len);

        /*
         * With underscores_in_headers on, a CGI-style backend (FastCGI,
         * uwsgi, SCGI) reads "X_Test" as HTTP_X_TEST, the name of
         * "X-Test": the rules get it under that name too.
         */

        if (cscf->underscores_in_headers
            && ngx_strlchr(h[i].key.data, h[i].key.data + h[i].key.len, '_'))
        {
            name = ngx_pnalloc(r->pool, h[i].key.len);
            if (name == NULL) {
                return NGX_ERROR;
            }

            for (k = 0; k < h[i].key.len; k++) {
                name[k] = h[i].key.data[k] == '_' ? '-' : h[i].key.data[k];
            }

            msc_add_n_request_header(t, name, h[i].key.len,
                                     h[i].value.data, h[i].value.len);
        }
    }

    msc_process_request_headers(t);

    if (ngx_http_welby_waf_intervened(r, t, res)) {
        goto done;
    }

    if (ctx->body_len) {
        p = ctx->body;

        if (msc_append_request_body(t, p, ctx->body_len) == 0) {
            return NGX_ERROR;
        }
    }

    msc_process_request_body(t);

    (void) ngx_http_welby_waf_intervened(r, t, res);

done:

    welby_msc_each(t, NGX_HTTP_WELBY_WAF_SCORE_RULE,
                   ngx_http_welby_waf_match, res);

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_waf_intervened(ngx_http_request_t *r, Transaction *t,
    ngx_http_welby_waf_result_t *res)
{
    size_t                   len;
    ModSecurityIntervention  it;

    ngx_memzero(&it, sizeof(ModSecurityIntervention));
    it.status = 200;

    if (msc_intervention(t, &it) == 0) {
        return 0;
    }

    res->intervened = 1;
    res->status = it.status > 0 ? (ngx_uint_t) it.status : 0;

    /*
     * A redirect's url may hold macros (%{ARGS.x}) that expand to what
     * the client sent, decoded: a CR or LF there would end the Location
     * header and start one of the client's.  Only a url of visible
     * ASCII is a redirect; any other is a plain refusal.
     */

    if (it.url && ngx_http_welby_waf_url_ok((u_char *) it.url)) {
        len = ngx_strlen(it.url);

        res->location.data = ngx_pnalloc(r->pool, len);
        if (res->location.data) {
            ngx_memcpy(res->location.data, it.url, len);
            res->location.len = len;
        }
    }

    /* the log line quotes what matched: never kept */
    free(it.url);
    free(it.log);

    return 1;
}


static ngx_uint_t
ngx_http_welby_waf_url_ok(u_char *url)
{
    u_char  *p;

    if (*url == '\0') {
        return 0;
    }

    for (p = url; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


welby_reason_e
ngx_http_welby_waf_response_headers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf)
{
    u_char                       *p, *q, *end;
    ngx_uint_t                    i;
    Transaction                  *t;
    ngx_list_part_t              *part;
    ngx_table_elt_t              *h;
    ngx_http_welby_waf_result_t  *res;

    static u_char  content_type[] = "Content-Type";
    static u_char  content_length[] = "Content-Length";

    res = ctx->waf;
    t = res->transaction;

    /* what nginx keeps out of the list, as its header filter writes it */

    /*
     * libmodsecurity compares the type before any ';' with
     * SecResponseBodyMimeType as it is: "TEXT/PLAIN" or "text/plain ;"
     * would leave the body unread.  The type goes lowercased, without the
     * blanks around it, its parameters as they are.
     */

    if (r->headers_out.content_type.len) {
        p = ngx_pnalloc(r->pool, r->headers_out.content_type.len);
        if (p == NULL) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        q = r->headers_out.content_type.data;
        end = q + r->headers_out.content_type.len;

        while (q < end && (*q == ' ' || *q == '\t')) {
            q++;
        }

        for (i = 0; q < end && *q != ';'; q++) {
            if (*q != ' ' && *q != '\t') {
                p[i++] = ngx_tolower(*q);
            }
        }

        ngx_memcpy(p + i, q, end - q);

        msc_add_n_response_header(t, content_type, sizeof(content_type) - 1,
                                  p, i + (end - q));
    }

    if (r->headers_out.content_length_n >= 0) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        msc_add_n_response_header(t, content_length,
                                  sizeof(content_length) - 1, p,
                                  ngx_sprintf(p, "%O",
                                              r->headers_out.content_length_n)
                                  - p);
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        msc_add_n_response_header(t, h[i].key.data, h[i].key.len,
                                  h[i].value.data, h[i].value.len);
    }

    msc_process_response_headers(t, (int) r->headers_out.status, "HTTP 1.1");

    return ngx_http_welby_waf_response_decide(r, ctx, wlcf);
}


welby_reason_e
ngx_http_welby_waf_response_body(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf, u_char *data,
    size_t len)
{
    Transaction  *t;

    t = ctx->waf->transaction;

    if (len && msc_append_response_body(t, data, len) == 0) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    msc_process_response_body(t);

    return ngx_http_welby_waf_response_decide(r, ctx, wlcf);
}


/*
 * After a response phase: the matches so far, and the intervention.  In
 * detect mode (welby_waf detect) it is recorded and the answer goes on;
 * welby_mode detect is the response filter's to apply.
 */
static welby_reason_e
ngx_http_welby_waf_response_decide(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_str_t                     list;
    ngx_http_welby_waf_result_t  *res;

    res = ctx->waf;

    welby_msc_each(res->transaction, NGX_HTTP_WELBY_WAF_SCORE_RULE,
                   ngx_http_welby_waf_match, res);

    if (!ngx_http_welby_waf_intervened(r, res->transaction, res)) {
        return WELBY_REASON_NONE;
    }

    if (wlcf->waf != NGX_HTTP_WELBY_WAF_DETECT) {
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_WAF_RESPONSE, 1);
        return WELBY_REASON_WAF_BLOCK;
    }

    if (ngx_http_welby_waf_list(r, res, &list) != NGX_OK) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "welby: waf detect id:%V response rules:%V",
                  &ctx->request_id, &list);

    if (ctx->reason == WELBY_REASON_NONE) {
        ctx->reason = WELBY_REASON_WAF_BLOCK;
        ctx->step = &ngx_http_welby_waf_step_name;
    }

    if (ctx->decision != NGX_HTTP_WELBY_DECISION_DENY) {
        ctx->decision = NGX_HTTP_WELBY_DECISION_DETECT;
    }

    return WELBY_REASON_NONE;
}


/*
 * One rule message of the transaction: its id and severity are kept,
 * never its data.  The score rule is read for its number and not listed.
 */
static void
ngx_http_welby_waf_match(void *data, const welby_msc_match_t *m)
{
    ngx_http_welby_waf_result_t *res = data;

    long        score;
    ngx_uint_t  i;

    score = welby_msc_score(m, NGX_HTTP_WELBY_WAF_SCORE_RULE);

    if (score >= 0) {
        res->score = score;
    }

    if (m->id == NGX_HTTP_WELBY_WAF_SCORE_RULE) {
        return;
    }

    for (i = 0; i < res->nrules; i++) {
        if (res->rules[i] == m->id) {
            return;
        }
    }

    if (res->nrules == NGX_HTTP_WELBY_WAF_MATCHES_MAX) {
        res->dropped++;
        return;
    }

    res->rules[res->nrules] = m->id;
    res->severities[res->nrules] = m->severity;
    res->nrules++;
}


static char *
ngx_http_welby_waf_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return (char *) p;
}


/* the matched rule ids, space separated */
static ngx_int_t
ngx_http_welby_waf_list(ngx_http_request_t *r,
    ngx_http_welby_waf_result_t *res, ngx_str_t *out)
{
    u_char      *p;
    ngx_uint_t   i;

    p = ngx_pnalloc(r->pool, res->nrules * (NGX_INT64_LEN + 1) + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < res->nrules; i++) {
        if (i) {
            *p++ = ' ';
        }

        p = ngx_sprintf(p, "%L", res->rules[i]);
    }

    out->len = p - out->data;

    return NGX_OK;
}


ngx_int_t
ngx_http_welby_waf_rules_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t              s;
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r->main);

    if (ctx == NULL || ctx->waf == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ngx_http_welby_waf_list(r, ctx->waf, &s) != NGX_OK) {
        return NGX_ERROR;
    }

    v->len = s.len;
    v->data = s.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_welby_waf_score_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_get_ctx(r->main);

    if (ctx == NULL || ctx->waf == NULL || ctx->waf->score < 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%i", ctx->waf->score) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
