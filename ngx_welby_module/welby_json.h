/*
 * JSON string escaping, without nginx types, so unit tests and fuzzers
 * link it alone.
 */

#ifndef WELBY_JSON_H
#define WELBY_JSON_H

#include <stddef.h>


/*
 * Writes src escaped for a JSON string (RFC 8259 section 7), without the
 * surrounding quotes.  Bytes >= 0x80 are copied as they are; the caller
 * passes only ids and codes, never free text from a request.  With
 * dst == NULL only the length is computed.  Returns the escaped length.
 */
size_t welby_json_escape(unsigned char *dst, const unsigned char *src,
    size_t len);

#endif /* WELBY_JSON_H */
