/*
 * The policy step: SMART scopes and the patient compartment over the
 * classified request, and the directives that configure them.
 */

#include "ngx_http_welby_module.h"


static ngx_conf_enum_t  ngx_http_welby_response_statuses[] = {
    { ngx_string("403"), NGX_HTTP_FORBIDDEN },
    { ngx_string("404"), NGX_HTTP_NOT_FOUND },
    { ngx_null_string, 0 }
};


welby_reason_e
ngx_http_welby_policy(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    return WELBY_REASON_NONE;
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
    ngx_conf_merge_value(conf->fhir_search_check, prev->fhir_search_check, 0);
    ngx_conf_merge_size_value(conf->fhir_response_max,
                              prev->fhir_response_max, 1024 * 1024);
    ngx_conf_merge_uint_value(conf->fhir_response_status,
                              prev->fhir_response_status, NGX_HTTP_FORBIDDEN);
    ngx_conf_merge_size_value(conf->body_max_size, prev->body_max_size,
                              1024 * 1024);

    return NGX_CONF_OK;
}
