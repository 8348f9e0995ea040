/*
 * welby_msc: libmodsecurity's rule messages read as numbers (welby_msc.h
 * says why this one file is C++).  Nothing here allocates or throws.
 */

#include <modsecurity/modsecurity.h>
#include <modsecurity/rule_message.h>
#include <modsecurity/rule_with_actions.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include "welby_msc.h"


static void
welby_msc_discard(void *data, const void *rule_message)
{
    (void) data;
    (void) rule_message;
}


extern "C" void
welby_msc_quiet(void *msc)
{
    modsecurity::ModSecurity  *ms;

    ms = static_cast<modsecurity::ModSecurity *>(msc);

    ms->setServerLogCb(welby_msc_discard,
                       modsecurity::RuleMessageLogProperty);
}


extern "C" void
welby_msc_each(void *transaction, long score_id,
    void (*cb)(void *data, const welby_msc_match_t *m), void *data)
{
    welby_msc_match_t          m;
    modsecurity::Transaction  *t;

    t = static_cast<modsecurity::Transaction *>(transaction);

    for (const modsecurity::RuleMessage &rm : t->m_rulesMessages) {
        m.id = rm.m_ruleId;
        /*
         * A message's severity is 0 (EMERGENCY) also when its rule names
         * none: the rule tells which.
         */
        m.severity = (rm.m_rule != NULL && rm.m_rule->hasSeverity())
                     ? rm.m_severity : -1;
        m.disruptive = rm.m_isDisruptive;
        m.msg = NULL;
        m.msg_len = 0;

        if (m.id == score_id || m.id == WELBY_MSC_CRS_BLOCKING_ID) {
            m.msg = rm.m_message.data();
            m.msg_len = rm.m_message.size();
        }

        cb(data, &m);
    }
}


extern "C" long
welby_msc_score(const welby_msc_match_t *m, long score_id)
{
    size_t       i, n;
    long         score;
    const char  *p;

    static const char  total[] = "(Total Score: ";

    if (m->msg == NULL) {
        return -1;
    }

    p = m->msg;
    n = m->msg_len;

    if (m->id != score_id) {

        /* the blocking rule: the number after its last "(Total Score: " */

        for (i = n; i >= sizeof(total) - 1; i--) {
            if (p[i - (sizeof(total) - 1)] == '('
                && std::char_traits<char>::compare(
                       p + i - (sizeof(total) - 1), total,
                       sizeof(total) - 1) == 0)
            {
                break;
            }
        }

        if (i < sizeof(total) - 1) {
            return -1;
        }

        p += i;
        n -= i;

        if (n == 0 || p[n - 1] != ')') {
            return -1;
        }

        n--;
    }

    if (n == 0 || n > 9) {
        return -1;
    }

    score = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        score = score * 10 + (p[i] - '0');
    }

    return score;
}


extern "C" const char *
welby_msc_rules_check(void *rules_set, const char **warning)
{
    modsecurity::RulesSet  *rules;

    rules = static_cast<modsecurity::RulesSet *>(rules_set);

    /* unset, no rule sees the body the module reads for them */
    *warning = NULL;

    if (rules->m_secRequestBodyAccess
        != modsecurity::RulesSetProperties::TrueConfigBoolean)
    {
        *warning = "the rules set's SecRequestBodyAccess is not On: no "
                   "rule sees a request body";
    }

    /*
     * Unset, libmodsecurity runs no disruptive action: the engine is
     * welby_waf's to switch, never the rule files' (Debian's
     * modsecurity.conf says DetectionOnly).
     */
    if (rules->m_secRuleEngine
        != modsecurity::RulesSetProperties::EnabledRuleEngine)
    {
        return "the rules set's SecRuleEngine is not On: no rule would "
               "refuse (\"welby_waf\" chooses on or detect)";
    }

    return NULL;
}
