/*
 * welby_msc: what the WAF step needs of libmodsecurity's C++ side, behind
 * a C interface.  libmodsecurity's C API hands a log callback only the
 * text of a rule message, in which the matched variable's name and value,
 * the rule's msg and the URI appear unescaped: an attacker who controls
 * them can write a text that reads like another rule's id.  The message
 * object itself holds the rule's id and severity as numbers; this file,
 * the only C++ of the module, reads them there.  No nginx header.
 */

#ifndef WELBY_MSC_H
#define WELBY_MSC_H

#include <stddef.h>


#ifdef __cplusplus
extern "C" {
#endif

/* what the module keeps of one rule message */
typedef struct {
    long                        id;
    int                         severity;   /* -1 when the rule sets none */
    int                         disruptive;

    /*
     * The rule's msg, macros expanded, for the two rules whose msg the
     * module reads as a number (welby_msc_score()): NULL otherwise, and
     * never kept past the callback.
     */
    const char                 *msg;
    size_t                      msg_len;
} welby_msc_match_t;


/*
 * Sets a log callback that writes nothing, and that libmodsecurity calls
 * with the rule message object, never formatting its text: without a
 * callback libmodsecurity writes each match's text, matched value and
 * all, to stderr, which nginx sends to its error log.  msc is a
 * ModSecurity *.
 */
void welby_msc_quiet(void *msc);

/*
 * Calls cb(data, m) for each message the transaction (a Transaction *)
 * kept: every rule that matched and logs, disruptive ones included (they
 * never reach libmodsecurity's log callback), in match order.
 */
void welby_msc_each(void *transaction, long score_id,
    void (*cb)(void *data, const welby_msc_match_t *m), void *data);

/*
 * The inbound anomaly score from a match's msg, or -1: score_id's msg is
 * the number alone; CRS's blocking rule says "... (Total Score: N)".
 */
#define WELBY_MSC_CRS_BLOCKING_ID  949110

long welby_msc_score(const welby_msc_match_t *m, long score_id);

/*
 * NULL, or why a loaded rules set (a RulesSet *) cannot serve welby_waf:
 * its rules would match and never refuse.  *warning: NULL, or a setting
 * an operator may mean (rules that never see a body).
 */
const char *welby_msc_rules_check(void *rules_set, const char **warning);

#ifdef __cplusplus
}
#endif

#endif /* WELBY_MSC_H */
