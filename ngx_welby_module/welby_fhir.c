/*
 * FHIR REST request classification.
 */

#include <string.h>

#include "welby_fhir.h"


/*
 * One FHIR R4 resource type and, when it is in the Patient compartment,
 * its compartment search parameters, space-separated.
 */
typedef struct {
    const char                *name;
    const char                *params;
} welby_fhir_type_t;


/* what one classification works with */
typedef struct {
    const welby_fhir_input_t  *in;
    welby_fhir_request_t      *out;
    unsigned char             *scratch;
    size_t                     scratch_len;
    size_t                     used;

    /* the types a search reads, before includes: types[0..nsearched) */
    size_t                     nsearched;

    /* the compartment parameters of the searched types that the query
     * binds to patients, by index into out->params */
    unsigned char              binding[WELBY_FHIR_PARAMS_MAX];
    unsigned                   bound_id:1;     /* _id on Patient */
} welby_fhir_ctx_t;


/* which parameters an interaction accepts besides search parameters */
#define WELBY_FHIR_P_FORMAT    0x01     /* _format, _pretty */
#define WELBY_FHIR_P_SHAPE     0x02     /* _summary, _elements */
#define WELBY_FHIR_P_HISTORY   0x04     /* _count, _since, _at */
#define WELBY_FHIR_P_MODE      0x08     /* mode (capabilities) */


static int welby_is_hex(unsigned char c);
static int welby_fhir_eq(welby_str_t *s, const char *lit);
static welby_reason_e welby_fhir_parse_params(welby_fhir_ctx_t *ctx,
    const unsigned char *p, size_t len);
static welby_reason_e welby_fhir_decode(welby_fhir_ctx_t *ctx,
    const unsigned char *p, size_t len, welby_str_t *dst);
static welby_reason_e welby_fhir_path(welby_fhir_ctx_t *ctx,
    welby_str_t *seg, size_t nseg);
static welby_reason_e welby_fhir_instance(welby_fhir_ctx_t *ctx,
    welby_str_t *seg, size_t nseg);
static welby_reason_e welby_fhir_operation(welby_fhir_ctx_t *ctx,
    welby_str_t *name, unsigned level);
static welby_reason_e welby_fhir_plain_params(welby_fhir_ctx_t *ctx,
    unsigned allowed);
static welby_reason_e welby_fhir_format(welby_fhir_param_t *p);
static welby_reason_e welby_fhir_search(welby_fhir_ctx_t *ctx);
static welby_reason_e welby_fhir_system_types(welby_fhir_ctx_t *ctx);
static welby_reason_e welby_fhir_binding(welby_fhir_ctx_t *ctx,
    welby_fhir_param_t *p, size_t index, int id_only);
static welby_reason_e welby_fhir_include(welby_fhir_ctx_t *ctx,
    welby_fhir_param_t *p);
static welby_reason_e welby_fhir_revinclude(welby_fhir_ctx_t *ctx,
    welby_fhir_param_t *p);
static welby_reason_e welby_fhir_search_value(welby_fhir_ctx_t *ctx,
    const unsigned char *v, size_t len, welby_str_t *id);
static size_t welby_fhir_base_match(const unsigned char *ref, size_t len,
    const welby_str_t *bases, size_t nbases);
static welby_reason_e welby_fhir_add_patient(welby_fhir_ctx_t *ctx,
    const unsigned char *id, size_t len);
static welby_reason_e welby_fhir_add_type(welby_fhir_ctx_t *ctx, int type);
static int welby_fhir_searched(welby_fhir_ctx_t *ctx, int type);
static int welby_fhir_op_name_valid(const unsigned char *p, size_t len);
static int welby_fhir_name_valid(welby_str_t *s);
static unsigned char welby_fhir_lower(unsigned char c);


/*
 * The FHIR R4 (4.0.1) resource types, sorted in byte order for a binary
 * search, with the Patient compartment's parameters of each type in it.
 *
 * Transcribed from the specification: the resource list
 * (http://hl7.org/fhir/R4/resourcelist.html, 145 types and Parameters)
 * and the CompartmentDefinition "patient" version 4.0.1
 * (http://hl7.org/fhir/R4/compartmentdefinition-patient.json, its
 * "resource" table of codes and params, also embedded by
 * google/fhir-gateway as CompartmentDefinition-patient.json).  Types
 * with NULL are never in the compartment.
 *
 * Two additions, deliberate and narrow: Patient's own "_id" (a Patient
 * is in its own compartment, the definition lists only "link"), and
 * "patient" on the nine types whose R4 SearchParameter "patient" is the
 * Patient-typed restriction of a compartment parameter ("subject", or
 * Coverage's "beneficiary"): Coverage, DiagnosticReport,
 * DocumentReference, MedicationRequest, MedicationStatement, Observation,
 * QuestionnaireResponse, ServiceRequest, Specimen.  SMART and US Core
 * clients search those types with "patient=", which otherwise would not
 * bind the search and would be refused as unbound.
 */
static const welby_fhir_type_t  welby_fhir_types[] = {
    { "Account", "subject" },
    { "ActivityDefinition", NULL },
    { "AdverseEvent", "subject" },
    { "AllergyIntolerance", "patient recorder asserter" },
    { "Appointment", "actor" },
    { "AppointmentResponse", "actor" },
    { "AuditEvent", "patient" },
    { "Basic", "patient author" },
    { "Binary", NULL },
    { "BiologicallyDerivedProduct", NULL },
    { "BodyStructure", "patient" },
    { "Bundle", NULL },
    { "CapabilityStatement", NULL },
    { "CarePlan", "patient performer" },
    { "CareTeam", "patient participant" },
    { "CatalogEntry", NULL },
    { "ChargeItem", "subject" },
    { "ChargeItemDefinition", NULL },
    { "Claim", "patient payee" },
    { "ClaimResponse", "patient" },
    { "ClinicalImpression", "subject" },
    { "CodeSystem", NULL },
    { "Communication", "subject sender recipient" },
    { "CommunicationRequest", "subject sender recipient requester" },
    { "CompartmentDefinition", NULL },
    { "Composition", "subject author attester" },
    { "ConceptMap", NULL },
    { "Condition", "patient asserter" },
    { "Consent", "patient" },
    { "Contract", NULL },
    { "Coverage", "policy-holder subscriber beneficiary payor patient" },
    { "CoverageEligibilityRequest", "patient" },
    { "CoverageEligibilityResponse", "patient" },
    { "DetectedIssue", "patient" },
    { "Device", NULL },
    { "DeviceDefinition", NULL },
    { "DeviceMetric", NULL },
    { "DeviceRequest", "subject performer" },
    { "DeviceUseStatement", "subject" },
    { "DiagnosticReport", "subject patient" },
    { "DocumentManifest", "subject author recipient" },
    { "DocumentReference", "subject author patient" },
    { "EffectEvidenceSynthesis", NULL },
    { "Encounter", "patient" },
    { "Endpoint", NULL },
    { "EnrollmentRequest", "subject" },
    { "EnrollmentResponse", NULL },
    { "EpisodeOfCare", "patient" },
    { "EventDefinition", NULL },
    { "Evidence", NULL },
    { "EvidenceVariable", NULL },
    { "ExampleScenario", NULL },
    { "ExplanationOfBenefit", "patient payee" },
    { "FamilyMemberHistory", "patient" },
    { "Flag", "patient" },
    { "Goal", "patient" },
    { "GraphDefinition", NULL },
    { "Group", "member" },
    { "GuidanceResponse", NULL },
    { "HealthcareService", NULL },
    { "ImagingStudy", "patient" },
    { "Immunization", "patient" },
    { "ImmunizationEvaluation", "patient" },
    { "ImmunizationRecommendation", "patient" },
    { "ImplementationGuide", NULL },
    { "InsurancePlan", NULL },
    { "Invoice", "subject patient recipient" },
    { "Library", NULL },
    { "Linkage", NULL },
    { "List", "subject source" },
    { "Location", NULL },
    { "Measure", NULL },
    { "MeasureReport", "patient" },
    { "Media", "subject" },
    { "Medication", NULL },
    { "MedicationAdministration", "patient performer subject" },
    { "MedicationDispense", "subject patient receiver" },
    { "MedicationKnowledge", NULL },
    { "MedicationRequest", "subject patient" },
    { "MedicationStatement", "subject patient" },
    { "MedicinalProduct", NULL },
    { "MedicinalProductAuthorization", NULL },
    { "MedicinalProductContraindication", NULL },
    { "MedicinalProductIndication", NULL },
    { "MedicinalProductIngredient", NULL },
    { "MedicinalProductInteraction", NULL },
    { "MedicinalProductManufactured", NULL },
    { "MedicinalProductPackaged", NULL },
    { "MedicinalProductPharmaceutical", NULL },
    { "MedicinalProductUndesirableEffect", NULL },
    { "MessageDefinition", NULL },
    { "MessageHeader", NULL },
    { "MolecularSequence", "patient" },
    { "NamingSystem", NULL },
    { "NutritionOrder", "patient" },
    { "Observation", "subject performer patient" },
    { "ObservationDefinition", NULL },
    { "OperationDefinition", NULL },
    { "OperationOutcome", NULL },
    { "Organization", NULL },
    { "OrganizationAffiliation", NULL },
    { "Parameters", NULL },
    { "Patient", "_id link" },
    { "PaymentNotice", NULL },
    { "PaymentReconciliation", NULL },
    { "Person", "patient" },
    { "PlanDefinition", NULL },
    { "Practitioner", NULL },
    { "PractitionerRole", NULL },
    { "Procedure", "patient performer" },
    { "Provenance", "patient" },
    { "Questionnaire", NULL },
    { "QuestionnaireResponse", "subject author patient" },
    { "RelatedPerson", "patient" },
    { "RequestGroup", "subject participant" },
    { "ResearchDefinition", NULL },
    { "ResearchElementDefinition", NULL },
    { "ResearchStudy", NULL },
    { "ResearchSubject", "individual" },
    { "RiskAssessment", "subject" },
    { "RiskEvidenceSynthesis", NULL },
    { "Schedule", "actor" },
    { "SearchParameter", NULL },
    { "ServiceRequest", "subject performer patient" },
    { "Slot", NULL },
    { "Specimen", "subject patient" },
    { "SpecimenDefinition", NULL },
    { "StructureDefinition", NULL },
    { "StructureMap", NULL },
    { "Subscription", NULL },
    { "Substance", NULL },
    { "SubstanceNucleicAcid", NULL },
    { "SubstancePolymer", NULL },
    { "SubstanceProtein", NULL },
    { "SubstanceReferenceInformation", NULL },
    { "SubstanceSourceMaterial", NULL },
    { "SubstanceSpecification", NULL },
    { "SupplyDelivery", "patient" },
    { "SupplyRequest", "subject" },
    { "Task", NULL },
    { "TerminologyCapabilities", NULL },
    { "TestReport", NULL },
    { "TestScript", NULL },
    { "ValueSet", NULL },
    { "VerificationResult", NULL },
    { "VisionPrescription", "patient" },
};

#define WELBY_FHIR_TYPE_PATIENT_INDEX  102

#define WELBY_FHIR_NTYPES                                                    \
    (sizeof(welby_fhir_types) / sizeof(welby_fhir_types[0]))


static const char  *welby_fhir_interactions[] = {
    "",
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search-type",
    "search-system",
    "capabilities",
    "batch",
    "transaction",
    "operation"
};


int
welby_fhir_id_valid(const unsigned char *id, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len == 0 || len > WELBY_FHIR_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = id[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


int
welby_request_id_valid(const unsigned char *id, size_t len)
{
    unsigned char  c;

    if (!welby_fhir_id_valid(id, len)) {
        return 0;
    }

    c = id[0];

    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
}


welby_reason_e
welby_fhir_check_path(const unsigned char *raw, size_t raw_len,
    const unsigned char *uri, size_t uri_len)
{
    size_t         i, seg;
    unsigned char  c, h1, h2;

    /*
     * nginx routes on the decoded, normalised path, but a backend behind
     * "proxy_pass" without a URI part receives the raw one and decodes and
     * normalises it its own way.  Whatever the two could read differently
     * is refused: an encoded '/' or '.' (segments and dot segments that
     * appear only after decoding), an encoded '%' (decoded twice), '\\'
     * (a separator to some servers), dot segments and empty segments
     * (resolved or merged by some servers and not by others), and ';'
     * raw or encoded: servlet containers (Tomcat and Jetty host HAPI
     * FHIR) cut a segment's ";parameters" off before they resolve dot
     * segments, so "/fhir/public/..;/Patient/1" is /fhir/Patient/1 to
     * them.  FHIR paths carry no path parameters.
     */

    seg = 0;

    for (i = 0; i <= raw_len; i++) {
        c = (i < raw_len) ? raw[i] : '/';

        if (c == '/') {
            if (i > 0 && i - seg == 0 && i < raw_len) {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            if ((i - seg == 1 && raw[seg] == '.')
                || (i - seg == 2 && raw[seg] == '.' && raw[seg + 1] == '.'))
            {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            seg = i + 1;
            continue;
        }

        if (c == '\\' || c == ';') {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        if (c != '%') {
            continue;
        }

        if (raw_len - i < 3) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        h1 = raw[i + 1];
        h2 = raw[i + 2] | 0x20;

        if (!welby_is_hex(h1) || !welby_is_hex(h2)) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        if ((h1 == '2' && (h2 == 'f' || h2 == '5' || h2 == 'e'))
            || (h1 == '3' && h2 == 'b') || (h1 == '5' && h2 == 'c'))
        {
            return WELBY_REASON_REQUEST_MALFORMED;
        }
    }

    for (i = 0; i < uri_len; i++) {
        c = uri[i];

        if (c < 0x20 || c == 0x7f || c == ';') {
            return WELBY_REASON_REQUEST_MALFORMED;
        }
    }

    return WELBY_REASON_NONE;
}


int
welby_fhir_type_find(const unsigned char *name, size_t len)
{
    int          cmp;
    size_t       lo, hi, mid;
    const char  *t;

    /* strncmp() below stops at a NUL: no type name holds one */

    if (len == 0 || memchr(name, '\0', len) != NULL) {
        return WELBY_FHIR_TYPE_NONE;
    }

    lo = 0;
    hi = WELBY_FHIR_NTYPES;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        t = welby_fhir_types[mid].name;

        /* most steps are decided by the first letter: no call for them */

        cmp = (int) name[0] - (int) (unsigned char) t[0];

        if (cmp == 0) {
            cmp = strncmp((const char *) name, t, len);
        }

        if (cmp == 0 && t[len] != '\0') {
            cmp = -1;       /* name is a prefix of t: it sorts first */
        }

        if (cmp == 0) {
            return (int) mid;
        }

        if (cmp < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return WELBY_FHIR_TYPE_NONE;
}


const char *
welby_fhir_type_name(int type)
{
    if (type < 0 || (size_t) type >= WELBY_FHIR_NTYPES) {
        return NULL;
    }

    return welby_fhir_types[type].name;
}


int
welby_fhir_type_patient(void)
{
    /*
     * Its place in the sorted table, asked for on every request: a unit
     * test checks that the name there is "Patient".
     */
    return WELBY_FHIR_TYPE_PATIENT_INDEX;
}


int
welby_fhir_in_compartment(int type)
{
    if (type < 0 || (size_t) type >= WELBY_FHIR_NTYPES) {
        return 0;
    }

    return welby_fhir_types[type].params != NULL;
}


int
welby_fhir_compartment_param(int type, const unsigned char *name, size_t len)
{
    const char  *p, *e;

    if (!welby_fhir_in_compartment(type) || len == 0) {
        return 0;
    }

    for (p = welby_fhir_types[type].params; *p; p = e) {
        e = strchr(p, ' ');
        if (e == NULL) {
            e = p + strlen(p);
        }

        if ((size_t) (e - p) == len && memcmp(p, name, len) == 0) {
            return 1;
        }

        if (*e == ' ') {
            e++;
        }
    }

    return 0;
}


const char *
welby_fhir_interaction_name(welby_fhir_interaction_e i)
{
    if ((unsigned) i >= WELBY_FHIR_INTERACTION_COUNT) {
        return "";
    }

    return welby_fhir_interactions[i];
}


welby_reason_e
welby_fhir_classify(const welby_fhir_input_t *in, welby_fhir_request_t *out,
    unsigned char *scratch, size_t scratch_len)
{
    size_t                i, nseg, start;
    welby_str_t           seg[5];
    welby_reason_e        rc;
    welby_fhir_ctx_t      ctx;
    const unsigned char  *p;

    memset(out, 0, sizeof(welby_fhir_request_t));
    out->type = WELBY_FHIR_TYPE_NONE;
    out->method = in->method;

    memset(&ctx, 0, sizeof(welby_fhir_ctx_t));
    ctx.in = in;
    ctx.out = out;
    ctx.scratch = scratch;
    ctx.scratch_len = scratch_len;

    if (in->query.len + in->form.len > scratch_len) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    /*
     * The path after the base: "" or "/" is the base itself; any other
     * path is "/" and up to four non-empty segments, no trailing "/"
     * (FHIR names no resource "Patient/", and servers differ on it).
     */

    p = in->path.data;
    nseg = 0;

    if (in->path.len > 1 || (in->path.len == 1 && p[0] != '/')) {
        if (p[0] != '/') {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        start = 1;

        for (i = 1; i <= in->path.len; i++) {
            if (i < in->path.len && p[i] != '/') {
                if (p[i] < 0x21 || p[i] >= 0x7f) {
                    return WELBY_REASON_REQUEST_MALFORMED;
                }

                continue;
            }

            if (i == start) {
                return (i == in->path.len) ? WELBY_REASON_FHIR_UNCLASSIFIABLE
                                           : WELBY_REASON_REQUEST_MALFORMED;
            }

            if (nseg == 5) {
                return WELBY_REASON_FHIR_UNCLASSIFIABLE;
            }

            seg[nseg].data = p + start;
            seg[nseg].len = i - start;
            nseg++;
            start = i + 1;
        }
    }

    rc = welby_fhir_parse_params(&ctx, in->query.data, in->query.len);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (in->form.data != NULL) {
        rc = welby_fhir_parse_params(&ctx, in->form.data, in->form.len);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    rc = welby_fhir_path(&ctx, seg, nseg);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (out->npatients == 0) {
        out->bound = 0;
    }

    return WELBY_REASON_NONE;
}


/*
 * '&'-separated name=value pairs, as a servlet container reads a query or
 * a form body: split first, then percent-decode each part, '+' a space in
 * both (HAPI FHIR sees what Tomcat and Jetty decode).  An empty part
 * ("a=1&&b=2", a trailing '&') is skipped as they skip it; an empty name
 * is refused.  Names are split at the first ':' into name and modifier.
 *
 * A raw ';' or '#' is refused: some frameworks split parameters at ';'
 * too, and some cut the query at '#', so that a backend would read
 * parameters the gateway did not ("code=x;_include=...") or lose one it
 * did ("code=x#&patient=p1").  Encoded, %3B and %23 are plain data.
 */
static welby_reason_e
welby_fhir_parse_params(welby_fhir_ctx_t *ctx, const unsigned char *p,
    size_t len)
{
    size_t               i, start, eq;
    welby_str_t          name;
    welby_reason_e       rc;
    welby_fhir_param_t  *param;
    const unsigned char *colon;

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && p[i] != '&') {
            if (p[i] == ';' || p[i] == '#') {
                return WELBY_REASON_FHIR_UNCLASSIFIABLE;
            }

            continue;
        }

        if (i == start) {
            start = i + 1;
            continue;
        }

        for (eq = start; eq < i && p[eq] != '='; eq++) {
            /* void */
        }

        if (eq == start) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        if (ctx->out->nparams == WELBY_FHIR_PARAMS_MAX) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        param = &ctx->out->params[ctx->out->nparams];

        rc = welby_fhir_decode(ctx, p + start, eq - start, &name);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }

        if (eq < i) {
            rc = welby_fhir_decode(ctx, p + eq + 1, i - eq - 1,
                                   &param->value);
            if (rc != WELBY_REASON_NONE) {
                return rc;
            }

        } else {
            param->value.data = name.data + name.len;
            param->value.len = 0;
        }

        colon = memchr(name.data, ':', name.len);

        if (colon) {
            param->name.data = name.data;
            param->name.len = colon - name.data;
            param->modifier.data = colon + 1;
            param->modifier.len = name.len - param->name.len - 1;

        } else {
            param->name = name;
            param->modifier.data = NULL;
            param->modifier.len = 0;
        }

        if (param->name.len == 0) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        ctx->out->nparams++;
        start = i + 1;
    }

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_fhir_decode(welby_fhir_ctx_t *ctx, const unsigned char *p, size_t len,
    welby_str_t *dst)
{
    size_t          i;
    unsigned char  *d, c, h, l;

    if (ctx->scratch_len - ctx->used < len) {
        return WELBY_REASON_INTERNAL_ERROR;
    }

    d = ctx->scratch + ctx->used;
    dst->data = d;

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c == '+') {
            c = ' ';

        } else if (c == '%') {
            if (len - i < 3 || !welby_is_hex(p[i + 1])
                || !welby_is_hex(p[i + 2]))
            {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            h = p[i + 1] | 0x20;
            l = p[i + 2] | 0x20;
            h = (h <= '9') ? h - '0' : h - 'a' + 10;
            l = (l <= '9') ? l - '0' : l - 'a' + 10;
            c = (unsigned char) (h << 4 | l);
            i += 2;
        }

        if (c == '\0') {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        *d++ = c;
    }

    dst->len = d - dst->data;
    ctx->used += dst->len;

    return WELBY_REASON_NONE;
}


/*
 * The interaction from the path's segments and the method (FHIR R4 RESTful
 * API, http.html): what is not one of its URL patterns is refused.
 */
static welby_reason_e
welby_fhir_path(welby_fhir_ctx_t *ctx, welby_str_t *seg, size_t nseg)
{
    int                    type;
    unsigned               m;
    welby_reason_e         rc;
    welby_fhir_request_t  *out;

    out = ctx->out;
    m = ctx->in->method;

    if (nseg == 0) {
        if (m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD)) {
            out->interaction = WELBY_FHIR_SEARCH_SYSTEM;
            return welby_fhir_search(ctx);
        }

        if (m == WELBY_FHIR_M_POST) {
            /* batch or transaction: Bundle.type in the body decides */
            out->interaction = WELBY_FHIR_BATCH;
            out->needs_body = 1;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT);
        }

        if (m == WELBY_FHIR_M_OPTIONS) {
            out->interaction = WELBY_FHIR_CAPABILITIES;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT);
        }

        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (nseg == 1 && welby_fhir_eq(&seg[0], "metadata")) {
        if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD|WELBY_FHIR_M_OPTIONS))) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        out->interaction = WELBY_FHIR_CAPABILITIES;
        return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT
                                            |WELBY_FHIR_P_SHAPE
                                            |WELBY_FHIR_P_MODE);
    }

    if (nseg == 1 && welby_fhir_eq(&seg[0], "_history")) {
        if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD))) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        out->interaction = WELBY_FHIR_HISTORY_SYSTEM;
        return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT
                                            |WELBY_FHIR_P_SHAPE
                                            |WELBY_FHIR_P_HISTORY);
    }

    if (nseg == 1 && welby_fhir_eq(&seg[0], "_search")) {
        if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD|WELBY_FHIR_M_POST))) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        out->interaction = WELBY_FHIR_SEARCH_SYSTEM;
        out->needs_body = (m == WELBY_FHIR_M_POST
                           && ctx->in->form.data == NULL);
        return welby_fhir_search(ctx);
    }

    if (seg[0].data[0] == '$') {
        if (nseg != 1) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        seg[0].data++;
        seg[0].len--;

        return welby_fhir_operation(ctx, &seg[0], WELBY_FHIR_LEVEL_SYSTEM);
    }

    type = welby_fhir_type_find(seg[0].data, seg[0].len);

    if (type == WELBY_FHIR_TYPE_NONE) {
        /* "_history/x", "metadata/x", "_search/x": no such interaction */
        if (seg[0].data[0] == '_' || welby_fhir_eq(&seg[0], "metadata")) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        return WELBY_REASON_FHIR_TYPE_UNKNOWN;
    }

    out->type = type;

    rc = welby_fhir_add_type(ctx, type);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    if (nseg == 1) {
        if (m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD)) {
            out->interaction = WELBY_FHIR_SEARCH_TYPE;
            return welby_fhir_search(ctx);
        }

        if (m == WELBY_FHIR_M_POST) {
            out->interaction = WELBY_FHIR_CREATE;
            out->needs_body = 1;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT);
        }

        /* conditional update, patch and delete: a search picks the
         * resources written, which the request cannot show */
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (nseg == 2 && welby_fhir_eq(&seg[1], "_search")) {
        if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD|WELBY_FHIR_M_POST))) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        out->interaction = WELBY_FHIR_SEARCH_TYPE;
        out->needs_body = (m == WELBY_FHIR_M_POST
                           && ctx->in->form.data == NULL);
        return welby_fhir_search(ctx);
    }

    if (nseg == 2 && welby_fhir_eq(&seg[1], "_history")) {
        if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD))) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        out->interaction = WELBY_FHIR_HISTORY_TYPE;
        return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT
                                            |WELBY_FHIR_P_SHAPE
                                            |WELBY_FHIR_P_HISTORY);
    }

    if (seg[1].data[0] == '$') {
        if (nseg != 2) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        seg[1].data++;
        seg[1].len--;

        return welby_fhir_operation(ctx, &seg[1], WELBY_FHIR_LEVEL_TYPE);
    }

    if (seg[1].data[0] == '_') {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (!welby_fhir_id_valid(seg[1].data, seg[1].len)) {
        return WELBY_REASON_REQUEST_MALFORMED;
    }

    out->id = seg[1];

    if (type == welby_fhir_type_patient()) {
        rc = welby_fhir_add_patient(ctx, seg[1].data, seg[1].len);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }

        out->bound = 1;
    }

    return welby_fhir_instance(ctx, seg, nseg);
}


/* Type/id and below */
static welby_reason_e
welby_fhir_instance(welby_fhir_ctx_t *ctx, welby_str_t *seg, size_t nseg)
{
    int                    type;
    unsigned               m;
    welby_reason_e         rc;
    welby_fhir_request_t  *out;

    out = ctx->out;
    m = ctx->in->method;

    if (nseg == 2) {
        if (m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD)) {
            out->interaction = WELBY_FHIR_READ;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT
                                                |WELBY_FHIR_P_SHAPE);
        }

        if (m == WELBY_FHIR_M_PUT) {
            out->interaction = WELBY_FHIR_UPDATE;
            out->needs_body = 1;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT);
        }

        if (m == WELBY_FHIR_M_PATCH) {
            out->interaction = WELBY_FHIR_PATCH;
            out->needs_body = 1;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT);
        }

        if (m == WELBY_FHIR_M_DELETE) {
            out->interaction = WELBY_FHIR_DELETE;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT);
        }

        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (seg[2].data[0] == '$') {
        if (nseg != 3) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        seg[2].data++;
        seg[2].len--;

        return welby_fhir_operation(ctx, &seg[2], WELBY_FHIR_LEVEL_INSTANCE);
    }

    if (welby_fhir_eq(&seg[2], "_history")) {
        if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD))) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (nseg == 3) {
            out->interaction = WELBY_FHIR_HISTORY_INSTANCE;
            return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT
                                                |WELBY_FHIR_P_SHAPE
                                                |WELBY_FHIR_P_HISTORY);
        }

        if (nseg != 4) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (!welby_fhir_id_valid(seg[3].data, seg[3].len)) {
            return WELBY_REASON_REQUEST_MALFORMED;
        }

        out->interaction = WELBY_FHIR_VREAD;
        out->version = seg[3];
        return welby_fhir_plain_params(ctx, WELBY_FHIR_P_FORMAT
                                            |WELBY_FHIR_P_SHAPE);
    }

    /*
     * Patient/{id}/{Type}: a search in the patient's compartment.  Other
     * compartments (Encounter/{id}/{Type}, ...) and "*" are refused.
     */

    if (nseg != 3 || out->type != welby_fhir_type_patient()) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    type = welby_fhir_type_find(seg[2].data, seg[2].len);

    if (type == WELBY_FHIR_TYPE_NONE) {
        return (seg[2].data[0] >= 'A' && seg[2].data[0] <= 'Z')
               ? WELBY_REASON_FHIR_TYPE_UNKNOWN
               : WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (!welby_fhir_in_compartment(type)
        || !(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD)))
    {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    out->interaction = WELBY_FHIR_SEARCH_TYPE;
    out->compartment = 1;
    out->type = type;
    out->id.data = NULL;
    out->id.len = 0;
    out->types[0] = type;
    out->ntypes = 1;

    rc = welby_fhir_search(ctx);
    if (rc != WELBY_REASON_NONE) {
        return rc;
    }

    out->bound = 1;

    return WELBY_REASON_NONE;
}


/*
 * $name at a level.  Its query parameters are the operation's inputs, not
 * search parameters: they are kept for the policy, and only _format is
 * checked, except for $lastn, which FHIR defines as an Observation search.
 */
static welby_reason_e
welby_fhir_operation(welby_fhir_ctx_t *ctx, welby_str_t *name,
    unsigned level)
{
    size_t                 i;
    unsigned               m;
    welby_reason_e         rc;
    welby_fhir_request_t  *out;

    out = ctx->out;
    m = ctx->in->method;

    if (!welby_fhir_op_name_valid(name->data, name->len)) {
        return WELBY_REASON_REQUEST_MALFORMED;
    }

    out->interaction = WELBY_FHIR_OPERATION;
    out->level = level;
    out->operation = *name;

    if (m == WELBY_FHIR_M_POST) {
        out->needs_body = 1;

        /*
         * Servers read a POSTed operation's inputs from its Parameters
         * body ("patient" of $lastn, "_id" of $everything), which the
         * gateway does not classify as a search: these two read patient
         * data and are idempotent, so GET carries their inputs.
         */

        if (ctx->in->form.data == NULL
            && (welby_fhir_eq(name, "lastn")
                || welby_fhir_eq(name, "everything")))
        {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

    } else if (!(m & (WELBY_FHIR_M_GET|WELBY_FHIR_M_HEAD))) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (level == WELBY_FHIR_LEVEL_TYPE && welby_fhir_eq(name, "lastn")
        && out->type == welby_fhir_type_find((const unsigned char *)
                                             "Observation", 11))
    {
        return welby_fhir_search(ctx);
    }

    for (i = 0; i < out->nparams; i++) {
        if (welby_fhir_eq(&out->params[i].name, "_format")) {
            rc = welby_fhir_format(&out->params[i]);
            if (rc != WELBY_REASON_NONE) {
                return rc;
            }
        }
    }

    /*
     * $everything reads a patient's compartment, and servers take more
     * inputs than R4 names for it ("_id" and others at type level): any
     * of them could name other patients than the path's.
     */

    if (welby_fhir_eq(name, "everything")) {
        for (i = 0; i < out->nparams; i++) {
            if ((!welby_fhir_eq(&out->params[i].name, "start")
                 && !welby_fhir_eq(&out->params[i].name, "end")
                 && !welby_fhir_eq(&out->params[i].name, "_since")
                 && !welby_fhir_eq(&out->params[i].name, "_type")
                 && !welby_fhir_eq(&out->params[i].name, "_count")
                 && !welby_fhir_eq(&out->params[i].name, "_format")
                 && !welby_fhir_eq(&out->params[i].name, "_pretty"))
                || out->params[i].modifier.data != NULL)
            {
                return WELBY_REASON_FHIR_UNCLASSIFIABLE;
            }
        }
    }

    return WELBY_REASON_NONE;
}


/* the parameters of interactions that are not searches */
static welby_reason_e
welby_fhir_plain_params(welby_fhir_ctx_t *ctx, unsigned allowed)
{
    size_t               i;
    unsigned             kind;
    welby_fhir_param_t  *p;

    for (i = 0; i < ctx->out->nparams; i++) {
        p = &ctx->out->params[i];

        if (welby_fhir_eq(&p->name, "_format")
            || welby_fhir_eq(&p->name, "_pretty"))
        {
            kind = WELBY_FHIR_P_FORMAT;

        } else if (welby_fhir_eq(&p->name, "_summary")
                   || welby_fhir_eq(&p->name, "_elements"))
        {
            kind = WELBY_FHIR_P_SHAPE;

        } else if (welby_fhir_eq(&p->name, "_count")
                   || welby_fhir_eq(&p->name, "_since")
                   || welby_fhir_eq(&p->name, "_at"))
        {
            kind = WELBY_FHIR_P_HISTORY;

        } else if (welby_fhir_eq(&p->name, "mode")) {
            kind = WELBY_FHIR_P_MODE;

        } else {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (!(allowed & kind) || p->modifier.data != NULL) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (kind == WELBY_FHIR_P_FORMAT && p->name.data[1] == 'f') {
            if (welby_fhir_format(p) != WELBY_REASON_NONE) {
                return WELBY_REASON_FHIR_FORMAT_UNSUPPORTED;
            }
        }
    }

    return WELBY_REASON_NONE;
}


/* the gateway reads JSON only: other formats cannot be checked */
static welby_reason_e
welby_fhir_format(welby_fhir_param_t *p)
{
    if (p->modifier.data == NULL
        && (welby_fhir_eq(&p->value, "json")
            || welby_fhir_eq(&p->value, "application/json")
            || welby_fhir_eq(&p->value, "application/fhir+json")))
    {
        return WELBY_REASON_NONE;
    }

    return WELBY_REASON_FHIR_FORMAT_UNSUPPORTED;
}


/*
 * A search: type-level (types[0] is the type), system-level (_type
 * names the types), or in a patient's compartment.  Every parameter is
 * understood or the search is refused; see policy-design.md.
 */
static welby_reason_e
welby_fhir_search(welby_fhir_ctx_t *ctx)
{
    int                    patient, system;
    size_t                 i, k, ncomp, nhas;
    welby_str_t           *n;
    welby_reason_e         rc;
    welby_fhir_param_t    *p;
    welby_fhir_request_t  *out;

    out = ctx->out;
    patient = welby_fhir_type_patient();
    system = (out->interaction == WELBY_FHIR_SEARCH_SYSTEM);

    if (system) {
        rc = welby_fhir_system_types(ctx);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    ctx->nsearched = out->ntypes;

    for (i = 0; i < out->nparams; i++) {
        p = &out->params[i];
        n = &p->name;

        if (!welby_fhir_name_valid(n)
            || (p->modifier.data != NULL
                && !welby_fhir_name_valid(&p->modifier)))
        {
            /* chains ("subject.name", "subject:Patient.name") and names
             * no FHIR search parameter has */
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (n->data[0] != '_') {
            ncomp = 0;
            nhas = 0;

            for (k = 0; k < ctx->nsearched; k++) {
                if (welby_fhir_in_compartment(out->types[k])) {
                    ncomp++;
                    nhas += welby_fhir_compartment_param(out->types[k],
                                                         n->data, n->len);
                }
            }

            if (nhas == 0) {
                /* a filter that does not name patients: it only narrows */
                continue;
            }

            if (nhas < ncomp) {
                /* a system search it would bind for some types only */
                return WELBY_REASON_FHIR_UNCLASSIFIABLE;
            }

            rc = welby_fhir_binding(ctx, p, i, 0);
            if (rc != WELBY_REASON_NONE) {
                return rc;
            }

            continue;
        }

        if (welby_fhir_eq(n, "_id")) {
            if (!system && out->types[0] == patient) {
                rc = welby_fhir_binding(ctx, p, i, 1);
                if (rc != WELBY_REASON_NONE) {
                    return rc;
                }

                ctx->bound_id = 1;
            }

            continue;
        }

        if (welby_fhir_eq(n, "_format")) {
            rc = welby_fhir_format(p);
            if (rc != WELBY_REASON_NONE) {
                return rc;
            }

            continue;
        }

        if (welby_fhir_eq(n, "_lastUpdated") || welby_fhir_eq(n, "_tag")
            || welby_fhir_eq(n, "_profile") || welby_fhir_eq(n, "_security")
            || welby_fhir_eq(n, "_source") || welby_fhir_eq(n, "_text")
            || welby_fhir_eq(n, "_content"))
        {
            /* filters: with any modifier they only narrow */
            continue;
        }

        if (p->modifier.data == NULL
            && (welby_fhir_eq(n, "_count") || welby_fhir_eq(n, "_sort")
                || welby_fhir_eq(n, "_summary")
                || welby_fhir_eq(n, "_elements")
                || welby_fhir_eq(n, "_total") || welby_fhir_eq(n, "_offset")
                || welby_fhir_eq(n, "_pretty")
                || (system && welby_fhir_eq(n, "_type"))
                || welby_fhir_eq(n, "_include")
                || welby_fhir_eq(n, "_revinclude")))
        {
            continue;
        }

        /* _has, _contained, _list, _query, _filter, _include:iterate, ...
         * and whatever a later FHIR version or a server adds */
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    /* includes once every binding is known */

    for (i = 0; i < out->nparams; i++) {
        p = &out->params[i];

        if (welby_fhir_eq(&p->name, "_include")) {
            rc = welby_fhir_include(ctx, p);

        } else if (welby_fhir_eq(&p->name, "_revinclude")) {
            rc = welby_fhir_revinclude(ctx, p);

        } else {
            continue;
        }

        if (rc != WELBY_REASON_NONE) {
            return rc;
        }
    }

    for (k = 0; k < ctx->nsearched; k++) {
        if (welby_fhir_in_compartment(out->types[k])) {
            out->bound = (out->npatients > 0);
            break;
        }
    }

    return WELBY_REASON_NONE;
}


/* a system search reads the types of _type, and needs one */
static welby_reason_e
welby_fhir_system_types(welby_fhir_ctx_t *ctx)
{
    int                   type;
    size_t                i, s, e;
    welby_reason_e        rc;
    welby_fhir_param_t   *p;
    const unsigned char  *v;

    for (i = 0; i < ctx->out->nparams; i++) {
        p = &ctx->out->params[i];

        if (!welby_fhir_eq(&p->name, "_type")) {
            continue;
        }

        if (p->modifier.data != NULL) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        v = p->value.data;
        s = 0;

        for (e = 0; e <= p->value.len; e++) {
            if (e < p->value.len && v[e] != ',') {
                continue;
            }

            if (e == s) {
                return WELBY_REASON_FHIR_UNCLASSIFIABLE;
            }

            type = welby_fhir_type_find(v + s, e - s);
            if (type == WELBY_FHIR_TYPE_NONE) {
                return WELBY_REASON_FHIR_TYPE_UNKNOWN;
            }

            rc = welby_fhir_add_type(ctx, type);
            if (rc != WELBY_REASON_NONE) {
                return rc;
            }

            s = e + 1;
        }
    }

    if (ctx->out->ntypes == 0) {
        /* a search of every type on the server */
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    return WELBY_REASON_NONE;
}


/*
 * A compartment parameter of the searched types: each value of its comma
 * list names a patient.  The ":Patient" type modifier says what a bare id
 * means; any other modifier (:missing, :not, :identifier, :above, ...)
 * could reach other patients and is refused.  id_only: Patient's _id.
 */
static welby_reason_e
welby_fhir_binding(welby_fhir_ctx_t *ctx, welby_fhir_param_t *p,
    size_t index, int id_only)
{
    size_t                s, e;
    welby_str_t           id;
    welby_reason_e        rc;
    const unsigned char  *v;

    if (p->modifier.data != NULL
        && (id_only || !welby_fhir_eq(&p->modifier, "Patient")))
    {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    v = p->value.data;
    s = 0;

    for (e = 0; e <= p->value.len; e++) {
        if (e < p->value.len && v[e] != ',') {
            continue;
        }

        if (e == s) {
            /* "patient=" is ignored by servers: it would bind nothing */
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        if (id_only) {
            if (!welby_fhir_id_valid(v + s, e - s)) {
                return WELBY_REASON_REQUEST_MALFORMED;
            }

            id.data = v + s;
            id.len = e - s;

        } else {
            rc = welby_fhir_search_value(ctx, v + s, e - s, &id);
            if (rc != WELBY_REASON_NONE) {
                return rc;
            }
        }

        rc = welby_fhir_add_patient(ctx, id.data, id.len);
        if (rc != WELBY_REASON_NONE) {
            return rc;
        }

        s = e + 1;
    }

    ctx->binding[index] = 1;

    return WELBY_REASON_NONE;
}


/*
 * One value of a compartment parameter: "p1", "Patient/p1", or an
 * absolute "<base>/Patient/p1".  A reference to any other type (a Group
 * names many patients), to another server, to a version, or a token
 * ("system|value") is refused.
 */
static welby_reason_e
welby_fhir_search_value(welby_fhir_ctx_t *ctx, const unsigned char *v,
    size_t len, welby_str_t *id)
{
    size_t                n;
    const unsigned char  *slash;

    if (memchr(v, '|', len) != NULL) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    n = welby_fhir_base_match(v, len, ctx->in->bases, ctx->in->nbases);

    if (n) {
        v += n;
        len -= n;

        if (len < 8 || memcmp(v, "Patient/", 8) != 0) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }
    }

    if (memchr(v, ':', len) != NULL) {
        /* another server, urn:, a modifier in the value */
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    slash = memchr(v, '/', len);

    if (slash != NULL) {
        if (slash - v != 7 || memcmp(v, "Patient", 7) != 0) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        len -= 8;
        v += 8;

        if (memchr(v, '/', len) != NULL) {
            /* Patient/p1/_history/2 and the like */
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }
    }

    if (!welby_fhir_id_valid(v, len)) {
        return WELBY_REASON_REQUEST_MALFORMED;
    }

    id->data = v;
    id->len = len;

    return WELBY_REASON_NONE;
}


/*
 * _include=T:param[:Target].  The included resources are the targets of
 * T.param in the matched resources.  When param is a compartment
 * parameter that this query binds, the matched resources point through it
 * to the query's patients, and those are what is included; a compartment
 * parameter the query does not bind may point to any patient.  Any other
 * param needs an explicit Target outside the compartment.
 */
static welby_reason_e
welby_fhir_include(welby_fhir_ctx_t *ctx, welby_fhir_param_t *p)
{
    int                   t, target, patient;
    size_t                i;
    welby_str_t           part[3];
    welby_fhir_param_t   *q;
    const unsigned char  *v, *e, *c;
    size_t                nparts;

    v = p->value.data;
    e = v + p->value.len;
    nparts = 0;

    while (nparts < 3) {
        c = memchr(v, ':', e - v);
        part[nparts].data = v;
        part[nparts].len = (c ? c : e) - v;

        if (part[nparts].len == 0) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        nparts++;

        if (c == NULL) {
            break;
        }

        v = c + 1;
    }

    if (nparts < 2
        || (nparts == 3 && part[2].data + part[2].len != e)
        || memchr(p->value.data, '*', p->value.len) != NULL)
    {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    t = welby_fhir_type_find(part[0].data, part[0].len);
    if (t == WELBY_FHIR_TYPE_NONE) {
        return WELBY_REASON_FHIR_TYPE_UNKNOWN;
    }

    if (!welby_fhir_searched(ctx, t)) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    patient = welby_fhir_type_patient();
    target = WELBY_FHIR_TYPE_NONE;

    if (nparts == 3) {
        target = welby_fhir_type_find(part[2].data, part[2].len);
        if (target == WELBY_FHIR_TYPE_NONE) {
            return WELBY_REASON_FHIR_TYPE_UNKNOWN;
        }
    }

    if (target != WELBY_FHIR_TYPE_NONE && target != patient
        && !welby_fhir_in_compartment(target))
    {
        return welby_fhir_add_type(ctx, target);
    }

    if (!welby_fhir_compartment_param(t, part[1].data, part[1].len)
        || ctx->out->npatients == 0)
    {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    if (target != WELBY_FHIR_TYPE_NONE && target != patient) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    for (i = 0; i < ctx->out->nparams; i++) {
        q = &ctx->out->params[i];

        if (ctx->binding[i] && q->name.len == part[1].len
            && memcmp(q->name.data, part[1].data, part[1].len) == 0)
        {
            return welby_fhir_add_type(ctx, patient);
        }
    }

    return WELBY_REASON_FHIR_UNCLASSIFIABLE;
}


/*
 * _revinclude=X:param[:Target]: the resources X whose param points to a
 * matched resource.  X outside the compartment holds no patient data;
 * X in it through param is in the compartment of the matched Patient,
 * when a Patient search names its patients by _id.
 */
static welby_reason_e
welby_fhir_revinclude(welby_fhir_ctx_t *ctx, welby_fhir_param_t *p)
{
    int                   x, target;
    const unsigned char  *v, *e, *c1, *c2;

    v = p->value.data;
    e = v + p->value.len;

    if (memchr(v, '*', p->value.len) != NULL) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    c1 = memchr(v, ':', e - v);
    if (c1 == NULL || c1 == v || c1 + 1 == e) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    c2 = memchr(c1 + 1, ':', e - c1 - 1);

    if (c2 != NULL) {
        if (c2 == c1 + 1 || c2 + 1 == e || memchr(c2 + 1, ':', e - c2 - 1)) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

        target = welby_fhir_type_find(c2 + 1, e - c2 - 1);
        if (target == WELBY_FHIR_TYPE_NONE) {
            return WELBY_REASON_FHIR_TYPE_UNKNOWN;
        }

        if (!welby_fhir_searched(ctx, target)) {
            return WELBY_REASON_FHIR_UNCLASSIFIABLE;
        }

    } else {
        c2 = e;
    }

    x = welby_fhir_type_find(v, c1 - v);
    if (x == WELBY_FHIR_TYPE_NONE) {
        return WELBY_REASON_FHIR_TYPE_UNKNOWN;
    }

    if (!welby_fhir_in_compartment(x)) {
        return welby_fhir_add_type(ctx, x);
    }

    if (ctx->out->interaction == WELBY_FHIR_SEARCH_TYPE
        && ctx->nsearched == 1
        && ctx->out->types[0] == welby_fhir_type_patient()
        && ctx->bound_id
        && welby_fhir_compartment_param(x, c1 + 1, c2 - c1 - 1))
    {
        return welby_fhir_add_type(ctx, x);
    }

    return WELBY_REASON_FHIR_UNCLASSIFIABLE;
}


int
welby_fhir_patient_ref(const unsigned char *ref, size_t len,
    const welby_str_t *bases, size_t nbases, welby_str_t *id)
{
    int                   type;
    size_t                n, rest;
    const unsigned char  *slash, *idp, *tail;

    n = welby_fhir_base_match(ref, len, bases, nbases);
    ref += n;
    len -= n;

    slash = memchr(ref, '/', len);
    if (slash == NULL) {
        /* a bare id, "#contained", "urn:uuid:...": not a type and id */
        return -1;
    }

    type = welby_fhir_type_find(ref, slash - ref);
    if (type == WELBY_FHIR_TYPE_NONE) {
        /* "http://other.example/...", "Unknown/1" */
        return -1;
    }

    idp = slash + 1;
    rest = len - (idp - ref);

    tail = memchr(idp, '/', rest);
    n = (tail ? tail : idp + rest) - idp;

    if (!welby_fhir_id_valid(idp, n)) {
        return -1;
    }

    if (tail != NULL) {
        rest -= n;

        if (rest <= 10 || memcmp(tail, "/_history/", 10) != 0
            || !welby_fhir_id_valid(tail + 10, rest - 10))
        {
            return -1;
        }
    }

    if (type != welby_fhir_type_patient()) {
        return 0;
    }

    id->data = idp;
    id->len = n;

    return 1;
}


/*
 * The length of "<base>/" when ref starts with one of the bases: scheme
 * and host compare case-insensitively, the path exactly (the backend's
 * paths are case-sensitive).  0 when none matches.
 */
static size_t
welby_fhir_base_match(const unsigned char *ref, size_t len,
    const welby_str_t *bases, size_t nbases)
{
    size_t                i, j, path;
    const unsigned char  *b, *s;

    for (i = 0; i < nbases; i++) {
        b = bases[i].data;

        if (bases[i].len == 0 || len <= bases[i].len
            || ref[bases[i].len] != '/')
        {
            continue;
        }

        s = (const unsigned char *) strstr((const char *) b, "://");
        path = bases[i].len;

        if (s != NULL && (size_t) (s - b) < bases[i].len) {
            for (j = (s - b) + 3; j < bases[i].len; j++) {
                if (b[j] == '/') {
                    path = j;
                    break;
                }
            }
        }

        for (j = 0; j < path; j++) {
            if (welby_fhir_lower(ref[j]) != welby_fhir_lower(b[j])) {
                break;
            }
        }

        if (j < path || memcmp(ref + path, b + path, bases[i].len - path)) {
            continue;
        }

        return bases[i].len + 1;
    }

    return 0;
}


static welby_reason_e
welby_fhir_add_patient(welby_fhir_ctx_t *ctx, const unsigned char *id,
    size_t len)
{
    size_t                 i;
    welby_fhir_request_t  *out;

    out = ctx->out;

    for (i = 0; i < out->npatients; i++) {
        if (out->patients[i].len == len
            && memcmp(out->patients[i].data, id, len) == 0)
        {
            return WELBY_REASON_NONE;
        }
    }

    if (out->npatients == WELBY_FHIR_PATIENTS_MAX) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    out->patients[out->npatients].data = id;
    out->patients[out->npatients].len = len;
    out->npatients++;

    return WELBY_REASON_NONE;
}


static welby_reason_e
welby_fhir_add_type(welby_fhir_ctx_t *ctx, int type)
{
    size_t                 i;
    welby_fhir_request_t  *out;

    out = ctx->out;

    for (i = 0; i < out->ntypes; i++) {
        if (out->types[i] == type) {
            return WELBY_REASON_NONE;
        }
    }

    if (out->ntypes == WELBY_FHIR_TYPES_MAX) {
        return WELBY_REASON_FHIR_UNCLASSIFIABLE;
    }

    out->types[out->ntypes++] = type;

    return WELBY_REASON_NONE;
}


/* whether a search reads the type (not through an include) */
static int
welby_fhir_searched(welby_fhir_ctx_t *ctx, int type)
{
    size_t  i;

    for (i = 0; i < ctx->nsearched; i++) {
        if (ctx->out->types[i] == type) {
            return 1;
        }
    }

    return 0;
}


/* FHIR operation codes: letters, digits, '-', '_', '.' */
static int
welby_fhir_op_name_valid(const unsigned char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > WELBY_FHIR_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'
              || p[i] == '_' || p[i] == '.'))
        {
            return 0;
        }
    }

    return 1;
}


/* search parameter names and modifiers: letters, digits, '-', '_' */
static int
welby_fhir_name_valid(welby_str_t *s)
{
    size_t               i;
    const unsigned char  *p;

    p = s->data;

    if (s->len == 0) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'
              || p[i] == '_'))
        {
            return 0;
        }
    }

    return 1;
}


static unsigned char
welby_fhir_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (c | 0x20) : c;
}


static int
welby_fhir_eq(welby_str_t *s, const char *lit)
{
    size_t  n;

    n = strlen(lit);

    return s->len == n && memcmp(s->data, lit, n) == 0;
}


static int
welby_is_hex(unsigned char c)
{
    c |= 0x20;

    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
