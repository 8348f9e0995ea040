/*
 * libFuzzer target: arbitrary bytes parsed as JSON (as the body step and
 * the response filter do), then the compartment reading and the answer
 * and write checks.  Besides crashes and sanitizer reports it checks that
 * every patient id returned (for the resource, the Bundle, each entry's
 * resource) passes welby_fhir_id_valid, that the set holds no duplicates
 * and no more than its bound, and that the reading and the answer check
 * return only the reasons they document.  The patients a write or a
 * Bundle reaches (welby_compartment_reached, for the enumeration count)
 * are each a valid id, and the walk answers NONE.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_compartment.h"


#define BASE  "https://ehr.example/fhir"


static void
check_set(const welby_patient_set_t *set)
{
    size_t  i, k;

    if (set->n > WELBY_FHIR_PATIENTS_MAX) {
        abort();
    }

    for (i = 0; i < set->n; i++) {
        if (!welby_fhir_id_valid(set->ids[i].data, set->ids[i].len)) {
            abort();
        }

        for (k = 0; k < i; k++) {
            if (set->ids[k].len == set->ids[i].len
                && memcmp(set->ids[k].data, set->ids[i].data,
                          set->ids[i].len) == 0)
            {
                abort();
            }
        }
    }
}


static int
reached_check(void *data, const unsigned char *id, size_t len)
{
    (void) data;

    if (!welby_fhir_id_valid(id, len)) {
        abort();
    }

    return 0;
}


static void
patients(json_t *res, json_t *bundle, const welby_str_t *bases)
{
    welby_reason_e       rc;
    welby_patient_set_t  set;

    rc = welby_compartment_patients(res, bundle, bases, 1, &set);

    if (rc != WELBY_REASON_NONE && rc != WELBY_REASON_FHIR_BODY_INVALID
        && rc != WELBY_REASON_PATIENT_UNVERIFIABLE)
    {
        abort();
    }

    if (rc == WELBY_REASON_NONE) {
        check_set(&set);
    }
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t                  i;
    json_t                 *j, *entries, *entry;
    unsigned                ctx;
    welby_reason_e          rc;
    welby_scopes_t          scopes;
    welby_fhir_request_t    req;
    welby_policy_subject_t  subj;
    static const char      *types[] = { "Observation", "Patient",
                                        "Condition", "Organization" };
    static const welby_str_t  bases[] = {
        { (const unsigned char *) BASE, sizeof(BASE) - 1 }
    };

    j = json_loadb((const char *) data, size,
                   JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);

    if (j == NULL) {
        return 0;
    }

    patients(j, NULL, bases);
    patients(j, j, bases);

    entries = json_object_get(j, "entry");

    json_array_foreach(entries, i, entry) {
        patients(json_object_get(entry, "resource"), j, bases);
    }

    memset(&scopes, 0, sizeof(welby_scopes_t));
    memset(&subj, 0, sizeof(welby_policy_subject_t));
    subj.scopes = &scopes;
    subj.patient.data = (const unsigned char *) "p1";
    subj.patient.len = 2;

    for (ctx = WELBY_SCOPE_PATIENT; ctx <= WELBY_SCOPE_SYSTEM; ctx <<= 1) {
        rc = welby_compartment_check_answer(j, &subj, ctx, bases, 1);

        if (rc != WELBY_REASON_NONE
            && rc != WELBY_REASON_RESPONSE_PATIENT_MISMATCH
            && rc != WELBY_REASON_RESPONSE_UNVERIFIABLE)
        {
            abort();
        }
    }

    /* the write checks, on a size-chosen interaction and type */

    memset(&req, 0, sizeof(welby_fhir_request_t));
    req.interaction = (welby_fhir_interaction_e)
                      (1 + size % (WELBY_FHIR_INTERACTION_COUNT - 1));
    req.type = welby_fhir_type_find(
                   (const unsigned char *) types[size / 7 % 4],
                   strlen(types[size / 7 % 4]));
    req.types[0] = req.type;
    req.ntypes = 1;
    req.id.data = (const unsigned char *) "p1";
    req.id.len = (size / 3 % 2) ? 2 : 0;

    (void) welby_compartment_check_write(&req, j, &subj,
                                         WELBY_SCOPE_PATIENT, bases, 1);

    if (welby_compartment_reached(&req, j, bases, 1, reached_check, NULL)
        != WELBY_REASON_NONE)
    {
        abort();
    }

    req.interaction = (size % 2) ? WELBY_FHIR_BATCH : WELBY_FHIR_CREATE;

    if (welby_compartment_reached(&req, j, bases, 1, reached_check, NULL)
        != WELBY_REASON_NONE)
    {
        abort();
    }

    json_decref(j);

    return 0;
}
