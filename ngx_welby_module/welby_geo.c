/*
 * Country codes and sets of them: see welby_geo.h.
 */

#include "welby_geo.h"


/*
 * ISO 3166-1 alpha-2, the officially assigned codes (249), one string per
 * first letter, then XK.  Checked against the count in t/unit/geo.c.
 */
static const char  *welby_country_assigned_codes[26] = {
    /* A */ "DEFGILMOQRSTUWXZ",
    /* B */ "ABDEFGHIJLMNOQRSTVWYZ",
    /* C */ "ACDFGHIKLMNORUVWXYZ",
    /* D */ "EJKMOZ",
    /* E */ "CEGHRST",
    /* F */ "IJKMOR",
    /* G */ "ABDEFGHILMNPQRSTUWY",
    /* H */ "KMNRTU",
    /* I */ "DELMNOQRST",
    /* J */ "EMOP",
    /* K */ "EGHIMNPRWYZ",
    /* L */ "ABCIKRSTUVY",
    /* M */ "ACDEFGHKLMNOPQRSTUVWXYZ",
    /* N */ "ACEFGILOPRUZ",
    /* O */ "M",
    /* P */ "AEFGHKLMNRSTWY",
    /* Q */ "A",
    /* R */ "EOSUW",
    /* S */ "ABCDEGHIJKLMNORSTVXYZ",
    /* T */ "CDFGHJKLMNORTVWZ",
    /* U */ "AGMSYZ",
    /* V */ "ACEGINU",
    /* W */ "FS",
    /* X */ "K",
    /* Y */ "ET",
    /* Z */ "AMW"
};


static int
welby_country_letter(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a';
    }

    return -1;
}


int
welby_country_index(const unsigned char *p, size_t len)
{
    int  a, b;

    if (p == NULL || len != 2) {
        return -1;
    }

    a = welby_country_letter(p[0]);
    b = welby_country_letter(p[1]);

    if (a < 0 || b < 0) {
        return -1;
    }

    return a * 26 + b;
}


int
welby_country_assigned(int index)
{
    const char  *s;

    if (index < 0 || index >= WELBY_COUNTRY_CODES) {
        return 0;
    }

    for (s = welby_country_assigned_codes[index / 26]; *s; s++) {
        if (*s - 'A' == index % 26) {
            return 1;
        }
    }

    return 0;
}


void
welby_country_code(int index, unsigned char code[2])
{
    code[0] = (unsigned char) ('A' + index / 26);
    code[1] = (unsigned char) ('A' + index % 26);
}


void
welby_country_set_add(welby_country_set_t *set, int index)
{
    if (index >= 0 && index < WELBY_COUNTRY_CODES) {
        set->bits[index / 8] |= (unsigned char) (1u << (index % 8));
    }
}


int
welby_country_set_has(const welby_country_set_t *set, int index)
{
    if (index < 0 || index >= WELBY_COUNTRY_CODES) {
        return 0;
    }

    return (set->bits[index / 8] >> (index % 8)) & 1;
}
