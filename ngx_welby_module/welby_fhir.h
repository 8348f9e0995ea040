/*
 * FHIR REST request classification, without nginx types: the checks that
 * refuse a path a backend could read differently, then the classifier of
 * interactions, types, ids and the patients a request names.
 */

#ifndef WELBY_FHIR_H
#define WELBY_FHIR_H

#include <stddef.h>

#include "welby_reason.h"
#include "welby_jose.h"             /* welby_str_t */


#define WELBY_FHIR_ID_MAX  64


/* FHIR id datatype: [A-Za-z0-9\-\.]{1,64}. */
int welby_fhir_id_valid(const unsigned char *id, size_t len);

/*
 * A request id (X-Request-Id) the gateway passes on or records: a FHIR
 * id that starts with a letter or a digit, so that no id is "." or "..",
 * which a backend that names a file after it would read as a directory,
 * nor starts with '-', which a command line would read as an option.
 */
int welby_request_id_valid(const unsigned char *id, size_t len);

/*
 * Refuses paths that a gateway and a backend could read differently.
 * raw is the path as the client sent it (before '?'), uri the path nginx
 * decoded and normalised.  Returns WELBY_REASON_NONE or the reason.
 */
welby_reason_e welby_fhir_check_path(const unsigned char *raw, size_t raw_len,
    const unsigned char *uri, size_t uri_len);


#define WELBY_FHIR_PATIENTS_MAX  16     /* distinct patients a request names */
#define WELBY_FHIR_PARAMS_MAX    32     /* search parameters one request has */
#define WELBY_FHIR_TYPES_MAX     16     /* resource types one request reads */
#define WELBY_FHIR_BASES_MAX     4      /* absolute base URLs of this server */

/* FHIR R4 resource types: a table sorted by name; -1 is "no type". */
#define WELBY_FHIR_TYPE_NONE     (-1)

int welby_fhir_type_find(const unsigned char *name, size_t len);
const char *welby_fhir_type_name(int type);
int welby_fhir_type_patient(void);          /* the index of "Patient" */

/*
 * Whether resources of the type are in the Patient compartment (FHIR R4
 * CompartmentDefinition "patient"), and whether param (a search
 * parameter name, no modifier) is one of the type's compartment
 * parameters there.  For Patient itself "_id" and "link" bind.
 */
int welby_fhir_in_compartment(int type);
int welby_fhir_compartment_param(int type, const unsigned char *name,
    size_t len);

typedef enum {
    WELBY_FHIR_NONE = 0,            /* not classified (not under a base) */
    WELBY_FHIR_READ,
    WELBY_FHIR_VREAD,
    WELBY_FHIR_UPDATE,
    WELBY_FHIR_PATCH,
    WELBY_FHIR_DELETE,
    WELBY_FHIR_HISTORY_INSTANCE,
    WELBY_FHIR_HISTORY_TYPE,
    WELBY_FHIR_HISTORY_SYSTEM,
    WELBY_FHIR_CREATE,
    WELBY_FHIR_SEARCH_TYPE,         /* also Patient/{id}/{Type} */
    WELBY_FHIR_SEARCH_SYSTEM,
    WELBY_FHIR_CAPABILITIES,
    WELBY_FHIR_BATCH,               /* a POST to the base: the classifier
                                       cannot tell batch from transaction,
                                       Bundle.type in the body does */
    WELBY_FHIR_TRANSACTION,
    WELBY_FHIR_OPERATION,
    WELBY_FHIR_INTERACTION_COUNT
} welby_fhir_interaction_e;

/* the FHIR code: "read", "history-instance", "search-type", "operation" */
const char *welby_fhir_interaction_name(welby_fhir_interaction_e i);

#define WELBY_FHIR_LEVEL_SYSTEM    0
#define WELBY_FHIR_LEVEL_TYPE      1
#define WELBY_FHIR_LEVEL_INSTANCE  2

/* HTTP methods, as the classifier sees them */
#define WELBY_FHIR_M_GET      0x01
#define WELBY_FHIR_M_HEAD     0x02
#define WELBY_FHIR_M_POST     0x04
#define WELBY_FHIR_M_PUT      0x08
#define WELBY_FHIR_M_PATCH    0x10
#define WELBY_FHIR_M_DELETE   0x20
#define WELBY_FHIR_M_OPTIONS  0x40

/* one search parameter, decoded (percent and '+' in forms) */
typedef struct {
    welby_str_t              name;       /* without the modifier */
    welby_str_t              modifier;   /* after ':', or data == NULL */
    welby_str_t              value;      /* the whole value, commas and all */
} welby_fhir_param_t;

typedef struct {
    unsigned                 method;     /* WELBY_FHIR_M_GET, ... */
    welby_str_t              path;       /* decoded, after the base:
                                            "", "/Patient/p1", "/$export" */
    welby_str_t              query;      /* raw, as sent, without '?' */
    welby_str_t              form;       /* a POST _search form body, raw */
    welby_str_t              bases[WELBY_FHIR_BASES_MAX];
                                         /* "https://host/fhir": absolute
                                            references to this server */
    size_t                   nbases;
} welby_fhir_input_t;

typedef struct {
    welby_fhir_interaction_e interaction;
    unsigned                 method;     /* the input's: HEAD reads no
                                            body the answer check needs */
    unsigned                 level;      /* of an operation */
    int                      type;       /* the path's type, or NONE */
    welby_str_t              id;
    welby_str_t              version;
    welby_str_t              operation;  /* without '$' */

    /* Patient/{id}/{Type}: the compartment's patient is in patients[] */
    unsigned                 compartment:1;

    /* the body decides what is written (create, update, patch, batch,
     * transaction, operations by POST): the policy checks it */
    unsigned                 needs_body:1;

    /* every resource type the request reads or writes: the path's type,
     * each type of _type, the targets of _include and _revinclude */
    int                      types[WELBY_FHIR_TYPES_MAX];
    size_t                   ntypes;

    /*
     * Every patient the request names: the id of Patient/{id}, the
     * compartment's patient, each value of each compartment parameter
     * (relative, absolute to one of the bases, or typed by ":Patient"),
     * deduplicated.  bound: every type in types[] that is in the Patient
     * compartment is restricted to these patients by the request itself
     * (a read of Observation/o3 is not: its patient is in the answer).
     */
    welby_str_t              patients[WELBY_FHIR_PATIENTS_MAX];
    size_t                   npatients;
    unsigned                 bound:1;

    welby_fhir_param_t       params[WELBY_FHIR_PARAMS_MAX];
    size_t                   nparams;
} welby_fhir_request_t;

/*
 * Classifies one request under a FHIR base.  The query and the form are
 * split at '&' and then percent-decoded with '+' a space, as a servlet
 * container reads them; in->form.data == NULL for a POST search means
 * its form is still unread (needs_body is set).  Decoded strings are written
 * to scratch, which must hold path.len + query.len + form.len bytes; the
 * request's strings point into scratch or into the input.  Returns
 * WELBY_REASON_NONE, or the reason it is refused: FHIR_UNCLASSIFIABLE
 * (anything that cannot be classified safely: unknown '_' parameters,
 * chains, _has, wildcard or iterated includes, modifiers on compartment
 * parameters, references to other servers, too many values),
 * FHIR_TYPE_UNKNOWN, REQUEST_MALFORMED (bad ids, bad percent-encoding),
 * FHIR_FORMAT_UNSUPPORTED (a _format other than JSON), INTERNAL_ERROR
 * (scratch too small).  The request is complete only when NONE.
 */
welby_reason_e welby_fhir_classify(const welby_fhir_input_t *in,
    welby_fhir_request_t *out, unsigned char *scratch, size_t scratch_len);

/*
 * Extracts the patient id of a reference string: "Patient/p1",
 * "Patient/p1/_history/2", an absolute URL under one of the bases.
 * Returns 1 and the id when it is a Patient reference, 0 when it is a
 * reference to another type, -1 when it cannot be read safely (another
 * server, a malformed reference, a bare id).
 */
int welby_fhir_patient_ref(const unsigned char *ref, size_t len,
    const welby_str_t *bases, size_t nbases, welby_str_t *id);

#endif /* WELBY_FHIR_H */
