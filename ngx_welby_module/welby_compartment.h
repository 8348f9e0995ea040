/*
 * Which patients a FHIR resource (JSON, decoded by jansson) belongs to,
 * by the elements behind the FHIR R4 Patient CompartmentDefinition's
 * parameters, and the checks of writes and answers built on it.  No
 * nginx types.
 */

#ifndef WELBY_COMPARTMENT_H
#define WELBY_COMPARTMENT_H

#include <jansson.h>

#include "welby_fhir.h"
#include "welby_scope.h"


typedef struct {
    welby_str_t              ids[WELBY_FHIR_PATIENTS_MAX];  /* in the JSON */
    size_t                   n;

    /* a Patient created by this Bundle, or a Patient with no id */
    unsigned                 new_patient:1;
} welby_patient_set_t;


/*
 * The patients a resource's compartment elements reference (for a
 * Patient: its own id and link.other).  resource is a JSON object with
 * "resourceType".  bundle, when not NULL, resolves "urn:uuid:" and
 * "urn:oid:" references against its entries' fullUrl.  Returns
 * WELBY_REASON_NONE, FHIR_BODY_INVALID (not a resource, resourceType
 * missing or unknown) or PATIENT_UNVERIFIABLE (a compartment element
 * that may reference a Patient but cannot be read safely:
 * identifier-only or contained references, unresolvable "urn:",
 * another server, more than WELBY_FHIR_PATIENTS_MAX patients).
 */
welby_reason_e welby_compartment_patients(json_t *resource, json_t *bundle,
    const welby_str_t *bases, size_t nbases, welby_patient_set_t *out);

/*
 * Whether a resource may be shown to the subject in the context that
 * allowed: not of a compartment type, or in the compartment of at least
 * one patient and of no patient the subject does not reach.  For a
 * searchset or history Bundle, every entry's resource.
 */
welby_reason_e welby_compartment_check_answer(json_t *resource,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);

/*
 * The body of a write (create, update, patch, or a batch or transaction
 * Bundle, entry by entry, each entry's request classified and decided as
 * a request of its own) under the policy.  Returns WELBY_REASON_NONE or
 * the first reason an entry or the body is refused.
 */
welby_reason_e welby_compartment_check_write(const welby_fhir_request_t *req,
    json_t *body, const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);

/*
 * Whether a Bundle posted to the base is a transaction (1), a batch (0):
 * the path says only that it is one of them.
 */
int welby_compartment_is_transaction(json_t *bundle);

/*
 * The patients a write the policy allowed reaches through its body, for
 * counting them (welby_enumeration): a created or updated resource's
 * compartment patients; for a batch or transaction, each entry's
 * request's patients (Patient/p1, Observation?patient=p2) and its created
 * or updated resource's.  reached() gets each patient, duplicates
 * included, with an id that lives as long as the body or only for the
 * call; a nonzero answer stops the walk with INTERNAL_ERROR.  What the
 * policy could not have allowed (an entry it could not classify) reaches
 * nothing.  Returns WELBY_REASON_NONE or INTERNAL_ERROR.
 */
typedef int (*welby_compartment_reached_pt)(void *data,
    const unsigned char *id, size_t len);

welby_reason_e welby_compartment_reached(const welby_fhir_request_t *req,
    json_t *body, const welby_str_t *bases, size_t nbases,
    welby_compartment_reached_pt reached, void *data);

#endif /* WELBY_COMPARTMENT_H */
