/*
 * libFuzzer target: the classify step's path checks and the FHIR id
 * grammar, on arbitrary bytes.  Besides crashes and sanitizer reports it
 * checks what an accepted raw path must never contain, and that no
 * accepted decoded path holds a ';'.
 */

#include <stdlib.h>
#include <string.h>

#include "welby_fhir.h"


static int
has(const unsigned char *p, size_t len, const char *s)
{
    size_t  i, n;

    n = strlen(s);

    for (i = 0; i + n <= len; i++) {
        if (strncasecmp((const char *) p + i, s, n) == 0) {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t          half;
    welby_reason_e  rc;

    (void) welby_fhir_id_valid(data, size);

    /* first half the raw path, second half the decoded one */
    half = size / 2;

    rc = welby_fhir_check_path(data, half, data + half, size - half);

    if (rc == WELBY_REASON_NONE) {
        if (has(data, half, "%2f") || has(data, half, "%2e")
            || has(data, half, "%25") || has(data, half, "%5c")
            || has(data, half, "%3b") || has(data, half, ";")
            || has(data + half, size - half, ";")
            || has(data, half, "\\") || has(data, half, "//")
            || has(data, half, "/./") || has(data, half, "/../"))
        {
            abort();
        }
    }

    return 0;
}
