/*
 * Distinct counting in a fixed size (welby_distinct.h).
 */

#include <math.h>
#include <string.h>

#include "welby_distinct.h"
#include "welby_hash.h"


static size_t welby_distinct_fresh(const welby_distinct_t *d,
    const uint64_t *h, size_t n);
static int welby_distinct_insert(welby_distinct_t *d, uint64_t h,
    unsigned exact);
static int welby_distinct_set_bit(welby_distinct_t *d, uint64_t h);
static double welby_distinct_lc(unsigned bits);


int
welby_distinct_bound(welby_distinct_bound_t *b, unsigned limit,
    unsigned exact)
{
    unsigned  k;

    if (limit == 0 || limit > WELBY_DISTINCT_LIMIT_MAX
        || exact == 0 || exact > WELBY_DISTINCT_EXACT_MAX)
    {
        return -1;
    }

    b->limit = limit;
    b->exact = exact;

    /* the most bits whose estimate rounds to limit or less */

    for (k = 0; k + 1 < WELBY_DISTINCT_BITS; k++) {
        if (welby_distinct_lc(k + 1) >= limit + 0.5) {
            break;
        }
    }

    b->bits = k;

    return 0;
}


void
welby_distinct_init(welby_distinct_t *d, const unsigned char *key)
{
    memset(d, 0, sizeof(welby_distinct_t));

    d->key[0] = welby_le64(key);
    d->key[1] = welby_le64(key + 8);
}


uint64_t
welby_distinct_hash(const welby_distinct_t *d, const unsigned char *id,
    size_t len)
{
    return welby_siphash(d->key, id, len);
}


int
welby_distinct_add(welby_distinct_t *d, const uint64_t *h, size_t n,
    const welby_distinct_bound_t *b, int force)
{
    int               grew, over;
    size_t            i, fresh;
    welby_distinct_t  next;

    /*
     * While the set is exact, so is the count of this request's new ids,
     * even of the one that turns the set into the bitmap: a bound within
     * the exact part is kept exactly.
     */

    fresh = 0;

    if (!d->sketch) {
        fresh = welby_distinct_fresh(d, h, n);

        if (fresh == 0) {
            return WELBY_DISTINCT_SEEN;
        }
    }

    /* on a copy: a request whose ids would pass the bound adds none */

    next = *d;
    grew = 0;

    for (i = 0; i < n; i++) {
        grew |= welby_distinct_insert(&next, h[i], b->exact);
    }

    if (!grew) {
        return WELBY_DISTINCT_SEEN;
    }

    over = d->sketch ? next.n > b->bits : d->n + fresh > b->limit;

    if (over && !force) {
        return WELBY_DISTINCT_OVER;
    }

    *d = next;

    return over ? WELBY_DISTINCT_OVER : WELBY_DISTINCT_ADDED;
}


unsigned
welby_distinct_count_with(const welby_distinct_t *d, const uint64_t *h,
    size_t n, const welby_distinct_bound_t *b)
{
    size_t            i;
    welby_distinct_t  next;

    if (!d->sketch) {
        return d->n + (unsigned) welby_distinct_fresh(d, h, n);
    }

    next = *d;

    for (i = 0; i < n; i++) {
        (void) welby_distinct_insert(&next, h[i], b->exact);
    }

    return welby_distinct_estimate(&next);
}


int
welby_distinct_exact(const welby_distinct_t *d)
{
    return !d->sketch;
}


unsigned
welby_distinct_estimate(const welby_distinct_t *d)
{
    double  e;

    if (!d->sketch) {
        return d->n;
    }

    e = welby_distinct_lc(d->n);

    /* a full bitmap says only "very many" */

    if (e > 1e6) {
        return 1000000;
    }

    return (unsigned) (e + 0.5);
}


/* The ids of h[0..n-1] an exact set does not hold, each counted once. */
static size_t
welby_distinct_fresh(const welby_distinct_t *d, const uint64_t *h, size_t n)
{
    size_t  i, j, fresh;

    fresh = 0;

    for (i = 0; i < n; i++) {
        for (j = 0; j < d->n && d->u.hash[j] != h[i]; j++) {
            /* void */
        }

        if (j < d->n) {
            continue;
        }

        for (j = 0; j < i && h[j] != h[i]; j++) {
            /* void */
        }

        if (j == i) {
            fresh++;
        }
    }

    return fresh;
}


/* 1 when the set grew: a new hash, or a new bit. */
static int
welby_distinct_insert(welby_distinct_t *d, uint64_t h, unsigned exact)
{
    uint32_t  i, n;
    uint64_t  held[WELBY_DISTINCT_EXACT_MAX];

    if (d->sketch) {
        return welby_distinct_set_bit(d, h);
    }

    for (i = 0; i < d->n; i++) {
        if (d->u.hash[i] == h) {
            return 0;
        }
    }

    if (d->n < exact) {
        d->u.hash[d->n++] = h;
        return 1;
    }

    /* one more than the exact part holds: its hashes become bits */

    n = d->n;
    memcpy(held, d->u.hash, n * sizeof(uint64_t));
    memset(&d->u, 0, sizeof(d->u));

    d->n = 0;
    d->sketch = 1;

    for (i = 0; i < n; i++) {
        (void) welby_distinct_set_bit(d, held[i]);
    }

    (void) welby_distinct_set_bit(d, h);

    /* a new id, whether or not its bit was free */
    return 1;
}


static int
welby_distinct_set_bit(welby_distinct_t *d, uint64_t h)
{
    uint64_t  bit;
    unsigned  i;

    i = (unsigned) (h & (WELBY_DISTINCT_BITS - 1));
    bit = (uint64_t) 1 << (i & 63);

    if (d->u.bits[i >> 6] & bit) {
        return 0;
    }

    d->u.bits[i >> 6] |= bit;
    d->n++;

    return 1;
}


/* The linear-counting estimate of n for `bits` set bits. */
static double
welby_distinct_lc(unsigned bits)
{
    if (bits >= WELBY_DISTINCT_BITS) {
        return HUGE_VAL;
    }

    return -(double) WELBY_DISTINCT_BITS
           * log1p(-(double) bits / WELBY_DISTINCT_BITS);
}
