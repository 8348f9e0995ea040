/*
 * welby_zone: keyed state in shared memory (ngx_http_welby_zone.h), in
 * the pattern of the limit_req module's zones: a slab pool, an rbtree
 * of records keyed by a hash of (space, key), and an LRU queue; each
 * update frees up to two records at the queue's tail whose state has
 * been over for a minute, and a full zone forgets the records used
 * longest ago.
 *
 * A record, from the rbtree node's color on (as limit_req's nodes):
 *
 *     ngx_rbtree_node_t   key (the hash), left, right, parent  32 bytes
 *     color, units, len, space                                  8 bytes
 *     ngx_queue_t         queue (LRU)                          16 bytes
 *     int64_t             expire (ns since the epoch)           8 bytes
 *     state               units * 8 bytes, zeroed when new
 *     key                 len bytes
 *
 * 64 bytes and the user's state and key, rounded up by the slab to a
 * power of two: a limit's record (48 bytes of state, a 16-byte key) is
 * exactly 128 bytes.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_zone.h"
#include "welby_hash.h"

#include <openssl/rand.h>


/*
 * "WELBYZN" and the version of the layout above: a zone kept by a reload
 * is read only when this code wrote it.
 */
#define NGX_HTTP_WELBY_ZONE_MAGIC      0x57454c42595a4e02ULL

/* expired records freed at the tail per update, as in limit_req */
#define NGX_HTTP_WELBY_ZONE_EXPIRE     2

/*
 * How long a record whose state is over stays for reuse before the tail
 * frees it (limit_req keeps its nodes 60 s): a key that comes back finds
 * its record, where freeing it at once would cost every request of a
 * fast rule a slab allocation, a free and two rbtree changes.  Its state
 * is zeroed when it is used again, as for a new record.  A full zone
 * forgets from the LRU tail as before, kept records or live ones; only
 * live ones are counted as evictions.
 */
#define NGX_HTTP_WELBY_ZONE_KEEP       (60 * (int64_t) 1000000000)

/*
 * Live records forgotten at most for one allocation, and how far from
 * the tail one of the same slab size is looked for first: the lock is
 * held for a bounded time, and a zone full of another size of record
 * frees a chunk of the needed size rather than scattered ones.
 */
#define NGX_HTTP_WELBY_ZONE_EVICT_MAX  64
#define NGX_HTTP_WELBY_ZONE_EVICT_SCAN 16

/* the state's size is kept in 8-byte units in one byte */
#define NGX_HTTP_WELBY_ZONE_UNITS_MAX  255


typedef struct {
    uint64_t                        magic;
    uint64_t                        secret[2];  /* ngx_http_welby_zone_digest */
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;
    ngx_atomic_uint_t               evictions;
} ngx_http_welby_zone_shctx_t;


typedef struct {
    ngx_http_welby_zone_shctx_t    *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_welby_zone_t;


typedef struct {
    u_char                          color;
    u_char                          units;
    u_short                         len;
    uint32_t                        space;
    ngx_queue_t                     queue;
    int64_t                         expire;
    u_char                          data[1];
} ngx_http_welby_zone_record_t;


#define ngx_http_welby_zone_node_record(node)                                \
    ((ngx_http_welby_zone_record_t *) &(node)->color)

#define ngx_http_welby_zone_record_node(rec)                                 \
    ((ngx_rbtree_node_t *)                                                   \
         ((u_char *) (rec) - offsetof(ngx_rbtree_node_t, color)))

#define ngx_http_welby_zone_record_key(rec)                                  \
    ((rec)->data + (size_t) (rec)->units * 8)

#define ngx_http_welby_zone_record_size(units, len)                          \
    (offsetof(ngx_rbtree_node_t, color)                                      \
     + offsetof(ngx_http_welby_zone_record_t, data)                          \
     + (size_t) (units) * 8 + (len))


static ngx_int_t ngx_http_welby_zone_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_welby_zone_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_welby_zone_cmp(uint32_t space, u_char *key,
    size_t len, ngx_http_welby_zone_record_t *rec);
static ngx_http_welby_zone_record_t *ngx_http_welby_zone_lookup(
    ngx_http_welby_zone_t *zone, ngx_rbtree_key_t hash, uint32_t space,
    ngx_str_t *key);
static ngx_rbtree_node_t *ngx_http_welby_zone_alloc(
    ngx_http_welby_zone_t *zone, size_t size, int64_t now,
    ngx_uint_t *evicted);
static size_t ngx_http_welby_zone_slab_size(size_t size);
static ngx_int_t ngx_http_welby_zone_run(ngx_shm_zone_t *shm_zone,
    uint32_t space, ngx_str_t *key, size_t size, int64_t now,
    ngx_http_welby_zone_update_pt update, void *arg, ngx_log_t *log,
    ngx_uint_t create);
static void ngx_http_welby_zone_expire(ngx_http_welby_zone_t *zone,
    int64_t now);
static void ngx_http_welby_zone_delete(ngx_http_welby_zone_t *zone,
    ngx_http_welby_zone_record_t *rec);


/*
 * The zones' tag, never written: a welby_zone never shares its shared
 * memory with the module's other zones (a token cache of the same name
 * is "already declared for a different use"), and a reload never hands
 * one kind's memory to the other.
 */
static const u_char  ngx_http_welby_zone_tag = 0;


/* welby_zone <name> <size> */
char *
ngx_http_welby_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t                 size;
    ngx_str_t              *value;
    ngx_shm_zone_t         *shm_zone;
    ngx_http_welby_zone_t  *zone;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid welby_zone name \"\"");
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid welby_zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_zone \"%V\" is too small: %V, it must be "
                           "at least %uz", &value[1], &value[2],
                           8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_http_welby_zone_use(cf, &value[1]);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        if (shm_zone->shm.size == (size_t) size) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate welby_zone \"%V\"", &value[1]);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "welby_zone \"%V\" is already declared with "
                               "size %uz", &value[1], shm_zone->shm.size);
        }

        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone->shm.size = size;
    shm_zone->init = ngx_http_welby_zone_init_zone;
    shm_zone->data = zone;

    return NGX_CONF_OK;
}


ngx_shm_zone_t *
ngx_http_welby_zone_use(ngx_conf_t *cf, ngx_str_t *name)
{
    return ngx_shared_memory_add(cf, name, 0,
                                 (void *) &ngx_http_welby_zone_tag);
}


ngx_int_t
ngx_http_welby_zone_check(ngx_conf_t *cf)
{
    ngx_uint_t        i;
    ngx_shm_zone_t   *shm_zone;
    ngx_list_part_t  *part;

    part = &cf->cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag != (void *) &ngx_http_welby_zone_tag
            || shm_zone[i].data != NULL)
        {
            continue;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "welby_zone \"%V\" is used but not declared: add "
                      "\"welby_zone %V <size>;\" to the http block",
                      &shm_zone[i].shm.name, &shm_zone[i].shm.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_welby_zone_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                        len;
    ngx_slab_pool_t              *shpool;
    ngx_http_welby_zone_t        *zone;
    ngx_http_welby_zone_shctx_t  *sh;

    zone = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {

        /*
         * A reload keeps a zone of the same size, and its records with
         * it.  The old workers go on using it while they finish, so a
         * zone another layout wrote is neither read nor wiped: the
         * reload fails, and the old configuration keeps serving.
         */

        sh = shpool->data;

        if (sh == NULL || sh->magic != NGX_HTTP_WELBY_ZONE_MAGIC) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "welby_zone \"%V\" holds records of another "
                          "version of the module: give it another size "
                          "or name, or restart nginx",
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }

        zone->sh = sh;
        zone->shpool = shpool;

        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_http_welby_zone_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    /* drawn once for the zone's life: a reload that keeps the zone keeps
     * it, and with it every digest its records were made with */

    if (RAND_bytes((u_char *) sh->secret, sizeof(sh->secret)) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "welby_zone \"%V\": RAND_bytes() failed",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_http_welby_zone_rbtree_insert);
    ngx_queue_init(&sh->queue);
    sh->evictions = 0;
    sh->magic = NGX_HTTP_WELBY_ZONE_MAGIC;

    len = sizeof(" in welby_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in welby_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is the normal case: it forgets, it does not complain */
    shpool->log_nomem = 0;

    shpool->data = sh;

    zone->sh = sh;
    zone->shpool = shpool;

    return NGX_OK;
}


uint32_t
ngx_http_welby_zone_space(ngx_str_t *kind, ngx_str_t *name)
{
    uint64_t  h;

    h = welby_hash64(WELBY_HASH64_INIT, kind->data, kind->len);
    h = welby_hash64(h, (u_char *) "", 1);
    h = welby_hash64(h, name->data, name->len);

    return welby_hash32_fold(h);
}


void
ngx_http_welby_zone_digest(ngx_shm_zone_t *shm_zone, const u_char *in,
    size_t len, u_char *out)
{
    ngx_http_welby_zone_t  *zone;

    zone = shm_zone->data;

    /* the secret is written before the workers start, and never again */

    welby_siphash128(zone->sh->secret, in, len, out);
}


ngx_int_t
ngx_http_welby_zone_update(ngx_shm_zone_t *zone, uint32_t space,
    ngx_str_t *key, size_t size, ngx_http_welby_zone_update_pt update,
    void *arg, ngx_log_t *log)
{
    return ngx_http_welby_zone_update_at(zone, space, key, size,
                                         ngx_http_welby_now_ns(), update,
                                         arg, log);
}


ngx_int_t
ngx_http_welby_zone_update_at(ngx_shm_zone_t *shm_zone, uint32_t space,
    ngx_str_t *key, size_t size, int64_t now,
    ngx_http_welby_zone_update_pt update, void *arg, ngx_log_t *log)
{
    return ngx_http_welby_zone_run(shm_zone, space, key, size, now, update,
                                   arg, log, 1);
}


ngx_int_t
ngx_http_welby_zone_update_live(ngx_shm_zone_t *shm_zone, uint32_t space,
    ngx_str_t *key, size_t size, int64_t now,
    ngx_http_welby_zone_update_pt update, void *arg, ngx_log_t *log)
{
    return ngx_http_welby_zone_run(shm_zone, space, key, size, now, update,
                                   arg, log, 0);
}


/* create 0: only a live record is updated; NGX_DECLINED without one */
static ngx_int_t
ngx_http_welby_zone_run(ngx_shm_zone_t *shm_zone, uint32_t space,
    ngx_str_t *key, size_t size, int64_t now,
    ngx_http_welby_zone_update_pt update, void *arg, ngx_log_t *log,
    ngx_uint_t create)
{
    u_char                         sp[4];
    int64_t                        expire;
    uint64_t                       h;
    ngx_uint_t                     units, fresh, evicted;
    ngx_rbtree_node_t             *node;
    ngx_http_welby_zone_t         *zone;
    ngx_http_welby_zone_record_t  *rec;

    units = (size + 7) / 8;

    if (key->len > 65535 || units > NGX_HTTP_WELBY_ZONE_UNITS_MAX) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "welby: a key of %uz bytes or a state of %uz bytes "
                      "is too large for welby_zone \"%V\"",
                      key->len, size, &shm_zone->shm.name);
        return NGX_ERROR;
    }

    zone = shm_zone->data;

    /* the same bytes on every platform, for a later store across nodes */

    sp[0] = (u_char) space;
    sp[1] = (u_char) (space >> 8);
    sp[2] = (u_char) (space >> 16);
    sp[3] = (u_char) (space >> 24);

    h = welby_hash64(WELBY_HASH64_INIT, sp, 4);
    h = welby_hash64(h, key->data, key->len);

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_welby_zone_expire(zone, now);

    rec = ngx_http_welby_zone_lookup(zone, (ngx_rbtree_key_t) h, space, key);
    fresh = 0;
    evicted = 0;

    if (rec && rec->units != units) {
        ngx_http_welby_zone_delete(zone, rec);
        rec = NULL;
    }

    if (!create && (rec == NULL || rec->expire <= now)) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    if (rec == NULL) {
        node = ngx_http_welby_zone_alloc(zone,
                                         ngx_http_welby_zone_record_size(
                                             units, key->len),
                                         now, &evicted);
        if (node == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "welby: no record could be had%s",
                          zone->shpool->log_ctx);
            return NGX_ERROR;
        }

        node->key = (ngx_rbtree_key_t) h;

        rec = ngx_http_welby_zone_node_record(node);
        rec->units = (u_char) units;
        rec->len = (u_short) key->len;
        rec->space = space;
        rec->expire = 0;

        ngx_memcpy(ngx_http_welby_zone_record_key(rec), key->data, key->len);

        ngx_rbtree_insert(&zone->sh->rbtree, node);
        ngx_queue_insert_head(&zone->sh->queue, &rec->queue);
    }

    if (rec->expire <= now) {
        ngx_memzero(rec->data, units * 8);
        fresh = 1;
    }

    expire = update(rec->data, fresh, now, arg);

    if (expire <= now) {
        /* nothing worth keeping: the memory goes back at once */
        ngx_http_welby_zone_delete(zone, rec);

    } else {
        rec->expire = expire;
        ngx_queue_remove(&rec->queue);
        ngx_queue_insert_head(&zone->sh->queue, &rec->queue);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (evicted) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "welby: welby_zone \"%V\" forgot %ui live records",
                       &shm_zone->shm.name, evicted);
    }

    return NGX_OK;
}


void
ngx_http_welby_zone_usage(ngx_shm_zone_t *shm_zone, size_t *used,
    size_t *size)
{
    ngx_http_welby_zone_t  *zone;

    zone = shm_zone->data;

    *size = shm_zone->shm.size;

    /* whole free pages: a page with one record in it counts as used */

    *used = zone->shpool
            ? *size - ngx_min(*size, zone->shpool->pfree * ngx_pagesize)
            : 0;
}


ngx_atomic_uint_t
ngx_http_welby_zone_evictions(ngx_shm_zone_t *shm_zone)
{
    ngx_http_welby_zone_t  *zone;

    zone = shm_zone->data;

    return zone->sh ? zone->sh->evictions : 0;
}


ngx_uint_t
ngx_http_welby_zone_is(ngx_shm_zone_t *shm_zone)
{
    return shm_zone->tag == (void *) &ngx_http_welby_zone_tag
           && shm_zone->data != NULL;
}


int64_t
ngx_http_welby_now_ns(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/* Records with the same hash are ordered by space, then key. */
static void
ngx_http_welby_zone_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t             **p;
    ngx_http_welby_zone_record_t   *rn;

    rn = ngx_http_welby_zone_node_record(node);

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            p = ngx_http_welby_zone_cmp(rn->space,
                                        ngx_http_welby_zone_record_key(rn),
                                        rn->len,
                                        ngx_http_welby_zone_node_record(temp))
                < 0 ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_welby_zone_cmp(uint32_t space, u_char *key, size_t len,
    ngx_http_welby_zone_record_t *rec)
{
    if (space != rec->space) {
        return space < rec->space ? -1 : 1;
    }

    return ngx_memn2cmp(key, ngx_http_welby_zone_record_key(rec), len,
                        rec->len);
}


static ngx_http_welby_zone_record_t *
ngx_http_welby_zone_lookup(ngx_http_welby_zone_t *zone, ngx_rbtree_key_t hash,
    uint32_t space, ngx_str_t *key)
{
    ngx_int_t                      rc;
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_http_welby_zone_record_t  *rec;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        rec = ngx_http_welby_zone_node_record(node);

        rc = ngx_http_welby_zone_cmp(space, key->data, key->len, rec);

        if (rc == 0) {
            return rec;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * An allocation that forgets the records used longest ago while the zone
 * is full, preferring one whose memory is the size asked for.
 */
static ngx_rbtree_node_t *
ngx_http_welby_zone_alloc(ngx_http_welby_zone_t *zone, size_t size,
    int64_t now, ngx_uint_t *evicted)
{
    size_t                         want;
    ngx_uint_t                     n, k;
    ngx_queue_t                   *q;
    ngx_rbtree_node_t             *node;
    ngx_http_welby_zone_record_t  *rec, *victim;

    want = ngx_http_welby_zone_slab_size(size);

    for (n = 0; n < NGX_HTTP_WELBY_ZONE_EVICT_MAX; n++) {

        node = ngx_slab_alloc_locked(zone->shpool, size);

        if (node != NULL || ngx_queue_empty(&zone->sh->queue)) {
            return node;
        }

        victim = NULL;
        q = ngx_queue_last(&zone->sh->queue);

        for (k = 0;
             k < NGX_HTTP_WELBY_ZONE_EVICT_SCAN
             && q != ngx_queue_sentinel(&zone->sh->queue);
             k++, q = ngx_queue_prev(q))
        {
            rec = ngx_queue_data(q, ngx_http_welby_zone_record_t, queue);

            if (victim == NULL) {
                victim = rec;
            }

            if (ngx_http_welby_zone_slab_size(
                    ngx_http_welby_zone_record_size(rec->units, rec->len))
                == want)
            {
                victim = rec;
                break;
            }
        }

        if (victim->expire > now) {
            zone->sh->evictions++;
            (*evicted)++;
        }

        ngx_http_welby_zone_delete(zone, victim);
    }

    return ngx_slab_alloc_locked(zone->shpool, size);
}


/* What the slab allocator takes for size bytes (ngx_slab.c's classes). */
static size_t
ngx_http_welby_zone_slab_size(size_t size)
{
    size_t  s;

    if (size > ngx_pagesize / 2) {
        return (size + ngx_pagesize - 1) / ngx_pagesize * ngx_pagesize;
    }

    for (s = 8; s < size; s <<= 1) { /* void */ }

    return s;
}


/* Up to two records whose time is over, from the LRU tail. */
static void
ngx_http_welby_zone_expire(ngx_http_welby_zone_t *zone, int64_t now)
{
    ngx_uint_t                     n;
    ngx_queue_t                   *q;
    ngx_http_welby_zone_record_t  *rec;

    for (n = 0; n < NGX_HTTP_WELBY_ZONE_EXPIRE; n++) {

        if (ngx_queue_empty(&zone->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&zone->sh->queue);
        rec = ngx_queue_data(q, ngx_http_welby_zone_record_t, queue);

        if (rec->expire > now - NGX_HTTP_WELBY_ZONE_KEEP) {
            return;
        }

        ngx_http_welby_zone_delete(zone, rec);
    }
}


static void
ngx_http_welby_zone_delete(ngx_http_welby_zone_t *zone,
    ngx_http_welby_zone_record_t *rec)
{
    ngx_rbtree_node_t  *node;

    node = ngx_http_welby_zone_record_node(rec);

    ngx_queue_remove(&rec->queue);
    ngx_rbtree_delete(&zone->sh->rbtree, node);
    ngx_slab_free_locked(zone->shpool, node);
}
