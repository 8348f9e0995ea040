/*
 * Strict base64url (RFC 4648 section 5) without padding, as JWS compact
 * serialization uses it (RFC 7515 section 2).  No nginx types here.
 */

#ifndef WELBY_B64_H
#define WELBY_B64_H

#include <stddef.h>


/* An upper bound of the decoded length of len encoded bytes. */
#define welby_b64url_decoded_max(len)  ((((len) + 3) / 4) * 3)

/* The exact encoded length of len bytes. */
#define welby_b64url_encoded_len(len)  (((len) / 3) * 4                     \
                                        + ((len) % 3 ? (len) % 3 + 1 : 0))

/*
 * Decodes src into dst (welby_b64url_decoded_max(len) bytes) and sets
 * *dst_len.  Returns 0, or -1 for anything but canonical base64url: a
 * character outside [A-Za-z0-9_-] (padding included), a length of 1 mod 4,
 * or set bits in the unused tail of the last character.  Canonical input
 * has exactly one encoding, so two different strings never decode to the
 * same bytes.
 */
int welby_b64url_decode(unsigned char *dst, size_t *dst_len,
    const unsigned char *src, size_t len);

/* Encodes without padding; returns the length written. */
size_t welby_b64url_encode(unsigned char *dst, const unsigned char *src,
    size_t len);

#endif /* WELBY_B64_H */
