/*
 * Which patients a FHIR JSON resource belongs to, and the checks of
 * writes, Bundles and answers built on it.
 *
 * The table below lists, for each resource type of the FHIR R4 (4.0.1)
 * Patient CompartmentDefinition
 * (http://hl7.org/fhir/R4/compartmentdefinition-patient.json, its
 * "resource[].param"), the element paths behind each of those search
 * parameters, read from the parameters' "expression" in the R4
 * definitions (http://hl7.org/fhir/R4/search-parameters.json, also on
 * each resource's search page, e.g. http://hl7.org/fhir/R4/
 * observation.html#search).  ".where(resolve() is Patient)" only keeps
 * references to a Patient, which is all this file collects anyway, so
 * such an expression is listed by its element path alone.  None of these
 * expressions goes through a choice type or an "as" cast.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_compartment.h"


#define WELBY_COMPARTMENT_PATHS_MAX  6

/* Bundles in Bundles in an answer; a deeper one is not read */
#define WELBY_COMPARTMENT_DEPTH_MAX  4


typedef struct {
    const char                  *type;
    const char                  *paths[WELBY_COMPARTMENT_PATHS_MAX + 1];
} welby_compartment_type_t;


typedef struct {
    json_t                      *container;     /* for "#id", or NULL */
    json_t                      *bundle;        /* for "urn:", or NULL */
    const welby_str_t           *bases;
    size_t                       nbases;
    welby_patient_set_t         *out;
} welby_compartment_walk_t;


static const welby_compartment_type_t *welby_compartment_type(int type);
static int welby_compartment_member(int type);
static int welby_json_str_is(json_t *v, const char *s);
static welby_reason_e welby_compartment_collect(json_t *resource,
    int type, welby_compartment_walk_t *w);
static welby_reason_e welby_compartment_walk(json_t *value,
    const char *path, welby_compartment_walk_t *w);
static welby_reason_e welby_compartment_reference(json_t *ref,
    welby_compartment_walk_t *w);
static welby_reason_e welby_compartment_ref_string(const unsigned char *s,
    size_t len, json_t *type, welby_compartment_walk_t *w);
static welby_reason_e welby_compartment_contained_ref(
    const unsigned char *s, size_t len, welby_compartment_walk_t *w);
static welby_reason_e welby_compartment_urn_ref(const unsigned char *s,
    size_t len, welby_compartment_walk_t *w);
static welby_reason_e welby_compartment_add(welby_patient_set_t *out,
    const unsigned char *id, size_t len);
static welby_reason_e welby_compartment_permitted(json_t *resource,
    json_t *bundle, const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);
static welby_reason_e welby_compartment_set_ok(
    const welby_patient_set_t *set, const welby_policy_subject_t *subj,
    unsigned context);
static welby_reason_e welby_compartment_answer(json_t *resource,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases, unsigned depth);
static welby_reason_e welby_compartment_write(
    const welby_fhir_request_t *req, json_t *body, json_t *bundle,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);
static welby_reason_e welby_compartment_resource_write(
    const welby_fhir_request_t *req, json_t *body, json_t *bundle,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);
static welby_reason_e welby_compartment_existing(
    const welby_fhir_request_t *req, unsigned context);
static welby_reason_e welby_compartment_patch(
    const welby_fhir_request_t *req, json_t *body,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);
static welby_reason_e welby_compartment_patch_op(json_t *op, int type,
    const welby_compartment_type_t *ct, const welby_policy_subject_t *subj,
    unsigned context, const welby_str_t *bases, size_t nbases);
static int welby_pointer_split(const char *ptr, size_t len, char *buf,
    const char **segs, size_t *nsegs);
static int welby_pointer_index(const char *seg);
static int welby_pointer_touches(const char **segs, size_t nsegs,
    const char *path, const char **rest, int *deeper);
static welby_reason_e welby_compartment_patch_value(json_t *value,
    const char *rest, int deeper, const char **segs, size_t nsegs,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases);
static welby_reason_e welby_compartment_bundle(
    const welby_fhir_request_t *req, json_t *body,
    const welby_policy_subject_t *subj, const welby_str_t *bases,
    size_t nbases);
static int welby_hex(unsigned char c);
static welby_reason_e welby_compartment_resource_reached(json_t *resource,
    json_t *bundle, const welby_str_t *bases, size_t nbases,
    welby_compartment_reached_pt reached, void *data);
static welby_reason_e welby_compartment_entry_request(json_t *entry,
    const welby_str_t *bases, size_t nbases, welby_fhir_request_t *ereq,
    unsigned char **mem);
static welby_reason_e welby_compartment_entry(json_t *entry, json_t *body,
    const welby_policy_subject_t *subj, const welby_str_t *bases,
    size_t nbases);


/*
 * Sorted by type (strcmp).  Each path is the element path of one
 * expression, "." between elements; arrays may occur at any step.
 */
static const welby_compartment_type_t  welby_compartment_types[] = {

    /* subject: Account.subject */
    { "Account", { "subject", NULL } },

    /* subject: AdverseEvent.subject */
    { "AdverseEvent", { "subject", NULL } },

    /* patient: .patient; recorder: .recorder; asserter: .asserter */
    { "AllergyIntolerance", { "patient", "recorder", "asserter", NULL } },

    /* actor: Appointment.participant.actor */
    { "Appointment", { "participant.actor", NULL } },

    /* actor: AppointmentResponse.actor */
    { "AppointmentResponse", { "actor", NULL } },

    /* patient: AuditEvent.agent.who | AuditEvent.entity.what */
    { "AuditEvent", { "agent.who", "entity.what", NULL } },

    /* patient: Basic.subject; author: Basic.author */
    { "Basic", { "subject", "author", NULL } },

    /* patient: BodyStructure.patient */
    { "BodyStructure", { "patient", NULL } },

    /* patient: CarePlan.subject; performer: .activity.detail.performer */
    { "CarePlan", { "subject", "activity.detail.performer", NULL } },

    /* patient: CareTeam.subject; participant: .participant.member */
    { "CareTeam", { "subject", "participant.member", NULL } },

    /* subject: ChargeItem.subject */
    { "ChargeItem", { "subject", NULL } },

    /* patient: Claim.patient; payee: Claim.payee.party */
    { "Claim", { "patient", "payee.party", NULL } },

    /* patient: ClaimResponse.patient */
    { "ClaimResponse", { "patient", NULL } },

    /* subject: ClinicalImpression.subject */
    { "ClinicalImpression", { "subject", NULL } },

    /* subject, sender, recipient */
    { "Communication", { "subject", "sender", "recipient", NULL } },

    /* subject, sender, recipient, requester */
    { "CommunicationRequest",
      { "subject", "sender", "recipient", "requester", NULL } },

    /* subject; author; attester: Composition.attester.party */
    { "Composition", { "subject", "author", "attester.party", NULL } },

    /* patient: Condition.subject; asserter: Condition.asserter */
    { "Condition", { "subject", "asserter", NULL } },

    /* patient: Consent.patient */
    { "Consent", { "patient", NULL } },

    /* policy-holder, subscriber, beneficiary, payor */
    { "Coverage",
      { "policyHolder", "subscriber", "beneficiary", "payor", NULL } },

    /* patient: .patient */
    { "CoverageEligibilityRequest", { "patient", NULL } },
    { "CoverageEligibilityResponse", { "patient", NULL } },

    /* patient: DetectedIssue.patient */
    { "DetectedIssue", { "patient", NULL } },

    /* subject: .subject; performer: .performer */
    { "DeviceRequest", { "subject", "performer", NULL } },

    /* subject: DeviceUseStatement.subject */
    { "DeviceUseStatement", { "subject", NULL } },

    /* subject: DiagnosticReport.subject */
    { "DiagnosticReport", { "subject", NULL } },

    /* subject, author, recipient */
    { "DocumentManifest", { "subject", "author", "recipient", NULL } },

    /* subject, author */
    { "DocumentReference", { "subject", "author", NULL } },

    /* patient: Encounter.subject */
    { "Encounter", { "subject", NULL } },

    /* subject: EnrollmentRequest.candidate */
    { "EnrollmentRequest", { "candidate", NULL } },

    /* patient: EpisodeOfCare.patient */
    { "EpisodeOfCare", { "patient", NULL } },

    /* patient: .patient; payee: ExplanationOfBenefit.payee.party */
    { "ExplanationOfBenefit", { "patient", "payee.party", NULL } },

    /* patient: FamilyMemberHistory.patient */
    { "FamilyMemberHistory", { "patient", NULL } },

    /* patient: Flag.subject */
    { "Flag", { "subject", NULL } },

    /* patient: Goal.subject */
    { "Goal", { "subject", NULL } },

    /* member: Group.member.entity */
    { "Group", { "member.entity", NULL } },

    /* patient: ImagingStudy.subject */
    { "ImagingStudy", { "subject", NULL } },

    /* patient: .patient */
    { "Immunization", { "patient", NULL } },
    { "ImmunizationEvaluation", { "patient", NULL } },
    { "ImmunizationRecommendation", { "patient", NULL } },

    /* subject, patient: Invoice.subject; recipient: Invoice.recipient */
    { "Invoice", { "subject", "recipient", NULL } },

    /* subject: List.subject; source: List.source */
    { "List", { "subject", "source", NULL } },

    /* patient: MeasureReport.subject */
    { "MeasureReport", { "subject", NULL } },

    /* subject: Media.subject */
    { "Media", { "subject", NULL } },

    /* patient, subject: .subject; performer: .performer.actor */
    { "MedicationAdministration", { "subject", "performer.actor", NULL } },

    /* subject, patient: .subject; receiver: .receiver */
    { "MedicationDispense", { "subject", "receiver", NULL } },

    /* subject: .subject */
    { "MedicationRequest", { "subject", NULL } },
    { "MedicationStatement", { "subject", NULL } },

    /* patient: MolecularSequence.patient */
    { "MolecularSequence", { "patient", NULL } },

    /* patient: NutritionOrder.patient */
    { "NutritionOrder", { "patient", NULL } },

    /* subject: Observation.subject; performer: Observation.performer */
    { "Observation", { "subject", "performer", NULL } },

    /* link: Patient.link.other (and the Patient's own id) */
    { "Patient", { "link.other", NULL } },

    /* patient: Person.link.target */
    { "Person", { "link.target", NULL } },

    /* patient: Procedure.subject; performer: Procedure.performer.actor */
    { "Procedure", { "subject", "performer.actor", NULL } },

    /* patient: Provenance.target */
    { "Provenance", { "target", NULL } },

    /* subject, author */
    { "QuestionnaireResponse", { "subject", "author", NULL } },

    /* patient: RelatedPerson.patient */
    { "RelatedPerson", { "patient", NULL } },

    /* subject; participant: RequestGroup.action.participant */
    { "RequestGroup", { "subject", "action.participant", NULL } },

    /* individual: ResearchSubject.individual */
    { "ResearchSubject", { "individual", NULL } },

    /* subject: RiskAssessment.subject */
    { "RiskAssessment", { "subject", NULL } },

    /* actor: Schedule.actor */
    { "Schedule", { "actor", NULL } },

    /* subject: .subject; performer: .performer */
    { "ServiceRequest", { "subject", "performer", NULL } },

    /* subject: Specimen.subject */
    { "Specimen", { "subject", NULL } },

    /* patient: SupplyDelivery.patient */
    { "SupplyDelivery", { "patient", NULL } },

    /* subject: SupplyRequest.deliverTo */
    { "SupplyRequest", { "deliverTo", NULL } },

    /* patient: VisionPrescription.patient */
    { "VisionPrescription", { "patient", NULL } },
};

#define WELBY_COMPARTMENT_NTYPES                                             \
    (sizeof(welby_compartment_types) / sizeof(welby_compartment_types[0]))


welby_reason_e
welby_compartment_patients(json_t *resource, json_t *bundle,
    const welby_str_t *bases, size_t nbases, welby_patient_set_t *out)
{
    int                       type;
    json_t                   *rt;
    welby_compartment_walk_t  w;

    memset(out, 0, sizeof(welby_patient_set_t));

    if (!json_is_object(resource)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    rt = json_object_get(resource, "resourceType");

    if (!json_is_string(rt)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    type = welby_fhir_type_find((const unsigned char *) json_string_value(rt),
                                json_string_length(rt));

    if (type == WELBY_FHIR_TYPE_NONE) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    w.container = resource;
    w.bundle = bundle;
    w.bases = bases;
    w.nbases = nbases;
    w.out = out;

    return welby_compartment_collect(resource, type, &w);
}


welby_reason_e
welby_compartment_check_answer(json_t *resource,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases)
{
    return welby_compartment_answer(resource, subj, context, bases, nbases,
                                    0);
}


welby_reason_e
welby_compartment_check_write(const welby_fhir_request_t *req,
    json_t *body, const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases)
{
    if (req->interaction == WELBY_FHIR_BATCH
        || req->interaction == WELBY_FHIR_TRANSACTION)
    {
        return welby_compartment_bundle(req, body, subj, bases, nbases);
    }

    return welby_compartment_write(req, body, NULL, subj, context, bases,
                                   nbases);
}


int
welby_compartment_is_transaction(json_t *bundle)
{
    return welby_json_str_is(json_object_get(bundle, "type"), "transaction");
}


welby_reason_e
welby_compartment_reached(const welby_fhir_request_t *req, json_t *body,
    const welby_str_t *bases, size_t nbases,
    welby_compartment_reached_pt reached, void *data)
{
    size_t                 i, j;
    json_t                *entries, *entry;
    unsigned char         *mem;
    welby_reason_e         rc;
    welby_fhir_request_t   ereq;

    switch (req->interaction) {

    case WELBY_FHIR_CREATE:
    case WELBY_FHIR_UPDATE:
        return welby_compartment_resource_reached(body, NULL, bases, nbases,
                                                  reached, data);

    case WELBY_FHIR_BATCH:
    case WELBY_FHIR_TRANSACTION:
        break;

    default:
        return WELBY_REASON_NONE;
    }

    entries = json_object_get(body, "entry");

    if (!json_is_array(entries)) {
        return WELBY_REASON_NONE;
    }

    json_array_foreach(entries, i, entry) {
        rc = welby_compartment_entry_request(entry, bases, nbases, &ereq,
                                             &mem);

        if (rc == WELBY_REASON_INTERNAL_ERROR) {
            free(mem);
            return rc;
        }

        /* an entry the policy could not classify was not allowed */

        if (rc != WELBY_REASON_NONE) {
            free(mem);
            continue;
        }

        for (j = 0; j < ereq.npatients; j++) {
            if (reached(data, ereq.patients[j].data, ereq.patients[j].len)
                != 0)
            {
                free(mem);
                return WELBY_REASON_INTERNAL_ERROR;
            }
        }

        rc = WELBY_REASON_NONE;

        if (ereq.interaction == WELBY_FHIR_CREATE
            || ereq.interaction == WELBY_FHIR_UPDATE)
        {
            rc = welby_compartment_resource_reached(
                     json_object_get(entry, "resource"), body, bases, nbases,
                     reached, data);
        }

        free(mem);

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    return WELBY_REASON_NONE;
}


/* The compartment patients of a resource written, each to reached(). */
static welby_reason_e
welby_compartment_resource_reached(json_t *resource, json_t *bundle,
    const welby_str_t *bases, size_t nbases,
    welby_compartment_reached_pt reached, void *data)
{
    size_t               i;
    welby_patient_set_t  set;

    /* a resource the policy could not read was not allowed */

    if (welby_compartment_patients(resource, bundle, bases, nbases, &set)
        != WELBY_REASON_NONE)
    {
        return WELBY_REASON_NONE;
    }

    for (i = 0; i < set.n; i++) {
        if (reached(data, set.ids[i].data, set.ids[i].len) != 0) {
            return WELBY_REASON_INTERNAL_ERROR;
        }
    }

    return WELBY_REASON_NONE;
}


static const welby_compartment_type_t *
welby_compartment_type(int type)
{
    int          c;
    size_t       lo, hi, mid;
    const char  *name;

    name = welby_fhir_type_name(type);

    if (name == NULL) {
        return NULL;
    }

    lo = 0;
    hi = WELBY_COMPARTMENT_NTYPES;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcmp(name, welby_compartment_types[mid].type);

        if (c == 0) {
            return &welby_compartment_types[mid];
        }

        if (c < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


/*
 * The classifier's list and this table are kept apart; a type either of
 * them puts in the compartment is treated as in it, so that a type the
 * table lacks is unverifiable rather than free of patients.
 */
static int
welby_compartment_member(int type)
{
    return welby_fhir_in_compartment(type)
           || welby_compartment_type(type) != NULL;
}


/* jansson strings may hold NUL: compare by length */
static int
welby_json_str_is(json_t *v, const char *s)
{
    size_t  n;

    if (!json_is_string(v)) {
        return 0;
    }

    n = strlen(s);

    return json_string_length(v) == n
           && memcmp(json_string_value(v), s, n) == 0;
}


static welby_reason_e
welby_compartment_collect(json_t *resource, int type,
    welby_compartment_walk_t *w)
{
    json_t                          *id;
    size_t                           i;
    welby_reason_e                   rc;
    const welby_compartment_type_t  *ct;

    if (!welby_compartment_member(type)) {
        return WELBY_REASON_NONE;
    }

    ct = welby_compartment_type(type);

    if (ct == NULL) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    if (type == welby_fhir_type_patient()) {
        id = json_object_get(resource, "id");

        if (id == NULL || json_is_null(id)) {
            w->out->new_patient = 1;

        } else if (!json_is_string(id)
                   || !welby_fhir_id_valid(
                          (const unsigned char *) json_string_value(id),
                          json_string_length(id)))
        {
            return WELBY_REASON_FHIR_BODY_INVALID;

        } else {
            rc = welby_compartment_add(w->out,
                     (const unsigned char *) json_string_value(id),
                     json_string_length(id));

            if (rc != WELBY_REASON_NONE) {
                return rc;
            }
        }
    }

    for (i = 0; ct->paths[i] != NULL; i++) {
        rc = welby_compartment_walk(resource, ct->paths[i], w);

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    return WELBY_REASON_NONE;
}


/*
 * value holds the element named by path's first step (arrays at any
 * step); at the end of the path it is a Reference or an array of them.
 * A step that is neither an object nor an array is not FHIR: whatever a
 * server makes of it cannot be known, so it is unverifiable.
 */
static welby_reason_e
welby_compartment_walk(json_t *value, const char *path,
    welby_compartment_walk_t *w)
{
    char            name[64];
    size_t          i, n;
    json_t         *child, *elt;
    const char     *dot;
    welby_reason_e  rc;

    if (value == NULL || json_is_null(value)) {
        return WELBY_REASON_NONE;
    }

    if (json_is_array(value)) {
        json_array_foreach(value, i, elt) {
            if (json_is_array(elt)) {
                return WELBY_REASON_PATIENT_UNVERIFIABLE;
            }

            rc = welby_compartment_walk(elt, path, w);

            if (rc != WELBY_REASON_NONE) {
                return rc;
            }
        }

        return WELBY_REASON_NONE;
    }

    if (*path == '\0') {
        return welby_compartment_reference(value, w);
    }

    if (!json_is_object(value)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    dot = strchr(path, '.');
    n = (dot != NULL) ? (size_t) (dot - path) : strlen(path);

    if (n >= sizeof(name)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    memcpy(name, path, n);
    name[n] = '\0';

    child = json_object_get(value, name);

    return welby_compartment_walk(child, path + n + (dot != NULL), w);
}


static welby_reason_e
welby_compartment_reference(json_t *ref, welby_compartment_walk_t *w)
{
    json_t  *reference, *type, *identifier;

    if (!json_is_object(ref)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    type = json_object_get(ref, "type");

    if (type != NULL && !json_is_null(type) && !json_is_string(type)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    if (json_is_null(type)) {
        type = NULL;
    }

    reference = json_object_get(ref, "reference");

    if (reference == NULL || json_is_null(reference)) {

        /*
         * A logical reference (identifier only) names a patient the
         * gateway cannot look up, unless its type says it is not one.
         */

        identifier = json_object_get(ref, "identifier");

        if (identifier != NULL && !json_is_null(identifier)
            && (type == NULL || welby_json_str_is(type, "Patient")))
        {
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }

        return WELBY_REASON_NONE;
    }

    if (!json_is_string(reference)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    return welby_compartment_ref_string(
               (const unsigned char *) json_string_value(reference),
               json_string_length(reference), type, w);
}


static welby_reason_e
welby_compartment_ref_string(const unsigned char *s, size_t len,
    json_t *type, welby_compartment_walk_t *w)
{
    int             rc;
    welby_str_t     id;
    welby_reason_e  reason;

    if (len == 0) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    if (s[0] == '#') {
        reason = welby_compartment_contained_ref(s + 1, len - 1, w);

    } else if ((len > 9 && memcmp(s, "urn:uuid:", 9) == 0)
               || (len > 8 && memcmp(s, "urn:oid:", 8) == 0))
    {
        reason = welby_compartment_urn_ref(s, len, w);

    } else {
        reason = WELBY_REASON_NONE;
        id.data = NULL;
        id.len = 0;

        rc = welby_fhir_patient_ref(s, len, w->bases, w->nbases, &id);

        if (rc < 0) {
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }

        /* a "type" that contradicts the reference: which one wins? */

        if (type != NULL && (rc == 1) != welby_json_str_is(type, "Patient"))
        {
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }

        if (rc == 1) {
            if (id.data == NULL || !welby_fhir_id_valid(id.data, id.len)) {
                return WELBY_REASON_PATIENT_UNVERIFIABLE;
            }

            return welby_compartment_add(w->out, id.data, id.len);
        }

        return WELBY_REASON_NONE;
    }

    return reason;
}


/*
 * "#id" names a resource in the container's "contained": a contained
 * Patient is no patient of this server, so whose data it is cannot be
 * known; a contained resource of another type is not a patient.
 */
static welby_reason_e
welby_compartment_contained_ref(const unsigned char *s, size_t len,
    welby_compartment_walk_t *w)
{
    size_t   i;
    json_t  *contained, *elt, *id, *found;

    if (len == 0 || w->container == NULL) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    contained = json_object_get(w->container, "contained");

    if (!json_is_array(contained)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    found = NULL;

    json_array_foreach(contained, i, elt) {
        id = json_object_get(elt, "id");

        if (json_is_string(id) && json_string_length(id) == len
            && memcmp(json_string_value(id), s, len) == 0)
        {
            if (found != NULL) {
                return WELBY_REASON_PATIENT_UNVERIFIABLE;
            }

            found = elt;
        }
    }

    if (found == NULL
        || !json_is_string(json_object_get(found, "resourceType"))
        || welby_json_str_is(json_object_get(found, "resourceType"),
                             "Patient"))
    {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    return WELBY_REASON_NONE;
}


/*
 * "urn:uuid:" and "urn:oid:" name an entry of the Bundle by its fullUrl.
 * A Patient entry that updates Patient/{id} is that patient; any other
 * Patient entry creates one.
 */
static welby_reason_e
welby_compartment_urn_ref(const unsigned char *s, size_t len,
    welby_compartment_walk_t *w)
{
    size_t   i;
    json_t  *entries, *entry, *url, *found, *res, *id, *request;

    if (w->bundle == NULL) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    entries = json_object_get(w->bundle, "entry");

    if (!json_is_array(entries)) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    found = NULL;

    json_array_foreach(entries, i, entry) {
        url = json_object_get(entry, "fullUrl");

        if (json_is_string(url) && json_string_length(url) == len
            && memcmp(json_string_value(url), s, len) == 0)
        {
            if (found != NULL) {
                return WELBY_REASON_PATIENT_UNVERIFIABLE;
            }

            found = entry;
        }
    }

    if (found == NULL) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    res = json_object_get(found, "resource");

    if (!json_is_object(res)
        || !json_is_string(json_object_get(res, "resourceType")))
    {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    if (!welby_json_str_is(json_object_get(res, "resourceType"), "Patient")) {
        return WELBY_REASON_NONE;
    }

    request = json_object_get(found, "request");
    id = json_object_get(res, "id");

    if (welby_json_str_is(json_object_get(request, "method"), "PUT")
        && json_is_string(id)
        && welby_fhir_id_valid((const unsigned char *) json_string_value(id),
                               json_string_length(id)))
    {
        return welby_compartment_add(w->out,
                   (const unsigned char *) json_string_value(id),
                   json_string_length(id));
    }

    w->out->new_patient = 1;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_compartment_add(welby_patient_set_t *out, const unsigned char *id,
    size_t len)
{
    size_t  i;

    for (i = 0; i < out->n; i++) {
        if (out->ids[i].len == len && memcmp(out->ids[i].data, id, len) == 0)
        {
            return WELBY_REASON_NONE;
        }
    }

    if (out->n == WELBY_FHIR_PATIENTS_MAX) {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    out->ids[out->n].data = id;
    out->ids[out->n].len = len;
    out->n++;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_compartment_set_ok(const welby_patient_set_t *set,
    const welby_policy_subject_t *subj, unsigned context)
{
    size_t  i;

    /* a patient that does not exist yet is nobody's the token reaches */

    if (set->new_patient && context != WELBY_SCOPE_SYSTEM) {
        return WELBY_REASON_PATIENT_MISMATCH;
    }

    for (i = 0; i < set->n; i++) {
        if (!welby_policy_patient_ok(subj, context, set->ids[i].data,
                                     set->ids[i].len))
        {
            return WELBY_REASON_PATIENT_MISMATCH;
        }
    }

    return WELBY_REASON_NONE;
}


/*
 * A resource may be written or shown when every patient its compartment
 * elements reference is reachable, and (outside the system context) at
 * least one is: a compartment resource that names no patient belongs to
 * nobody the token could be checked against.  Contained resources are
 * part of it: a contained Patient cannot be identified, a contained
 * resource of a compartment type must name only reachable patients.
 */
static welby_reason_e
welby_compartment_permitted(json_t *resource, json_t *bundle,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases)
{
    int                       type;
    size_t                    i;
    json_t                   *contained, *elt, *rt;
    welby_reason_e            rc;
    welby_patient_set_t       set;
    welby_compartment_walk_t  w;

    rc = welby_compartment_patients(resource, bundle, bases, nbases, &set);

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    rt = json_object_get(resource, "resourceType");
    type = welby_fhir_type_find((const unsigned char *) json_string_value(rt),
                                json_string_length(rt));

    if (welby_compartment_member(type)) {
        if (set.n == 0 && !set.new_patient && context != WELBY_SCOPE_SYSTEM)
        {
            return WELBY_REASON_PATIENT_MISMATCH;
        }

        rc = welby_compartment_set_ok(&set, subj, context);

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    contained = json_object_get(resource, "contained");

    if (contained == NULL || json_is_null(contained)) {
        return WELBY_REASON_NONE;
    }

    if (!json_is_array(contained)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    json_array_foreach(contained, i, elt) {
        rt = json_object_get(elt, "resourceType");

        if (!json_is_object(elt) || !json_is_string(rt)) {
            return WELBY_REASON_FHIR_BODY_INVALID;
        }

        type = welby_fhir_type_find(
                   (const unsigned char *) json_string_value(rt),
                   json_string_length(rt));

        if (type == WELBY_FHIR_TYPE_NONE) {
            return WELBY_REASON_FHIR_BODY_INVALID;
        }

        if (context == WELBY_SCOPE_SYSTEM) {
            continue;
        }

        if (type == welby_fhir_type_patient()
            || type == welby_fhir_type_find((const unsigned char *) "Bundle",
                                            6))
        {
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }

        memset(&set, 0, sizeof(welby_patient_set_t));
        w.container = resource;
        w.bundle = bundle;
        w.bases = bases;
        w.nbases = nbases;
        w.out = &set;

        rc = welby_compartment_collect(elt, type, &w);

        if (rc == WELBY_REASON_NONE) {
            rc = welby_compartment_set_ok(&set, subj, context);
        }

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_compartment_answer(json_t *resource,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases, unsigned depth)
{
    size_t          i;
    json_t         *entries, *entry, *res;
    welby_reason_e  rc;

    if (!json_is_object(resource)) {
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }

    if (welby_json_str_is(json_object_get(resource, "resourceType"),
                          "Bundle"))
    {
        /*
         * Any Bundle, not only searchset and history: whatever its type,
         * its entries are what the client reads.
         */

        if (depth == WELBY_COMPARTMENT_DEPTH_MAX) {
            return WELBY_REASON_RESPONSE_UNVERIFIABLE;
        }

        entries = json_object_get(resource, "entry");

        if (entries == NULL) {
            return WELBY_REASON_NONE;
        }

        if (!json_is_array(entries)) {
            return WELBY_REASON_RESPONSE_UNVERIFIABLE;
        }

        json_array_foreach(entries, i, entry) {
            if (!json_is_object(entry)) {
                return WELBY_REASON_RESPONSE_UNVERIFIABLE;
            }

            res = json_object_get(entry, "resource");

            if (res == NULL) {
                continue;           /* a history entry of a delete */
            }

            rc = welby_compartment_answer(res, subj, context, bases, nbases,
                                          depth + 1);

            if (rc != WELBY_REASON_NONE) {
                return rc;
            }
        }

        return WELBY_REASON_NONE;
    }

    rc = welby_compartment_permitted(resource, NULL, subj, context, bases,
                                     nbases);

    switch (rc) {
    case WELBY_REASON_NONE:
        return WELBY_REASON_NONE;

    case WELBY_REASON_PATIENT_MISMATCH:
        return WELBY_REASON_RESPONSE_PATIENT_MISMATCH;

    default:
        return WELBY_REASON_RESPONSE_UNVERIFIABLE;
    }
}


static welby_reason_e
welby_compartment_write(const welby_fhir_request_t *req, json_t *body,
    json_t *bundle, const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases)
{
    switch (req->interaction) {

    case WELBY_FHIR_CREATE:
    case WELBY_FHIR_UPDATE:
        return welby_compartment_resource_write(req, body, bundle, subj,
                                                context, bases, nbases);

    case WELBY_FHIR_PATCH:
        return welby_compartment_patch(req, body, subj, context, bases,
                                       nbases);

    case WELBY_FHIR_DELETE:
        return welby_compartment_existing(req, context);

    case WELBY_FHIR_BATCH:
    case WELBY_FHIR_TRANSACTION:
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;    /* nested */

    default:
        return WELBY_REASON_NONE;
    }
}


/*
 * The request alone cannot prove whose an existing resource of a
 * compartment type (other than Patient, whose id is its patient) is.
 */
static welby_reason_e
welby_compartment_existing(const welby_fhir_request_t *req,
    unsigned context)
{
    if (context != WELBY_SCOPE_SYSTEM
        && req->type != welby_fhir_type_patient()
        && welby_compartment_member(req->type))
    {
        return WELBY_REASON_PATIENT_UNVERIFIABLE;
    }

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_compartment_resource_write(const welby_fhir_request_t *req,
    json_t *body, json_t *bundle, const welby_policy_subject_t *subj,
    unsigned context, const welby_str_t *bases, size_t nbases)
{
    json_t          *id;
    const char      *name;
    welby_reason_e   rc;

    name = welby_fhir_type_name(req->type);

    if (name == NULL || !json_is_object(body)
        || !welby_json_str_is(json_object_get(body, "resourceType"), name))
    {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    if (req->interaction == WELBY_FHIR_UPDATE) {
        if (req->id.len == 0) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;    /* conditional */
        }

        id = json_object_get(body, "id");

        if (!json_is_string(id) || json_string_length(id) != req->id.len
            || memcmp(json_string_value(id), req->id.data, req->id.len) != 0)
        {
            return WELBY_REASON_FHIR_ID_MISMATCH;
        }

        rc = welby_compartment_existing(req, context);

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    if (req->interaction == WELBY_FHIR_CREATE
        && req->type == welby_fhir_type_patient()
        && context != WELBY_SCOPE_SYSTEM)
    {
        /* the id of a created resource is the server's: a new patient */
        return WELBY_REASON_PATIENT_MISMATCH;
    }

    return welby_compartment_permitted(body, bundle, subj, context, bases,
                                       nbases);
}


/*
 * JSON Patch (RFC 6902).  Every op is read; an op whose path (or, for
 * move, whose from) reaches into or above a compartment element may only
 * add or replace it with reachable Patient references.  On a Patient,
 * "/link" and "/id" are not patched at all.
 */
static welby_reason_e
welby_compartment_patch(const welby_fhir_request_t *req, json_t *body,
    const welby_policy_subject_t *subj, unsigned context,
    const welby_str_t *bases, size_t nbases)
{
    size_t                           i;
    json_t                          *op;
    welby_reason_e                   rc;
    const welby_compartment_type_t  *ct;

    if (req->id.len == 0) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;        /* conditional */
    }

    rc = welby_compartment_existing(req, context);

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (json_is_object(body)) {
        if (welby_json_str_is(json_object_get(body, "resourceType"),
                              "Parameters")
            || welby_json_str_is(json_object_get(body, "resourceType"),
                                 "Binary"))
        {
            /* FHIRPath Patch, or a JSON Patch in a Bundle's Binary */
            return WELBY_REASON_FHIR_FORMAT_UNSUPPORTED;
        }

        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    if (!json_is_array(body)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    ct = NULL;

    if (welby_compartment_member(req->type)) {
        ct = welby_compartment_type(req->type);

        if (ct == NULL) {
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }
    }

    json_array_foreach(body, i, op) {
        rc = welby_compartment_patch_op(op, req->type, ct, subj, context,
                                        bases, nbases);

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_compartment_patch_op(json_t *op, int type,
    const welby_compartment_type_t *ct, const welby_policy_subject_t *subj,
    unsigned context, const welby_str_t *bases, size_t nbases)
{
    int              deeper, is_test, is_move, is_copy, is_remove;
    char            *buf, *fbuf;
    size_t           i, nsegs, nfsegs, len;
    json_t          *name, *path, *from, *value;
    const char      *rest, *segs[64], *fsegs[64];
    welby_reason_e   rc;

    if (!json_is_object(op)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    name = json_object_get(op, "op");
    path = json_object_get(op, "path");
    from = json_object_get(op, "from");
    value = json_object_get(op, "value");

    if (!json_is_string(path)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    is_test = welby_json_str_is(name, "test");
    is_move = welby_json_str_is(name, "move");
    is_copy = welby_json_str_is(name, "copy");
    is_remove = welby_json_str_is(name, "remove");

    if (!is_test && !is_move && !is_copy && !is_remove
        && !welby_json_str_is(name, "add")
        && !welby_json_str_is(name, "replace"))
    {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    if ((is_move || is_copy) && !json_is_string(from)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    if (!is_move && !is_copy && !is_remove && value == NULL) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    len = json_string_length(path);
    buf = malloc(len + 1);
    fbuf = NULL;

    if (buf == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    rc = WELBY_REASON_NONE;

    if (!welby_pointer_split(json_string_value(path), len, buf, segs,
                             &nsegs))
    {
        rc = WELBY_REASON_FHIR_BODY_INVALID;
        goto done;
    }

    nfsegs = 0;

    if (is_move) {
        len = json_string_length(from);
        fbuf = malloc(len + 1);

        if (fbuf == NULL) {
            rc = WELBY_REASON_INTERNAL_ERROR;
            goto done;
        }

        if (!welby_pointer_split(json_string_value(from), len, fbuf, fsegs,
                                 &nfsegs))
        {
            rc = WELBY_REASON_FHIR_BODY_INVALID;
            goto done;
        }

        /* moving the whole resource away is removing everything */

        if (nfsegs == 0 && ct != NULL) {
            rc = WELBY_REASON_PATIENT_MISMATCH;
            goto done;
        }
    }

    if (is_test || ct == NULL) {
        goto done;
    }

    /* the root: the whole resource replaced, nothing left to compare */

    if (nsegs == 0) {
        rc = WELBY_REASON_PATIENT_UNVERIFIABLE;
        goto done;
    }

    if (type == welby_fhir_type_patient()) {
        if (strcmp(segs[0], "id") == 0
            || (is_move && strcmp(fsegs[0], "id") == 0))
        {
            rc = WELBY_REASON_FHIR_ID_MISMATCH;
            goto done;
        }

        if (strcmp(segs[0], "link") == 0
            || (is_move && strcmp(fsegs[0], "link") == 0))
        {
            rc = WELBY_REASON_PATIENT_MISMATCH;
            goto done;
        }

        goto done;
    }

    for (i = 0; ct->paths[i] != NULL; i++) {
        if (is_move
            && welby_pointer_touches(fsegs, nfsegs, ct->paths[i], &rest,
                                     &deeper))
        {
            rc = WELBY_REASON_PATIENT_MISMATCH;
            goto done;
        }

        if (!welby_pointer_touches(segs, nsegs, ct->paths[i], &rest,
                                   &deeper))
        {
            continue;
        }

        if (is_remove || is_move || is_copy) {
            rc = WELBY_REASON_PATIENT_MISMATCH;
            goto done;
        }

        rc = welby_compartment_patch_value(value, rest, deeper, segs, nsegs,
                                           subj, context, bases, nbases);

        if (rc != WELBY_REASON_NONE) {
            goto done;
        }
    }

done:

    free(buf);
    free(fbuf);

    return rc;
}


/*
 * Splits a JSON Pointer (RFC 6901) into its decoded tokens, written to
 * buf (len + 1 bytes).  "" is the root (no token).  A token with a NUL
 * cannot name a FHIR element and is refused with the pointer.
 */
static int
welby_pointer_split(const char *ptr, size_t len, char *buf,
    const char **segs, size_t *nsegs)
{
    char    *d;
    size_t   i;

    *nsegs = 0;

    if (len == 0) {
        return 1;
    }

    if (ptr[0] != '/') {
        return 0;
    }

    d = buf;

    for (i = 0; i < len; i++) {
        if (ptr[i] == '/') {
            if (*nsegs > 0) {
                *d++ = '\0';
            }

            if (*nsegs == 64) {
                return 0;
            }

            segs[(*nsegs)++] = d;
            continue;
        }

        if (ptr[i] == '\0') {
            return 0;
        }

        if (ptr[i] == '~') {
            if (i + 1 == len || (ptr[i + 1] != '0' && ptr[i + 1] != '1')) {
                return 0;
            }

            *d++ = (ptr[i + 1] == '0') ? '~' : '/';
            i++;
            continue;
        }

        *d++ = ptr[i];
    }

    *d = '\0';

    return 1;
}


static int
welby_pointer_index(const char *seg)
{
    if (strcmp(seg, "-") == 0) {
        return 1;
    }

    if (*seg == '\0') {
        return 0;
    }

    for ( /* void */ ; *seg; seg++) {
        if (*seg < '0' || *seg > '9') {
            return 0;
        }
    }

    return 1;
}


/*
 * Whether the pointer's tokens reach the element path: the pointer is
 * the path's prefix (rest: what of the path lies below the pointed
 * value, "" when the value is the Reference or its array) or goes below
 * it, into a Reference (deeper: the first token past the path).
 * Array indexes in the pointer are stepped over.
 */
static int
welby_pointer_touches(const char **segs, size_t nsegs, const char *path,
    const char **rest, int *deeper)
{
    size_t       i, n;
    const char  *p, *dot;

    p = path;
    *deeper = -1;

    for (i = 0; i < nsegs; i++) {
        if (*p == '\0') {
            if (welby_pointer_index(segs[i])) {
                continue;
            }

            /* the display of a Reference names no one */

            if (strcmp(segs[i], "display") == 0) {
                return 0;
            }

            *deeper = (int) i;
            *rest = p;
            return 1;
        }

        if (welby_pointer_index(segs[i])) {
            continue;
        }

        dot = strchr(p, '.');
        n = (dot != NULL) ? (size_t) (dot - p) : strlen(p);

        if (strlen(segs[i]) != n || memcmp(segs[i], p, n) != 0) {
            return 0;
        }

        p += n + (dot != NULL);
    }

    *rest = p;

    return 1;
}


static welby_reason_e
welby_compartment_patch_value(json_t *value, const char *rest, int deeper,
    const char **segs, size_t nsegs, const welby_policy_subject_t *subj,
    unsigned context, const welby_str_t *bases, size_t nbases)
{
    welby_reason_e            rc;
    welby_patient_set_t       set;
    welby_compartment_walk_t  w;

    memset(&set, 0, sizeof(welby_patient_set_t));

    /* "#id" cannot be looked up in a resource the request does not hold */
    w.container = NULL;
    w.bundle = NULL;
    w.bases = bases;
    w.nbases = nbases;
    w.out = &set;

    if (deeper >= 0) {
        if ((size_t) deeper + 1 != nsegs
            || strcmp(segs[deeper], "reference") != 0
            || !json_is_string(value))
        {
            /* type, identifier, extensions: what a server reads is unsure */
            return WELBY_REASON_PATIENT_UNVERIFIABLE;
        }

        rc = welby_compartment_ref_string(
                 (const unsigned char *) json_string_value(value),
                 json_string_length(value), NULL, &w);

    } else {
        rc = welby_compartment_walk(value, rest, &w);
    }

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    return welby_compartment_set_ok(&set, subj, context);
}


/*
 * A batch or transaction: each entry's request classified and decided as
 * a request of its own, its resource checked as that request's body.
 * The Bundle passes only if every entry does.
 */
static welby_reason_e
welby_compartment_bundle(const welby_fhir_request_t *req, json_t *body,
    const welby_policy_subject_t *subj, const welby_str_t *bases,
    size_t nbases)
{
    size_t          i;
    json_t         *entries, *entry, *type;
    welby_reason_e  rc;

    (void) req;

    if (!json_is_object(body)
        || !welby_json_str_is(json_object_get(body, "resourceType"),
                              "Bundle"))
    {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    /*
     * batch and transaction are checked alike, entry by entry, whichever
     * the classifier named from the path: only the body tells them apart.
     */

    type = json_object_get(body, "type");

    if (!welby_json_str_is(type, "batch")
        && !welby_json_str_is(type, "transaction"))
    {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    entries = json_object_get(body, "entry");

    if (entries == NULL) {
        return WELBY_REASON_NONE;
    }

    if (!json_is_array(entries)) {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    json_array_foreach(entries, i, entry) {
        rc = welby_compartment_entry(entry, body, subj, bases, nbases);

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    return WELBY_REASON_NONE;
}


static int
welby_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * An entry's request, classified as a request of its own into ereq,
 * whose strings may point into *mem: the caller frees it, whatever the
 * answer (NULL when nothing was allocated).
 */
static welby_reason_e
welby_compartment_entry_request(json_t *entry, const welby_str_t *bases,
    size_t nbases, welby_fhir_request_t *ereq, unsigned char **mem)
{
    int                    h1, h2;
    json_t                *request, *method, *url;
    size_t                 i, len, plen, ulen;
    unsigned               m;
    unsigned char         *raw, *path, *scratch;
    const unsigned char   *u, *q;
    welby_reason_e         rc;
    welby_fhir_input_t     in;

    *mem = NULL;

    request = json_object_get(entry, "request");
    method = json_object_get(request, "method");
    url = json_object_get(request, "url");

    if (!json_is_object(entry) || !json_is_string(method)
        || !json_is_string(url))
    {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    if (welby_json_str_is(method, "GET")) {
        m = WELBY_FHIR_M_GET;

    } else if (welby_json_str_is(method, "HEAD")) {
        m = WELBY_FHIR_M_HEAD;

    } else if (welby_json_str_is(method, "POST")) {
        m = WELBY_FHIR_M_POST;

    } else if (welby_json_str_is(method, "PUT")) {
        m = WELBY_FHIR_M_PUT;

    } else if (welby_json_str_is(method, "PATCH")) {
        m = WELBY_FHIR_M_PATCH;

    } else if (welby_json_str_is(method, "DELETE")) {
        m = WELBY_FHIR_M_DELETE;

    } else {
        return WELBY_REASON_FHIR_BODY_INVALID;
    }

    /*
     * A conditional create runs the search of its ifNoneExist on the
     * server and answers with what it found, as the If-None-Exist header
     * of a request would: a search that nobody classified.
     */

    if (json_object_get(request, "ifNoneExist") != NULL) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    u = (const unsigned char *) json_string_value(url);
    ulen = json_string_length(url);

    /* an absolute URL must be under one of this server's bases */

    for (i = 0; i < nbases; i++) {
        if (ulen >= bases[i].len
            && memcmp(u, bases[i].data, bases[i].len) == 0
            && (ulen == bases[i].len || u[bases[i].len] == '/'
                || u[bases[i].len] == '?'))
        {
            u += bases[i].len;
            ulen -= bases[i].len;

            if (ulen > 0 && u[0] == '/') {
                u++;
                ulen--;
            }

            break;
        }
    }

    if (i == nbases) {
        for (i = 0; i < ulen && u[i] != '/' && u[i] != '?'; i++) {
            if (u[i] == ':') {
                return WELBY_REASON_FHIR_UNCLASSIFIABLE;   /* another server */
            }
        }

        if (ulen > 0 && u[0] == '/') {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }
    }

    q = memchr(u, '?', ulen);
    plen = (q != NULL) ? (size_t) (q - u) : ulen;

    /* raw "/" + path, decoded "/" + path, the classifier's scratch */

    len = 2 * (plen + 1) + ulen + 1;
    *mem = malloc(len);

    if (*mem == NULL) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    raw = *mem;
    path = raw + plen + 1;
    scratch = path + plen + 1;

    raw[0] = '/';
    memcpy(raw + 1, u, plen);
    path[0] = '/';

    for (i = 0, len = 1; i < plen; i++) {
        if (u[i] == '%') {
            h1 = (i + 2 < plen) ? welby_hex(u[i + 1]) : -1;
            h2 = (i + 2 < plen) ? welby_hex(u[i + 2]) : -1;

            if (h1 < 0 || h2 < 0) {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            path[len++] = (unsigned char) (h1 * 16 + h2);
            i += 2;
            continue;
        }

        path[len++] = u[i];
    }

    rc = welby_fhir_check_path(raw, plen + 1, path, len);

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    memset(&in, 0, sizeof(welby_fhir_input_t));

    in.method = m;
    in.path.data = path;
    in.path.len = (len == 1) ? 0 : len;     /* the base itself: "" */

    if (q != NULL) {
        in.query.data = q + 1;
        in.query.len = ulen - plen - 1;
    }

    for (i = 0; i < nbases && i < WELBY_FHIR_BASES_MAX; i++) {
        in.bases[i] = bases[i];
    }

    in.nbases = i;

    rc = welby_fhir_classify(&in, ereq, scratch, ulen + 1);

    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    /*
     * A search by POST carries its parameters in a resource; a Bundle in
     * an entry is another Bundle's entries, which nobody would check.
     */

    if (welby_json_str_is(json_object_get(json_object_get(entry, "resource"),
                                          "resourceType"), "Bundle")
        || ereq->interaction == WELBY_FHIR_BATCH
        || ereq->interaction == WELBY_FHIR_TRANSACTION
        || (m == WELBY_FHIR_M_POST
            && (ereq->interaction == WELBY_FHIR_SEARCH_TYPE
                || ereq->interaction == WELBY_FHIR_SEARCH_SYSTEM)))
    {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    return WELBY_REASON_NONE;
}



static welby_reason_e
welby_compartment_entry(json_t *entry, json_t *body,
    const welby_policy_subject_t *subj, const welby_str_t *bases,
    size_t nbases)
{
    unsigned char         *mem;
    welby_reason_e         rc;
    welby_policy_result_t  res;
    welby_fhir_request_t   ereq;

    rc = welby_compartment_entry_request(entry, bases, nbases, &ereq, &mem);

    if (rc != WELBY_REASON_NONE) {
        goto done;
    }

    rc = welby_policy_decide(&ereq, subj, &res);

    if (rc != WELBY_REASON_NONE) {
        goto done;
    }

    /* no answer of an entry is checked: what the request cannot prove */

    if (res.check_response) {
        rc = WELBY_REASON_PATIENT_UNVERIFIABLE;
        goto done;
    }

    rc = welby_compartment_write(&ereq, json_object_get(entry, "resource"),
                                 body, subj, res.context, bases, nbases);

done:

    free(mem);

    return rc;
}
