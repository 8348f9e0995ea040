/*
 * Unit tests: FHIR id grammar, the path checks of the classify step, the
 * resource type and compartment tables, and the classifier.
 */

#include "tap.h"
#include "welby_fhir.h"

#define S(s)  (const unsigned char *) (s), sizeof(s) - 1


static welby_reason_e
check(const char *raw, const char *uri)
{
    return welby_fhir_check_path((const unsigned char *) raw, strlen(raw),
                                 (const unsigned char *) uri, strlen(uri));
}


/* ---- the classifier, table-driven ---- */

#define G    WELBY_FHIR_M_GET
#define H    WELBY_FHIR_M_HEAD
#define P    WELBY_FHIR_M_POST
#define U    WELBY_FHIR_M_PUT
#define PA   WELBY_FHIR_M_PATCH
#define D    WELBY_FHIR_M_DELETE
#define O    WELBY_FHIR_M_OPTIONS

typedef struct {
    unsigned     method;
    const char  *path;
    const char  *query;
    const char  *form;
    const char  *expect;
} cls_case_t;


static const char  *cls_base = "https://gw.example/fhir";


/*
 * What a classification says, in one line: the reason code when refused,
 * else "interaction type=T id=I v=V op=O/level pat=a,b types=A,B" and
 * the flags "bound", "comp", "body".
 */
static void
describe(const cls_case_t *c, char *buf, size_t size)
{
    char                   *p, *e;
    size_t                  i;
    unsigned char           scratch[4096];
    welby_reason_e          rc;
    welby_fhir_input_t      in;
    welby_fhir_request_t    out;

    memset(&in, 0, sizeof(in));
    in.method = c->method;
    in.path.data = (const unsigned char *) c->path;
    in.path.len = strlen(c->path);
    in.query.data = (const unsigned char *) c->query;
    in.query.len = strlen(c->query);

    if (c->form) {
        in.form.data = (const unsigned char *) c->form;
        in.form.len = strlen(c->form);
    }

    in.bases[0].data = (const unsigned char *) cls_base;
    in.bases[0].len = strlen(cls_base);
    in.nbases = 1;

    rc = welby_fhir_classify(&in, &out, scratch, sizeof(scratch));

    if (rc != WELBY_REASON_NONE) {
        snprintf(buf, size, "%s", welby_reason_get(rc)->code);
        return;
    }

    p = buf;
    e = buf + size;

    p += snprintf(p, e - p, "%s", welby_fhir_interaction_name(out.interaction));

    if (out.type != WELBY_FHIR_TYPE_NONE) {
        p += snprintf(p, e - p, " type=%s", welby_fhir_type_name(out.type));
    }

    if (out.id.len) {
        p += snprintf(p, e - p, " id=%.*s", (int) out.id.len, out.id.data);
    }

    if (out.version.len) {
        p += snprintf(p, e - p, " v=%.*s", (int) out.version.len,
                      out.version.data);
    }

    if (out.interaction == WELBY_FHIR_OPERATION) {
        p += snprintf(p, e - p, " op=%.*s/%u", (int) out.operation.len,
                      out.operation.data, out.level);
    }

    for (i = 0; i < out.npatients; i++) {
        p += snprintf(p, e - p, "%s%.*s", i ? "," : " pat=",
                      (int) out.patients[i].len, out.patients[i].data);
    }

    for (i = 0; i < out.ntypes; i++) {
        p += snprintf(p, e - p, "%s%s", i ? "," : " types=",
                      welby_fhir_type_name(out.types[i]));
    }

    if (out.bound) {
        p += snprintf(p, e - p, " bound");
    }

    if (out.compartment) {
        p += snprintf(p, e - p, " comp");
    }

    if (out.needs_body) {
        p += snprintf(p, e - p, " body");
    }
}


static const cls_case_t  cls_cases[] = {

    /* instance interactions */
    { G, "/Patient/p1", "", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },
    { H, "/Patient/p1", "", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },
    { G, "/Observation/o3", "", NULL,
      "read type=Observation id=o3 types=Observation" },
    { G, "/Organization/org-1", "", NULL,
      "read type=Organization id=org-1 types=Organization" },
    { G, "/Patient/p1/_history/2", "", NULL,
      "vread type=Patient id=p1 v=2 pat=p1 types=Patient bound" },
    { G, "/Observation/o3/_history/1", "", NULL,
      "vread type=Observation id=o3 v=1 types=Observation" },
    { G, "/Patient/p1/_history", "", NULL,
      "history-instance type=Patient id=p1 pat=p1 types=Patient bound" },
    { G, "/Observation/o3/_history", "_count=5&_since=2020-01-01", NULL,
      "history-instance type=Observation id=o3 types=Observation" },
    { U, "/Patient/p1", "", NULL,
      "update type=Patient id=p1 pat=p1 types=Patient bound body" },
    { U, "/Observation/o3", "", NULL,
      "update type=Observation id=o3 types=Observation body" },
    { PA, "/Patient/p1", "", NULL,
      "patch type=Patient id=p1 pat=p1 types=Patient bound body" },
    { D, "/Patient/p1", "", NULL,
      "delete type=Patient id=p1 pat=p1 types=Patient bound" },
    { D, "/Condition/c1", "", NULL,
      "delete type=Condition id=c1 types=Condition" },
    { P, "/Observation", "", NULL,
      "create type=Observation types=Observation body" },
    { P, "/Patient", "_format=json", NULL,
      "create type=Patient types=Patient body" },
    { G, "/Observation/_history", "", NULL,
      "history-type type=Observation types=Observation" },
    { G, "/_history", "_count=10", NULL, "history-system" },
    { G, "/metadata", "", NULL, "capabilities" },
    { G, "/metadata", "mode=normative&_format=json", NULL, "capabilities" },
    { H, "/metadata", "", NULL, "capabilities" },
    { O, "", "", NULL, "capabilities" },
    { P, "", "", NULL, "batch body" },
    { P, "/", "", NULL, "batch body" },

    /* instance interactions refused */
    { P, "/Patient/p1", "", NULL, "fhir_unclassifiable" },
    { U, "/Observation", "patient=p1", NULL, "fhir_unclassifiable" },
    { D, "/Observation", "patient=p1", NULL, "fhir_unclassifiable" },
    { PA, "/Observation", "patient=p1", NULL, "fhir_unclassifiable" },
    { D, "", "", NULL, "fhir_unclassifiable" },
    { U, "/metadata", "", NULL, "fhir_unclassifiable" },
    { P, "/_history", "", NULL, "fhir_unclassifiable" },
    { D, "/Patient/p1/_history/2", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/_history/2/x", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/_history/a_b", "", NULL, "request_malformed" },
    { G, "/Patient/a_b", "", NULL, "request_malformed" },
    { G, "/Patient/p1/", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient//p1", "", NULL, "request_malformed" },
    { G, "Patient/p1", "", NULL, "request_malformed" },
    { G, "/patient/p1", "", NULL, "fhir_type_unknown" },
    { G, "/PATIENT", "", NULL, "fhir_type_unknown" },
    { G, "/Patients", "", NULL, "fhir_type_unknown" },
    { G, "/Pat", "", NULL, "fhir_type_unknown" },
    { G, "/DomainResource/1", "", NULL, "fhir_type_unknown" },
    { G, "/_other", "", NULL, "fhir_unclassifiable" },
    { G, "/metadata/x", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/_other", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1?x", "", NULL, "request_malformed" },
    { G, "/Patient/p1", "name=x", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1", "_count=1", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1", "_summary=true&_elements=name", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },
    { G, "/Patient/p1", "_format:x=json", NULL, "fhir_unclassifiable" },
    { P, "/Observation", "_summary=true", NULL, "fhir_unclassifiable" },
    { G, "/a/b/c/d/e/f", "", NULL, "fhir_unclassifiable" },

    /* _format */
    { G, "/Patient/p1", "_format=json", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },
    { G, "/Patient/p1", "_format=application/fhir%2Bjson", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },
    { G, "/Patient/p1", "_format=application/json", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },
    { G, "/Patient/p1", "_format=application/fhir+json", NULL,
      "fhir_format_unsupported" },
    { G, "/Patient/p1", "_format=xml", NULL, "fhir_format_unsupported" },
    { G, "/Patient/p1", "_format=json&_format=xml", NULL,
      "fhir_format_unsupported" },
    { G, "/Observation", "patient=p1&_format=text/turtle", NULL,
      "fhir_format_unsupported" },
    { G, "/Patient/p1/$everything", "_format=xml", NULL,
      "fhir_format_unsupported" },
    { G, "/Patient/p1", "_pretty=true", NULL,
      "read type=Patient id=p1 pat=p1 types=Patient bound" },

    /* type searches and the patients they bind */
    { G, "/Observation", "patient=p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=https://gw.example/fhir/Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=HTTPS://GW.EXAMPLE/fhir/Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=https://gw.example/FHIR/Patient/p1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=https://other.example/fhir/Patient/p1",
      NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=https%3A%2F%2Fgw.example%2Ffhir%2FPatient"
      "%2Fp1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject=Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject:Patient=p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject:Patient=Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject=p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "performer=Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject=Group/g1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "subject:Group=g1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "performer=Practitioner/d1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "subject=Patient/p1/_history/2", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "subject=Patient/", NULL, "request_malformed" },
    { G, "/Observation", "subject=Patient/a_b", NULL, "request_malformed" },
    { G, "/Observation", "patient=a_b", NULL, "request_malformed" },
    { G, "/Observation", "patient=urn:uuid:1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=http://x|p1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1,", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=,p1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1,p2", NULL,
      "search-type type=Observation pat=p1,p2 types=Observation bound" },
    { G, "/Observation", "patient=p1%2Cp2", NULL,
      "search-type type=Observation pat=p1,p2 types=Observation bound" },
    { G, "/Observation", "patient=p1&patient=p2", NULL,
      "search-type type=Observation pat=p1,p2 types=Observation bound" },
    { G, "/Observation", "patient=p1&subject=Patient/p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=p1&subject=Group/g1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&code=1234-5", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "code=1234-5", NULL,
      "search-type type=Observation types=Observation" },
    { G, "/Observation", "", NULL,
      "search-type type=Observation types=Observation" },
    { G, "/Observation", "code:not=1234-5&patient=p1&status:missing=false",
      NULL, "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient:missing=true", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient:not=p1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "subject:identifier=http://x|1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "subject:above=Patient/p1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_count=10&_sort=-date&_summary=count"
      "&_elements=code&_total=accurate&_offset=10", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=p1&_lastUpdated=gt2020&_tag=x&_profile=y"
      "&_security=z&_source=s&_text=t&_content=c", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=p1&_id=o1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "_id=o1", NULL,
      "search-type type=Observation types=Observation" },
    { G, "/Condition", "patient=p1", NULL,
      "search-type type=Condition pat=p1 types=Condition bound" },
    { G, "/Condition", "asserter=Patient/p2", NULL,
      "search-type type=Condition pat=p2 types=Condition bound" },
    { G, "/Condition", "subject=Patient/p1", NULL,
      "search-type type=Condition types=Condition" },
    { G, "/DiagnosticReport", "patient=p1", NULL,
      "search-type type=DiagnosticReport pat=p1 types=DiagnosticReport bound" },
    { G, "/MedicationRequest", "subject=p1", NULL,
      "search-type type=MedicationRequest pat=p1 types=MedicationRequest"
      " bound" },
    { G, "/Coverage", "beneficiary=Patient/p1", NULL,
      "search-type type=Coverage pat=p1 types=Coverage bound" },
    { G, "/Coverage", "payor=Patient/p1", NULL,
      "search-type type=Coverage pat=p1 types=Coverage bound" },
    { G, "/Group", "member=Patient/p1", NULL,
      "search-type type=Group pat=p1 types=Group bound" },
    { G, "/ResearchSubject", "individual=p1", NULL,
      "search-type type=ResearchSubject pat=p1 types=ResearchSubject bound" },
    { G, "/Appointment", "actor=Patient/p1", NULL,
      "search-type type=Appointment pat=p1 types=Appointment bound" },
    { G, "/Appointment", "actor=Practitioner/d1", NULL,
      "fhir_unclassifiable" },
    { G, "/Encounter", "patient=p1", NULL,
      "search-type type=Encounter pat=p1 types=Encounter bound" },
    { G, "/Organization", "name=Acme", NULL,
      "search-type type=Organization types=Organization" },
    { G, "/Practitioner", "name=Smith&_count=5", NULL,
      "search-type type=Practitioner types=Practitioner" },
    { G, "/Medication", "code=x&patient=p1", NULL,
      "search-type type=Medication types=Medication" },

    /* Patient: _id and link */
    { G, "/Patient", "_id=p1", NULL,
      "search-type type=Patient pat=p1 types=Patient bound" },
    { G, "/Patient", "_id=p1,p2", NULL,
      "search-type type=Patient pat=p1,p2 types=Patient bound" },
    { G, "/Patient", "_id=Patient/p1", NULL, "request_malformed" },
    { G, "/Patient", "_id:not=p1", NULL, "fhir_unclassifiable" },
    { G, "/Patient", "_id:missing=true", NULL, "fhir_unclassifiable" },
    { G, "/Patient", "link=Patient/p2", NULL,
      "search-type type=Patient pat=p2 types=Patient bound" },
    { G, "/Patient", "link=RelatedPerson/r1", NULL, "fhir_unclassifiable" },
    { G, "/Patient", "name=Smith", NULL,
      "search-type type=Patient types=Patient" },
    { G, "/Patient", "_id=p1&name=Smith&birthdate=ge1970", NULL,
      "search-type type=Patient pat=p1 types=Patient bound" },
    { G, "/Patient", "", NULL, "search-type type=Patient types=Patient" },
    { G, "/Patient/_search", "_id=p1", NULL,
      "search-type type=Patient pat=p1 types=Patient bound" },

    /* encodings */
    { G, "/Observation", "%70atient=p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=%70%31", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject%3APatient=p1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "subject=Patient%2Fp1", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=p1%", NULL, "request_malformed" },
    { G, "/Observation", "patient=p1%2", NULL, "request_malformed" },
    { G, "/Observation", "patient=p1%zz", NULL, "request_malformed" },
    { G, "/Observation", "pat%ient=p1", NULL, "request_malformed" },
    { G, "/Observation", "patient=p1%00", NULL, "request_malformed" },
    { G, "/Observation", "patient%00=p1", NULL, "request_malformed" },
    { G, "/Observation", "=p1", NULL, "request_malformed" },
    { G, "/Observation", "patient=p1&=x", NULL, "request_malformed" },
    { G, "/Observation", ":Patient=p1", NULL, "request_malformed" },
    { G, "/Observation", "patient=p1&&code=x&", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { G, "/Observation", "patient=p+1", NULL, "request_malformed" },
    { G, "/Observation", "patient=p%201", NULL, "request_malformed" },
    { G, "/Observation", "patient%3Dp2=x", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1%26patient%3Dp2", NULL,
      "request_malformed" },
    { G, "/Observation", "pati+ent=p1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1\\,p2", NULL, "request_malformed" },
    { G, "/Observation", "patient=p1&code=x;_include=Observation:performer",
      NULL, "fhir_unclassifiable" },
    { G, "/Observation", "code=x#&patient=p1", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&code=a%3Bb%23c", NULL,
      "search-type type=Observation pat=p1 types=Observation bound" },
    { P, "/Observation/_search", "", "patient=p1;patient=p2",
      "fhir_unclassifiable" },

    /* chains, _has, unknown and refused '_' parameters */
    { G, "/Observation", "subject.name=Smith", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "subject:Patient.name=Smith", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&encounter.status=x", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient", "_has:Observation:patient:code=1234", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient", "_id=p1&_has:Observation:patient:code=1234", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_contained=true", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_list=l1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_filter=x", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_query=x", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_type=Condition", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_since=2020", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_whatever=1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_count:x=1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&co$de=x", NULL, "fhir_unclassifiable" },

    /* _include and _revinclude */
    { G, "/Observation", "patient=p1&_include=Observation:patient", NULL,
      "search-type type=Observation pat=p1 types=Observation,Patient bound" },
    { G, "/Observation", "subject=Patient/p1&_include=Observation:subject",
      NULL,
      "search-type type=Observation pat=p1 types=Observation,Patient bound" },
    { G, "/Observation", "patient=p1&_include=Observation:subject", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_include=Observation:performer", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation",
      "patient=p1&_include=Observation:performer:Practitioner", NULL,
      "search-type type=Observation pat=p1 types=Observation,Practitioner"
      " bound" },
    { G, "/Observation", "patient=p1&_include=Observation:encounter", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation",
      "patient=p1&_include=Observation:encounter:Encounter", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation",
      "patient=p1&_include=Observation:patient:Patient", NULL,
      "search-type type=Observation pat=p1 types=Observation,Patient bound" },
    { G, "/Observation",
      "patient=p1&_include=Observation:subject:Group", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_include=*", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_include=Observation:*", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation",
      "patient=p1&_include:iterate=Observation:patient", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation",
      "patient=p1&_include:recurse=Observation:patient", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_include=Condition:patient", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_include=Nope:patient", NULL,
      "fhir_type_unknown" },
    { G, "/Observation", "patient=p1&_include=Observation", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_include=Observation:patient:Patient:x",
      NULL, "fhir_unclassifiable" },
    { G, "/Observation", "_include=Observation:patient", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient/p1/Observation", "_include=Observation:patient", NULL,
      "fhir_unclassifiable" },
    { G, "/Practitioner", "_include=Practitioner:location:Location", NULL,
      "search-type type=Practitioner types=Practitioner,Location" },
    { G, "/Patient", "_id=p1&_revinclude=Observation:subject", NULL,
      "search-type type=Patient pat=p1 types=Patient,Observation bound" },
    { G, "/Patient", "_id=p1&_revinclude=Observation:patient:Patient", NULL,
      "search-type type=Patient pat=p1 types=Patient,Observation bound" },
    { G, "/Patient", "_id=p1&_revinclude=Observation:encounter", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient", "link=Patient/p2&_revinclude=Observation:subject",
      NULL, "fhir_unclassifiable" },
    { G, "/Patient", "name=x&_revinclude=Observation:subject", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation", "patient=p1&_revinclude=Provenance:target", NULL,
      "fhir_unclassifiable" },
    { G, "/Practitioner", "_revinclude=PractitionerRole:practitioner", NULL,
      "search-type type=Practitioner types=Practitioner,PractitionerRole" },
    { G, "/Patient", "_id=p1&_revinclude:iterate=Observation:subject", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient", "_id=p1&_revinclude=*", NULL, "fhir_unclassifiable" },
    { G, "/Patient", "_id=p1&_revinclude=Observation", NULL,
      "fhir_unclassifiable" },

    /* compartment searches */
    { G, "/Patient/p1/Observation", "", NULL,
      "search-type type=Observation pat=p1 types=Observation bound comp" },
    { G, "/Patient/p1/Observation", "code=1234&_count=5", NULL,
      "search-type type=Observation pat=p1 types=Observation bound comp" },
    { G, "/Patient/p1/Observation", "patient=p2", NULL,
      "search-type type=Observation pat=p1,p2 types=Observation bound comp" },
    { G, "/Patient/p1/Condition", "_has:x=1", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/Organization", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/*", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/Nope", "", NULL, "fhir_type_unknown" },
    { G, "/Encounter/e1/Observation", "", NULL, "fhir_unclassifiable" },
    { P, "/Patient/p1/Observation", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/Observation/_search", "", NULL,
      "fhir_unclassifiable" },

    /* POST _search with a form */
    { P, "/Observation/_search", "", NULL,
      "search-type type=Observation types=Observation body" },
    { P, "/Observation/_search", "", "patient=p1",
      "search-type type=Observation pat=p1 types=Observation bound" },
    { P, "/Observation/_search", "patient=p1", "patient=p2",
      "search-type type=Observation pat=p1,p2 types=Observation bound" },
    { P, "/Observation/_search", "", "subject=Group/g1",
      "fhir_unclassifiable" },
    { P, "/Observation/_search", "", "patient=p+1", "request_malformed" },
    { P, "/Observation/_search", "", "patient=p1%", "request_malformed" },
    { P, "/Observation/_search", "", "patient=Patient%2Fp1&code=a+b",
      "search-type type=Observation pat=p1 types=Observation bound" },
    { P, "/Observation/_search", "", "",
      "search-type type=Observation types=Observation" },
    { P, "/_search", "", "_type=Observation&patient=p1",
      "search-system pat=p1 types=Observation bound" },
    { D, "/Observation/_search", "", NULL, "fhir_unclassifiable" },

    /* system search and _type */
    { G, "", "_type=Observation,Condition&patient=p1", NULL,
      "search-system pat=p1 types=Observation,Condition bound" },
    { G, "", "_type=Observation&_type=Condition&patient=p1", NULL,
      "search-system pat=p1 types=Observation,Condition bound" },
    { G, "/", "_type=Observation&patient=p1", NULL,
      "search-system pat=p1 types=Observation bound" },
    { G, "", "_type=Observation,Condition", NULL,
      "search-system types=Observation,Condition" },
    { G, "", "_type=Observation,Condition&subject=Patient/p1", NULL,
      "fhir_unclassifiable" },
    { G, "", "_type=Observation,Organization&patient=p1", NULL,
      "search-system pat=p1 types=Observation,Organization bound" },
    { G, "", "_type=Organization,Location&name=x", NULL,
      "search-system types=Organization,Location" },
    { G, "", "_type=Observation,Condition&code=x", NULL,
      "search-system types=Observation,Condition" },
    { G, "", "_type=Observation,Nope&patient=p1", NULL,
      "fhir_type_unknown" },
    { G, "", "_type=Observation,&patient=p1", NULL, "fhir_unclassifiable" },
    { G, "", "_type:x=Observation&patient=p1", NULL, "fhir_unclassifiable" },
    { G, "", "patient=p1", NULL, "fhir_unclassifiable" },
    { G, "", "", NULL, "fhir_unclassifiable" },
    { G, "/_search", "_type=Patient&_id=p1", NULL,
      "search-system types=Patient" },
    { G, "", "_type=Observation&patient=p1"
      "&_include=Observation:patient", NULL,
      "search-system pat=p1 types=Observation,Patient bound" },

    /* operations */
    { G, "/Patient/p1/$everything", "", NULL,
      "operation type=Patient id=p1 op=everything/2 pat=p1 types=Patient"
      " bound" },
    { P, "/Patient/p1/$everything", "", NULL, "fhir_unclassifiable" },
    { P, "/Patient/p1/$everything", "", "",
      "operation type=Patient id=p1 op=everything/2 pat=p1 types=Patient"
      " bound body" },
    { P, "/Observation/$lastn", "patient=p1", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/$everything", "_since=2020&_type=Observation"
      "&_count=10", NULL,
      "operation type=Patient id=p1 op=everything/2 pat=p1 types=Patient"
      " bound" },
    { G, "/Patient/$everything", "", NULL,
      "operation type=Patient op=everything/1 types=Patient" },
    { G, "/Patient/p1/$everything", "_id=p2", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/$everything", "patient=p2", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient/p1/$everything", "_type:x=Observation", NULL,
      "fhir_unclassifiable" },
    { G, "/Patient/$everything", "_id=p1", NULL, "fhir_unclassifiable" },
    { G, "/$export", "_type=Patient", NULL, "operation op=export/0" },
    { G, "/Patient/$export", "", NULL,
      "operation type=Patient op=export/1 types=Patient" },
    { G, "/Group/g1/$export", "", NULL,
      "operation type=Group id=g1 op=export/2 types=Group" },
    { P, "/Observation/$validate", "", NULL,
      "operation type=Observation op=validate/1 types=Observation body" },
    { G, "/Observation/o1/$meta", "", NULL,
      "operation type=Observation id=o1 op=meta/2 types=Observation" },
    { G, "/ValueSet/$expand", "url=http://x", NULL,
      "operation type=ValueSet op=expand/1 types=ValueSet" },
    { G, "/CodeSystem/$lookup", "system=http://loinc.org&code=1234-5", NULL,
      "operation type=CodeSystem op=lookup/1 types=CodeSystem" },
    { G, "/Observation/$lastn", "patient=p1&max=3", NULL,
      "operation type=Observation op=lastn/1 pat=p1 types=Observation"
      " bound" },
    { G, "/Observation/$lastn", "subject=Group/g1", NULL,
      "fhir_unclassifiable" },
    { G, "/Observation/$lastn", "code=x", NULL,
      "operation type=Observation op=lastn/1 types=Observation" },
    { D, "/Patient/p1/$everything", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/$", "", NULL, "request_malformed" },
    { G, "/Patient/p1/$every%thing", "", NULL, "request_malformed" },
    { G, "/$", "", NULL, "request_malformed" },
    { G, "/$export/x", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/$everything/x", "", NULL, "fhir_unclassifiable" },
    { G, "/Patient/p1/$everything/x", "", NULL, "fhir_unclassifiable" },

    /* limits */
    { G, "/Observation", "patient=a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,"
      "a13,a14,a15,a16", NULL,
      "search-type type=Observation pat=a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,"
      "a12,a13,a14,a15,a16 types=Observation bound" },
    { G, "/Observation", "patient=a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,"
      "a13,a14,a15,a16,a17", NULL, "fhir_unclassifiable" },
    { G, "/Observation", "patient=a1,a1,a1,a1,a1,a1,a1,a1,a1,a1,a1,a1,"
      "a1,a1,a1,a1,a1,a1", NULL,
      "search-type type=Observation pat=a1 types=Observation bound" },
    { G, "/Observation", "a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1"
      "&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1"
      "&a=1&a=1&a=1&a=1", NULL,
      "search-type type=Observation types=Observation" },
    { G, "/Observation", "a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1"
      "&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1&a=1"
      "&a=1&a=1&a=1&a=1&a=1", NULL, "fhir_unclassifiable" },
    { G, "", "_type=Account,ActivityDefinition,AdverseEvent,"
      "AllergyIntolerance,Appointment,AppointmentResponse,AuditEvent,Basic,"
      "Binary,BiologicallyDerivedProduct,BodyStructure,Bundle,"
      "CapabilityStatement,CarePlan,CareTeam,CatalogEntry", NULL,
      "search-system types=Account,ActivityDefinition,AdverseEvent,"
      "AllergyIntolerance,Appointment,AppointmentResponse,AuditEvent,Basic,"
      "Binary,BiologicallyDerivedProduct,BodyStructure,Bundle,"
      "CapabilityStatement,CarePlan,CareTeam,CatalogEntry" },
    { G, "", "_type=Account,ActivityDefinition,AdverseEvent,"
      "AllergyIntolerance,Appointment,AppointmentResponse,AuditEvent,Basic,"
      "Binary,BiologicallyDerivedProduct,BodyStructure,Bundle,"
      "CapabilityStatement,CarePlan,CareTeam,CatalogEntry,ChargeItem", NULL,
      "fhir_unclassifiable" },
};


static int
ref(const char *r, const char *expect_id)
{
    int          rc;
    welby_str_t  base, id;

    base.data = (const unsigned char *) cls_base;
    base.len = strlen(cls_base);
    id.data = NULL;
    id.len = 0;

    rc = welby_fhir_patient_ref((const unsigned char *) r, strlen(r), &base,
                                1, &id);

    if (rc == 1 && (expect_id == NULL || id.len != strlen(expect_id)
                    || memcmp(id.data, expect_id, id.len) != 0))
    {
        return 99;
    }

    return rc;
}


int
main(void)
{
    char     id64[65], id65[66], got[1024];
    int      t, prev;
    size_t   i, n;

    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'a', 65);
    id65[65] = '\0';

    ok(welby_fhir_id_valid(S("abc-DEF.123")),
       "letters, digits, - and . form an id");
    ok(welby_fhir_id_valid((const unsigned char *) id64, 64),
       "64 chars is the longest id");
    ok(!welby_fhir_id_valid((const unsigned char *) id65, 65),
       "65 chars is too long");
    ok(!welby_fhir_id_valid(S("")), "an empty id is refused");
    ok(!welby_fhir_id_valid(S("a_b")), "underscore is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a/b")), "slash is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a b")), "space is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a\"b")), "quote is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a\xc3\xa9")),
       "non-ASCII is not in the id grammar");
    ok(!welby_fhir_id_valid(S("a\0b")), "NUL is not in the id grammar");

    ok(welby_request_id_valid(S("0a-b.C")),
       "request id: a FHIR id that starts with a digit");
    ok(welby_request_id_valid(S("Z")), "request id: one letter");
    ok(welby_request_id_valid((const unsigned char *) id64, 64),
       "request id: 64 chars");
    ok(!welby_request_id_valid((const unsigned char *) id65, 65),
       "request id: 65 chars is too long");
    ok(!welby_request_id_valid(S("..")), "request id: \"..\" is refused");
    ok(!welby_request_id_valid(S(".")), "request id: \".\" is refused");
    ok(!welby_request_id_valid(S(".a")),
       "request id: a leading dot is refused");
    ok(!welby_request_id_valid(S("-rf")),
       "request id: a leading dash is refused");
    ok(!welby_request_id_valid(S("a_b")),
       "request id: outside the FHIR id grammar is refused");
    ok(!welby_request_id_valid(S("")), "request id: empty is refused");

    ok(check("/fhir/Patient/1", "/fhir/Patient/1") == WELBY_REASON_NONE,
       "a plain path passes");
    ok(check("/fhir/Patient/%41", "/fhir/Patient/A") == WELBY_REASON_NONE,
       "an encoded letter passes");
    ok(check("/fhir/Patient%2F1", "/fhir/Patient/1")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded slash is refused");
    ok(check("/fhir/Patient%2f1", "/fhir/Patient/1")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a lower-case encoded slash is refused");
    ok(check("/fhir/%2541", "/fhir/%41")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded percent is refused");
    ok(check("/fhir/a%5Cb", "/fhir/a\\b")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded backslash is refused");
    ok(check("/fhir/a\\b", "/fhir/a\\b")
       == WELBY_REASON_REQUEST_MALFORMED, "a raw backslash is refused");
    ok(check("/fhir/a%", "/fhir/a%")
       == WELBY_REASON_REQUEST_MALFORMED, "a truncated escape is refused");
    ok(check("/fhir/a%4", "/fhir/a%4")
       == WELBY_REASON_REQUEST_MALFORMED, "a one-digit escape is refused");
    ok(check("/fhir/a%zz", "/fhir/a%zz")
       == WELBY_REASON_REQUEST_MALFORMED, "a non-hex escape is refused");
    ok(check("/fhir/a%09b", "/fhir/a\tb")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a decoded control character is refused");
    ok(check("/fhir/a%7Fb", "/fhir/a\x7f" "b")
       == WELBY_REASON_REQUEST_MALFORMED, "a decoded DEL is refused");
    ok(check("/", "/") == WELBY_REASON_NONE, "the root passes");
    ok(check("/fhir/", "/fhir/") == WELBY_REASON_NONE,
       "a trailing slash passes");
    ok(check("/fhir/...", "/fhir/...") == WELBY_REASON_NONE,
       "three dots are a name, not a dot segment");
    ok(check("/fhir/Patient/a.b", "/fhir/Patient/a.b") == WELBY_REASON_NONE,
       "a dot inside an id passes");
    ok(check("/fhir//Patient", "/fhir/Patient")
       == WELBY_REASON_REQUEST_MALFORMED, "an empty segment is refused");
    ok(check("//fhir", "/fhir")
       == WELBY_REASON_REQUEST_MALFORMED, "a leading empty segment is refused");
    ok(check("/fhir/./Patient", "/fhir/Patient")
       == WELBY_REASON_REQUEST_MALFORMED, "a . segment is refused");
    ok(check("/fhir/x/../Patient", "/fhir/Patient")
       == WELBY_REASON_REQUEST_MALFORMED, "a .. segment is refused");
    ok(check("/fhir/Patient/..", "/fhir/")
       == WELBY_REASON_REQUEST_MALFORMED, "a trailing .. segment is refused");
    ok(check("/fhir/Patient/.", "/fhir/Patient/")
       == WELBY_REASON_REQUEST_MALFORMED, "a trailing . segment is refused");
    ok(check("/fhir/%2e%2e/admin", "/admin")
       == WELBY_REASON_REQUEST_MALFORMED, "encoded dots are refused");
    ok(check("/fhir/a%2Eb", "/fhir/a.b")
       == WELBY_REASON_REQUEST_MALFORMED,
       "an upper-case encoded dot is refused");
    ok(welby_fhir_check_path(S("/a%00b"), S("/a\0b"))
       == WELBY_REASON_REQUEST_MALFORMED, "a decoded NUL is refused");
    ok(check("/fhir/.well-known/..;/Patient/p1",
             "/fhir/.well-known/..;/Patient/p1")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a '..;' segment is refused (a dot segment to servlet containers)");
    ok(check("/fhir/Patient;jsessionid=1/p1", "/fhir/Patient;jsessionid=1/p1")
       == WELBY_REASON_REQUEST_MALFORMED, "a path parameter is refused");
    ok(check("/fhir/Patient/p1;", "/fhir/Patient/p1;")
       == WELBY_REASON_REQUEST_MALFORMED, "a trailing ';' is refused");
    ok(check("/fhir/.well-known/..%3B/Patient/p1",
             "/fhir/.well-known/..;/Patient/p1")
       == WELBY_REASON_REQUEST_MALFORMED, "an encoded ';' is refused");
    ok(check("/fhir/a%3bb", "/fhir/a;b")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a lower-case encoded ';' is refused");
    ok(check("/fhir/a;b", "/fhir/a")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a raw ';' is refused when the decoded path lost it (rewrite)");
    ok(check("/fhir/a%3Bb", "/fhir/a")
       == WELBY_REASON_REQUEST_MALFORMED,
       "an encoded ';' is refused when the decoded path lost it");
    ok(check("/fhir/a", "/fhir/a;b")
       == WELBY_REASON_REQUEST_MALFORMED,
       "a ';' in the decoded path alone is refused");
    ok(check("/fhir/Patient/%3A", "/fhir/Patient/:") == WELBY_REASON_NONE,
       "an encoded ':' (next to ';' in ASCII) passes");

    /* the tables */

    n = 0;
    prev = -1;

    for (t = 0; welby_fhir_type_name(t) != NULL; t++) {
        const char  *name = welby_fhir_type_name(t);

        if (welby_fhir_type_find((const unsigned char *) name, strlen(name))
            != t)
        {
            break;
        }

        if (prev >= 0 && strcmp(welby_fhir_type_name(prev), name) >= 0) {
            break;
        }

        n += welby_fhir_in_compartment(t);
        prev = t;
    }

    ok(t == 146, "146 R4 resource types, sorted, each found (%d)", t);
    ok(n == 66, "66 of them in the Patient compartment (%zu)", n);
    ok(welby_fhir_type_find(S("Observation")) != WELBY_FHIR_TYPE_NONE,
       "Observation is a type");
    ok(welby_fhir_type_find(S("observation")) == WELBY_FHIR_TYPE_NONE,
       "types are case-sensitive");
    ok(welby_fhir_type_find(S("Observatio")) == WELBY_FHIR_TYPE_NONE,
       "a prefix of a type is not a type");
    ok(welby_fhir_type_find(S("Observations")) == WELBY_FHIR_TYPE_NONE,
       "a type with a suffix is not a type");
    ok(welby_fhir_type_find(S("")) == WELBY_FHIR_TYPE_NONE,
       "the empty name is not a type");
    ok(welby_fhir_type_find(S("Account")) == 0, "Account is the first type");
    ok(welby_fhir_type_find(S("VisionPrescription")) == 145,
       "VisionPrescription is the last type");
    ok(welby_fhir_type_find(S("Parameters")) != WELBY_FHIR_TYPE_NONE
       && !welby_fhir_in_compartment(welby_fhir_type_find(S("Parameters"))),
       "Parameters is a type outside the compartment");
    is_str(welby_fhir_type_name(welby_fhir_type_patient()), "Patient",
           "type_patient() is Patient");
    ok(welby_fhir_type_name(-1) == NULL && welby_fhir_type_name(146) == NULL,
       "no name outside the table");

    t = welby_fhir_type_patient();
    ok(welby_fhir_compartment_param(t, S("_id"))
       && welby_fhir_compartment_param(t, S("link"))
       && !welby_fhir_compartment_param(t, S("name")),
       "Patient binds by _id and link only");
    t = welby_fhir_type_find(S("Observation"));
    ok(welby_fhir_compartment_param(t, S("subject"))
       && welby_fhir_compartment_param(t, S("performer"))
       && welby_fhir_compartment_param(t, S("patient"))
       && !welby_fhir_compartment_param(t, S("subjec"))
       && !welby_fhir_compartment_param(t, S("encounter")),
       "Observation binds by subject, performer and patient");
    t = welby_fhir_type_find(S("Coverage"));
    ok(welby_fhir_compartment_param(t, S("policy-holder"))
       && welby_fhir_compartment_param(t, S("payor"))
       && welby_fhir_compartment_param(t, S("beneficiary")),
       "Coverage binds by its four parameters and patient");
    t = welby_fhir_type_find(S("CommunicationRequest"));
    ok(welby_fhir_compartment_param(t, S("requester"))
       && welby_fhir_compartment_param(t, S("sender"))
       && !welby_fhir_compartment_param(t, S("patient")),
       "CommunicationRequest binds as the definition says");
    t = welby_fhir_type_find(S("Organization"));
    ok(!welby_fhir_in_compartment(t)
       && !welby_fhir_compartment_param(t, S("patient")),
       "Organization is outside the compartment");

    is_str(welby_fhir_interaction_name(WELBY_FHIR_HISTORY_INSTANCE),
           "history-instance", "interaction name history-instance");
    is_str(welby_fhir_interaction_name(WELBY_FHIR_SEARCH_SYSTEM),
           "search-system", "interaction name search-system");
    is_str(welby_fhir_interaction_name(WELBY_FHIR_NONE), "",
           "interaction name of none is empty");
    is_str(welby_fhir_interaction_name(WELBY_FHIR_INTERACTION_COUNT), "",
           "interaction name out of range is empty");

    /* references in bodies */

    ok(ref("Patient/p1", "p1") == 1, "ref Patient/p1");
    ok(ref("Patient/p1/_history/2", "p1") == 1, "ref Patient/p1/_history/2");
    ok(ref("https://gw.example/fhir/Patient/p1", "p1") == 1,
       "ref absolute to this base");
    ok(ref("https://GW.example/fhir/Patient/p1", "p1") == 1,
       "ref absolute, host in another case");
    ok(ref("https://gw.example/FHIR/Patient/p1", NULL) == -1,
       "ref absolute, base path in another case");
    ok(ref("https://other.example/fhir/Patient/p1", NULL) == -1,
       "ref to another server");
    ok(ref("https://gw.example/fhirx/Patient/p1", NULL) == -1,
       "ref to a longer base");
    ok(ref("Observation/o1", NULL) == 0, "ref to another type");
    ok(ref("Group/g1/_history/1", NULL) == 0, "ref to a version of a Group");
    ok(ref("p1", NULL) == -1, "a bare id is not a reference");
    ok(ref("#c1", NULL) == -1, "a contained reference");
    ok(ref("urn:uuid:9b3e", NULL) == -1, "a urn:uuid reference");
    ok(ref("patient/p1", NULL) == -1, "ref with a lower-case type");
    ok(ref("Patient/", NULL) == -1, "ref without an id");
    ok(ref("Patient/a_b", NULL) == -1, "ref with a bad id");
    ok(ref("Patient/p1/", NULL) == -1, "ref with a trailing slash");
    ok(ref("Patient/p1/_history/", NULL) == -1, "ref with an empty version");
    ok(ref("Patient/p1/_history", NULL) == -1, "ref to a history");
    ok(ref("Patient/p1/x", NULL) == -1, "ref with a sub-path");
    ok(ref("Patient?identifier=x", NULL) == -1, "a conditional reference");
    ok(ref("", NULL) == -1, "an empty reference");

    /* the classifier */

    for (i = 0; i < sizeof(cls_cases) / sizeof(cls_cases[0]); i++) {
        describe(&cls_cases[i], got, sizeof(got));
        is_str(got, cls_cases[i].expect, "%s %s?%s%s%s -> %s",
               cls_cases[i].method == G ? "GET"
               : cls_cases[i].method == H ? "HEAD"
               : cls_cases[i].method == P ? "POST"
               : cls_cases[i].method == U ? "PUT"
               : cls_cases[i].method == PA ? "PATCH"
               : cls_cases[i].method == D ? "DELETE" : "OPTIONS",
               cls_cases[i].path, cls_cases[i].query,
               cls_cases[i].form ? " form " : "",
               cls_cases[i].form ? cls_cases[i].form : "",
               cls_cases[i].expect);
    }

    return done_testing();
}
