/*
 * Unit tests: the patients a FHIR resource belongs to (the R4 Patient
 * compartment's element paths), answers, writes, JSON Patch, and the
 * Bundle entries whose outcome does not depend on the scopes.
 */

#include <stdlib.h>

#include "tap.h"
#include "welby_compartment.h"


#define BASE  "https://ehr.example/fhir"

static const welby_str_t  bases[] = {
    { (const unsigned char *) BASE, sizeof(BASE) - 1 }
};


/* the R4 CompartmentDefinition patient: type and element paths */
static const struct {
    const char  *type;
    const char  *paths[5];
} expect[] = {
    { "Account", { "subject" } },
    { "AdverseEvent", { "subject" } },
    { "AllergyIntolerance", { "patient", "recorder", "asserter" } },
    { "Appointment", { "participant.actor" } },
    { "AppointmentResponse", { "actor" } },
    { "AuditEvent", { "agent.who", "entity.what" } },
    { "Basic", { "subject", "author" } },
    { "BodyStructure", { "patient" } },
    { "CarePlan", { "subject", "activity.detail.performer" } },
    { "CareTeam", { "subject", "participant.member" } },
    { "ChargeItem", { "subject" } },
    { "Claim", { "patient", "payee.party" } },
    { "ClaimResponse", { "patient" } },
    { "ClinicalImpression", { "subject" } },
    { "Communication", { "subject", "sender", "recipient" } },
    { "CommunicationRequest",
      { "subject", "sender", "recipient", "requester" } },
    { "Composition", { "subject", "author", "attester.party" } },
    { "Condition", { "subject", "asserter" } },
    { "Consent", { "patient" } },
    { "Coverage", { "policyHolder", "subscriber", "beneficiary", "payor" } },
    { "CoverageEligibilityRequest", { "patient" } },
    { "CoverageEligibilityResponse", { "patient" } },
    { "DetectedIssue", { "patient" } },
    { "DeviceRequest", { "subject", "performer" } },
    { "DeviceUseStatement", { "subject" } },
    { "DiagnosticReport", { "subject" } },
    { "DocumentManifest", { "subject", "author", "recipient" } },
    { "DocumentReference", { "subject", "author" } },
    { "Encounter", { "subject" } },
    { "EnrollmentRequest", { "candidate" } },
    { "EpisodeOfCare", { "patient" } },
    { "ExplanationOfBenefit", { "patient", "payee.party" } },
    { "FamilyMemberHistory", { "patient" } },
    { "Flag", { "subject" } },
    { "Goal", { "subject" } },
    { "Group", { "member.entity" } },
    { "ImagingStudy", { "subject" } },
    { "Immunization", { "patient" } },
    { "ImmunizationEvaluation", { "patient" } },
    { "ImmunizationRecommendation", { "patient" } },
    { "Invoice", { "subject", "recipient" } },
    { "List", { "subject", "source" } },
    { "MeasureReport", { "subject" } },
    { "Media", { "subject" } },
    { "MedicationAdministration", { "subject", "performer.actor" } },
    { "MedicationDispense", { "subject", "receiver" } },
    { "MedicationRequest", { "subject" } },
    { "MedicationStatement", { "subject" } },
    { "MolecularSequence", { "patient" } },
    { "NutritionOrder", { "patient" } },
    { "Observation", { "subject", "performer" } },
    { "Patient", { "link.other" } },
    { "Person", { "link.target" } },
    { "Procedure", { "subject", "performer.actor" } },
    { "Provenance", { "target" } },
    { "QuestionnaireResponse", { "subject", "author" } },
    { "RelatedPerson", { "patient" } },
    { "RequestGroup", { "subject", "action.participant" } },
    { "ResearchSubject", { "individual" } },
    { "RiskAssessment", { "subject" } },
    { "Schedule", { "actor" } },
    { "ServiceRequest", { "subject", "performer" } },
    { "Specimen", { "subject" } },
    { "SupplyDelivery", { "patient" } },
    { "SupplyRequest", { "deliverTo" } },
    { "VisionPrescription", { "patient" } },
};


static welby_scopes_t          scopes_patient, scopes_user, scopes_system;
static welby_policy_subject_t  subj_patient, subj_user, subj_system;
static const welby_str_t       user_patients[] = {
    { (const unsigned char *) "p1", 2 },
    { (const unsigned char *) "p3", 2 }
};


static json_t *
J(const char *text)
{
    json_t       *j;
    json_error_t  err;

    j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);

    if (j == NULL) {
        printf("# bad test JSON: %s: %s\n", err.text, text);
        exit(2);
    }

    return j;
}


static void
subjects(void)
{
    static unsigned char  scratch[64];

    memset(&scopes_patient, 0, sizeof(welby_scopes_t));
    memset(&scopes_user, 0, sizeof(welby_scopes_t));
    memset(&scopes_system, 0, sizeof(welby_scopes_t));

    welby_scopes_parse(&scopes_patient, (const unsigned char *)
                       "patient/*.cruds", 15, scratch);
    welby_scopes_parse(&scopes_user, (const unsigned char *)
                       "user/*.cruds", 12, scratch);
    welby_scopes_parse(&scopes_system, (const unsigned char *)
                       "system/*.cruds", 14, scratch);

    memset(&subj_patient, 0, sizeof(welby_policy_subject_t));
    subj_patient.scopes = &scopes_patient;
    subj_patient.patient.data = (const unsigned char *) "p1";
    subj_patient.patient.len = 2;

    memset(&subj_user, 0, sizeof(welby_policy_subject_t));
    subj_user.scopes = &scopes_user;
    subj_user.patients = user_patients;
    subj_user.npatients = 2;

    memset(&subj_system, 0, sizeof(welby_policy_subject_t));
    subj_system.scopes = &scopes_system;
    subj_system.system_ok = 1;
}


/* the ids found, space-joined, or the reason's code */
static const char *
pats(const char *text, int with_bundle)
{
    static char           buf[512];
    json_t               *j, *res;
    size_t                i;
    welby_reason_e        rc;
    welby_patient_set_t   set;

    j = J(text);
    res = with_bundle ? json_array_get(json_object_get(j, "entry"), 0) : j;
    res = with_bundle ? json_object_get(res, "resource") : res;

    rc = welby_compartment_patients(res, with_bundle ? j : NULL, bases, 1,
                                    &set);

    if (rc != WELBY_REASON_NONE) {
        snprintf(buf, sizeof(buf), "%s", welby_reason_get(rc)->code);
        json_decref(j);
        return buf;
    }

    buf[0] = '\0';

    for (i = 0; i < set.n; i++) {
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%.*s",
                 i ? " " : "", (int) set.ids[i].len, set.ids[i].data);
    }

    if (set.new_patient) {
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%snew",
                 set.n ? " " : "");
    }

    json_decref(j);

    return buf;
}


static const char *
answer(const char *text, const welby_policy_subject_t *subj, unsigned ctx)
{
    json_t          *j;
    welby_reason_e   rc;

    j = J(text);
    rc = welby_compartment_check_answer(j, subj, ctx, bases, 1);
    json_decref(j);

    return rc == WELBY_REASON_NONE ? "ok" : welby_reason_get(rc)->code;
}


static const char *
write_(welby_fhir_interaction_e i, const char *type, const char *id,
    const char *text, const welby_policy_subject_t *subj, unsigned ctx)
{
    json_t                *j;
    welby_reason_e         rc;
    welby_fhir_request_t   req;

    memset(&req, 0, sizeof(welby_fhir_request_t));
    req.interaction = i;
    req.type = type ? welby_fhir_type_find((const unsigned char *) type,
                                           strlen(type))
                    : WELBY_FHIR_TYPE_NONE;
    req.types[0] = req.type;
    req.ntypes = 1;

    if (id != NULL) {
        req.id.data = (const unsigned char *) id;
        req.id.len = strlen(id);
    }

    j = text ? J(text) : NULL;
    rc = welby_compartment_check_write(&req, j, subj, ctx, bases, 1);

    if (j != NULL) {
        json_decref(j);
    }

    return rc == WELBY_REASON_NONE ? "ok" : welby_reason_get(rc)->code;
}

#define WP(i, t, id, text)                                                  \
    write_(i, t, id, text, &subj_patient, WELBY_SCOPE_PATIENT)
#define WS(i, t, id, text)                                                  \
    write_(i, t, id, text, &subj_system, WELBY_SCOPE_SYSTEM)

/* a JSON Patch of Patient/p1 by its patient; of Observation/o1 by system */
#define PATCH_P1(text)  WP(WELBY_FHIR_PATCH, "Patient", "p1", text)
#define PATCH_SYS(text) WS(WELBY_FHIR_PATCH, "Observation", "o1", text)


/*
 * {"resourceType": T, "a": [{"b": <ref>}]} for the path "a.b" (an array
 * at the first step of a longer path), {"resourceType": T, "a": <ref>}
 * for "a".
 */
static void
build(char *buf, size_t size, const char *type, const char *path,
    const char *ref)
{
    size_t       n, depth;
    const char  *p, *dot;

    snprintf(buf, size, "{\"resourceType\":\"%s\"%s", type,
             strcmp(type, "Patient") == 0 ? ",\"id\":\"p1\"" : "");

    depth = 0;

    for (p = path; ; p = dot + 1) {
        dot = strchr(p, '.');
        n = dot ? (size_t) (dot - p) : strlen(p);

        snprintf(buf + strlen(buf), size - strlen(buf), "%s\"%.*s\":%s",
                 depth ? "{" : ",", (int) n, p,
                 (depth == 0 && dot != NULL) ? "[" : "");
        depth++;

        if (dot == NULL) {
            break;
        }
    }

    snprintf(buf + strlen(buf), size - strlen(buf), "%s", ref);

    while (--depth > 0) {
        snprintf(buf + strlen(buf), size - strlen(buf), "}");
    }

    snprintf(buf + strlen(buf), size - strlen(buf), "%s}",
             strchr(path, '.') ? "]" : "");
}


static void
table_cases(void)
{
    char         buf[1024], want[16];
    size_t       i, k;
    const char  *type;

    for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        type = expect[i].type;

        if (i > 0) {
            ok(strcmp(expect[i - 1].type, type) < 0, "%s: sorted", type);
        }

        ok(welby_fhir_type_find((const unsigned char *) type, strlen(type))
           != WELBY_FHIR_TYPE_NONE, "%s: a known type", type);

        snprintf(buf, sizeof(buf), "{\"resourceType\":\"%s\"%s}", type,
                 strcmp(type, "Patient") == 0 ? ",\"id\":\"p1\"" : "");
        is_str(pats(buf, 0), strcmp(type, "Patient") == 0 ? "p1" : "",
               "%s: a covered compartment type, no references", type);

        for (k = 0; k < 5 && expect[i].paths[k] != NULL; k++) {
            build(buf, sizeof(buf), type, expect[i].paths[k],
                  "{\"reference\":\"Patient/p2\"}");
            snprintf(want, sizeof(want), "%s",
                     strcmp(type, "Patient") == 0 ? "p1 p2" : "p2");
            is_str(pats(buf, 0), want, "%s.%s: another patient's reference",
                   type, expect[i].paths[k]);

            is_str(answer(buf, &subj_patient, WELBY_SCOPE_PATIENT),
                   "response_patient_mismatch",
                   "%s.%s: another patient's resource is not shown", type,
                   expect[i].paths[k]);

            build(buf, sizeof(buf), type, expect[i].paths[k],
                  "{\"reference\":\"Patient/p1\"}");
            is_str(pats(buf, 0), "p1", "%s.%s: the own patient's reference",
                   type, expect[i].paths[k]);

            is_str(answer(buf, &subj_patient, WELBY_SCOPE_PATIENT), "ok",
                   "%s.%s: the own resource is shown", type,
                   expect[i].paths[k]);

            build(buf, sizeof(buf), type, expect[i].paths[k],
                  "{\"reference\":\"Organization/x\"}");
            is_str(pats(buf, 0),
                   strcmp(type, "Patient") == 0 ? "p1" : "",
                   "%s.%s: a reference to another type is no patient", type,
                   expect[i].paths[k]);

            build(buf, sizeof(buf), type, expect[i].paths[k],
                  "{\"identifier\":{\"value\":\"123\"}}");
            is_str(pats(buf, 0), "patient_unverifiable",
                   "%s.%s: an identifier-only reference", type,
                   expect[i].paths[k]);
        }
    }
}


static void
coverage_cases(void)
{
    int          t, missing;
    char         buf[256];
    const char  *name, *got;

    /*
     * Every type the classifier puts in the compartment is in the table
     * (with the classifier's full list this checks one against the
     * other): a bare resource of it is unverifiable only if it is not.
     */

    missing = 0;

    for (t = 0; (name = welby_fhir_type_name(t)) != NULL; t++) {
        if (!welby_fhir_in_compartment(t) || strcmp(name, "Patient") == 0) {
            continue;
        }

        snprintf(buf, sizeof(buf), "{\"resourceType\":\"%s\"}", name);
        got = pats(buf, 0);

        if (strcmp(got, "") != 0) {
            printf("# %s: %s\n", name, got);
            missing++;
        }
    }

    ok(missing == 0, "every compartment type of the classifier is covered");
}


static void
spelling_cases(void)
{
    is_str(pats("{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"Patient\\/p2\"}}", 0), "p2",
           "Patient\\/p2 is Patient/p2");
    is_str(pats("{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"\\u0050atient/p2\"}}", 0), "p2",
           "\\u0050atient/p2 is Patient/p2");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"" BASE "/Patient/p2\"}}", 0), "p2",
           "an absolute reference under the base");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"https:\\/\\/ehr.example\\/fhir\\/Patient"
                "\\/p2\"}}", 0), "p2",
           "an absolute reference with every / escaped");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"https://evil.example/fhir/Patient/p1\"}}",
                0), "patient_unverifiable", "another server's Patient");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Patient/p2/_history/3\"}}", 0), "p2",
           "a versioned reference");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Patient/p2\",\"type\":\"Patient\"}}", 0),
           "p2", "a reference and its type agree");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Patient/p2\",\"type\":\"Group\"}}", 0),
           "patient_unverifiable", "a type that contradicts the reference");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Group/g1\",\"type\":\"Patient\"}}", 0),
           "patient_unverifiable", "a Patient type on a Group reference");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"type\":\"Patient\",\"identifier\":{\"system\":\"urn:x\","
                "\"value\":\"1\"}}}", 0), "patient_unverifiable",
           "type Patient and an identifier");
    is_str(pats("{\"resourceType\":\"Observation\",\"performer\":"
                "[{\"type\":\"Practitioner\",\"identifier\":{\"value\":\"1\"}}"
                "]}", 0), "", "type Practitioner and an identifier");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"display\":\"Someone\"}}", 0), "",
           "a display-only reference names no one");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"#c1\"},\"contained\":[{\"resourceType\":"
                "\"Patient\",\"id\":\"c1\"}]}", 0), "patient_unverifiable",
           "a contained Patient");
    is_str(pats("{\"resourceType\":\"Observation\",\"performer\":"
                "[{\"reference\":\"#c1\"}],\"contained\":[{\"resourceType\":"
                "\"Practitioner\",\"id\":\"c1\"}]}", 0), "",
           "a contained Practitioner is no patient");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"#nope\"}}", 0), "patient_unverifiable",
           "a contained reference with nothing contained");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"#\"}}", 0), "patient_unverifiable",
           "\"#\" alone");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"urn:uuid:0a0b\"}}", 0),
           "patient_unverifiable", "urn:uuid without a Bundle");
    is_str(pats("{\"resourceType\":\"Bundle\",\"type\":\"transaction\","
                "\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"urn:uuid:0a0b\"}}},"
                "{\"fullUrl\":\"urn:uuid:0a0b\",\"resource\":{\"resourceType\":"
                "\"Patient\"},\"request\":{\"method\":\"POST\",\"url\":"
                "\"Patient\"}}]}", 1), "new",
           "urn:uuid of a Patient the Bundle creates");
    is_str(pats("{\"resourceType\":\"Bundle\",\"type\":\"transaction\","
                "\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"urn:uuid:0a0b\"}}},"
                "{\"fullUrl\":\"urn:uuid:0a0b\",\"resource\":{\"resourceType\":"
                "\"Patient\",\"id\":\"p2\"},\"request\":{\"method\":\"PUT\","
                "\"url\":\"Patient/p2\"}}]}", 1), "p2",
           "urn:uuid of a Patient the Bundle updates");
    is_str(pats("{\"resourceType\":\"Bundle\",\"type\":\"transaction\","
                "\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"urn:oid:1.2.3\"}}},"
                "{\"fullUrl\":\"urn:oid:1.2.3\",\"resource\":{\"resourceType\":"
                "\"Group\"}}]}", 1), "", "urn:oid of a Group");
    is_str(pats("{\"resourceType\":\"Bundle\",\"type\":\"transaction\","
                "\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"urn:uuid:0a0c\"}}}]}", 1),
           "patient_unverifiable", "urn:uuid no entry has");
    is_str(pats("{\"resourceType\":\"Bundle\",\"type\":\"transaction\","
                "\"entry\":[{\"resource\":{\"resourceType\":\"Observation\","
                "\"subject\":{\"reference\":\"urn:uuid:0a0b\"}}},"
                "{\"fullUrl\":\"urn:uuid:0a0b\",\"resource\":{\"resourceType\":"
                "\"Group\"}},{\"fullUrl\":\"urn:uuid:0a0b\",\"resource\":"
                "{\"resourceType\":\"Patient\"}}]}", 1),
           "patient_unverifiable", "urn:uuid two entries have");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"p2\"}}", 0), "patient_unverifiable",
           "a bare id");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"\"}}", 0), "patient_unverifiable",
           "an empty reference");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Patient?identifier=x\"}}", 0),
           "patient_unverifiable", "a conditional reference");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Patient/p\\u00002\"}}", 0),
           "patient_unverifiable", "a NUL in the reference");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":7}}", 0), "patient_unverifiable",
           "a reference that is not a string");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "\"Patient/p2\"}", 0), "patient_unverifiable",
           "a subject that is not a Reference");
    is_str(pats("{\"resourceType\":\"Appointment\",\"participant\":"
                "[\"Patient/p2\"]}", 0), "patient_unverifiable",
           "a step of the path that is not an object");
    is_str(pats("{\"resourceType\":\"Appointment\",\"participant\":"
                "[{\"actor\":{\"reference\":\"Patient/p2\"}},"
                "{\"type\":[]}]}", 0), "p2",
           "a step of the path without the next element");
    is_str(pats("{\"resourceType\":\"Observation\",\"performer\":"
                "[[{\"reference\":\"Patient/p2\"}]]}", 0),
           "patient_unverifiable", "an array of arrays");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":null}", 0),
           "", "null is absent");
    is_str(pats("{\"resourceType\":\"Observation\",\"subject\":"
                "{\"reference\":\"Patient/p1\"},\"performer\":[{\"reference\":"
                "\"Patient/p1\"},{\"reference\":\"Patient/p3\"},{\"reference\":"
                "\"" BASE "/Patient/p1\"}]}", 0), "p1 p3",
           "ids deduplicated across elements and spellings");
    is_str(pats("{\"resourceType\":\"Observation\",\"performer\":["
                "{\"reference\":\"Patient/a1\"},{\"reference\":\"Patient/a2\"},"
                "{\"reference\":\"Patient/a3\"},{\"reference\":\"Patient/a4\"},"
                "{\"reference\":\"Patient/a5\"},{\"reference\":\"Patient/a6\"},"
                "{\"reference\":\"Patient/a7\"},{\"reference\":\"Patient/a8\"},"
                "{\"reference\":\"Patient/a9\"},{\"reference\":\"Patient/b1\"},"
                "{\"reference\":\"Patient/b2\"},{\"reference\":\"Patient/b3\"},"
                "{\"reference\":\"Patient/b4\"},{\"reference\":\"Patient/b5\"},"
                "{\"reference\":\"Patient/b6\"},{\"reference\":\"Patient/b7\"},"
                "{\"reference\":\"Patient/b8\"}]}", 0),
           "patient_unverifiable", "17 patients are more than it holds");
    is_str(pats("{\"resourceType\":\"Observation\",\"focus\":"
                "[{\"reference\":\"Patient/p2\"}]}", 0), "",
           "an element outside the compartment's is not read");
    is_str(pats("{\"resourceType\":\"AuditEvent\",\"entity\":[{\"what\":"
                "{\"reference\":\"Patient/p2\"}}],\"agent\":[{\"who\":"
                "{\"reference\":\"Patient/p3\"}}]}", 0), "p3 p2",
           "AuditEvent: agent.who and entity.what");
    is_str(pats("{\"resourceType\":\"CarePlan\",\"activity\":[{\"detail\":"
                "{\"performer\":[{\"reference\":\"Patient/p2\"},"
                "{\"reference\":\"Practitioner/d1\"}]}}]}", 0), "p2",
           "CarePlan: arrays at the first and the last step");

    is_str(pats("{\"resourceType\":\"Patient\"}", 0), "new",
           "a Patient without an id is a new patient");
    is_str(pats("{\"resourceType\":\"Patient\",\"id\":\"p 1\"}", 0),
           "fhir_body_invalid", "a Patient whose id is not an id");
    is_str(pats("{\"resourceType\":\"Patient\",\"id\":3}", 0),
           "fhir_body_invalid", "a Patient whose id is a number");
    is_str(pats("{\"resourceType\":\"Patient\",\"id\":\"p1\",\"link\":"
                "[{\"other\":{\"reference\":\"RelatedPerson/r1\"}}]}", 0),
           "p1", "Patient.link.other to a RelatedPerson");
    is_str(pats("{\"subject\":{\"reference\":\"Patient/p2\"}}", 0),
           "fhir_body_invalid", "no resourceType");
    is_str(pats("{\"resourceType\":\"Nonsense\"}", 0), "fhir_body_invalid",
           "an unknown resourceType");
    is_str(pats("{\"resourceType\":\"observation\"}", 0), "fhir_body_invalid",
           "resourceType is case-sensitive");
    is_str(pats("[{\"resourceType\":\"Observation\"}]", 0),
           "fhir_body_invalid", "an array is not a resource");
    is_str(pats("{\"resourceType\":\"Organization\",\"partOf\":"
                "{\"reference\":\"Patient/p2\"}}", 0), "",
           "a type outside the compartment has no patients");
}


static void
answer_cases(void)
{
#define OBS(p)  "{\"resourceType\":\"Observation\",\"id\":\"o\","            \
                "\"subject\":{\"reference\":\"Patient/" p "\"}}"
#define SEARCHSET(e)  "{\"resourceType\":\"Bundle\",\"type\":\"searchset\","  \
                      "\"entry\":[" e "]}"
#define E(r)  "{\"fullUrl\":\"" BASE "/Observation/o\",\"resource\":" r "}"
#define OO  "{\"resourceType\":\"OperationOutcome\",\"issue\":[]}"

    is_str(answer(OBS("p1"), &subj_patient, WELBY_SCOPE_PATIENT), "ok",
           "answer: the own Observation");
    is_str(answer(OBS("p2"), &subj_patient, WELBY_SCOPE_PATIENT),
           "response_patient_mismatch", "answer: another's Observation");
    is_str(answer("{\"resourceType\":\"Observation\"}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_patient_mismatch",
           "answer: an Observation of no patient, patient context");
    is_str(answer("{\"resourceType\":\"Observation\"}", &subj_system,
                  WELBY_SCOPE_SYSTEM), "ok",
           "answer: an Observation of no patient, system context");
    is_str(answer(OBS("p2"), &subj_system, WELBY_SCOPE_SYSTEM), "ok",
           "answer: system reaches every patient");
    is_str(answer(OBS("p3"), &subj_user, WELBY_SCOPE_USER), "ok",
           "answer: user context, a patient of the claim");
    is_str(answer(OBS("p2"), &subj_user, WELBY_SCOPE_USER),
           "response_patient_mismatch",
           "answer: user context, a patient outside the claim");
    is_str(answer("{\"resourceType\":\"Observation\",\"subject\":"
                  "{\"reference\":\"Patient/p1\"},\"performer\":"
                  "[{\"reference\":\"Patient/p2\"}]}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_patient_mismatch",
           "answer: in the own and another's compartment");
    is_str(answer("{\"resourceType\":\"Observation\",\"subject\":"
                  "{\"identifier\":{\"value\":\"1\"}}}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_unverifiable",
           "answer: an identifier-only subject");
    is_str(answer("{\"resourceType\":\"Organization\",\"id\":\"x\"}",
                  &subj_patient, WELBY_SCOPE_PATIENT), "ok",
           "answer: a type outside the compartment");
    is_str(answer("{\"resourceType\":\"Patient\",\"id\":\"p1\"}",
                  &subj_patient, WELBY_SCOPE_PATIENT), "ok",
           "answer: the own Patient");
    is_str(answer("{\"resourceType\":\"Patient\",\"id\":\"p2\"}",
                  &subj_patient, WELBY_SCOPE_PATIENT),
           "response_patient_mismatch", "answer: another Patient");
    is_str(answer("{\"resourceType\":\"Patient\",\"id\":\"p1\",\"link\":"
                  "[{\"other\":{\"reference\":\"Patient/p2\"},\"type\":"
                  "\"seealso\"}]}", &subj_patient, WELBY_SCOPE_PATIENT),
           "response_patient_mismatch",
           "answer: the own Patient linked to another");
    is_str(answer("{\"resourceType\":\"Patient\"}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_patient_mismatch",
           "answer: a Patient without an id");
    is_str(answer("{\"resourceType\":\"Nonsense\"}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_unverifiable",
           "answer: an unknown resourceType");
    is_str(answer("[1]", &subj_patient, WELBY_SCOPE_PATIENT),
           "response_unverifiable", "answer: not an object");
    is_str(answer("{\"resourceType\":\"Condition\",\"subject\":{\"reference\":"
                  "\"Patient/p1\"},\"contained\":[" OBS("p2") "]}",
                  &subj_patient, WELBY_SCOPE_PATIENT),
           "response_patient_mismatch",
           "answer: another's Observation contained in the own Condition");
    is_str(answer("{\"resourceType\":\"Condition\",\"subject\":{\"reference\":"
                  "\"Patient/p1\"},\"contained\":[{\"resourceType\":"
                  "\"Patient\",\"id\":\"x\"}]}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_unverifiable",
           "answer: a contained Patient");
    is_str(answer("{\"resourceType\":\"Condition\",\"subject\":{\"reference\":"
                  "\"Patient/p1\"},\"contained\":[{\"resourceType\":"
                  "\"Medication\",\"id\":\"m\"}]}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "ok",
           "answer: a contained Medication");

    is_str(answer(SEARCHSET(E(OBS("p1")) "," E(OBS("p1")) "," E(OO)),
                  &subj_patient, WELBY_SCOPE_PATIENT), "ok",
           "searchset: own entries and an OperationOutcome");
    is_str(answer(SEARCHSET(E(OBS("p1")) "," E(OBS("p2"))), &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_patient_mismatch",
           "searchset: one foreign entry");
    is_str(answer(SEARCHSET(E(OBS("p1")) "," E("{\"resourceType\":"
                  "\"Observation\",\"subject\":{\"reference\":"
                  "\"urn:uuid:1\"}}")), &subj_patient, WELBY_SCOPE_PATIENT),
           "response_unverifiable", "searchset: an unreadable entry");
    is_str(answer(SEARCHSET(E(OBS("p1")) ",{\"fullUrl\":\"x\"}"),
                  &subj_patient, WELBY_SCOPE_PATIENT), "ok",
           "history: an entry without a resource (a delete)");
    is_str(answer(SEARCHSET(E(OBS("p1")) ",7"), &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_unverifiable",
           "searchset: an entry that is not an object");
    is_str(answer("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                  "\"entry\":{}}", &subj_patient, WELBY_SCOPE_PATIENT),
           "response_unverifiable", "searchset: entry is not an array");
    is_str(answer("{\"resourceType\":\"Bundle\",\"type\":\"searchset\","
                  "\"total\":0}", &subj_patient, WELBY_SCOPE_PATIENT), "ok",
           "searchset: no entries");
    is_str(answer(SEARCHSET(E(SEARCHSET(E(OBS("p2"))))), &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_patient_mismatch",
           "searchset: another's Observation in a Bundle in the Bundle");
    is_str(answer(SEARCHSET(E(SEARCHSET(E(SEARCHSET(E(SEARCHSET(E(
                  SEARCHSET(E(OBS("p1"))))))))))), &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_unverifiable",
           "searchset: Bundles nested too deep");
    is_str(answer(SEARCHSET(E(OBS("p3")) "," E(OBS("p1"))), &subj_user,
                  WELBY_SCOPE_USER), "ok",
           "searchset: user context, two patients of the claim");
    is_str(answer("{\"resourceType\":\"Bundle\",\"type\":\"history\","
                  "\"entry\":[" E(OBS("p2")) "]}", &subj_patient,
                  WELBY_SCOPE_PATIENT), "response_patient_mismatch",
           "history: a foreign version");
}


static void
write_cases(void)
{
#define OBS_OWN  OBS("p1")
#define OBS_P2   OBS("p2")

    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL, OBS_OWN), "ok",
           "create: the own Observation");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL, OBS_P2),
           "patient_mismatch", "create: another's Observation");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
              "\"Patient\\/p2\"}}"), "patient_mismatch",
           "create: Patient\\/p2");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
              "\"\\u0050atient/p2\"}}"), "patient_mismatch",
           "create: \\u0050atient/p2");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
              "\"" BASE "/Patient/p2\"}}"), "patient_mismatch",
           "create: an absolute reference to another patient");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"type\":"
              "\"Patient\",\"identifier\":{\"value\":\"p2\"}}}"),
           "patient_unverifiable", "create: type and identifier");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
              "\"#c\"},\"contained\":[{\"resourceType\":\"Patient\",\"id\":"
              "\"c\"}]}"), "patient_unverifiable",
           "create: a contained Patient as subject");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
              "\"urn:uuid:9\"}}"), "patient_unverifiable",
           "create: urn:uuid outside a Bundle");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
              "\"Patient/p1\"},\"performer\":[{\"reference\":"
              "\"Patient/p2\"}]}"), "patient_mismatch",
           "create: the own subject, another patient as performer");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"status\":\"final\"}"),
           "patient_mismatch", "create: an Observation of no patient");
    is_str(WS(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Observation\",\"status\":\"final\"}"),
           "ok", "create: system, an Observation of no patient");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL,
              "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":"
              "\"Patient/p1\"}}"), "fhir_body_invalid",
           "create: the body's type is not the path's");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL, "[1,2]"),
           "fhir_body_invalid", "create: a body that is not an object");
    is_str(WP(WELBY_FHIR_CREATE, "Observation", NULL, NULL),
           "fhir_body_invalid", "create: no body");
    is_str(WP(WELBY_FHIR_CREATE, "Condition", NULL,
              "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":"
              "\"Patient/p1\"},\"contained\":[" OBS_P2 "]}"),
           "patient_mismatch",
           "create: another's Observation contained in the own Condition");
    is_str(WP(WELBY_FHIR_CREATE, "Patient", NULL,
              "{\"resourceType\":\"Patient\"}"), "patient_mismatch",
           "create: a Patient under patient context");
    is_str(WP(WELBY_FHIR_CREATE, "Patient", NULL,
              "{\"resourceType\":\"Patient\",\"id\":\"p1\"}"),
           "patient_mismatch", "create: a Patient naming the own id");
    is_str(WS(WELBY_FHIR_CREATE, "Patient", NULL,
              "{\"resourceType\":\"Patient\"}"), "ok",
           "create: a Patient under system context");
    is_str(WP(WELBY_FHIR_CREATE, "Organization", NULL,
              "{\"resourceType\":\"Organization\",\"name\":\"x\"}"), "ok",
           "create: a type outside the compartment");

    is_str(WP(WELBY_FHIR_UPDATE, "Patient", "p1",
              "{\"resourceType\":\"Patient\",\"id\":\"p1\"}"), "ok",
           "update: the own Patient");
    is_str(WP(WELBY_FHIR_UPDATE, "Patient", "p1",
              "{\"resourceType\":\"Patient\",\"id\":\"p2\"}"),
           "fhir_id_mismatch", "update: PUT Patient/p1 with id p2");
    is_str(WP(WELBY_FHIR_UPDATE, "Patient", "p1",
              "{\"resourceType\":\"Patient\"}"), "fhir_id_mismatch",
           "update: PUT Patient/p1 without id");
    is_str(WP(WELBY_FHIR_UPDATE, "Patient", "p1",
              "{\"resourceType\":\"Patient\",\"id\":\"p1\\u0000\"}"),
           "fhir_id_mismatch", "update: an id with a NUL after it");
    is_str(WP(WELBY_FHIR_UPDATE, "Patient", "p1",
              "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"link\":"
              "[{\"other\":{\"reference\":\"Patient/p2\"},\"type\":"
              "\"replaces\"}]}"), "patient_mismatch",
           "update: the own Patient linked to another");
    is_str(WP(WELBY_FHIR_UPDATE, "Observation", "o1",
              "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":"
              "{\"reference\":\"Patient/p1\"}}"), "patient_unverifiable",
           "update: an existing Observation, patient context");
    is_str(WS(WELBY_FHIR_UPDATE, "Observation", "o1",
              "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":"
              "{\"reference\":\"Patient/p1\"}}"), "ok",
           "update: an existing Observation, system context");
    is_str(WS(WELBY_FHIR_UPDATE, "Observation", "o1",
              "{\"resourceType\":\"Observation\",\"id\":\"o2\"}"),
           "fhir_id_mismatch", "update: PUT Observation/o1 with id o2");
    is_str(WP(WELBY_FHIR_DELETE, "Observation", "o1", NULL),
           "patient_unverifiable", "delete: an Observation, patient context");
    is_str(WP(WELBY_FHIR_DELETE, "Patient", "p1", NULL), "ok",
           "delete: the Patient itself is decided by the request");
    is_str(WP(WELBY_FHIR_PATCH, "Observation", "o1",
              "[{\"op\":\"replace\",\"path\":\"/status\",\"value\":\"x\"}]"),
           "patient_unverifiable", "patch: an Observation, patient context");
    is_str(WP(WELBY_FHIR_READ, "Observation", "o1", NULL), "ok",
           "a read writes nothing");
}


static void
patch_cases(void)
{
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"/birthDate\","
                    "\"value\":\"2000-01-01\"}]"), "ok",
           "patch Patient: replace /birthDate");
    is_str(PATCH_P1("[{\"op\":\"add\",\"path\":\"/link/-\",\"value\":"
                    "{\"other\":{\"reference\":\"Patient/p2\"},\"type\":"
                    "\"seealso\"}}]"), "patient_mismatch",
           "patch Patient: add /link/-");
    is_str(PATCH_P1("[{\"op\":\"remove\",\"path\":\"/link/0\"}]"),
           "patient_mismatch", "patch Patient: remove /link/0");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"/link/0/other/reference\","
                    "\"value\":\"Patient/p1\"}]"), "patient_mismatch",
           "patch Patient: any op on /link");
    is_str(PATCH_P1("[{\"op\":\"add\",\"path\":\"/\\u006cink\",\"value\":[]}]"),
           "patient_mismatch", "patch Patient: /\\u006cink is /link");
    is_str(PATCH_P1("[{\"op\":\"move\",\"from\":\"/link\",\"path\":"
                    "\"/extension\"}]"), "patient_mismatch",
           "patch Patient: move from /link");
    is_str(PATCH_P1("[{\"op\":\"copy\",\"from\":\"/extension\",\"path\":"
                    "\"/link\"}]"), "patient_mismatch",
           "patch Patient: copy to /link");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"/id\",\"value\":\"p2\"}]"),
           "fhir_id_mismatch", "patch Patient: replace /id");
    is_str(PATCH_P1("[{\"op\":\"test\",\"path\":\"/link\",\"value\":[]}]"),
           "ok", "patch Patient: test /link changes nothing");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"\",\"value\":"
                    "{\"resourceType\":\"Patient\",\"id\":\"p2\"}}]"),
           "patient_unverifiable", "patch Patient: replace the root");
    is_str(PATCH_P1("[{\"op\":\"frobnicate\",\"path\":\"/name\"}]"),
           "fhir_body_invalid", "patch: an unknown op");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"value\":1}]"),
           "fhir_body_invalid", "patch: an op without a path");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"link\",\"value\":1}]"),
           "fhir_body_invalid", "patch: a path that is not a pointer");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"/a~2b\",\"value\":1}]"),
           "fhir_body_invalid", "patch: a bad ~ escape");
    is_str(PATCH_P1("[{\"op\":\"replace\",\"path\":\"/name\"}]"),
           "fhir_body_invalid", "patch: replace without a value");
    is_str(PATCH_P1("[7]"), "fhir_body_invalid", "patch: an op not an object");
    is_str(PATCH_P1("{\"resourceType\":\"Parameters\",\"parameter\":[]}"),
           "fhir_format_unsupported", "patch: FHIRPath Patch");
    is_str(PATCH_P1("{\"op\":\"replace\"}"), "fhir_body_invalid",
           "patch: an object that is not a patch");
    is_str(PATCH_P1("[]"), "ok", "patch: no ops");

    is_str(PATCH_SYS("[{\"op\":\"replace\",\"path\":\"/status\",\"value\":"
                     "\"final\"}]"), "ok", "patch: an element outside");
    is_str(PATCH_SYS("[{\"op\":\"replace\",\"path\":\"/subject\",\"value\":"
                     "{\"reference\":\"Patient/p2\"}}]"), "ok",
           "patch: system sets a subject");
    is_str(PATCH_SYS("[{\"op\":\"remove\",\"path\":\"/subject\"}]"),
           "patient_mismatch", "patch: remove /subject");
    is_str(PATCH_SYS("[{\"op\":\"remove\",\"path\":\"/performer/0\"}]"),
           "patient_mismatch", "patch: remove /performer/0");
    is_str(PATCH_SYS("[{\"op\":\"remove\",\"path\":\"/performer/0/reference\""
                     "}]"), "patient_mismatch",
           "patch: remove /performer/0/reference");
    is_str(PATCH_SYS("[{\"op\":\"remove\",\"path\":\"/subject/display\"}]"),
           "ok", "patch: remove /subject/display");
    is_str(PATCH_SYS("[{\"op\":\"move\",\"from\":\"/performer\",\"path\":"
                     "\"/focus\"}]"), "patient_mismatch",
           "patch: move from /performer");
    is_str(PATCH_SYS("[{\"op\":\"copy\",\"from\":\"/focus\",\"path\":"
                     "\"/subject\"}]"), "patient_mismatch",
           "patch: copy to /subject");
    is_str(PATCH_SYS("[{\"op\":\"replace\",\"path\":\"/subject/identifier\","
                     "\"value\":{\"value\":\"1\"}}]"), "patient_unverifiable",
           "patch: set /subject/identifier");
    is_str(PATCH_SYS("[{\"op\":\"replace\",\"path\":\"/subject\",\"value\":"
                     "{\"identifier\":{\"value\":\"1\"}}}]"),
           "patient_unverifiable", "patch: an identifier-only subject");
    is_str(PATCH_SYS("[{\"op\":\"replace\",\"path\":\"/subject/reference\","
                     "\"value\":\"https://evil.example/Patient/p1\"}]"),
           "patient_unverifiable",
           "patch: /subject/reference to another server");
    is_str(PATCH_SYS("[{\"op\":\"replace\",\"path\":\"/subject/reference\","
                     "\"value\":{\"a\":1}}]"), "patient_unverifiable",
           "patch: /subject/reference that is not a string");
    is_str(PATCH_SYS("[{\"op\":\"add\",\"path\":\"/performer/-\",\"value\":"
                     "{\"reference\":\"#c\"}}]"), "patient_unverifiable",
           "patch: a contained reference the patch cannot resolve");
    is_str(PATCH_SYS("[{\"op\":\"move\",\"from\":\"\",\"path\":\"/x\"}]"),
           "patient_mismatch", "patch: move the root away");
}


static const char *
bundle(const char *text, const welby_policy_subject_t *subj)
{
    json_t                *j;
    welby_reason_e         rc;
    welby_fhir_request_t   req;

    memset(&req, 0, sizeof(welby_fhir_request_t));
    req.interaction = WELBY_FHIR_TRANSACTION;
    req.type = WELBY_FHIR_TYPE_NONE;
    req.needs_body = 1;

    j = J(text);
    rc = welby_compartment_check_write(&req, j, subj, WELBY_SCOPE_PATIENT,
                                       bases, 1);
    json_decref(j);

    return rc == WELBY_REASON_NONE ? "ok" : welby_reason_get(rc)->code;
}


/* what does not depend on the scopes: the rest is in bundle.c.pending */
static void
bundle_cases(void)
{
#define TX(e)  "{\"resourceType\":\"Bundle\",\"type\":\"transaction\","       \
               "\"entry\":[" e "]}"
#define POST_OBS(p)  "{\"resource\":" OBS(p) ",\"request\":{\"method\":"     \
                     "\"POST\",\"url\":\"Observation\"}}"

    is_str(bundle(TX(POST_OBS("p1")), &subj_patient), "ok",
           "bundle: create the own Observation");
    is_str(bundle(TX(POST_OBS("p1") "," POST_OBS("p2")), &subj_patient),
           "patient_mismatch", "bundle: one entry creates another's");
    is_str(bundle(TX("{\"resource\":" OBS("p1") ",\"request\":{\"method\":"
                     "\"POST\",\"url\":\"" BASE "/Observation\"}}"),
                  &subj_patient), "ok", "bundle: an absolute url");
    is_str(bundle(TX("{\"resource\":" OBS("p1") ",\"request\":{\"method\":"
                     "\"POST\",\"url\":\"https://evil.example/fhir/"
                     "Observation\"}}"), &subj_patient),
           "fhir_unclassifiable", "bundle: another server's url");
    is_str(bundle(TX("{\"resource\":" OBS("p1") ",\"request\":{\"method\":"
                     "\"POST\",\"url\":\"/Observation\"}}"), &subj_patient),
           "fhir_unclassifiable", "bundle: a url with a leading /");
    is_str(bundle(TX("{\"resource\":{\"resourceType\":\"Observation\","
                     "\"subject\":{\"reference\":\"urn:uuid:a\"}},"
                     "\"request\":{\"method\":\"POST\",\"url\":"
                     "\"Observation\"}},{\"fullUrl\":\"urn:uuid:a\","
                     "\"resource\":{\"resourceType\":\"Patient\",\"id\":"
                     "\"p1\"},\"request\":{\"method\":\"PUT\",\"url\":"
                     "\"Patient/p1\"}}"), &subj_patient), "ok",
           "bundle: urn:uuid of the own Patient updated in it");
    is_str(bundle(TX("{\"resource\":{\"resourceType\":\"Observation\","
                     "\"subject\":{\"reference\":\"urn:uuid:a\"}},"
                     "\"request\":{\"method\":\"POST\",\"url\":"
                     "\"Observation\"}},{\"fullUrl\":\"urn:uuid:a\","
                     "\"resource\":{\"resourceType\":\"Patient\",\"id\":"
                     "\"p2\"},\"request\":{\"method\":\"PUT\",\"url\":"
                     "\"Patient/p2\"}}"), &subj_patient), "patient_mismatch",
           "bundle: urn:uuid of another Patient updated in it");
    is_str(bundle(TX("{\"resource\":{\"resourceType\":\"Observation\","
                     "\"subject\":{\"reference\":\"urn:uuid:a\"}},"
                     "\"request\":{\"method\":\"POST\",\"url\":"
                     "\"Observation\"}},{\"fullUrl\":\"urn:uuid:a\","
                     "\"resource\":{\"resourceType\":\"Patient\"},"
                     "\"request\":{\"method\":\"POST\",\"url\":"
                     "\"Patient\"}}"), &subj_patient), "patient_mismatch",
           "bundle: urn:uuid of a Patient it creates");
    is_str(bundle(TX("{\"resource\":{\"resourceType\":\"Observation\","
                     "\"subject\":{\"reference\":\"urn:uuid:a\"}},"
                     "\"request\":{\"method\":\"POST\",\"url\":"
                     "\"Observation\"}},{\"fullUrl\":\"urn:uuid:a\","
                     "\"resource\":{\"resourceType\":\"Patient\"},"
                     "\"request\":{\"method\":\"PUT\",\"url\":"
                     "\"Patient/p1\"}}"), &subj_patient), "patient_mismatch",
           "bundle: urn:uuid of a Patient without an id is a new one");
    is_str(bundle(TX("{\"request\":{\"method\":\"GET\",\"url\":"
                     "\"Observation/o1\"}}"), &subj_patient),
           "patient_unverifiable",
           "bundle: a read whose answer would need a check");
    is_str(bundle(TX("{\"request\":{\"method\":\"GET\",\"url\":"
                     "\"Patient/p1\"}}"), &subj_patient), "ok",
           "bundle: a read of the own Patient");
    is_str(bundle(TX("{\"resource\":{\"resourceType\":\"Patient\",\"id\":"
                     "\"p2\"},\"request\":{\"method\":\"PUT\",\"url\":"
                     "\"Patient/p1\"}}"), &subj_patient), "fhir_id_mismatch",
           "bundle: PUT Patient/p1 with id p2");
    is_str(bundle(TX("{\"resource\":" OBS("p1") "}"), &subj_patient),
           "fhir_body_invalid", "bundle: an entry without a request");
    is_str(bundle(TX("{\"resource\":" OBS("p1") ",\"request\":{\"method\":"
                     "\"post\",\"url\":\"Observation\"}}"), &subj_patient),
           "fhir_body_invalid", "bundle: a method in lower case");
    is_str(bundle(TX("{\"resource\":" OBS("p1") ",\"request\":{\"method\":"
                     "\"POST\",\"url\":\"Observ%2Fation\"}}"), &subj_patient),
           "request_malformed", "bundle: an encoded / in the url");
    is_str(bundle(TX("{\"resource\":" OBS("p1") ",\"request\":{\"method\":"
                     "\"POST\",\"url\":\"Observation%4\"}}"), &subj_patient),
           "request_malformed", "bundle: a truncated percent escape");
    is_str(bundle(TX("{\"resource\":" OBS("p2") ",\"request\":{\"method\":"
                     "\"POST\",\"url\":\"Obs%65rvation\"}}"), &subj_patient),
           "patient_mismatch", "bundle: an encoded letter is decoded");
    is_str(bundle(TX("{\"request\":{\"method\":\"DELETE\",\"url\":"
                     "\"Observation/o1\"}}"), &subj_patient),
           "patient_unverifiable", "bundle: DELETE an Observation");
    is_str(bundle("{\"resourceType\":\"Bundle\",\"type\":\"collection\","
                  "\"entry\":[]}", &subj_patient), "fhir_body_invalid",
           "bundle: a collection is not a batch");
    is_str(bundle("{\"resourceType\":\"Parameters\"}", &subj_patient),
           "fhir_body_invalid", "bundle: not a Bundle");
    is_str(bundle("{\"resourceType\":\"Bundle\",\"type\":\"batch\"}",
                  &subj_patient), "ok", "bundle: a batch without entries");
    is_str(bundle("{\"resourceType\":\"Bundle\",\"type\":\"batch\","
                  "\"entry\":{}}", &subj_patient), "fhir_body_invalid",
           "bundle: entry is not an array");
}


/* welby_compartment_reached()'s callback: ids appended, space-joined */
static int
reached_add(void *data, const unsigned char *id, size_t len)
{
    char  *buf = data;

    if (strlen(buf) + len + 2 > 512) {
        return -1;
    }

    snprintf(buf + strlen(buf), 512 - strlen(buf), "%s%.*s",
             buf[0] ? " " : "", (int) len, id);

    return 0;
}


/* the patients a body reaches, space-joined, or the reason's code */
static const char *
reached(int interaction, const char *text)
{
    static char            buf[512];
    json_t                *j;
    welby_reason_e         rc;
    welby_fhir_request_t   req;

    memset(&req, 0, sizeof(welby_fhir_request_t));
    req.interaction = interaction;
    req.type = WELBY_FHIR_TYPE_NONE;

    buf[0] = '\0';

    j = J(text);
    rc = welby_compartment_reached(&req, j, bases, 1, reached_add, buf);
    json_decref(j);

    return rc == WELBY_REASON_NONE ? buf : welby_reason_get(rc)->code;
}


/* the patients counted for welby_enumeration */
static void
reached_cases(void)
{
#define GET(url)  "{\"request\":{\"method\":\"GET\",\"url\":\"" url "\"}}"

    is_str(reached(WELBY_FHIR_CREATE, OBS("p1")), "p1",
           "reached: a create's resource");
    is_str(reached(WELBY_FHIR_UPDATE, OBS("p2")), "p2",
           "reached: an update's resource");
    is_str(reached(WELBY_FHIR_PATCH, "[{\"op\":\"remove\",\"path\":"
                   "\"/note\"}]"), "", "reached: a patch's values are not");
    is_str(reached(WELBY_FHIR_SEARCH_TYPE, OBS("p1")), "",
           "reached: no body for other interactions");
    is_str(reached(WELBY_FHIR_BATCH, TX(GET("Patient/p1") ","
                   GET("Patient/p2") "," GET("Observation?patient=p3,p4"))),
           "p1 p2 p3 p4", "reached: a batch's reads and searches");
    is_str(reached(WELBY_FHIR_TRANSACTION, TX(POST_OBS("p5") ","
                   POST_OBS("p5") "," GET(BASE "/Patient/p6"))),
           "p5 p5 p6", "reached: entries' resources, an absolute url");
    is_str(reached(WELBY_FHIR_BATCH, TX(GET("https://evil.example/fhir/"
                   "Patient/p7") "," GET("Patient/p8"))), "p8",
           "reached: an entry nobody could classify reaches nothing");
    is_str(reached(WELBY_FHIR_BATCH, TX(GET("Observation/o1"))), "",
           "reached: a read whose patient only its answer shows");
    is_str(reached(WELBY_FHIR_BATCH, "{\"resourceType\":\"Bundle\","
                   "\"type\":\"batch\",\"entry\":{}}"), "",
           "reached: entries that are no array");

#undef GET
#undef TX
#undef POST_OBS
}


int
main(void)
{
    subjects();

    table_cases();
    coverage_cases();
    spelling_cases();
    answer_cases();
    write_cases();
    patch_cases();
    bundle_cases();
    reached_cases();

    return done_testing();
}
