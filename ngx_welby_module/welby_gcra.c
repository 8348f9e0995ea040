/*
 * GCRA and fixed-window quotas in integer nanoseconds (see welby_gcra.h).
 *
 * A time of GCRA is kept as (ns, frac): ns + frac / n nanoseconds, with
 * 0 <= frac < n, so adding T = period / n is exact for every n.
 */

#include "welby_gcra.h"


static int welby_gcra_bound(const welby_gcra_limit_t *l,
    const welby_gcra_state_t *s, int64_t clock, int64_t *mt, uint64_t *mf);
static int64_t welby_gcra_ceil_s(int64_t ns);
static void welby_gcra_advance(const welby_gcra_rate_t *r, int64_t *tat,
    uint64_t *frac, uint64_t k);
static int64_t welby_gcra_conform_at(const welby_gcra_rate_t *r, int64_t tat,
    uint64_t frac);
static int welby_gcra_rate(const welby_gcra_rate_t *r,
    const welby_gcra_state_t *s, int64_t now, welby_gcra_window_t *w,
    int64_t *tat, uint64_t *frac);
static void welby_gcra_quota(uint64_t n, int64_t size, int64_t start,
    uint64_t count, int64_t now, welby_gcra_window_t *w, int64_t *nstart,
    uint64_t *ncount);


int
welby_gcra_init(welby_gcra_rate_t *rate, uint64_t n, int64_t period,
    uint64_t burst)
{
    uint64_t  bp;

    if (n == 0 || n > WELBY_GCRA_N_MAX || period <= 0
        || period > WELBY_GCRA_HOUR || burst > WELBY_GCRA_BURST_MAX)
    {
        return -1;
    }

    /* at most 10^6 * 3600 * 10^9 = 3.6 * 10^18: no overflow */
    bp = burst * (uint64_t) period;

    rate->n = n;
    rate->period = period;
    rate->burst = burst;
    rate->t_q = period / (int64_t) n;
    rate->t_r = (uint64_t) period % n;
    rate->tau_q = (int64_t) (bp / n);
    rate->tau_r = bp % n;

    return 0;
}


int
welby_gcra_limit(const welby_gcra_limit_t *l, welby_gcra_state_t *s,
    int64_t now, welby_gcra_mode_e mode, welby_gcra_answer_t *a)
{
    int                   i, b;
    int64_t               tat, hs, ds;
    uint64_t              frac, hc, dc;
    welby_gcra_window_t  *w, *bw;

    a->allowed = 1;

    for (i = 0; i < WELBY_GCRA_WINDOWS; i++) {
        a->present[i] = 0;
    }

    a->present[WELBY_GCRA_RATE] = 1;
    a->allowed &= welby_gcra_rate(&l->rate, s, now,
                                  &a->windows[WELBY_GCRA_RATE], &tat, &frac);

    hs = s->hour_start;
    hc = s->hour_count;
    ds = s->day_start;
    dc = s->day_count;

    if (l->hour) {
        a->present[WELBY_GCRA_HOURLY] = 1;
        welby_gcra_quota(l->hour, WELBY_GCRA_HOUR, s->hour_start,
                         s->hour_count, now, &a->windows[WELBY_GCRA_HOURLY],
                         &hs, &hc);
        a->allowed &= a->windows[WELBY_GCRA_HOURLY].allowed;
    }

    if (l->day) {
        a->present[WELBY_GCRA_DAILY] = 1;
        welby_gcra_quota(l->day, WELBY_GCRA_DAY, s->day_start,
                         s->day_count, now, &a->windows[WELBY_GCRA_DAILY],
                         &ds, &dc);
        a->allowed &= a->windows[WELBY_GCRA_DAILY].allowed;
    }

    /* the window that binds */

    b = WELBY_GCRA_RATE;

    for (i = 1; i < WELBY_GCRA_WINDOWS; i++) {
        if (!a->present[i]) {
            continue;
        }

        w = &a->windows[i];
        bw = &a->windows[b];

        if (!a->allowed) {
            if (!w->allowed
                && (bw->allowed || w->retry_after > bw->retry_after))
            {
                b = i;
            }

            continue;
        }

        if (w->remaining < bw->remaining
            || (w->remaining == bw->remaining && w->window > bw->window))
        {
            b = i;
        }
    }

    a->binding = b;

    if (mode == WELBY_GCRA_CHECK || (mode == WELBY_GCRA_TAKE && !a->allowed)) {
        return a->allowed;
    }

    s->tat = tat;
    s->frac = frac;

    if (l->hour) {
        s->hour_start = hs;
        s->hour_count = hc + 1;
    }

    if (l->day) {
        s->day_start = ds;
        s->day_count = dc + 1;
    }

    return a->allowed;
}


int64_t
welby_gcra_expire(const welby_gcra_limit_t *l, const welby_gcra_state_t *s)
{
    int64_t  e;

    /* once TAT has passed, the whole burst is back: as a new key */

    e = s->tat + (s->frac ? 1 : 0);

    if (l->hour && s->hour_count && s->hour_start + WELBY_GCRA_HOUR > e) {
        e = s->hour_start + WELBY_GCRA_HOUR;
    }

    if (l->day && s->day_count && s->day_start + WELBY_GCRA_DAY > e) {
        e = s->day_start + WELBY_GCRA_DAY;
    }

    return e;
}


void
welby_gcra_policy(const welby_gcra_limit_t *l, int window, uint64_t *q,
    int64_t *w)
{
    int64_t                   fill, ws;
    uint64_t                  cap, qq;
    const welby_gcra_rate_t  *r;

    if (window == WELBY_GCRA_HOURLY) {
        *q = l->hour;
        *w = 3600;
        return;
    }

    if (window == WELBY_GCRA_DAILY) {
        *q = l->day;
        *w = 86400;
        return;
    }

    r = &l->rate;
    cap = r->burst + 1;

    /* (1 + burst) * T, rounded up: at most 3.6 * 10^18 ns */

    fill = (int64_t) ((cap * (uint64_t) r->period + r->n - 1) / r->n);

    ws = welby_gcra_ceil_s(fill);

    if (ws < 1) {
        ws = 1;
    }

    /* what the rate allows in ws seconds: floor(ws s / T), in parts */

    fill = ws * WELBY_GCRA_SECOND;

    qq = (uint64_t) (fill / r->period) * r->n
         + (uint64_t) (fill % r->period) * r->n / (uint64_t) r->period;

    *q = qq > cap ? qq : cap;
    *w = ws;
}


static int64_t
welby_gcra_ceil_s(int64_t ns)
{
    return ns <= 0 ? 0 : (ns + WELBY_GCRA_SECOND - 1) / WELBY_GCRA_SECOND;
}


/*
 * A request charged at a time up to clock leaves TAT at most clock + tau
 * + T.  A TAT beyond that comes from a clock stepped back since, or from
 * a rule a reload made faster: the key is taken, from now on, as one
 * that has just spent its whole burst, neither refused for the length of
 * the step nor given a new burst.  The state is changed: it says the
 * same of the key, and expires when that is over.
 */
void
welby_gcra_clamp(const welby_gcra_limit_t *l, welby_gcra_state_t *s,
    int64_t clock)
{
    int64_t   mt;
    uint64_t  mf;

    if (welby_gcra_bound(l, s, clock, &mt, &mf)) {
        s->tat = mt;
        s->frac = mf;
    }
}


int
welby_gcra_clamps(const welby_gcra_limit_t *l, const welby_gcra_state_t *s,
    int64_t clock)
{
    int64_t   mt;
    uint64_t  mf;

    return welby_gcra_bound(l, s, clock, &mt, &mf);
}


/* clock + tau + T into (mt, mf); whether the state's TAT is beyond it */
static int
welby_gcra_bound(const welby_gcra_limit_t *l, const welby_gcra_state_t *s,
    int64_t clock, int64_t *mt, uint64_t *mf)
{
    const welby_gcra_rate_t  *r;

    r = &l->rate;

    *mt = clock + r->tau_q + r->t_q;
    *mf = r->tau_r + r->t_r;

    if (*mf >= r->n) {
        (*mt)++;
        *mf -= r->n;
    }

    return s->tat > *mt || (s->tat == *mt && s->frac > *mf);
}


/* (tat, frac) + k * T */
static void
welby_gcra_advance(const welby_gcra_rate_t *r, int64_t *tat, uint64_t *frac,
    uint64_t k)
{
    uint64_t  f;

    /* k <= 1 + burst and t_r < n: at most about 10^12 */
    f = *frac + k * r->t_r;

    *tat += (int64_t) k * r->t_q + (int64_t) (f / r->n);
    *frac = f % r->n;
}


/* The first nanosecond at which a TAT of (tat, frac) conforms: TAT - tau. */
static int64_t
welby_gcra_conform_at(const welby_gcra_rate_t *r, int64_t tat, uint64_t frac)
{
    return tat - r->tau_q + (frac > r->tau_r ? 1 : 0);
}


/*
 * The rate's window, and in (tat, frac) its TAT once the request is
 * charged.  Returns whether the request conforms.
 */
static int
welby_gcra_rate(const welby_gcra_rate_t *r, const welby_gcra_state_t *s,
    int64_t now, welby_gcra_window_t *w, int64_t *tat, uint64_t *frac)
{
    int64_t   d, t;
    uint64_t  f, num;

    t = s->tat;
    f = s->frac;

    if (f >= r->n) {
        /* kept from a rate with a larger n: less than 1 ns off */
        f = r->n - 1;
    }

    if (t < now) {
        t = now;
        f = 0;
    }


    d = t - now;

    w->allowed = d < r->tau_q || (d == r->tau_q && f <= r->tau_r);

    if (!w->allowed) {
        w->remaining = 0;
        w->retry_after = welby_gcra_ceil_s(welby_gcra_conform_at(r, t, f)
                                           - now);
        w->window = w->retry_after;
        w->reset = welby_gcra_ceil_s(t + (f ? 1 : 0) - now);

        welby_gcra_advance(r, &t, &f, 1);
        *tat = t;
        *frac = f;

        return 0;
    }

    welby_gcra_advance(r, &t, &f, 1);

    *tat = t;
    *frac = f;

    /* what conforms after it: floor((tau - (TAT - now)) / T) + 1 */

    d = t - now;

    if (d > r->tau_q || (d == r->tau_q && f > r->tau_r)) {
        w->remaining = 0;

    } else {
        num = (uint64_t) (r->tau_q - d) * r->n + r->tau_r - f;
        w->remaining = num / (uint64_t) r->period + 1;
    }

    w->retry_after = 0;
    w->reset = welby_gcra_ceil_s(t + (f ? 1 : 0) - now);

    /* the first request beyond the remaining ones conforms then */

    welby_gcra_advance(r, &t, &f, w->remaining);
    w->window = welby_gcra_ceil_s(welby_gcra_conform_at(r, t, f) - now);

    return 1;
}


/*
 * A quota's window: n requests in each window of `size` ns from the
 * epoch; in (nstart, ncount) the window and the count before this
 * request.
 */
static void
welby_gcra_quota(uint64_t n, int64_t size, int64_t start, uint64_t count,
    int64_t now, welby_gcra_window_t *w, int64_t *nstart, uint64_t *ncount)
{
    int64_t  ws;

    ws = now - now % size;

    if (now < 0 && now % size) {
        ws -= size;
    }

    if (start > ws && count) {
        /*
         * The clock went back into an earlier window: the count goes on
         * in the window it was made in, which ends when the clock is
         * there again, so a step back frees no quota.
         */
        ws = start;

    } else if (start != ws) {
        count = 0;
    }

    *nstart = ws;
    *ncount = count;

    w->allowed = count < n;
    w->reset = welby_gcra_ceil_s(ws + size - now);
    w->window = w->reset;

    if (w->allowed) {
        w->remaining = n - count - 1;
        w->retry_after = 0;

    } else {
        w->remaining = 0;
        w->retry_after = w->reset;
    }
}
