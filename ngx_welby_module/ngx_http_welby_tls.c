/*
 * The tls step and its directives: a protected location is reached over
 * TLS at or above a minimum protocol (directly, or through a trusted
 * TLS-terminating proxy that says so), with a verified and allowed client
 * certificate where the location asks for one.  Also: HSTS on protected
 * responses, the SHA-256 of the client certificate for the variable, the
 * token binding and the audit record, and the configuration-time check
 * of the certificates of protected servers.
 */

#include "ngx_http_welby_module.h"


#define NGX_HTTP_WELBY_HSTS_DEFAULT  "max-age=31536000; includeSubDomains"


static ngx_uint_t ngx_http_welby_tls_leg(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static void ngx_http_welby_tls_vouched(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    ngx_str_t *peer);
static ngx_table_elt_t *ngx_http_welby_tls_header(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_uint_t ngx_http_welby_tls_version(u_char *name, size_t len);
#if (NGX_HTTP_SSL)
static welby_reason_e ngx_http_welby_client_cert(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static ngx_int_t ngx_http_welby_dn_match(ngx_http_request_t *r,
    ngx_str_t *want, X509_NAME *name, ngx_str_t *dn);
static ngx_int_t ngx_http_welby_dn(ngx_http_request_t *r, X509_NAME *name,
    ngx_str_t *out);
static ngx_int_t ngx_http_welby_check_chain(ngx_conf_t *cf,
    ngx_http_core_srv_conf_t *cscf, SSL_CTX *ssl_ctx);
static char *ngx_http_welby_check_cert(X509 *x, ngx_uint_t leaf);
#endif
static ngx_int_t ngx_http_welby_parse_sha256(ngx_str_t *hex, u_char *md);


static ngx_str_t  ngx_http_welby_sts = ngx_string("Strict-Transport-Security");


/*
 * The step.  It runs first: a plain-HTTP request to a protected location
 * is refused before anything of it is looked at.
 */
welby_reason_e
ngx_http_welby_tls(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_uint_t  secure;

    secure = ngx_http_welby_tls_leg(r, ctx, wlcf);

    if (wlcf->tls && !secure) {
        return WELBY_REASON_TLS_REQUIRED;
    }

    if (wlcf->client_cert == NGX_HTTP_WELBY_CLIENT_CERT_OFF) {
        return WELBY_REASON_NONE;
    }

#if (NGX_HTTP_SSL)
    return ngx_http_welby_client_cert(r, ctx, wlcf);
#else
    return WELBY_REASON_CLIENT_CERT_REQUIRED;
#endif
}


/*
 * Whether the client's leg is HTTPS at welby_tls_min or above, directly
 * or vouched for by a trusted proxy; ctx->tls_secure says whether it is
 * HTTPS at any version (HSTS is sent over it).
 */
static ngx_uint_t
ngx_http_welby_tls_leg(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_str_t          peer;
#if (NGX_HTTP_SSL)
    ngx_connection_t  *c;
#endif

    if (wlcf->trusted_proxy
        && ngx_http_welby_proxy_peer(r, wlcf->trusted_proxy, &peer))
    {
        ngx_http_welby_tls_vouched(r, ctx, wlcf, &peer);
        return ctx->tls_proxy_ok;
    }

#if (NGX_HTTP_SSL)
    c = r->connection;

    if (c->ssl) {
        ctx->tls_secure = 1;
        return ((ngx_uint_t) SSL_version(c->ssl->connection)
                >= wlcf->tls_min);
    }
#endif

    return 0;
}


/*
 * Whether the TCP peer is one of the proxy's addresses; *peer gets its
 * address text.  The peer is the address before the realip module
 * replaced it, which realip keeps for $realip_remote_addr (realip has
 * not replaced it yet when the module's post-read handler runs).
 */
ngx_uint_t
ngx_http_welby_proxy_peer(ngx_http_request_t *r,
    ngx_http_welby_proxy_t *proxy, ngx_str_t *peer)
{
    ngx_str_t                    text;
    ngx_uint_t                   i;
    ngx_addr_t                   addr;
    ngx_cidr_t                  *cidr;
    struct sockaddr             *sa;
    ngx_connection_t            *c;
    ngx_http_variable_value_t   *vv;
    ngx_http_welby_main_conf_t  *wmcf;

    c = r->connection;
    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    sa = c->sockaddr;
    text = c->addr_text;

    vv = ngx_http_get_indexed_variable(r, wmcf->realip_remote_addr);

    if (vv && !vv->not_found && vv->data != c->addr_text.data) {
        /* realip replaced the client address: check the peer's */

        text.data = vv->data;
        text.len = vv->len;

        if (text.len == 5 && ngx_strncmp(text.data, "unix:", 5) == 0) {

            /* a peer on a unix socket: trusted by "unix:" */

            cidr = proxy->from->elts;

            for (i = 0; i < proxy->from->nelts; i++) {
                if (cidr[i].family == AF_UNIX) {
                    *peer = text;
                    return 1;
                }
            }

            return 0;
        }

        if (ngx_parse_addr(r->pool, &addr, text.data, text.len) != NGX_OK) {
            return 0;
        }

        sa = addr.sockaddr;
    }

    if (ngx_cidr_match(sa, proxy->from) != NGX_OK) {
        return 0;
    }

    *peer = text;

    return 1;
}


/*
 * From a trusted proxy, which decides: ctx->tls_proxy and ctx->tls_secure
 * are set when it vouches for HTTPS, ctx->tls_proxy_ok when also for the
 * minimum protocol.
 */
static void
ngx_http_welby_tls_vouched(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf, ngx_str_t *peer)
{
    ngx_uint_t               version;
    ngx_table_elt_t         *h;
    ngx_http_welby_proxy_t  *proxy;

    proxy = wlcf->trusted_proxy;

    h = ngx_http_welby_tls_header(r, &proxy->proto_header);

    if (h == NULL
        || h->value.len != 5
        || ngx_strncasecmp(h->value.data, (u_char *) "https", 5) != 0)
    {
        return;
    }

    /* vouched for HTTPS */

    ctx->tls_proxy = *peer;
    ctx->tls_secure = 1;

    if (proxy->protocol_header.len) {
        h = ngx_http_welby_tls_header(r, &proxy->protocol_header);
        if (h == NULL) {
            return;
        }

        version = ngx_http_welby_tls_version(h->value.data, h->value.len);
        if (version == 0) {
            return;
        }

        ctx->tls_proxy_protocol = h->value;

        if (version < wlcf->tls_min) {
            return;
        }
    }

    ctx->tls_proxy_ok = 1;
}


/* The one header of that name; NULL if there is none or more than one. */
static ngx_table_elt_t *
ngx_http_welby_tls_header(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    found = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == name->len
                && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
            {
                if (found) {
                    return NULL;
                }

                found = &h[i];
            }
        }
    }

    return found;
}


/* A protocol name as OpenSSL and nginx's $ssl_protocol spell it. */
static ngx_uint_t
ngx_http_welby_tls_version(u_char *name, size_t len)
{
    ngx_uint_t  i;

    static struct {
        ngx_str_t   name;
        ngx_uint_t  version;
    } versions[] = {
        { ngx_string("SSLv3"), 0x0300 },
        { ngx_string("TLSv1"), 0x0301 },
        { ngx_string("TLSv1.1"), 0x0302 },
        { ngx_string("TLSv1.2"), 0x0303 },
        { ngx_string("TLSv1.3"), 0x0304 }
    };

    for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        if (len == versions[i].name.len
            && ngx_strncmp(name, versions[i].name.data, len) == 0)
        {
            return versions[i].version;
        }
    }

    return 0;
}


#if (NGX_HTTP_SSL)

/*
 * The client certificate.  nginx's ssl_verify_client decides whether one
 * is asked for and refuses (before any location) the ones that fail
 * verification; with optional_no_ca some failures get here, so the
 * verification result is checked again whatever the server says.
 */
static welby_reason_e
ngx_http_welby_client_cert(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    X509                          *cert;
    ngx_int_t                      rc;
    ngx_str_t                      subject, issuer;
    ngx_uint_t                     i;
    ngx_connection_t              *c;
    ngx_http_welby_cert_allow_t   *allow;

    c = r->connection;

    if (c->ssl == NULL) {
        return WELBY_REASON_CLIENT_CERT_REQUIRED;
    }

    cert = SSL_get0_peer_certificate(c->ssl->connection);

    if (cert == NULL) {
        return (wlcf->client_cert == NGX_HTTP_WELBY_CLIENT_CERT_REQUIRED)
               ? WELBY_REASON_CLIENT_CERT_REQUIRED : WELBY_REASON_NONE;
    }

    if (SSL_get_verify_result(c->ssl->connection) != X509_V_OK) {
        return WELBY_REASON_CLIENT_CERT_INVALID;
    }

    if (wlcf->client_cert_allow == NULL) {
        return WELBY_REASON_NONE;
    }

    subject.data = NULL;
    issuer.data = NULL;

    allow = wlcf->client_cert_allow->elts;

    for (i = 0; i < wlcf->client_cert_allow->nelts; i++) {

        if (allow[i].sha256) {
            if (ngx_http_welby_client_cert_sha256(r, ctx) != NGX_OK) {
                return WELBY_REASON_INTERNAL_ERROR;
            }

            if (CRYPTO_memcmp(ctx->cert_sha256, allow[i].md, 32) != 0) {
                continue;
            }
        }

        rc = ngx_http_welby_dn_match(r, &allow[i].subject,
                                     X509_get_subject_name(cert), &subject);
        if (rc == NGX_OK) {
            rc = ngx_http_welby_dn_match(r, &allow[i].issuer,
                                         X509_get_issuer_name(cert), &issuer);
        }

        if (rc == NGX_ERROR) {
            return WELBY_REASON_INTERNAL_ERROR;
        }

        if (rc == NGX_OK) {
            return WELBY_REASON_NONE;
        }
    }

    return WELBY_REASON_CLIENT_CERT_NOT_ALLOWED;
}


/*
 * NGX_OK when the allowlist wants no DN here or name is that DN,
 * NGX_DECLINED when not; *dn caches the name's text for the request.
 */
static ngx_int_t
ngx_http_welby_dn_match(ngx_http_request_t *r, ngx_str_t *want,
    X509_NAME *name, ngx_str_t *dn)
{
    if (want->len == 0) {
        return NGX_OK;
    }

    if (dn->data == NULL && ngx_http_welby_dn(r, name, dn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (dn->len == want->len
        && ngx_strncmp(dn->data, want->data, dn->len) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* RFC 2253 form, as nginx's $ssl_client_s_dn and $ssl_client_i_dn. */
static ngx_int_t
ngx_http_welby_dn(ngx_http_request_t *r, X509_NAME *name, ngx_str_t *out)
{
    BIO   *bio;
    char  *p;
    long   len;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NGX_ERROR;
    }

    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0) {
        BIO_free(bio);
        return NGX_ERROR;
    }

    len = BIO_get_mem_data(bio, &p);

    out->len = len;
    out->data = ngx_pnalloc(r->pool, len + 1);

    if (out->data == NULL) {
        BIO_free(bio);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, p, len);
    BIO_free(bio);

    return NGX_OK;
}

#endif


/*
 * The SHA-256 of the client certificate's DER into ctx->cert_sha256,
 * once per request.  NGX_DECLINED without a certificate.
 */
ngx_int_t
ngx_http_welby_client_cert_sha256(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx)
{
#if (NGX_HTTP_SSL)
    X509                        *cert;
    unsigned int                 len;
    ngx_http_welby_main_conf_t  *wmcf;

    if (ctx->cert_hashed) {
        return NGX_OK;
    }

    if (r->connection->ssl == NULL) {
        return NGX_DECLINED;
    }

    cert = SSL_get0_peer_certificate(r->connection->ssl->connection);
    if (cert == NULL) {
        return NGX_DECLINED;
    }

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    if (X509_digest(cert, wmcf->sha256, ctx->cert_sha256, &len) != 1
        || len != 32)
    {
        ngx_ssl_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "welby: X509_digest() failed");
        return NGX_ERROR;
    }

    ctx->cert_hashed = 1;

    return NGX_OK;
#else
    return NGX_DECLINED;
#endif
}


/*
 * HSTS on every response of the audit trail that came over HTTPS, under
 * the welby_tls and welby_hsts of wlcf, the module's value replacing one
 * from the backend.  Never over plain HTTP (RFC 6797 section 7.2).
 */
ngx_int_t
ngx_http_welby_tls_headers(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    if (!wlcf->tls || wlcf->hsts.len == 0) {
        return NGX_OK;
    }

    if (!ctx->pipeline_done) {
        /* nginx answered before the tls step ran (a 413, a 400, a return) */
        (void) ngx_http_welby_tls_leg(r, ctx, wlcf);
    }

    if (!ctx->tls_secure) {
        return NGX_OK;
    }

    ngx_http_welby_hide_header(&r->headers_out.headers, &ngx_http_welby_sts);

    if (ngx_http_welby_push_header(&r->headers_out.headers,
                                   &ngx_http_welby_sts, &wlcf->hsts)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * welby_trusted_proxy address|CIDR|unix: ... [proto_header=name]
 *     [protocol_header=name] [request_id=on|off]
 */
char *
ngx_http_welby_trusted_proxy(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_int_t                rc;
    ngx_str_t               *value, *target;
    ngx_uint_t               i;
    ngx_cidr_t              *cidr;
    ngx_http_welby_proxy_t  *proxy;

    if (wlcf->trusted_proxy != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    proxy = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_proxy_t));
    if (proxy == NULL) {
        return NGX_CONF_ERROR;
    }

    proxy->from = ngx_array_create(cf->pool, 2, sizeof(ngx_cidr_t));
    if (proxy->from == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&proxy->proto_header, "X-Forwarded-Proto");

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "request_id=", 11) == 0) {

            if (ngx_strcmp(value[i].data + 11, "on") == 0) {
                proxy->request_id = 1;

            } else if (ngx_strcmp(value[i].data + 11, "off") == 0) {
                proxy->request_id = 0;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "welby_trusted_proxy: invalid value "
                                   "\"%V\", request_id= takes \"on\" or "
                                   "\"off\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        target = NULL;

        if (ngx_strncmp(value[i].data, "proto_header=", 13) == 0) {
            target = &proxy->proto_header;
            value[i].data += 13;
            value[i].len -= 13;

        } else if (ngx_strncmp(value[i].data, "protocol_header=", 16) == 0) {
            target = &proxy->protocol_header;
            value[i].data += 16;
            value[i].len -= 16;
        }

        if (target) {
            if (value[i].len == 0
                || ngx_strlchr(value[i].data, value[i].data + value[i].len,
                               ':'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "welby_trusted_proxy: invalid header "
                                   "name \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            *target = value[i];
            continue;
        }

        cidr = ngx_array_push(proxy->from);
        if (cidr == NULL) {
            return NGX_CONF_ERROR;
        }

#if (NGX_HAVE_UNIX_DOMAIN)
        if (value[i].len == 5 && ngx_strcmp(value[i].data, "unix:") == 0) {
            ngx_memzero(cidr, sizeof(ngx_cidr_t));
            cidr->family = AF_UNIX;
            continue;
        }
#endif

        rc = ngx_ptocidr(&value[i], cidr);

        if (rc == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "welby_trusted_proxy: invalid address or "
                               "network \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "welby_trusted_proxy: low address bits of "
                               "%V are meaningless", &value[i]);
        }
    }

    if (proxy->from->nelts == 0) {
        return "needs at least one address or network";
    }

    if (proxy->request_id && cf->cmd_type == NGX_HTTP_LOC_CONF) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "welby_trusted_proxy: request_id=on is ignored "
                           "in a location: the request id is made before "
                           "a location is chosen, by the server's "
                           "welby_trusted_proxy");
    }

    wlcf->trusted_proxy = proxy;

    return NGX_CONF_OK;
}


/* welby_client_cert_allow [subject=DN] [issuer=DN] [sha256=hex] */
char *
ngx_http_welby_client_cert_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_str_t                    *value, v;
    ngx_uint_t                    i;
    ngx_http_welby_cert_allow_t  *allow;

    if (wlcf->client_cert_allow == NULL) {
        wlcf->client_cert_allow = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_welby_cert_allow_t));
        if (wlcf->client_cert_allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    allow = ngx_array_push(wlcf->client_cert_allow);
    if (allow == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(allow, sizeof(ngx_http_welby_cert_allow_t));

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "subject=", 8) == 0
            && value[i].len > 8 && allow->subject.len == 0)
        {
            allow->subject.data = value[i].data + 8;
            allow->subject.len = value[i].len - 8;
            continue;
        }

        if (ngx_strncmp(value[i].data, "issuer=", 7) == 0
            && value[i].len > 7 && allow->issuer.len == 0)
        {
            allow->issuer.data = value[i].data + 7;
            allow->issuer.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "sha256=", 7) == 0 && !allow->sha256) {
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

            if (ngx_http_welby_parse_sha256(&v, allow->md) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "welby_client_cert_allow: \"%V\" is not "
                                   "a SHA-256 fingerprint (64 hex digits, "
                                   "colons allowed)", &v);
                return NGX_CONF_ERROR;
            }

            allow->sha256 = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_client_cert_allow: invalid or repeated "
                           "parameter \"%V\" (subject=, issuer=, sha256=)",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_welby_parse_sha256(ngx_str_t *hex, u_char *md)
{
    u_char      c, *p, *last;
    ngx_int_t   n;
    ngx_uint_t  digits;

    digits = 0;
    p = hex->data;
    last = p + hex->len;

    for ( /* void */ ; p < last; p++) {
        c = *p;

        if (c == ':') {
            continue;
        }

        c |= 0x20;

        if (c >= '0' && c <= '9') {
            n = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            n = c - 'a' + 10;

        } else {
            return NGX_ERROR;
        }

        if (digits == 64) {
            return NGX_ERROR;
        }

        if (digits % 2 == 0) {
            md[digits / 2] = (u_char) (n << 4);

        } else {
            md[digits / 2] |= (u_char) n;
        }

        digits++;
    }

    return (digits == 64) ? NGX_OK : NGX_ERROR;
}


/* welby_hsts off | max-age=N [includeSubDomains] [preload] */
char *
ngx_http_welby_hsts(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    u_char      *p;
    ngx_str_t   *value;
    ngx_int_t    age;
    ngx_uint_t   i, subdomains, preload;

    if (wlcf->hsts.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&wlcf->hsts, "");
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "max-age=", 8) != 0) {
        return "needs \"off\" or \"max-age=SECONDS\" first";
    }

    age = ngx_atoi(value[1].data + 8, value[1].len - 8);
    if (age == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_hsts: invalid max-age \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    subdomains = 0;
    preload = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (!subdomains && value[i].len == 17
            && ngx_strcasecmp(value[i].data, (u_char *) "includeSubDomains")
               == 0)
        {
            subdomains = 1;
            continue;
        }

        if (!preload && ngx_strcasecmp(value[i].data, (u_char *) "preload")
                        == 0)
        {
            preload = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_hsts: invalid or repeated parameter "
                           "\"%V\" (includeSubDomains, preload)", &value[i]);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, sizeof("max-age=; includeSubDomains; preload")
                              - 1 + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    wlcf->hsts.data = p;
    p = ngx_sprintf(p, "max-age=%i", age);

    if (subdomains) {
        p = ngx_cpymem(p, "; includeSubDomains", 19);
    }

    if (preload) {
        p = ngx_cpymem(p, "; preload", 9);
    }

    wlcf->hsts.len = p - wlcf->hsts.data;

    return NGX_CONF_OK;
}


/* Settles the tls part of a merged location. */
char *
ngx_http_welby_tls_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_http_welby_srv_conf_t   *wscf;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_welby_main_conf_t  *wmcf;

    ngx_conf_merge_uint_value(conf->tls, prev->tls, 1);
    ngx_conf_merge_uint_value(conf->tls_min, prev->tls_min, 0x0303);
    ngx_conf_merge_ptr_value(conf->trusted_proxy, prev->trusted_proxy, NULL);
    ngx_conf_merge_uint_value(conf->client_cert, prev->client_cert,
                              NGX_HTTP_WELBY_CLIENT_CERT_OFF);
    ngx_conf_merge_str_value(conf->hsts, prev->hsts,
                             NGX_HTTP_WELBY_HSTS_DEFAULT);

    if (conf->client_cert_allow == NULL) {
        conf->client_cert_allow = prev->client_cert_allow;
    }

    if (conf->trusted_proxy) {
        wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

        if (wmcf->realip_remote_addr == NGX_CONF_UNSET) {
            static ngx_str_t  name = ngx_string("realip_remote_addr");

            wmcf->realip_remote_addr = ngx_http_get_variable_index(cf, &name);
            if (wmcf->realip_remote_addr == NGX_ERROR) {
                return NGX_CONF_ERROR;
            }
        }
    }

    /*
     * ngx_http_merge_servers() merges a server's locations with its
     * srv_conf and each location's loc_conf in cf->ctx: this marks the
     * server protected, and tells whether a location (other than the
     * named one of conf/welby-tls.conf) wants client certificates.
     */

    wscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_welby_module);

    if (conf->enable && conf->tls) {
        wscf->protected = 1;
    }

    if (conf->enable && conf->client_cert != NGX_HTTP_WELBY_CLIENT_CERT_OFF) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (!clcf->named) {
            wscf->client_cert = 1;
        }
    }

    return NGX_CONF_OK;
}


void *
ngx_http_welby_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_welby_srv_conf_t  *wscf;

    wscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_srv_conf_t));
    if (wscf == NULL) {
        return NULL;
    }

    wscf->certificate_check = NGX_CONF_UNSET;

    return wscf;
}


char *
ngx_http_welby_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_welby_srv_conf_t *prev = parent;
    ngx_http_welby_srv_conf_t *conf = child;

    ngx_conf_merge_value(conf->certificate_check, prev->certificate_check, 1);

    return NGX_CONF_OK;
}


/*
 * At configuration time: every certificate a protected server presents
 * is signed with a digest of at least 112 bits of security (not SHA-1,
 * not MD5) and has a key of at least 112 bits (RSA 2048, EC P-224).
 * A chain certificate that signs itself (a root sent along) is not
 * judged by its signature, which no client checks; the leaf always is.
 */
ngx_int_t
ngx_http_welby_tls_check_servers(ngx_conf_t *cf)
{
#if (NGX_HTTP_SSL)
    ngx_uint_t                  s;
    ngx_http_ssl_srv_conf_t    *sscf;
    ngx_http_core_srv_conf_t  **cscfp;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_welby_srv_conf_t  *wscf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {

        wscf = cscfp[s]->ctx->srv_conf[ngx_http_welby_module.ctx_index];
        sscf = cscfp[s]->ctx->srv_conf[ngx_http_ssl_module.ctx_index];

        if (wscf->client_cert && !sscf->verify) {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "welby: server \"%V\" in %s:%ui has "
                          "welby_client_cert locations but no "
                          "ssl_verify_client: no client is asked for a "
                          "certificate, so they refuse every request",
                          &cscfp[s]->server_name, cscfp[s]->file_name,
                          cscfp[s]->line);
        }

        if (!wscf->protected || !wscf->certificate_check) {
            continue;
        }

        if (sscf->certificate_values) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "welby: server \"%V\" in %s:%ui loads its "
                          "certificate per connection (variables in "
                          "ssl_certificate), which cannot be checked "
                          "for SHA-256 signatures and key sizes; use "
                          "files, or \"welby_tls_certificate_check off\"",
                          &cscfp[s]->server_name, cscfp[s]->file_name,
                          cscfp[s]->line);
            return NGX_ERROR;
        }

        if (sscf->ssl.ctx == NULL) {
            continue;
        }

        if (ngx_http_welby_check_chain(cf, cscfp[s], sscf->ssl.ctx)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
#endif

    return NGX_OK;
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_welby_check_chain(ngx_conf_t *cf, ngx_http_core_srv_conf_t *cscf,
    SSL_CTX *ssl_ctx)
{
    int              i, rc;
    char            *err, *name;
    X509            *cert, *x;
    STACK_OF(X509)  *chain;

    /* OpenSSL's own iteration: nginx's way of storing them has changed */

    for (rc = SSL_CTX_set_current_cert(ssl_ctx, SSL_CERT_SET_FIRST);
         rc == 1;
         rc = SSL_CTX_set_current_cert(ssl_ctx, SSL_CERT_SET_NEXT))
    {
        cert = SSL_CTX_get0_certificate(ssl_ctx);
        if (cert == NULL) {
            continue;
        }

        name = X509_get_ex_data(cert, ngx_ssl_certificate_name_index);

        err = ngx_http_welby_check_cert(cert, 1);

        if (err == NULL) {

            chain = NULL;

            if (SSL_CTX_get0_chain_certs(ssl_ctx, &chain) == 0) {
                ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                              "welby: cannot read the chain of \"%s\"",
                              name ? name : "?");
                return NGX_ERROR;
            }

            for (i = 0; chain && i < sk_X509_num(chain); i++) {
                x = sk_X509_value(chain, i);
                err = ngx_http_welby_check_cert(x, 0);
                if (err) {
                    break;
                }
            }
        }

        if (err) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "welby: the certificate \"%s\" of protected server "
                          "\"%V\" is refused: %s (the gateway requires "
                          "SHA-256 or stronger signatures and RSA keys of "
                          "2048 bits or more; \"welby_tls_certificate_check "
                          "off\" overrides)", name ? name : "?",
                          &cscf->server_name, err);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* NULL if good; otherwise a static description of the problem. */
static char *
ngx_http_welby_check_cert(X509 *x, ngx_uint_t leaf)
{
    int              mdnid, pknid, secbits, bits;
    uint32_t         flags;
    EVP_PKEY        *pkey;
    const char      *md, *type;
    static char      err[160];

    if (leaf || !(X509_get_extension_flags(x) & EXFLAG_SS)) {

        if (X509_get_signature_info(x, &mdnid, &pknid, &secbits, &flags)
            != 1)
        {
            return "its signature algorithm is unknown";
        }

        if (secbits < 112 || mdnid == NID_sha1 || mdnid == NID_md5
            || mdnid == NID_md5_sha1)
        {
            md = (mdnid != NID_undef) ? OBJ_nid2sn(mdnid) : "?";

            ngx_snprintf((u_char *) err, sizeof(err) - 1,
                         "%s is signed with %s%Z",
                         leaf ? "it" : "a chain certificate", md);
            return err;
        }
    }

    pkey = X509_get0_pubkey(x);
    if (pkey == NULL) {
        return "its public key cannot be read";
    }

    if (EVP_PKEY_get_security_bits(pkey) < 112) {
        bits = EVP_PKEY_get_bits(pkey);
        type = EVP_PKEY_get0_type_name(pkey);

        ngx_snprintf((u_char *) err, sizeof(err) - 1,
                     "%s %s key has %d bits%Z",
                     leaf ? "its" : "a chain certificate's",
                     type ? type : "?", bits);
        return err;
    }

    return NULL;
}

#endif
