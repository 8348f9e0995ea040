/*
 * Rate limits in integer nanoseconds: GCRA (the generic cell rate
 * algorithm, ITU-T I.371) for a rate with a burst, and fixed windows
 * aligned to the UTC hour and day for quotas.  No nginx types here.
 *
 * GCRA keeps one time per key, the theoretical arrival time TAT.  With
 * the emission interval T = period / n and the burst tolerance
 * tau = burst * T, a request at `now` conforms when
 * max(TAT, now) - now <= tau, and then TAT = max(TAT, now) + T.  From a
 * fresh key exactly 1 + burst requests conform at once, then one every
 * T.  T and tau are kept as a quotient and a remainder in units of 1/n
 * ns, so no rate is rounded: 3 r/s is exactly 3 per second, 5000 r/s
 * exactly 5000, over any length of time.
 *
 * A quota allows n requests in each window of a fixed grid: UTC hours
 * (3600 s) or days (86400 s) counted from the epoch, which Unix time
 * makes exact (no leap seconds).  Fixed rather than sliding: a count and
 * the window's start are exact and cheap, and "1000 a day" means the
 * calendar day an operator and a client read it as.  At a boundary a
 * client may spend one window's quota at its end and the next one's at
 * the start of the next: up to 2n in a short time, which the rate of the
 * same rule bounds.
 *
 * CLOCK_REALTIME may step back.  A key then never owes more than its
 * whole burst (TAT is at most now + tau + T), and a quota's count stays
 * with the window it was made in: the step neither bans a key for its
 * length nor frees what it had spent.
 */

#ifndef WELBY_GCRA_H
#define WELBY_GCRA_H

#include <stdint.h>


#define WELBY_GCRA_SECOND   1000000000LL
#define WELBY_GCRA_MINUTE   (60 * WELBY_GCRA_SECOND)
#define WELBY_GCRA_HOUR     (3600 * WELBY_GCRA_SECOND)
#define WELBY_GCRA_DAY      (86400 * WELBY_GCRA_SECOND)

/* bounds of welby_gcra_init(): burst * period stays in 63 bits */
#define WELBY_GCRA_N_MAX      1000000
#define WELBY_GCRA_BURST_MAX  1000000

/* the windows of a limit, in the order the answer names them */
#define WELBY_GCRA_RATE     0
#define WELBY_GCRA_HOURLY   1
#define WELBY_GCRA_DAILY    2
#define WELBY_GCRA_WINDOWS  3

/* what welby_gcra_limit() does with the state */
typedef enum {
    WELBY_GCRA_CHECK = 0,       /* nothing: answers as if charged */
    WELBY_GCRA_TAKE,            /* charges if every window allows */
    WELBY_GCRA_COMMIT           /* charges whatever the answer */
} welby_gcra_mode_e;


typedef struct {
    uint64_t            n;          /* requests per period, >= 1 */
    int64_t             period;     /* ns */
    uint64_t            burst;

    /* T = t_q + t_r / n ns, tau = tau_q + tau_r / n ns */
    int64_t             t_q;
    uint64_t            t_r;
    int64_t             tau_q;
    uint64_t            tau_r;
} welby_gcra_rate_t;


/* a limit: a rate with its burst, and optional hourly and daily quotas */
typedef struct {
    welby_gcra_rate_t   rate;
    uint64_t            hour;       /* requests per UTC hour, 0: none */
    uint64_t            day;        /* requests per UTC day, 0: none */
} welby_gcra_limit_t;


/* one key's state, zeroed when the key is new: 48 bytes */
typedef struct {
    int64_t             tat;        /* ns since the epoch ... */
    uint64_t            frac;       /* ... and frac / n ns more, < n */

    int64_t             hour_start; /* the window counted, ns */
    uint64_t            hour_count;
    int64_t             day_start;
    uint64_t            day_count;
} welby_gcra_state_t;


/*
 * What one window says of a request, as if it were charged.  Times are
 * whole seconds, rounded up: no client is told to come back too early.
 */
typedef struct {
    int                 allowed;
    uint64_t            remaining;  /* requests that would pass after it */
    int64_t             reset;      /* until the whole quota is back */
    int64_t             retry_after;    /* refused: until one passes */

    /*
     * The effective window: within it no more than `remaining` pass (a
     * refused request: retry_after).  A rate frees one request every T;
     * a quota, all of them at the window's end.
     */
    int64_t             window;
} welby_gcra_window_t;


typedef struct {
    int                 allowed;    /* every window allowed */

    /* the window that binds: the refusing one that asks for the longest
     * wait, or the allowing one with the fewest requests left (then the
     * longest effective window) */
    int                 binding;
    welby_gcra_window_t windows[WELBY_GCRA_WINDOWS];
    int                 present[WELBY_GCRA_WINDOWS];
} welby_gcra_answer_t;


/*
 * n requests per period (ns) with a burst; -1 when n is 0 or above
 * WELBY_GCRA_N_MAX, the period not positive or above an hour, or the
 * burst above WELBY_GCRA_BURST_MAX.
 */
int welby_gcra_init(welby_gcra_rate_t *rate, uint64_t n, int64_t period,
    uint64_t burst);

/*
 * Before welby_gcra_limit(), with the state at hand: a TAT later than a
 * request charged by the time clock (the clock read then, ns since the
 * epoch) could have left (the clock stepped back since, a rule made
 * faster) is brought back to that of a key that has just spent its whole
 * burst.  Not the request's own time: a request decided at an instant
 * taken earlier (a worker preempted, a step that ran late) must not
 * forget what others were charged since.
 */
void welby_gcra_clamp(const welby_gcra_limit_t *l, welby_gcra_state_t *s,
    int64_t clock);

/*
 * Whether welby_gcra_clamp() at clock would change the state.  A TAT
 * within the bound at an instant is within it at any later one, so a
 * caller that knows its clock is no earlier than now need not read the
 * clock when this says no at now.
 */
int welby_gcra_clamps(const welby_gcra_limit_t *l,
    const welby_gcra_state_t *s, int64_t clock);

/*
 * Decides a request at now (ns since the epoch) against every window of
 * the limit, and changes the state as mode says.  Returns a->allowed.  A
 * quota counted in a later window than now's goes on in that window
 * until its end.
 */
int welby_gcra_limit(const welby_gcra_limit_t *l, welby_gcra_state_t *s,
    int64_t now, welby_gcra_mode_e mode, welby_gcra_answer_t *a);

/*
 * The time (ns) after which the state is the same as a new key's: the
 * record may be forgotten then.
 */
int64_t welby_gcra_expire(const welby_gcra_limit_t *l,
    const welby_gcra_state_t *s);

/*
 * The policy of a window, for RateLimit-Policy (q requests in w whole
 * seconds).  For a rate, w is the time to refill 1 + burst (at least a
 * second) and q what the rate allows in w, at least 1 + burst: q / w
 * never states more than the rate.  Quotas: n in 3600 or 86400.
 */
void welby_gcra_policy(const welby_gcra_limit_t *l, int window, uint64_t *q,
    int64_t *w);

#endif /* WELBY_GCRA_H */
