/*
 * Unit tests: the SMART scope grammar (v1, v2, granular v2, and every
 * malformed form, which grants nothing) and the policy's decision over
 * classified requests: each interaction in each context, patients that
 * match and do not, granular scopes, operations.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>

#include "tap.h"
#include "welby_scope.h"


/* One parse: the scopes as text, and "!N" for N ignored. */
typedef struct {
    const char  *scope;
    const char  *expect;
    const char  *name;
} parse_case_t;


/*
 * A request in a few words:
 *   <interaction> <Type|-> [id=..] [p=a,b] [b] [t=A,B] [q=name[:mod]=v]
 *   [op=name] [lv=0|1|2] [head]
 */
typedef struct {
    const char  *scope;
    const char  *patient;       /* NULL: no claim */
    const char  *patients;      /* space-separated, NULL: none */
    int          system_ok;
    const char  *request;
    const char  *expect;
} decide_case_t;


static const parse_case_t  parse_cases[] = {

    /* SMART v1 */
    { "patient/Observation.read", "patient/Observation.rs",
      "v1 read is r and s" },
    { "patient/Observation.write", "patient/Observation.cud",
      "v1 write is c, u and d" },
    { "patient/Observation.*", "patient/Observation.cruds",
      "v1 * is every letter" },
    { "user/*.read", "user/*.rs", "v1 on every type" },
    { "system/*.*", "system/*.cruds", "v1 system/*.*" },
    { "user/Patient.write", "user/Patient.cud", "v1 user write" },

    /* SMART v2 */
    { "system/Patient.r", "system/Patient.r", "v2 r" },
    { "patient/Observation.rs", "patient/Observation.rs", "v2 rs" },
    { "user/*.cruds", "user/*.cruds", "v2 cruds on every type" },
    { "patient/Condition.c", "patient/Condition.c", "v2 c alone" },
    { "patient/Condition.u", "patient/Condition.u", "v2 u alone" },
    { "patient/Condition.d", "patient/Condition.d", "v2 d alone" },
    { "patient/Condition.s", "patient/Condition.s", "v2 s alone" },
    { "patient/Condition.cd", "patient/Condition.cd", "v2 cd" },
    { "patient/Condition.rus", "patient/Condition.rus", "v2 rus" },
    { "patient/Encounter.cruds", "patient/Encounter.cruds", "v2 cruds" },

    /* letters out of order, repeated, unknown: ignored */
    { "patient/Observation.sr", "!1", "v2 sr: out of order" },
    { "patient/Observation.rc", "!1", "v2 rc: out of order" },
    { "patient/Observation.dc", "!1", "v2 dc: out of order" },
    { "patient/Observation.sc", "!1", "v2 sc: out of order" },
    { "patient/Observation.ur", "!1", "v2 ur: out of order" },
    { "patient/Observation.sdurc", "!1", "v2 reversed" },
    { "patient/Observation.rr", "!1", "v2 rr: repeated" },
    { "patient/Observation.crudss", "!1", "v2 crudss: repeated" },
    { "patient/Observation.cc", "!1", "v2 cc: repeated" },
    { "patient/Observation.x", "!1", "v2 x: unknown letter" },
    { "patient/Observation.rsx", "!1", "v2 rsx: unknown letter" },
    { "patient/Observation.R", "!1", "upper-case R" },
    { "patient/Observation.Read", "!1", "Read: v1 is case-sensitive" },
    { "patient/Observation.READ", "!1", "READ" },
    { "patient/Observation.rw", "!1", "rw: w is no v2 letter" },
    { "patient/Observation.", "!1", "no letters" },
    { "patient/Observation.readrs", "!1", "v1 and v2 mixed: readrs" },
    { "patient/Observation.rsread", "!1", "v1 and v2 mixed: rsread" },
    { "patient/Observation.r*", "!1", "v2 letter and *" },
    { "patient/Observation.read?category=laboratory", "!1",
      "v1 read with a granular query" },
    { "patient/Observation.write?category=laboratory", "!1",
      "v1 write with a granular query" },
    { "patient/Observation.*?category=laboratory", "!1",
      "v1 * with a granular query" },
    { "patient/Observation.r s", "patient/Observation.r !1",
      "a space splits the letters: s alone is no scope" },

    /* the shape */
    { "patient/Observation", "!1", "no dot" },
    { "patient/Foo.rs", "!1", "an unknown type" },
    { "patient/observation.rs", "!1", "types are case-sensitive" },
    { "patient/Observations.rs", "!1", "a type with a trailing s" },
    { "patient/.rs", "!1", "an empty type" },
    { "patient/**.rs", "!1", "** is no wildcard" },
    { "patient//Observation.rs", "!1", "an empty segment" },
    { "patient/Observation..rs", "!1", "two dots" },
    { "patient/Observation.rs/x", "!1", "a trailing path" },
    { "Patient/Observation.rs", "!1", "contexts are case-sensitive" },
    { "practitioner/*.rs", "!1", "an unknown context" },
    { "*/Observation.rs", "!1", "a wildcard context" },
    { "/Observation.rs", "!1", "an empty context" },
    { "patient/Observation.rs\tuser/*.rs", "!1",
      "a tab is no separator" },

    /* not resource scopes: skipped silently */
    { "openid", "", "openid" },
    { "profile", "", "profile" },
    { "fhirUser", "", "fhirUser" },
    { "launch", "", "launch" },
    { "launch/patient", "", "launch/patient" },
    { "launch/encounter", "", "launch/encounter" },
    { "online_access", "", "online_access" },
    { "offline_access", "", "offline_access" },
    { "email", "!1", "an unknown word is counted" },
    { "OpenID", "!1", "OpenID is not openid" },
    { "", "", "an empty string" },
    { "   ", "", "spaces only" },

    /* lists */
    { "  patient/Observation.rs   user/*.r ",
      "patient/Observation.rs user/*.r", "repeated spaces" },
    { "openid patient/Observation.rs bogus user/Foo.r system/*.read",
      "patient/Observation.rs system/*.rs !2",
      "valid and invalid side by side" },
    { "patient/Observation.sr patient/Observation.rs",
      "patient/Observation.rs !1",
      "an invalid scope does not spoil the next" },

    /* granular v2 */
    { "patient/Observation.rs?category=laboratory",
      "patient/Observation.s?category=laboratory",
      "granular: grants s only" },
    { "patient/Observation.cruds?category=laboratory",
      "patient/Observation.s?category=laboratory",
      "granular cruds: still s only" },
    { "patient/Observation.s?category=laboratory&code=1234-5",
      "patient/Observation.s?category=laboratory&code=1234-5",
      "granular: two parameters" },
    { "patient/Observation.s?code=http%3A%2F%2Floinc.org%7C1234-5",
      "patient/Observation.s?code=http://loinc.org|1234-5",
      "granular: percent-decoded value" },
    { "patient/Observation.s?categ%6Fry=x",
      "patient/Observation.s?category=x", "granular: percent-decoded name" },
    { "patient/Observation.s?category=a%20b",
      "patient/Observation.s?category=a b", "granular: %20 is a space" },
    { "patient/Observation.s?category=a%26b",
      "patient/Observation.s?category=a&b",
      "granular: %26 is a value's &, not a separator" },
    { "patient/Observation.s?code:below=123",
      "patient/Observation.s?code:below=123", "granular: a modifier" },
    { "patient/Observation.s?a=b=c", "patient/Observation.s?a=b=c",
      "granular: the first = splits" },
    { "patient/*.rs?category=laboratory",
      "patient/*.s?category=laboratory", "granular on every type" },
    { "patient/Observation.s?a=1&b=2&c=3&d=4",
      "patient/Observation.s?a=1&b=2&c=3&d=4", "granular: four parameters" },
    { "patient/Observation.s?a=1&b=2&c=3&d=4&e=5", "!1",
      "granular: five parameters is too many" },
    { "patient/Observation.r?category=laboratory", "!1",
      "granular without s grants nothing" },
    { "patient/Observation.cu?category=laboratory", "!1",
      "granular cu grants nothing" },
    { "patient/Observation.rs?category=%zz", "!1", "granular: %zz" },
    { "patient/Observation.rs?category=%4", "!1", "granular: %4 cut short" },
    { "patient/Observation.rs?category=lab%", "!1", "granular: a bare %" },
    { "patient/Observation.rs?category=", "!1", "granular: an empty value" },
    { "patient/Observation.rs?=laboratory", "!1", "granular: an empty name" },
    { "patient/Observation.rs?category", "!1", "granular: no =" },
    { "patient/Observation.rs?", "!1", "granular: nothing after ?" },
    { "patient/Observation.rs?&", "!1", "granular: only &" },
    { "patient/Observation.rs?a=b&", "!1", "granular: a trailing &" },
    { "patient/Observation.rs?a=b&&c=d", "!1", "granular: an empty pair" },
    { "patient/Observation.rs?code:=x", "!1", "granular: an empty modifier" },
    { "patient/Observation.rs?:below=x", "!1",
      "granular: a modifier without a name" },
    { "patient/Observation.rs?category=%00", "patient/Observation.s?category=",
      "granular: %00 decodes to one NUL byte (printed empty)" },
};


static const decide_case_t  decide_cases[] = {

    /* read, vread, history-instance under patient/ */
    { "patient/*.rs", "p1", NULL, 0, "read Patient p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "read Patient p=p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "read Observation",
      "allow patient check" },
    { "patient/*.rs", "p1", NULL, 0, "read Observation head",
      "patient_unverifiable" },
    { "patient/*.rs", "p1", NULL, 0, "read Patient p=p1 b head",
      "allow patient" },
    { "patient/Observation.rs", "p1", NULL, 0, "read Observation",
      "allow patient check" },
    { "patient/Observation.rs", "p1", NULL, 0, "read Condition",
      "scope_insufficient Condition" },
    { "patient/*.rs", "p1", NULL, 0, "read Medication", "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "read Practitioner", "allow patient" },
    { "patient/Medication.s", "p1", NULL, 0, "read Medication",
      "scope_insufficient Medication" },
    { "patient/*.rs", "p1", NULL, 0, "vread Observation",
      "allow patient check" },
    { "patient/*.rs", "p1", NULL, 0, "vread Observation head",
      "patient_unverifiable" },
    { "patient/*.rs", "p1", NULL, 0, "vread Patient p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "hist-i Observation",
      "allow patient check" },
    { "patient/*.rs", "p1", NULL, 0, "hist-i Patient p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "hist-i Patient p=p3 b",
      "patient_mismatch" },
    { "patient/Observation.s", "p1", NULL, 0, "read Observation",
      "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "read Observation q=category=laboratory",
      "scope_insufficient Observation" },
    { "patient/*.rs", NULL, NULL, 0, "read Patient p=p1 b",
      "scope_insufficient Patient" },
    { "patient/*.rs", "", NULL, 0, "read Patient p=p1 b",
      "scope_insufficient Patient" },
    { "", "p1", NULL, 0, "read Patient p=p1 b",
      "scope_insufficient Patient" },
    { "openid fhirUser launch/patient", "p1", NULL, 0,
      "read Patient p=p1 b", "scope_insufficient Patient" },
    { "patient/Observation.sr", "p1", NULL, 0, "read Observation",
      "scope_insufficient Observation" },
    { "patient/Observation.rx", "p1", NULL, 0, "read Observation",
      "scope_insufficient Observation" },
    { "patient/Observation.read", "p1", NULL, 0, "read Observation",
      "allow patient check" },

    /* update, patch, delete */
    { "patient/*.cruds", "p1", NULL, 0, "update Patient p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "update Patient p=p1 b",
      "scope_insufficient Patient" },
    { "patient/*.cruds", "p1", NULL, 0, "update Patient p=p2 b",
      "patient_mismatch" },
    { "patient/*.cruds", "p1", NULL, 0, "update Observation",
      "patient_unverifiable" },
    { "patient/*.write", "p1", NULL, 0, "update Patient p=p1 b",
      "allow patient" },
    { "patient/*.cruds", "p1", NULL, 0, "update Medication",
      "allow patient" },
    { "patient/*.cruds", "p1", NULL, 0, "patch Observation",
      "patient_unverifiable" },
    { "patient/*.cruds", "p1", NULL, 0, "patch Patient p=p1 b",
      "allow patient" },
    { "patient/Patient.cds", "p1", NULL, 0, "patch Patient p=p1 b",
      "scope_insufficient Patient" },
    { "patient/*.cruds", "p1", NULL, 0, "delete Observation",
      "patient_unverifiable" },
    { "patient/Patient.d", "p1", NULL, 0, "delete Patient p=p1 b",
      "allow patient" },
    { "patient/Patient.crus", "p1", NULL, 0, "delete Patient p=p1 b",
      "scope_insufficient Patient" },
    { "patient/Patient.d", "p1", NULL, 0, "delete Patient p=p2 b",
      "patient_mismatch" },

    /* create */
    { "patient/*.cruds", "p1", NULL, 0, "create Observation",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "create Observation",
      "scope_insufficient Observation" },
    { "patient/Observation.c", "p1", NULL, 0, "create Observation",
      "allow patient" },
    { "patient/Observation.c", "p1", NULL, 0, "create Condition",
      "scope_insufficient Condition" },
    { "patient/*.cruds", "p1", NULL, 0, "create Patient",
      "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0, "create Patient", "allow user" },
    { "patient/Medication.c", "p1", NULL, 0, "create Medication",
      "allow patient" },
    { "patient/*.write", "p1", NULL, 0, "create Encounter",
      "allow patient" },

    /* search-type */
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation p=p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation p=p1,p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation",
      "patient_unbound" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation p=p1",
      "patient_unbound" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation b",
      "patient_unbound" },
    { "patient/Observation.r", "p1", NULL, 0,
      "search-t Observation p=p1 b", "scope_insufficient Observation" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Medication",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Patient p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Patient", "patient_unbound" },
    { "patient/Observation.rs", "p1", NULL, 0,
      "search-t Observation p=p1 b t=Observation,Patient",
      "scope_insufficient Patient" },
    { "patient/Observation.rs patient/Patient.s", "p1", NULL, 0,
      "search-t Observation p=p1 b t=Observation,Patient",
      "allow patient" },
    { "patient/Observation.rs patient/Practitioner.r", "p1", NULL, 0,
      "search-t Observation p=p1 b t=Observation,Practitioner",
      "scope_insufficient Practitioner" },
    { "patient/Observation.rs patient/Practitioner.s", "p1", NULL, 0,
      "search-t Observation p=p1 b t=Observation,Practitioner",
      "allow patient" },
    { "patient/Observation.s patient/Observation.r", "p1", NULL, 0,
      "search-t Observation p=p1 b", "allow patient" },

    /* search-system, history */
    { "patient/*.rs", "p1", NULL, 0,
      "search-s - p=p1 b t=Observation,Condition", "allow patient" },
    { "patient/Observation.rs", "p1", NULL, 0,
      "search-s - p=p1 b t=Observation,Condition",
      "scope_insufficient Condition" },
    { "patient/*.rs", "p1", NULL, 0, "search-s - p=p1 b", "allow patient" },
    { "patient/Observation.rs", "p1", NULL, 0, "search-s - p=p1 b",
      "scope_insufficient" },
    { "patient/*.rs", "p1", NULL, 0, "search-s - t=Observation",
      "patient_unbound" },
    { "patient/*.rs", "p1", NULL, 0, "hist-t Observation",
      "patient_unbound" },
    { "patient/*.rs", "p1", NULL, 0, "hist-t Medication", "allow patient" },
    { "patient/Medication.r", "p1", NULL, 0, "hist-t Medication",
      "scope_insufficient Medication" },
    { "patient/*.rs", "p1", NULL, 0, "hist-s -", "patient_unbound" },
    { "system/*.rs", NULL, NULL, 1, "hist-s -", "allow system" },
    { "system/Observation.rs", NULL, NULL, 1, "hist-s -",
      "scope_insufficient" },

    /* needing nothing */
    { "", NULL, NULL, 0, "caps -", "allow -" },
    { "", NULL, NULL, 0, "batch -", "allow -" },
    { "", NULL, NULL, 0, "trans -", "allow -" },
    { "patient/*.rs", "p1", NULL, 0, "none -", "fhir_unclassifiable" },

    /* user/ reaches the patients claim */
    { "user/*.cruds", NULL, "p1 p2", 0, "read Patient p=p2 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "read Patient p=p3 b",
      "patient_mismatch" },
    { "user/*.cruds", "p3", "p1 p2", 0, "read Patient p=p3 b",
      "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0, "search-t Observation p=p1,p2 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "search-t Observation p=p1,p3 b",
      "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0, "read Observation",
      "allow user check" },
    { "user/*.cruds", NULL, "p1 p2", 0, "read Observation head",
      "patient_unverifiable" },
    { "user/*.cruds", NULL, NULL, 0, "read Observation",
      "allow user check" },
    { "user/*.cruds", NULL, NULL, 0, "search-t Observation p=p1 b",
      "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0, "update Observation",
      "patient_unverifiable" },
    { "user/*.cruds", NULL, "p1 p2", 0, "delete Patient p=p2 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "search-t Observation",
      "patient_unbound" },
    { "user/*.rs", NULL, "p1 p2", 0, "search-t Practitioner",
      "allow user" },
    { "user/Observation.rs", NULL, "p1 p2", 0, "read Patient p=p1 b",
      "scope_insufficient Patient" },
    { "user/*.rs", NULL, "p10", 0, "read Patient p=p1 b",
      "patient_mismatch" },
    { "user/*.rs", NULL, "p1", 0, "read Patient p=p10 b",
      "patient_mismatch" },

    /* every interaction under user/, and its patients */
    { "user/*.cruds", NULL, "p1 p2", 0, "vread Patient p=p2 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "vread Patient p=p3 b",
      "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0, "hist-i Patient p=p1 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "hist-i Observation",
      "allow user check" },
    { "user/*.cruds", NULL, "p1 p2", 0, "update Patient p=p1 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "patch Patient p=p2 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "patch Patient p=p3 b",
      "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0, "delete Observation",
      "patient_unverifiable" },
    { "user/*.cruds", NULL, "p1 p2", 0, "create Observation",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "hist-t Observation p=p1 b",
      "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0, "hist-t Observation",
      "patient_unbound" },
    { "user/*.cruds", NULL, "p1 p2", 0, "hist-s -", "patient_unbound" },
    { "user/*.cruds", NULL, "p1 p2", 0,
      "search-s - t=Observation p=p2 b", "allow user" },
    { "user/*.cruds", NULL, "p1 p2", 0,
      "search-s - t=Observation p=p3 b", "patient_mismatch" },
    { "user/*.cruds", NULL, "p1 p2", 0,
      "op everything Patient lv=2 id=p3 p=p3 b", "patient_mismatch" },
    { "user/Observation.rs", NULL, "p1 p2", 0, "update Observation",
      "scope_insufficient Observation" },

    /* every interaction under system/: any patient, no answer check */
    { "system/*.cruds", NULL, NULL, 1, "vread Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "read Observation head",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "hist-i Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "patch Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "delete Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "create Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "hist-t Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "search-s - t=Observation",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "read Patient p=p3 b",
      "allow system" },
    { "system/*.cruds", NULL, NULL, 0, "update Observation",
      "system_scope_refused" },
    { "system/*.cruds", NULL, NULL, 0, "read Patient p=p1 b",
      "system_scope_refused" },
    { "system/Observation.r", NULL, NULL, 0, "read Condition",
      "scope_insufficient Condition" },

    /* patient/ mismatches of the other interactions */
    { "patient/*.cruds", "p1", NULL, 0, "patch Patient p=p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "vread Patient p=p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "search-s - t=Observation p=p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "hist-t Observation p=p2 b",
      "patient_mismatch" },
    { "patient/*.rs", "p1", NULL, 0, "hist-t Observation p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "search-t Observation p=p1,p1 b",
      "allow patient" },

    /* one context must grant it all */
    { "patient/Observation.rs user/Observation.rs", "p1", "p2", 0,
      "search-t Observation p=p2 b", "allow user" },
    { "patient/Observation.rs user/Observation.rs", "p1", "p2", 0,
      "search-t Observation p=p1 b", "allow patient" },
    { "patient/Observation.rs user/Observation.rs", "p1", "p2", 0,
      "search-t Observation p=p1,p2 b", "patient_mismatch" },
    { "patient/Observation.rs user/Observation.rs", "p1", "p1 p2", 0,
      "search-t Observation p=p1,p2 b", "allow user" },
    { "patient/Observation.r user/Observation.s", "p1", "p1", 0,
      "search-t Observation p=p1 b", "allow user" },
    { "patient/Observation.c user/Observation.u", "p1", "p1", 0,
      "op purge Observation lv=1 p=p1 b +purge",
      "scope_insufficient Observation" },

    /* system/ */
    { "system/*.rs", NULL, NULL, 1, "search-t Observation",
      "allow system" },
    { "system/*.rs", NULL, NULL, 0, "search-t Observation",
      "system_scope_refused" },
    { "system/*.rs", NULL, NULL, 1, "read Observation", "allow system" },
    { "patient/*.rs system/*.rs", "p1", NULL, 1, "read Observation",
      "allow system" },
    { "patient/*.rs system/*.rs", "p1", NULL, 0, "read Observation",
      "allow patient check" },
    { "patient/*.rs system/*.rs", "p1", NULL, 0, "search-t Observation",
      "patient_unbound" },
    { "system/*.rs", NULL, NULL, 1, "update Observation",
      "scope_insufficient Observation" },
    { "system/*.cruds", NULL, NULL, 1, "update Observation",
      "allow system" },
    { "system/Observation.s", NULL, NULL, 1,
      "search-t Observation p=p9 b", "allow system" },
    { "system/*.cruds", NULL, NULL, 1, "create Patient", "allow system" },
    { "system/Observation.s", NULL, NULL, 0, "search-t Condition",
      "scope_insufficient Condition" },

    /* granular */
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=laboratory",
      "allow patient" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=vital-signs",
      "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b", "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=laboratory,vital-signs",
      "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category:not=laboratory",
      "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=Laboratory",
      "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=laboratory q=code=x",
      "allow patient" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p2 b q=category=laboratory",
      "patient_mismatch" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation q=category=laboratory", "patient_unbound" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "search-t Condition p=p1 b q=category=laboratory",
      "scope_insufficient Condition" },
    { "patient/Observation.rs?category=laboratory", "p1", NULL, 0,
      "read Observation", "scope_insufficient Observation" },
    { "patient/Observation.rs?category=laboratory patient/Patient.rs",
      "p1", NULL, 0,
      "search-t Observation p=p1 b t=Observation,Patient "
      "q=category=laboratory", "allow patient" },
    { "patient/*.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b t=Observation,Patient "
      "q=category=laboratory", "scope_insufficient Patient" },
    { "patient/*.rs?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=laboratory",
      "allow patient" },
    { "patient/Observation.s?category=laboratory&code=1234-5", "p1", NULL,
      0, "search-t Observation p=p1 b q=category=laboratory q=code=1234-5",
      "allow patient" },
    { "patient/Observation.s?category=laboratory&code=1234-5", "p1", NULL,
      0, "search-t Observation p=p1 b q=category=laboratory",
      "scope_insufficient Observation" },
    { "patient/Observation.s?code:below=12", "p1", NULL, 0,
      "search-t Observation p=p1 b q=code:below=12", "allow patient" },
    { "patient/Observation.s?code:below=12", "p1", NULL, 0,
      "search-t Observation p=p1 b q=code=12",
      "scope_insufficient Observation" },
    { "patient/Observation.s?code=12", "p1", NULL, 0,
      "search-t Observation p=p1 b q=code:below=12",
      "scope_insufficient Observation" },
    { "patient/Observation.s?code=http%3A%2F%2Floinc.org%7C1", "p1", NULL,
      0, "search-t Observation p=p1 b q=code=http://loinc.org|1",
      "allow patient" },
    { "patient/Observation.s?category=laboratory", "p1", NULL, 0,
      "search-s - p=p1 b t=Observation q=category=laboratory",
      "scope_insufficient Observation" },
    { "patient/Observation.s?category=laboratory", "p1", NULL, 0,
      "op lastn Observation lv=1 p=p1 b q=category=laboratory",
      "allow patient" },
    { "patient/Observation.s?category=laboratory", "p1", NULL, 0,
      "hist-t Observation p=p1 b q=category=laboratory",
      "scope_insufficient Observation" },
    { "user/Observation.s?category=laboratory", NULL, "p1", 0,
      "search-t Observation p=p1 b q=category=laboratory", "allow user" },
    { "patient/Observation.r?category=laboratory", "p1", NULL, 0,
      "search-t Observation p=p1 b q=category=laboratory",
      "scope_insufficient Observation" },

    /* $everything */
    { "patient/*.rs", "p1", NULL, 0,
      "op everything Patient lv=2 id=p1 p=p1 b", "allow patient" },
    { "patient/*.rs", "p1", NULL, 0,
      "op everything Patient lv=2 id=p2 p=p2 b", "patient_mismatch" },
    { "patient/Patient.rs patient/Observation.rs", "p1", NULL, 0,
      "op everything Patient lv=2 id=p1 p=p1 b", "scope_insufficient" },
    { "patient/*.r", "p1", NULL, 0,
      "op everything Patient lv=2 id=p1 p=p1 b",
      "scope_insufficient Patient" },
    { "patient/*.rs", "p1", NULL, 0, "op everything Patient lv=1",
      "patient_unbound" },
    { "system/*.rs", NULL, NULL, 1, "op everything Patient lv=1",
      "allow system" },
    { "user/*.rs", NULL, "p1 p2", 0,
      "op everything Patient lv=2 id=p2 p=p2 b", "allow user" },
    { "patient/*.rs", "p1", NULL, 0,
      "op everything Observation lv=2 id=o1", "operation_unknown" },
    { "patient/*.rs", "p1", NULL, 0, "op everything - lv=0",
      "operation_unknown" },

    /* $export */
    { "system/*.rs", NULL, NULL, 1, "op export - lv=0", "allow system" },
    { "system/*.rs", NULL, NULL, 0, "op export - lv=0",
      "system_scope_refused" },
    { "patient/*.rs", "p1", NULL, 0, "op export - lv=0",
      "scope_insufficient" },
    { "user/*.cruds", NULL, "p1", 0, "op export - lv=0",
      "scope_insufficient" },
    { "system/Observation.rs", NULL, NULL, 1, "op export - lv=0",
      "scope_insufficient" },
    { "system/Observation.rs", NULL, NULL, 1,
      "op export - lv=0 t=Observation q=_type=Observation",
      "allow system" },
    { "system/Observation.rs", NULL, NULL, 1,
      "op export - lv=0 t=Observation,Condition "
      "q=_type=Observation,Condition", "scope_insufficient Condition" },
    { "system/*.r", NULL, NULL, 1, "op export - lv=0",
      "scope_insufficient" },
    { "system/*.rs", NULL, NULL, 1, "op export Patient lv=1",
      "allow system" },
    { "system/*.rs", NULL, NULL, 1, "op export Observation lv=1",
      "operation_unknown" },
    { "system/*.rs", NULL, NULL, 1, "op export Group lv=2 id=g1",
      "allow system" },
    { "system/*.rs", NULL, NULL, 1, "op export Patient lv=2 id=p1",
      "operation_unknown" },

    /* $validate, $meta, $lastn, terminology */
    { "patient/Observation.c", "p1", NULL, 0,
      "op validate Observation lv=1", "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "op validate Observation lv=1",
      "scope_insufficient Observation" },
    { "patient/Observation.cr", "p1", NULL, 0,
      "op validate Observation lv=2 id=o1", "patient_unverifiable" },
    { "patient/Patient.cr", "p1", NULL, 0,
      "op validate Patient lv=2 id=p1 p=p1 b", "allow patient" },
    { "patient/Patient.c", "p1", NULL, 0,
      "op validate Patient lv=2 id=p1 p=p1 b",
      "scope_insufficient Patient" },
    { "system/*.cruds", NULL, NULL, 1, "op validate - lv=0",
      "operation_unknown" },
    { "patient/*.rs", "p1", NULL, 0, "op meta Patient lv=2 id=p1 p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "op meta Observation lv=2 id=o1",
      "patient_unverifiable" },
    { "patient/*.rs", "p1", NULL, 0, "op meta Observation lv=1",
      "patient_unbound" },
    { "system/*.rs", NULL, NULL, 1, "op meta - lv=0", "allow system" },
    { "patient/*.rs", "p1", NULL, 0, "op meta - lv=0", "patient_unbound" },
    { "patient/*.rs", "p1", NULL, 0, "op lastn Observation lv=1 p=p1 b",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "op lastn Observation lv=1",
      "patient_unbound" },
    { "patient/*.rs", "p1", NULL, 0, "op lastn Condition lv=1 p=p1 b",
      "operation_unknown" },
    { "patient/*.rs", "p1", NULL, 0,
      "op lastn Observation lv=2 id=o1 p=p1 b", "operation_unknown" },
    { "patient/ValueSet.r", "p1", NULL, 0, "op expand ValueSet lv=1",
      "allow patient" },
    { "patient/ValueSet.s", "p1", NULL, 0, "op expand ValueSet lv=1",
      "scope_insufficient ValueSet" },
    { "user/CodeSystem.r", NULL, NULL, 0, "op lookup CodeSystem lv=1",
      "allow user" },
    { "patient/*.rs", "p1", NULL, 0,
      "op validate-code ValueSet lv=2 id=vs1", "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "op subsumes CodeSystem lv=1",
      "allow patient" },
    { "patient/*.rs", "p1", NULL, 0, "op translate Observation lv=1",
      "operation_unknown" },
    { "patient/*.rs", "p1", NULL, 0, "op expand - lv=0",
      "operation_unknown" },

    /* unknown operations, and those a location lists */
    { "patient/*.cruds", "p1", NULL, 0,
      "op purge Patient lv=2 id=p1 p=p1 b", "operation_unknown" },
    { "patient/*.cruds", "p1", NULL, 0,
      "op purge Patient lv=2 id=p1 p=p1 b +$purge", "allow patient" },
    { "patient/*.cruds", "p1", NULL, 0,
      "op purge Patient lv=2 id=p1 p=p1 b +purge", "allow patient" },
    { "patient/*.rs", "p1", NULL, 0,
      "op purge Patient lv=2 id=p1 p=p1 b +purge",
      "scope_insufficient Patient" },
    { "patient/*.cruds", "p1", NULL, 0,
      "op purge Patient lv=2 id=p2 p=p2 b +purge", "patient_mismatch" },
    { "patient/*.cruds", "p1", NULL, 0,
      "op purge Observation lv=2 id=o1 +purge", "patient_unverifiable" },
    { "patient/*.cruds", "p1", NULL, 0, "op purge Observation lv=1 +purge",
      "patient_unbound" },
    { "patient/*.cruds", "p1", NULL, 0, "op purg Patient lv=1 +purge",
      "operation_unknown" },
    { "patient/*.cruds", "p1", NULL, 0, "op purge Patient lv=1 +purgeX",
      "operation_unknown" },
    { "patient/*.cruds", "p1", NULL, 0, "op purge Patient lv=1 +$",
      "operation_unknown" },
    { "system/*.cruds", NULL, NULL, 1, "op purge - lv=0 +purge",
      "allow system" },
};


#define NELTS(a)  (sizeof(a) / sizeof((a)[0]))


static void
render(char *buf, size_t size, const welby_scopes_t *s)
{
    size_t                     i, j, k;
    const char                *name;
    const welby_scope_t       *sc;
    const welby_fhir_param_t  *p;

    buf[0] = '\0';

    for (i = 0; i < s->n; i++) {
        sc = &s->scopes[i];

        name = (sc->type == WELBY_FHIR_TYPE_NONE)
               ? "*" : welby_fhir_type_name(sc->type);

        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s/%s.",
                 i ? " " : "",
                 sc->context == WELBY_SCOPE_PATIENT ? "patient"
                 : sc->context == WELBY_SCOPE_USER ? "user" : "system",
                 name);

        for (k = 0; k < 5; k++) {
            if (sc->letters & (1u << k)) {
                snprintf(buf + strlen(buf), size - strlen(buf), "%c",
                         "cruds"[k]);
            }
        }

        for (j = 0; j < sc->nparams; j++) {
            p = &sc->params[j];

            snprintf(buf + strlen(buf), size - strlen(buf), "%c%.*s",
                     j ? '&' : '?', (int) p->name.len, p->name.data);

            if (p->modifier.data != NULL) {
                snprintf(buf + strlen(buf), size - strlen(buf), ":%.*s",
                         (int) p->modifier.len, p->modifier.data);
            }

            snprintf(buf + strlen(buf), size - strlen(buf), "=%.*s",
                     (int) p->value.len, p->value.data);
        }
    }

    if (s->ignored) {
        snprintf(buf + strlen(buf), size - strlen(buf), "%s!%zu",
                 s->n ? " " : "", s->ignored);
    }
}


static welby_fhir_interaction_e
interaction_of(const char *w)
{
    static const struct {
        const char                *name;
        welby_fhir_interaction_e   i;
    } names[] = {
        { "read", WELBY_FHIR_READ },
        { "vread", WELBY_FHIR_VREAD },
        { "update", WELBY_FHIR_UPDATE },
        { "patch", WELBY_FHIR_PATCH },
        { "delete", WELBY_FHIR_DELETE },
        { "hist-i", WELBY_FHIR_HISTORY_INSTANCE },
        { "hist-t", WELBY_FHIR_HISTORY_TYPE },
        { "hist-s", WELBY_FHIR_HISTORY_SYSTEM },
        { "create", WELBY_FHIR_CREATE },
        { "search-t", WELBY_FHIR_SEARCH_TYPE },
        { "search-s", WELBY_FHIR_SEARCH_SYSTEM },
        { "caps", WELBY_FHIR_CAPABILITIES },
        { "batch", WELBY_FHIR_BATCH },
        { "trans", WELBY_FHIR_TRANSACTION },
        { "op", WELBY_FHIR_OPERATION },
        { "none", WELBY_FHIR_NONE },
    };

    size_t  i;

    for (i = 0; i < NELTS(names); i++) {
        if (strcmp(names[i].name, w) == 0) {
            return names[i].i;
        }
    }

    printf("# unknown interaction %s\n", w);
    exit(2);
}


static welby_str_t
str_of(const char *p, size_t n)
{
    welby_str_t  s;

    s.data = (const unsigned char *) p;
    s.len = n;

    return s;
}


static int
type_of(const char *p, size_t n)
{
    int  t;

    t = welby_fhir_type_find((const unsigned char *) p, n);

    if (t == WELBY_FHIR_TYPE_NONE) {
        printf("# unknown type %.*s\n", (int) n, p);
        exit(2);
    }

    return t;
}


/* Builds a request from its words; strings point into text. */
static void
request_of(welby_fhir_request_t *req, char *text, welby_str_t *ops,
    size_t *nops)
{
    char                *w, *save, *p, *e, *eq, *colon;
    int                  first, explicit_types;
    welby_fhir_param_t  *fp;

    memset(req, 0, sizeof(welby_fhir_request_t));
    req->method = WELBY_FHIR_M_GET;
    req->type = WELBY_FHIR_TYPE_NONE;
    *nops = 0;

    first = 1;
    explicit_types = 0;

    for (w = strtok_r(text, " ", &save); w; w = strtok_r(NULL, " ", &save)) {

        if (first) {
            req->interaction = interaction_of(w);
            first = 0;

        } else if (strncmp(w, "op=", 3) == 0 || (req->interaction
                       == WELBY_FHIR_OPERATION && req->operation.data == NULL
                       && strchr(w, '=') == NULL && w[0] != '+'
                       && strcmp(w, "b") != 0 && strcmp(w, "head") != 0
                       && w[0] >= 'a' && w[0] <= 'z'))
        {
            p = (strncmp(w, "op=", 3) == 0) ? w + 3 : w;
            req->operation = str_of(p, strlen(p));

        } else if (strcmp(w, "-") == 0) {
            req->type = WELBY_FHIR_TYPE_NONE;

        } else if (w[0] >= 'A' && w[0] <= 'Z') {
            req->type = type_of(w, strlen(w));

        } else if (strncmp(w, "id=", 3) == 0) {
            req->id = str_of(w + 3, strlen(w + 3));

        } else if (strncmp(w, "lv=", 3) == 0) {
            req->level = (unsigned) atoi(w + 3);

        } else if (strcmp(w, "b") == 0) {
            req->bound = 1;

        } else if (strcmp(w, "head") == 0) {
            req->method = WELBY_FHIR_M_HEAD;

        } else if (w[0] == '+') {
            ops[(*nops)++] = str_of(w + 1, strlen(w + 1));

        } else if (strncmp(w, "p=", 2) == 0 || strncmp(w, "t=", 2) == 0) {
            for (p = w + 2; *p; p = *e ? e + 1 : e) {
                e = strchr(p, ',');
                if (e == NULL) {
                    e = p + strlen(p);
                }

                if (w[0] == 'p') {
                    req->patients[req->npatients++] = str_of(p, e - p);

                } else {
                    req->types[req->ntypes++] = type_of(p, e - p);
                    explicit_types = 1;
                }
            }

        } else if (strncmp(w, "q=", 2) == 0) {
            fp = &req->params[req->nparams++];
            eq = strchr(w + 2, '=');
            colon = memchr(w + 2, ':', eq - (w + 2));

            fp->name = str_of(w + 2, (colon ? colon : eq) - (w + 2));

            if (colon) {
                fp->modifier = str_of(colon + 1, eq - colon - 1);
            }

            fp->value = str_of(eq + 1, strlen(eq + 1));

        } else {
            printf("# unknown word %s\n", w);
            exit(2);
        }
    }

    if (!explicit_types && req->type != WELBY_FHIR_TYPE_NONE) {
        req->types[req->ntypes++] = req->type;
    }
}


static const char *
context_name(unsigned c)
{
    return c == WELBY_SCOPE_PATIENT ? "patient"
           : c == WELBY_SCOPE_USER ? "user"
           : c == WELBY_SCOPE_SYSTEM ? "system" : "-";
}


static int
named(const welby_fhir_request_t *req, int type)
{
    size_t  i;

    for (i = 0; i < req->ntypes; i++) {
        if (req->types[i] == type) {
            return 1;
        }
    }

    return req->type == type;
}


static void
decide(const decide_case_t *c, char *out, size_t size,
    welby_policy_result_t *res)
{
    char                     text[512], pats[256], *p, *save;
    size_t                   nops;
    unsigned char            scratch[512];
    welby_str_t              patients[8], ops[4];
    welby_reason_e           rc;
    welby_scopes_t           scopes;
    welby_fhir_request_t     req;
    welby_policy_subject_t   subj;

    memset(&scopes, 0, sizeof(scopes));
    welby_scopes_parse(&scopes, (const unsigned char *) c->scope,
                       strlen(c->scope), scratch);

    memset(&subj, 0, sizeof(subj));
    subj.scopes = &scopes;
    subj.system_ok = c->system_ok;

    if (c->patient) {
        subj.patient = str_of(c->patient, strlen(c->patient));
    }

    if (c->patients) {
        snprintf(pats, sizeof(pats), "%s", c->patients);

        for (p = strtok_r(pats, " ", &save); p;
             p = strtok_r(NULL, " ", &save))
        {
            patients[subj.npatients++] = str_of(p, strlen(p));
        }

        subj.patients = patients;
    }

    snprintf(text, sizeof(text), "%s", c->request);
    request_of(&req, text, ops, &nops);

    subj.operations = ops;
    subj.noperations = nops;

    rc = welby_policy_decide(&req, &subj, res);

    if (rc == WELBY_REASON_NONE) {
        snprintf(out, size, "allow %s%s", context_name(res->context),
                 res->check_response ? " check" : "");

    } else if (rc == WELBY_REASON_SCOPE_INSUFFICIENT
               && res->type != WELBY_FHIR_TYPE_NONE
               && named(&req, res->type))
    {
        /*
         * Only a type the request names: which of the R4 list's types
         * an $everything or $export is refused on first depends on the
         * table's order.
         */
        snprintf(out, size, "%s %s", welby_reason_get(rc)->code,
                 welby_fhir_type_name(res->type));

    } else {
        snprintf(out, size, "%s", welby_reason_get(rc)->code);
    }
}


static unsigned
letters_of(const char *scope, const char *request)
{
    char                   out[128];
    decide_case_t          c;
    welby_policy_result_t  res;

    memset(&c, 0, sizeof(c));
    c.scope = scope;
    c.patient = "p1";
    c.request = request;

    decide(&c, out, sizeof(out), &res);

    return res.letters;
}


int
main(void)
{
    char                   buf[1024], out[256], many[64 * 20 + 1];
    size_t                 i;
    unsigned char          scratch[2048];
    welby_scopes_t         s;
    welby_policy_result_t  res;
    welby_policy_subject_t subj;
    welby_str_t            pl[2];

    for (i = 0; i < NELTS(parse_cases); i++) {
        memset(&s, 0, sizeof(s));
        memset(scratch, 0xa5, sizeof(scratch));
        welby_scopes_parse(&s, (const unsigned char *) parse_cases[i].scope,
                           strlen(parse_cases[i].scope), scratch);
        render(buf, sizeof(buf), &s);
        is_str(buf, parse_cases[i].expect, "parse: %s: \"%s\"",
               parse_cases[i].name, parse_cases[i].scope);
    }

    for (i = 0; i < NELTS(decide_cases); i++) {
        decide(&decide_cases[i], out, sizeof(out), &res);
        is_str(out, decide_cases[i].expect, "decide: [%s] %s%s%s: %s",
               decide_cases[i].scope, decide_cases[i].request,
               decide_cases[i].patient ? " patient=" : "",
               decide_cases[i].patient ? decide_cases[i].patient : "",
               decide_cases[i].expect);
    }

    /* scp: each element parsed into the same set */

    memset(&s, 0, sizeof(s));
    welby_scopes_parse(&s, (const unsigned char *) "patient/Patient.r", 17,
                       scratch);
    welby_scopes_parse(&s, (const unsigned char *) "patient/Observation.s"
                       "?category=x", 32, scratch + 17);
    render(buf, sizeof(buf), &s);
    is_str(buf, "patient/Patient.r patient/Observation.s?category=x",
           "parse: two calls add to one set (scp elements)");

    /* the scopes point into the text and the scratch, never beyond */

    ok(s.scopes[1].params[0].value.data >= scratch + 17
       && s.scopes[1].params[0].value.data + 1 <= scratch + 17 + 32,
       "parse: a granular value lies in the scratch of its own text");

    /* at most WELBY_SCOPES_MAX, the rest ignored */

    many[0] = '\0';
    for (i = 0; i < WELBY_SCOPES_MAX + 1; i++) {
        strcat(many, i ? " patient/Patient.r" : "patient/Patient.r");
    }

    memset(&s, 0, sizeof(s));
    welby_scopes_parse(&s, (const unsigned char *) many, strlen(many),
                       scratch);
    ok(s.n == WELBY_SCOPES_MAX && s.ignored == 1,
       "parse: %d scopes kept, the next ignored", WELBY_SCOPES_MAX);

    /* what each interaction needs */

    ok(letters_of("patient/*.cruds", "read Patient p=p1 b") == WELBY_SCOPE_R,
       "letters: read needs r");
    ok(letters_of("patient/*.cruds", "hist-i Patient p=p1 b")
       == WELBY_SCOPE_R, "letters: history-instance needs r");
    ok(letters_of("patient/*.cruds", "update Patient p=p1 b")
       == WELBY_SCOPE_U, "letters: update needs u");
    ok(letters_of("patient/*.cruds", "patch Patient p=p1 b")
       == WELBY_SCOPE_U, "letters: patch needs u");
    ok(letters_of("patient/*.cruds", "delete Patient p=p1 b")
       == WELBY_SCOPE_D, "letters: delete needs d");
    ok(letters_of("patient/*.cruds", "create Observation") == WELBY_SCOPE_C,
       "letters: create needs c");
    ok(letters_of("patient/*.cruds", "search-t Patient p=p1 b")
       == WELBY_SCOPE_S, "letters: search-type needs s");
    ok(letters_of("patient/*.cruds", "hist-t Medication") == WELBY_SCOPE_S,
       "letters: history-type needs s");
    ok(letters_of("patient/*.cruds", "op everything Patient lv=2 p=p1 b")
       == (WELBY_SCOPE_R | WELBY_SCOPE_S), "letters: $everything needs rs");
    ok(letters_of("patient/*.cruds", "op validate Patient lv=2 p=p1 b")
       == (WELBY_SCOPE_C | WELBY_SCOPE_R),
       "letters: instance $validate needs c and r");
    ok(letters_of("patient/*.cruds", "op purge Patient lv=2 p=p1 b +purge")
       == WELBY_SCOPE_ALL, "letters: a listed operation needs all five");
    ok(letters_of("", "caps -") == 0, "letters: capabilities needs none");

    /* welby_policy_patient_ok */

    memset(&subj, 0, sizeof(subj));
    subj.patient = str_of("p1", 2);
    pl[0] = str_of("p2", 2);
    pl[1] = str_of("p3", 2);
    subj.patients = pl;
    subj.npatients = 2;

    ok(welby_policy_patient_ok(&subj, WELBY_SCOPE_PATIENT,
                               (const unsigned char *) "p1", 2),
       "patient_ok: patient/ reaches the patient claim");
    ok(!welby_policy_patient_ok(&subj, WELBY_SCOPE_PATIENT,
                                (const unsigned char *) "p2", 2),
       "patient_ok: patient/ does not reach the patients claim");
    ok(!welby_policy_patient_ok(&subj, WELBY_SCOPE_PATIENT,
                                (const unsigned char *) "p", 1),
       "patient_ok: a prefix is not the patient");
    ok(welby_policy_patient_ok(&subj, WELBY_SCOPE_USER,
                               (const unsigned char *) "p3", 2),
       "patient_ok: user/ reaches the patients claim");
    ok(!welby_policy_patient_ok(&subj, WELBY_SCOPE_USER,
                                (const unsigned char *) "p1", 2),
       "patient_ok: user/ does not reach the patient claim");
    ok(welby_policy_patient_ok(&subj, WELBY_SCOPE_SYSTEM,
                               (const unsigned char *) "p9", 2),
       "patient_ok: system/ reaches any patient");
    ok(!welby_policy_patient_ok(&subj, WELBY_SCOPE_SYSTEM,
                                (const unsigned char *) "", 0),
       "patient_ok: an empty id is nobody's");
    ok(!welby_policy_patient_ok(&subj, 0, (const unsigned char *) "p1", 2),
       "patient_ok: no context reaches nobody");

    subj.patient.data = NULL;
    subj.patient.len = 0;
    ok(!welby_policy_patient_ok(&subj, WELBY_SCOPE_PATIENT,
                                (const unsigned char *) "p1", 2),
       "patient_ok: patient/ without the claim reaches nobody");

    return done_testing();
}
