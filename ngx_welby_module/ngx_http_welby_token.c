/*
 * Token validation: OAuth 2.0 bearer JWT access tokens (RFC 6750,
 * RFC 9068, RFC 8725), checked against the issuers configured with
 * welby_issuer, cached in the welby_token_cache zone, refused when
 * revoked, and bound to the client certificate when they say so
 * (RFC 8705).  Parsing and the claim checks are in welby_jose.c, keys and
 * signatures in welby_jwk.c, both free of nginx types.
 */

#include "ngx_http_welby_module.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>


#define NGX_HTTP_WELBY_ERR_LEN  256


static ngx_int_t ngx_http_welby_issuer_load(ngx_conf_t *cf,
    ngx_http_welby_issuer_t *issuer);
static welby_keyset_t *ngx_http_welby_keys_load(ngx_http_welby_issuer_t *is,
    char *err, size_t err_len);
static void ngx_http_welby_issuer_cleanup(void *data);
static void ngx_http_welby_revocation_cleanup(void *data);
static ngx_int_t ngx_http_welby_watch_stat(ngx_http_welby_watch_t *w,
    ngx_file_info_t *fi);
static void ngx_http_welby_watch_handler(ngx_event_t *ev);
static void ngx_http_welby_rules_hash(ngx_http_welby_issuer_t *issuer);
static ngx_int_t ngx_http_welby_parse_algs(ngx_str_t *value,
    unsigned *allowed);
static welby_reason_e ngx_http_welby_token_get(ngx_http_request_t *r,
    ngx_http_welby_loc_conf_t *wlcf, ngx_str_t *token);
static ngx_int_t ngx_http_welby_cookie(ngx_str_t *header, ngx_str_t *name,
    ngx_str_t *value);
static welby_reason_e ngx_http_welby_token_verify(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, ngx_http_welby_ctx_t *ctx,
    ngx_str_t *token, u_char *hash, welby_jose_header_t *header);
static ngx_http_welby_issuer_t *ngx_http_welby_issuer_find(
    ngx_http_welby_main_conf_t *wmcf, welby_str_t *iss);
static welby_reason_e ngx_http_welby_binding(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static ngx_int_t ngx_http_welby_identity_headers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);


typedef struct {
    ngx_str_t      name;
    u_char        *lowcase;
    ngx_uint_t     claim;
    size_t         offset;
} ngx_http_welby_identity_t;


static ngx_http_welby_identity_t  ngx_http_welby_identity[] = {
    { ngx_string("X-Welby-Sub"), (u_char *) "x-welby-sub",
      WELBY_CLAIM_SUB,
      offsetof(welby_claims_t, sub) },
    { ngx_string("X-Welby-Client-Id"), (u_char *) "x-welby-client-id",
      WELBY_CLAIM_CLIENT_ID,
      offsetof(welby_claims_t, client_id) },
    { ngx_string("X-Welby-Iss"), (u_char *) "x-welby-iss",
      WELBY_CLAIM_ISS,
      offsetof(welby_claims_t, iss) },
    { ngx_string("X-Welby-Jti"), (u_char *) "x-welby-jti",
      WELBY_CLAIM_JTI,
      offsetof(welby_claims_t, jti) },
    { ngx_string("X-Welby-Patient"), (u_char *) "x-welby-patient",
      WELBY_CLAIM_PATIENT,
      offsetof(welby_claims_t, patient) },
    { ngx_string("X-Welby-Scope"), (u_char *) "x-welby-scope",
      WELBY_CLAIM_SCOPE,
      offsetof(welby_claims_t, scope) },
    { ngx_string("X-Welby-Fhir-User"), (u_char *) "x-welby-fhir-user",
      WELBY_CLAIM_FHIR_USER,
      offsetof(welby_claims_t, fhir_user) },
    { ngx_string("X-Welby-Amr"), (u_char *) "x-welby-amr",
      WELBY_CLAIM_AMR,
      offsetof(welby_claims_t, amr) },
    { ngx_null_string, NULL, 0, 0 }
};


static ngx_str_t  ngx_http_welby_identity_prefix = ngx_string("X-Welby-");


static struct {
    ngx_str_t      name;
    ngx_uint_t     claim;
} ngx_http_welby_claim_names[] = {
    { ngx_string("iss"), WELBY_CLAIM_ISS },
    { ngx_string("sub"), WELBY_CLAIM_SUB },
    { ngx_string("aud"), WELBY_CLAIM_AUD },
    { ngx_string("exp"), WELBY_CLAIM_EXP },
    { ngx_string("nbf"), WELBY_CLAIM_NBF },
    { ngx_string("iat"), WELBY_CLAIM_IAT },
    { ngx_string("jti"), WELBY_CLAIM_JTI },
    { ngx_string("client_id"), WELBY_CLAIM_CLIENT_ID },
    { ngx_string("scope"), WELBY_CLAIM_SCOPE },
    { ngx_string("patient"), WELBY_CLAIM_PATIENT },
    { ngx_string("fhirUser"), WELBY_CLAIM_FHIR_USER },
    { ngx_string("amr"), WELBY_CLAIM_AMR },
    { ngx_string("cnf"), WELBY_CLAIM_CNF },
    { ngx_null_string, 0 }
};


/*
 * welby_issuer <iss> keys=<file>|secret=<file> audience=<aud>...
 *     [algorithms=<alg>,...] [kid=<kid>] [leeway=<time>]
 *     [max_lifetime=<time>] [typ=at+jwt|jwt] [require=<claim>,...]
 *     [refresh=<time>]
 */
char *
ngx_http_welby_issuer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    u_char                   *p;
    time_t                    t;
    ngx_str_t                *value, s, name, *aud;
    ngx_uint_t                i, j, n, keys, secret, algs_set;
    ngx_array_t               audiences;
    welby_str_t              *a;
    ngx_pool_cleanup_t       *cln;
    ngx_http_welby_issuer_t  *issuer, *other;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty issuer";
    }

    other = wmcf->issuers.elts;

    for (i = 0; i < wmcf->issuers.nelts; i++) {
        if (other[i].iss.len == value[1].len
            && ngx_strncmp(other[i].iss.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate welby_issuer \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    issuer = ngx_array_push(&wmcf->issuers);
    if (issuer == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(issuer, sizeof(ngx_http_welby_issuer_t));

    issuer->iss = value[1];
    issuer->index = wmcf->issuers.nelts - 1;
    issuer->allowed = WELBY_ALGS_ASYMMETRIC;
    issuer->rules.leeway = 60;
    issuer->rules.typ = WELBY_TYP_AT_JWT;
    issuer->rules.required = WELBY_CLAIMS_RFC9068;

    if (ngx_array_init(&audiences, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    keys = 0;
    secret = 0;
    algs_set = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (p == NULL) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = p - value[i].data;
        s.data = p + 1;
        s.len = value[i].data + value[i].len - s.data;

        if ((name.len == 4 && ngx_strncmp(name.data, "keys", 4) == 0)
            || (name.len == 6 && ngx_strncmp(name.data, "secret", 6) == 0))
        {
            if (keys++ || s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "welby_issuer \"%V\" takes one keys= "
                                   "or secret= file", &issuer->iss);
                return NGX_CONF_ERROR;
            }

            secret = (name.len == 6);
            issuer->keys_file.path = s;

            if (ngx_conf_full_name(cf->cycle, &issuer->keys_file.path, 1)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "audience", 8) == 0) {

            if (s.len == 0) {
                goto invalid;
            }

            aud = ngx_array_push(&audiences);
            if (aud == NULL) {
                return NGX_CONF_ERROR;
            }

            *aud = s;
            continue;
        }

        if (name.len == 10 && ngx_strncmp(name.data, "algorithms", 10) == 0)
        {
            if (ngx_http_welby_parse_algs(&s, &issuer->allowed) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid algorithms \"%V\" in "
                                   "welby_issuer \"%V\"", &s, &issuer->iss);
                return NGX_CONF_ERROR;
            }

            algs_set = 1;
            continue;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "kid", 3) == 0) {

            if (s.len == 0) {
                goto invalid;
            }

            issuer->kid = (char *) ngx_pnalloc(cf->pool, s.len + 1);
            if (issuer->kid == NULL) {
                return NGX_CONF_ERROR;
            }

            (void) ngx_cpystrn((u_char *) issuer->kid, s.data, s.len + 1);
            continue;
        }

        if ((name.len == 6 && ngx_strncmp(name.data, "leeway", 6) == 0)
            || (name.len == 12
                && ngx_strncmp(name.data, "max_lifetime", 12) == 0)
            || (name.len == 7 && ngx_strncmp(name.data, "refresh", 7) == 0))
        {
            t = ngx_parse_time(&s, 1);

            if (t == (time_t) NGX_ERROR) {
                goto invalid;
            }

            if (name.len == 6) {
                issuer->rules.leeway = t;

            } else if (name.len == 12) {
                if (t == 0) {
                    goto invalid;
                }

                issuer->rules.max_lifetime = t;

            } else {
                if (t == 0) {
                    goto invalid;
                }

                issuer->keys_file.interval = (ngx_msec_t) t * 1000;
            }

            continue;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "typ", 3) == 0) {

            if (s.len == 6 && ngx_strncasecmp(s.data, (u_char *) "at+jwt", 6)
                              == 0)
            {
                issuer->rules.typ = WELBY_TYP_AT_JWT;

            } else if (s.len == 3
                       && ngx_strncasecmp(s.data, (u_char *) "jwt", 3) == 0)
            {
                issuer->rules.typ = WELBY_TYP_JWT;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid typ \"%V\" in welby_issuer "
                                   "\"%V\", it must be \"at+jwt\" or \"jwt\"",
                                   &s, &issuer->iss);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 7 && ngx_strncmp(name.data, "require", 7) == 0) {

            while (s.len) {
                p = ngx_strlchr(s.data, s.data + s.len, ',');
                n = (p ? p : s.data + s.len) - s.data;

                for (j = 0; ngx_http_welby_claim_names[j].name.len; j++) {
                    if (ngx_http_welby_claim_names[j].name.len == n
                        && ngx_strncmp(ngx_http_welby_claim_names[j].name.data,
                                       s.data, n)
                           == 0)
                    {
                        break;
                    }
                }

                if (ngx_http_welby_claim_names[j].name.len == 0) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "unknown claim \"%*s\" in "
                                       "welby_issuer \"%V\" require=",
                                       n, s.data, &issuer->iss);
                    return NGX_CONF_ERROR;
                }

                issuer->rules.required |= ngx_http_welby_claim_names[j].claim;

                n += (p != NULL);
                s.data += n;
                s.len -= n;
            }

            continue;
        }

        goto invalid;
    }

    if (!keys) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_issuer \"%V\" needs keys= or secret=",
                           &issuer->iss);
        return NGX_CONF_ERROR;
    }

    if (audiences.nelts == 0) {
        /* RFC 9068 section 4: the audience is always checked */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_issuer \"%V\" needs audience=",
                           &issuer->iss);
        return NGX_CONF_ERROR;
    }

    if (secret) {
        issuer->secret = 1;

        if (!algs_set || (issuer->allowed & ~WELBY_ALGS_HMAC)
            || (issuer->allowed & (issuer->allowed - 1)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "welby_issuer \"%V\" with secret= needs "
                               "exactly one of algorithms=HS256, HS384, "
                               "HS512", &issuer->iss);
            return NGX_CONF_ERROR;
        }

    } else if (issuer->allowed & WELBY_ALGS_HMAC) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_issuer \"%V\": HMAC algorithms need "
                           "secret=, never keys=", &issuer->iss);
        return NGX_CONF_ERROR;
    }

    /* a PEM key's (or a kid-less RSA JWK's) algorithm: the only one */

    issuer->pem_alg = WELBY_ALG_UNKNOWN;
    n = 0;

    for (j = 1; j < WELBY_ALG_COUNT; j++) {
        if ((issuer->allowed & WELBY_ALG_BIT(j))
            && (secret || j <= WELBY_ALG_PS512))
        {
            issuer->pem_alg = (welby_alg_e) j;
            n++;
        }
    }

    if (n != 1) {
        issuer->pem_alg = WELBY_ALG_UNKNOWN;
    }

    a = ngx_palloc(cf->pool, audiences.nelts * sizeof(welby_str_t));
    if (a == NULL) {
        return NGX_CONF_ERROR;
    }

    aud = audiences.elts;

    for (i = 0; i < audiences.nelts; i++) {
        a[i].data = aud[i].data;
        a[i].len = aud[i].len;
    }

    issuer->rules.audiences = a;
    issuer->rules.naudiences = audiences.nelts;

    ngx_http_welby_rules_hash(issuer);

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_welby_issuer_load(cf, issuer) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the issuers array may move as it grows: the cleanup keeps the set */

    cln->handler = ngx_http_welby_issuer_cleanup;
    cln->data = issuer->keys;
    issuer->keys_conf = issuer->keys;

    if (issuer->keys_file.interval
        && (wmcf->watch_interval == 0
            || issuer->keys_file.interval < wmcf->watch_interval))
    {
        wmcf->watch_interval = issuer->keys_file.interval;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in welby_issuer \"%V\"",
                       &value[i], &issuer->iss);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_welby_issuer_load(ngx_conf_t *cf, ngx_http_welby_issuer_t *issuer)
{
    ngx_file_info_t  fi;
    char             err[NGX_HTTP_WELBY_ERR_LEN];

    err[0] = '\0';

    issuer->keys = ngx_http_welby_keys_load(issuer, err, sizeof(err));

    if (issuer->keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_issuer \"%V\": keys file \"%V\": %s",
                           &issuer->iss, &issuer->keys_file.path, err);
        return NGX_ERROR;
    }

    if (ngx_http_welby_watch_stat(&issuer->keys_file, &fi) == NGX_OK) {
        issuer->keys_file.mtime = ngx_file_mtime(&fi);
        issuer->keys_file.size = ngx_file_size(&fi);
        issuer->keys_file.uniq = ngx_file_uniq(&fi);
    }

    return NGX_OK;
}


static welby_keyset_t *
ngx_http_welby_keys_load(ngx_http_welby_issuer_t *issuer, char *err,
    size_t err_len)
{
    if (issuer->secret) {
        return welby_keyset_secret((char *) issuer->keys_file.path.data,
                                   issuer->pem_alg, issuer->kid, err,
                                   err_len);
    }

    return welby_keyset_load((char *) issuer->keys_file.path.data,
                             issuer->allowed, issuer->pem_alg, issuer->kid,
                             err, err_len);
}


static void
ngx_http_welby_issuer_cleanup(void *data)
{
    /*
     * The set loaded at configuration time.  A set a worker loaded later
     * replaces it in that worker's copy of the configuration only, and
     * is freed with the worker.
     */
    welby_keyset_free(data);
}


/* The order of the rules matters to the hash, never to the checks. */
static void
ngx_http_welby_rules_hash(ngx_http_welby_issuer_t *issuer)
{
    ngx_uint_t    i;
    EVP_MD_CTX   *md;
    int64_t       v[4];
    u_char        zero;

    zero = 0;

    v[0] = issuer->rules.leeway;
    v[1] = issuer->rules.max_lifetime;
    v[2] = issuer->rules.typ;
    v[3] = ((int64_t) issuer->rules.required << 32) | issuer->allowed;

    md = EVP_MD_CTX_new();

    if (md == NULL
        || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, issuer->iss.data, issuer->iss.len) != 1
        || EVP_DigestUpdate(md, &zero, 1) != 1
        || EVP_DigestUpdate(md, v, sizeof(v)) != 1)
    {
        /* an all-zero hash matches no cache entry: nothing is reused */
        ngx_memzero(issuer->rules_hash, sizeof(issuer->rules_hash));
        EVP_MD_CTX_free(md);
        return;
    }

    for (i = 0; i < issuer->rules.naudiences; i++) {
        (void) EVP_DigestUpdate(md, issuer->rules.audiences[i].data,
                                issuer->rules.audiences[i].len);
        (void) EVP_DigestUpdate(md, &zero, 1);
    }

    if (EVP_DigestFinal_ex(md, issuer->rules_hash, NULL) != 1) {
        ngx_memzero(issuer->rules_hash, sizeof(issuer->rules_hash));
    }

    EVP_MD_CTX_free(md);
}


static ngx_int_t
ngx_http_welby_parse_algs(ngx_str_t *value, unsigned *allowed)
{
    u_char       *p, *last;
    size_t        n;
    welby_alg_e   alg;

    *allowed = 0;

    p = value->data;
    last = value->data + value->len;

    while (p < last) {
        n = (ngx_strlchr(p, last, ',') ? ngx_strlchr(p, last, ',') : last)
            - p;

        alg = welby_alg_find(p, n);
        if (alg == WELBY_ALG_UNKNOWN) {
            return NGX_ERROR;
        }

        *allowed |= WELBY_ALG_BIT(alg);

        p += n + 1;
    }

    return *allowed ? NGX_OK : NGX_ERROR;
}


/* welby_token bearer | header=<name> | cookie=<name> | off */
char *
ngx_http_welby_token_source(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    ngx_str_t  *value;

    if (wlcf->token != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "bearer") == 0) {
        wlcf->token = NGX_HTTP_WELBY_TOKEN_BEARER;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->token = NGX_HTTP_WELBY_TOKEN_OFF;
        return NGX_CONF_OK;
    }

    if (value[1].len > 7 && ngx_strncmp(value[1].data, "header=", 7) == 0) {
        wlcf->token = NGX_HTTP_WELBY_TOKEN_HEADER;
        wlcf->token_name.data = value[1].data + 7;
        wlcf->token_name.len = value[1].len - 7;
        return NGX_CONF_OK;
    }

    if (value[1].len > 7 && ngx_strncmp(value[1].data, "cookie=", 7) == 0) {
        wlcf->token = NGX_HTTP_WELBY_TOKEN_COOKIE;
        wlcf->token_name.data = value[1].data + 7;
        wlcf->token_name.len = value[1].len - 7;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, it must "
                       "be \"bearer\", \"header=<name>\", \"cookie=<name>\" "
                       "or \"off\"", &value[1], &cmd->name);

    return NGX_CONF_ERROR;
}


/* welby_revocation <file> [check=<time>] */
char *
ngx_http_welby_revocation(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    time_t                   t;
    ngx_str_t               *value, s;
    ngx_uint_t               i;
    ngx_file_info_t          fi;
    ngx_pool_cleanup_t      *cln;
    ngx_http_welby_watch_t  *w;
    char                     err[NGX_HTTP_WELBY_ERR_LEN];

    w = &wmcf->revocation_file;

    if (w->path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    w->path = value[1];
    w->interval = 5000;

    if (ngx_conf_full_name(cf->cycle, &w->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "check=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            t = ngx_parse_time(&s, 1);
            if (t == (time_t) NGX_ERROR) {
                goto invalid;
            }

            w->interval = (ngx_msec_t) t * 1000;
            continue;
        }

        goto invalid;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    err[0] = '\0';

    wmcf->revocation = welby_revocation_load((char *) w->path.data, err,
                                             sizeof(err));
    if (wmcf->revocation == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_revocation \"%V\": %s", &w->path, err);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_welby_revocation_cleanup;
    cln->data = wmcf->revocation;
    wmcf->revocation_conf = wmcf->revocation;

    if (ngx_http_welby_watch_stat(w, &fi) == NGX_OK) {
        w->mtime = ngx_file_mtime(&fi);
        w->size = ngx_file_size(&fi);
        w->uniq = ngx_file_uniq(&fi);
    }

    if (w->interval
        && (wmcf->watch_interval == 0 || w->interval < wmcf->watch_interval))
    {
        wmcf->watch_interval = w->interval;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in welby_revocation",
                       &value[i]);

    return NGX_CONF_ERROR;
}


static void
ngx_http_welby_revocation_cleanup(void *data)
{
    welby_revocation_free(data);
}


static ngx_int_t
ngx_http_welby_watch_stat(ngx_http_welby_watch_t *w, ngx_file_info_t *fi)
{
    if (ngx_file_info(w->path.data, fi) == NGX_FILE_ERROR) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Each worker checks the watched files itself, on a timer: the files are
 * small and read rarely, and a worker that reloads its own copy needs no
 * locking with the others.
 */
ngx_int_t
ngx_http_welby_token_init_process(ngx_cycle_t *cycle)
{
    ngx_event_t                 *ev;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf == NULL || wmcf->watch_interval == 0) {
        return NGX_OK;
    }

    ev = &wmcf->watch_event;

    ev->handler = ngx_http_welby_watch_handler;
    ev->data = wmcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    ngx_add_timer(ev, wmcf->watch_interval);

    return NGX_OK;
}


/* What a worker loaded itself is its own to free. */
void
ngx_http_welby_token_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_welby_issuer_t     *issuer;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf == NULL) {
        return;
    }

    issuer = wmcf->issuers.elts;

    for (i = 0; i < wmcf->issuers.nelts; i++) {
        if (issuer[i].keys != issuer[i].keys_conf) {
            welby_keyset_free(issuer[i].keys);
            issuer[i].keys = issuer[i].keys_conf;
        }
    }

    if (wmcf->revocation != wmcf->revocation_conf) {
        welby_revocation_free(wmcf->revocation);
        wmcf->revocation = wmcf->revocation_conf;
    }
}


static void
ngx_http_welby_watch_handler(ngx_event_t *ev)
{
    ngx_uint_t                   i;
    ngx_file_info_t              fi;
    welby_keyset_t              *keys;
    welby_revocation_t          *rv;
    ngx_http_welby_watch_t      *w;
    ngx_http_welby_issuer_t     *issuer;
    ngx_http_welby_main_conf_t  *wmcf;
    char                         err[NGX_HTTP_WELBY_ERR_LEN];

    wmcf = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /*
     * Every watched file is checked at the shortest interval: stat() is
     * cheap, and one timer is simpler to reason about than several.
     */

    issuer = wmcf->issuers.elts;

    for (i = 0; i < wmcf->issuers.nelts; i++) {
        w = &issuer[i].keys_file;

        if (w->interval == 0 || ngx_http_welby_watch_stat(w, &fi) != NGX_OK
            || (ngx_file_mtime(&fi) == w->mtime
                && ngx_file_size(&fi) == w->size
                && ngx_file_uniq(&fi) == w->uniq)
            || ngx_file_mtime(&fi) == w->failed_mtime)
        {
            continue;
        }

        err[0] = '\0';
        keys = ngx_http_welby_keys_load(&issuer[i], err, sizeof(err));

        if (keys == NULL) {
            /* keep serving with the keys we have */
            w->failed_mtime = ngx_file_mtime(&fi);
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "welby: issuer \"%V\": keys file \"%V\" not "
                          "reloaded, old keys kept: %s",
                          &issuer[i].iss, &w->path, err);
            continue;
        }

        /* the configuration-time set is freed by the pool cleanup */

        if (issuer[i].keys != issuer[i].keys_conf) {
            welby_keyset_free(issuer[i].keys);
        }

        issuer[i].keys = keys;
        w->mtime = ngx_file_mtime(&fi);
        w->size = ngx_file_size(&fi);
        w->uniq = ngx_file_uniq(&fi);
        w->failed_mtime = 0;

        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "welby: issuer \"%V\": keys reloaded from \"%V\", "
                      "%uz keys", &issuer[i].iss, &w->path, keys->nkeys);
    }

    w = &wmcf->revocation_file;

    if (w->interval && ngx_http_welby_watch_stat(w, &fi) == NGX_OK
        && (ngx_file_mtime(&fi) != w->mtime || ngx_file_size(&fi) != w->size
            || ngx_file_uniq(&fi) != w->uniq)
        && ngx_file_mtime(&fi) != w->failed_mtime)
    {
        err[0] = '\0';
        rv = welby_revocation_load((char *) w->path.data, err, sizeof(err));

        if (rv == NULL) {
            w->failed_mtime = ngx_file_mtime(&fi);
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "welby: revocation list \"%V\" not reloaded, "
                          "old list kept: %s", &w->path, err);

        } else {
            if (wmcf->revocation != wmcf->revocation_conf) {
                welby_revocation_free(wmcf->revocation);
            }

            wmcf->revocation = rv;
            w->mtime = ngx_file_mtime(&fi);
            w->size = ngx_file_size(&fi);
            w->uniq = ngx_file_uniq(&fi);
            w->failed_mtime = 0;

            ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                          "welby: revocation list \"%V\" reloaded, "
                          "%uz entries", &w->path,
                          welby_revocation_count(rv));
        }
    }

    ngx_add_timer(ev, wmcf->watch_interval);
}


welby_reason_e
ngx_http_welby_token(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_str_t                    token;
    welby_str_t                 *s;
    welby_reason_e               rc;
    welby_jose_header_t          header;
    ngx_http_welby_main_conf_t  *wmcf;
    u_char                       hash[32];

    /*
     * Whatever the token says, and even without one, the backend must
     * never see identity headers the client made up.
     */

    if (ngx_http_welby_remove_headers(r, &r->headers_in.headers,
                                      wlcf->strip_headers,
                                      &ngx_http_welby_identity_prefix)
        != NGX_OK)
    {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    if (wlcf->token == NGX_HTTP_WELBY_TOKEN_OFF) {
        return WELBY_REASON_NONE;
    }

    rc = ngx_http_welby_token_get(r, wlcf, &token);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (token.len > wlcf->token_max_size) {
        return WELBY_REASON_TOKEN_TOO_LARGE;
    }

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    if (EVP_Digest(token.data, token.len, hash, NULL, wmcf->sha256, NULL)
        != 1)
    {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    rc = ngx_http_welby_token_verify(r, wmcf, ctx, &token, hash, &header);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /* a cached token is checked again: time passes, lists change */

    rc = welby_token_check(&ctx->issuer->rules, &header, &ctx->claims,
                           (int64_t) ngx_time());
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (wmcf->revocation) {
        s = &ctx->claims.jti;

        if (welby_revocation_jti(wmcf->revocation, s->data, s->len)) {
            return WELBY_REASON_TOKEN_REVOKED;
        }

        s = &ctx->claims.sub;

        if (welby_revocation_sub(wmcf->revocation, s->data, s->len,
                                 ctx->claims.iat))
        {
            return WELBY_REASON_TOKEN_REVOKED;
        }
    }

    rc = ngx_http_welby_binding(r, ctx, wlcf);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    ctx->token_valid = 1;

    if (ngx_http_welby_identity_headers(r, ctx) != NGX_OK) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: token valid jti:%*s cached:%ui",
                   ctx->claims.jti.len, ctx->claims.jti.data,
                   (ngx_uint_t) ctx->token_cached);

    return WELBY_REASON_NONE;
}


/*
 * RFC 6750 section 2: one method, one token.  A second token anywhere,
 * even an identical one, makes the request ambiguous; a token in the
 * query is refused outright, since query strings end up in logs.
 */
static welby_reason_e
ngx_http_welby_token_get(ngx_http_request_t *r,
    ngx_http_welby_loc_conf_t *wlcf, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_str_t         value;
    ngx_uint_t        i, nauth, nsrc, nbearer;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static ngx_str_t  cookie = ngx_string("Cookie");

    nauth = 0;
    nbearer = 0;
    nsrc = 0;
    token->len = 0;
    token->data = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (h[i].key.len == sizeof("Authorization") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Authorization",
                                   sizeof("Authorization") - 1)
                   == 0)
            {
                nauth++;

                p = h[i].value.data;
                last = p + h[i].value.len;

                if (h[i].value.len < 6
                    || ngx_strncasecmp(p, (u_char *) "Bearer", 6) != 0
                    || (h[i].value.len > 6 && p[6] != ' '))
                {
                    continue;
                }

                nbearer++;

                if (wlcf->token != NGX_HTTP_WELBY_TOKEN_BEARER) {
                    continue;
                }

                for (p += 6; p < last && *p == ' '; p++) { /* void */ }

                token->data = p;
                token->len = last - p;
                continue;
            }

            if (wlcf->token == NGX_HTTP_WELBY_TOKEN_HEADER
                && h[i].key.len == wlcf->token_name.len
                && ngx_strncasecmp(h[i].key.data, wlcf->token_name.data,
                                   h[i].key.len)
                   == 0)
            {
                nsrc++;
                *token = h[i].value;
                continue;
            }

            if (wlcf->token == NGX_HTTP_WELBY_TOKEN_COOKIE
                && h[i].key.len == cookie.len
                && ngx_strncasecmp(h[i].key.data, cookie.data, cookie.len)
                   == 0)
            {
                nsrc += ngx_http_welby_cookie(&h[i].value, &wlcf->token_name,
                                              token);
            }
        }
    }

    if (ngx_http_arg(r, (u_char *) "access_token", 12, &value) == NGX_OK) {
        if (nbearer || nsrc) {
            return WELBY_REASON_TOKEN_AMBIGUOUS;
        }

        return WELBY_REASON_TOKEN_IN_QUERY;
    }

    if (nauth > 1 || nsrc > 1 || (nsrc && nbearer)) {
        return WELBY_REASON_TOKEN_AMBIGUOUS;
    }

    if (token->data == NULL) {
        return WELBY_REASON_TOKEN_MISSING;
    }

    if (token->len == 0) {
        return WELBY_REASON_TOKEN_MALFORMED;
    }

    return WELBY_REASON_NONE;
}


/* Counts the cookies of that name in one Cookie header; the last wins. */
static ngx_int_t
ngx_http_welby_cookie(ngx_str_t *header, ngx_str_t *name, ngx_str_t *value)
{
    u_char      *p, *last, *start, *eq, *end;
    ngx_uint_t   n;

    n = 0;
    p = header->data;
    last = header->data + header->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == ';')) {
            p++;
        }

        start = p;
        end = ngx_strlchr(p, last, ';');
        if (end == NULL) {
            end = last;
        }

        eq = ngx_strlchr(start, end, '=');

        if (eq && (size_t) (eq - start) == name->len
            && ngx_strncmp(start, name->data, name->len) == 0)
        {
            n++;
            value->data = eq + 1;
            value->len = end - value->data;

            while (value->len && value->data[value->len - 1] == ' ') {
                value->len--;
            }
        }

        p = end + 1;
    }

    return n;
}


static welby_reason_e
ngx_http_welby_token_verify(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, ngx_http_welby_ctx_t *ctx,
    ngx_str_t *token, u_char *hash, welby_jose_header_t *header)
{
    u_char                   *scratch;
    ngx_uint_t                n;
    welby_token_t             t;
    welby_reason_e            rc;
    const welby_key_t        *key;
    ngx_http_welby_issuer_t  *issuer;
    u_char                    thumbprint[32], rules_hash[32];

    if (wmcf->token_cache
        && ngx_http_welby_cache_seen(wmcf, hash)
        && ngx_http_welby_cache_get(r, wmcf, hash, ctx, header, thumbprint,
                                    rules_hash)
           == NGX_OK)
    {
        /*
         * A hit counts only while the issuer's rules and the key that
         * verified the token are still the configured ones.
         */

        issuer = ngx_http_welby_issuer_find(wmcf, &ctx->claims.iss);

        if (issuer
            && ngx_memcmp(issuer->rules_hash, rules_hash, 32) == 0)
        {
            key = welby_keyset_find(issuer->keys, header->kid.data,
                                    header->kid.len);

            if (key && ngx_memcmp(key->thumbprint, thumbprint, 32) == 0) {
                ctx->issuer = issuer;
                ctx->token_cached = 1;
                return WELBY_REASON_NONE;
            }
        }

        ngx_memzero(&ctx->claims, sizeof(welby_claims_t));
    }

    n = welby_token_scratch_size(token->len);

    scratch = ngx_pnalloc(r->pool, n);
    if (scratch == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    if (wmcf->header_cache == NULL) {
        /* this worker's own, allocated once: its slots must not move */
        wmcf->header_cache = ngx_pcalloc(ngx_cycle->pool,
                                         sizeof(welby_header_cache_t));
    }

    rc = welby_token_parse_cached(&t, token->data, token->len, scratch,
                                  wmcf->header_cache);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (!(t.claims.present & WELBY_CLAIM_ISS)) {
        return WELBY_REASON_TOKEN_CLAIMS;
    }

    issuer = ngx_http_welby_issuer_find(wmcf, &t.claims.iss);
    if (issuer == NULL) {
        return WELBY_REASON_TOKEN_ISSUER;
    }

    /*
     * RFC 8725 section 3.1: the key decides the algorithm, never the
     * token.  The kid picks one key of this issuer only; jku, x5u, jwk
     * and x5c are never looked at.
     */

    key = welby_keyset_find(issuer->keys, t.header.kid.data,
                            t.header.kid.len);
    if (key == NULL) {
        return WELBY_REASON_TOKEN_KEY;
    }

    if (key->alg != t.header.alg
        || !(issuer->allowed & WELBY_ALG_BIT(t.header.alg)))
    {
        return WELBY_REASON_TOKEN_ALG;
    }

    rc = welby_jws_verify(key, t.signing_input.data, t.signing_input.len,
                          t.signature.data, t.signature.len);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    ctx->issuer = issuer;
    ctx->claims = t.claims;
    ctx->payload = t.payload;
    *header = t.header;

    rc = welby_token_check(&issuer->rules, &t.header, &t.claims,
                           (int64_t) ngx_time());

    if (rc == WELBY_REASON_NONE && wmcf->token_cache
        && ngx_http_welby_cache_admit(wmcf, hash))
    {
        ngx_http_welby_cache_put(r, wmcf, hash, &t, issuer, key);
    }

    return rc;
}


static ngx_http_welby_issuer_t *
ngx_http_welby_issuer_find(ngx_http_welby_main_conf_t *wmcf, welby_str_t *iss)
{
    ngx_uint_t                i;
    ngx_http_welby_issuer_t  *issuer;

    issuer = wmcf->issuers.elts;

    for (i = 0; i < wmcf->issuers.nelts; i++) {
        if (issuer[i].iss.len == iss->len
            && ngx_memcmp(issuer[i].iss.data, iss->data, iss->len) == 0)
        {
            return &issuer[i];
        }
    }

    return NULL;
}


/*
 * RFC 8705 section 3: a token that names a certificate is good only with
 * that certificate, verified by nginx (ssl_verify_client on or optional).
 */
static welby_reason_e
ngx_http_welby_binding(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
#if (NGX_HTTP_SSL)
    ngx_int_t  rc;
#endif

    if (!(ctx->claims.present & WELBY_CLAIM_CNF)) {
        return wlcf->token_binding ? WELBY_REASON_TOKEN_BINDING
                                   : WELBY_REASON_NONE;
    }

#if (NGX_HTTP_SSL)

    if (r->connection->ssl == NULL
        || SSL_get_verify_result(r->connection->ssl->connection) != X509_V_OK)
    {
        return WELBY_REASON_TOKEN_BINDING;
    }

    rc = ngx_http_welby_client_cert_sha256(r, ctx);

    if (rc == NGX_ERROR) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    if (rc != NGX_OK
        || CRYPTO_memcmp(ctx->cert_sha256, ctx->claims.x5t_s256, 32) != 0)
    {
        return WELBY_REASON_TOKEN_BINDING;
    }

    return WELBY_REASON_NONE;

#else

    return WELBY_REASON_TOKEN_BINDING;

#endif
}


static ngx_int_t
ngx_http_welby_identity_headers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx)
{
    ngx_str_t                   value;
    welby_str_t                *s;
    ngx_table_elt_t            *h;
    ngx_http_welby_identity_t  *id;

    for (id = ngx_http_welby_identity; id->name.len; id++) {

        if (!(ctx->claims.present & id->claim)) {
            continue;
        }

        s = (welby_str_t *) ((u_char *) &ctx->claims + id->offset);

        value.data = (u_char *) s->data;
        value.len = s->len;

        h = ngx_http_welby_push_header(&r->headers_in.headers, &id->name,
                                       &value);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->lowcase_key = id->lowcase;
        h->hash = ngx_hash_key(id->lowcase, id->name.len);
    }

    return NGX_OK;
}
