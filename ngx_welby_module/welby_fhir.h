/*
 * FHIR REST request classification, without nginx types.  This issue
 * holds the checks that refuse an unparseable path before any guessing;
 * the classifier of interactions, types, ids and patients grows here.
 */

#ifndef WELBY_FHIR_H
#define WELBY_FHIR_H

#include <stddef.h>

#include "welby_reason.h"


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

#endif /* WELBY_FHIR_H */
