/*
 * Country codes for the geo step: ISO 3166-1 alpha-2 as MMDB files store
 * them, and sets of them (welby_geo_allow, welby_geo_deny) as bitmaps,
 * so a request's check costs one bit test whatever the list's length.
 * No nginx types here.
 */

#ifndef WELBY_GEO_H
#define WELBY_GEO_H

#include <stddef.h>


/* every pair of letters AA..ZZ has an index 0..675 */
#define WELBY_COUNTRY_CODES  (26 * 26)


typedef struct {
    unsigned char            bits[(WELBY_COUNTRY_CODES + 7) / 8];
} welby_country_set_t;


/*
 * The index of a code of two ASCII letters, either case; -1 for anything
 * else (a digit, a third byte, a letter outside A-Z).
 */
int welby_country_index(const unsigned char *p, size_t len);

/*
 * 1 when the index is a code a database can hold: one of the 249
 * assigned by ISO 3166-1, or XK, the user-assigned code MaxMind and
 * DB-IP give Kosovo.  0 for the rest (UK, EU, XX, ZZ, ...).
 */
int welby_country_assigned(int index);

/* The code of an index, two uppercase letters (no NUL). */
void welby_country_code(int index, unsigned char code[2]);

void welby_country_set_add(welby_country_set_t *set, int index);
int welby_country_set_has(const welby_country_set_t *set, int index);

#endif /* WELBY_GEO_H */
