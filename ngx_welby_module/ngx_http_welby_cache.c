/*
 * The verified-token cache: a shared-memory zone (slab, rbtree, LRU queue,
 * as in the limit_req module) keyed by the SHA-256 of the token, holding
 * the claims later steps need.  A full zone evicts the least recently used
 * tokens; it never refuses a valid one.  The token itself is not stored.
 */

#include "ngx_http_welby_module.h"


/* expired or least recently used entries freed per allocation failure */
#define NGX_HTTP_WELBY_CACHE_EVICT  16


/*
 * The doorkeeper: a token is stored on its second verification, not its
 * first, so a stream of tokens used once (a client that gets a new one
 * per request, or a flood of them) neither pays for being stored nor
 * evicts the tokens that are used again.  A slot holds a fingerprint of
 * the last token seen there; workers read and write it without the lock,
 * and a lost race only costs one more verification.
 */
typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;
    volatile uint32_t              *door;
    ngx_uint_t                      door_mask;
} ngx_http_welby_cache_shctx_t;


typedef struct {
    ngx_http_welby_cache_shctx_t   *sh;
    ngx_slab_pool_t                *shpool;
    ngx_str_t                       name;
    size_t                          size;
} ngx_http_welby_cache_t;


typedef struct ngx_http_welby_cache_node_s  ngx_http_welby_cache_node_t;


/*
 * The tree holds small index nodes, apart from the entries: they share a
 * few slab pages, so a lookup in a large zone walks memory that stays in
 * the CPU caches and TLB instead of touching one entry page per level.
 */
typedef struct {
    ngx_rbtree_node_t               node;   /* key: the hash's first bytes */
    ngx_http_welby_cache_node_t    *entry;
} ngx_http_welby_cache_index_t;


/*
 * Strings are stored in data; in the stored copy, a welby_str_t's data is
 * its offset into data plus one, or NULL when absent.
 */
struct ngx_http_welby_cache_node_s {
    ngx_http_welby_cache_index_t   *index;
    ngx_queue_t                     queue;
    time_t                          expire;
    u_char                          hash[32];
    u_char                          thumbprint[32];
    u_char                          rules_hash[32];
    welby_claims_t                  claims;
    welby_str_t                     kid;
    welby_str_t                     typ;
    welby_str_t                     payload;
    size_t                          len;
    u_char                          data[1];
};


static ngx_int_t ngx_http_welby_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_welby_cache_node_t *ngx_http_welby_cache_lookup(
    ngx_http_welby_cache_t *cache, u_char *hash);
static void ngx_http_welby_cache_expire(ngx_http_welby_cache_t *cache,
    ngx_uint_t force);
static void ngx_http_welby_cache_delete(ngx_http_welby_cache_t *cache,
    ngx_http_welby_cache_node_t *cn);
static void *ngx_http_welby_cache_alloc(ngx_http_welby_cache_t *cache,
    size_t size);
static volatile uint32_t *ngx_http_welby_cache_door(
    ngx_http_welby_main_conf_t *wmcf, u_char *hash, uint32_t *fp);
static ngx_uint_t ngx_http_welby_cache_strings(welby_claims_t *claims,
    welby_str_t **kid, welby_str_t **typ, welby_str_t **payload,
    welby_str_t **out);


/* welby_token_cache zone=<name>:<size> [ttl=<time>] */
char *
ngx_http_welby_token_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    u_char                  *p;
    time_t                   ttl;
    ssize_t                  size;
    ngx_str_t               *value, name, s;
    ngx_uint_t               i;
    ngx_shm_zone_t          *shm_zone;
    ngx_http_welby_cache_t  *cache;

    if (wmcf->token_cache) {
        return "is duplicate";
    }

    value = cf->args->elts;

    name.len = 0;
    size = 0;
    ttl = 300;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {

            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 1);

            if (ttl == (time_t) NGX_ERROR || ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid ttl \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_welby_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    cache->name = name;
    cache->size = size;

    shm_zone->init = ngx_http_welby_cache_init_zone;
    shm_zone->data = cache;

    wmcf->token_cache = shm_zone;
    wmcf->token_cache_ttl = ttl;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_welby_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_welby_cache_t  *ocache = data;

    size_t                   len;
    ngx_uint_t               n;
    ngx_http_welby_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        /*
         * A reload keeps the cached tokens: each entry carries the key
         * and the rules it was checked with, and is used only while both
         * are still configured.
         */
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_welby_cache_shctx_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_rbtree_insert_value);

    /* a slot per 256 bytes of zone, a power of two */

    for (n = 64; n * 2 <= shm_zone->shm.size / 256; n *= 2) { /* void */ }

    cache->sh->door = ngx_slab_calloc(cache->shpool, n * sizeof(uint32_t));
    if (cache->sh->door == NULL) {
        return NGX_ERROR;
    }

    cache->sh->door_mask = n - 1;

    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in welby_token_cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in welby_token_cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * NGX_OK with the claims copied into the request pool and ctx, the
 * header's kid and typ, and the key and rules the token was checked with;
 * NGX_DECLINED when the token is not cached (or expired).
 */
ngx_int_t
ngx_http_welby_cache_get(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, u_char *hash, ngx_http_welby_ctx_t *ctx,
    welby_jose_header_t *header, u_char *thumbprint, u_char *rules_hash)
{
    u_char                       *data;
    ngx_uint_t                    i, n;
    welby_str_t                  *strs[WELBY_AUD_MAX + 16];
    welby_str_t                  *kid, *typ, *payload;
    ngx_http_welby_cache_t       *cache;
    ngx_http_welby_cache_node_t  *cn;

    cache = wmcf->token_cache->data;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_welby_cache_lookup(cache, hash);

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    if (cn->expire <= ngx_time()) {
        ngx_http_welby_cache_delete(cache, cn);
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    data = ngx_pnalloc(r->pool, cn->len ? cn->len : 1);
    if (data == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_memcpy(data, cn->data, cn->len);

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ctx->claims = cn->claims;
    header->kid = cn->kid;
    header->typ = cn->typ;
    ctx->payload = cn->payload;

    ngx_memcpy(thumbprint, cn->thumbprint, 32);
    ngx_memcpy(rules_hash, cn->rules_hash, 32);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    header->alg = WELBY_ALG_UNKNOWN;

    /* the claims' strings, from offsets back to pointers */

    kid = &header->kid;
    typ = &header->typ;
    payload = &ctx->payload;

    n = ngx_http_welby_cache_strings(&ctx->claims, &kid, &typ, &payload,
                                     strs);

    for (i = 0; i < n; i++) {
        if (strs[i]->data) {
            strs[i]->data = data + ((uintptr_t) strs[i]->data - 1);
        }
    }

    return NGX_OK;
}


void
ngx_http_welby_cache_put(ngx_http_request_t *r,
    ngx_http_welby_main_conf_t *wmcf, u_char *hash, welby_token_t *token,
    ngx_http_welby_issuer_t *issuer, const welby_key_t *key)
{
    u_char                       *p;
    size_t                        len;
    time_t                        expire;
    ngx_uint_t                     i, n;
    welby_str_t                   *strs[WELBY_AUD_MAX + 16];
    welby_str_t                   *kid, *typ, *payload;
    ngx_http_welby_cache_t        *cache;
    ngx_http_welby_cache_node_t   *cn;
    ngx_http_welby_cache_index_t  *ix;

    cache = wmcf->token_cache->data;

    /* never beyond the token's own expiry */

    expire = ngx_time() + wmcf->token_cache_ttl;

    if ((token->claims.present & WELBY_CLAIM_EXP)
        && token->claims.exp < (int64_t) expire)
    {
        expire = (time_t) token->claims.exp;
    }

    if (expire <= ngx_time()) {
        return;
    }

    kid = &token->header.kid;
    typ = &token->header.typ;
    payload = &token->payload;

    n = ngx_http_welby_cache_strings(&token->claims, &kid, &typ, &payload,
                                     strs);

    len = 0;

    for (i = 0; i < n; i++) {
        len += strs[i]->len;
    }

    /*
     * No second lookup here: the miss was seen moments ago, and a walk of
     * a large cold tree costs more than the rare duplicate left by two
     * workers verifying the same new token at once, which only waits for
     * the LRU tail.
     */

    ngx_shmtx_lock(&cache->shpool->mutex);

    ngx_http_welby_cache_expire(cache, 0);

    cn = ngx_http_welby_cache_alloc(cache,
                                    sizeof(ngx_http_welby_cache_node_t) + len);
    ix = cn ? ngx_http_welby_cache_alloc(cache,
                                         sizeof(ngx_http_welby_cache_index_t))
            : NULL;

    if (ix == NULL) {
        if (cn) {
            ngx_slab_free_locked(cache->shpool, cn);
        }

        /* the token was verified; it just is not remembered */
        ngx_shmtx_unlock(&cache->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "welby: token not cached, zone \"%V\" is full",
                      &cache->name);
        return;
    }

    ngx_memcpy(&ix->node.key, hash, sizeof(ngx_rbtree_key_t));
    ix->entry = cn;
    cn->index = ix;

    ngx_memcpy(cn->hash, hash, 32);
    ngx_memcpy(cn->thumbprint, key->thumbprint, 32);
    ngx_memcpy(cn->rules_hash, issuer->rules_hash, 32);

    cn->expire = expire;
    cn->claims = token->claims;
    cn->kid = token->header.kid;
    cn->typ = token->header.typ;
    cn->payload = token->payload;
    cn->len = len;

    /* the same fields, in the stored copy */

    kid = &cn->kid;
    typ = &cn->typ;
    payload = &cn->payload;

    n = ngx_http_welby_cache_strings(&cn->claims, &kid, &typ, &payload,
                                     strs);

    p = cn->data;

    for (i = 0; i < n; i++) {
        if (strs[i]->data == NULL) {
            continue;
        }

        ngx_memcpy(p, strs[i]->data, strs[i]->len);
        strs[i]->data = (const u_char *) (uintptr_t) (p - cn->data + 1);
        p += strs[i]->len;
    }

    ngx_rbtree_insert(&cache->sh->rbtree, &ix->node);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/*
 * 1 when a verified token is seen for the second time: store it then.
 * The fingerprint stays, so that ngx_http_welby_cache_seen() lets the
 * lookups of this token through.
 */
ngx_uint_t
ngx_http_welby_cache_admit(ngx_http_welby_main_conf_t *wmcf, u_char *hash)
{
    uint32_t            fp;
    volatile uint32_t  *slot;

    slot = ngx_http_welby_cache_door(wmcf, hash, &fp);

    if (*slot == fp) {
        return 1;
    }

    *slot = fp;

    return 0;
}


/*
 * 0 when the token cannot be in the zone: its fingerprint is not in the
 * doorkeeper, so it was not verified lately.  A token used once then
 * costs no walk of a large, cold tree.  (A stored token whose slot was
 * taken by another is verified again, and stored again.)
 */
ngx_uint_t
ngx_http_welby_cache_seen(ngx_http_welby_main_conf_t *wmcf, u_char *hash)
{
    uint32_t  fp;

    return *ngx_http_welby_cache_door(wmcf, hash, &fp) == fp;
}


static volatile uint32_t *
ngx_http_welby_cache_door(ngx_http_welby_main_conf_t *wmcf, u_char *hash,
    uint32_t *fp)
{
    uint32_t                       i;
    ngx_http_welby_cache_shctx_t  *sh;

    sh = ((ngx_http_welby_cache_t *) wmcf->token_cache->data)->sh;

    ngx_memcpy(&i, hash + 8, sizeof(uint32_t));
    ngx_memcpy(fp, hash + 12, sizeof(uint32_t));

    *fp |= 1;    /* 0 is an empty slot */

    return &sh->door[i & sh->door_mask];
}


/* Every string a cache entry holds, in one fixed order. */
static ngx_uint_t
ngx_http_welby_cache_strings(welby_claims_t *claims, welby_str_t **kid,
    welby_str_t **typ, welby_str_t **payload, welby_str_t **out)
{
    ngx_uint_t  i, n;

    n = 0;

    out[n++] = &claims->iss;
    out[n++] = &claims->sub;
    out[n++] = &claims->client_id;
    out[n++] = &claims->jti;
    out[n++] = &claims->scope;
    out[n++] = &claims->patient;
    out[n++] = &claims->fhir_user;
    out[n++] = &claims->amr;
    out[n++] = &claims->patients;

    for (i = 0; i < claims->naud && i < WELBY_AUD_MAX; i++) {
        out[n++] = &claims->aud[i];
    }

    out[n++] = *kid;
    out[n++] = *typ;
    out[n++] = *payload;

    return n;
}


static ngx_http_welby_cache_node_t *
ngx_http_welby_cache_lookup(ngx_http_welby_cache_t *cache, u_char *hash)
{
    ngx_rbtree_key_t               key;
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_http_welby_cache_node_t   *cn;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        cn = ((ngx_http_welby_cache_index_t *) node)->entry;

        if (ngx_memcmp(hash, cn->hash, 32) == 0) {
            return cn;
        }

        /*
         * Two tokens whose hashes share the first bytes: a miss here only
         * costs a verification, never accepts a token.
         */
        node = node->right;
    }

    return NULL;
}


/*
 * Frees expired entries from the LRU tail; with force, also live ones,
 * oldest first.
 */
static void
ngx_http_welby_cache_expire(ngx_http_welby_cache_t *cache, ngx_uint_t force)
{
    time_t                        now;
    ngx_uint_t                    n;
    ngx_queue_t                  *q;
    ngx_http_welby_cache_node_t  *cn;

    now = ngx_time();

    for (n = 0; n < NGX_HTTP_WELBY_CACHE_EVICT; n++) {

        if (ngx_queue_empty(&cache->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&cache->sh->queue);
        cn = ngx_queue_data(q, ngx_http_welby_cache_node_t, queue);

        /* without force, as limit_req: two expired entries at most */

        if (!force && (n == 2 || cn->expire > now)) {
            return;
        }

        ngx_http_welby_cache_delete(cache, cn);
    }
}


static void
ngx_http_welby_cache_delete(ngx_http_welby_cache_t *cache,
    ngx_http_welby_cache_node_t *cn)
{
    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &cn->index->node);
    ngx_slab_free_locked(cache->shpool, cn->index);
    ngx_slab_free_locked(cache->shpool, cn);
}


/* An allocation that evicts the oldest entries once when the zone is full. */
static void *
ngx_http_welby_cache_alloc(ngx_http_welby_cache_t *cache, size_t size)
{
    void  *p;

    p = ngx_slab_alloc_locked(cache->shpool, size);

    if (p == NULL) {
        ngx_http_welby_cache_expire(cache, 1);
        p = ngx_slab_alloc_locked(cache->shpool, size);
    }

    return p;
}
