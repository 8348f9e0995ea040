/*
 * Token validation: OAuth 2.0 bearer JWT access tokens (RFC 6750,
 * RFC 9068, RFC 8725), checked against the issuers configured with
 * welby_issuer, cached in the welby_token_cache zone, refused when
 * revoked, and bound to the client certificate when they say so
 * (RFC 8705).  Parsing and the claim checks are in welby_jose.c, keys and
 * signatures in welby_jwk.c, both free of nginx types.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_metrics.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>


#define NGX_HTTP_WELBY_ERR_LEN  256

/*
 * A file whose ctime is this close to the time it was read may still
 * change without a new ctime (timestamps are coarse: a jiffy on Linux,
 * 1 s or 2 s on some filesystems): it is read once more this much later.
 */
#define NGX_HTTP_WELBY_WATCH_SETTLE  3

/* A file that cannot be checked is named in error.log this often. */
#define NGX_HTTP_WELBY_WATCH_REPEAT  60


/* One read of a watched file. */
typedef struct {
    u_char                     *data;       /* NUL-terminated */
    size_t                      len;
    ngx_http_welby_file_id_t    id;         /* fstat() of what was read */
    u_char                      sha256[32];
    ngx_uint_t                  cleanse;    /* a secret */
} ngx_http_welby_read_t;


static ngx_int_t ngx_http_welby_issuer_load(ngx_conf_t *cf,
    ngx_http_welby_main_conf_t *wmcf, ngx_http_welby_issuer_t *issuer);
static welby_keyset_t *ngx_http_welby_keys_parse(ngx_http_welby_issuer_t *is,
    ngx_http_welby_read_t *rd, char *err, size_t err_len);
static void ngx_http_welby_issuer_cleanup(void *data);
static void ngx_http_welby_revocation_cleanup(void *data);
static ngx_int_t ngx_http_welby_watch_interval(ngx_str_t *value,
    ngx_msec_t *interval);
static ngx_int_t ngx_http_welby_watch_read(ngx_http_welby_watch_t *w,
    EVP_MD *md, ngx_log_t *log, ngx_http_welby_read_t *rd, char *err,
    size_t err_len);
static void ngx_http_welby_watch_record(ngx_http_welby_watch_t *w,
    ngx_http_welby_read_t *rd);
static void ngx_http_welby_read_free(ngx_http_welby_read_t *rd);
static void ngx_http_welby_file_id(ngx_http_welby_file_id_t *id,
    ngx_file_info_t *fi);
static ngx_uint_t ngx_http_welby_file_id_eq(ngx_http_welby_file_id_t *a,
    ngx_http_welby_file_id_t *b);
static void ngx_http_welby_errno(char *err, size_t err_len, char *call,
    ngx_err_t errnum);
static void ngx_http_welby_watch_access(ngx_cycle_t *cycle,
    ngx_http_welby_watch_t *w, ngx_core_conf_t *ccf, gid_t *groups,
    int ngroups);
static ngx_uint_t ngx_http_welby_may(ngx_file_info_t *fi, ngx_uid_t uid,
    gid_t *groups, int ngroups, mode_t other);
static ngx_int_t ngx_http_welby_watch_poll(ngx_http_welby_main_conf_t *wmcf,
    ngx_http_welby_watch_t *w, ngx_log_t *log, ngx_http_welby_read_t *rd,
    char *err, size_t err_len);
static void ngx_http_welby_watch_unreadable(ngx_http_welby_watch_t *w,
    ngx_log_t *log, char *err);
static void ngx_http_welby_watch_readable(ngx_http_welby_watch_t *w,
    ngx_log_t *log);
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
static const char *ngx_http_welby_patients_claim(void *data,
    const welby_str_t *iss);
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


/* Claims read as something else: no patients_claim may name them. */
static ngx_str_t  ngx_http_welby_other_claims[] = {
    ngx_string("scp"),
    ngx_string("nonce"),
    ngx_string("at_hash"),
    ngx_null_string
};


/*
 * welby_issuer <iss> keys=<file>|secret=<file> audience=<aud>...
 *     [algorithms=<alg>,...] [kid=<kid>] [leeway=<time>]
 *     [max_lifetime=<time>] [typ=at+jwt|jwt] [require=<claim>,...]
 *     [refresh=<time>] [patients_claim=<name>]
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
    ngx_str_set(&issuer->patients_claim, "patients");

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
                && ngx_strncmp(name.data, "max_lifetime", 12) == 0))
        {
            t = ngx_parse_time(&s, 1);

            if (t == (time_t) NGX_ERROR) {
                goto invalid;
            }

            if (name.len == 6) {
                issuer->rules.leeway = t;

            } else {
                if (t == 0) {
                    goto invalid;
                }

                issuer->rules.max_lifetime = t;
            }

            continue;
        }

        if (name.len == 7 && ngx_strncmp(name.data, "refresh", 7) == 0) {

            if (ngx_http_welby_watch_interval(&s, &issuer->keys_file.interval)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" in "
                                   "welby_issuer \"%V\", it must be a time "
                                   "of at least 1ms, such as \"5m\" or "
                                   "\"500ms\" (without refresh= the keys "
                                   "change on reload only)",
                                   &value[i], &issuer->iss);
                return NGX_CONF_ERROR;
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

        if (name.len == 14
            && ngx_strncmp(name.data, "patients_claim", 14) == 0)
        {
            /* a claim already read as another never holds the patients */

            for (j = 0; ngx_http_welby_claim_names[j].name.len; j++) {
                if (ngx_http_welby_claim_names[j].name.len == s.len
                    && ngx_strncmp(ngx_http_welby_claim_names[j].name.data,
                                   s.data, s.len)
                       == 0)
                {
                    break;
                }
            }

            for (n = 0; ngx_http_welby_other_claims[n].len; n++) {
                if (ngx_http_welby_other_claims[n].len == s.len
                    && ngx_strncmp(ngx_http_welby_other_claims[n].data,
                                   s.data, s.len)
                       == 0)
                {
                    break;
                }
            }

            if (s.len == 0 || ngx_http_welby_claim_names[j].name.len
                || ngx_http_welby_other_claims[n].len)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid patients_claim \"%V\" in "
                                   "welby_issuer \"%V\", it must name a "
                                   "claim of its own, not one the token "
                                   "checks read", &s, &issuer->iss);
                return NGX_CONF_ERROR;
            }

            /* the argument ends here, so the name is NUL-terminated */
            issuer->patients_claim = s;
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

    if (ngx_http_welby_issuer_load(cf, wmcf, issuer) != NGX_OK) {
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
ngx_http_welby_issuer_load(ngx_conf_t *cf, ngx_http_welby_main_conf_t *wmcf,
    ngx_http_welby_issuer_t *issuer)
{
    u_char                  *p;
    ngx_int_t                rc;
    ngx_http_welby_read_t    rd;
    ngx_http_welby_watch_t  *w;
    char                     err[NGX_HTTP_WELBY_ERR_LEN];

    w = &issuer->keys_file;
    w->max_size = WELBY_JWK_FILE_MAX;

    w->name.len = sizeof("issuer \"\": keys file") - 1 + issuer->iss.len;
    w->name.data = ngx_pnalloc(cf->pool, w->name.len);
    if (w->name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(w->name.data, "issuer \"%V\": keys file", &issuer->iss);
    w->name.len = p - w->name.data;

    err[0] = '\0';
    rd.cleanse = issuer->secret;

    rc = ngx_http_welby_watch_read(w, wmcf->sha256, cf->log, &rd, err,
                                   sizeof(err));

    if (rc == NGX_OK) {
        issuer->keys = ngx_http_welby_keys_parse(issuer, &rd, err,
                                                 sizeof(err));
        ngx_http_welby_watch_record(w, &rd);
        ngx_http_welby_read_free(&rd);
    }

    if (issuer->keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_issuer \"%V\": keys file \"%V\": %s",
                           &issuer->iss, &w->path, err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static welby_keyset_t *
ngx_http_welby_keys_parse(ngx_http_welby_issuer_t *issuer,
    ngx_http_welby_read_t *rd, char *err, size_t err_len)
{
    if (issuer->secret) {
        return welby_keyset_secret_parse(rd->data, rd->len, issuer->pem_alg,
                                         issuer->kid, err, err_len);
    }

    return welby_keyset_parse((char *) rd->data, rd->len, issuer->allowed,
                              issuer->pem_alg, issuer->kid, err, err_len);
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

    /* a cached token's patients were read under this claim's name */

    (void) EVP_DigestUpdate(md, issuer->patients_claim.data,
                            issuer->patients_claim.len);
    (void) EVP_DigestUpdate(md, &zero, 1);

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

    ngx_int_t                rc;
    ngx_str_t               *value, s;
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_http_welby_read_t    rd;
    ngx_http_welby_watch_t  *w;
    char                     err[NGX_HTTP_WELBY_ERR_LEN];

    w = &wmcf->revocation_file;

    if (w->path.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    w->path = value[1];
    w->interval = 5000;
    w->max_size = WELBY_REVOKE_FILE_MAX;
    ngx_str_set(&w->name, "revocation list");

    if (ngx_conf_full_name(cf->cycle, &w->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "check=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            if (ngx_http_welby_watch_interval(&s, &w->interval) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" in "
                                   "welby_revocation, it must be a time of "
                                   "at least 1ms, such as \"5s\" or "
                                   "\"500ms\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in welby_revocation",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    err[0] = '\0';
    rd.cleanse = 0;

    rc = ngx_http_welby_watch_read(w, wmcf->sha256, cf->log, &rd, err,
                                   sizeof(err));

    if (rc == NGX_OK) {
        wmcf->revocation = welby_revocation_parse(rd.data, rd.len, err,
                                                  sizeof(err));
        ngx_http_welby_watch_record(w, &rd);
        ngx_http_welby_read_free(&rd);
    }

    if (wmcf->revocation == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_revocation \"%V\": %s", &w->path, err);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_welby_revocation_cleanup;
    cln->data = wmcf->revocation;
    wmcf->revocation_conf = wmcf->revocation;

    if (wmcf->watch_interval == 0 || w->interval < wmcf->watch_interval) {
        wmcf->watch_interval = w->interval;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_welby_revocation_cleanup(void *data)
{
    welby_revocation_free(data);
}


/*
 * check= and refresh=: nginx's time syntax in milliseconds ("5" is five
 * seconds, "500ms" half a second); 0 is refused: a watched file that is
 * never read again would be a revocation list that revokes nothing new.
 */
static ngx_int_t
ngx_http_welby_watch_interval(ngx_str_t *value, ngx_msec_t *interval)
{
    ngx_int_t  t;

    t = ngx_parse_time(value, 0);

    if (t == NGX_ERROR || t == 0) {
        return NGX_ERROR;
    }

    *interval = (ngx_msec_t) t;

    return NGX_OK;
}


/*
 * Reads the whole file into rd: NGX_OK; NGX_ERROR when it cannot be read
 * (err names the call and errno: a check to repeat); NGX_DECLINED when it
 * is too large to be this file (a version to refuse).  rd->id is what
 * fstat() says of the very file read, so that a later stat() that differs
 * from it always means a version not read yet.
 */
static ngx_int_t
ngx_http_welby_watch_read(ngx_http_welby_watch_t *w, EVP_MD *md,
    ngx_log_t *log, ngx_http_welby_read_t *rd, char *err, size_t err_len)
{
    size_t           size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_err_t        errnum;
    ngx_file_info_t  fi;

    rd->data = NULL;
    rd->len = 0;

    /* non-blocking: a FIFO put in the file's place must not hang a worker */

    fd = ngx_open_file(w->path.data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_http_welby_errno(err, err_len, ngx_open_file_n, ngx_errno);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_http_welby_errno(err, err_len, ngx_fd_info_n, ngx_errno);
        goto failed;
    }

    if (!ngx_is_file(&fi)) {
        ngx_snprintf((u_char *) err, err_len - 1, "not a regular file%Z");
        goto failed;
    }

    ngx_http_welby_file_id(&rd->id, &fi);

    if (ngx_file_size(&fi) > (off_t) w->max_size) {
        ngx_snprintf((u_char *) err, err_len - 1, "larger than %uz bytes%Z",
                     w->max_size);
        (void) ngx_close_file(fd);
        return NGX_DECLINED;
    }

    size = (size_t) ngx_file_size(&fi);

    rd->data = ngx_alloc(size + 1, log);
    if (rd->data == NULL) {
        ngx_snprintf((u_char *) err, err_len - 1, "out of memory%Z");
        goto failed;
    }

    /* a file cut short since fstat() has a new ctime: it is read again */

    while (rd->len < size) {
        n = ngx_read_fd(fd, rd->data + rd->len, size - rd->len);

        if (n == -1) {
            errnum = ngx_errno;

            if (errnum == NGX_EINTR) {
                continue;
            }

            ngx_http_welby_errno(err, err_len, ngx_read_fd_n, errnum);
            goto failed;
        }

        if (n == 0) {
            break;
        }

        rd->len += n;
    }

    rd->data[rd->len] = '\0';

    (void) ngx_close_file(fd);

    if (EVP_Digest(rd->data, rd->len, rd->sha256, NULL, md, NULL) != 1) {
        ngx_snprintf((u_char *) err, err_len - 1, "SHA-256 failed%Z");
        ngx_http_welby_read_free(rd);
        return NGX_ERROR;
    }

    return NGX_OK;

failed:

    ngx_http_welby_read_free(rd);
    (void) ngx_close_file(fd);

    return NGX_ERROR;
}


/* The version read is the one compared with from now on. */
static void
ngx_http_welby_watch_record(ngx_http_welby_watch_t *w,
    ngx_http_welby_read_t *rd)
{
    w->id = rd->id;

    if (rd->data) {
        ngx_memcpy(w->sha256, rd->sha256, 32);

    } else {
        /* refused unread: no content matches */
        ngx_memzero(w->sha256, 32);
    }

    /*
     * Two writes within one tick of the filesystem's clock leave the same
     * stat(): a file changed that recently is read once more when that
     * can no longer happen, and its hash tells whether it did.
     */

    if (rd->id.ctime.tv_sec + NGX_HTTP_WELBY_WATCH_SETTLE > ngx_time()) {
        w->settle = rd->id.ctime.tv_sec + NGX_HTTP_WELBY_WATCH_SETTLE;

    } else {
        w->settle = 0;
    }
}


static void
ngx_http_welby_read_free(ngx_http_welby_read_t *rd)
{
    if (rd->data == NULL) {
        return;
    }

    if (rd->cleanse) {
        OPENSSL_cleanse(rd->data, rd->len);
    }

    ngx_free(rd->data);
    rd->data = NULL;
}


static void
ngx_http_welby_file_id(ngx_http_welby_file_id_t *id, ngx_file_info_t *fi)
{
    id->dev = fi->st_dev;
    id->uniq = ngx_file_uniq(fi);
    id->size = ngx_file_size(fi);
    id->mtime = fi->st_mtim;
    id->ctime = fi->st_ctim;
}


static ngx_uint_t
ngx_http_welby_file_id_eq(ngx_http_welby_file_id_t *a,
    ngx_http_welby_file_id_t *b)
{
    return a->dev == b->dev
           && a->uniq == b->uniq
           && a->size == b->size
           && a->mtime.tv_sec == b->mtime.tv_sec
           && a->mtime.tv_nsec == b->mtime.tv_nsec
           && a->ctime.tv_sec == b->ctime.tv_sec
           && a->ctime.tv_nsec == b->ctime.tv_nsec;
}


/* "open() failed (13: Permission denied)", as nginx says it. */
static void
ngx_http_welby_errno(char *err, size_t err_len, char *call, ngx_err_t errnum)
{
    u_char  *p, *last;

    last = (u_char *) err + err_len - 1;

    p = ngx_slprintf((u_char *) err, last, "%s failed (%d: ", call, errnum);
    p = ngx_strerror(errnum, p, last - p);
    p = ngx_slprintf(p, last, ")");

    *p = '\0';
}


/*
 * nginx -t, start and reload, in the master: a worker that cannot read a
 * watched file never sees it change, and the list read here at startup
 * would silently stay in force.  Only the mode bits are checked, for the
 * worker's user, group and supplementary groups (ACLs are not looked at),
 * on every directory of the real path and on the file.
 */
ngx_int_t
ngx_http_welby_token_init_module(ngx_cycle_t *cycle)
{
    int                          n, m;
    gid_t                       *groups;
    ngx_uint_t                   i;
    ngx_core_conf_t             *ccf;
    ngx_http_welby_issuer_t     *issuer;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf == NULL || wmcf->watch_interval == 0 || geteuid() != 0) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT || ccf->user == 0
        || ccf->username == NULL)
    {
        return NGX_OK;
    }

    /* the groups initgroups() gives the workers */

    for (n = 32; /* void */; n = m) {
        groups = ngx_palloc(cycle->pool, n * sizeof(gid_t));
        if (groups == NULL) {
            return NGX_ERROR;
        }

        m = n;

        if (getgrouplist(ccf->username, ccf->group, groups, &m) != -1) {
            n = m;
            break;
        }

        if (m <= n) {
            groups[0] = ccf->group;
            n = 1;
            break;
        }
    }

    issuer = wmcf->issuers.elts;

    for (i = 0; i < wmcf->issuers.nelts; i++) {
        if (issuer[i].keys_file.interval) {
            ngx_http_welby_watch_access(cycle, &issuer[i].keys_file, ccf,
                                        groups, n);
        }
    }

    if (wmcf->revocation_file.interval) {
        ngx_http_welby_watch_access(cycle, &wmcf->revocation_file, ccf,
                                    groups, n);
    }

    return NGX_OK;
}


static void
ngx_http_welby_watch_access(ngx_cycle_t *cycle, ngx_http_welby_watch_t *w,
    ngx_core_conf_t *ccf, gid_t *groups, int ngroups)
{
    char             *real, c;
    size_t            i, len;
    ngx_file_info_t   fi;

    real = realpath((char *) w->path.data, NULL);

    if (real == NULL) {
        /* just read: gone since, which the workers will report */
        return;
    }

    len = ngx_strlen(real);

    for (i = 0; i < len; i++) {

        if (real[i] != '/') {
            continue;
        }

        c = real[i + 1];
        real[i + 1] = '\0';

        if (ngx_file_info(real, &fi) == NGX_FILE_ERROR) {
            goto done;
        }

        real[i + 1] = c;

        if (!ngx_http_welby_may(&fi, ccf->user, groups, ngroups, S_IXOTH)) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "welby: %V \"%V\": worker user \"%s\" cannot "
                          "read it, no search permission on directory "
                          "\"%*s\"; the workers will not see it change",
                          &w->name, &w->path, ccf->username,
                          i ? i : 1, real);
            goto done;
        }
    }

    if (ngx_file_info(real, &fi) != NGX_FILE_ERROR
        && !ngx_http_welby_may(&fi, ccf->user, groups, ngroups, S_IROTH))
    {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "welby: %V \"%V\": worker user \"%s\" cannot read "
                      "it, no read permission on the file; the workers "
                      "will not see it change",
                      &w->name, &w->path, ccf->username);
    }

done:

    free(real);
}


/* Whether the mode bits grant "other" (S_IROTH, S_IXOTH) to that user. */
static ngx_uint_t
ngx_http_welby_may(ngx_file_info_t *fi, ngx_uid_t uid, gid_t *groups,
    int ngroups, mode_t other)
{
    int  i;

    /* the first class that matches decides, even if it grants less */

    if (fi->st_uid == uid) {
        return (fi->st_mode & (other << 6)) != 0;
    }

    for (i = 0; i < ngroups; i++) {
        if (fi->st_gid == groups[i]) {
            return (fi->st_mode & (other << 3)) != 0;
        }
    }

    return (fi->st_mode & other) != 0;
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


/*
 * NGX_OK: a version not seen before is in rd, to be loaded by the caller;
 * NGX_ABORT: a new version refused unread (err says why); NGX_DECLINED:
 * nothing new.
 *
 * A version is what stat() says (device, inode, size, mtime and ctime to
 * the nanosecond): any difference from the version read last, loaded or
 * refused, is read, so a fixed file written in the second of a broken one
 * is never skipped, and an unchanged broken file is not read again and
 * again.  Its SHA-256 then tells a new content from a touched file, and
 * catches, with the one read more of watch_record(), a rewrite that left
 * the same stat() behind.  Reading and hashing happen only on a change:
 * the files are small, and stat() alone is checked on every tick.
 */
static ngx_int_t
ngx_http_welby_watch_poll(ngx_http_welby_main_conf_t *wmcf,
    ngx_http_welby_watch_t *w, ngx_log_t *log, ngx_http_welby_read_t *rd,
    char *err, size_t err_len)
{
    ngx_int_t                 rc;
    ngx_file_info_t           fi;
    ngx_http_welby_file_id_t  id;

    if (ngx_file_info(w->path.data, &fi) == NGX_FILE_ERROR) {
        ngx_http_welby_errno(err, err_len, ngx_file_info_n, ngx_errno);
        ngx_http_welby_watch_unreadable(w, log, err);
        return NGX_DECLINED;
    }

    ngx_http_welby_file_id(&id, &fi);

    if (ngx_http_welby_file_id_eq(&id, &w->id)) {

        if (w->settle == 0 || ngx_time() < w->settle) {
            ngx_http_welby_watch_readable(w, log);
            return NGX_DECLINED;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                       "welby: %V \"%V\" read again: the last read was "
                       "too close to its last change", &w->name, &w->path);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                       "welby: %V \"%V\" changed", &w->name, &w->path);
    }

    rc = ngx_http_welby_watch_read(w, wmcf->sha256, log, rd, err, err_len);

    if (rc == NGX_ERROR) {
        ngx_http_welby_watch_unreadable(w, log, err);
        return NGX_DECLINED;
    }

    ngx_http_welby_watch_readable(w, log);

    if (rc == NGX_DECLINED) {
        ngx_http_welby_watch_record(w, rd);
        return NGX_ABORT;
    }

    if (ngx_memcmp(rd->sha256, w->sha256, 32) == 0) {
        /* touched, or rewritten as it was */
        ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                       "welby: %V \"%V\" has the same content",
                       &w->name, &w->path);
        ngx_http_welby_watch_record(w, rd);
        ngx_http_welby_read_free(rd);
        return NGX_DECLINED;
    }

    ngx_http_welby_watch_record(w, rd);

    return NGX_OK;
}


/* The first failure at once, then once a minute while it lasts. */
static void
ngx_http_welby_watch_unreadable(ngx_http_welby_watch_t *w, ngx_log_t *log,
    char *err)
{
    if (w->unreadable
        && ngx_time() - w->error_time < NGX_HTTP_WELBY_WATCH_REPEAT)
    {
        return;
    }

    w->unreadable = 1;
    w->error_time = ngx_time();

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "welby: %V \"%V\" cannot be checked, the version read "
                  "last stays in use: %s", &w->name, &w->path, err);
}


static void
ngx_http_welby_watch_readable(ngx_http_welby_watch_t *w, ngx_log_t *log)
{
    if (!w->unreadable) {
        return;
    }

    w->unreadable = 0;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "welby: %V \"%V\" can be checked again",
                  &w->name, &w->path);
}


static void
ngx_http_welby_watch_handler(ngx_event_t *ev)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    welby_keyset_t              *keys;
    welby_revocation_t          *rv;
    ngx_http_welby_read_t        rd;
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

        if (w->interval == 0) {
            continue;
        }

        err[0] = '\0';
        rd.cleanse = issuer[i].secret;

        rc = ngx_http_welby_watch_poll(wmcf, w, ev->log, &rd, err,
                                       sizeof(err));

        if (rc == NGX_DECLINED) {
            continue;
        }

        keys = (rc == NGX_OK)
               ? ngx_http_welby_keys_parse(&issuer[i], &rd, err, sizeof(err))
               : NULL;

        ngx_http_welby_read_free(&rd);

        if (keys == NULL) {
            /* keep serving with the keys we have */
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

        ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                      "welby: issuer \"%V\": keys reloaded from \"%V\", "
                      "%uz keys", &issuer[i].iss, &w->path, keys->nkeys);
    }

    w = &wmcf->revocation_file;

    if (w->interval) {
        err[0] = '\0';
        rd.cleanse = 0;

        rc = ngx_http_welby_watch_poll(wmcf, w, ev->log, &rd, err,
                                       sizeof(err));

        if (rc != NGX_DECLINED) {
            rv = (rc == NGX_OK)
                 ? welby_revocation_parse(rd.data, rd.len, err, sizeof(err))
                 : NULL;

            ngx_http_welby_read_free(&rd);

            if (rv == NULL) {
                ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                              "welby: revocation list \"%V\" not reloaded, "
                              "old list kept: %s", &w->path, err);

            } else {
                if (wmcf->revocation != wmcf->revocation_conf) {
                    welby_revocation_free(wmcf->revocation);
                }

                wmcf->revocation = rv;

                ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                              "welby: revocation list \"%V\" reloaded, "
                              "%uz entries", &w->path,
                              welby_revocation_count(rv));
            }
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

    if (ngx_http_welby_sha256(wmcf, token.data, token.len, hash) != NGX_OK) {
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

            /* X_Token is X-Token to a FastCGI backend: a second one */

            if (wlcf->token == NGX_HTTP_WELBY_TOKEN_HEADER
                && welby_header_name_eq(h[i].key.data, h[i].key.len,
                                        wlcf->token_name.data,
                                        wlcf->token_name.len))
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

    /*
     * Backends decode parameter names before they look them up, so
     * "access%5Ftoken" is a token too (welby_query_name_is()).
     */

    if (welby_query_count(r->args.data, r->args.len,
                          (u_char *) "access_token", 12))
    {
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


/*
 * Counts the cookies of that name in one Cookie header; the last wins.
 * A name is compared as backends read it (welby_query_name_is()): PHP
 * percent-decodes cookie names like query names, so "a%74" is "at" to
 * it, and parsers trim the blanks around a name and, after RFC 2109,
 * also split on ','.
 */
static ngx_int_t
ngx_http_welby_cookie(ngx_str_t *header, ngx_str_t *name, ngx_str_t *value)
{
    u_char      *p, *last, *start, *eq, *end, *name_end;
    ngx_uint_t   n;

    n = 0;
    p = header->data;
    last = header->data + header->len;

    while (p < last) {

        while (p < last
               && (*p == ' ' || *p == '\t' || *p == ';' || *p == ','))
        {
            p++;
        }

        start = p;

        for (end = p; end < last && *end != ';' && *end != ','; end++) {
            /* void */
        }

        eq = ngx_strlchr(start, end, '=');

        if (eq) {
            for (name_end = eq;
                 name_end > start
                 && (name_end[-1] == ' ' || name_end[-1] == '\t');
                 name_end--)
            {
                /* void */
            }

            if (welby_query_name_is(start, name_end - start, name->data,
                                    name->len))
            {
                n++;
                value->data = eq + 1;
                value->len = end - value->data;

                while (value->len
                       && (value->data[value->len - 1] == ' '
                           || value->data[value->len - 1] == '\t'))
                {
                    value->len--;
                }
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
    welby_issuers_t           issuers;
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
                ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_CACHE_HIT, 1);
                return WELBY_REASON_NONE;
            }
        }

        ngx_memzero(&ctx->claims, sizeof(welby_claims_t));
    }

    if (wmcf->token_cache) {
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_CACHE_MISS, 1);
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

    issuers.patients_claim = ngx_http_welby_patients_claim;
    issuers.data = wmcf;

    rc = welby_token_parse_issuers(&t, token->data, token->len, scratch,
                                   wmcf->header_cache, &issuers);
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

    /*
     * The mask is a second line of defence that no request can reach
     * today: every key of the set already has an algorithm of
     * algorithms=, as the loader (at configuration time and in the file
     * watcher alike) skips JWKs outside it, refuses such a PEM key, and
     * pins a secret to the one HMAC algorithm.  It stays for the day a
     * key comes from elsewhere.
     */

    if (key->alg != t.header.alg
        || !(issuer->allowed & WELBY_ALG_BIT(t.header.alg)))
    {
        return WELBY_REASON_TOKEN_ALG;
    }

    rc = welby_jws_verify(key, t.signing_input.data, t.signing_input.len,
                          t.signature.data, t.signature.len);

    ngx_http_welby_metrics_add(rc == WELBY_REASON_NONE
                               ? NGX_HTTP_WELBY_METRIC_TOKEN_VALID
                               : NGX_HTTP_WELBY_METRIC_TOKEN_INVALID, 1);
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


/* The parser asks, once it has read iss, which claim lists the patients. */
static const char *
ngx_http_welby_patients_claim(void *data, const welby_str_t *iss)
{
    welby_str_t               s;
    ngx_http_welby_issuer_t  *issuer;

    s = *iss;
    issuer = ngx_http_welby_issuer_find(data, &s);

    return issuer ? (const char *) issuer->patients_claim.data : NULL;
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
