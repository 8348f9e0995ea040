/*
 * Prometheus metrics: the "welby_metrics" zone, the counters' call
 * points of the log phase, and the welby_metrics content handler that
 * writes the text exposition format (version 0.0.4).
 *
 * The zone holds a header, the table of named counters, and one row of
 * counters per slot; a worker adds to the row of slot ngx_worker % slots
 * with atomic adds only, and a scrape sums the rows.  The number of slots
 * is fixed by the machine (at least 32, at least one per CPU), never by
 * worker_processes: that directive may come after http{} and change at a
 * reload, and workers of an old cycle sharing a row with new ones is
 * correct with atomic adds.  So the zone keeps its size, and nginx keeps
 * it, across reloads; only a layout change (a new module version, more
 * named counters than the table holds) makes a new zone, into which the
 * running one's totals are carried over before nginx frees it.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_metrics.h"
#include "ngx_http_welby_zone.h"


/* first in the header in every version, so any version can read it */
#define NGX_HTTP_WELBY_METRICS_LAYOUT     2

#define NGX_HTTP_WELBY_METRICS_SLOTS_MIN  32

/* the table of names grows by this many: most reloads keep the zone */
#define NGX_HTTP_WELBY_METRICS_NAMED      64

/* the page is written into buffers of this size */
#define NGX_HTTP_WELBY_METRICS_CHUNK      16384


typedef struct {
    uint32_t                    layout;
    uint32_t                    fixed;      /* NGX_HTTP_WELBY_METRIC_FIXED */
    uint32_t                    slots;
    uint32_t                    named;      /* names the table holds */
    uint32_t                    stride;     /* counters in a row */
    uint32_t                    used;       /* names in the table */
    welby_prom_name_t          *names;
    ngx_atomic_t               *counters;   /* slots * stride */

    /* a new zone took over the totals: see ngx_http_welby_metrics_carry() */
    ngx_atomic_t                superseded;
} ngx_http_welby_metrics_shctx_t;


/* a carry-over to be undone if the reload fails */
typedef struct {
    ngx_cycle_t                *running;
    ngx_http_welby_metrics_shctx_t  *old;
} ngx_http_welby_metrics_carried_t;


typedef struct {
    ngx_uint_t                  family;
    ngx_str_t                   label;
} ngx_http_welby_metrics_label_t;


struct ngx_http_welby_metrics_s {
    ngx_pool_t                 *pool;       /* the configuration's */
    ngx_shm_zone_t             *zone;
    ngx_http_welby_metrics_shctx_t  *sh;
    ngx_array_t                 labels;     /* registered, in order */
    ngx_uint_t                 *column;     /* of each label in a row */
    ngx_atomic_t               *row;        /* this worker's, or NULL */
    ngx_uint_t                  slots;
    ngx_uint_t                  named;
};


/* the families of named counters */
typedef struct {
    const char                 *family;     /* as registered */
    const char                 *metric;
    const char                 *label;
    const char                 *help;
} ngx_http_welby_metrics_family_t;


/* the page as it is written: a chain of buffers */
typedef struct {
    ngx_http_request_t         *request;
    ngx_chain_t                *first;
    ngx_chain_t               **last;
    ngx_buf_t                  *buf;
    off_t                       size;
    ngx_uint_t                  failed;
} ngx_http_welby_metrics_page_t;


static ngx_http_welby_metrics_t *ngx_http_welby_metrics_conf(ngx_conf_t *cf);
static size_t ngx_http_welby_metrics_layout(ngx_uint_t slots,
    ngx_uint_t named, ngx_uint_t *stride);
static ngx_http_welby_metrics_shctx_t *ngx_http_welby_metrics_running(
    ngx_shm_zone_t *self);
static ngx_uint_t ngx_http_welby_metrics_find(
    ngx_http_welby_metrics_shctx_t *sh, ngx_http_welby_metrics_label_t *l);
static ngx_int_t ngx_http_welby_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_welby_metrics_map(ngx_http_welby_metrics_t *m,
    ngx_log_t *log);
static ngx_int_t ngx_http_welby_metrics_carry(ngx_http_welby_metrics_t *m,
    ngx_http_welby_metrics_shctx_t *old, ngx_log_t *log);
static void ngx_http_welby_metrics_uncarry(void *data);
static ngx_int_t ngx_http_welby_metrics_handler(ngx_http_request_t *r);
static void ngx_http_welby_metrics_write(ngx_http_welby_metrics_page_t *pg,
    ngx_http_welby_metrics_t *m, uint64_t *total);
static void ngx_http_welby_metrics_zones(ngx_http_welby_metrics_page_t *pg);
static void ngx_http_welby_metrics_family(ngx_http_welby_metrics_page_t *pg,
    const char *name, const char *type, const char *help);
static void ngx_http_welby_metrics_line(ngx_http_welby_metrics_page_t *pg,
    const char *name, const char *l1, ngx_str_t *v1, const char *l2,
    ngx_str_t *v2, uint64_t value, ngx_str_t *text);
static u_char *ngx_http_welby_metrics_reserve(
    ngx_http_welby_metrics_page_t *pg, size_t n);


static ngx_str_t  ngx_http_welby_metrics_zone_name =
    ngx_string("welby_metrics");


static ngx_http_welby_metrics_family_t  ngx_http_welby_metrics_families[] = {

    { "limit", "welby_rate_limited_total", "limit",
      "Requests a welby_limit rule found over its rate or quota, "
      "refused or (detect) only counted, by rule name." },

    { NULL, NULL, NULL, NULL }
};


static ngx_str_t  ngx_http_welby_metrics_decisions[] = {
    ngx_string("none"),
    ngx_string("allow"),
    ngx_string("deny"),
    ngx_string("detect")
};


/* by bit of NGX_HTTP_WELBY_DETECTED_*, as the welby_alert events */
static ngx_str_t  ngx_http_welby_metrics_detectors[] = {
    ngx_string("rate_limited"),
    ngx_string("geo_denied"),
    ngx_string("auth_throttled"),
    ngx_string("enumeration"),
    ngx_string("impossible_travel")
};


/* NGX_HTTP_WELBY_METRICS_ALERT_NAMED of them, then "other" */
static ngx_str_t  ngx_http_welby_metrics_alert_names[] = {
    ngx_string("auth_failures"),
    ngx_string("refusals"),
    ngx_string("upstream_5xx"),
    ngx_string("waf_block"),
    ngx_string("rate_limited"),
    ngx_string("geo_denied"),
    ngx_string("auth_throttled"),
    ngx_string("enumeration"),
    ngx_string("impossible_travel"),
    ngx_string("other")
};


void
ngx_http_welby_metrics_add(ngx_uint_t counter, ngx_uint_t n)
{
    ngx_uint_t                   i;
    ngx_http_welby_metrics_t    *m;
    ngx_http_welby_main_conf_t  *wmcf;

    /*
     * No request here (timers and the exit of a worker count too): the
     * worker's current cycle is its configuration.
     */

    wmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_welby_module);
    if (wmcf == NULL) {
        return;
    }

    m = wmcf->metrics;

    if (m == NULL || m->row == NULL) {
        return;
    }

    if (counter >= NGX_HTTP_WELBY_METRIC_FIXED) {
        i = counter - NGX_HTTP_WELBY_METRIC_FIXED;

        if (i >= m->labels.nelts) {
            return;
        }

        counter = m->column[i];
    }

    (void) ngx_atomic_fetch_add(&m->row[counter], (ngx_atomic_int_t) n);
}


ngx_int_t
ngx_http_welby_metrics_register(ngx_conf_t *cf, const char *family,
    ngx_str_t *label)
{
    ngx_uint_t                       f, i;
    ngx_http_welby_metrics_t        *m;
    ngx_http_welby_metrics_label_t  *l;

    for (f = 0; ngx_http_welby_metrics_families[f].family; f++) {
        if (ngx_strcmp(ngx_http_welby_metrics_families[f].family, family)
            == 0)
        {
            break;
        }
    }

    if (ngx_http_welby_metrics_families[f].family == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby: no metrics family \"%s\"", family);
        return NGX_ERROR;
    }

    if (label->len == 0 || label->len > WELBY_PROM_LABEL_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the name \"%V\" must be 1 to %d bytes long: it "
                           "is a label of %s", label,
                           WELBY_PROM_LABEL_MAX,
                           ngx_http_welby_metrics_families[f].metric);
        return NGX_ERROR;
    }

    m = ngx_http_welby_metrics_conf(cf);
    if (m == NULL) {
        return NGX_ERROR;
    }

    l = m->labels.elts;

    for (i = 0; i < m->labels.nelts; i++) {
        if (l[i].family == f && l[i].label.len == label->len
            && ngx_memcmp(l[i].label.data, label->data, label->len) == 0)
        {
            return NGX_HTTP_WELBY_METRIC_FIXED + i;
        }
    }

    l = ngx_array_push(&m->labels);
    if (l == NULL) {
        return NGX_ERROR;
    }

    l->family = f;
    l->label = *label;

    return NGX_HTTP_WELBY_METRIC_FIXED + m->labels.nelts - 1;
}


void
ngx_http_welby_metrics_lines(ngx_uint_t counter, u_char *data, size_t len)
{
    u_char      *p, *last;
    ngx_uint_t   n;

    n = 0;
    last = data + len;

    for (p = data; p < last; p++) {
        p = ngx_strlchr(p, last, '\n');

        if (p == NULL) {
            break;
        }

        n++;
    }

    if (n) {
        ngx_http_welby_metrics_add(counter, n);
    }
}


/*
 * Once per request of the trail, in the log phase: its decision and
 * reason, its answer's status class and the backend's, its duration (as
 * $request_time measures it: from the first byte read, in nginx's
 * millisecond clock), and what limits and detectors found in it.
 */
void
ngx_http_welby_metrics_request(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx)
{
    int                          k;
    ngx_uint_t                   decision, reason, status, bit;
    ngx_time_t                  *tp;
    ngx_atomic_t                *row;
    ngx_msec_int_t               ms;
    ngx_http_welby_metrics_t    *m;
    ngx_http_upstream_state_t   *state;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);
    m = wmcf->metrics;

    if (m == NULL || m->row == NULL) {
        return;
    }

    row = m->row;

    decision = ctx->decision < NGX_HTTP_WELBY_METRICS_DECISIONS
               ? ctx->decision : NGX_HTTP_WELBY_DECISION_NONE;
    reason = ctx->reason < WELBY_REASON_COUNT
             ? (ngx_uint_t) ctx->reason : WELBY_REASON_NONE;

    (void) ngx_atomic_fetch_add(&row[NGX_HTTP_WELBY_METRIC_REQUESTS
                                     + decision * WELBY_REASON_COUNT
                                     + reason], 1);

    /* the step table's name: the reason came from the policy step */

    if (reason != WELBY_REASON_NONE && ctx->step->len == 6
        && ngx_strncmp(ctx->step->data, "policy", 6) == 0)
    {
        (void) ngx_atomic_fetch_add(&row[NGX_HTTP_WELBY_METRIC_POLICY
                                         + reason], 1);
    }

    /* as the audit record has it */

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (r->connection->error && status == 0) {
        status = 499;
    }

    k = welby_prom_status_class(status);

    if (k >= 0) {
        (void) ngx_atomic_fetch_add(&row[NGX_HTTP_WELBY_METRIC_RESPONSES + k],
                                    1);
    }

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;
        state = &state[r->upstream_states->nelts - 1];

        k = welby_prom_status_class(state->status);

        if (k >= 0) {
            (void) ngx_atomic_fetch_add(
                       &row[NGX_HTTP_WELBY_METRIC_UPSTREAM + k], 1);
        }
    }

    tp = ngx_timeofday();

    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    ms = ngx_max(ms, 0);

    (void) ngx_atomic_fetch_add(&row[NGX_HTTP_WELBY_METRIC_DURATION
                                     + welby_prom_bucket((uint64_t) ms)],
                                1);
    (void) ngx_atomic_fetch_add(&row[NGX_HTTP_WELBY_METRIC_DURATION_SUM],
                                (ngx_atomic_int_t) ms);

    for (bit = 0; bit < NGX_HTTP_WELBY_METRICS_DETECTORS; bit++) {
        if (ctx->detected & ((ngx_uint_t) 1 << bit)) {
            (void) ngx_atomic_fetch_add(
                       &row[NGX_HTTP_WELBY_METRIC_DETECTIONS + bit], 1);
        }
    }
}


/*
 * The event of an alert rule by its name, "auth_failures_per_ip" as
 * "auth_failures": the address is in the record, never in a label.
 */
void
ngx_http_welby_metrics_alert(ngx_http_welby_alert_t *rule)
{
    ngx_str_t       name;
    ngx_uint_t      i;
    welby_reason_e  reason;

    name = rule->name;

    if (name.len > 7 && ngx_strncmp(name.data, "reason:", 7) == 0) {
        reason = welby_reason_find(name.data + 7, name.len - 7);

        if (reason < WELBY_REASON_COUNT) {
            ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_ALERTS
                                       + NGX_HTTP_WELBY_METRICS_ALERT_REASON
                                       + reason, 1);
            return;
        }
    }

    if (name.len > 7
        && ngx_strncmp(name.data + name.len - 7, "_per_ip", 7) == 0)
    {
        name.len -= 7;
    }

    for (i = 0; i < NGX_HTTP_WELBY_METRICS_ALERT_NAMED; i++) {
        if (name.len == ngx_http_welby_metrics_alert_names[i].len
            && ngx_strncmp(name.data,
                           ngx_http_welby_metrics_alert_names[i].data,
                           name.len)
               == 0)
        {
            break;
        }
    }

    ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_ALERTS + i, 1);
}


/* welby_metrics;  the content handler of its location */
char *
ngx_http_welby_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_welby_metrics_handler) {
        return "is duplicate";
    }

    /* the zone is made for the page even where no location says welby on */

    if (ngx_http_welby_metrics_conf(cf) == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_http_welby_metrics_handler;

    return NGX_CONF_OK;
}


static ngx_http_welby_metrics_t *
ngx_http_welby_metrics_conf(ngx_conf_t *cf)
{
    ngx_http_welby_metrics_t    *m;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

    if (wmcf->metrics) {
        return wmcf->metrics;
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_metrics_t));
    if (m == NULL) {
        return NULL;
    }

    if (ngx_array_init(&m->labels, cf->pool, 4,
                       sizeof(ngx_http_welby_metrics_label_t))
        != NGX_OK)
    {
        return NULL;
    }

    m->pool = cf->pool;

    wmcf->metrics = m;

    return m;
}


/*
 * The zone, once the http block is read: every name is registered by
 * then.  It is sized to be the running one's size whenever its table
 * holds this configuration's names too, so that nginx keeps it; when it
 * cannot (a new layout, a full table) a new zone is forced even at an
 * equal size.
 */
ngx_int_t
ngx_http_welby_metrics_init(ngx_conf_t *cf, ngx_http_welby_main_conf_t *wmcf)
{
    size_t                           size;
    ngx_uint_t                       i, more, stride, noreuse;
    ngx_shm_zone_t                  *shm_zone;
    ngx_http_welby_metrics_t        *m;
    ngx_http_welby_metrics_label_t  *l;
    ngx_http_welby_metrics_shctx_t  *running;

    m = wmcf->metrics;

    if (m == NULL) {
        if (!wmcf->used) {
            /* nothing to count, nothing to show */
            return NGX_OK;
        }

        m = ngx_http_welby_metrics_conf(cf);
        if (m == NULL) {
            return NGX_ERROR;
        }
    }

    m->slots = ngx_max((ngx_uint_t) ngx_ncpu,
                       NGX_HTTP_WELBY_METRICS_SLOTS_MIN);
    m->named = ngx_max(ngx_align(m->labels.nelts,
                                 NGX_HTTP_WELBY_METRICS_NAMED),
                       NGX_HTTP_WELBY_METRICS_NAMED);

    m->column = ngx_pcalloc(cf->pool,
                            (m->labels.nelts + 1) * sizeof(ngx_uint_t));
    if (m->column == NULL) {
        return NGX_ERROR;
    }

    noreuse = 0;
    running = ngx_http_welby_metrics_running(NULL);

    if (running) {

        if (running->layout == NGX_HTTP_WELBY_METRICS_LAYOUT
            && running->fixed == NGX_HTTP_WELBY_METRIC_FIXED
            && running->slots == m->slots)
        {
            more = 0;
            l = m->labels.elts;

            for (i = 0; i < m->labels.nelts; i++) {
                if (ngx_http_welby_metrics_find(running, &l[i])
                    == running->used)
                {
                    more++;
                }
            }

            if (running->used + more <= running->named) {
                m->named = running->named;

            } else {
                noreuse = 1;
            }

        } else {
            noreuse = 1;
        }
    }

    size = ngx_http_welby_metrics_layout(m->slots, m->named, &stride);

    /*
     * The slab pool's own header, its page descriptors and the alignment
     * of its first page, on top of the pages of the one allocation.
     */

    size = ngx_align(size, ngx_pagesize);
    size += (2 + size / ngx_pagesize * sizeof(ngx_slab_page_t)
                 / ngx_pagesize + 1)
            * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_welby_metrics_zone_name,
                                     size, &ngx_http_welby_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shared memory zone \"%V\" is welby's own",
                           &ngx_http_welby_metrics_zone_name);
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_welby_metrics_init_zone;
    shm_zone->data = m;
    shm_zone->noreuse = noreuse;

    m->zone = shm_zone;

    return NGX_OK;
}


ngx_int_t
ngx_http_welby_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_http_welby_metrics_t        *m;
    ngx_http_welby_main_conf_t      *wmcf;
    ngx_http_welby_metrics_shctx_t  *sh;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf == NULL || wmcf->metrics == NULL
        || wmcf->metrics->sh == NULL)
    {
        return NGX_OK;
    }

    m = wmcf->metrics;
    sh = m->sh;

    m->row = sh->counters + (ngx_worker % sh->slots) * sh->stride;

    return NGX_OK;
}


/* The bytes of the one allocation, and the counters in a row. */
static size_t
ngx_http_welby_metrics_layout(ngx_uint_t slots, ngx_uint_t named,
    ngx_uint_t *stride)
{
    /* a spare column after the names: see ngx_http_welby_metrics_map() */
    *stride = ngx_align(NGX_HTTP_WELBY_METRIC_FIXED + named + 1, 8);

    /* rows start on a cache line, and are whole lines: 8 counters */

    return ngx_align(sizeof(ngx_http_welby_metrics_shctx_t)
                     + named * sizeof(welby_prom_name_t), 64)
           + slots * *stride * sizeof(ngx_atomic_t);
}


/*
 * The header of the running cycle's zone (at a reload, the cycle being
 * replaced: its zones are still mapped in the master), other than self;
 * NULL at the first start and in nginx -t.
 */
static ngx_http_welby_metrics_shctx_t *
ngx_http_welby_metrics_running(ngx_shm_zone_t *self)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *zone;
    ngx_slab_pool_t  *shpool;

    part = &((ngx_cycle_t *) ngx_cycle)->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag != &ngx_http_welby_module
            || zone[i].shm.addr == NULL
            || (self && zone[i].shm.addr == self->shm.addr)
            || zone[i].shm.name.len != ngx_http_welby_metrics_zone_name.len
            || ngx_strncmp(zone[i].shm.name.data,
                           ngx_http_welby_metrics_zone_name.data,
                           ngx_http_welby_metrics_zone_name.len)
               != 0)
        {
            continue;
        }

        shpool = (ngx_slab_pool_t *) zone[i].shm.addr;

        return shpool->data;
    }
}


/* The name's place in the table, or sh->used. */
static ngx_uint_t
ngx_http_welby_metrics_find(ngx_http_welby_metrics_shctx_t *sh,
    ngx_http_welby_metrics_label_t *l)
{
    return welby_prom_name_find(sh->names, sh->used, l->family,
                                l->label.data, l->label.len);
}


static ngx_int_t
ngx_http_welby_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    u_char                          *p;
    size_t                           len;
    ngx_uint_t                       stride;
    ngx_slab_pool_t                 *shpool;
    ngx_http_welby_metrics_t        *m;
    ngx_http_welby_metrics_shctx_t  *sh, *old;

    m = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    len = ngx_http_welby_metrics_layout(m->slots, m->named, &stride);

    if (data || shm_zone->shm.exists) {
        sh = shpool->data;

        /* what ngx_http_welby_metrics_init() read, unless it changed */

        if (sh == NULL
            || sh->layout != NGX_HTTP_WELBY_METRICS_LAYOUT
            || sh->fixed != NGX_HTTP_WELBY_METRIC_FIXED
            || sh->slots != m->slots || sh->named != m->named
            || sh->stride != stride)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "welby: shared memory zone \"%V\" has another "
                          "layout than it had at configuration time",
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }

        m->sh = sh;
        ngx_http_welby_metrics_map(m, shm_zone->shm.log);

        return NGX_OK;
    }

    /*
     * noreuse made nginx create this zone; at the next reload nginx reads
     * it again, as the old zone's, when it frees the zones no new cycle
     * keeps: left on, it would unmap this zone although the next cycle
     * reuses it (its size unchanged), and the master and the new workers
     * would crash on their first touch of it.
     */
    shm_zone->noreuse = 0;

    sh = ngx_slab_calloc(shpool, len);
    if (sh == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) sh + sizeof(ngx_http_welby_metrics_shctx_t);

    sh->layout = NGX_HTTP_WELBY_METRICS_LAYOUT;
    sh->fixed = NGX_HTTP_WELBY_METRIC_FIXED;
    sh->slots = (uint32_t) m->slots;
    sh->named = (uint32_t) m->named;
    sh->stride = (uint32_t) stride;
    sh->used = 0;
    sh->superseded = 0;
    sh->names = (welby_prom_name_t *) p;
    sh->counters = (ngx_atomic_t *) ngx_align_ptr(
                       p + m->named * sizeof(welby_prom_name_t),
                       64);

    shpool->data = sh;
    m->sh = sh;

    ngx_http_welby_metrics_map(m, shm_zone->shm.log);

    old = ngx_http_welby_metrics_running(shm_zone);

    if (old) {
        return ngx_http_welby_metrics_carry(m, old, shm_zone->shm.log);
    }

    return NGX_OK;
}


/*
 * Each registered name gets its column: the one it had, or a new one.
 * The table never forgets a name while the zone lives (the workers of an
 * old cycle may still count it); when it is full, which the sizing at
 * configuration time prevents, a new name counts into the spare column,
 * which is never shown.
 */
static void
ngx_http_welby_metrics_map(ngx_http_welby_metrics_t *m, ngx_log_t *log)
{
    ngx_uint_t                       i, j;
    ngx_http_welby_metrics_label_t  *l;
    ngx_http_welby_metrics_shctx_t  *sh;

    sh = m->sh;
    l = m->labels.elts;

    for (i = 0; i < m->labels.nelts; i++) {

        j = welby_prom_name_add(sh->names, &sh->used, sh->named, l[i].family,
                                l[i].label.data, l[i].label.len);

        if (j == sh->named) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "welby: metrics zone full, \"%V\" not counted",
                          &l[i].label);
        }

        /* the spare column, when full: never shown */

        m->column[i] = NGX_HTTP_WELBY_METRIC_FIXED + j;
    }
}


/*
 * A new zone takes over the running one's totals, by counter for the
 * fixed ones of the same layout and by name for the named ones, so no
 * counter goes backwards.  What the old workers count after this, while
 * they finish their requests, is lost; so their pages would show counts
 * the new zone never gets, and a scraper that reads one of them, then a
 * new worker's, would see counters go back (a reset, to Prometheus):
 * the old zone is marked superseded, and its pages are 503 from now on.
 * Until the reload is done, a pool cleanup of the new configuration
 * takes the mark back if the reload fails (the running cycle goes on
 * with its zone then); it does nothing once the new cycle runs.
 */
static ngx_int_t
ngx_http_welby_metrics_carry(ngx_http_welby_metrics_t *m,
    ngx_http_welby_metrics_shctx_t *old, ngx_log_t *log)
{
    ngx_uint_t                         i, j, s, c;
    ngx_atomic_t                      *dst, *src;
    ngx_pool_cleanup_t                *cln;
    ngx_http_welby_metrics_label_t    *l;
    ngx_http_welby_metrics_carried_t  *carried;

    if (old->layout != NGX_HTTP_WELBY_METRICS_LAYOUT
        || old->fixed != NGX_HTTP_WELBY_METRIC_FIXED)
    {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "welby: metrics zone of another layout, counters "
                      "start from zero");
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(m->pool,
                               sizeof(ngx_http_welby_metrics_carried_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    carried = cln->data;
    carried->running = (ngx_cycle_t *) ngx_cycle;
    carried->old = old;
    cln->handler = ngx_http_welby_metrics_uncarry;

    old->superseded = 1;

    dst = m->sh->counters;

    for (s = 0; s < old->slots; s++) {
        src = old->counters + s * old->stride;

        for (c = 0; c < NGX_HTTP_WELBY_METRIC_FIXED; c++) {
            dst[c] += src[c];
        }
    }

    l = m->labels.elts;

    for (i = 0; i < m->labels.nelts; i++) {
        j = ngx_http_welby_metrics_find(old, &l[i]);

        if (j == old->used) {
            continue;
        }

        for (s = 0; s < old->slots; s++) {
            src = old->counters + s * old->stride;
            dst[m->column[i]] += src[NGX_HTTP_WELBY_METRIC_FIXED + j];
        }
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "welby: metrics zone resized, counters carried over");

    return NGX_OK;
}


/*
 * The new configuration's pool is destroyed: at once when the reload
 * failed, while the running cycle (whose zone is still mapped) is
 * ngx_cycle; much later, in another cycle, when it succeeded.
 */
static void
ngx_http_welby_metrics_uncarry(void *data)
{
    ngx_http_welby_metrics_carried_t  *carried = data;

    if ((ngx_cycle_t *) ngx_cycle == carried->running) {
        carried->old->superseded = 0;
    }
}


static ngx_int_t
ngx_http_welby_metrics_handler(ngx_http_request_t *r)
{
    uint64_t                        *total;
    ngx_int_t                        rc;
    ngx_uint_t                       s, c;
    ngx_atomic_t                    *row;
    ngx_table_elt_t                 *h;
    ngx_http_welby_metrics_t        *m;
    ngx_http_welby_main_conf_t      *wmcf;
    ngx_http_welby_metrics_page_t    pg;
    ngx_http_welby_metrics_shctx_t  *sh;

    static ngx_str_t  allow = ngx_string("Allow");
    static ngx_str_t  methods = ngx_string("GET, HEAD");
    static ngx_str_t  cache_control = ngx_string("Cache-Control");
    static ngx_str_t  no_store = ngx_string("no-store");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        h = ngx_http_welby_push_header(&r->headers_out.headers, &allow,
                                       &methods);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);
    m = wmcf->metrics;

    if (m == NULL || m->sh == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sh = m->sh;

    if (sh->superseded) {
        /* a worker of the configuration a reload replaced */
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    /* one snapshot for the page: a histogram's +Inf is its _count */

    total = ngx_pcalloc(r->pool, sh->stride * sizeof(uint64_t));
    if (total == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (s = 0; s < sh->slots; s++) {
        row = sh->counters + s * sh->stride;

        for (c = 0; c < sh->stride; c++) {
            total[c] += row[c];
        }
    }

    ngx_memzero(&pg, sizeof(ngx_http_welby_metrics_page_t));
    pg.request = r;
    pg.last = &pg.first;

    ngx_http_welby_metrics_write(&pg, m, total);
    ngx_http_welby_metrics_zones(&pg);

    if (pg.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = pg.size;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_http_welby_push_header(&r->headers_out.headers, &cache_control,
                                   &no_store)
        == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    pg.buf->last_buf = (r == r->main) ? 1 : 0;
    pg.buf->last_in_chain = 1;

    return ngx_http_output_filter(r, pg.first);
}


static void
ngx_http_welby_metrics_write(ngx_http_welby_metrics_page_t *pg,
    ngx_http_welby_metrics_t *m, uint64_t *total)
{
    u_char                            *p;
    uint64_t                           v, cumulative;
    ngx_str_t                          reason, value;
    ngx_uint_t                         d, i, f;
    const welby_reason_t              *rs;
    ngx_http_welby_metrics_label_t    *l;
    ngx_http_welby_metrics_family_t   *fam;
    u_char                             code[64], seconds[24];

    static ngx_str_t  valid[] = { ngx_string("valid"),
                                  ngx_string("invalid") };
    static ngx_str_t  lookups[] = { ngx_string("hit"), ngx_string("miss") };
    static ngx_str_t  phases[] = { ngx_string("request"),
                                   ngx_string("response") };
    static ngx_str_t  audit[] = { ngx_string("written"), ngx_string("held"),
                                  ngx_string("failed") };
    static ngx_str_t  built_for = ngx_string(NGINX_VERSION);
    static ngx_str_t  schema =
                          ngx_string(ngx_value(WELBY_AUDIT_SCHEMA));

    ngx_http_welby_metrics_family(pg, "welby_build_info", "gauge",
        "The nginx version the module was built for and the audit record "
        "schema, as labels; always 1.");
    ngx_http_welby_metrics_line(pg, "welby_build_info", "nginx_version",
                                &built_for, "audit_schema", &schema, 1,
                                NULL);

    ngx_http_welby_metrics_family(pg, "welby_requests_total", "counter",
        "Requests of the audit trail, once each in the log phase, by the "
        "gateway's decision and reason code (none when allowed); detect "
        "and none series appear with their first request.");

    for (d = 0; d < NGX_HTTP_WELBY_METRICS_DECISIONS; d++) {
        for (i = 0; i < WELBY_REASON_COUNT; i++) {
            v = total[NGX_HTTP_WELBY_METRIC_REQUESTS
                      + d * WELBY_REASON_COUNT + i];

            /*
             * Allowed and refused requests are always shown, so that a
             * rule's increase() sees the first refusal of a reason.
             */

            if (v == 0
                && !(d == NGX_HTTP_WELBY_DECISION_ALLOW
                     && i == WELBY_REASON_NONE)
                && !(d == NGX_HTTP_WELBY_DECISION_DENY
                     && i != WELBY_REASON_NONE))
            {
                continue;
            }

            rs = welby_reason_get((welby_reason_e) i);

            if (i == WELBY_REASON_NONE) {
                ngx_str_set(&reason, "none");

            } else {
                reason.data = (u_char *) rs->code;
                reason.len = ngx_strlen(rs->code);
            }

            ngx_http_welby_metrics_line(pg, "welby_requests_total",
                                        "decision",
                                        &ngx_http_welby_metrics_decisions[d],
                                        "reason", &reason, v, NULL);
        }
    }

    ngx_http_welby_metrics_family(pg, "welby_responses_total", "counter",
        "Answers to requests of the audit trail by status class, the "
        "gateway's own refusals and errors included.");

    for (i = 0; i < WELBY_PROM_CLASSES; i++) {
        value.data = (u_char *) welby_prom_class_name[i];
        value.len = 3;
        ngx_http_welby_metrics_line(pg, "welby_responses_total", "code",
                                    &value, NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_RESPONSES + i],
                                    NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_upstream_responses_total",
        "counter",
        "The backends' answers to requests of the audit trail by status "
        "class (the last backend tried).");

    for (i = 0; i < WELBY_PROM_CLASSES; i++) {
        value.data = (u_char *) welby_prom_class_name[i];
        value.len = 3;
        ngx_http_welby_metrics_line(pg, "welby_upstream_responses_total",
                                    "code", &value, NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_UPSTREAM + i],
                                    NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_request_duration_seconds",
        "histogram",
        "Time from the first byte of a request of the audit trail to its "
        "log phase, as $request_time (millisecond resolution).");

    cumulative = 0;

    for (i = 0; i <= WELBY_PROM_BUCKETS; i++) {
        cumulative += total[NGX_HTTP_WELBY_METRIC_DURATION + i];

        if (i < WELBY_PROM_BUCKETS) {
            value.data = (u_char *) welby_prom_bucket_le[i];
            value.len = ngx_strlen(welby_prom_bucket_le[i]);

        } else {
            ngx_str_set(&value, "+Inf");
        }

        ngx_http_welby_metrics_line(pg,
                                    "welby_request_duration_seconds_bucket",
                                    "le", &value, NULL, NULL, cumulative,
                                    NULL);
    }

    value.data = seconds;
    value.len = welby_prom_seconds(seconds,
                                   total[NGX_HTTP_WELBY_METRIC_DURATION_SUM]);

    ngx_http_welby_metrics_line(pg, "welby_request_duration_seconds_sum",
                                NULL, NULL, NULL, NULL, 0, &value);
    ngx_http_welby_metrics_line(pg, "welby_request_duration_seconds_count",
                                NULL, NULL, NULL, NULL, cumulative, NULL);

    ngx_http_welby_metrics_family(pg, "welby_token_verifications_total",
        "counter",
        "Access token signatures checked, by result; a token found in "
        "welby_token_cache is not checked again.");

    for (i = 0; i < 2; i++) {
        ngx_http_welby_metrics_line(pg, "welby_token_verifications_total",
                                    "result", &valid[i], NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_TOKEN_VALID
                                          + i],
                                    NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_token_cache_lookups_total",
        "counter",
        "Lookups of access tokens in welby_token_cache, by result.");

    for (i = 0; i < 2; i++) {
        ngx_http_welby_metrics_line(pg, "welby_token_cache_lookups_total",
                                    "result", &lookups[i], NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_CACHE_HIT + i],
                                    NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_policy_refusals_total",
        "counter",
        "Requests whose reason code came from the policy step (refused, "
        "or in detect mode let through), by reason; a series appears "
        "with its first request.");

    for (i = 1; i < WELBY_REASON_COUNT; i++) {
        v = total[NGX_HTTP_WELBY_METRIC_POLICY + i];

        if (v == 0) {
            continue;
        }

        rs = welby_reason_get((welby_reason_e) i);
        reason.data = (u_char *) rs->code;
        reason.len = ngx_strlen(rs->code);

        ngx_http_welby_metrics_line(pg, "welby_policy_refusals_total",
                                    "reason", &reason, NULL, NULL, v, NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_waf_blocks_total", "counter",
        "WAF interventions that refuse (welby_waf on), on the request and "
        "on the backend's answer (welby_waf_response).");

    for (i = 0; i < 2; i++) {
        ngx_http_welby_metrics_line(pg, "welby_waf_blocks_total", "phase",
                                    &phases[i], NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_WAF_REQUEST
                                          + i],
                                    NULL);
    }

    for (fam = ngx_http_welby_metrics_families, f = 0;
         fam->family;
         fam++, f++)
    {
        ngx_http_welby_metrics_family(pg, fam->metric, "counter", fam->help);

        l = m->labels.elts;

        for (i = 0; i < m->labels.nelts; i++) {
            if (l[i].family != f) {
                continue;
            }

            ngx_http_welby_metrics_line(pg, fam->metric, fam->label,
                                        &l[i].label, NULL, NULL,
                                        total[m->column[i]], NULL);
        }
    }

    ngx_http_welby_metrics_family(pg, "welby_detections_total", "counter",
        "Requests in which a limit or a detector found something, "
        "refused or (detect and alert modes) only counted, by detector.");

    for (i = 0; i < NGX_HTTP_WELBY_METRICS_DETECTORS; i++) {
        ngx_http_welby_metrics_line(pg, "welby_detections_total", "detector",
                                    &ngx_http_welby_metrics_detectors[i],
                                    NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_DETECTIONS
                                          + i],
                                    NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_alerts_total", "counter",
        "Alert records written to the audit trail, by event (a per-address "
        "rule under its event's name); reason:<code> events appear with "
        "their first alert.");

    for (i = 0; i < NGX_HTTP_WELBY_METRICS_ALERT_EVENTS; i++) {
        v = total[NGX_HTTP_WELBY_METRIC_ALERTS + i];

        if (i < NGX_HTTP_WELBY_METRICS_ALERT_NAMED) {
            value = ngx_http_welby_metrics_alert_names[i];

        } else if (v == 0) {
            continue;

        } else if (i == NGX_HTTP_WELBY_METRICS_ALERT_OTHER) {
            value = ngx_http_welby_metrics_alert_names[i];

        } else {
            rs = welby_reason_get((welby_reason_e)
                                  (i - NGX_HTTP_WELBY_METRICS_ALERT_REASON));
            p = ngx_snprintf(code, sizeof(code), "reason:%s", rs->code);
            value.data = code;
            value.len = p - code;
        }

        ngx_http_welby_metrics_line(pg, "welby_alerts_total", "event",
                                    &value, NULL, NULL, v, NULL);
    }

    ngx_http_welby_metrics_family(pg, "welby_audit_records_total", "counter",
        "Copies of audit records, one per sink: written to a file or "
        "sent, held in memory when a file failed (written later, or "
        "failed), failed (lost).");

    for (i = 0; i < 3; i++) {
        ngx_http_welby_metrics_line(pg, "welby_audit_records_total",
                                    "result", &audit[i], NULL, NULL,
                                    total[NGX_HTTP_WELBY_METRIC_AUDIT_WRITTEN
                                          + i],
                                    NULL);
    }
}


/*
 * Every shared zone of the module: the token cache, the alerts', this
 * one, and the welby_zone zones of the limits and detectors (with their
 * evictions).  A slab zone's used bytes are what is not free pages: its
 * own header and partly used pages count as used.
 */
static void
ngx_http_welby_metrics_zones(ngx_http_welby_metrics_page_t *pg)
{
    size_t            size, used;
    uint64_t          value;
    ngx_uint_t        i, pass, keyed;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *zone;
    ngx_slab_pool_t  *shpool;

    static const char  *names[] = { "welby_zone_size_bytes",
                                    "welby_zone_used_bytes",
                                    "welby_zone_evictions_total" };

    static const char  *types[] = { "gauge", "gauge", "counter" };

    static const char  *helps[] = {
        "Size of each shared memory zone of the gateway.",
        "Bytes of each shared memory zone of the gateway not free for "
        "new records.",
        "Records a welby_zone forgot, the oldest first, because it was "
        "full, since the zone was created."
    };

    for (pass = 0; pass < 3; pass++) {

        ngx_http_welby_metrics_family(pg, names[pass], types[pass],
                                      helps[pass]);

        part = &((ngx_cycle_t *) ngx_cycle)->shared_memory.part;
        zone = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                zone = part->elts;
                i = 0;
            }

            if (zone[i].shm.addr == NULL) {
                continue;
            }

            keyed = ngx_http_welby_zone_is(&zone[i]);

            if (!keyed && (zone[i].tag != &ngx_http_welby_module || pass == 2))
            {
                continue;
            }

            if (keyed) {
                ngx_http_welby_zone_usage(&zone[i], &used, &size);

            } else {
                size = zone[i].shm.size;
                shpool = (ngx_slab_pool_t *) zone[i].shm.addr;
                used = size - ngx_min(size, shpool->pfree * ngx_pagesize);
            }

            switch (pass) {
            case 0:
                value = size;
                break;
            case 1:
                value = used;
                break;
            default:
                value = ngx_http_welby_zone_evictions(&zone[i]);
            }

            ngx_http_welby_metrics_line(pg, names[pass], "zone",
                                        &zone[i].shm.name, NULL, NULL,
                                        value, NULL);
        }
    }
}


static void
ngx_http_welby_metrics_family(ngx_http_welby_metrics_page_t *pg,
    const char *name, const char *type, const char *help)
{
    u_char  *p;
    size_t   n;

    n = 2 * ngx_strlen(name) + ngx_strlen(type) + ngx_strlen(help)
        + sizeof("# HELP  \n# TYPE  \n");

    p = ngx_http_welby_metrics_reserve(pg, n);
    if (p == NULL) {
        return;
    }

    p = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);

    pg->size += p - pg->buf->last;
    pg->buf->last = p;
}


/*
 * name{l1="v1",l2="v2"} value: a label is left out with its name NULL;
 * text, when not NULL, is written in place of the value.
 */
static void
ngx_http_welby_metrics_line(ngx_http_welby_metrics_page_t *pg,
    const char *name, const char *l1, ngx_str_t *v1, const char *l2,
    ngx_str_t *v2, uint64_t value, ngx_str_t *text)
{
    u_char  *p;
    size_t   n;

    n = ngx_strlen(name) + sizeof("{=\"\",=\"\"} \n") + NGX_INT64_LEN;

    if (l1) {
        n += ngx_strlen(l1) + 5 * v1->len;
    }

    if (l2) {
        n += ngx_strlen(l2) + 5 * v2->len;
    }

    if (text) {
        n += text->len;
    }

    p = ngx_http_welby_metrics_reserve(pg, n);
    if (p == NULL) {
        return;
    }

    p = ngx_cpymem(p, name, ngx_strlen(name));

    if (l1) {
        p = ngx_sprintf(p, "{%s=\"", l1);
        p += welby_prom_escape(p, v1->data, v1->len);
        *p++ = '"';

        if (l2) {
            p = ngx_sprintf(p, ",%s=\"", l2);
            p += welby_prom_escape(p, v2->data, v2->len);
            *p++ = '"';
        }

        *p++ = '}';
    }

    if (text) {
        p = ngx_sprintf(p, " %V\n", text);

    } else {
        p = ngx_sprintf(p, " %uL\n", value);
    }

    pg->size += p - pg->buf->last;
    pg->buf->last = p;
}


static u_char *
ngx_http_welby_metrics_reserve(ngx_http_welby_metrics_page_t *pg, size_t n)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (pg->failed) {
        return NULL;
    }

    if (pg->buf && (size_t) (pg->buf->end - pg->buf->last) >= n) {
        return pg->buf->last;
    }

    b = ngx_create_temp_buf(pg->request->pool,
                            ngx_max(n, NGX_HTTP_WELBY_METRICS_CHUNK));
    if (b == NULL) {
        pg->failed = 1;
        return NULL;
    }

    cl = ngx_alloc_chain_link(pg->request->pool);
    if (cl == NULL) {
        pg->failed = 1;
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *pg->last = cl;
    pg->last = &cl->next;
    pg->buf = b;

    return b->last;
}
