/*
 * The pieces of the Prometheus text exposition format (version 0.0.4)
 * that do not need nginx: label value escaping, the request duration
 * histogram's buckets, status classes.  No nginx types here: unit tests
 * link it alone.
 */

#ifndef WELBY_PROM_H
#define WELBY_PROM_H

#include <stddef.h>
#include <stdint.h>


/*
 * The duration buckets, in seconds as printed in "le" and in
 * microseconds as compared: from a millisecond (what a cached token and
 * a local backend cost) to ten seconds (a slow search, a large body),
 * the default of the Prometheus client libraries with 1 ms in front.
 * The +Inf bucket is WELBY_PROM_BUCKETS, after the last of these.
 */
#define WELBY_PROM_BUCKETS  13

extern const char      *welby_prom_bucket_le[WELBY_PROM_BUCKETS];
extern const uint64_t   welby_prom_bucket_us[WELBY_PROM_BUCKETS];

/* The bucket of a duration in milliseconds: 0 .. WELBY_PROM_BUCKETS. */
size_t welby_prom_bucket(uint64_t ms);


/* "1xx" .. "5xx"; the class index of a status, or -1 outside 100-599 */
#define WELBY_PROM_CLASSES  5

extern const char  *welby_prom_class_name[WELBY_PROM_CLASSES];

int welby_prom_status_class(unsigned long status);


/*
 * A label value as the format wants it between its quotes: '\', '"' and
 * LF escaped.  Other control bytes and bytes that are not UTF-8 become
 * the four characters "\xNN" (the backslash itself escaped), so that a
 * page always parses and never carries a raw control byte.  With dst
 * NULL only the length is computed.
 */
size_t welby_prom_escape(unsigned char *dst, const unsigned char *src,
    size_t len);

/*
 * The table of named counters kept in the metrics zone: a name is a
 * family (a small number) and a label value; its place in the table is
 * its counter's column, for the zone's life.
 */
#define WELBY_PROM_LABEL_MAX  126

typedef struct {
    unsigned char  family;
    unsigned char  len;
    unsigned char  data[WELBY_PROM_LABEL_MAX];
} welby_prom_name_t;

/* The place of (family, label) among the used names, or used. */
size_t welby_prom_name_find(const welby_prom_name_t *names, size_t used,
    unsigned family, const unsigned char *label, size_t len);

/*
 * The place of (family, label), added after the used ones (*used grows)
 * when it is new; cap when the table is full or the label too long.
 */
size_t welby_prom_name_add(welby_prom_name_t *names, uint32_t *used,
    size_t cap, unsigned family, const unsigned char *label, size_t len);

/* Milliseconds as seconds with three decimals; dst holds 24 bytes. */
size_t welby_prom_seconds(unsigned char *dst, uint64_t ms);

#endif /* WELBY_PROM_H */
