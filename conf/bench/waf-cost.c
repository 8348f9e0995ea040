
/*
 * waf-cost: what libmodsecurity costs per transaction with a given rule
 * set, outside nginx, so that the rule files can be chosen and tuned by
 * numbers.  Each request is a raw HTTP/1.1 request in a file (request
 * line, headers, empty line, body); every transaction feeds what the
 * module feeds: connection, URI, headers, body, then runs phase 5 and is
 * freed.  Prints CPU microseconds per transaction (the fastest of 20
 * batches of N) and, from the first run, the ids of the rules that
 * logged (WAF_COST_VERBOSE=1 prints their whole messages).  Under
 * valgrind --tool=callgrind the instruction count of -n 1 less that of
 * -n 0, divided by 20, is the exact cost of one transaction.
 *
 *   cc -O2 -o waf-cost waf-cost.c -lmodsecurity
 *   ./waf-cost [-n N] -r rules/welby.conf -r ... get.http post.http
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>
#include <modsecurity/intervention.h>


typedef struct {
    char    ids[1024];
    size_t  len;
} waf_cost_log_t;


static void
waf_cost_log(void *data, const void *msg)
{
    const char      *p, *e;
    waf_cost_log_t  *log = data;

    if (log == NULL || msg == NULL) {
        return;
    }

    if (getenv("WAF_COST_VERBOSE") != NULL) {
        fprintf(stderr, "%s\n", (const char *) msg);
    }

    p = strstr(msg, "[id \"");
    if (p == NULL) {
        return;
    }

    p += 5;
    e = strchr(p, '"');
    if (e == NULL || log->len + (e - p) + 2 >= sizeof(log->ids)) {
        return;
    }

    memcpy(log->ids + log->len, p, e - p);
    log->len += e - p;
    log->ids[log->len++] = ' ';
    log->ids[log->len] = '\0';
}


static char *
waf_cost_read(const char *name, size_t *len)
{
    char    *buf;
    long     n;
    FILE    *f;

    f = fopen(name, "rb");
    if (f == NULL) {
        perror(name);
        exit(2);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    buf = malloc(n + 1);
    if (buf == NULL || fread(buf, 1, n, f) != (size_t) n) {
        fprintf(stderr, "%s: cannot read\n", name);
        exit(2);
    }

    buf[n] = '\0';
    fclose(f);
    *len = n;

    return buf;
}


static int
waf_cost_run(ModSecurity *msc, RulesSet *rules, char *req, size_t len,
    waf_cost_log_t *log)
{
    int                       status;
    char                     *line, *p, *eol, *colon, *body, *uri, *ver;
    char                      copy[65536];
    size_t                    blen;
    Transaction              *tx;
    ModSecurityIntervention   it;

    if (len >= sizeof(copy)) {
        return -1;
    }

    memcpy(copy, req, len);
    copy[len] = '\0';

    body = strstr(copy, "\r\n\r\n");
    if (body == NULL) {
        return -1;
    }

    *body = '\0';
    body += 4;
    blen = len - (body - copy);

    tx = msc_new_transaction_with_id(msc, rules, "waf-cost", log);

    msc_process_connection(tx, "127.0.0.1", 40000, "127.0.0.1", 8443);

    line = copy;
    eol = strstr(line, "\r\n");
    if (eol != NULL) {
        *eol = '\0';
    }

    uri = strchr(line, ' ');
    *uri++ = '\0';
    ver = strchr(uri, ' ');
    *ver++ = '\0';

    msc_process_uri(tx, uri, line, ver + 5);

    for (p = eol ? eol + 2 : NULL; p != NULL && *p != '\0'; p = eol) {
        eol = strstr(p, "\r\n");
        if (eol != NULL) {
            *eol = '\0';
            eol += 2;
        }

        colon = strchr(p, ':');
        if (colon == NULL) {
            continue;
        }

        *colon++ = '\0';
        while (*colon == ' ') {
            colon++;
        }

        msc_add_n_request_header(tx, (unsigned char *) p, strlen(p),
                                 (unsigned char *) colon, strlen(colon));
    }

    msc_process_request_headers(tx);

    if (blen > 0) {
        msc_append_request_body(tx, (unsigned char *) body, blen);
    }

    msc_process_request_body(tx);

    memset(&it, 0, sizeof(it));
    it.status = 200;
    msc_intervention(tx, &it);
    status = it.disruptive ? it.status : 0;
    free(it.url);
    free(it.log);

    msc_process_logging(tx);
    msc_transaction_cleanup(tx);

    return status;
}


int
main(int argc, char **argv)
{
    int              i, n, b, c, status;
    char            *req;
    size_t           len;
    double           us, batch;
    const char      *err;
    RulesSet        *rules;
    ModSecurity     *msc;
    struct timespec  t0, t1;
    waf_cost_log_t   log;

    n = 100;

    msc = msc_init();
    msc_set_log_cb(msc, waf_cost_log);
    rules = msc_create_rules_set();

    while ((c = getopt(argc, argv, "n:r:")) != -1) {
        switch (c) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'r':
            err = NULL;
            if (msc_rules_add_file(rules, optarg, &err) < 0) {
                fprintf(stderr, "%s: %s\n", optarg, err);
                return 2;
            }
            break;
        default:
            return 2;
        }
    }

    for (i = optind; i < argc; i++) {
        req = waf_cost_read(argv[i], &len);

        log.len = 0;
        log.ids[0] = '\0';
        status = waf_cost_run(msc, rules, req, len, &log);

        /*
         * The machine is shared: the fastest of 20 batches is the figure
         * least disturbed by other processes.
         */
        us = -1;
        for (b = 0; b < 20; b++) {
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
            for (c = 0; c < n; c++) {
                waf_cost_run(msc, rules, req, len, NULL);
            }
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);

            batch = ((t1.tv_sec - t0.tv_sec) * 1e9
                     + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / n;
            if (us < 0 || batch < us) {
                us = batch;
            }
        }

        printf("%-28s %9.1f us  status %d  rules %s\n", argv[i], us, status,
               log.ids);
        free(req);
    }

    msc_rules_cleanup(rules);
    msc_cleanup(msc);

    return 0;
}
