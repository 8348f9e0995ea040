/*
 * libFuzzer target: distinct counting (welby_distinct.c) against a model
 * set.  Input: exact= (1 byte), the bound (2 bytes), the key (16 bytes),
 * then requests: a byte (low 4 bits + 1 ids, the high bit: forced, as in
 * action=alert) and 2 bytes per id.  Besides crashes and sanitizer
 * reports it checks that
 *
 *   - a request that is SEEN, or OVER and not forced, changes nothing;
 *   - while the set is exact, the verdict is the model's: SEEN when it
 *     holds every id, OVER when its union with them passes the bound,
 *     and the count (and welby_distinct_count_with()) is the model's;
 *   - in the bitmap, the bits set never decrease.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "welby_distinct.h"


static int
in(const unsigned char *model, unsigned id)
{
    return (model[id >> 3] >> (id & 7)) & 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     rc;
    size_t                  i, k, n;
    uint64_t                h[16];
    unsigned                id[16], limit, exact, count, with, bits;
    welby_distinct_t        d, before;
    welby_distinct_bound_t  b;
    unsigned char           seen[16];
    static unsigned char    model[65536 / 8];

    if (size < 19) {
        return 0;
    }

    exact = data[0] % WELBY_DISTINCT_EXACT_MAX + 1;
    limit = (data[1] << 8 | data[2]) % WELBY_DISTINCT_LIMIT_MAX + 1;

    if (welby_distinct_bound(&b, limit, exact) != 0) {
        abort();
    }

    welby_distinct_init(&d, data + 3);
    memset(model, 0, sizeof(model));
    count = 0;

    for (i = 19; i < size; i += 1 + 2 * n) {
        n = (data[i] & 0x0f) + 1;

        if (i + 1 + 2 * n > size) {
            break;
        }

        with = count;

        for (k = 0; k < n; k++) {
            id[k] = data[i + 1 + 2 * k] << 8 | data[i + 2 + 2 * k];
            h[k] = welby_distinct_hash(&d, (unsigned char *) &id[k],
                                       sizeof(unsigned));
            seen[k] = (unsigned char) in(model, id[k]);

            /* the union with the request, each id once */
            if (!seen[k]) {
                with++;
                model[id[k] >> 3] |= (unsigned char) (1 << (id[k] & 7));
            }
        }

        /* undo: the model takes the request only if the set does */
        for (k = 0; k < n; k++) {
            if (!seen[k]) {
                model[id[k] >> 3] &= (unsigned char) ~(1 << (id[k] & 7));
            }
        }

        before = d;
        bits = d.n;

        if (welby_distinct_exact(&d)
            && welby_distinct_count_with(&d, h, n, &b) != with)
        {
            abort();
        }

        rc = welby_distinct_add(&d, h, n, &b, data[i] & 0x80);

        if ((rc == WELBY_DISTINCT_SEEN
             || (rc == WELBY_DISTINCT_OVER && !(data[i] & 0x80)))
            && memcmp(&d, &before, sizeof(welby_distinct_t)) != 0)
        {
            abort();
        }

        if (welby_distinct_exact(&before)) {
            if ((rc == WELBY_DISTINCT_SEEN) != (with == count)) {
                abort();
            }

            if (with != count && (rc == WELBY_DISTINCT_OVER) != (with > limit))
            {
                abort();
            }

        } else if (d.n < bits) {
            abort();
        }

        if (rc == WELBY_DISTINCT_ADDED
            || (rc == WELBY_DISTINCT_OVER && (data[i] & 0x80)))
        {
            for (k = 0; k < n; k++) {
                model[id[k] >> 3] |= (unsigned char) (1 << (id[k] & 7));
            }

            count = with;
        }

        if (welby_distinct_exact(&d) && welby_distinct_estimate(&d) != count) {
            abort();
        }
    }

    return 0;
}
