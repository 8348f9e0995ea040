/*
 * The audit trail: one record per request of a "welby on" location,
 * written in the log phase to every welby_audit_log file.  The record and
 * its hash chain are built by welby_audit.c (no nginx types); this file
 * gathers the fields, buffers, writes, and never drops a record silently.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_waf.h"
#include "ngx_http_welby_geo.h"
#include "ngx_http_welby_metrics.h"
#include "ngx_http_welby_limit.h"

#include <openssl/ssl.h>


/* records kept in memory while a file cannot be written, at most */
#define NGX_HTTP_WELBY_AUDIT_BACKLOG  (16 * 1024 * 1024)

/* a failing file is reported at most this often */
#define NGX_HTTP_WELBY_AUDIT_ALERT    60


typedef struct {
    ngx_str_t                   path;
    ngx_open_file_t            *file;

    u_char                     *start;      /* the buffer */
    u_char                     *pos;
    u_char                     *last;
    ngx_msec_t                  flush;
    ngx_event_t                *event;
    ngx_uint_t                  fhir;       /* format=fhir: AuditEvent */

    /*
     * The worker's chain and the file it lives in.  fd is the descriptor
     * last written, NGX_INVALID_FILE after a reopen until the next record
     * looks at the file again: a reopen that kept the same file (nothing
     * renamed it, or nginx failed to open the new one) goes on with the
     * chain, since a new chain in the middle of a stream reads as a
     * broken one.  prev and prev_seq outlive a change of file (chained
     * 0, written 1): the new file's first line names them, so that the
     * old file's end can be checked against it.
     */
    ngx_fd_t                    fd;
    dev_t                       dev;
    ngx_file_uniq_t             uniq;
    u_char                      prev[WELBY_AUDIT_HEX_LEN + 1];
    int64_t                     prev_seq;
    ngx_uint_t                  chained;
    ngx_uint_t                  written;

    /* lines a failing file could not take yet, oldest first */
    u_char                     *backlog;
    size_t                      backlog_len;
    ngx_uint_t                  failures;
    ngx_uint_t                  lost;
    time_t                      alerted;
} ngx_http_welby_audit_sink_t;


typedef struct {
    ngx_str_t                   name;       /* as configured, for logs */
    ngx_addr_t                  server;
    ngx_socket_t                fd;         /* per worker, opened lazily */
    ngx_uint_t                  facility;
    ngx_uint_t                  pen;
    ngx_str_t                   tag;        /* NUL-terminated */
    ngx_uint_t                  failures;
    time_t                      alerted;

    /*
     * transport=tcp: RFC 6587 octet counting over a connection the worker
     * keeps, written from a bounded queue by nginx's event loop, so a slow
     * or absent collector never blocks a request.
     */
    ngx_uint_t                  tcp;
    ngx_peer_connection_t       peer;
    ngx_event_t                 retry;
    u_char                     *queue;
    size_t                      queued;
    size_t                      partial;    /* left of a half-sent frame */
    ngx_uint_t                  dropped;
} ngx_http_welby_audit_syslog_t;


/* what a TCP sink queues while its collector is slow or away, at most */
#define NGX_HTTP_WELBY_AUDIT_TCP_QUEUE  (1024 * 1024)


static ngx_conf_enum_t  ngx_http_welby_audit_facilities[] = {
    { ngx_string("kern"), 0 },
    { ngx_string("user"), 1 },
    { ngx_string("daemon"), 3 },
    { ngx_string("auth"), 4 },
    { ngx_string("authpriv"), 10 },
    { ngx_string("audit"), 13 },
    { ngx_string("local0"), 16 },
    { ngx_string("local1"), 17 },
    { ngx_string("local2"), 18 },
    { ngx_string("local3"), 19 },
    { ngx_string("local4"), 20 },
    { ngx_string("local5"), 21 },
    { ngx_string("local6"), 22 },
    { ngx_string("local7"), 23 },
    { ngx_null_string, 0 }
};


static void ngx_http_welby_audit_send(ngx_http_welby_audit_syslog_t *sl,
    welby_audit_record_t *rec, ngx_str_t *node, ngx_log_t *log);
static void ngx_http_welby_audit_tcp_queue(ngx_http_welby_audit_syslog_t *sl,
    u_char *msg, size_t len, ngx_log_t *log);
static void ngx_http_welby_audit_tcp_connect(ngx_http_welby_audit_syslog_t *sl);
static void ngx_http_welby_audit_tcp_retry(ngx_event_t *ev);
static void ngx_http_welby_audit_tcp_write(ngx_event_t *wev);
static void ngx_http_welby_audit_tcp_read(ngx_event_t *rev);
static void ngx_http_welby_audit_tcp_close(ngx_http_welby_audit_syslog_t *sl,
    ngx_uint_t retry);
static void ngx_http_welby_audit_write_record(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, welby_audit_record_t *rec);
static void ngx_http_welby_audit_fill(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_main_conf_t *wmcf,
    welby_audit_record_t *rec);
static void ngx_http_welby_audit_tls(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, welby_audit_record_t *rec);
static void ngx_http_welby_audit_fhir(ngx_http_request_t *r,
    welby_fhir_request_t *fr, welby_audit_record_t *rec);
static void ngx_http_welby_audit_emit(ngx_http_welby_audit_sink_t *sink,
    welby_audit_record_t *rec, ngx_log_t *log);
static size_t ngx_http_welby_audit_format(ngx_http_welby_audit_sink_t *sink,
    u_char *dst, size_t cap, welby_audit_record_t *rec, u_char *prev,
    u_char *next);
static ngx_int_t ngx_http_welby_audit_write(
    ngx_http_welby_audit_sink_t *sink, u_char *data, size_t len,
    ngx_log_t *log);
static void ngx_http_welby_audit_keep(ngx_http_welby_audit_sink_t *sink,
    u_char *data, size_t len, ngx_log_t *log);
static void ngx_http_welby_audit_flush(ngx_open_file_t *file, ngx_log_t *log);
static void ngx_http_welby_audit_flush_reopen(ngx_open_file_t *file,
    ngx_log_t *log);
static void ngx_http_welby_audit_flush_handler(ngx_event_t *ev);
static void ngx_http_welby_audit_reopened(
    ngx_http_welby_audit_sink_t *sink);
static void ngx_http_welby_audit_create(ngx_http_welby_audit_sink_t *sink,
    ngx_log_t *log);
static ngx_uint_t ngx_http_welby_audit_same_file(
    ngx_http_welby_audit_sink_t *sink, ngx_fd_t fd);


/* welby_audit_log <file> [format=json|fhir] [buffer=<size>] [flush=<time>] */
char *
ngx_http_welby_audit_log(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    ssize_t                       size;
    ngx_fd_t                      fd;
    ngx_str_t                    *value, s;
    ngx_msec_t                    flush;
    ngx_uint_t                    i, mode;
    ngx_file_info_t               fi;
    ngx_http_welby_audit_sink_t  *sink, *other;

    value = cf->args->elts;

    if (wmcf->audit_sinks == NULL) {
        wmcf->audit_sinks = ngx_array_create(cf->pool, 2,
                                         sizeof(ngx_http_welby_audit_sink_t));
        if (wmcf->audit_sinks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    sink = ngx_array_push(wmcf->audit_sinks);
    if (sink == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(sink, sizeof(ngx_http_welby_audit_sink_t));

    sink->path = value[1];

    if (ngx_conf_full_name(cf->cycle, &sink->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    other = wmcf->audit_sinks->elts;

    for (i = 0; i < wmcf->audit_sinks->nelts - 1; i++) {
        if (other[i].path.len == sink->path.len
            && ngx_strncmp(other[i].path.data, sink->path.data,
                           sink->path.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate welby_audit_log \"%V\"",
                               &sink->path);
            return NGX_CONF_ERROR;
        }
    }

    size = 0;
    flush = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "buffer=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || size < 4096) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid buffer size \"%V\", it must be "
                                   "at least 4k", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "format=json") == 0) {
            continue;
        }

        if (ngx_strcmp(value[i].data, "format=fhir") == 0) {
            sink->fhir = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "flush=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            flush = ngx_parse_time(&s, 0);

            if (flush == (ngx_msec_t) NGX_ERROR || flush == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid flush time \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (flush && size == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no buffer is defined for welby_audit_log \"%V\"",
                           &sink->path);
        return NGX_CONF_ERROR;
    }

    /*
     * Audit records name people: the module creates the file owner-only
     * before nginx opens it (nginx would create it 0644), here and before
     * each reopen.  The mode of a file that exists is the operator's: it
     * is said once, here, and never changed, so that a file given to a
     * group of auditors on purpose stays theirs.
     */

    fd = ngx_open_file(sink->path.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &sink->path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) != NGX_FILE_ERROR && ngx_is_file(&fi)
        && (ngx_file_access(&fi) & 0077))
    {
        /* ngx_sprintf() has no octal */
        mode = ngx_file_access(&fi);

        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "welby_audit_log \"%V\" has mode 0%ui%ui%ui: its "
                           "group or others can read or change the audit "
                           "trail (the module leaves the mode as it is)",
                           &sink->path, (mode >> 6) & 7, (mode >> 3) & 7,
                           mode & 7);
    }

    (void) ngx_close_file(fd);

    sink->file = ngx_conf_open_file(cf->cycle, &sink->path);
    if (sink->file == NULL) {
        return NGX_CONF_ERROR;
    }

    if (sink->file->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is used by another log", &sink->path);
        return NGX_CONF_ERROR;
    }

    sink->fd = NGX_INVALID_FILE;

    if (size) {
        sink->start = ngx_pnalloc(cf->pool, size);
        if (sink->start == NULL) {
            return NGX_CONF_ERROR;
        }

        sink->pos = sink->start;
        sink->last = sink->start + size;

        if (flush) {
            sink->event = ngx_pcalloc(cf->pool, sizeof(ngx_event_t));
            if (sink->event == NULL) {
                return NGX_CONF_ERROR;
            }

            sink->event->handler = ngx_http_welby_audit_flush_handler;
            sink->event->log = &cf->cycle->new_log;
            sink->event->cancelable = 1;
            sink->flush = flush;
        }
    }

    /* the flush callback finds its sink here; nginx calls it on reopen */

    sink->file->flush = ngx_http_welby_audit_flush_reopen;

    return NGX_CONF_OK;
}


/* The array is final after configuration: point files at their sinks. */
ngx_int_t
ngx_http_welby_audit_init(ngx_conf_t *cf, ngx_http_welby_main_conf_t *wmcf)
{
    u_char                       *p;
    ngx_uint_t                    i;
    ngx_http_welby_audit_sink_t  *sink;

    if (wmcf->audit_node.len == 0) {
        wmcf->audit_node = cf->cycle->hostname;
    }

    /* syslog takes the node as a C string: made once, here */

    p = ngx_pnalloc(cf->pool, wmcf->audit_node.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(p, wmcf->audit_node.data, wmcf->audit_node.len + 1);
    wmcf->audit_node.data = p;

    if (wmcf->audit_sinks == NULL) {
        return NGX_OK;
    }

    sink = wmcf->audit_sinks->elts;

    for (i = 0; i < wmcf->audit_sinks->nelts; i++) {
        sink[i].file->data = &sink[i];

        if (sink[i].event) {
            sink[i].event->data = sink[i].file;
        }
    }

    return NGX_OK;
}


/*
 * welby_audit_syslog server=<address>[:port] | server=unix:<path>
 *     [facility=<name>] [tag=<app>] [pen=<number>]
 *
 * RFC 5424 over UDP or a unix datagram socket: a send never blocks a
 * worker.  Datagrams can be lost on the way; the files are the record of
 * reference, and the syslog copy carries their chain values.
 */
char *
ngx_http_welby_audit_syslog(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    ngx_int_t                       n;
    ngx_str_t                      *value, s;
    ngx_url_t                       u;
    ngx_uint_t                      i, j;
    ngx_http_welby_audit_syslog_t  *sl;

    value = cf->args->elts;

    if (wmcf->audit_syslogs == NULL) {
        wmcf->audit_syslogs = ngx_array_create(cf->pool, 1,
                                       sizeof(ngx_http_welby_audit_syslog_t));
        if (wmcf->audit_syslogs == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    sl = ngx_array_push(wmcf->audit_syslogs);
    if (sl == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(sl, sizeof(ngx_http_welby_audit_syslog_t));

    sl->fd = (ngx_socket_t) -1;
    sl->facility = 13;                      /* "log audit", RFC 5424 */
    ngx_str_set(&sl->tag, "welby");

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "server=", 7) == 0) {
            ngx_memzero(&u, sizeof(ngx_url_t));

            u.url.data = value[i].data + 7;
            u.url.len = value[i].len - 7;
            u.default_port = 514;

            if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%s in welby_audit_syslog server \"%V\"",
                                   u.err ? u.err : "invalid address",
                                   &u.url);
                return NGX_CONF_ERROR;
            }

            sl->server = u.addrs[0];
            sl->name = u.url;
            continue;
        }

        if (ngx_strncmp(value[i].data, "facility=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            for (j = 0; ngx_http_welby_audit_facilities[j].name.len; j++) {
                if (ngx_http_welby_audit_facilities[j].name.len == s.len
                    && ngx_strncmp(ngx_http_welby_audit_facilities[j].name.data,
                                   s.data, s.len)
                       == 0)
                {
                    break;
                }
            }

            if (ngx_http_welby_audit_facilities[j].name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "unknown syslog facility \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            sl->facility = ngx_http_welby_audit_facilities[j].value;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tag=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (s.len == 0 || s.len > 48) {
                goto invalid;
            }

            for (j = 0; j < s.len; j++) {
                if (s.data[j] < 0x21 || s.data[j] > 0x7e) {
                    goto invalid;
                }
            }

            sl->tag = s;
            continue;
        }

        if (ngx_strcmp(value[i].data, "transport=udp") == 0) {
            sl->tcp = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "transport=tcp") == 0) {
            sl->tcp = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "pen=", 4) == 0) {
            n = ngx_atoi(value[i].data + 4, value[i].len - 4);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            sl->pen = n;
            continue;
        }

        goto invalid;
    }

    if (sl->server.sockaddr == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_audit_syslog needs server=");
        return NGX_CONF_ERROR;
    }

    /* the tag is passed on as a C string */

    s.data = ngx_pnalloc(cf->pool, sl->tag.len + 1);
    if (s.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(s.data, sl->tag.data, sl->tag.len + 1);
    sl->tag.data = s.data;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                      "invalid parameter \"%V\" in welby_audit_syslog",
                      &value[i]);

    return NGX_CONF_ERROR;
}


/* welby_audit_query_key <file>: the HMAC key for query strings */
char *
ngx_http_welby_audit_query_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, path;
    ngx_file_info_t   fi;

    if (wmcf->audit_query_key.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) < 32 || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_audit_query_key \"%V\" must hold 32 to "
                           "4096 bytes", &path);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    wmcf->audit_query_key.len = (size_t) ngx_file_size(&fi);
    wmcf->audit_query_key.data = ngx_pnalloc(cf->pool,
                                             wmcf->audit_query_key.len);
    if (wmcf->audit_query_key.data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, wmcf->audit_query_key.data,
                    wmcf->audit_query_key.len);

    (void) ngx_close_file(fd);

    if (n != (ssize_t) wmcf->audit_query_key.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read welby_audit_query_key \"%V\"", &path);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* A stream id no other writer of the same files uses: pid and start. */
ngx_int_t
ngx_http_welby_audit_init_process(ngx_cycle_t *cycle)
{
    u_char                      *p;
    ngx_time_t                  *tp;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf == NULL
        || (wmcf->audit_sinks == NULL && wmcf->audit_syslogs == NULL))
    {
        return NGX_OK;
    }

    tp = ngx_timeofday();

    p = ngx_sprintf(wmcf->audit_stream_data, "%P.%T%03M", ngx_pid, tp->sec,
                    tp->msec);

    wmcf->audit_stream.data = wmcf->audit_stream_data;
    wmcf->audit_stream.len = p - wmcf->audit_stream_data;

    return NGX_OK;
}


/* A worker leaving (reload, stop) writes what it holds. */
void
ngx_http_welby_audit_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_http_welby_audit_sink_t    *sink;
    ngx_http_welby_main_conf_t     *wmcf;
    ngx_http_welby_audit_syslog_t  *sl;

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_welby_module);

    if (wmcf == NULL) {
        return;
    }

    if (wmcf->audit_syslogs) {
        sl = wmcf->audit_syslogs->elts;

        for (i = 0; i < wmcf->audit_syslogs->nelts; i++) {
            if (sl[i].fd != (ngx_socket_t) -1) {
                (void) ngx_close_socket(sl[i].fd);
                sl[i].fd = (ngx_socket_t) -1;
            }

            if (sl[i].peer.connection) {
                /* what the socket takes now; no waiting at exit */
                if (sl[i].queued) {
                    (void) sl[i].peer.connection->send(sl[i].peer.connection,
                                                      sl[i].queue,
                                                      sl[i].queued);
                }

                ngx_close_connection(sl[i].peer.connection);
                sl[i].peer.connection = NULL;
            }

            if (sl[i].retry.timer_set) {
                ngx_del_timer(&sl[i].retry);
            }

            ngx_free(sl[i].queue);
            sl[i].queue = NULL;
        }
    }

    if (wmcf->audit_sinks == NULL) {
        return;
    }

    sink = wmcf->audit_sinks->elts;

    for (i = 0; i < wmcf->audit_sinks->nelts; i++) {
        ngx_http_welby_audit_flush(sink[i].file, cycle->log);

        ngx_http_welby_metrics_lines(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED,
                                     sink[i].backlog,
                                     sink[i].backlog_len);

        if (sink[i].backlog_len || sink[i].lost) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "welby: audit log \"%V\": %uz bytes of records "
                          "not written and %ui records lost at exit",
                          &sink[i].path, sink[i].backlog_len, sink[i].lost);
        }

        ngx_free(sink[i].backlog);
        sink[i].backlog = NULL;
        sink[i].backlog_len = 0;

        /*
         * nginx flushes open files once more when it frees the cycle,
         * after this: nothing is left to write, and the log may be gone.
         */
        sink[i].file->data = NULL;
    }
}


void
ngx_http_welby_audit(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    welby_audit_record_t         rec;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    if (wmcf->audit_sinks == NULL && wmcf->audit_syslogs == NULL
        && wmcf->alerts == NULL)
    {
        return;
    }

    ngx_http_welby_audit_fill(r, ctx, wmcf, &rec);

    ngx_http_welby_audit_write_record(r, wmcf, &rec);

    if (wmcf->alerts) {
        ngx_http_welby_alert_count_request(r, ctx, rec.upstream_status);
    }
}


/*
 * An alert record: one when a threshold is crossed, then none until its
 * window has passed.  It names the rule, the count and, for per-address
 * rules, the address; the request that crossed it is its "id" prefix.
 */
void
ngx_http_welby_audit_alert(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_alert_t *rule, ngx_str_t *key, ngx_uint_t count)
{
    u_char                      *p;
    ngx_time_t                  *tp;
    welby_audit_record_t         rec;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "welby: alert %V: %ui in %M ms%s%V, id:%V",
                  &rule->name, count, rule->window,
                  key->len ? " from " : "", key, &ctx->request_id);

    welby_audit_record_init(&rec);

    tp = ngx_timeofday();

    p = ngx_pnalloc(r->pool, ctx->request_id.len + sizeof("-alert") - 1);
    if (p == NULL) {
        return;
    }

    rec.id.data = p;
    rec.id.len = ngx_sprintf(p, "%V-alert", &ctx->request_id) - p;

    rec.time_ms = (int64_t) tp->sec * 1000 + tp->msec;
    rec.sha256 = wmcf->sha256;
    rec.node.data = wmcf->audit_node.data;
    rec.node.len = wmcf->audit_node.len;
    rec.stream.data = wmcf->audit_stream.data;
    rec.stream.len = wmcf->audit_stream.len;
    rec.seq = (int64_t) ++wmcf->audit_seq;
    rec.category = WELBY_AUDIT_CAT_EVENT;
    rec.severity = (welby_audit_severity_e) rule->severity;
    rec.outcome = WELBY_AUDIT_OUTCOME_ERROR;

    rec.alert_event.data = rule->name.data;
    rec.alert_event.len = rule->name.len;
    rec.alert_count = count;
    rec.alert_window_ms = rule->window;

    if (key->len) {
        rec.alert_key.data = key->data;
        rec.alert_key.len = key->len;
    }

    ngx_http_welby_audit_write_record(r, wmcf, &rec);

    ngx_http_welby_metrics_alert(rule);
}


static void
ngx_http_welby_audit_write_record(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, welby_audit_record_t *rec)
{
    ngx_uint_t                      i;
    ngx_http_welby_audit_sink_t    *sink;
    ngx_http_welby_audit_syslog_t  *sl;

    if (wmcf->audit_sinks) {
        sink = wmcf->audit_sinks->elts;

        for (i = 0; i < wmcf->audit_sinks->nelts; i++) {
            ngx_http_welby_audit_emit(&sink[i], rec, r->connection->log);
        }

        /* the syslog copy carries the first file's chain value */

        if (sink[0].chained) {
            rec->chain = sink[0].prev;
        }
    }

    if (wmcf->audit_syslogs) {
        sl = wmcf->audit_syslogs->elts;

        for (i = 0; i < wmcf->audit_syslogs->nelts; i++) {
            ngx_http_welby_audit_send(&sl[i], rec, &wmcf->audit_node,
                                      r->connection->log);
        }
    }
}


static void
ngx_http_welby_audit_send(ngx_http_welby_audit_syslog_t *sl,
    welby_audit_record_t *rec, ngx_str_t *node, ngx_log_t *log)
{
    size_t      len;
    u_char     *msg;
    ssize_t     n;
    ngx_err_t   err;
    u_char      stack[8192];

    if (sl->tcp) {
        len = welby_audit_syslog(NULL, 0, rec, (int) sl->facility,
                                 (char *) node->data, (char *) sl->tag.data,
                                 (int) sl->pen, 1);

        msg = len <= sizeof(stack) ? stack : ngx_alloc(len, log);
        if (msg == NULL) {
            sl->dropped++;
            ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);
            return;
        }

        (void) welby_audit_syslog(msg, len, rec, (int) sl->facility,
                                  (char *) node->data, (char *) sl->tag.data,
                                  (int) sl->pen, 1);

        ngx_http_welby_audit_tcp_queue(sl, msg, len, log);

        if (msg != stack) {
            ngx_free(msg);
        }

        return;
    }

    if (sl->fd == (ngx_socket_t) -1) {

        sl->fd = ngx_socket(sl->server.sockaddr->sa_family, SOCK_DGRAM, 0);

        if (sl->fd == (ngx_socket_t) -1) {
            err = ngx_socket_errno;
            goto failed;
        }

        if (ngx_nonblocking(sl->fd) == -1
            || connect(sl->fd, sl->server.sockaddr, sl->server.socklen) == -1)
        {
            err = ngx_socket_errno;
            (void) ngx_close_socket(sl->fd);
            sl->fd = (ngx_socket_t) -1;
            goto failed;
        }
    }

    len = welby_audit_syslog(NULL, 0, rec, (int) sl->facility,
                             (char *) node->data, (char *) sl->tag.data,
                             (int) sl->pen, 0);

    msg = len <= sizeof(stack) ? stack : ngx_alloc(len, log);
    if (msg == NULL) {
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);
        return;
    }

    (void) welby_audit_syslog(msg, len, rec, (int) sl->facility,
                              (char *) node->data, (char *) sl->tag.data,
                              (int) sl->pen, 0);

    n = send(sl->fd, msg, len, 0);
    err = ngx_socket_errno;

    if (msg != stack) {
        ngx_free(msg);
    }

    if (n == (ssize_t) len) {
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_WRITTEN, 1);
        return;
    }

failed:

    sl->failures++;
    ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);

    if (ngx_time() - sl->alerted >= NGX_HTTP_WELBY_AUDIT_ALERT) {
        sl->alerted = ngx_time();
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "welby: audit syslog \"%V\" send failed (%ui times)",
                      &sl->name, sl->failures);
    }
}


static void
ngx_http_welby_audit_fill(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_main_conf_t *wmcf, welby_audit_record_t *rec)
{
    u_char                     *p;
    size_t                      len;
    ngx_str_t                   name, key;
    ngx_msec_int_t              ms;
    ngx_time_t                 *tp;
    ngx_uint_t                  status;
    welby_claims_t             *c;
    welby_audit_decision_e      decision;
    ngx_http_upstream_state_t  *state;

    welby_audit_record_init(rec);

    tp = ngx_timeofday();

    rec->time_ms = (int64_t) tp->sec * 1000 + tp->msec;
    rec->sha256 = wmcf->sha256;
    rec->id.data = ctx->request_id.data;
    rec->id.len = ctx->request_id.len;

    if (ctx->client_request_id.len) {
        rec->client_request_id.data = ctx->client_request_id.data;
        rec->client_request_id.len = ctx->client_request_id.len;
    }

    rec->node.data = wmcf->audit_node.data;
    rec->node.len = wmcf->audit_node.len;
    rec->stream.data = wmcf->audit_stream.data;
    rec->stream.len = wmcf->audit_stream.len;
    rec->seq = (int64_t) ++wmcf->audit_seq;

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (r->connection->error && status == 0) {
        /* the client left before a response: nginx logs it as 499 */
        status = 499;
    }

    rec->status = status;
    rec->reason = ctx->reason;

    /* the seed's three logs: authentication, operation, event */

    switch (ctx->decision) {

    case NGX_HTTP_WELBY_DECISION_ALLOW:
        decision = WELBY_AUDIT_DECISION_ALLOW;
        break;

    case NGX_HTTP_WELBY_DECISION_DENY:
        decision = WELBY_AUDIT_DECISION_DENY;
        break;

    case NGX_HTTP_WELBY_DECISION_DETECT:
        decision = WELBY_AUDIT_DECISION_DETECT;
        break;

    default: /* NGX_HTTP_WELBY_DECISION_NONE */
        decision = WELBY_AUDIT_DECISION_NONE;
    }

    welby_audit_classify(rec, decision, ctx->reason, (int64_t) status);

    rec->method.data = r->method_name.data;
    rec->method.len = r->method_name.len;
    rec->path.data = r->uri.data;
    rec->path.len = r->uri.len;

    if (r->args.len) {
        len = welby_audit_query_names(NULL, 0, r->args.data, r->args.len);
        p = ngx_pnalloc(r->pool, len ? len : 1);

        if (p) {
            rec->query_names.len = welby_audit_query_names(p, len,
                                                           r->args.data,
                                                           r->args.len);
            rec->query_names.data = p;
        }

        p = ngx_pnalloc(r->pool, WELBY_AUDIT_HEX_LEN + 1);

        if (p && wmcf->audit_query_key.len
            && welby_audit_query_hash(p, wmcf->audit_query_key.data,
                                      wmcf->audit_query_key.len,
                                      r->args.data, r->args.len)
               == 0)
        {
            rec->query_hmac.data = p;
            rec->query_hmac.len = WELBY_AUDIT_HEX_LEN;
        }
    }

    if (ctx->fhir) {
        ngx_http_welby_audit_fhir(r, ctx->fhir, rec);
    }

    rec->bytes_in = r->request_length;
    rec->bytes_out = r->connection->sent;

    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    rec->time_taken_ms = ngx_max(ms, 0);

    if (ctx->token_valid) {
        c = &ctx->claims;

        rec->sub = c->sub;
        rec->client_id = c->client_id;
        rec->iss = c->iss;
        rec->fhir_user = c->fhir_user;
        rec->amr = c->amr;
        rec->jti = c->jti;

        /*
         * The token's patient is the launch context, not the target of
         * the request: "fhir.patient" is what the classifier found.
         */
    }

    rec->ip.data = r->connection->addr_text.data;
    rec->ip.len = r->connection->addr_text.len;
    rec->port = ngx_inet_get_port(r->connection->sockaddr);

    /* of the same address as ip: the one after realip */

    if (ngx_http_welby_geo_lookup(r, ctx) == NGX_OK) {
        if (ctx->country.len) {
            rec->country.data = ctx->country.data;
            rec->country.len = ctx->country.len;
        }

        if (ngx_http_welby_geo_asn(r, ctx)) {
            rec->asn = ctx->asn;
        }
    }

    ngx_http_welby_audit_tls(r, ctx, rec);

    if (ctx->waf && ctx->waf->ran) {
        rec->waf_rules = ctx->waf->rules;
        rec->waf_severities = ctx->waf->severities;
        rec->nwaf_rules = ctx->waf->nrules;
        rec->waf_score = ctx->waf->score;
    }

    ngx_http_welby_limit_fired(ctx, &name, &key);

    if (name.len) {
        rec->limit_name.data = name.data;
        rec->limit_name.len = name.len;
        rec->limit_key.data = key.data;
        rec->limit_key.len = key.len;
    }

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;
        state = &state[r->upstream_states->nelts - 1];

        if (state->status) {
            rec->upstream_status = state->status;
        }
    }
}


/*
 * The tls object and the certificate's thumbprint.  Through a trusted
 * proxy that vouched, the client's leg is the proxy's: its address and
 * the protocol it reported.
 */
/*
 * The classified request: interaction and type codes, the path's id and
 * every patient the request names, space-separated (ids, not health
 * data).
 */
static void
ngx_http_welby_audit_fhir(ngx_http_request_t *r, welby_fhir_request_t *fr,
    welby_audit_record_t *rec)
{
    const char  *name;
    ngx_str_t    patients;

    name = welby_fhir_interaction_name(fr->interaction);
    rec->interaction.data = (const unsigned char *) name;
    rec->interaction.len = ngx_strlen(name);

    name = welby_fhir_type_name(fr->type);

    if (name) {
        rec->resource_type.data = (const unsigned char *) name;
        rec->resource_type.len = ngx_strlen(name);
    }

    rec->resource_id = fr->id;

    if (ngx_http_welby_fhir_patients(r->pool, fr, &patients) == NGX_OK) {
        rec->patient.data = patients.data;
        rec->patient.len = patients.len;
    }
}


static void
ngx_http_welby_audit_tls(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    welby_audit_record_t *rec)
{
#if (NGX_HTTP_SSL)
    u_char            *p;
    long               verify;
    ngx_int_t          rc;
    ngx_connection_t  *c;
#endif

    if (ctx->tls_proxy.len) {
        rec->tls_proxy.data = ctx->tls_proxy.data;
        rec->tls_proxy.len = ctx->tls_proxy.len;

        if (ctx->tls_proxy_protocol.len) {
            rec->tls_protocol.data = ctx->tls_proxy_protocol.data;
            rec->tls_protocol.len = ctx->tls_proxy_protocol.len;
        }

        return;
    }

#if (NGX_HTTP_SSL)

    c = r->connection;

    if (c->ssl == NULL) {
        return;
    }

    p = (u_char *) SSL_get_version(c->ssl->connection);
    rec->tls_protocol.data = p;
    rec->tls_protocol.len = ngx_strlen(p);

    p = (u_char *) SSL_get_cipher_name(c->ssl->connection);
    if (p) {
        rec->tls_cipher.data = p;
        rec->tls_cipher.len = ngx_strlen(p);
    }

    rc = ngx_http_welby_client_cert_sha256(r, ctx);

    if (rc == NGX_DECLINED) {
        rec->tls_client_cert.data = (u_char *) "none";
        rec->tls_client_cert.len = 4;
        return;
    }

    verify = SSL_get_verify_result(c->ssl->connection);

    if (verify == X509_V_OK) {
        rec->tls_client_cert.data = (u_char *) "verified";
        rec->tls_client_cert.len = 8;

    } else {
        rec->tls_client_cert.data = (u_char *) "failed";
        rec->tls_client_cert.len = 6;
        rec->tls_client_cert_error = verify;
    }

    if (rc == NGX_OK) {
        p = ngx_pnalloc(r->pool, 64);
        if (p) {
            ngx_hex_dump(p, ctx->cert_sha256, 32);
            rec->cert_sha256.data = p;
            rec->cert_sha256.len = 64;
        }
    }

#endif
}


static void
ngx_http_welby_audit_emit(ngx_http_welby_audit_sink_t *sink,
    welby_audit_record_t *rec, ngx_log_t *log)
{
    size_t      len, cap;
    u_char     *line, *prev;
    ngx_uint_t  buffered, allocated;
    u_char      next[WELBY_AUDIT_HEX_LEN + 1];
    u_char      stack[4096];

    if (sink->file->fd != sink->fd) {
        ngx_http_welby_audit_reopened(sink);
    }

    prev = sink->chained ? sink->prev : NULL;

    /*
     * A new chain in a file after another one: its first line names the
     * line before it, so a verifier given both files sees whether the
     * other one lost its end.
     */

    if (!sink->chained && sink->written) {
        rec->continues_chain = sink->prev;
        rec->continues_seq = sink->prev_seq;
    }

    /*
     * One pass where the line fits (the buffer, else the stack); the
     * writers return the length they need when it does not.
     */

    buffered = 0;
    allocated = 0;

    if (sink->start && sink->last - sink->pos > 0) {
        line = sink->pos;
        cap = sink->last - sink->pos;
        buffered = 1;

    } else {
        line = stack;
        cap = sizeof(stack);
    }

    len = ngx_http_welby_audit_format(sink, line, cap, rec, prev, next);

    if (len > cap) {
        cap = len;

        if (len <= sizeof(stack)) {
            line = stack;

        } else {
            line = ngx_alloc(len, log);
            if (line == NULL) {
                sink->lost++;
                ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED,
                                           1);
                goto done;
            }

            allocated = 1;
        }

        buffered = 0;
        len = ngx_http_welby_audit_format(sink, line, cap, rec, prev, next);
    }

    if (len == 0 || len > cap) {
        sink->lost++;
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "welby: audit record %V not written to \"%V\"",
                      &rec->id, &sink->path);
        goto done;
    }

    ngx_memcpy(sink->prev, next, sizeof(sink->prev));
    sink->prev_seq = rec->seq;
    sink->chained = 1;
    sink->written = 1;

    if (buffered) {
        if (sink->event && sink->pos == sink->start) {
            ngx_add_timer(sink->event, sink->flush);
        }

        sink->pos += len;
        goto done;
    }

    /*
     * No room in the buffer: what it holds goes first, so the file keeps
     * the order of the chain, then this line, synchronously.
     */

    if (sink->start) {
        ngx_http_welby_audit_flush(sink->file, log);
    }

    (void) ngx_http_welby_audit_write(sink, line, len, log);

done:

    /* the next file, and the syslog copy, have their own */

    rec->continues_chain = NULL;
    rec->continues_seq = -1;

    if (allocated) {
        ngx_free(line);
    }
}


static size_t
ngx_http_welby_audit_format(ngx_http_welby_audit_sink_t *sink, u_char *dst,
    size_t cap, welby_audit_record_t *rec, u_char *prev, u_char *next)
{
    if (sink->fhir) {
        return welby_audit_fhir_chained(dst, cap, rec, prev, next);
    }

    return welby_audit_json_chained(dst, cap, rec, prev, next);
}


/*
 * Writes what is kept from earlier failures first, then data; keeps
 * whatever the file does not take.
 */
static ngx_int_t
ngx_http_welby_audit_write(ngx_http_welby_audit_sink_t *sink, u_char *data,
    size_t len, ngx_log_t *log)
{
    ssize_t  n;

    if (sink->backlog_len) {
        n = ngx_write_fd(sink->file->fd, sink->backlog, sink->backlog_len);

        if (n > 0) {
            ngx_http_welby_metrics_lines(NGX_HTTP_WELBY_METRIC_AUDIT_WRITTEN,
                                         sink->backlog, n);
        }

        if (n == (ssize_t) sink->backlog_len) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "welby: audit log \"%V\" writable again, %uz "
                          "bytes of kept records written",
                          &sink->path, sink->backlog_len);
            sink->backlog_len = 0;

        } else {
            if (n > 0) {
                ngx_memmove(sink->backlog, sink->backlog + n,
                            sink->backlog_len - n);
                sink->backlog_len -= n;
            }

            ngx_http_welby_audit_keep(sink, data, len, log);
            return NGX_ERROR;
        }
    }

    if (len == 0) {
        return NGX_OK;
    }

    n = ngx_write_fd(sink->file->fd, data, len);

    if (n > 0) {
        ngx_http_welby_metrics_lines(NGX_HTTP_WELBY_METRIC_AUDIT_WRITTEN,
                                     data, n);
    }

    if (n == (ssize_t) len) {
        return NGX_OK;
    }

    if (n > 0) {
        data += n;
        len -= n;
    }

    ngx_http_welby_audit_keep(sink, data, len, log);

    return NGX_ERROR;
}


static void
ngx_http_welby_audit_keep(ngx_http_welby_audit_sink_t *sink, u_char *data,
    size_t len, ngx_log_t *log)
{
    ngx_err_t  err;

    err = ngx_errno;

    sink->failures++;

    if (ngx_time() - sink->alerted >= NGX_HTTP_WELBY_AUDIT_ALERT) {
        sink->alerted = ngx_time();
        ngx_log_error(NGX_LOG_ALERT, log, err,
                      "welby: audit log \"%V\" write failed (%ui times), "
                      "%uz bytes kept in memory, %ui records lost",
                      &sink->path, sink->failures, sink->backlog_len + len,
                      sink->lost);
    }

    if (sink->backlog == NULL) {
        sink->backlog = ngx_alloc(NGX_HTTP_WELBY_AUDIT_BACKLOG, log);
        if (sink->backlog == NULL) {
            sink->lost++;
            ngx_http_welby_metrics_lines(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED,
                                         data, len);
            return;
        }
    }

    if (len == 0) {
        /* only the kept bytes failed again; they are still kept */
        return;
    }

    if (len > NGX_HTTP_WELBY_AUDIT_BACKLOG - sink->backlog_len) {
        /* counted and reported above and at exit: never silent */
        sink->lost++;
        ngx_http_welby_metrics_lines(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED,
                                     data, len);
        return;
    }

    ngx_http_welby_metrics_lines(NGX_HTTP_WELBY_METRIC_AUDIT_HELD, data, len);
    ngx_memcpy(sink->backlog + sink->backlog_len, data, len);
    sink->backlog_len += len;
}


static void
ngx_http_welby_audit_flush(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_http_welby_audit_sink_t  *sink;

    sink = file->data;

    if (sink == NULL) {
        return;
    }

    if (sink->start && sink->pos > sink->start) {
        (void) ngx_http_welby_audit_write(sink, sink->start,
                                          sink->pos - sink->start, log);
        sink->pos = sink->start;

    } else if (sink->backlog_len) {
        (void) ngx_http_welby_audit_write(sink, NULL, 0, log);
    }

    if (sink->event && sink->event->timer_set) {
        ngx_del_timer(sink->event);
    }
}


/*
 * nginx calls this just before it reopens the file: what is buffered goes
 * to the old file, and the next record looks at the file it then has.
 * (The new file can get the old descriptor number, so the descriptor
 * alone does not tell.)  A second reopen before that record: the chain
 * still goes on only if the file the first one left is the chain's.
 */
static void
ngx_http_welby_audit_flush_reopen(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_http_welby_audit_sink_t  *sink;

    ngx_http_welby_audit_flush(file, log);

    sink = file->data;

    if (sink == NULL) {
        return;
    }

    ngx_http_welby_audit_create(sink, log);

    if (sink->fd == NGX_INVALID_FILE && sink->chained
        && !ngx_http_welby_audit_same_file(sink, file->fd))
    {
        sink->chained = 0;
    }

    sink->fd = NGX_INVALID_FILE;
}


static void
ngx_http_welby_audit_flush_handler(ngx_event_t *ev)
{
    ngx_http_welby_audit_flush(ev->data, ev->log);
}


/*
 * The file was opened anew (start, nginx -s reopen): unless it is the
 * chain's file still, a new chain starts.  Its mode is not looked at
 * here: see ngx_http_welby_audit_log() and ngx_http_welby_audit_create().
 */
static void
ngx_http_welby_audit_reopened(ngx_http_welby_audit_sink_t *sink)
{
    ngx_file_info_t  fi;

    sink->fd = sink->file->fd;

    if (ngx_fd_info(sink->fd, &fi) == NGX_FILE_ERROR) {
        sink->chained = 0;
        return;
    }

    if (sink->chained && fi.st_dev == sink->dev
        && ngx_file_uniq(&fi) == sink->uniq)
    {
        return;
    }

    sink->chained = 0;
    sink->dev = fi.st_dev;
    sink->uniq = ngx_file_uniq(&fi);
}


/*
 * Called just before nginx reopens the file, in the master first: a file
 * that logrotate renamed away is created here owner-only, as at
 * configuration time, so nginx finds it and does not create it 0644 (its
 * NGX_FILE_DEFAULT_ACCESS).  A worker that may not create it leaves that
 * to the master, which has done it already.
 */
static void
ngx_http_welby_audit_create(ngx_http_welby_audit_sink_t *sink,
    ngx_log_t *log)
{
    ngx_fd_t  fd;

    fd = ngx_open_file(sink->path.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_debug1(NGX_LOG_DEBUG_CORE, log, ngx_errno,
                       "welby: audit log \"%V\" not created before the "
                       "reopen", &sink->path);
        return;
    }

    (void) ngx_close_file(fd);
}


/*
 * Both files are open when this compares them (the chain's was open when
 * nginx opened the one it has now), so an equal inode is the same file.
 */
static ngx_uint_t
ngx_http_welby_audit_same_file(ngx_http_welby_audit_sink_t *sink, ngx_fd_t fd)
{
    ngx_file_info_t  fi;

    if (fd == NGX_INVALID_FILE || ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        return 0;
    }

    return fi.st_dev == sink->dev && ngx_file_uniq(&fi) == sink->uniq;
}


static void
ngx_http_welby_audit_tcp_queue(ngx_http_welby_audit_syslog_t *sl, u_char *msg,
    size_t len, ngx_log_t *log)
{
    if (sl->queue == NULL) {
        sl->queue = ngx_alloc(NGX_HTTP_WELBY_AUDIT_TCP_QUEUE, log);
        if (sl->queue == NULL) {
            sl->dropped++;
            ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);
            return;
        }
    }

    if (len > NGX_HTTP_WELBY_AUDIT_TCP_QUEUE - sl->queued) {
        sl->dropped++;
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);

        if (ngx_time() - sl->alerted >= NGX_HTTP_WELBY_AUDIT_ALERT) {
            sl->alerted = ngx_time();
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "welby: audit syslog \"%V\" queue full, %ui "
                          "records not sent (the files have them)",
                          &sl->name, sl->dropped);
        }

        return;
    }

    ngx_memcpy(sl->queue + sl->queued, msg, len);
    sl->queued += len;

    if (sl->peer.connection == NULL) {
        if (!sl->retry.timer_set) {
            ngx_http_welby_audit_tcp_connect(sl);
        }

        return;
    }

    if (sl->peer.connection->write->ready) {
        ngx_http_welby_audit_tcp_write(sl->peer.connection->write);
    }
}


static void
ngx_http_welby_audit_tcp_connect(ngx_http_welby_audit_syslog_t *sl)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_memzero(&sl->peer, sizeof(ngx_peer_connection_t));

    sl->peer.sockaddr = sl->server.sockaddr;
    sl->peer.socklen = sl->server.socklen;
    sl->peer.name = &sl->name;
    sl->peer.get = ngx_event_get_peer;
    sl->peer.log = ngx_cycle->log;
    sl->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&sl->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_welby_audit_tcp_close(sl, 1);
        return;
    }

    c = sl->peer.connection;
    c->data = sl;
    c->write->handler = ngx_http_welby_audit_tcp_write;
    c->read->handler = ngx_http_welby_audit_tcp_read;

    /* a partly sent frame died with the last connection */
    sl->partial = 0;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, 5000);
        return;
    }

    ngx_http_welby_audit_tcp_write(c->write);
}


static void
ngx_http_welby_audit_tcp_retry(ngx_event_t *ev)
{
    ngx_http_welby_audit_syslog_t  *sl;

    sl = ev->data;

    if (sl->queued && sl->peer.connection == NULL) {
        ngx_http_welby_audit_tcp_connect(sl);
    }
}


static void
ngx_http_welby_audit_tcp_write(ngx_event_t *wev)
{
    u_char                         *p;
    size_t                          frame, off, rem, step;
    ssize_t                         n;
    ngx_connection_t               *c;
    ngx_http_welby_audit_syslog_t  *sl;

    c = wev->data;
    sl = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_ERR, c->log, NGX_ETIMEDOUT,
                      "welby: audit syslog \"%V\" timed out", &sl->name);
        ngx_http_welby_audit_tcp_close(sl, 1);
        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    while (sl->queued) {

        n = c->send(c, sl->queue, sl->queued);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_welby_audit_tcp_close(sl, 1);
            return;
        }

        /*
         * Follow the frames sent, to know where a connection may stop:
         * frames are queued whole, so a frame's length is always there
         * to read at its start.
         */

        off = 0;
        rem = sl->partial;

        while (off < (size_t) n) {
            if (rem == 0) {
                frame = 0;

                for (p = sl->queue + off; *p >= '0' && *p <= '9'; p++) {
                    frame = frame * 10 + (*p - '0');
                }

                rem = (size_t) (p - (sl->queue + off)) + 1 + frame;
            }

            step = ngx_min(rem, (size_t) n - off);
            off += step;
            rem -= step;

            if (rem == 0) {
                ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_WRITTEN,
                                           1);
            }
        }

        sl->partial = rem;

        ngx_memmove(sl->queue, sl->queue + n, sl->queued - n);
        sl->queued -= n;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_welby_audit_tcp_close(sl, 1);
    }
}


static void
ngx_http_welby_audit_tcp_read(ngx_event_t *rev)
{
    ssize_t                         n;
    ngx_connection_t               *c;
    ngx_http_welby_audit_syslog_t  *sl;
    u_char                          buf[256];

    c = rev->data;
    sl = c->data;

    /* a collector says nothing; end of stream or an error ends it */

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_welby_audit_tcp_close(sl, 1);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_welby_audit_tcp_close(sl, 1);
            return;
        }
    }
}


/*
 * Closes the connection; a frame it carried half of is dropped (the
 * collector could not parse the rest), and a new connection is tried in
 * a second while records wait.
 */
static void
ngx_http_welby_audit_tcp_close(ngx_http_welby_audit_syslog_t *sl,
    ngx_uint_t retry)
{
    if (sl->peer.connection) {
        ngx_close_connection(sl->peer.connection);
        sl->peer.connection = NULL;
    }

    if (sl->partial) {
        sl->partial = ngx_min(sl->partial, sl->queued);
        ngx_memmove(sl->queue, sl->queue + sl->partial,
                    sl->queued - sl->partial);
        sl->queued -= sl->partial;
        sl->partial = 0;
        sl->dropped++;
        ngx_http_welby_metrics_add(NGX_HTTP_WELBY_METRIC_AUDIT_FAILED, 1);
    }

    sl->failures++;

    /*
     * A collector that restarts is routine: a warning, and the records
     * wait in the queue.  Records are lost only when the queue is full,
     * and that is an alert.
     */

    if (ngx_time() - sl->alerted >= NGX_HTTP_WELBY_AUDIT_ALERT) {
        sl->alerted = ngx_time();
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "welby: audit syslog \"%V\" connection closed or "
                      "failed (%ui times), %uz bytes queued",
                      &sl->name, sl->failures, sl->queued);
    }

    if (retry && !ngx_exiting && !ngx_terminate && !ngx_quit) {
        sl->retry.handler = ngx_http_welby_audit_tcp_retry;
        sl->retry.data = sl;
        sl->retry.log = ngx_cycle->log;
        sl->retry.cancelable = 1;

        if (!sl->retry.timer_set) {
            ngx_add_timer(&sl->retry, 1000);
        }
    }
}
