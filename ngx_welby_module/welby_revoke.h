/*
 * The revocation list: revoked token ids, and subjects whose tokens issued
 * before a given time are refused (staff who leave lose access at once).
 * No nginx types here: unit tests link it alone.
 *
 * File format, one entry per line; fields are separated by spaces or
 * tabs; blank lines are ignored, and a '#' at the start of a line or of a
 * field starts a comment up to the end of the line (so a value cannot
 * start with '#', but may hold one):
 *
 *     jti <jti>                  # comment
 *     sub <sub> <unix-seconds>
 */

#ifndef WELBY_REVOKE_H
#define WELBY_REVOKE_H

#include <stddef.h>
#include <stdint.h>


/* Larger files are refused: the whole list is held in memory. */
#define WELBY_REVOKE_FILE_MAX  (64 * 1024 * 1024)


typedef struct welby_revocation_s  welby_revocation_t;


/*
 * Parses the text; NULL on a malformed line, with "line N: reason" in
 * err.  An empty list is valid.  A subject listed twice keeps the latest
 * time.
 */
welby_revocation_t *welby_revocation_parse(const unsigned char *text,
    size_t len, char *err, size_t err_len);

/* Reads and parses a file; NULL with the reason in err. */
welby_revocation_t *welby_revocation_load(const char *path, char *err,
    size_t err_len);

void welby_revocation_free(welby_revocation_t *rv);

size_t welby_revocation_count(const welby_revocation_t *rv);

/* 1 when the jti is revoked. */
int welby_revocation_jti(const welby_revocation_t *rv,
    const unsigned char *jti, size_t len);

/*
 * 1 when a token of sub issued at iat is revoked: the subject is listed
 * with a time later than iat.
 */
int welby_revocation_sub(const welby_revocation_t *rv,
    const unsigned char *sub, size_t len, int64_t iat);

#endif /* WELBY_REVOKE_H */
