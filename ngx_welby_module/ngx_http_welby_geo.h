/*
 * Geography (ngx_http_welby_geo.c): the client's country and ASN from
 * MMDB files (libmaxminddb), opened at configuration time, looked up at
 * most once per request and address, and the geo step's country lists.
 */

#ifndef NGX_HTTP_WELBY_GEO_H
#define NGX_HTTP_WELBY_GEO_H

#include "ngx_http_welby_module.h"


#define NGX_HTTP_WELBY_GEO_UNKNOWN_ALLOW  0
#define NGX_HTTP_WELBY_GEO_UNKNOWN_DENY   1


char *ngx_http_welby_geoip2(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_welby_geo_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_welby_geo_deny(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_welby_geo_create_conf(ngx_http_welby_loc_conf_t *wlcf);
char *ngx_http_welby_geo_merge(ngx_conf_t *cf,
    ngx_http_welby_loc_conf_t *prev, ngx_http_welby_loc_conf_t *conf);

/*
 * The country (ctx->country: an assigned ISO 3166-1 code, two uppercase
 * letters, empty when unknown) of the client address as nginx sees it
 * now (after the realip module), looked up once and kept in the ctx for
 * as long as the address stays the same.
 * An IPv6 address that embeds an IPv4 one (v4-mapped, 6to4, Teredo,
 * NAT64) is looked up as that IPv4 address.  NGX_OK, or NGX_DECLINED
 * when there is no welby_geoip2 (both unknown); a failed lookup is
 * unknown with ctx->geo_failed set (never NGX_ERROR): the geo step then
 * fails closed.
 */
ngx_int_t ngx_http_welby_geo_lookup(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);

/*
 * The ASN of the same address (0 when unknown, when there is no asn=
 * file or no address), also in ctx->asn: looked up in the ASN file only
 * by what reads it (the audit record, asn= throttling, $welby_asn), once
 * per address.  A failed lookup is logged and unknown.
 */
uint32_t ngx_http_welby_geo_asn(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx);

/* A worker's table of what the files answered per connection. */
ngx_int_t ngx_http_welby_geo_init_process(ngx_cycle_t *cycle,
    ngx_http_welby_main_conf_t *wmcf);

#if (NGX_HAVE_INET6)
/*
 * The IPv4 address an IPv6 address a (16 bytes) embeds as the address
 * its packets go back to (v4-mapped, 6to4, Teredo, NAT64's well-known
 * prefix), into sin: NGX_OK, or NGX_DECLINED for any other address.
 */
ngx_int_t ngx_http_welby_geo_embedded(const u_char *a,
    struct sockaddr_in *sin);
#endif

/*
 * the step: welby_geo_allow / welby_geo_deny, reason geo_denied, or
 * internal_error when the lookup failed
 */
welby_reason_e ngx_http_welby_geo(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

/* whether a subrequest into wlcf passes its list (see the step) */
ngx_uint_t ngx_http_welby_geo_covers(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);

ngx_int_t ngx_http_welby_country_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_welby_asn_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

#endif /* NGX_HTTP_WELBY_GEO_H */
