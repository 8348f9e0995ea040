/*
 * ngx_http_welby_module: the PHR-aware security gateway.
 *
 * This file holds the directives, the configuration, the per-request
 * context and the audit trail's membership (post-read and rewrite
 * handlers), the access-phase pipeline, the refusal builder, the response
 * header filter and the log-phase handler.  Each pipeline step lives in
 * the file of its concern.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_waf.h"
#include "ngx_http_welby_throttle.h"
#include "ngx_http_welby_enumeration.h"
#include "ngx_http_welby_travel.h"
#include "ngx_http_welby_zone.h"
#include "ngx_http_welby_geo.h"
#include "ngx_http_welby_metrics.h"
#include "ngx_http_welby_limit.h"

#include <openssl/rand.h>


typedef struct {
    ngx_str_t                   name;
    ngx_http_welby_step_pt      handler;
} ngx_http_welby_step_t;


static ngx_int_t ngx_http_welby_post_read_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_welby_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_welby_access_handler(ngx_http_request_t *r);
static void ngx_http_welby_rerun(ngx_http_welby_ctx_t *ctx);
static ngx_int_t ngx_http_welby_log_handler(ngx_http_request_t *r);
static u_char *ngx_http_welby_log_error(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);
static ngx_int_t ngx_http_welby_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_welby_subrequest(ngx_http_request_t *r);
static ngx_uint_t ngx_http_welby_covers(ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf);
static ngx_uint_t ngx_http_welby_in_trail(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
static ngx_int_t ngx_http_welby_join(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);
static ngx_http_welby_ctx_t *ngx_http_welby_start(ngx_http_request_t *r);
static ngx_http_welby_ctx_t *ngx_http_welby_create_ctx(ngx_http_request_t *r);
static void ngx_http_welby_cleanup(void *data);
static ngx_int_t ngx_http_welby_request_id(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
static ngx_int_t ngx_http_welby_forward_id(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
static ngx_uint_t ngx_http_welby_header_match(ngx_table_elt_t *h,
    ngx_array_t *names, ngx_str_t *prefix);
static void ngx_http_welby_forget_header(ngx_http_request_t *r,
    ngx_table_elt_t *h);
static ngx_int_t ngx_http_welby_refuse(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);
static char *ngx_http_welby_conf_set_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_welby_strip_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_welby_merge_strip(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);
static void ngx_http_welby_header_warn(ngx_conf_t *cf);
static ngx_int_t ngx_http_welby_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_welby_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_welby_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_welby_init_process(ngx_cycle_t *cycle);
static void ngx_http_welby_exit_process(ngx_cycle_t *cycle);
static void ngx_http_welby_md_cleanup(void *data);
static void *ngx_http_welby_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_welby_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_welby_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_conf_enum_t  ngx_http_welby_modes[] = {
    { ngx_string("enforce"), NGX_HTTP_WELBY_ENFORCE },
    { ngx_string("detect"), NGX_HTTP_WELBY_DETECT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_welby_tls_modes[] = {
    { ngx_string("off"), 0 },
    { ngx_string("required"), 1 },
    { ngx_null_string, 0 }
};


/* the wire values of the versions, as SSL_version() gives them */
static ngx_conf_enum_t  ngx_http_welby_tls_versions[] = {
    { ngx_string("TLSv1.2"), 0x0303 },
    { ngx_string("TLSv1.3"), 0x0304 },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_welby_waf_modes[] = {
    { ngx_string("off"), NGX_HTTP_WELBY_WAF_OFF },
    { ngx_string("on"), NGX_HTTP_WELBY_WAF_ON },
    { ngx_string("detect"), NGX_HTTP_WELBY_WAF_DETECT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_welby_geo_unknown_modes[] = {
    { ngx_string("allow"), NGX_HTTP_WELBY_GEO_UNKNOWN_ALLOW },
    { ngx_string("deny"), NGX_HTTP_WELBY_GEO_UNKNOWN_DENY },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_welby_client_cert_modes[] = {
    { ngx_string("off"), NGX_HTTP_WELBY_CLIENT_CERT_OFF },
    { ngx_string("optional"), NGX_HTTP_WELBY_CLIENT_CERT_OPTIONAL },
    { ngx_string("required"), NGX_HTTP_WELBY_CLIENT_CERT_REQUIRED },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_welby_commands[] = {

    { ngx_string("welby"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, enable),
      NULL },

    { ngx_string("welby_mode"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_conf_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, mode),
      &ngx_http_welby_modes },

    { ngx_string("welby_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_welby_issuer,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_token_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_welby_token_cache,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_revocation"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_welby_revocation,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_audit_log"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1234,
      ngx_http_welby_audit_log,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_audit_syslog"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_welby_audit_syslog,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_alert"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_welby_alert,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_audit_node"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_welby_main_conf_t, audit_node),
      NULL },

    { ngx_string("welby_audit_query_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_audit_query_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_welby_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_welby_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, limit_headers),
      NULL },

    { ngx_string("welby_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_token_source,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_token_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, token_max_size),
      NULL },

    { ngx_string("welby_token_binding"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, token_binding),
      NULL },

    { ngx_string("welby_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, realm),
      NULL },

    { ngx_string("welby_strip_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_strip_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, strip_headers),
      NULL },

    { ngx_string("welby_tls"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_conf_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, tls),
      &ngx_http_welby_tls_modes },

    { ngx_string("welby_tls_min"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_conf_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, tls_min),
      &ngx_http_welby_tls_versions },

    { ngx_string("welby_trusted_proxy"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_trusted_proxy,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_client_cert"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_conf_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, client_cert),
      &ngx_http_welby_client_cert_modes },

    { ngx_string("welby_client_cert_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_welby_client_cert_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_fhir_base"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_fhir_base,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_fhir_system_clients"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, fhir_system_clients),
      NULL },

    { ngx_string("welby_fhir_operations"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, fhir_operations),
      NULL },

    { ngx_string("welby_fhir_search_check"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, fhir_search_check),
      NULL },

    { ngx_string("welby_fhir_response_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, fhir_response_max),
      NULL },

    { ngx_string("welby_fhir_response_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_fhir_response_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_body_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, body_max_size),
      NULL },

    { ngx_string("welby_geoip2"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_welby_geoip2,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_geo_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_geo_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_geo_deny"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_geo_deny,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_geo_unknown"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_conf_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, geo_unknown),
      &ngx_http_welby_geo_unknown_modes },

    { ngx_string("welby_waf"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_conf_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, waf),
      &ngx_http_welby_waf_modes },

    { ngx_string("welby_waf_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_welby_loc_conf_t, waf_response),
      NULL },

    { ngx_string("welby_waf_rules"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_welby_waf_rules,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_auth_throttle"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_auth_throttle,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_enumeration"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_enumeration_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_travel"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_welby_travel_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_hsts"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_welby_hsts,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_welby_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("welby_tls_certificate_check"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_welby_srv_conf_t, certificate_check),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_welby_module_ctx = {
    ngx_http_welby_preconfiguration,       /* preconfiguration */
    ngx_http_welby_init,                   /* postconfiguration */

    ngx_http_welby_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_welby_create_srv_conf,        /* create server configuration */
    ngx_http_welby_merge_srv_conf,         /* merge server configuration */

    ngx_http_welby_create_loc_conf,        /* create location configuration */
    ngx_http_welby_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_welby_module = {
    NGX_MODULE_V1,
    &ngx_http_welby_module_ctx,            /* module context */
    ngx_http_welby_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_welby_init_module,            /* init module */
    ngx_http_welby_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_welby_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * The pipeline, in the order of DESIGN.md's request path, cheapest check
 * first: classify, network, pre-auth limits, token, policy, post-auth
 * limits, WAF - except that the tls part of the network checks comes
 * first of all: nothing of a request that arrived in clear text is
 * looked at before it is refused.  Travel comes before enumeration: a
 * request refused as travel (a stolen token abroad) must add nothing to
 * its owner's set of patients.  Each step is added here, in its
 * place, by the change that builds it.  The body step reads the request
 * body for the steps after it, which may wait for it: a step's index is
 * where the pipeline resumes (ctx->step_next).
 */
static ngx_http_welby_step_t  ngx_http_welby_steps[] = {
    { ngx_string("tls"), ngx_http_welby_tls },
    { ngx_string("classify"), ngx_http_welby_classify },
    { ngx_string("geo"), ngx_http_welby_geo },
    { ngx_string("limit_address"), ngx_http_welby_limit_address },
    { ngx_string("auth_throttle"), ngx_http_welby_throttle },
    { ngx_string("token"), ngx_http_welby_token },
    { ngx_string("body"), ngx_http_welby_body },
    { ngx_string("policy"), ngx_http_welby_policy },
    { ngx_string("limit_identity"), ngx_http_welby_limit_identity },
    { ngx_string("travel"), ngx_http_welby_travel },
    { ngx_string("enumeration"), ngx_http_welby_enumeration },
    { ngx_string("waf"), ngx_http_welby_waf },
    { ngx_null_string, NULL }
};


static ngx_str_t  ngx_http_welby_request_id_header = ngx_string("X-Request-Id");
static ngx_str_t  ngx_http_welby_no_step = ngx_string("-");
static ngx_str_t  ngx_http_welby_subrequest_step = ngx_string("subrequest");

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/*
 * The earliest phase a module can act in: every request of a server with
 * a "welby on" location gets its context, its request id and the private
 * error log context here, before realip, limit_req, limit_conn and
 * client_max_body_size log anything of it.  Which location it belongs
 * to is not known yet, so nothing of the request is changed here.
 */
static ngx_int_t
ngx_http_welby_post_read_handler(ngx_http_request_t *r)
{
    ngx_http_welby_srv_conf_t  *wscf;

    wscf = ngx_http_get_module_srv_conf(r, ngx_http_welby_module);

    if (!wscf->enabled || r != r->main
        || ngx_http_welby_get_ctx(r) != NULL)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_welby_start(r) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * The audit trail's membership, decided in the rewrite phase of each
 * location the request reaches, before the rewrite module's "return" of
 * the same location: a request joins the trail in the first "welby on"
 * location it reaches, and never leaves it, whatever error_page or
 * internal redirect follows.  A request that nginx refused or redirected
 * before any location's phases ran (a 413 of client_max_body_size, a
 * server-level "return", a 400 of its request line sent to error_page)
 * belongs to its server, which has a "welby on" location.
 */
static ngx_int_t
ngx_http_welby_rewrite_handler(ngx_http_request_t *r)
{
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_srv_conf_t  *wscf;
    ngx_http_welby_loc_conf_t  *wlcf;

    wscf = ngx_http_get_module_srv_conf(r, ngx_http_welby_module);

    if (!wscf->enabled) {
        return NGX_DECLINED;
    }

    if (r != r->main) {
        return ngx_http_welby_subrequest(r);
    }

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL) {
        /* no post-read phase: nginx refused it and error_page sent it */

        ctx = ngx_http_welby_start(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (!ctx->location_reached) {
        ctx->location_reached = 1;

        if (r->internal) {
            ctx->trail = 1;
        }
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_welby_module);

    if (!wlcf->enable && !ctx->trail) {
        return NGX_DECLINED;
    }

    if (ngx_http_welby_join(r, ctx, wlcf->enable ? wlcf : NULL) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * nginx runs no access phase for a subrequest (SSI, auth_request,
 * mirror), so the steps never see one: a subrequest into a "welby on"
 * location is let through only when the main request's steps ran, let it
 * pass, and checked at least what this location asks for.  Anything else
 * (a main request in a "welby off" location, one answered by "return"
 * before its steps, one checked without a token) is refused here, in the
 * rewrite phase, before the location's own "return" or proxying.
 */
static ngx_int_t
ngx_http_welby_subrequest(ngx_http_request_t *r)
{
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_welby_module);

    if (!wlcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx && ngx_http_welby_covers(ctx, wlcf)
        && ngx_http_welby_geo_covers(r, ctx, wlcf))
    {
        return ngx_http_welby_limit_subrequest(r, ctx, wlcf);
    }

    if (ctx) {
        ctx->trail = 1;

        if (ctx->reason == WELBY_REASON_NONE) {
            ctx->reason = WELBY_REASON_SUBREQUEST_UNCHECKED;
            ctx->step = &ngx_http_welby_subrequest_step;
        }
    }

    if (wlcf->mode == NGX_HTTP_WELBY_DETECT) {
        if (ctx && ctx->decision != NGX_HTTP_WELBY_DECISION_DENY) {
            ctx->decision = NGX_HTTP_WELBY_DECISION_DETECT;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: detect id:%V step:subrequest "
                      "reason:subrequest_unchecked",
                      ctx ? &ctx->request_id : &ngx_http_welby_no_step);
        return NGX_DECLINED;
    }

    if (ctx) {
        ctx->decision = NGX_HTTP_WELBY_DECISION_DENY;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "welby: refused id:%V step:subrequest "
                  "reason:subrequest_unchecked",
                  ctx ? &ctx->request_id : &ngx_http_welby_no_step);

    return NGX_HTTP_FORBIDDEN;
}


/*
 * Whether the main request's steps checked what the location wlcf asks
 * for: the same location, or one without a FHIR base that asks for no
 * more (TLS and its version, a token, client certificates under the same
 * allowlist).
 */
static ngx_uint_t
ngx_http_welby_covers(ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_http_welby_loc_conf_t  *done;

    done = ctx->pipeline_conf;

    if (done == NULL
        || (ctx->decision != NGX_HTTP_WELBY_DECISION_ALLOW
            && ctx->decision != NGX_HTTP_WELBY_DECISION_DETECT))
    {
        return 0;
    }

    if (ctx->decision == NGX_HTTP_WELBY_DECISION_DETECT
        && wlcf->mode == NGX_HTTP_WELBY_ENFORCE)
    {
        return 0;
    }

    if (done == wlcf) {
        return 1;
    }

    /*
     * A policy decides on the request it classified, under its own FHIR
     * base: no other location's steps checked what a subrequest here
     * reaches.
     */

    if (wlcf->fhir_base.len) {
        return 0;
    }

    if (wlcf->tls && (!done->tls || done->tls_min < wlcf->tls_min)) {
        return 0;
    }

    if (wlcf->token != NGX_HTTP_WELBY_TOKEN_OFF && !ctx->token_valid) {
        return 0;
    }

    if (wlcf->client_cert != NGX_HTTP_WELBY_CLIENT_CERT_OFF
        && (done->client_cert < wlcf->client_cert
            || done->client_cert_allow != wlcf->client_cert_allow))
    {
        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_http_welby_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_step_t      *step;
    const welby_reason_t       *reason;
    ngx_http_welby_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_welby_module);

    if (!wlcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_welby_start(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->pipeline_conf != wlcf) {

        /*
         * An internal redirect (error_page, try_files, a named location,
         * X-Accel-Redirect) into another "welby on" location: what the
         * first location checked says nothing of what this one asks for
         * (a token, a policy), so its steps run here, from the first.
         */

        if (ctx->pipeline_conf) {
            ngx_http_welby_rerun(ctx);
        }

        ctx->pipeline_conf = wlcf;

    } else if (ctx->pipeline_done) {

        /*
         * A redirect into the same location: its checks of the
         * connection and the token hold, but under a FHIR base the
         * policy decided on the URI it classified, and this is another.
         */

        if (!wlcf->fhir_base.len) {
            return NGX_DECLINED;
        }

        ngx_http_welby_rerun(ctx);
    }

    /* the rewrite handler has done this, unless a module skipped it */

    if (ngx_http_welby_join(r, ctx, wlcf) != NGX_OK) {
        ctx->pipeline_done = 1;
        ctx->decision = NGX_HTTP_WELBY_DECISION_DENY;
        ctx->reason = WELBY_REASON_INTERNAL_ERROR;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: pipeline run id:%V from step %ui (%V)",
                   &ctx->request_id, ctx->step_next,
                   &ngx_http_welby_steps[ctx->step_next].name);

    for (step = &ngx_http_welby_steps[ctx->step_next];
         step->handler;
         step++)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "welby: step:%V id:%V", &step->name,
                       &ctx->request_id);

        rc = step->handler(r, ctx, wlcf);

        if (rc == NGX_HTTP_WELBY_AGAIN) {

            if (ctx->body_status) {
                /* nginx refused the body: its status, no decision */
                ctx->pipeline_done = 1;
                return ctx->body_status;
            }

            /*
             * The step waits; its handler runs the phases again, and the
             * pipeline goes on at that step, never before it.  Nothing of
             * the request may be touched after the step returned.
             */

            ctx->step_next = step - ngx_http_welby_steps;
            return NGX_DONE;
        }

        if (rc == WELBY_REASON_NONE) {
            continue;
        }

        if (step->handler == ngx_http_welby_token) {
            /* counted before the 401 is sent: the next request sees it */
            ngx_http_welby_throttle_failed(r, ctx, wlcf, rc);
        }

        if (ctx->reason == WELBY_REASON_NONE) {
            ctx->reason = rc;
            ctx->step = &step->name;
        }

        reason = welby_reason_get(rc);

        if (wlcf->mode == NGX_HTTP_WELBY_DETECT) {
            ctx->decision = NGX_HTTP_WELBY_DECISION_DETECT;

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "welby: detect id:%V step:%V reason:%s",
                          &ctx->request_id, &step->name, reason->code);
            continue;
        }

        ctx->decision = NGX_HTTP_WELBY_DECISION_DENY;
        ctx->pipeline_done = 1;

        /*
         * At notice: an error log at info also gets the lines nginx
         * itself writes with request headers in them (a duplicate
         * Authorization header, tokens and all).
         */

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "welby: refused id:%V step:%V reason:%s",
                      &ctx->request_id, &step->name, reason->code);

        /*
         * The response is sent here rather than returned as a status:
         * under "satisfy any" a status would let another access module
         * overrule the refusal, and error_page would replace the body.
         */
        ngx_http_finalize_request(r, ngx_http_welby_refuse(r, ctx));
        return NGX_DONE;
    }

    ctx->pipeline_done = 1;

    if (ctx->decision == NGX_HTTP_WELBY_DECISION_NONE) {
        ctx->decision = NGX_HTTP_WELBY_DECISION_ALLOW;
    }

    return NGX_DECLINED;
}


/*
 * What the steps of the location before an internal redirect found, all
 * but the request body (read once for the request, whatever location
 * reads it) and what the tls step caches of the connection: the steps of
 * the new location decide alone, and the audit record, written once,
 * tells their decision.
 */
static void
ngx_http_welby_rerun(ngx_http_welby_ctx_t *ctx)
{
    ctx->step = &ngx_http_welby_no_step;
    ctx->reason = WELBY_REASON_NONE;
    ctx->decision = NGX_HTTP_WELBY_DECISION_NONE;
    ctx->step_next = 0;
    ctx->pipeline_done = 0;

    ngx_memzero(&ctx->claims, sizeof(welby_claims_t));
    ctx->payload.data = NULL;
    ctx->payload.len = 0;
    ctx->issuer = NULL;
    ctx->token_valid = 0;
    ctx->token_cached = 0;

    ctx->fhir = NULL;
    ngx_memzero(&ctx->subject, sizeof(welby_policy_subject_t));
    ngx_memzero(&ctx->policy, sizeof(welby_policy_result_t));
    ctx->check_response = 0;
    ctx->waf = NULL;
    ctx->waf_response = 0;
    ctx->refusal_status = 0;

    /*
     * ctx->detected stays: what a limit or a detector of the first
     * location counted was counted, and its alerts count it once.
     */

    /*
     * A read that nginx ended (a 413 sent to error_page) is over: only a
     * body read whole counts as read.
     */

    ctx->body_wanted = 0;
    ctx->body_waiting = 0;
    ctx->body_status = 0;
}


/*
 * Exactly one audit record per request of the trail: subrequests are
 * part of their main request, and the context, found again after
 * internal redirects, remembers that the record was written.  A request
 * nginx ended before the post-read phase (a malformed request line, a
 * bad Host, headers too large, a client that left or timed out while
 * sending them) gets its context and request id here or in the header
 * filter; its header lists may never have been initialised, so nothing
 * here touches them.
 */
static ngx_int_t
ngx_http_welby_log_handler(ngx_http_request_t *r)
{
    ngx_http_welby_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_welby_get_ctx(r);

    if (!ngx_http_welby_in_trail(r, ctx)) {
        return NGX_OK;
    }

    if (ctx == NULL) {
        ctx = ngx_http_welby_start(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    if (ctx->audited) {
        return NGX_OK;
    }

    ctx->audited = 1;

    ngx_http_welby_metrics_request(r, ctx);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: log id:%V step:%V reason:%s",
                   &ctx->request_id, ctx->step,
                   welby_reason_get(ctx->reason)->code);

    ngx_http_welby_audit(r, ctx);

    return NGX_OK;
}


/*
 * The error log context of a protected request, in place of
 * ngx_http_log_error_handler(): the request line, the upstream URI and the
 * Referer carry query strings, where search parameters put health data
 * (name=, birthdate=, code=) and careless clients put tokens
 * (access_token=).  Logged instead: the request id, the method and the
 * path as sent, percent-encoded (so a decoded control character cannot
 * forge a log line), the upstream address and the Host.
 */
static u_char *
ngx_http_welby_log_error(ngx_http_request_t *r, ngx_http_request_t *sr,
    u_char *buf, size_t len)
{
    u_char                    *p, *q;
    size_t                     path_len;
    ngx_http_upstream_t       *u;
    ngx_http_welby_ctx_t      *ctx;
    ngx_http_core_srv_conf_t  *cscf;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    p = ngx_snprintf(buf, len, ", server: %V", &cscf->server_name);
    len -= p - buf;
    buf = p;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx && ctx->request_id.len) {
        p = ngx_snprintf(buf, len, ", request_id: %V", &ctx->request_id);
        len -= p - buf;
        buf = p;
    }

    if (r->unparsed_uri.len) {
        q = ngx_strlchr(r->unparsed_uri.data,
                        r->unparsed_uri.data + r->unparsed_uri.len, '?');
        path_len = q ? (size_t) (q - r->unparsed_uri.data)
                     : r->unparsed_uri.len;

        p = ngx_snprintf(buf, len, ", request: \"%V %*s%s\"",
                         &r->method_name, path_len, r->unparsed_uri.data,
                         q ? "?..." : "");
        len -= p - buf;
        buf = p;
    }

    u = sr->upstream;

    if (u && u->peer.name) {
        p = ngx_snprintf(buf, len, ", upstream: \"%V\"", u->peer.name);
        len -= p - buf;
        buf = p;
    }

    if (r->headers_in.host) {
        p = ngx_snprintf(buf, len, ", host: \"%V\"",
                         &r->headers_in.host->value);
        buf = p;
    }

    return buf;
}


/*
 * Every response of the trail carries its request id, and HSTS where the
 * tls step would send it: nginx's own error pages too, for requests it
 * refused before any phase of the module ran.
 */
static ngx_int_t
ngx_http_welby_header_filter(ngx_http_request_t *r)
{
    ngx_http_welby_ctx_t       *ctx;
    ngx_http_welby_loc_conf_t  *wlcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_welby_get_ctx(r);

    if (!ngx_http_welby_in_trail(r, ctx)) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_http_welby_start(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    wlcf = ctx->conf;

    if (wlcf == NULL) {
        wlcf = ngx_http_get_module_loc_conf(r, ngx_http_welby_module);
    }

    if (ngx_http_welby_tls_headers(r, ctx, wlcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* The backend may echo its own: the client sees ours, once. */

    ngx_http_welby_hide_header(&r->headers_out.headers,
                               &ngx_http_welby_request_id_header);

    if (ngx_http_welby_push_header(&r->headers_out.headers,
                                   &ngx_http_welby_request_id_header,
                                   &ctx->request_id)
        == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_http_welby_limit_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Whether the request belongs to the audit trail (see the rewrite
 * handler): it joined it, or it reached no location and its server has a
 * "welby on" one.
 */
static ngx_uint_t
ngx_http_welby_in_trail(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    ngx_http_welby_srv_conf_t  *wscf;

    if (ctx != NULL) {
        if (ctx->trail) {
            return 1;
        }

        if (ctx->location_reached) {
            return 0;
        }
    }

    wscf = ngx_http_get_module_srv_conf(r, ngx_http_welby_module);

    return wscf->enabled;
}


/*
 * The request joins the trail, in the "welby on" location wlcf, or
 * (wlcf NULL) by its server: from here on the backend, like the client,
 * sees only the request id of the record.
 */
static ngx_int_t
ngx_http_welby_join(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ctx->trail = 1;

    if (ctx->conf == NULL) {
        ctx->conf = wlcf;
    }

    return ngx_http_welby_forward_id(r, ctx);
}


ngx_http_welby_ctx_t *
ngx_http_welby_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_welby_ctx_t  *ctx;

    /* Access-phase handlers run for main requests only. */
    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_welby_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {

        /*
         * An internal redirect zeroes r->ctx; the context lives on in the
         * request pool's cleanup, as in the realip module.
         */

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_welby_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_welby_module);
                break;
            }
        }
    }

    return ctx;
}


/*
 * The context of a main request with its request id, and the private
 * error log context from now on.  NULL on failure (memory, RAND_bytes).
 */
static ngx_http_welby_ctx_t *
ngx_http_welby_start(ngx_http_request_t *r)
{
    ngx_http_welby_ctx_t  *ctx;

    ctx = ngx_http_welby_create_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    if (ngx_http_welby_request_id(r, ctx) != NGX_OK) {
        return NULL;
    }

    r->log_handler = ngx_http_welby_log_error;

    return ctx;
}


static ngx_http_welby_ctx_t *
ngx_http_welby_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_welby_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_welby_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_welby_ctx_t));

    ctx->step = &ngx_http_welby_no_step;

    cln->handler = ngx_http_welby_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_welby_module);

    return ctx;
}


static void
ngx_http_welby_cleanup(void *data)
{
    /*
     * Marks the context in the pool's cleanup list; the handles that
     * later steps hold (WAF transactions) are released here.
     */
    return;
}


/*
 * The request id, decided once, from the request headers alone (which a
 * request that failed on its request line does not have; reading an
 * uninitialised list is safe, pushing into one is not).  An incoming
 * X-Request-Id is the id only when it comes from a welby_trusted_proxy
 * with request_id=on, by the server's welby_trusted_proxy: the location
 * is not known yet.  Any other client gets an id of the gateway's, and
 * its own, when it is one, is kept for the record.
 */
static ngx_int_t
ngx_http_welby_request_id(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    u_char                      *p, *rnd;
    ngx_str_t                    peer;
    ngx_uint_t                   i, n;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h, *found;
    ngx_http_welby_proxy_t      *proxy;
    ngx_http_core_srv_conf_t    *cscf;
    ngx_http_welby_loc_conf_t   *slcf;
    ngx_http_welby_main_conf_t  *wmcf;

    n = 0;
    found = NULL;

    /*
     * Every spelling counts (X_Request_Id reaches a FastCGI backend as
     * HTTP_X_REQUEST_ID too), but only the exact name is taken: with one
     * of each, neither is.
     */

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (welby_header_name_eq(h[i].key.data, h[i].key.len,
                                     ngx_http_welby_request_id_header.data,
                                     ngx_http_welby_request_id_header.len))
            {
                n++;
                found = &h[i];
            }
        }
    }

    if (n == 1
        && ngx_strlchr(found->key.data, found->key.data + found->key.len,
                       '_')
           == NULL
        && welby_request_id_valid(found->value.data, found->value.len))
    {
        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        slcf = cscf->ctx->loc_conf[ngx_http_welby_module.ctx_index];
        proxy = slcf->trusted_proxy;

        if (proxy && proxy->request_id
            && ngx_http_welby_proxy_peer(r, proxy, &peer))
        {
            p = ngx_cpymem(ctx->request_id_data, found->value.data,
                           found->value.len);
            ctx->request_id.data = ctx->request_id_data;
            ctx->request_id.len = p - ctx->request_id_data;
            ctx->id_from_header = 1;
            return NGX_OK;
        }

        p = ngx_cpymem(ctx->client_request_id_data, found->value.data,
                       found->value.len);
        ctx->client_request_id.data = ctx->client_request_id_data;
        ctx->client_request_id.len = p - ctx->client_request_id_data;
    }

    /*
     * RAND_bytes() costs about as much per call as per page (it checks
     * for a fork each time), so a worker draws a page and hands it out.
     */

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    if (wmcf->random_left < NGX_HTTP_WELBY_REQUEST_ID_BYTES) {

        if (wmcf->random == NULL) {
            wmcf->random = ngx_palloc(ngx_cycle->pool,
                                      NGX_HTTP_WELBY_RANDOM_BATCH);
            if (wmcf->random == NULL) {
                return NGX_ERROR;
            }
        }

        if (RAND_bytes(wmcf->random, NGX_HTTP_WELBY_RANDOM_BATCH) != 1) {
            ngx_ssl_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "welby: RAND_bytes() failed");
            return NGX_ERROR;
        }

        wmcf->random_left = NGX_HTTP_WELBY_RANDOM_BATCH;
    }

    wmcf->random_left -= NGX_HTTP_WELBY_REQUEST_ID_BYTES;
    rnd = wmcf->random + wmcf->random_left;

    p = ngx_hex_dump(ctx->request_id_data, rnd,
                     NGX_HTTP_WELBY_REQUEST_ID_BYTES);

    /* used once */
    ngx_memzero(rnd, NGX_HTTP_WELBY_REQUEST_ID_BYTES);
    ctx->request_id.data = ctx->request_id_data;
    ctx->request_id.len = p - ctx->request_id_data;

    if (n) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "welby: client X-Request-Id replaced (%ui)", n);
    }

    return NGX_OK;
}


/*
 * The backend receives exactly one X-Request-Id, the record's: a client's
 * own ones leave the request.  Only in a phase handler of the trail,
 * never in the log phase, when the backend is done.
 */
static ngx_int_t
ngx_http_welby_forward_id(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    ngx_array_t       names;
    ngx_table_elt_t  *h;

    if (ctx->id_forwarded || ctx->id_from_header) {
        return NGX_OK;
    }

    ctx->id_forwarded = 1;

    if (r->headers_in.headers.nalloc == 0) {

        /*
         * HTTP/0.9, or a request line nginx refused and error_page sent
         * here: nginx never made the list.
         */

        if (ngx_list_init(&r->headers_in.headers, r->pool, 2,
                          sizeof(ngx_table_elt_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    names.elts = &ngx_http_welby_request_id_header;
    names.nelts = 1;

    if (ngx_http_welby_remove_headers(r, &r->headers_in.headers, &names,
                                      NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    h = ngx_http_welby_push_header(&r->headers_in.headers,
                                   &ngx_http_welby_request_id_header,
                                   &ctx->request_id);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->lowcase_key = (u_char *) "x-request-id";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);

    return NGX_OK;
}


/*
 * Rebuilds a request header list without the headers named in names or
 * starting with prefix (either may be NULL), compared as a FastCGI
 * backend would see them (welby_header_name_eq()).  The proxy module
 * sends every element of the list whatever its hash, so a request header
 * has to leave the list; the copy is one part long.  A list with nothing
 * to remove is left as it is.
 */
ngx_int_t
ngx_http_welby_remove_headers(ngx_http_request_t *r, ngx_list_t *headers,
    ngx_array_t *names, ngx_str_t *prefix)
{
    ngx_uint_t        i, n, found;
    ngx_list_t        copy;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *e;

    n = 0;
    found = 0;

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            found += ngx_http_welby_header_match(&h[i], names, prefix);
        }

        n += part->nelts;
    }

    if (found == 0) {
        return NGX_OK;
    }

    if (ngx_list_init(&copy, r->pool, n, sizeof(ngx_table_elt_t)) != NGX_OK) {
        return NGX_ERROR;
    }

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (ngx_http_welby_header_match(&h[i], names, prefix)) {

                if (headers == &r->headers_in.headers) {
                    ngx_http_welby_forget_header(r, &h[i]);
                }

                continue;
            }

            e = ngx_list_push(&copy);
            if (e == NULL) {
                return NGX_ERROR;
            }

            *e = h[i];
        }
    }

    *headers = copy;

    if (copy.last == &copy.part) {
        headers->last = &headers->part;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_welby_header_match(ngx_table_elt_t *h, ngx_array_t *names,
    ngx_str_t *prefix)
{
    ngx_str_t   *name;
    ngx_uint_t   i;

    if (prefix
        && welby_header_name_prefix(h->key.data, h->key.len, prefix->data,
                                    prefix->len))
    {
        return 1;
    }

    if (names == NULL) {
        return 0;
    }

    name = names->elts;

    for (i = 0; i < names->nelts; i++) {
        if (welby_header_name_eq(h->key.data, h->key.len, name[i].data,
                                 name[i].len))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * nginx also points at the known request headers (ngx_http_headers_in[])
 * from fields of r->headers_in, and $http_x_forwarded_for,
 * $proxy_add_x_forwarded_for, $cookie_*, the range and not-modified
 * filters read the field, not the list: a removed header's field is
 * emptied, found the way nginx found it when it set it.  Every header of
 * that name leaves the list (the match depends on the name only), so the
 * whole field goes.
 */
static void
ngx_http_welby_forget_header(ngx_http_request_t *r, ngx_table_elt_t *h)
{
    u_char                     *field;
    ngx_http_header_t          *hh;
    ngx_http_core_main_conf_t  *cmcf;

    if (h->lowcase_key == NULL) {
        return;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    hh = ngx_hash_find(&cmcf->headers_in_hash, h->hash, h->lowcase_key,
                       h->key.len);
    if (hh == NULL) {
        return;
    }

    field = (u_char *) &r->headers_in + hh->offset;

#if (nginx_version < 1023000)

    /* before 1.23.0 the repeatable ones are arrays of pointers */

    if (hh->offset == offsetof(ngx_http_headers_in_t, cookies)
#if (NGX_HTTP_X_FORWARDED_FOR)
        || hh->offset == offsetof(ngx_http_headers_in_t, x_forwarded_for)
#endif
       )
    {
        ((ngx_array_t *) field)->nelts = 0;
        return;
    }

#endif

    /* since 1.23.0 every field heads a list linked by ->next */

    *(ngx_table_elt_t **) field = NULL;
}


/* The response header filter skips elements whose hash is 0. */
void
ngx_http_welby_hide_header(ngx_list_t *headers, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &headers->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == name->len
                && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
            {
                h[i].hash = 0;
            }
        }
    }
}


ngx_table_elt_t *
ngx_http_welby_push_header(ngx_list_t *headers, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return h;
}


static ngx_int_t
ngx_http_welby_refuse(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    ngx_int_t     rc;
    ngx_chain_t  *out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    out = ngx_http_welby_refusal(r, ctx, ctx->refusal_status);
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/*
 * The refusal of ctx->reason, with status instead of the reason's own
 * when status is not 0: the response headers set in r->headers_out (on
 * top of whatever is there: a caller replacing an answer clears it
 * first), and the OperationOutcome returned as a chain ending in
 * last_buf.  NULL on failure.
 */
ngx_chain_t *
ngx_http_welby_refusal(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_uint_t status)
{
    size_t                      len;
    ngx_buf_t                  *b;
    ngx_str_t                   value, realm;
    ngx_chain_t                *out;
    const welby_reason_t       *reason;
    ngx_http_welby_loc_conf_t  *wlcf;

    static ngx_str_t  cache_control = ngx_string("Cache-Control");
    static ngx_str_t  no_store = ngx_string("no-store");
    static ngx_str_t  allow = ngx_string("Allow");
    static ngx_str_t  methods =
        ngx_string("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    static ngx_str_t  www_authenticate = ngx_string("WWW-Authenticate");

    reason = welby_reason_get(ctx->reason);
    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_welby_module);
    realm = wlcf->realm;

    if (status == 0) {
        status = reason->status;
    }

    len = welby_outcome_json(NULL, reason, ctx->request_id.data,
                             ctx->request_id.len);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    b->last += welby_outcome_json(b->last, reason, ctx->request_id.data,
                                  ctx->request_id.len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    out = ngx_alloc_chain_link(r->pool);
    if (out == NULL) {
        return NULL;
    }

    out->buf = b;
    out->next = NULL;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/fhir+json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_welby_push_header(&r->headers_out.headers, &cache_control,
                                   &no_store)
        == NULL)
    {
        return NULL;
    }

    if (status == NGX_HTTP_NOT_ALLOWED
        && ngx_http_welby_push_header(&r->headers_out.headers, &allow,
                                      &methods)
           == NULL)
    {
        return NULL;
    }

    if (status == NGX_HTTP_UNAUTHORIZED || reason->bearer_error) {

        /* RFC 6750 section 3: a challenge on every 401, an error code on
         * the refusals the token itself caused. */

        value.len = welby_www_authenticate(NULL, realm.data, realm.len,
                                           reason->bearer_error,
                                           reason->bearer_error
                                           ? reason->text : NULL, NULL);
        value.data = ngx_pnalloc(r->pool, value.len);
        if (value.data == NULL) {
            return NULL;
        }

        (void) welby_www_authenticate(value.data, realm.data, realm.len,
                                      reason->bearer_error,
                                      reason->bearer_error
                                      ? reason->text : NULL, NULL);

        if (ngx_http_welby_push_header(&r->headers_out.headers,
                                       &www_authenticate, &value)
            == NULL)
        {
            return NULL;
        }
    }

    return out;
}


/*
 * ngx_conf_set_enum_slot() with a message that names the directive and
 * the values it takes, as the flag slot's does.
 */
static char *
ngx_http_welby_conf_set_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char           *last;
    ngx_str_t        *value;
    ngx_uint_t       *np, i;
    ngx_conf_enum_t  *e;
    u_char            buf[256];

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len != 0; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            *np = e[i].value;
            return NGX_CONF_OK;
        }
    }

    last = buf;

    for (i = 0; e[i].name.len != 0; i++) {
        last = ngx_slprintf(last, buf + sizeof(buf), "%s\"%V\"",
                            i == 0 ? "" : (e[i + 1].name.len ? ", " : " or "),
                            &e[i].name);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be %*s", &value[1], &cmd->name,
                       last - buf, buf);

    return NGX_CONF_ERROR;
}


/*
 * welby_strip_header <name> ...: request headers the backend must not
 * take from the client.  nginx has already acted on the Host and the
 * message framing (Content-Length, Transfer-Encoding) by then, and goes
 * on relying on them: removing them would leave the backend reading the
 * request another way.
 */
static char *
ngx_http_welby_strip_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_loc_conf_t *wlcf = conf;

    u_char       c;
    ngx_str_t   *value, *name;
    ngx_uint_t   i, k;

    static ngx_str_t  kept[] = {
        ngx_string("Host"),
        ngx_string("Content-Length"),
        ngx_string("Transfer-Encoding"),
        ngx_null_string
    };

    if (wlcf->strip_headers == NULL) {
        wlcf->strip_headers = ngx_array_create(cf->pool, 4,
                                               sizeof(ngx_str_t));
        if (wlcf->strip_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* a quoted "A B" would silently match nothing */

        for (k = 0; k < value[i].len; k++) {
            c = value[i].data[k];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                  || (c >= '0' && c <= '9')
                  || (c != '\0' && ngx_strchr("!#$%&'*+-.^_`|~", c))))
            {
                break;
            }
        }

        if (value[i].len == 0 || k < value[i].len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        for (k = 0; kept[k].len; k++) {
            if (welby_header_name_eq(value[i].data, value[i].len,
                                     kept[k].data, kept[k].len))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" cannot be stripped: nginx "
                                   "has already used it to read the "
                                   "request", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        name = ngx_array_push(wlcf->strip_headers);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        *name = value[i];
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_welby_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_welby_add_variables(cf);
}


static ngx_int_t
ngx_http_welby_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt         *h;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

    if (ngx_http_welby_audit_init(cf, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_welby_zone_check(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_welby_metrics_init(cf, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!wmcf->used) {
        /* No location says "welby on": stay out of every request. */
        return NGX_OK;
    }

    if (ngx_http_welby_tls_check_servers(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * Handlers of a phase run in the reverse order of their registration,
     * and the realip and rewrite modules registered theirs before ours:
     * the post-read handler sees the TCP peer before realip replaces it,
     * and the rewrite handler runs before a "return" of the location.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_welby_post_read_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_welby_rewrite_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_welby_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_welby_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_welby_header_filter;

    /*
     * Registered after the filter above, so it runs before it: a held
     * or replaced answer gets its request id and HSTS when it is sent.
     */

    return ngx_http_welby_response_init(cf);
}


/*
 * Runs once the whole configuration is in, the core module's included:
 * only then is the user the workers will run as known.
 */
static ngx_int_t
ngx_http_welby_init_module(ngx_cycle_t *cycle)
{
    return ngx_http_welby_token_init_module(cycle);
}


static ngx_int_t
ngx_http_welby_init_process(ngx_cycle_t *cycle)
{
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf) {
        /*
         * A worker's own digest context, kept between requests:
         * EVP_Digest() allocates, initialises and frees one per call.
         */

        wmcf->sha256_ctx = EVP_MD_CTX_new();
        if (wmcf->sha256_ctx == NULL) {
            ngx_ssl_error(NGX_LOG_EMERG, cycle->log, 0,
                          "welby: EVP_MD_CTX_new() failed");
            return NGX_ERROR;
        }

        if (ngx_http_welby_geo_init_process(cycle, wmcf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_welby_audit_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_welby_metrics_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_welby_token_init_process(cycle);
}


ngx_int_t
ngx_http_welby_sha256(ngx_http_welby_main_conf_t *wmcf, const u_char *in,
    size_t len, u_char *out)
{
    EVP_MD_CTX  *md;

    md = wmcf->sha256_ctx;

    if (md == NULL) {
        /* outside a worker (no init_process): a context of its own */
        return EVP_Digest(in, len, out, NULL, wmcf->sha256, NULL) == 1
               ? NGX_OK : NGX_ERROR;
    }

    if (EVP_DigestInit_ex(md, wmcf->sha256, NULL) != 1
        || EVP_DigestUpdate(md, in, len) != 1
        || EVP_DigestFinal_ex(md, out, NULL) != 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_welby_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_welby_main_conf_t  *wmcf;

    ngx_http_welby_audit_exit_process(cycle);
    ngx_http_welby_token_exit_process(cycle);

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf) {
        EVP_MD_CTX_free(wmcf->sha256_ctx);
        wmcf->sha256_ctx = NULL;
    }
}


static void
ngx_http_welby_md_cleanup(void *data)
{
    EVP_MD_free(data);
}


static void *
ngx_http_welby_create_main_conf(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t          *cln;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     wmcf->used = 0;
     *     wmcf->token_cache = NULL;
     *     wmcf->revocation = NULL;
     *     wmcf->watch_interval = 0;
     */

    if (ngx_array_init(&wmcf->issuers, cf->pool, 2,
                       sizeof(ngx_http_welby_issuer_t))
        != NGX_OK)
    {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    /* an implicit fetch on every request would cost a lock and a lookup */

    wmcf->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (wmcf->sha256 == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                      "welby: EVP_MD_fetch(\"SHA256\") failed");
        return NULL;
    }

    cln->handler = ngx_http_welby_md_cleanup;
    cln->data = wmcf->sha256;

    wmcf->realip_remote_addr = NGX_CONF_UNSET;

    return wmcf;
}


static void *
ngx_http_welby_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_welby_loc_conf_t  *wlcf;

    wlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_loc_conf_t));
    if (wlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     wlcf->token_name = { 0, NULL };
     *     wlcf->realm = { 0, NULL };
     *     wlcf->strip_headers = NULL;
     */

    wlcf->enable = NGX_CONF_UNSET;
    wlcf->mode = NGX_CONF_UNSET_UINT;
    wlcf->token = NGX_CONF_UNSET_UINT;
    wlcf->token_max_size = NGX_CONF_UNSET_SIZE;
    wlcf->token_binding = NGX_CONF_UNSET;
    wlcf->tls = NGX_CONF_UNSET_UINT;
    wlcf->tls_min = NGX_CONF_UNSET_UINT;
    wlcf->trusted_proxy = NGX_CONF_UNSET_PTR;
    wlcf->client_cert = NGX_CONF_UNSET_UINT;

    ngx_http_welby_policy_create_conf(wlcf);
    ngx_http_welby_waf_create_conf(wlcf);
    ngx_http_welby_geo_create_conf(wlcf);
    ngx_http_welby_limit_create_conf(wlcf);

    wlcf->throttle = NGX_CONF_UNSET_PTR;
    wlcf->enumeration = NGX_CONF_UNSET_PTR;
    wlcf->travel = NGX_CONF_UNSET_PTR;

    return wlcf;
}


static char *
ngx_http_welby_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_welby_loc_conf_t *prev = parent;
    ngx_http_welby_loc_conf_t *conf = child;

    ngx_http_welby_srv_conf_t   *wscf;
    ngx_http_welby_main_conf_t  *wmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->mode, prev->mode, NGX_HTTP_WELBY_ENFORCE);

    if (conf->token == NGX_CONF_UNSET_UINT) {
        conf->token = prev->token;
        conf->token_name = prev->token_name;
    }

    if (conf->token == NGX_CONF_UNSET_UINT) {
        conf->token = NGX_HTTP_WELBY_TOKEN_BEARER;
    }

    ngx_conf_merge_size_value(conf->token_max_size, prev->token_max_size,
                              8192);
    ngx_conf_merge_value(conf->token_binding, prev->token_binding, 0);
    ngx_conf_merge_str_value(conf->realm, prev->realm, "welby");

    ngx_conf_merge_ptr_value(conf->enumeration, prev->enumeration, NULL);

    if (ngx_http_welby_throttle_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_http_welby_travel_merge(cf, prev, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_welby_merge_strip(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_welby_waf_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_welby_geo_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_welby_limit_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_welby_policy_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->realm.len == 0
        || ngx_strlchr(conf->realm.data, conf->realm.data + conf->realm.len,
                       '"')
        || ngx_strlchr(conf->realm.data, conf->realm.data + conf->realm.len,
                       '\\'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid welby_realm \"%V\", it must be "
                           "non-empty without '\"' or '\\'", &conf->realm);
        return NGX_CONF_ERROR;
    }

    if (conf->enable) {
        wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);
        wmcf->used = 1;

        ngx_http_welby_header_warn(cf);

        /* as ngx_http_welby_tls_merge() marks the server protected */

        wscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_welby_module);
        wscf->enabled = 1;
    }

    return ngx_http_welby_tls_merge(cf, prev, conf);
}


/*
 * A list of headers the backend must not take from the client only
 * grows towards the locations: a level's own list is added to what it
 * inherits (parent first), never put in its place.
 */
static char *
ngx_http_welby_merge_strip(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_str_t    *name, *own, *p;
    ngx_uint_t    i, k;
    ngx_array_t  *all;

    if (conf->strip_headers == NULL) {
        conf->strip_headers = prev->strip_headers;
        return NGX_CONF_OK;
    }

    if (prev->strip_headers == NULL || prev->strip_headers->nelts == 0) {
        return NGX_CONF_OK;
    }

    all = ngx_array_create(cf->pool,
                           prev->strip_headers->nelts
                           + conf->strip_headers->nelts,
                           sizeof(ngx_str_t));
    if (all == NULL) {
        return NGX_CONF_ERROR;
    }

    name = ngx_array_push_n(all, prev->strip_headers->nelts);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(name, prev->strip_headers->elts,
               prev->strip_headers->nelts * sizeof(ngx_str_t));

    own = conf->strip_headers->elts;

    for (i = 0; i < conf->strip_headers->nelts; i++) {

        p = all->elts;

        for (k = 0; k < all->nelts; k++) {
            if (welby_header_name_eq(p[k].data, p[k].len, own[i].data,
                                     own[i].len))
            {
                break;
            }
        }

        if (k < all->nelts) {
            continue;
        }

        name = ngx_array_push(all);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        *name = own[i];
    }

    conf->strip_headers = all;

    return NGX_CONF_OK;
}


/*
 * Header names that nginx lets through where a location is protected:
 * once per server, with the server's place in the configuration.  The
 * headers the gateway removes go in every spelling either way; these
 * settings let other names with '_' or with other bytes reach backends.
 */
static void
ngx_http_welby_header_warn(ngx_conf_t *cf)
{
    ngx_http_core_srv_conf_t   *cscf;
    ngx_http_welby_srv_conf_t  *wscf;

    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);
    wscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_welby_module);

    if (wscf->header_warned) {
        return;
    }

    if (cscf->underscores_in_headers) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "welby: server \"%V\" in %s:%ui has protected "
                      "locations and underscores_in_headers on: header "
                      "names with '_' reach backends, to FastCGI, uwsgi "
                      "and SCGI as the same names as with '-'; the "
                      "gateway removes X-Welby-* and welby_strip_header "
                      "names in both spellings, nothing else",
                      &cscf->server_name, cscf->file_name, cscf->line);
        wscf->header_warned = 1;
    }

    if (!cscf->ignore_invalid_headers) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "welby: server \"%V\" in %s:%ui has protected "
                      "locations and ignore_invalid_headers off: header "
                      "names with bytes other than letters, digits and "
                      "'-' reach backends as they are",
                      &cscf->server_name, cscf->file_name, cscf->line);
        wscf->header_warned = 1;
    }
}
