/*
 * Unit tests: batch and transaction entries, each classified and decided
 * as a request of its own (welby_compartment_check_write), with the real
 * classifier, scope parser and decision.  Written against the shared
 * policy design; rename to bundle.c once those have landed.
 */

#include <stdlib.h>

#include "tap.h"
#include "welby_compartment.h"


#define BASE  "https://ehr.example/fhir"

static const welby_str_t  bases[] = {
    { (const unsigned char *) BASE, sizeof(BASE) - 1 }
};

static const welby_str_t  user_patients[] = {
    { (const unsigned char *) "p1", 2 },
    { (const unsigned char *) "p3", 2 }
};


static void
subject(welby_policy_subject_t *subj, welby_scopes_t *scopes,
    unsigned char *scratch, const char *scope, const char *patient,
    int user, int system_ok)
{
    memset(scopes, 0, sizeof(welby_scopes_t));
    welby_scopes_parse(scopes, (const unsigned char *) scope, strlen(scope),
                       scratch);

    memset(subj, 0, sizeof(welby_policy_subject_t));
    subj->scopes = scopes;

    if (patient != NULL) {
        subj->patient.data = (const unsigned char *) patient;
        subj->patient.len = strlen(patient);
    }

    if (user) {
        subj->patients = user_patients;
        subj->npatients = 2;
    }

    subj->system_ok = system_ok;
}


/* one Bundle of type btype, its entries given as JSON text */
static const char *
run(const char *btype, const char *entries, const char *scope,
    const char *patient, int user, int system_ok)
{
    char                    *text;
    json_t                  *j;
    size_t                   len;
    unsigned char            scratch[256];
    welby_reason_e           rc;
    welby_scopes_t           scopes;
    welby_fhir_request_t     req;
    welby_policy_subject_t   subj;

    subject(&subj, &scopes, scratch, scope, patient, user, system_ok);

    len = strlen(entries) + 128;
    text = malloc(len);

    if (text == NULL) {
        exit(2);
    }

    snprintf(text, len, "{\"resourceType\":\"Bundle\",\"type\":\"%s\","
             "\"entry\":[%s]}", btype, entries);

    j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);

    if (j == NULL) {
        printf("# bad test JSON: %s\n", text);
        exit(2);
    }

    memset(&req, 0, sizeof(welby_fhir_request_t));
    req.interaction = strcmp(btype, "batch") == 0 ? WELBY_FHIR_BATCH
                                                  : WELBY_FHIR_TRANSACTION;
    req.type = WELBY_FHIR_TYPE_NONE;
    req.needs_body = 1;

    rc = welby_compartment_check_write(&req, j, &subj, WELBY_SCOPE_PATIENT,
                                       bases, 1);
    json_decref(j);
    free(text);

    return rc == WELBY_REASON_NONE ? "ok" : welby_reason_get(rc)->code;
}

#define GET(url)  "{\"request\":{\"method\":\"GET\",\"url\":\"" url "\"}}"
#define DEL(url)  "{\"request\":{\"method\":\"DELETE\",\"url\":\"" url "\"}}"
#define OBS(p)    "{\"resourceType\":\"Observation\",\"subject\":"          \
                  "{\"reference\":\"Patient/" p "\"}}"
#define POST(url, r)  "{\"resource\":" r ",\"request\":{\"method\":"        \
                      "\"POST\",\"url\":\"" url "\"}}"
#define PUT(url, r)   "{\"resource\":" r ",\"request\":{\"method\":"        \
                      "\"PUT\",\"url\":\"" url "\"}}"

/* patient context, every letter on every type, the token's patient p1 */
#define P(entries)  run("transaction", entries, "patient/*.cruds", "p1", 0, 0)
#define B(entries)  run("batch", entries, "patient/*.cruds", "p1", 0, 0)


int
main(void)
{
    /* searches: every spelling of the patient, bound or not */
    is_str(P(GET("Observation?patient=p1")), "ok", "search the own patient");
    is_str(P(GET("Observation?patient=p2")), "patient_mismatch",
           "search another patient");
    is_str(P(GET("Observation?subject=Patient/p2")), "patient_mismatch",
           "subject=Patient/p2");
    is_str(P(GET("Observation?subject=Patient%2Fp2")), "patient_mismatch",
           "subject=Patient%%2Fp2");
    is_str(P(GET("Observation?subject:Patient=p2")), "patient_mismatch",
           "subject:Patient=p2");
    is_str(P(GET("Observation?subject=" BASE "/Patient/p2")),
           "patient_mismatch", "an absolute reference in the query");
    is_str(P(GET("Observation?patient=p1,p2")), "patient_mismatch",
           "a comma list with another patient");
    is_str(P(GET("Observation?patient=p1&patient=p2")), "patient_mismatch",
           "a repeated parameter with another patient");
    is_str(P(GET("Observation?code=1234")), "patient_unbound",
           "a search naming no patient");
    is_str(P(GET("Observation?subject.name=x")), "fhir_unclassifiable",
           "a chained parameter");
    is_str(P(GET("Observation?_has:Condition:subject:code=x&patient=p1")),
           "fhir_unclassifiable", "_has");
    is_str(P(GET("Observation?patient:missing=true")), "fhir_unclassifiable",
           "a modifier on the compartment parameter");
    is_str(P(GET("Observation?patient=p1&_include=*")),
           "fhir_unclassifiable", "a wildcard include");
    is_str(P(GET("Patient/p1/Observation")), "ok",
           "the own compartment search");
    is_str(P(GET("Patient/p2/Observation")), "patient_mismatch",
           "another patient's compartment search");
    is_str(P(GET(BASE "/Observation?patient=p1")), "ok",
           "an absolute entry url under the base");

    /* instance reads: bound for Patient, unverifiable otherwise */
    is_str(P(GET("Patient/p1")), "ok", "read the own Patient");
    is_str(P(GET("Patient/p2")), "patient_mismatch", "read another Patient");
    is_str(P(GET("Observation/o1")), "patient_unverifiable",
           "read an Observation: its answer is not checked in a Bundle");
    is_str(P(GET("Organization/org1")), "ok",
           "read a type outside the compartment");

    /* writes */
    is_str(P(POST("Observation", OBS("p1"))), "ok", "create the own");
    is_str(P(POST("Observation", OBS("p2"))), "patient_mismatch",
           "create another's");
    is_str(P(PUT("Patient/p1", "{\"resourceType\":\"Patient\",\"id\":"
                 "\"p1\"}")), "ok", "update the own Patient");
    is_str(P(PUT("Patient/p2", "{\"resourceType\":\"Patient\",\"id\":"
                 "\"p2\"}")), "patient_mismatch", "update another Patient");
    is_str(P(PUT("Patient/p1", "{\"resourceType\":\"Patient\",\"id\":"
                 "\"p2\"}")), "fhir_id_mismatch", "PUT id mismatch");
    is_str(P(POST("Patient", "{\"resourceType\":\"Patient\"}")),
           "patient_mismatch", "create a Patient");
    is_str(P(PUT("Observation/o1", "{\"resourceType\":\"Observation\","
                 "\"id\":\"o1\",\"subject\":{\"reference\":\"Patient/p1\"}}")),
           "patient_unverifiable", "update an existing Observation");
    is_str(P(DEL("Observation/o1")), "patient_unverifiable",
           "delete an existing Observation");
    is_str(P(DEL("Patient/p2")), "patient_mismatch", "delete another Patient");
    is_str(P("{\"resource\":{\"resourceType\":\"Binary\",\"contentType\":"
             "\"application/json-patch+json\",\"data\":\"W10=\"},"
             "\"request\":{\"method\":\"PATCH\",\"url\":\"Patient/p1\"}}"),
           "fhir_format_unsupported", "a JSON Patch in a Binary");
    is_str(P(POST("", "{\"resourceType\":\"Bundle\",\"type\":\"batch\"}")),
           "fhir_unclassifiable", "a Bundle in a Bundle");
    is_str(P(POST("Observation/_search", "{\"resourceType\":"
                  "\"Parameters\"}")), "fhir_unclassifiable",
           "a search by POST in a Bundle");

    /* scopes, entry by entry */
    is_str(run("transaction", POST("Observation", OBS("p1")),
               "patient/Observation.rs", "p1", 0, 0), "scope_insufficient",
           "create with a read-only scope");
    is_str(run("batch", GET("Observation?patient=p1") ","
               GET("Condition?patient=p1"), "patient/Observation.rs", "p1",
               0, 0), "scope_insufficient",
           "the second entry's type is not in the scopes");
    is_str(run("batch", GET("Observation?patient=p1&category=laboratory"),
               "patient/Observation.rs?category=laboratory", "p1", 0, 0),
           "ok", "a granular scope's own search");
    is_str(run("batch", GET("Observation?patient=p1&category=vital-signs"),
               "patient/Observation.rs?category=laboratory", "p1", 0, 0),
           "scope_insufficient", "a granular scope, another value");
    is_str(run("batch", GET("$export"), "system/*.rs", NULL, 0, 0),
           "system_scope_refused", "system/ from a client not allowed");
    is_str(run("batch", GET("Patient/p1/$frobnicate"), "patient/*.cruds",
               "p1", 0, 0), "operation_unknown", "an unknown operation");
    is_str(run("batch", GET("Observation?patient=p3"), "user/*.cruds", NULL,
               1, 0), "ok", "user context: a patient of the claim");
    is_str(run("batch", GET("Observation?patient=p2"), "user/*.cruds", NULL,
               1, 0), "patient_mismatch",
           "user context: a patient outside the claim");
    is_str(run("transaction", POST("Observation", OBS("p3")), "user/*.cruds",
               NULL, 1, 0), "ok", "user context: create for p3");
    is_str(run("transaction", POST("Observation", OBS("p2")), "user/*.cruds",
               NULL, 1, 0), "patient_mismatch",
           "user context: create for p2");
    is_str(run("transaction", POST("Observation", OBS("p2")),
               "system/*.cruds", NULL, 0, 1), "ok",
           "system context: create for anyone");

    /* the Bundle passes only if every entry does, whatever the order */
    is_str(B(GET("Observation?patient=p1") "," GET("Patient/p2")),
           "patient_mismatch", "batch: a later entry refused");
    is_str(B(GET("Patient/p2") "," GET("Observation?patient=p1")),
           "patient_mismatch", "batch: the first entry refused");

    return done_testing();
}
