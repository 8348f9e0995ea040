/*
 * Unit tests: distinct counting (welby_distinct.c): the bounds, the exact
 * part, and the sketch's error against its documented standard error
 * sqrt(m (e^t - t - 1)), t = n / m, over many counts and keys.  SipHash
 * is tested in hash.c.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tap.h"
#include "welby_distinct.h"

#define SEEDS  200


static uint64_t
splitmix(uint64_t *s)
{
    uint64_t  z;

    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}


static void
init(welby_distinct_t *d, uint64_t seed)
{
    int            i;
    uint64_t       s, r;
    unsigned char  key[16];

    s = seed * 7919 + 1;

    for (i = 0; i < 16; i += 8) {
        r = splitmix(&s);
        memcpy(key + i, &r, 8);
    }

    welby_distinct_init(d, key);
}


static uint64_t
id_hash(welby_distinct_t *d, uint64_t seed, unsigned i)
{
    int   len;
    char  id[64];

    len = snprintf(id, sizeof(id), "pat-%llu-%u", (unsigned long long) seed,
                   i);
    return welby_distinct_hash(d, (unsigned char *) id, (size_t) len);
}


static double
sigma(double n)
{
    double  m, t;

    m = WELBY_DISTINCT_BITS;
    t = n / m;
    return sqrt(m * (exp(t) - t - 1));
}


static void
test_bounds(void)
{
    welby_distinct_bound_t  b;

    ok(welby_distinct_bound(&b, 0, 32) == -1, "a bound of 0 is refused");
    ok(welby_distinct_bound(&b, WELBY_DISTINCT_LIMIT_MAX + 1, 32) == -1,
       "a bound above %d is refused", WELBY_DISTINCT_LIMIT_MAX);
    ok(welby_distinct_bound(&b, 100, 0) == -1, "exact=0 is refused");
    ok(welby_distinct_bound(&b, 100, WELBY_DISTINCT_EXACT_MAX + 1) == -1,
       "exact above %d is refused", WELBY_DISTINCT_EXACT_MAX);

    ok(welby_distinct_bound(&b, 40, 4) == 0 && b.bits == 40,
       "40 ids: 40 bits (41 bits estimate 41.4)");
    ok(welby_distinct_bound(&b, 1000, 32) == 0 && b.bits == 791,
       "1000 ids: 791 bits (the bitmap 39%% full)");
}


static void
test_exact(void)
{
    int                     rc, over_ok, seen_ok;
    uint64_t                h[3];
    unsigned                i;
    welby_distinct_t        d;
    welby_distinct_bound_t  b;

    (void) welby_distinct_bound(&b, 8, 8);
    init(&d, 1);

    over_ok = 1;

    for (i = 0; i < 8; i++) {
        h[0] = id_hash(&d, 1, i);
        if (welby_distinct_add(&d, h, 1, &b, 0) != WELBY_DISTINCT_ADDED) {
            over_ok = 0;
        }
    }

    ok(over_ok && welby_distinct_estimate(&d) == 8 && welby_distinct_exact(&d),
       "exact=8 patients=8: eight ids added, counted 8, still exact");

    h[0] = id_hash(&d, 1, 8);
    rc = welby_distinct_add(&d, h, 1, &b, 0);
    ok(rc == WELBY_DISTINCT_OVER && welby_distinct_estimate(&d) == 8,
       "the ninth is over the bound and not added");

    seen_ok = 1;

    for (i = 0; i < 8; i++) {
        h[0] = id_hash(&d, 1, i);
        if (welby_distinct_add(&d, h, 1, &b, 0) != WELBY_DISTINCT_SEEN) {
            seen_ok = 0;
        }
    }

    ok(seen_ok && welby_distinct_estimate(&d) == 8,
       "each of the eight again: seen, the count stays 8");

    h[0] = id_hash(&d, 1, 2);
    h[1] = id_hash(&d, 1, 9);
    ok(welby_distinct_add(&d, h, 2, &b, 0) == WELBY_DISTINCT_OVER
       && welby_distinct_estimate(&d) == 8,
       "a request with a seen and a new id: over, neither added");

    h[0] = id_hash(&d, 1, 3);
    h[1] = id_hash(&d, 1, 3);
    h[2] = id_hash(&d, 1, 5);
    ok(welby_distinct_add(&d, h, 3, &b, 0) == WELBY_DISTINCT_SEEN,
       "a request naming seen ids, one twice: seen");

    h[0] = id_hash(&d, 1, 8);
    h[1] = id_hash(&d, 1, 9);
    h[2] = id_hash(&d, 1, 3);
    ok(welby_distinct_count_with(&d, h, 1, &b) == 9
       && welby_distinct_count_with(&d, h, 3, &b) == 10
       && welby_distinct_estimate(&d) == 8,
       "the count with the ninth is 9, with a tenth and a seen one 10; "
       "the set is unchanged");

    ok(welby_distinct_add(&d, h, 1, &b, 1) == WELBY_DISTINCT_OVER
       && welby_distinct_estimate(&d) == 9 && !welby_distinct_exact(&d),
       "forced (alert): the ninth added, counted 9 by the bitmap");

    (void) welby_distinct_bound(&b, 5, 8);
    init(&d, 2);

    h[0] = id_hash(&d, 2, 0);
    h[1] = id_hash(&d, 2, 1);
    h[2] = id_hash(&d, 2, 2);
    rc = welby_distinct_add(&d, h, 3, &b, 0);
    h[0] = id_hash(&d, 2, 3);
    h[1] = id_hash(&d, 2, 4);
    ok(rc == WELBY_DISTINCT_ADDED
       && welby_distinct_add(&d, h, 2, &b, 0) == WELBY_DISTINCT_ADDED
       && welby_distinct_estimate(&d) == 5,
       "patients=5: three then two in two requests make 5");

    h[0] = id_hash(&d, 2, 1);
    h[1] = id_hash(&d, 2, 5);
    ok(welby_distinct_add(&d, h, 2, &b, 0) == WELBY_DISTINCT_OVER
       && welby_distinct_estimate(&d) == 5,
       "a sixth next to a seen one: over, the count stays 5");
}


/* Re-adding any of the ids already in the set never raises it. */
static void
test_duplicates(void)
{
    int                     bad;
    uint64_t                s, seed, h[4];
    unsigned                n, i, j, before, bits;
    welby_distinct_t        d;
    welby_distinct_bound_t  b;

    static const unsigned  ns[] = { 5, 32, 33, 100, 500, 1000 };

    (void) welby_distinct_bound(&b, 1000, 32);
    bad = 0;

    for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        n = ns[i];

        for (seed = 0; seed < 20; seed++) {
            init(&d, seed + 100);

            for (j = 0; j < n; j++) {
                h[0] = id_hash(&d, seed, j);
                (void) welby_distinct_add(&d, h, 1, &b, 1);
            }

            before = welby_distinct_estimate(&d);
            bits = d.n;
            s = seed;

            for (j = 0; j < 500; j++) {
                h[0] = id_hash(&d, seed, (unsigned) (splitmix(&s) % n));
                h[1] = id_hash(&d, seed, (unsigned) (splitmix(&s) % n));
                h[2] = id_hash(&d, seed, (unsigned) (splitmix(&s) % n));
                h[3] = h[0];

                if (welby_distinct_add(&d, h, 1 + j % 4, &b, 0)
                    != WELBY_DISTINCT_SEEN
                    || welby_distinct_estimate(&d) != before || d.n != bits)
                {
                    bad++;
                }
            }
        }
    }

    ok(bad == 0, "6 counts x 20 keys x 500 requests of ids already in: "
       "always seen, never raised (%d raised)", bad);
}


/*
 * The estimate after n distinct ids, over SEEDS keys: within 5 sigma
 * every time, within 3 sigma in at least 99% (a normal error leaves 0.27%
 * outside), its mean within 3 standard errors of the mean (plus half an
 * id of rounding), its spread within 25% of sigma.
 */
static void
test_estimate(void)
{
    double                  err, sum, sum2, sd, mean, sg;
    uint64_t                seed, h[1];
    unsigned                n, i, j, out3, out5;
    welby_distinct_t        d;
    welby_distinct_bound_t  b;

    static const unsigned  ns[] = { 40, 60, 100, 200, 350, 500, 750, 1000 };

    (void) welby_distinct_bound(&b, 1000, 32);

    for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        n = ns[i];
        sg = sigma(n);
        sum = sum2 = 0;
        out3 = out5 = 0;

        for (seed = 0; seed < SEEDS; seed++) {
            init(&d, seed * 31 + n);

            for (j = 0; j < n; j++) {
                h[0] = id_hash(&d, seed, j);
                (void) welby_distinct_add(&d, h, 1, &b, 1);
            }

            err = (double) welby_distinct_estimate(&d) - n;
            sum += err;
            sum2 += err * err;
            out3 += fabs(err) > 3 * sg + 0.5;
            out5 += fabs(err) > 5 * sg + 1;
        }

        mean = sum / SEEDS;
        sd = sqrt(sum2 / SEEDS - mean * mean);

        ok(out5 == 0 && out3 <= SEEDS / 100,
           "n=%u: %d keys, sigma %.2f (%.2f%%): %u outside 3 sigma, "
           "%u outside 5", n, SEEDS, sg, 100 * sg / n, out3, out5);
        ok(fabs(mean) <= 3 * sg / sqrt(SEEDS) + 0.5,
           "n=%u: mean error %.3f (bias bound %.3f)", n, mean,
           3 * sg / sqrt(SEEDS) + 0.5);

        if (sg >= 1) {
            ok(sd >= 0.75 * sg && sd <= 1.25 * sg,
               "n=%u: spread %.2f, sigma %.2f", n, sd, sg);
        }
    }
}


/*
 * What the detector decides: ids one per request until the first one
 * over the bound; how many passed before it (collisions count: they pass
 * as seen) against the bound, with the same tolerances.
 */
static void
test_decision(void)
{
    int                     rc;
    double                  err, sum, sum2, sd, mean, sg;
    uint64_t                seed, h[1];
    unsigned                n, i, j, out3, out5, passed;
    welby_distinct_t        d;
    welby_distinct_bound_t  b;

    static const unsigned  ns[] = { 20, 32, 33, 40, 100, 250, 500, 1000 };

    for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        n = ns[i];
        (void) welby_distinct_bound(&b, n, 32);
        sg = sigma(n);
        sum = sum2 = 0;
        out3 = out5 = 0;

        for (seed = 0; seed < SEEDS; seed++) {
            init(&d, seed * 131 + n);
            passed = 0;
            rc = WELBY_DISTINCT_SEEN;

            for (j = 0; j < 4 * n; j++) {
                h[0] = id_hash(&d, seed, j);
                rc = welby_distinct_add(&d, h, 1, &b, 0);

                if (rc == WELBY_DISTINCT_OVER) {
                    break;
                }

                passed++;
            }

            if (rc == WELBY_DISTINCT_OVER && n <= 32
                && welby_distinct_count_with(&d, h, 1, &b) != n + 1)
            {
                sum2 += 1e9;
            }

            err = (double) passed - n;
            sum += err;
            sum2 += err * err;
            out3 += fabs(err) > 3 * sg + 1;
            out5 += fabs(err) > 5 * sg + 1;
        }

        mean = sum / SEEDS;
        sd = sqrt(sum2 / SEEDS - mean * mean);

        if (n <= 32) {
            ok(sum2 == 0, "patients=%u exact=32: exactly %u pass, the next "
               "is over and counted %u, for every key", n, n, n + 1);
            continue;
        }

        ok(out5 == 0 && out3 <= SEEDS / 100,
           "patients=%u: first over after %.1f on average, sigma %.2f: "
           "%u outside 3 sigma, %u outside 5", n, n + mean, sg, out3, out5);
        ok(fabs(mean) <= 3 * sg / sqrt(SEEDS) + 1,
           "patients=%u: mean error %.3f (bound %.3f)", n, mean,
           3 * sg / sqrt(SEEDS) + 1);

        if (sg >= 1) {
            ok(sd >= 0.75 * sg && sd <= 1.25 * sg,
               "patients=%u: spread %.2f, sigma %.2f", n, sd, sg);
        }
    }
}


int
main(void)
{
    test_bounds();
    test_exact();
    test_duplicates();
    test_estimate();
    test_decision();

    return done_testing();
}
