/*
 * Unit tests: GCRA and the hourly and daily quotas of welby_gcra.c over
 * simulated time, in nanoseconds: exact counts at rates from 1 r/h to
 * 10000 r/s, bursts of 0 and more, the answers' remaining, reset,
 * retry-after and effective window, the check, take and commit modes,
 * the expiry, and the policies.
 */

#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "welby_gcra.h"


#define S   WELBY_GCRA_SECOND
#define MS  (S / 1000)
#define US  (S / 1000000)

/* a Tuesday, 12:34:56.789012345 UTC: not on any boundary */
#define T0  (1795000000LL * S + 789012345LL + 34 * 60 * S)


static welby_gcra_limit_t
limit(uint64_t n, int64_t period, uint64_t burst, uint64_t hour,
    uint64_t day)
{
    welby_gcra_limit_t  l;

    memset(&l, 0, sizeof(l));

    if (welby_gcra_init(&l.rate, n, period, burst) != 0) {
        printf("# welby_gcra_init(%llu, %lld, %llu) failed\n",
               (unsigned long long) n, (long long) period,
               (unsigned long long) burst);
    }

    l.hour = hour;
    l.day = day;

    return l;
}


static int
take(const welby_gcra_limit_t *l, welby_gcra_state_t *s, int64_t now,
    welby_gcra_answer_t *a)
{
    welby_gcra_answer_t  tmp;

    /* as ngx_http_welby_limit.c does, the clock read being now */
    welby_gcra_clamp(l, s, now);

    return welby_gcra_limit(l, s, now, WELBY_GCRA_TAKE, a ? a : &tmp);
}


/* requests at now, one after another, until one is refused */
static uint64_t
volley(const welby_gcra_limit_t *l, welby_gcra_state_t *s, int64_t now)
{
    uint64_t  n;

    for (n = 0; take(l, s, now, NULL); n++) { /* void */ }

    return n;
}


static uint64_t  lcg = 88172645463325252ULL;

static uint64_t
rnd(uint64_t bound)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (lcg >> 11) % bound;
}


/*
 * Over a random walk of requests: a refusal's retry-after is never
 * early (a request then conforms) nor late by a second or more (one a
 * second sooner does not); an allowed request's remaining requests all
 * pass at once and one more does not; the one after them passes at the
 * end of the effective window and not a second before it.
 */
static int
promises(const welby_gcra_limit_t *l, int64_t step, int steps)
{
    int                  i, k;
    int64_t              now, w;
    uint64_t             j;
    welby_gcra_state_t   s, c;
    welby_gcra_answer_t  a, b;

    memset(&s, 0, sizeof(s));
    now = T0;

    for (i = 0; i < steps; i++) {
        now += (int64_t) rnd((uint64_t) step);
        k = (int) rnd(3);

        c = s;
        take(l, &s, now, &a);

        w = a.windows[a.binding].window;

        if (!a.allowed) {
            w = a.windows[a.binding].retry_after;

            c = s;
            if (!take(l, &c, now + w * S, &b)) {
                printf("# retry-after %lld s at %d is early\n",
                       (long long) w, i);
                return 0;
            }

            c = s;
            if (w > 1 && take(l, &c, now + (w - 1) * S, &b)) {
                printf("# retry-after %lld s at %d is late\n",
                       (long long) w, i);
                return 0;
            }

            continue;
        }

        c = s;

        for (j = 0; j < a.windows[a.binding].remaining; j++) {
            if (!take(l, &c, now, &b)) {
                printf("# remaining %llu at %d: only %llu pass\n",
                       (unsigned long long)
                           a.windows[a.binding].remaining, i,
                       (unsigned long long) j);
                return 0;
            }
        }

        if (take(l, &c, now, &b)) {
            printf("# remaining %llu at %d: one more passes\n",
                   (unsigned long long) a.windows[a.binding].remaining, i);
            return 0;
        }

        if (a.binding == WELBY_GCRA_RATE || k == 0) {
            welby_gcra_state_t  c2 = c;

            if (!take(l, &c2, now + w * S, &b)) {
                printf("# window %lld s at %d: nothing passes after it\n",
                       (long long) w, i);
                return 0;
            }

            c2 = c;
            if (w > 1 && take(l, &c2, now + (w - 1) * S, &b)) {
                printf("# window %lld s at %d: one passes before its end\n",
                       (long long) w, i);
                return 0;
            }
        }
    }

    return 1;
}


int
main(void)
{
    int                  i, good;
    int64_t              t, hour, day, e;
    uint64_t             n, q, k;
    welby_gcra_rate_t    r;
    welby_gcra_limit_t   l;
    welby_gcra_state_t   s, c;
    welby_gcra_answer_t  a;

    /* bounds */

    ok(welby_gcra_init(&r, 0, S, 0) == -1, "rate 0 is refused");
    ok(welby_gcra_init(&r, WELBY_GCRA_N_MAX + 1, S, 0) == -1,
       "a rate above the bound is refused");
    ok(welby_gcra_init(&r, 1, 0, 0) == -1, "a period of 0 is refused");
    ok(welby_gcra_init(&r, 1, WELBY_GCRA_HOUR + 1, 0) == -1,
       "a period above an hour is refused");
    ok(welby_gcra_init(&r, 1, S, WELBY_GCRA_BURST_MAX + 1) == -1,
       "a burst above the bound is refused");
    ok(welby_gcra_init(&r, WELBY_GCRA_N_MAX, WELBY_GCRA_HOUR,
                       WELBY_GCRA_BURST_MAX) == 0,
       "the largest rate, period and burst are accepted");

    /* 2 r/s burst 3: 1 + burst at once, then one every 500 ms */

    l = limit(2, S, 3, 0, 0);
    memset(&s, 0, sizeof(s));

    take(&l, &s, T0, &a);
    ok(a.allowed && a.windows[0].remaining == 3 && a.windows[0].reset == 1
       && a.windows[0].window == 1,
       "2r/s burst=3, first: remaining 3, reset 1 s, window 1 s");

    ok(volley(&l, &s, T0) == 3, "2r/s burst=3: 4 of a volley pass");

    take(&l, &s, T0, &a);
    ok(!a.allowed && a.windows[0].retry_after == 1
       && a.windows[0].window == 1 && a.windows[0].reset == 2
       && a.windows[0].remaining == 0,
       "the 5th: refused, retry-after 1 s (0.5 up), window 1, reset 2");

    ok(volley(&l, &s, T0 + 500 * MS - 1) == 0,
       "nothing passes 1 ns before 500 ms");

    good = 1;

    for (i = 1; i <= 20; i++) {
        if (volley(&l, &s, T0 + i * 500 * MS) != 1) {
            good = 0;
        }
    }

    ok(good, "then exactly one at each 500 ms, 20 times");

    ok(volley(&l, &s, T0 + 10 * S + 2 * S) == 4,
       "2 s after the last, the whole burst is back");

    /* 3 r/s: T is not a whole number of ns, and nothing drifts */

    l = limit(3, S, 1, 0, 0);
    memset(&s, 0, sizeof(s));

    ok(volley(&l, &s, T0) == 2, "3r/s burst=1: 2 pass at once");

    good = 1;

    for (k = 1; k <= 30000; k++) {
        t = T0 + (int64_t) ((k * S + 2) / 3);

        if (volley(&l, &s, t - 1) != 0 || volley(&l, &s, t) != 1) {
            printf("# the %lluth extra request\n", (unsigned long long) k);
            good = 0;
            break;
        }
    }

    ok(good, "3r/s: the kth request passes at exactly ceil(k/3 s), not "
       "1 ns before, for 10000 s");

    /* 5000 and 10000 r/s burst 0, probed every 10 and 1 us for 1 s */

    l = limit(5000, S, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    n = 0;

    for (t = T0; t <= T0 + S; t += 10 * US) {
        n += volley(&l, &s, t);
    }

    ok(n == 5001, "5000r/s burst=0: 5001 pass in a closed second "
       "probed every 10 us (got %llu)", (unsigned long long) n);

    l = limit(10000, S, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    n = 0;

    for (t = T0; t <= T0 + S; t += US) {
        n += volley(&l, &s, t);
    }

    ok(n == 10001, "10000r/s burst=0: 10001 pass in a closed second "
       "probed every 1 us (got %llu)", (unsigned long long) n);

    /* 10000 r/s burst 100 probed every 7 us: the burst absorbs jitter */

    l = limit(10000, S, 100, 0, 0);
    memset(&s, 0, sizeof(s));
    n = 0;

    for (t = T0; t <= T0 + 10 * S; t += 7 * US) {
        n += volley(&l, &s, t);
    }

    /* the last probe is at 9999997 us: 99999 emissions after the burst */

    ok(n == 101 + 99999, "10000r/s burst=100: 1 + 100 + 99999 in 10 s "
       "probed every 7 us, none lost to the probes' lag (got %llu)",
       (unsigned long long) n);

    /* 1 r/h and 1 r/m */

    l = limit(1, WELBY_GCRA_HOUR, 0, 0, 0);
    memset(&s, 0, sizeof(s));

    ok(volley(&l, &s, T0) == 1, "1r/h: one passes");

    take(&l, &s, T0, &a);
    ok(!a.allowed && a.windows[0].retry_after == 3600,
       "1r/h: the next is told 3600 s");

    take(&l, &s, T0 + WELBY_GCRA_HOUR - 1, &a);
    ok(!a.allowed && a.windows[0].retry_after == 1,
       "1r/h: 1 ns before the hour, refused and told 1 s");

    ok(volley(&l, &s, T0 + WELBY_GCRA_HOUR) == 1, "1r/h: an hour later, one");

    l = limit(1, WELBY_GCRA_MINUTE, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);
    take(&l, &s, T0 + 59 * S + 500 * MS, &a);
    ok(!a.allowed && a.windows[0].retry_after == 1,
       "1r/m: at 59.5 s refused, retry-after 1 s");

    /* an hourly quota at the hour's end */

    hour = (T0 / WELBY_GCRA_HOUR + 1) * WELBY_GCRA_HOUR;

    l = limit(100, S, 100, 3, 0);
    memset(&s, 0, sizeof(s));

    take(&l, &s, hour - 500 * MS, &a);
    ok(a.allowed && a.binding == WELBY_GCRA_HOURLY
       && a.windows[WELBY_GCRA_HOURLY].remaining == 2
       && a.windows[WELBY_GCRA_HOURLY].window == 1,
       "hour=3: first at :59:59.5, the hour binds, 2 left, window 1 s");

    ok(volley(&l, &s, hour - 500 * MS) == 2, "hour=3: 3 pass in all");

    take(&l, &s, hour - 1, &a);
    ok(!a.allowed && a.binding == WELBY_GCRA_HOURLY
       && a.windows[WELBY_GCRA_HOURLY].retry_after == 1
       && a.windows[WELBY_GCRA_RATE].allowed,
       "the 4th, 1 ns before the hour: refused by the hour, 1 s");

    take(&l, &s, hour, &a);
    ok(a.allowed && a.windows[WELBY_GCRA_HOURLY].remaining == 2
       && a.windows[WELBY_GCRA_HOURLY].reset == 3600,
       "at the hour: a new window, 2 left, reset 3600 s");

    /* a daily quota */

    day = (T0 / WELBY_GCRA_DAY) * WELBY_GCRA_DAY;

    l = limit(10, S, 10, 0, 2);
    memset(&s, 0, sizeof(s));

    ok(volley(&l, &s, day + 10 * 3600 * S) == 2, "day=2: 2 pass");

    take(&l, &s, day + 10 * 3600 * S, &a);
    ok(!a.allowed && a.binding == WELBY_GCRA_DAILY
       && a.windows[WELBY_GCRA_DAILY].retry_after == 14 * 3600,
       "day=2 at 10:00 UTC: refused until midnight, 50400 s");

    ok(volley(&l, &s, day + WELBY_GCRA_DAY) == 2,
       "the next UTC day: 2 again");

    /* the refusal that asks for the longest wait binds */

    l = limit(1, WELBY_GCRA_MINUTE, 0, 1, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, hour - 10 * S);
    take(&l, &s, hour - 10 * S, &a);
    ok(!a.allowed && a.binding == WELBY_GCRA_RATE
       && a.windows[WELBY_GCRA_RATE].retry_after == 60
       && a.windows[WELBY_GCRA_HOURLY].retry_after == 10,
       "refused by both, the rate's 60 s binds over the hour's 10 s");

    /* modes */

    l = limit(2, S, 3, 5, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);

    c = s;
    welby_gcra_limit(&l, &c, T0, WELBY_GCRA_CHECK, &a);
    ok(memcmp(&c, &s, sizeof(s)) == 0 && !a.allowed,
       "check: refused, the state unchanged");

    c = s;
    take(&l, &c, T0, &a);
    ok(memcmp(&c, &s, sizeof(s)) == 0, "take: a refusal charges nothing");

    c = s;
    welby_gcra_limit(&l, &c, T0, WELBY_GCRA_COMMIT, &a);
    ok(c.tat == s.tat + 500 * MS && c.hour_count == s.hour_count + 1,
       "commit: charged although refused (TAT + 500 ms, the hour + 1)");

    memset(&s, 0, sizeof(s));
    c = s;
    welby_gcra_limit(&l, &c, T0, WELBY_GCRA_CHECK, &a);
    ok(a.allowed && a.windows[0].remaining == 3
       && memcmp(&c, &s, sizeof(s)) == 0,
       "check of a new key: allowed, remaining as if charged, unchanged");

    /* expiry */

    l = limit(2, S, 3, 0, 0);
    memset(&s, 0, sizeof(s));
    ok(welby_gcra_expire(&l, &s) <= 0, "a new key expires at once");

    volley(&l, &s, T0);
    ok(welby_gcra_expire(&l, &s) == T0 + 2 * S,
       "after 4 at 2r/s: kept 2 s, until the burst is back");

    l = limit(3, S, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);
    ok(welby_gcra_expire(&l, &s) == T0 + 333333334,
       "3r/s: kept until TAT, rounded up to the ns");

    l = limit(100, S, 0, 0, 5);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);
    e = welby_gcra_expire(&l, &s);
    ok(e == day + WELBY_GCRA_DAY, "with a daily count: kept to midnight");

    /* policies */

    l = limit(2, S, 3, 0, 0);
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 4 && t == 2, "policy 2r/s burst=3: q=4 w=2");

    l = limit(5000, S, 0, 0, 0);
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 5000 && t == 1, "policy 5000r/s: q=5000 w=1");

    l = limit(10, WELBY_GCRA_MINUTE, 5, 0, 0);
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 6 && t == 36, "policy 10r/m burst=5: q=6 w=36");

    l = limit(1, WELBY_GCRA_HOUR, 0, 0, 0);
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 1 && t == 3600, "policy 1r/h: q=1 w=3600");

    l = limit(3, S, 5, 0, 0);
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 6 && t == 2, "policy 3r/s burst=5: q=6 w=2");

    l = limit(7, WELBY_GCRA_MINUTE, 0, 0, 0);
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 1 && t == 9, "policy 7r/m: q=1 w=9 (8.57 s up)");

    l = limit(7, WELBY_GCRA_MINUTE, 0, 40, 900);
    welby_gcra_policy(&l, WELBY_GCRA_HOURLY, &q, &t);
    ok(q == 40 && t == 3600, "policy hour=40: q=40 w=3600");
    welby_gcra_policy(&l, WELBY_GCRA_DAILY, &q, &t);
    ok(q == 900 && t == 86400, "policy day=900: q=900 w=86400");

    /* a state kept across a change of rate */

    l = limit(5000, S, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);
    l = limit(2, S, 0, 0, 0);
    take(&l, &s, T0, &a);
    ok(!a.allowed && a.windows[0].retry_after == 1,
       "a record of 5000r/s read at 2r/s: its TAT holds");

    /*
     * CLOCK_REALTIME stepped back (NTP, an operator, another node's
     * clock later): a key is never owed more than its whole burst, so
     * it is neither banned for the length of the step nor freed.
     */

    l = limit(1, S, 0, 0, 0);
    memset(&s, 0, sizeof(s));
    take(&l, &s, T0, NULL);
    take(&l, &s, T0 - WELBY_GCRA_HOUR, &a);
    ok(!a.allowed && a.windows[0].retry_after == 1,
       "1r/s, the clock an hour back: refused for 1 s, not an hour");
    ok(take(&l, &s, T0 - WELBY_GCRA_HOUR + S, NULL),
       "1r/s, the clock an hour back: one passes a second later");

    l = limit(1, S, 4, 0, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);
    ok(volley(&l, &s, T0 - WELBY_GCRA_DAY) == 0,
       "1r/s burst=4 spent, the clock a day back: no new burst");
    ok(welby_gcra_expire(&l, &s) <= T0 - WELBY_GCRA_DAY + 5 * S,
       "and the record is kept for the burst's refill, not for a day");
    ok(volley(&l, &s, T0 - WELBY_GCRA_DAY + 2 * S) == 2,
       "2 s later at the stepped-back clock, 2 more pass");

    l = limit(100, S, 100, 3, 0);
    hour = (T0 / WELBY_GCRA_HOUR + 1) * WELBY_GCRA_HOUR;
    memset(&s, 0, sizeof(s));
    ok(volley(&l, &s, hour + S) == 3, "hour=3: 3 pass just after the hour");
    ok(volley(&l, &s, hour - S) == 0,
       "hour=3, the clock back into the hour before: still spent");
    take(&l, &s, hour - S, &a);
    ok(!a.allowed && a.binding == WELBY_GCRA_HOURLY
       && a.windows[WELBY_GCRA_HOURLY].retry_after == 3601,
       "its Retry-After: until the end of the hour it was counted in");
    ok(volley(&l, &s, hour + WELBY_GCRA_HOUR) == 3,
       "the next hour by the clock: 3 again");

    l = limit(100, S, 100, 0, 2);
    day = (T0 / WELBY_GCRA_DAY + 1) * WELBY_GCRA_DAY;
    memset(&s, 0, sizeof(s));
    ok(volley(&l, &s, day) == 2, "day=2: 2 pass at midnight");
    ok(volley(&l, &s, day - 1) == 0,
       "day=2, the clock a nanosecond back into yesterday: still spent");

    /*
     * A request decided at an instant taken 20 s before the clock read
     * under the lock (its worker preempted, a step late): refused, and
     * the key keeps what others were charged since.
     */

    l = limit(1, S, 4, 0, 0);
    memset(&s, 0, sizeof(s));
    volley(&l, &s, T0);
    c = s;
    welby_gcra_clamp(&l, &s, T0);
    ok(!welby_gcra_limit(&l, &s, T0 - 20 * S, WELBY_GCRA_TAKE, &a)
       && memcmp(&c, &s, sizeof(s)) == 0,
       "a request at a stale instant: refused, the state untouched");

    /* the boundaries of a quota, to the nanosecond */

    l = limit(100, S, 100, 1, 0);
    memset(&s, 0, sizeof(s));
    ok(volley(&l, &s, hour - 1) == 1 && volley(&l, &s, hour - 1) == 0,
       "hour=1: one in the last nanosecond of an hour");
    ok(volley(&l, &s, hour) == 1,
       "and one more at the first nanosecond of the next");

    /* the largest rate and burst: no overflow */

    l = limit(WELBY_GCRA_N_MAX, S, WELBY_GCRA_BURST_MAX, 0, 0);
    memset(&s, 0, sizeof(s));
    ok(volley(&l, &s, T0) == WELBY_GCRA_BURST_MAX + 1,
       "1000000r/s burst=1000000: 1000001 at once");
    ok(volley(&l, &s, T0 + S) == WELBY_GCRA_N_MAX,
       "and 1000000 in the next second");
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == 2000000 && t == 2, "its policy: q=2000000 w=2");

    l = limit(1, WELBY_GCRA_HOUR, WELBY_GCRA_BURST_MAX, 0, 0);
    memset(&s, 0, sizeof(s));
    ok(volley(&l, &s, T0) == WELBY_GCRA_BURST_MAX + 1,
       "1r/h burst=1000000 (tau 114 years): 1000001 at once");
    take(&l, &s, T0, &a);
    ok(!a.allowed && a.windows[0].retry_after == 3600
       && a.windows[0].reset == (int64_t) (WELBY_GCRA_BURST_MAX + 1) * 3600,
       "then refused for an hour, the whole burst back in 114 years");
    welby_gcra_policy(&l, WELBY_GCRA_RATE, &q, &t);
    ok(q == WELBY_GCRA_BURST_MAX + 1
       && t == (int64_t) (WELBY_GCRA_BURST_MAX + 1) * 3600,
       "its policy: q=1000001 w=3600003600");

    /* the answers' promises over random walks */

    l = limit(2, S, 3, 0, 0);
    ok(promises(&l, 400 * MS, 20000),
       "2r/s burst=3: retry-after, remaining and window keep their word");

    l = limit(7, WELBY_GCRA_MINUTE, 2, 0, 0);
    ok(promises(&l, 5 * S, 20000),
       "7r/m burst=2: retry-after, remaining and window keep their word");

    l = limit(50, S, 20, 30, 0);
    ok(promises(&l, 3 * S, 20000),
       "50r/s burst=20 hour=30: the same with a quota");

    /*
     * welby_gcra_clamps(): says yes exactly when welby_gcra_clamp() at
     * the same instant changes the state, and a no at one instant holds
     * at every later one (what lets the limit step skip the clock read),
     * over states taken by random requests and instants around them,
     * back in time too
     */

    l = limit(3, S, 2, 0, 0);
    good = 1;
    memset(&s, 0, sizeof(s));
    t = T0;

    for (i = 0; i < 20000 && good; i++) {
        int64_t  at, later;

        t += (int64_t) rnd(700 * MS);
        (void) take(&l, &s, t, NULL);

        at = t - 3 * S + (int64_t) rnd(6 * S);
        later = at + (int64_t) rnd(2 * S);

        c = s;
        welby_gcra_clamp(&l, &c, at);

        if (welby_gcra_clamps(&l, &s, at) != (memcmp(&c, &s, sizeof(s)) != 0)
            || (!welby_gcra_clamps(&l, &s, at)
                && welby_gcra_clamps(&l, &s, later)))
        {
            good = 0;
        }
    }

    ok(good, "clamps() is yes exactly when clamp() changes the state, and "
       "a no at an instant holds later (20000 random states)");

    return done_testing();
}
