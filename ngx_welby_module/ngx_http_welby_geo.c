/*
 * Geography: welby_geoip2 opens a country database (and an ASN one) with
 * libmaxminddb at configuration time, as leev's geoip2 module does, so a
 * missing, unreadable, corrupt or wrong file fails nginx -t; a cycle pool
 * cleanup closes it, so each cycle of a reload has its own mapping, of a
 * private copy of the file where the system has memfd_create().  The
 * request path only looks up, lazily, at most once per request and
 * address; the geo step applies the location's country list.
 */

#include "ngx_http_welby_module.h"
#include "ngx_http_welby_geo.h"
#include "welby_geo.h"

#include <maxminddb.h>

#if (NGX_LINUX)
#include <sys/mman.h>
#endif

#if (NGX_LINUX && defined MFD_ALLOW_SEALING && defined F_ADD_SEALS)
#define NGX_HTTP_WELBY_GEO_COPY  1
#endif


/* the bytes read at a time into the copy */
#define NGX_HTTP_WELBY_GEO_COPY_BUF  65536


/*
 * Data records nginx -t reads to see that a file is what it says (and
 * that its records decode): the search tree is checked whole, the data
 * only this far, so a City database of millions of records still loads
 * in well under a second.
 */
#define NGX_HTTP_WELBY_GEO_CHECK_RECORDS  4096

/* the bits of IPv6 in front of IPv4 in an IPv6 tree: ::/96 */
#define NGX_HTTP_WELBY_GEO_V4_START       96


typedef struct {
    MMDB_s                      mmdb;
    ngx_str_t                   file;       /* NUL-terminated */
    unsigned                    open:1;
} ngx_http_welby_geo_db_t;


/*
 * What the databases answered for a connection's last address, in a
 * worker's table with a slot per connection of ngx_cycle->connections:
 * a keep-alive or HTTP/2 client asks once, not on every request.  The
 * answer depends on the address alone while the configuration lives
 * (the files are private sealed copies), so a slot counts only for the
 * address it was written for: an address realip gives a request, or a
 * new connection in the slot from elsewhere, looks up again.
 */
typedef struct {
    u_char                      addr[16];   /* as geo_addr */
    int16_t                     country;    /* its index, -1 unknown */
    unsigned                    valid:1;
    unsigned                    asn_known:1;
    uint32_t                    asn;
} ngx_http_welby_geo_slot_t;


/* the main conf's databases */
struct ngx_http_welby_geo_s {
    ngx_http_welby_geo_db_t     country;
    ngx_http_welby_geo_db_t     asn;        /* asn.open 0: no ASN file */

    /* a worker's own, made when it starts: never shared */
    ngx_http_welby_geo_slot_t  *slots;
    ngx_uint_t                  nslots;
};


/* a block's welby_geo_allow or welby_geo_deny lines, one set */
struct ngx_http_welby_geo_list_s {
    welby_country_set_t         set;
    ngx_uint_t                  allow;      /* an allow list, or a deny one */
    u_char                     *file;       /* its first line, for errors */
    ngx_uint_t                  line;
};


/* what a file of one kind must be */
typedef struct {
    const char                 *name;
    const char                 *a_name;     /* with its article */
    const char                **types;      /* database_type families */
    const char                 *path[3];    /* what its records hold */
    uint32_t                    data_type;
    const char                 *what;       /* that, as errors say it */
    const char                 *a_what;     /* with its article */
    const char                 *type_name;  /* data_type, as errors say */
    ngx_uint_t                  code;       /* the value: a country code */
} ngx_http_welby_geo_kind_t;


static char *ngx_http_welby_geo_open(ngx_conf_t *cf,
    ngx_http_welby_geo_db_t *db, ngx_str_t *name,
    ngx_http_welby_geo_kind_t *kind);
#if (NGX_HTTP_WELBY_GEO_COPY)
static ngx_int_t ngx_http_welby_geo_copy(ngx_conf_t *cf,
    ngx_http_welby_geo_db_t *db, ngx_http_welby_geo_kind_t *kind,
    ngx_fd_t *copy);
#endif
static ngx_int_t ngx_http_welby_geo_type(const char *type,
    ngx_http_welby_geo_kind_t *kind);
static char *ngx_http_welby_geo_check(ngx_conf_t *cf,
    ngx_http_welby_geo_db_t *db, ngx_http_welby_geo_kind_t *kind);
static char *ngx_http_welby_geo_check_value(ngx_conf_t *cf,
    ngx_http_welby_geo_db_t *db, ngx_http_welby_geo_kind_t *kind,
    MMDB_entry_data_s *data);
static char *ngx_http_welby_geo_check_depth(ngx_conf_t *cf,
    ngx_http_welby_geo_db_t *db);
static void ngx_http_welby_geo_cleanup(void *data);
static char *ngx_http_welby_geo_add(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_welby_loc_conf_t *wlcf, ngx_uint_t allow);
static ngx_http_welby_geo_slot_t *ngx_http_welby_geo_slot(
    ngx_http_request_t *r, ngx_http_welby_geo_t *geo, u_char *key);
static ngx_int_t ngx_http_welby_geo_find(ngx_http_request_t *r,
    ngx_http_welby_geo_db_t *db, struct sockaddr *sa,
    ngx_http_welby_geo_kind_t *kind, MMDB_entry_data_s *data);
static welby_reason_e ngx_http_welby_geo_decide(ngx_http_request_t *r,
    ngx_http_welby_ctx_t *ctx, ngx_http_welby_loc_conf_t *wlcf);


/*
 * The families whose records hold country.iso_code (GeoIP2's City and
 * Enterprise are Country with more) and those that hold
 * autonomous_system_number; a database_type is one of them, or one of
 * them followed by '-' or ' ' (GeoIP2-City-Europe, DBIP-Country-Lite).
 */
static const char  *ngx_http_welby_geo_country_types[] = {
    "GeoLite2-Country",
    "GeoLite2-City",
    "GeoIP2-Country",
    "GeoIP2-City",
    "GeoIP2-Enterprise",
    "GeoIP2-Precision-City",
    "GeoIP2-Precision-Enterprise",
    "DBIP-Country",
    "DBIP-City",
    "DBIP-Location",
    NULL
};

static const char  *ngx_http_welby_geo_asn_types[] = {
    "GeoLite2-ASN",
    "GeoIP2-ISP",
    "DBIP-ASN",
    "DBIP-ISP",
    NULL
};


static ngx_http_welby_geo_kind_t  ngx_http_welby_geo_country_kind = {
    "country",
    "a country",
    ngx_http_welby_geo_country_types,
    { "country", "iso_code", NULL },
    MMDB_DATA_TYPE_UTF8_STRING,
    "country.iso_code",
    "a country.iso_code",
    "a string",
    1
};

static ngx_http_welby_geo_kind_t  ngx_http_welby_geo_asn_kind = {
    "ASN",
    "an ASN",
    ngx_http_welby_geo_asn_types,
    { "autonomous_system_number", NULL, NULL },
    MMDB_DATA_TYPE_UINT32,
    "autonomous_system_number",
    "an autonomous_system_number",
    "a 32-bit unsigned integer",
    0
};


/* ::ffff:0:0/96, the IPv4 address in the last four bytes */
static u_char  ngx_http_welby_geo_v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* 64:ff9b::/96, NAT64's well-known prefix (RFC 6052), the same */
static u_char  ngx_http_welby_geo_nat64[12] = {
    0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0
};


/*
 * welby_geoip2 <country.mmdb> [asn=<asn.mmdb>]: relative names from the
 * configuration prefix.  Opened by the master (as root, before workers
 * exist): the workers inherit the mapping, so the file's mode and owner
 * after start, or its removal, change nothing until the next reload.
 */
char *
ngx_http_welby_geoip2(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_welby_main_conf_t *wmcf = conf;

    char                  *rv;
    ngx_str_t             *value, name;
    ngx_uint_t             i;
    ngx_http_welby_geo_t  *geo;

    if (wmcf->geo) {
        return "is duplicate";
    }

    geo = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_geo_t));
    if (geo == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    rv = ngx_http_welby_geo_open(cf, &geo->country, &value[1],
                                 &ngx_http_welby_geo_country_kind);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "asn=", 4) == 0
            && value[i].len > 4 && !geo->asn.open)
        {
            name.data = value[i].data + 4;
            name.len = value[i].len - 4;

            rv = ngx_http_welby_geo_open(cf, &geo->asn, &name,
                                         &ngx_http_welby_geo_asn_kind);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    wmcf->geo = geo;

    return NGX_CONF_OK;
}


/*
 * The file is copied, where it can be, into an anonymous memory file
 * that nothing can change, and that copy is what libmaxminddb maps (by
 * its /proc/self/fd name): the workers' mapping of the file itself would
 * change under them when an operator rewrites the file in place (cp
 * over it, curl -o, > file), and fault them (SIGBUS) at every lookup
 * once it is shorter.  The copy costs the file's size in memory, shared
 * by the master and its workers, for as long as the cycle lives.
 */
static char *
ngx_http_welby_geo_open(ngx_conf_t *cf, ngx_http_welby_geo_db_t *db,
    ngx_str_t *name, ngx_http_welby_geo_kind_t *kind)
{
    int                  rc;
    char                *path;
    ngx_fd_t             copy;
    ngx_err_t            err;
    const char          *type;
    ngx_pool_cleanup_t  *cln;
#if (NGX_HTTP_WELBY_GEO_COPY)
    u_char               proc[sizeof("/proc/self/fd/") + NGX_INT_T_LEN];
#endif

    db->file = *name;

    if (ngx_conf_full_name(cf->cycle, &db->file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    path = (char *) db->file.data;
    copy = NGX_INVALID_FILE;

#if (NGX_HTTP_WELBY_GEO_COPY)

    switch (ngx_http_welby_geo_copy(cf, db, kind, &copy)) {

    case NGX_OK:
        ngx_sprintf(proc, "/proc/self/fd/%d%Z", copy);
        path = (char *) proc;
        break;

    case NGX_DECLINED:
        break;

    default: /* NGX_ERROR */
        return NGX_CONF_ERROR;
    }

#endif

    rc = MMDB_open(path, MMDB_MODE_MMAP, &db->mmdb);

    if (copy != NGX_INVALID_FILE) {
        err = ngx_errno;

        if (rc == MMDB_FILE_OPEN_ERROR) {

            /* no /proc: the file itself, as where there is no copy */

            ngx_conf_log_error(NGX_LOG_WARN, cf, err,
                               "welby_geoip2: the copy of \"%V\" cannot "
                               "be opened, the workers map the file "
                               "itself: replace it only by a rename",
                               &db->file);

            rc = MMDB_open((char *) db->file.data, MMDB_MODE_MMAP,
                           &db->mmdb);
            err = ngx_errno;
        }

        (void) ngx_close_file(copy);
        ngx_set_errno(err);
    }

    if (rc != MMDB_SUCCESS) {
        err = (rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR)
              ? ngx_errno : 0;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                           "welby_geoip2: the %s database \"%V\" cannot "
                           "be opened: %s", kind->name, &db->file,
                           MMDB_strerror(rc));
        return NGX_CONF_ERROR;
    }

    db->open = 1;
    cln->handler = ngx_http_welby_geo_cleanup;
    cln->data = db;

    type = db->mmdb.metadata.database_type;

    if (type == NULL || ngx_http_welby_geo_type(type, kind) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_geoip2: \"%V\" is a \"%s\" database, "
                           "not %s database", &db->file,
                           type ? type : "(untyped)", kind->a_name);
        return NGX_CONF_ERROR;
    }

    return ngx_http_welby_geo_check(cf, db, kind);
}


#if (NGX_HTTP_WELBY_GEO_COPY)

/*
 * NGX_OK with the copy's descriptor in *copy, sealed against any
 * change; NGX_DECLINED where the kernel has no memfd_create() (the
 * file is then mapped itself); NGX_ERROR, logged, when the file cannot
 * be read (as MMDB_open() would say it).
 */
static ngx_int_t
ngx_http_welby_geo_copy(ngx_conf_t *cf, ngx_http_welby_geo_db_t *db,
    ngx_http_welby_geo_kind_t *kind, ngx_fd_t *copy)
{
    u_char           *buf;
    ssize_t           n, w, off;
    ngx_fd_t          fd, mfd;
    ngx_err_t         err;
    const char       *what;
    ngx_file_info_t   fi;

    /* non-blocking: a FIFO would hold nginx -t until someone writes */

    fd = ngx_open_file(db->file.data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "welby_geoip2: the %s database \"%V\" cannot "
                           "be opened: %s", kind->name, &db->file,
                           MMDB_strerror(MMDB_FILE_OPEN_ERROR));
        return NGX_ERROR;
    }

    mfd = NGX_INVALID_FILE;
    what = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        what = "fstat() failed";
        goto failed;
    }

    if (!ngx_is_file(&fi)) {
        (void) ngx_close_file(fd);

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_geoip2: the %s database \"%V\" cannot "
                           "be opened: not a regular file", kind->name,
                           &db->file);
        return NGX_ERROR;
    }

    mfd = memfd_create("welby_geoip2", MFD_CLOEXEC|MFD_ALLOW_SEALING);

    if (mfd == -1) {
        err = ngx_errno;
        (void) ngx_close_file(fd);

        if (err == NGX_ENOSYS || err == EINVAL) {
            return NGX_DECLINED;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                           "welby_geoip2: memfd_create() for \"%V\" failed",
                           &db->file);
        return NGX_ERROR;
    }

    buf = ngx_palloc(cf->temp_pool, NGX_HTTP_WELBY_GEO_COPY_BUF);
    if (buf == NULL) {
        goto nomem;
    }

    for ( ;; ) {
        n = read(fd, buf, NGX_HTTP_WELBY_GEO_COPY_BUF);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            what = "read() failed";
            goto failed;
        }

        if (n == 0) {
            break;
        }

        for (off = 0; off < n; off += w) {
            w = write(mfd, buf + off, n - off);

            if (w == -1) {
                if (ngx_errno == NGX_EINTR) {
                    w = 0;
                    continue;
                }

                what = "write() of its copy failed";
                goto failed;
            }
        }
    }

    if (fcntl(mfd, F_ADD_SEALS,
              F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE|F_SEAL_SEAL)
        == -1)
    {
        what = "sealing its copy failed";
        goto failed;
    }

    (void) ngx_close_file(fd);

    *copy = mfd;

    return NGX_OK;

failed:

    err = ngx_errno;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                       "welby_geoip2: the %s database \"%V\" cannot be "
                       "opened: %s", kind->name, &db->file, what);

nomem:

    (void) ngx_close_file(fd);

    if (mfd != NGX_INVALID_FILE) {
        (void) ngx_close_file(mfd);
    }

    return NGX_ERROR;
}

#endif


static ngx_int_t
ngx_http_welby_geo_type(const char *type, ngx_http_welby_geo_kind_t *kind)
{
    size_t        len;
    const char  **t;

    for (t = kind->types; *t; t++) {
        len = ngx_strlen(*t);

        if (ngx_strncmp(type, *t, len) == 0
            && (type[len] == '\0' || type[len] == '-' || type[len] == ' '))
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The whole search tree, since MMDB_open() checks only the sizes: a
 * record that points outside the file fails nginx -t rather than making
 * some addresses unknown at run time.  Then, up to a bound, the data
 * records it points to: they must decode, what they hold of the kind's
 * value must be of its type (a country code of two letters), and some
 * must hold it (a City file with no country in it is not a country
 * database, whatever its type says).
 */
static char *
ngx_http_welby_geo_check(ngx_conf_t *cf, ngx_http_welby_geo_db_t *db,
    ngx_http_welby_geo_kind_t *kind)
{
    int                 rc;
    uint8_t             type;
    uint32_t            last, i;
    ngx_uint_t          side, checked, found;
    MMDB_entry_s        entry;
    MMDB_entry_data_s   data;
    MMDB_search_node_s  node;

    checked = 0;
    found = 0;
    last = (uint32_t) -1;

    for (i = 0; i < db->mmdb.metadata.node_count; i++) {

        rc = MMDB_read_node(&db->mmdb, i, &node);
        if (rc != MMDB_SUCCESS) {
            goto corrupt;
        }

        for (side = 0; side < 2; side++) {
            type = side ? node.right_record_type : node.left_record_type;
            entry = side ? node.right_record_entry : node.left_record_entry;

            if (type == MMDB_RECORD_TYPE_INVALID) {
                rc = MMDB_CORRUPT_SEARCH_TREE_ERROR;
                goto corrupt;
            }

            if (type != MMDB_RECORD_TYPE_DATA
                || checked == NGX_HTTP_WELBY_GEO_CHECK_RECORDS
                || entry.offset == last)
            {
                continue;
            }

            last = entry.offset;
            checked++;

            rc = MMDB_aget_value(&entry, &data, kind->path);

            if (rc == MMDB_SUCCESS) {
                if (!data.has_data) {
                    continue;
                }

                if (ngx_http_welby_geo_check_value(cf, db, kind, &data)
                    != NGX_CONF_OK)
                {
                    return NGX_CONF_ERROR;
                }

                found++;

            } else if (rc != MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) {
                goto corrupt;
            }
        }
    }

    if (found == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_geoip2: \"%V\" has no record with %s: "
                           "not %s database", &db->file, kind->what,
                           kind->a_name);
        return NGX_CONF_ERROR;
    }

    return ngx_http_welby_geo_check_depth(cf, db);

corrupt:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "welby_geoip2: the %s database \"%V\" is corrupt: "
                       "%s", kind->name, &db->file, MMDB_strerror(rc));
    return NGX_CONF_ERROR;
}


/*
 * What the metadata's ip_version says of the tree, since libmaxminddb
 * walks as many bits as it says: an IPv4 file whose tree goes deeper
 * than 32 bits (an IPv6 tree labelled 4) sends IPv4 clients down the
 * wrong branches, and an IPv6 file whose IPv4 part (::/96, where every
 * reader looks IPv4 up) is empty (an IPv4 tree labelled 6, IPv4 held
 * only at ::ffff:0:0/96) has no answer for an IPv4 client: either
 * leaves every client unknown, and a deny list lets them all in.
 */
static char *
ngx_http_welby_geo_check_depth(ngx_conf_t *cf, ngx_http_welby_geo_db_t *db)
{
    int                 rc;
    uint32_t            node, stack[2 * 33], depth[2 * 33], visits;
    ngx_uint_t          n, bit, side;
    MMDB_search_node_s  sn;

    if (db->mmdb.metadata.ip_version == 6) {
        node = 0;

        for (bit = 0; bit < NGX_HTTP_WELBY_GEO_V4_START; bit++) {
            rc = MMDB_read_node(&db->mmdb, node, &sn);
            if (rc != MMDB_SUCCESS) {
                goto corrupt;
            }

            if (sn.left_record_type != MMDB_RECORD_TYPE_SEARCH_NODE) {
                break;
            }

            node = (uint32_t) sn.left_record;
        }

        if (bit < NGX_HTTP_WELBY_GEO_V4_START
            && sn.left_record_type == MMDB_RECORD_TYPE_EMPTY)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "welby_geoip2: \"%V\" has no IPv4 network "
                               "at ::/96, where IPv4 addresses are looked "
                               "up: every IPv4 client would be unknown",
                               &db->file);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    /*
     * Depth first, each node once (an IPv4 tree has no aliases), the
     * stack bounded by the 32 levels: a node at the 32nd is one too
     * deep, and so is a loop.  A tree whose nodes are shared is walked
     * no further than its node count, so that no file can make the walk
     * exponential.
     */

    stack[0] = 0;
    depth[0] = 0;
    n = 1;
    visits = 0;

    while (n && visits++ < db->mmdb.metadata.node_count) {
        n--;

        if (depth[n] == 32) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "welby_geoip2: the database \"%V\" is "
                               "corrupt: its search tree is deeper than "
                               "its ip_version 4 allows", &db->file);
            return NGX_CONF_ERROR;
        }

        rc = MMDB_read_node(&db->mmdb, stack[n], &sn);
        if (rc != MMDB_SUCCESS) {
            goto corrupt;
        }

        node = depth[n] + 1;

        for (side = 0; side < 2; side++) {
            if ((side ? sn.right_record_type : sn.left_record_type)
                == MMDB_RECORD_TYPE_SEARCH_NODE)
            {
                stack[n] = (uint32_t) (side ? sn.right_record
                                            : sn.left_record);
                depth[n] = node;
                n++;
            }
        }
    }

    return NGX_CONF_OK;

corrupt:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "welby_geoip2: the database \"%V\" is corrupt: %s",
                       &db->file, MMDB_strerror(rc));
    return NGX_CONF_ERROR;
}


/*
 * A value of another type, or a country code that is not two letters
 * (an alpha-3 "JPN", a name), would be unknown at every lookup: a deny
 * list would let every such client in.  A code of two letters that is
 * not assigned (DB-IP's ZZ) passes, and is unknown at run time.
 */
static char *
ngx_http_welby_geo_check_value(ngx_conf_t *cf, ngx_http_welby_geo_db_t *db,
    ngx_http_welby_geo_kind_t *kind, MMDB_entry_data_s *data)
{
    size_t         i, len;
    const u_char  *p;

    if (data->type != kind->data_type) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_geoip2: \"%V\" has %s that is not %s: "
                           "not %s database", &db->file, kind->a_what,
                           kind->type_name, kind->a_name);
        return NGX_CONF_ERROR;
    }

    if (!kind->code) {
        return NGX_CONF_OK;
    }

    p = (const u_char *) data->utf8_string;
    len = data->data_size;

    if (welby_country_index(p, len) >= 0) {
        return NGX_CONF_OK;
    }

    /* the value is quoted only when it is short and plain */

    for (i = 0; i < len && len <= 8; i++) {
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\') {
            break;
        }
    }

    if (len <= 8 && i == len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_geoip2: \"%V\" has %s \"%*s\", not an "
                           "ISO 3166-1 alpha-2 code: not %s database",
                           &db->file, kind->a_what, len, p, kind->a_name);

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "welby_geoip2: \"%V\" has %s of %uz bytes, not "
                           "an ISO 3166-1 alpha-2 code: not %s database",
                           &db->file, kind->a_what, len, kind->a_name);
    }

    return NGX_CONF_ERROR;
}


static void
ngx_http_welby_geo_cleanup(void *data)
{
    ngx_http_welby_geo_db_t *db = data;

    if (db->open) {
        MMDB_close(&db->mmdb);
        db->open = 0;
    }
}


void
ngx_http_welby_geo_create_conf(ngx_http_welby_loc_conf_t *wlcf)
{
    wlcf->geo_list = NGX_CONF_UNSET_PTR;
    wlcf->geo_unknown = NGX_CONF_UNSET_UINT;
}


char *
ngx_http_welby_geo_allow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_welby_geo_add(cf, cmd, conf, 1);
}


char *
ngx_http_welby_geo_deny(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_welby_geo_add(cf, cmd, conf, 0);
}


/*
 * One list per block, of one kind: its lines add up.  An allow list and
 * a deny list in one block would leave the reader to guess which wins,
 * so that fails; "off" alone drops what the block would inherit.
 */
static char *
ngx_http_welby_geo_add(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_welby_loc_conf_t *wlcf, ngx_uint_t allow)
{
    ngx_int_t                   index;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_welby_geo_list_t  *list;

    value = cf->args->elts;
    list = wlcf->geo_list;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        if (list != NGX_CONF_UNSET_PTR) {
            return "is duplicate: \"off\" stands alone in a block";
        }

        wlcf->geo_list = NULL;
        return NGX_CONF_OK;
    }

    if (list == NULL) {
        return "is duplicate: \"off\" stands alone in a block";
    }

    if (list != NGX_CONF_UNSET_PTR && list->allow != allow) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"welby_geo_allow\" and \"welby_geo_deny\" "
                           "in one block: a block has an allow list or a "
                           "deny list");
        return NGX_CONF_ERROR;
    }

    if (list == NGX_CONF_UNSET_PTR) {
        list = ngx_pcalloc(cf->pool, sizeof(ngx_http_welby_geo_list_t));
        if (list == NULL) {
            return NGX_CONF_ERROR;
        }

        list->allow = allow;
        list->file = cf->conf_file->file.name.data;
        list->line = cf->conf_file->line;

        wlcf->geo_list = list;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        index = welby_country_index(value[i].data, value[i].len);

        if (index < 0 || !welby_country_assigned(index)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid country code \"%V\" in \"%V\", it "
                               "must be an ISO 3166-1 alpha-2 code such as "
                               "\"JP\"%s", &value[i], &cmd->name,
                               (value[i].len == 2
                                && ngx_strncasecmp(value[i].data,
                                                   (u_char *) "UK", 2) == 0)
                               ? " (the United Kingdom is \"GB\")" : "");
            return NGX_CONF_ERROR;
        }

        welby_country_set_add(&list->set, index);
    }

    return NGX_CONF_OK;
}


/*
 * A list is inherited whole, with its kind: a block that has its own
 * replaces it, as nginx's allow and deny rules are replaced.  What an
 * unknown country gets is decided here for each block: as configured,
 * or what an auditor expects of the list in force (an allow list lets
 * only the countries it names in, so not an unknown one; a deny list
 * keeps out only those it names).
 */
char *
ngx_http_welby_geo_merge(ngx_conf_t *cf, ngx_http_welby_loc_conf_t *prev,
    ngx_http_welby_loc_conf_t *conf)
{
    ngx_http_welby_geo_list_t   *list;
    ngx_http_welby_main_conf_t  *wmcf;

    ngx_conf_merge_ptr_value(conf->geo_list, prev->geo_list, NULL);

    if (conf->geo_unknown == NGX_CONF_UNSET_UINT) {
        conf->geo_unknown = prev->geo_unknown;
    }

    list = conf->geo_list;

    if (list == NULL) {
        return NGX_CONF_OK;
    }

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_welby_module);

    if (wmcf->geo == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s\" in %s:%ui needs \"welby_geoip2\" (the "
                      "country database) in the http block",
                      list->allow ? "welby_geo_allow" : "welby_geo_deny",
                      list->file, list->line);
        return NGX_CONF_ERROR;
    }

    if (conf->geo_unknown == NGX_CONF_UNSET_UINT) {
        conf->geo_unknown_deny = list->allow;

    } else {
        conf->geo_unknown_deny =
                      (conf->geo_unknown == NGX_HTTP_WELBY_GEO_UNKNOWN_DENY);
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_welby_geo_lookup(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    u_char                       key[16];
    ngx_int_t                    index, rc;
    ngx_http_welby_geo_slot_t   *slot;
    struct sockaddr             *sa;
    MMDB_entry_data_s            data;
#if (NGX_HAVE_INET6)
    struct sockaddr_in           sin;
    struct sockaddr_in6         *sin6;
#endif
    ngx_http_welby_geo_t        *geo;
    ngx_http_welby_main_conf_t  *wmcf;

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);
    geo = wmcf->geo;

    if (geo == NULL) {
        ngx_str_null(&ctx->country);
        ctx->asn = 0;
        ctx->geo_failed = 0;
        return NGX_DECLINED;
    }

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

    case AF_INET:
        ngx_memcpy(key, ngx_http_welby_geo_v4mapped, 12);
        ngx_memcpy(key + 12, &((struct sockaddr_in *) sa)->sin_addr, 4);
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        ngx_memcpy(key, sin6->sin6_addr.s6_addr, 16);

        if (ngx_http_welby_geo_embedded(key, &sin) == NGX_OK) {
            sa = (struct sockaddr *) &sin;
        }

        break;
#endif

    default:
        /* a UNIX-domain socket: no address to place */
        ngx_str_null(&ctx->country);
        ctx->asn = 0;
        ctx->geo_looked_up = 0;
        ctx->geo_failed = 0;
        return NGX_OK;
    }

    if (ctx->geo_looked_up && ngx_memcmp(ctx->geo_addr, key, 16) == 0) {
        return NGX_OK;
    }

    ngx_memcpy(ctx->geo_addr, key, 16);
    ctx->geo_looked_up = 1;
    ctx->asn_looked_up = 0;

    ngx_str_null(&ctx->country);
    ctx->asn = 0;

    slot = ngx_http_welby_geo_slot(r, geo, key);

    if (slot && slot->valid) {
        ctx->geo_failed = 0;

        if (slot->country >= 0) {
            welby_country_code(slot->country, ctx->country_data);
            ctx->country.data = ctx->country_data;
            ctx->country.len = 2;
        }

        if (slot->asn_known) {
            ctx->asn = slot->asn;
            ctx->asn_looked_up = 1;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "welby: geo id:%V country:%V as the connection's "
                       "last request", &ctx->request_id, &ctx->country);

        return NGX_OK;
    }

    rc = ngx_http_welby_geo_find(r, &geo->country, sa,
                                 &ngx_http_welby_geo_country_kind, &data);

    ctx->geo_failed = (rc == NGX_ERROR);

    index = -1;

    if (rc == NGX_OK) {
        index = welby_country_index((const unsigned char *) data.utf8_string,
                                    data.data_size);

        /*
         * A code no list can name (DB-IP's ZZ for "unknown", EU, a
         * user-assigned one) is no country: unknown, as welby_geo_unknown
         * says.  A lowercase code is the country it spells.
         */

        if (index >= 0 && welby_country_assigned(index)) {
            welby_country_code(index, ctx->country_data);
            ctx->country.data = ctx->country_data;
            ctx->country.len = 2;

        } else {
            index = -1;
        }
    }

    /* a failed lookup is not kept: the next request asks again */

    if (slot && rc != NGX_ERROR) {
        slot->country = (int16_t) index;
        slot->asn_known = 0;
        slot->valid = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: geo id:%V country:%V",
                   &ctx->request_id, &ctx->country);

    return NGX_OK;
}


ngx_int_t
ngx_http_welby_geo_init_process(ngx_cycle_t *cycle,
    ngx_http_welby_main_conf_t *wmcf)
{
    ngx_http_welby_geo_t  *geo;

    geo = wmcf->geo;

    if (geo == NULL) {
        return NGX_OK;
    }

    /* a slot for each of the cycle's connections, freed with its pool */

    geo->nslots = cycle->connection_n;
    geo->slots = ngx_pcalloc(cycle->pool,
                             geo->nslots * sizeof(ngx_http_welby_geo_slot_t));
    if (geo->slots == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The slot of the request's connection for the address key, emptied
 * when it was written for another address; NULL without a table (a
 * process that is not a worker) or for a connection outside ngx_cycle's.
 */
static ngx_http_welby_geo_slot_t *
ngx_http_welby_geo_slot(ngx_http_request_t *r, ngx_http_welby_geo_t *geo,
    u_char *key)
{
    ngx_uint_t                  n;
    ngx_connection_t           *c;
    ngx_http_welby_geo_slot_t  *slot;

    if (geo->slots == NULL) {
        return NULL;
    }

    c = r->connection;

#if (NGX_HTTP_V2)
    /* a stream's connection is a copy: its slot is the real one's */

    if (r->stream) {
        c = r->stream->connection->connection;
    }
#endif

    if (c < ngx_cycle->connections
        || c >= ngx_cycle->connections + geo->nslots)
    {
        return NULL;
    }

    n = c - ngx_cycle->connections;
    slot = &geo->slots[n];

    if (!slot->valid || ngx_memcmp(slot->addr, key, 16) != 0) {
        slot->valid = 0;
        slot->asn_known = 0;
        ngx_memcpy(slot->addr, key, 16);
    }

    return slot;
}


uint32_t
ngx_http_welby_geo_asn(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx)
{
    ngx_int_t                    rc;
    struct sockaddr             *sa;
    ngx_http_welby_geo_slot_t   *slot;
    MMDB_entry_data_s            data;
#if (NGX_HAVE_INET6)
    struct sockaddr_in           sin;
#endif
    ngx_http_welby_geo_t        *geo;
    ngx_http_welby_main_conf_t  *wmcf;

    if (ngx_http_welby_geo_lookup(r, ctx) != NGX_OK || !ctx->geo_looked_up) {
        return 0;
    }

    if (ctx->asn_looked_up) {
        return ctx->asn;
    }

    ctx->asn_looked_up = 1;

    wmcf = ngx_http_get_module_main_conf(r, ngx_http_welby_module);
    geo = wmcf->geo;

    if (!geo->asn.open) {
        return 0;
    }

    /* geo_addr is the address as the country lookup placed it */

    sa = r->connection->sockaddr;

#if (NGX_HAVE_INET6)
    if (sa->sa_family == AF_INET6
        && ngx_http_welby_geo_embedded(ctx->geo_addr, &sin) == NGX_OK)
    {
        sa = (struct sockaddr *) &sin;
    }
#endif

    rc = ngx_http_welby_geo_find(r, &geo->asn, sa,
                                 &ngx_http_welby_geo_asn_kind, &data);

    if (rc == NGX_OK) {
        ctx->asn = data.uint32;
    }

    slot = ngx_http_welby_geo_slot(r, geo, ctx->geo_addr);

    if (slot && slot->valid && rc != NGX_ERROR) {
        slot->asn = ctx->asn;
        slot->asn_known = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: geo id:%V asn:%uD", &ctx->request_id, ctx->asn);

    return ctx->asn;
}


#if (NGX_HAVE_INET6)

/*
 * The IPv4 address an IPv6 one embeds as the address its packets go
 * back to, placed as that IPv4 address whatever the file's aliases: a
 * dual-stack listener's IPv4 clients (::ffff:0:0/96), which a file
 * without that alias would leave unknown; 6to4 (2002::/16, bits 16-47);
 * Teredo (2001::/32): the client's own address, the last 32 bits
 * inverted, not bits 32-63, the Teredo server, which the client chooses
 * freely and which MaxMind's alias of 2001::/32 places; NAT64's
 * well-known prefix 64:ff9b::/96 (a SIIT translator in front).  NGX_OK
 * with the address in sin, NGX_DECLINED for any other address.
 */
ngx_int_t
ngx_http_welby_geo_embedded(const u_char *a, struct sockaddr_in *sin)
{
    u_char  *p;

    ngx_memzero(sin, sizeof(struct sockaddr_in));
    sin->sin_family = AF_INET;
    p = (u_char *) &sin->sin_addr;

    if (ngx_memcmp(a, ngx_http_welby_geo_v4mapped, 12) == 0
        || ngx_memcmp(a, ngx_http_welby_geo_nat64, 12) == 0)
    {
        ngx_memcpy(p, a + 12, 4);
        return NGX_OK;
    }

    if (a[0] == 0x20 && a[1] == 0x02) {
        ngx_memcpy(p, a + 2, 4);
        return NGX_OK;
    }

    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        p[0] = (u_char) ~a[12];
        p[1] = (u_char) ~a[13];
        p[2] = (u_char) ~a[14];
        p[3] = (u_char) ~a[15];
        return NGX_OK;
    }

    return NGX_DECLINED;
}

#endif


/*
 * NGX_OK with the kind's value in data; NGX_DECLINED when the address is
 * in no record or its record lacks the value; NGX_ERROR when the file
 * cannot answer (logged: a file nginx -t checked fails only where its
 * data is bad).
 */
static ngx_int_t
ngx_http_welby_geo_find(ngx_http_request_t *r, ngx_http_welby_geo_db_t *db,
    struct sockaddr *sa, ngx_http_welby_geo_kind_t *kind,
    MMDB_entry_data_s *data)
{
    int                   rc;
    MMDB_lookup_result_s  res;

    res = MMDB_lookup_sockaddr(&db->mmdb, sa, &rc);

    if (rc == MMDB_SUCCESS) {
        if (!res.found_entry) {
            return NGX_DECLINED;
        }

        rc = MMDB_aget_value(&res.entry, data, kind->path);

        if (rc == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) {
            return NGX_DECLINED;
        }
    }

    if (rc == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) {
        /* an IPv4-only file: every IPv6 client is unknown */
        return NGX_DECLINED;
    }

    if (rc != MMDB_SUCCESS) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "welby: geo lookup in the %s database \"%V\" "
                      "failed: %s", kind->name, &db->file,
                      MMDB_strerror(rc));
        return NGX_ERROR;
    }

    if (!data->has_data || data->type != kind->data_type) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


welby_reason_e
ngx_http_welby_geo(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    welby_reason_e  reason;

    reason = ngx_http_welby_geo_decide(r, ctx, wlcf);

    if (reason == WELBY_REASON_GEO_DENIED) {
        ctx->detected |= NGX_HTTP_WELBY_DETECTED_GEO;
    }

    return reason;
}


/*
 * nginx runs no access phase for a subrequest, so the geo step of its
 * main request, in another location, never saw this location's list:
 * it is applied here (with what the main request looked up), as the
 * other steps' checks are compared in ngx_http_welby_covers().
 */
ngx_uint_t
ngx_http_welby_geo_covers(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    return ngx_http_welby_geo_decide(r, ctx, wlcf) == WELBY_REASON_NONE;
}


static welby_reason_e
ngx_http_welby_geo_decide(ngx_http_request_t *r, ngx_http_welby_ctx_t *ctx,
    ngx_http_welby_loc_conf_t *wlcf)
{
    ngx_int_t                   index;
    ngx_uint_t                  deny;
    ngx_http_welby_geo_list_t  *list;

    list = wlcf->geo_list;

    if (list == NULL) {
        return WELBY_REASON_NONE;
    }

    (void) ngx_http_welby_geo_lookup(r, ctx);

    if (ctx->geo_failed) {

        /*
         * The file had no answer for this address (a record that does
         * not decode): unknown would let a deny list's country in, so
         * the step cannot decide, and fails closed.
         */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "welby: geo step id:%V lookup failed",
                       &ctx->request_id);

        return WELBY_REASON_INTERNAL_ERROR;
    }

    index = welby_country_index(ctx->country.data, ctx->country.len);

    if (index < 0) {
        deny = wlcf->geo_unknown_deny;

    } else {
        deny = welby_country_set_has(&list->set, index) ? !list->allow
                                                         : list->allow;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "welby: geo step id:%V country:%V %s list: %s",
                   &ctx->request_id, &ctx->country,
                   list->allow ? "allow" : "deny", deny ? "deny" : "allow");

    return deny ? WELBY_REASON_GEO_DENIED : WELBY_REASON_NONE;
}


/*
 * $welby_country and $welby_asn, in any location of a configuration with
 * welby_geoip2: without a welby context the lookup goes into a
 * throwaway one.  The values are copied, so a later lookup for another
 * address (realip in another location) cannot change what was read.
 */
ngx_int_t
ngx_http_welby_country_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    ngx_http_welby_ctx_t  *ctx, tmp;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL) {
        ngx_memzero(&tmp, sizeof(ngx_http_welby_ctx_t));
        ctx = &tmp;
    }

    if (ngx_http_welby_geo_lookup(r, ctx) != NGX_OK
        || ctx->country.len == 0)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, ctx->country.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_cpymem(p, ctx->country.data, ctx->country.len) - p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


ngx_int_t
ngx_http_welby_asn_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    ngx_http_welby_ctx_t  *ctx, tmp;

    ctx = ngx_http_welby_get_ctx(r);

    if (ctx == NULL) {
        ngx_memzero(&tmp, sizeof(ngx_http_welby_ctx_t));
        ctx = &tmp;
    }

    if (ngx_http_welby_geo_asn(r, ctx) == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT32_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uD", ctx->asn) - p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}
