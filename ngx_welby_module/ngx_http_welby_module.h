/*
 * ngx_http_welby_module: the structures every welby source file shares.
 * Each concern's file exports its own functions here, in its own section.
 */

#ifndef NGX_HTTP_WELBY_MODULE_H
#define NGX_HTTP_WELBY_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "welby_reason.h"
#include "welby_fhir.h"
#include "welby_scope.h"
#include "welby_compartment.h"
#include "welby_name.h"
#include "welby_jose.h"
#include "welby_jwk.h"
#include "welby_revoke.h"
#include "welby_audit.h"


#define NGX_HTTP_WELBY_ENFORCE  0
#define NGX_HTTP_WELBY_DETECT   1

#define NGX_HTTP_WELBY_DECISION_NONE    0
#define NGX_HTTP_WELBY_DECISION_ALLOW   1
#define NGX_HTTP_WELBY_DECISION_DENY    2
#define NGX_HTTP_WELBY_DECISION_DETECT  3

/* 16 random bytes, hex: unique enough across nodes without coordination. */
#define NGX_HTTP_WELBY_REQUEST_ID_BYTES  16
#define NGX_HTTP_WELBY_RANDOM_BATCH      4096


#define NGX_HTTP_WELBY_TOKEN_OFF     0
#define NGX_HTTP_WELBY_TOKEN_BEARER  1
#define NGX_HTTP_WELBY_TOKEN_HEADER  2
#define NGX_HTTP_WELBY_TOKEN_COOKIE  3


#define NGX_HTTP_WELBY_CLIENT_CERT_OFF       0
#define NGX_HTTP_WELBY_CLIENT_CERT_OPTIONAL  1
#define NGX_HTTP_WELBY_CLIENT_CERT_REQUIRED  2


/* welby_trusted_proxy */
typedef struct {
    ngx_array_t                *from;           /* ngx_cidr_t */
    ngx_str_t                   proto_header;
    ngx_str_t                   protocol_header;    /* empty: not checked */
    ngx_flag_t                  request_id;     /* its X-Request-Id is ours */
} ngx_http_welby_proxy_t;


/* one welby_client_cert_allow line: all that is set must match */
typedef struct {
    ngx_str_t                   subject;        /* RFC 2253, or empty */
    ngx_str_t                   issuer;
    u_char                      md[32];
    unsigned                    sha256:1;
} ngx_http_welby_cert_allow_t;


/* What stat() says of one version of a file: any write changes it. */
typedef struct {
    dev_t                       dev;
    ngx_file_uniq_t             uniq;
    off_t                       size;
    struct timespec             mtime;
    struct timespec             ctime;
} ngx_http_welby_file_id_t;


/* A file a worker watches for changes (keys, the revocation list). */
typedef struct {
    ngx_str_t                   path;       /* NUL-terminated */
    ngx_str_t                   name;       /* what it is, for the log */
    ngx_msec_t                  interval;   /* 0: only on reload */
    size_t                      max_size;

    /* the version read last, loaded or refused */
    ngx_http_welby_file_id_t    id;
    u_char                      sha256[32];
    time_t                      settle;     /* 0, or read it again then */

    time_t                      error_time; /* of the last [error] */
    unsigned                    unreadable:1;
} ngx_http_welby_watch_t;


typedef struct {
    ngx_str_t                   iss;
    ngx_uint_t                  index;

    ngx_http_welby_watch_t      keys_file;
    ngx_flag_t                  secret;
    welby_alg_e                 pem_alg;
    char                       *kid;
    unsigned                    allowed;        /* WELBY_ALG_BIT mask */
    welby_keyset_t             *keys;
    welby_keyset_t             *keys_conf;      /* loaded by nginx -t */

    welby_token_rules_t         rules;
    ngx_str_t                   patients_claim;     /* NUL-terminated */

    /* SHA-256 over the rules: cached tokens checked under other rules
     * are checked again */
    u_char                      rules_hash[32];
} ngx_http_welby_issuer_t;


#define NGX_HTTP_WELBY_ALERT_AUTH      1
#define NGX_HTTP_WELBY_ALERT_REFUSAL   2
#define NGX_HTTP_WELBY_ALERT_REASON    3
#define NGX_HTTP_WELBY_ALERT_UPSTREAM  4
#define NGX_HTTP_WELBY_ALERT_DETECTED  5


/*
 * What the limits and the detectors found in a request, refused or not
 * (detect and alert modes): ctx->detected, counted by welby_alert.
 */
#define NGX_HTTP_WELBY_DETECTED_RATE         0x01
#define NGX_HTTP_WELBY_DETECTED_GEO          0x02
#define NGX_HTTP_WELBY_DETECTED_THROTTLE     0x04
#define NGX_HTTP_WELBY_DETECTED_ENUMERATION  0x08
#define NGX_HTTP_WELBY_DETECTED_TRAVEL       0x10


typedef struct {
    ngx_str_t                   name;       /* the event as configured */
    ngx_uint_t                  event;      /* NGX_HTTP_WELBY_ALERT_* */
    ngx_uint_t                  per_ip;
    welby_reason_e              reason;
    ngx_uint_t                  detected;   /* NGX_HTTP_WELBY_DETECTED_* */
    ngx_uint_t                  threshold;
    ngx_msec_t                  window;
    ngx_uint_t                  severity;   /* welby_audit_severity_e */
} ngx_http_welby_alert_t;


/* geography: the MMDB files, a block's country list (..._geo.c) */
typedef struct ngx_http_welby_geo_s  ngx_http_welby_geo_t;
typedef struct ngx_http_welby_geo_list_s  ngx_http_welby_geo_list_t;
typedef struct ngx_http_welby_metrics_s  ngx_http_welby_metrics_t;


typedef struct {
    ngx_flag_t                  used;

    ngx_array_t                 issuers;    /* ngx_http_welby_issuer_t */

    ngx_shm_zone_t             *token_cache;
    time_t                      token_cache_ttl;

    ngx_http_welby_watch_t      revocation_file;
    welby_revocation_t         *revocation;
    welby_revocation_t         *revocation_conf;

    ngx_event_t                 watch_event;
    ngx_msec_t                  watch_interval;

    EVP_MD                     *sha256;     /* fetched once */
    EVP_MD_CTX                 *sha256_ctx; /* a worker's, for requests */
    welby_header_cache_t       *header_cache;   /* per worker */

    ngx_array_t                *audit_sinks;    /* welby_audit_log */
    ngx_array_t                *audit_syslogs;  /* welby_audit_syslog */
    ngx_array_t                *alerts;         /* welby_alert */
    ngx_shm_zone_t             *alert_zone;
    ngx_str_t                   audit_node;
    ngx_str_t                   audit_query_key;
    ngx_str_t                   audit_stream;   /* this worker's chain id */
    u_char                      audit_stream_data[NGX_INT64_LEN * 2 + 8];
    ngx_uint_t                  audit_seq;

    ngx_int_t                   realip_remote_addr; /* variable index */

    ngx_http_welby_geo_t       *geo;            /* welby_geoip2, or NULL */

    /* libmodsecurity (a ModSecurity *) and its rules sets, one per
     * distinct welby_waf_rules list (ngx_http_welby_waf.c) */
    void                       *waf_msc;
    ngx_array_t                *waf_sets;

    /* counters and their zone, private to ngx_http_welby_metrics.c */
    ngx_http_welby_metrics_t   *metrics;

    /* random bytes for request ids, drawn from OpenSSL a page at a time */
    u_char                     *random;
    size_t                      random_left;
} ngx_http_welby_main_conf_t;


/* the threat detectors' rules, private to their files */
typedef struct ngx_http_welby_throttle_conf_s  ngx_http_welby_throttle_conf_t;
typedef struct ngx_http_welby_enumeration_conf_s
    ngx_http_welby_enumeration_conf_t;
typedef struct ngx_http_welby_travel_conf_s  ngx_http_welby_travel_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_uint_t                  mode;

    ngx_uint_t                  token;          /* NGX_HTTP_WELBY_TOKEN_* */
    ngx_str_t                   token_name;     /* header or cookie name */
    size_t                      token_max_size;
    ngx_flag_t                  token_binding;
    ngx_str_t                   realm;
    ngx_array_t                *strip_headers;  /* ngx_str_t */

    ngx_uint_t                  tls;            /* required (1) or off */
    ngx_uint_t                  tls_min;        /* TLS1_2_VERSION, ... */
    ngx_http_welby_proxy_t     *trusted_proxy;
    ngx_uint_t                  client_cert;    /* ..._CLIENT_CERT_* */
    ngx_array_t                *client_cert_allow;
    ngx_str_t                   hsts;           /* empty: off */

    ngx_str_t                   fhir_base;      /* empty: no FHIR here */
    ngx_array_t                *fhir_system_clients;    /* ngx_str_t */
    ngx_array_t                *fhir_operations;        /* ngx_str_t */
    welby_str_t                *fhir_ops;               /* without '$' */
    size_t                      fhir_nops;
    ngx_flag_t                  fhir_search_check;
    size_t                      fhir_response_max;
    ngx_uint_t                  fhir_response_status;   /* 403 or 404 */

    size_t                      body_max_size;

    ngx_http_welby_geo_list_t  *geo_list;       /* NULL: none */
    ngx_uint_t                  geo_unknown;    /* as configured */
    ngx_flag_t                  geo_unknown_deny;   /* in force */

    ngx_array_t                *limits;         /* welby_limit rules */
    ngx_flag_t                  limit_headers;

    ngx_uint_t                  waf;            /* NGX_HTTP_WELBY_WAF_* */
    ngx_flag_t                  waf_response;
    ngx_array_t                *waf_files;      /* ngx_str_t, full names */
    void                       *waf_rules;      /* a RulesSet * */

    /* welby_auth_throttle, welby_enumeration, welby_travel; NULL: off */
    ngx_http_welby_throttle_conf_t     *throttle;
    ngx_http_welby_enumeration_conf_t  *enumeration;
    ngx_http_welby_travel_conf_t       *travel;
} ngx_http_welby_loc_conf_t;


typedef struct {
    ngx_flag_t                  certificate_check;
    ngx_flag_t                  enabled;        /* a "welby on" location */
    ngx_flag_t                  protected;      /* a welby_tls location */
    ngx_flag_t                  client_cert;    /* a welby_client_cert one */
    ngx_flag_t                  header_warned;  /* header settings warned */
} ngx_http_welby_srv_conf_t;


/* the response check's state, private to ngx_http_welby_response.c */
typedef struct ngx_http_welby_response_s  ngx_http_welby_response_t;

/* what the limits charged and found, private to ngx_http_welby_limit.c */
typedef struct ngx_http_welby_limit_ctx_s  ngx_http_welby_limit_ctx_t;

/* what the waf step found (ngx_http_welby_waf.h) */
typedef struct ngx_http_welby_waf_result_s  ngx_http_welby_waf_result_t;


typedef struct {
    ngx_str_t                   request_id;
    u_char                      request_id_data[WELBY_FHIR_ID_MAX];

    /* a valid X-Request-Id the gateway did not take, for the record */
    ngx_str_t                   client_request_id;
    u_char                      client_request_id_data[WELBY_FHIR_ID_MAX];

    /* the first "welby on" location the request reached, if any */
    ngx_http_welby_loc_conf_t  *conf;
    ngx_http_welby_loc_conf_t  *pipeline_conf;  /* where the steps ran */

    ngx_str_t                  *step;
    welby_reason_e              reason;
    ngx_uint_t                  decision;

    /* the verified token; strings live in the request pool */
    welby_claims_t              claims;
    welby_str_t                 payload;        /* decoded claims JSON */
    ngx_http_welby_issuer_t    *issuer;

    u_char                      cert_sha256[32];
    ngx_str_t                   tls_proxy;      /* the vouching proxy */
    ngx_str_t                   tls_proxy_protocol;

    unsigned                    trail:1;        /* audited, X-Request-Id */
    unsigned                    location_reached:1;
    unsigned                    id_from_header:1;
    unsigned                    id_forwarded:1;
    unsigned                    pipeline_done:1;
    unsigned                    tls_secure:1;
    unsigned                    tls_proxy_ok:1;
    unsigned                    cert_hashed:1;
    unsigned                    token_valid:1;
    unsigned                    token_cached:1;
    unsigned                    audited:1;

    /* where the pipeline resumes after a step waited */
    ngx_uint_t                  step_next;

    /* the classify step's answer under a FHIR base, or NULL */
    welby_fhir_request_t       *fhir;
    welby_fhir_input_t          fhir_in;        /* what it classified */

    /* the policy step's subject (its scopes only while the step runs)
     * and decision */
    welby_policy_subject_t      subject;
    welby_policy_result_t       policy;

    /* the request body, read once by the body step for every step */
    u_char                     *body;
    size_t                      body_len;
    json_t                     *body_json;      /* freed by a cleanup */
    welby_reason_e              body_reason;    /* why it cannot be used */
    ngx_int_t                   body_status;    /* nginx refused the read */

    unsigned                    body_wanted:1;  /* a step asked for it */
    unsigned                    body_read:1;
    unsigned                    body_waiting:1;
    unsigned                    body_json_error:1;
    unsigned                    check_response:1;
    unsigned                    waf_response:1;     /* inspect the answer */

    /* the answer held for the response check, or NULL */
    ngx_http_welby_response_t  *response;

    /* what the waf step found, or NULL when it did not run */
    ngx_http_welby_waf_result_t  *waf;

    /* the refusal's status when not the reason's (0) */
    ngx_uint_t                  refusal_status;

    /* NGX_HTTP_WELBY_DETECTED_*: what limits and detectors found */
    ngx_uint_t                  detected;

    /* ngx_http_welby_geo_lookup(): the country (two uppercase letters,
     * empty when unknown) of geo_addr (IPv4 as v4-mapped IPv6), the
     * client address it was looked up for; geo_failed: the country
     * database failed to answer for it.  ngx_http_welby_geo_asn(): the
     * ASN (0 unknown) of the same address, looked up only when asked
     * for (asn_looked_up) */
    ngx_str_t                   country;
    uint32_t                    asn;
    u_char                      country_data[2];
    u_char                      geo_addr[16];
    unsigned                    geo_looked_up:1;
    unsigned                    geo_failed:1;
    unsigned                    asn_looked_up:1;

    /* the limits' state of the request, or NULL: kept across reruns */
    ngx_http_welby_limit_ctx_t *limit;

    /* the token failure was counted: a rerun never counts it again */
    unsigned                    throttle_counted:1;
} ngx_http_welby_ctx_t;


/*
 * A pipeline step allows (WELBY_REASON_NONE) or names the reason it
 * refuses.  Steps never send responses themselves: the pipeline decides
 * between refusing and, in detect mode, only recording.
 */
typedef welby_reason_e (*ngx_http_welby_step_pt)(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/*
 * What a step returns instead of a reason when it waits (for the request
 * body): the pipeline resumes at that step, never from the start.
 */
#define NGX_HTTP_WELBY_AGAIN  ((welby_reason_e) WELBY_REASON_COUNT)


extern ngx_module_t  ngx_http_welby_module;


/* ngx_http_welby_module.c */
ngx_http_welby_ctx_t *ngx_http_welby_get_ctx(ngx_http_request_t *r);

/* ngx_http_welby_fhir.c */
welby_reason_e ngx_http_welby_classify(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
ngx_int_t ngx_http_welby_fhir_input(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf,
    welby_fhir_input_t *in);
ngx_int_t ngx_http_welby_fhir_patients(ngx_pool_t *pool,
    welby_fhir_request_t *fr, ngx_str_t *s);

/* ngx_http_welby_body.c */
welby_reason_e ngx_http_welby_body(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/* ngx_http_welby_policy.c */
welby_reason_e ngx_http_welby_policy(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
char *ngx_http_welby_fhir_base(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_fhir_response_status(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
void ngx_http_welby_policy_create_conf(ngx_http_welby_loc_conf_t *wlcf);
char *ngx_http_welby_policy_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);

/* ngx_http_welby_response.c: the answer checked against the policy */
ngx_int_t ngx_http_welby_response_init(ngx_conf_t *cf);
ngx_int_t ngx_http_welby_response_prepare(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);

/* ngx_http_welby_tls.c */
welby_reason_e ngx_http_welby_tls(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
/*
 * SHA-256 of in into out (32 bytes) with the fetched digest and the
 * worker's context (wmcf->sha256_ctx): NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_http_welby_sha256(ngx_http_welby_main_conf_t *wmcf,
    const u_char *in, size_t len, u_char *out);

ngx_int_t ngx_http_welby_client_cert_sha256(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
ngx_int_t ngx_http_welby_tls_headers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
ngx_uint_t ngx_http_welby_proxy_peer(ngx_http_request_t *r,
    ngx_http_welby_proxy_t *proxy, ngx_str_t *peer);
char *ngx_http_welby_trusted_proxy(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_client_cert_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_hsts(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_welby_tls_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);
void *ngx_http_welby_create_srv_conf(ngx_conf_t *cf);
char *ngx_http_welby_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
ngx_int_t ngx_http_welby_tls_check_servers(ngx_conf_t *cf);

/* ngx_http_welby_token.c */
char *ngx_http_welby_issuer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_welby_token_source(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_revocation(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
welby_reason_e ngx_http_welby_token(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
ngx_int_t ngx_http_welby_token_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_welby_token_init_process(ngx_cycle_t *cycle);
void ngx_http_welby_token_exit_process(ngx_cycle_t *cycle);

/* ngx_http_welby_cache.c */
char *ngx_http_welby_token_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_welby_cache_get(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, u_char *hash, ngx_http_welby_ctx_t *ctx,
    welby_jose_header_t *header, u_char *thumbprint, u_char *rules_hash);
ngx_uint_t ngx_http_welby_cache_admit(ngx_http_welby_main_conf_t *wmcf,
    u_char *hash);
ngx_uint_t ngx_http_welby_cache_seen(ngx_http_welby_main_conf_t *wmcf,
    u_char *hash);
void ngx_http_welby_cache_put(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, u_char *hash, welby_token_t *token,
    ngx_http_welby_issuer_t *issuer, const welby_key_t *key);

/* ngx_http_welby_module.c */
ngx_int_t ngx_http_welby_remove_headers(ngx_http_request_t *r,
    ngx_list_t *headers, ngx_array_t *names, ngx_str_t *prefix);
ngx_table_elt_t *ngx_http_welby_push_header(ngx_list_t *headers,
    ngx_str_t *key, ngx_str_t *value);
ngx_chain_t *ngx_http_welby_refusal(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_uint_t status);
void ngx_http_welby_hide_header(ngx_list_t *headers, ngx_str_t *name);

/* ngx_http_welby_audit.c */
char *ngx_http_welby_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_audit_query_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_audit_syslog(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_welby_audit_init(ngx_conf_t *cf,
    ngx_http_welby_main_conf_t *wmcf);
ngx_int_t ngx_http_welby_audit_init_process(ngx_cycle_t *cycle);
void ngx_http_welby_audit_exit_process(ngx_cycle_t *cycle);
void ngx_http_welby_audit(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx);

/* ngx_http_welby_alert.c */
char *ngx_http_welby_alert(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
void ngx_http_welby_alert_count_request(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_int_t upstream_status);
void ngx_http_welby_audit_alert(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_alert_t *rule, ngx_str_t *key,
    ngx_uint_t count);

/* ngx_http_welby_variables.c */
ngx_int_t ngx_http_welby_add_variables(ngx_conf_t *cf);

#endif /* NGX_HTTP_WELBY_MODULE_H */
