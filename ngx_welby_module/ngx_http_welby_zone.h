/*
 * Keyed state in shared memory (welby_zone): what rate limits and the
 * threat detectors remember of a key (an address, a subject, a client),
 * counted by all workers together.  A zone is a slab pool with an rbtree
 * of records and an LRU queue, as in the limit_req module; a full zone
 * forgets the record used longest ago.  Users never see the layout: they
 * change one record at a time under the zone's lock through a callback,
 * so that a later store (shared between nodes) can take its place behind
 * the same functions.
 */

#ifndef NGX_HTTP_WELBY_ZONE_H
#define NGX_HTTP_WELBY_ZONE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * What a user does with one record, under the zone's lock.  `data` is
 * the record's `size` bytes, zeroed when the record is new (`fresh` 1:
 * never seen, expired, evicted, or of another size).  `now` is the
 * caller's time in nanoseconds since the epoch.  The callback returns
 * the time (ns since the epoch) until which the record must be kept;
 * after it, the record counts as new again and may be freed.  It must
 * not block, allocate or log.
 */
typedef int64_t (*ngx_http_welby_zone_update_pt)(void *data,
    ngx_uint_t fresh, int64_t now, void *arg);


/*
 * At configuration time: the zone named `name`, for a user.  The zone
 * itself is declared by "welby_zone name size;" (http), before
 * or after its users; a name never declared fails nginx -t.
 */
ngx_shm_zone_t *ngx_http_welby_zone_use(ngx_conf_t *cf, ngx_str_t *name);

/*
 * A namespace inside a zone: records of different users (two limits, a
 * limit and a detector) never meet, and the same name keeps its records
 * across a reload.
 */
uint32_t ngx_http_welby_zone_space(ngx_str_t *kind, ngx_str_t *name);

/*
 * Finds or creates the record of (space, key) and runs `update` on it.
 * NGX_OK, or NGX_ERROR when no record can be had even after forgetting
 * the oldest (the caller fails closed).  Keys longer than 65535 bytes are
 * an error.
 */
ngx_int_t ngx_http_welby_zone_update(ngx_shm_zone_t *zone, uint32_t space,
    ngx_str_t *key, size_t size, ngx_http_welby_zone_update_pt update,
    void *arg, ngx_log_t *log);

/*
 * ngx_http_welby_zone_update() at the caller's time `now` (ns since the
 * epoch), which the callback gets and the zone expires records by: a
 * request that changes several records decides them all at one instant.
 * ngx_http_welby_zone_update() takes the time of the call.
 */
ngx_int_t ngx_http_welby_zone_update_at(ngx_shm_zone_t *zone, uint32_t space,
    ngx_str_t *key, size_t size, int64_t now,
    ngx_http_welby_zone_update_pt update, void *arg, ngx_log_t *log);

/*
 * ngx_http_welby_zone_update_at() on a live record only (one whose time
 * is not over): NGX_DECLINED, with nothing allocated and the callback not
 * run, when there is none.  For the checks most requests pass (is this
 * address banned?), which must not cost a record per new key.
 */
ngx_int_t ngx_http_welby_zone_update_live(ngx_shm_zone_t *zone,
    uint32_t space, ngx_str_t *key, size_t size, int64_t now,
    ngx_http_welby_zone_update_pt update, void *arg, ngx_log_t *log);

/*
 * A 16-byte digest of in under the zone's secret (SipHash-2-4-128, the
 * secret drawn from RAND_bytes when the zone is made and kept with it
 * across reloads): keys of any length as one size of record, and no
 * identifier in clear in shared memory.  Unlike an unkeyed hash, it
 * cannot be matched against guesses by one who reads a copy of the
 * records without the zone's secret, and nobody can choose values that
 * collide.  Before the zone is initialised (at configuration time) it
 * must not be called.
 */
void ngx_http_welby_zone_digest(ngx_shm_zone_t *zone, const u_char *in,
    size_t len, u_char *out);

/* Bytes in use and the zone's size, for the metrics. */
void ngx_http_welby_zone_usage(ngx_shm_zone_t *zone, size_t *used,
    size_t *size);

/* Records forgotten because the zone was full, since it was created. */
ngx_atomic_uint_t ngx_http_welby_zone_evictions(ngx_shm_zone_t *zone);

/* Whether a shared memory zone is a declared welby_zone, for the metrics. */
ngx_uint_t ngx_http_welby_zone_is(ngx_shm_zone_t *zone);

/*
 * At the end of the http block's configuration (postconfiguration): a
 * zone some directive uses but no "welby_zone" declares fails nginx -t
 * here, with its name.
 */
ngx_int_t ngx_http_welby_zone_check(ngx_conf_t *cf);

/* "welby_zone name size;" */
char *ngx_http_welby_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* The time now, in nanoseconds since the epoch (CLOCK_REALTIME). */
int64_t ngx_http_welby_now_ns(void);

#endif /* NGX_HTTP_WELBY_ZONE_H */
