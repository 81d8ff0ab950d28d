/* The fast path's scanner in C: grammar.FAST_RECORD[kind].findall(text, pos, end), exactly,
 * and grammar.TRACK_TAIL.findall(text).
 *
 * Strategy.  The three FAST_RECORD regexes (pflowbsd/pf/grammar.py) are transcribed here as
 * hand-written matchers, one function per line of pfctl's record, in the regex's order.
 * The regex backtracks in only one place that can change its result: the age line's tail
 * "(?:, anchor N|)(?:, rule N|)(, [^\n]*+|)\n", where an anchor or rule that does not end
 * its token falls back into the opts group; age_tail() tries the alternatives in sre's
 * order.  Everywhere else a "(?:X|)" that matched X and then failed later would fail with
 * the empty alternative too (what follows X never starts with X's first character), every
 * run is possessive or bounded by a character it excludes, and the address forms are
 * exclusive, so taking the first alternative that matches whole is what sre ends up with.
 *
 * findall's scanning: with re.M, "^" matches at index 0 or after a "\n" (not at pos itself
 * unless one of those holds); a failed start moves to the next line; the text ends at end
 * for every look, the "(?!\[)" lookahead included.  pos and end are clamped as sre clamps
 * them.  Any str kind works (1, 2 or 4 bytes per code point): the matchers read through
 * PyUnicode_READ with the kind a compile-time constant, specialised three times; "\d" is
 * ASCII [0-9] (re.A), "[^ \n]" takes any code point.  Groups come back as str slices
 * (PyUnicode_Substring), "" for a group that took no part, 34 to a tuple (FAST_FIELDS);
 * the fields that repeat through a table are one str per value within a call (see
 * SHARED), and the tuples, all str, are left untracked by the cycle collector.
 *
 * The steady poll's scans (the tracker's over a table it has seen before) are here too:
 * tails(), grammar.TRACK_TAIL.findall(text), led by memchr from one "pkts" to the next,
 * sight(), the same with each tail sorted (seen again, a repeat, or fresh, with where it
 * is) and layout()'s counts on the way, so the tracker's quiet poll is one pass and a
 * dict deletion per state, and layout(), fastscan.layout_regex's two counts in one
 * memchr pass.  pairs() is the bulk reader's check that findall()'s records are the
 * sighted tails' (pf/snapshot.py fresh_records), one C loop instead of one Python
 * round per record.
 *
 * One file past the usual ~400 lines: the matchers share the text accessors and the
 * per-kind specialisation, and an extension of one translation unit keeps setup.py's
 * build a single Extension.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NGROUPS 34
enum {
    G_IFNAME, G_PROTO, G_LA, G_LP4, G_LP6, G_LXA, G_LXP4, G_LXP6, G_GW1, G_ARROW,
    G_RA, G_RP4, G_RP6, G_RXA, G_RXP4, G_RXP6, G_GW2, G_STATE,
    G_SEQ, G_AGE_H, G_AGE_MS, G_EXP_H, G_EXP_MS, G_P0, G_P1, G_B0, G_B1, G_ANCHOR, G_RULE,
    G_OPTS, G_ID, G_CREATORID, G_IDX, G_ORIGIF
};

typedef struct {
    Py_ssize_t start[NGROUPS];
    Py_ssize_t stop[NGROUPS];
} groups_t;

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t end;
} text_t;

#if defined(__GNUC__) || defined(__clang__)
#define SCAN_INLINE static inline __attribute__((always_inline))
#else
#define SCAN_INLINE static inline
#endif

/* The code point at i, or 0 at and past the end (no pattern character is NUL). */
#define AT(t, i) ((i) < (t)->end ? PyUnicode_READ((t)->kind, (t)->data, (i)) : 0)

SCAN_INLINE void set(groups_t *g, int n, Py_ssize_t a, Py_ssize_t b)
{
    g->start[n] = a;
    g->stop[n] = b;
}

SCAN_INLINE int is_digit(Py_UCS4 c) { return c >= '0' && c <= '9'; }
SCAN_INLINE int is_hex(Py_UCS4 c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

/* \d*+ from p: the end of the run. */
SCAN_INLINE Py_ssize_t digits(const text_t *t, Py_ssize_t p)
{
    while (p < t->end && is_digit(PyUnicode_READ(t->kind, t->data, p)))
        p++;
    return p;
}

/* [0-9a-f]*+, plus '.' and ':' when asked. */
SCAN_INLINE Py_ssize_t hexrun(const text_t *t, Py_ssize_t p, int dot, int colon)
{
    while (p < t->end) {
        Py_UCS4 c = PyUnicode_READ(t->kind, t->data, p);
        if (!(is_hex(c) || (dot && c == '.') || (colon && c == ':')))
            break;
        p++;
    }
    return p;
}

/* [^ \n]*+ (space != 0) or [^\n]*+ or [^}\n]*+ from p: the end of the run. */
SCAN_INLINE Py_ssize_t run_not(const text_t *t, Py_ssize_t p, Py_UCS4 other)
{
    if (t->kind == PyUnicode_1BYTE_KIND && other == '\n') {
        const Py_UCS1 *s = (const Py_UCS1 *)t->data;
        const void *nl = memchr(s + p, '\n', (size_t)(t->end - p));
        return nl ? (const Py_UCS1 *)nl - s : t->end;
    }
    while (p < t->end) {
        Py_UCS4 c = PyUnicode_READ(t->kind, t->data, p);
        if (c == '\n' || c == other)
            break;
        p++;
    }
    return p;
}

/* The literal s (ASCII) at p: the position after it, or -1. */
SCAN_INLINE Py_ssize_t lit(const text_t *t, Py_ssize_t p, const char *s, Py_ssize_t n)
{
    Py_ssize_t i;
    if (p < 0 || t->end - p < n)
        return -1;
    for (i = 0; i < n; i++)
        if (PyUnicode_READ(t->kind, t->data, p + i) != (Py_UCS4)(unsigned char)s[i])
            return -1;
    return p + n;
}
#define LIT(t, p, s) lit((t), (p), (s), (Py_ssize_t)(sizeof(s) - 1))

/* \d++ then the literal c: after c, or -1 (an empty run fails). */
SCAN_INLINE Py_ssize_t digits_then(const text_t *t, Py_ssize_t p, Py_UCS4 c)
{
    Py_ssize_t q = digits(t, p);
    return (q > p && AT(t, q) == c) ? q + 1 : -1;
}

/* _FAST_HOST: ((?:\(\d++\) |)ADDR)(?::(\d++)|\[(\d++)\]|), groups n, n+1, n+2.
 * ADDR: \d++\.\d++\.\d++\.\d++(?!\[) | [0-9a-f]*+:[0-9a-f.]*+:[0-9a-f:.]*+ */
SCAN_INLINE Py_ssize_t host(const text_t *t, Py_ssize_t p, groups_t *g, int n)
{
    Py_ssize_t a = p, q, e;
    if (AT(t, p) == '(') {
        q = digits_then(t, p + 1, ')');
        if (q >= 0 && AT(t, q) == ' ')
            p = q + 1;
    }
    e = -1;
    q = digits_then(t, p, '.');
    if (q >= 0 && (q = digits_then(t, q, '.')) >= 0 && (q = digits_then(t, q, '.')) >= 0) {
        Py_ssize_t r = digits(t, q);
        if (r > q && AT(t, r) != '[')
            e = r;
    }
    if (e < 0) {
        q = hexrun(t, p, 0, 0);
        if (AT(t, q) != ':')
            return -1;
        q = hexrun(t, q + 1, 1, 0);
        if (AT(t, q) != ':')
            return -1;
        e = hexrun(t, q + 1, 1, 1);
    }
    set(g, n, a, e);
    if (AT(t, e) == ':') {
        q = digits(t, e + 1);
        if (q > e + 1) {
            set(g, n + 1, e + 1, q);
            return q;
        }
    }
    else if (AT(t, e) == '[') {
        q = digits(t, e + 1);
        if (q > e + 1 && AT(t, q) == ']') {
            set(g, n + 2, e + 1, q);
            return q + 1;
        }
    }
    return e;
}

/* host, then (?: \(host\)|)(?: \{([^}\n]+)\}|): the NAT host in groups n+3.., gw in gw. */
SCAN_INLINE Py_ssize_t side(const text_t *t, Py_ssize_t p, groups_t *g, int n, int gw)
{
    Py_ssize_t q;
    if ((p = host(t, p, g, n)) < 0)
        return -1;
    if (AT(t, p) == ' ' && AT(t, p + 1) == '(') {
        q = host(t, p + 2, g, n + 3);
        if (q < 0 || AT(t, q) != ')')
            return -1;  /* " (" starts none of what may follow instead */
        p = q + 1;
    }
    if (AT(t, p) == ' ' && AT(t, p + 1) == '{') {
        q = run_not(t, p + 2, '}');
        if (q == p + 2 || AT(t, q) != '}')
            return -1;  /* likewise " {" */
        set(g, gw, p + 2, q);
        p = q + 1;
    }
    return p;
}

/* _FAST_HEAD: the state line. */
SCAN_INLINE Py_ssize_t state_line(const text_t *t, Py_ssize_t p, groups_t *g)
{
    Py_ssize_t q;
    int i;
    q = run_not(t, p, ' ');
    if (q == p || AT(t, q) != ' ')
        return -1;
    set(g, G_IFNAME, p, q);
    p = q + 1;
    q = run_not(t, p, ' ');
    if (q == p || AT(t, q) != ' ')
        return -1;
    set(g, G_PROTO, p, q);
    if ((p = side(t, q + 1, g, G_LA, G_GW1)) < 0)
        return -1;
    if ((q = LIT(t, p, " -> ")) < 0) {
        if ((q = LIT(t, p, " <- ")) < 0)
            return -1;
        set(g, G_ARROW, p + 1, p + 2);
    }
    if ((p = side(t, q, g, G_RA, G_GW2)) < 0)
        return -1;
    for (i = 0; i < 7; i++)
        if (AT(t, p + i) != ' ')
            return -1;
    p += 7;
    q = run_not(t, p, '\n');
    if (q == p || q >= t->end)
        return -1;
    set(g, G_STATE, p, q);
    return q + 1;
}

/* _SEQ_PEER: \[\d++ \+ \d++\](?:\(\+\d++\)|)(?: wscale \d++|) */
SCAN_INLINE Py_ssize_t seq_peer(const text_t *t, Py_ssize_t p)
{
    Py_ssize_t q;
    if (AT(t, p) != '[' || (p = digits_then(t, p + 1, ' ')) < 0 || (p = LIT(t, p, "+ ")) < 0
        || (p = digits_then(t, p, ']')) < 0)
        return -1;
    if ((q = LIT(t, p, "(+")) >= 0 && (q = digits_then(t, q, ')')) >= 0)
        p = q;
    if ((q = LIT(t, p, " wscale ")) >= 0) {
        Py_ssize_t r = digits(t, q);
        if (r > q)
            p = r;
    }
    return p;
}

/* _FAST_SEQ: (?:   (peer  peer)\n|): the position after it, or p when it is absent. */
SCAN_INLINE Py_ssize_t seq_line(const text_t *t, Py_ssize_t p, groups_t *g)
{
    Py_ssize_t q = LIT(t, p, "   ");
    if (q < 0 || (q = seq_peer(t, q)) < 0 || (q = LIT(t, q, "  ")) < 0 || (q = seq_peer(t, q)) < 0
        || AT(t, q) != '\n')
        return p;  /* the age line cannot start where a tcp line does: no other way */
    set(g, G_SEQ, p + 3, q);
    return q + 1;
}

/* (, [^\n]*+|)\n at p, nl the line's "\n": the line's end, or -1. */
SCAN_INLINE Py_ssize_t opts_at(const text_t *t, Py_ssize_t p, Py_ssize_t nl, groups_t *g)
{
    if (p == nl)
        return nl;
    if (AT(t, p) == ',' && AT(t, p + 1) == ' ') {
        set(g, G_OPTS, p, nl);
        return nl;
    }
    return -1;
}

/* ", <word> \d++" at p: the end of the digits, or -1. */
SCAN_INLINE Py_ssize_t token(const text_t *t, Py_ssize_t p, int rule)
{
    Py_ssize_t q = rule ? LIT(t, p, ", rule ") : LIT(t, p, ", anchor "), r;
    if (q < 0)
        return -1;
    r = digits(t, q);
    return r > q ? r : -1;
}

/* (?:, anchor (\d++)|)(?:, rule (\d++)|)(, [^\n]*+|)\n in sre's order of alternatives. All
 * of them that succeed end at the same "\n" (opts runs to it), so the first one wins. */
SCAN_INLINE Py_ssize_t age_tail(const text_t *t, Py_ssize_t p, groups_t *g)
{
    Py_ssize_t nl = run_not(t, p, '\n'), a, r;
    if (nl >= t->end)
        return -1;
    if ((a = token(t, p, 0)) >= 0) {
        if ((r = token(t, a, 1)) >= 0 && opts_at(t, r, nl, g) >= 0) {
            set(g, G_ANCHOR, p + 9, a);
            set(g, G_RULE, a + 7, r);
            return nl;
        }
        if (opts_at(t, a, nl, g) >= 0) {
            set(g, G_ANCHOR, p + 9, a);
            return nl;
        }
    }
    if ((r = token(t, p, 1)) >= 0 && opts_at(t, r, nl, g) >= 0) {
        set(g, G_RULE, p + 7, r);
        return nl;
    }
    return opts_at(t, p, nl, g);
}

/* (\d++):(\d\d:\d\d) at p into groups n, n+1: the position after it, or -1. */
SCAN_INLINE Py_ssize_t hms(const text_t *t, Py_ssize_t p, groups_t *g, int n)
{
    Py_ssize_t q = digits_then(t, p, ':');
    if (q < 0 || !is_digit(AT(t, q)) || !is_digit(AT(t, q + 1)) || AT(t, q + 2) != ':'
        || !is_digit(AT(t, q + 3)) || !is_digit(AT(t, q + 4)))
        return -1;
    set(g, n, p, q - 1);
    set(g, n + 1, q, q + 5);
    return q + 5;
}

/* (\d++):(\d++) then the literal s, into groups n, n+1. */
SCAN_INLINE Py_ssize_t pair(const text_t *t, Py_ssize_t p, groups_t *g, int n)
{
    Py_ssize_t q = digits_then(t, p, ':'), r;
    if (q < 0)
        return -1;
    r = digits(t, q);
    if (r == q)
        return -1;
    set(g, n, p, q - 1);
    set(g, n + 1, q, r);
    return r;
}

/* _FAST_AGE: the age, expires and counters line. */
SCAN_INLINE Py_ssize_t age_line(const text_t *t, Py_ssize_t p, groups_t *g)
{
    if ((p = LIT(t, p, "   age ")) < 0 || (p = hms(t, p, g, G_AGE_H)) < 0
        || (p = LIT(t, p, ", expires in ")) < 0 || (p = hms(t, p, g, G_EXP_H)) < 0
        || (p = LIT(t, p, ", ")) < 0 || (p = pair(t, p, g, G_P0)) < 0
        || (p = LIT(t, p, " pkts, ")) < 0 || (p = pair(t, p, g, G_B0)) < 0
        || (p = LIT(t, p, " bytes")) < 0 || (p = age_tail(t, p, g)) < 0)
        return -1;
    return p + 1;
}

/* [0-9a-f]{n} at p. */
SCAN_INLINE int hex_n(const text_t *t, Py_ssize_t p, Py_ssize_t n)
{
    Py_ssize_t i;
    if (t->end - p < n)
        return 0;
    for (i = 0; i < n; i++)
        if (!is_hex(PyUnicode_READ(t->kind, t->data, p + i)))
            return 0;
    return 1;
}

/* _FAST_ID: the id line, then (?:   origif: ([^ \n]+)\n|). */
SCAN_INLINE Py_ssize_t id_line(const text_t *t, Py_ssize_t p, groups_t *g)
{
    Py_ssize_t q, nl;
    if ((p = LIT(t, p, "   id: ")) < 0 || !hex_n(t, p, 16))
        return -1;
    set(g, G_ID, p, p + 16);
    if ((q = LIT(t, p + 16, " creatorid: ")) < 0 || !hex_n(t, q, 8))
        return -1;
    set(g, G_CREATORID, q, q + 8);
    q += 8;
    nl = run_not(t, q, '\n');
    if (nl >= t->end)
        return -1;
    set(g, G_IDX, q, nl);
    p = nl + 1;
    if ((q = LIT(t, p, "   origif: ")) >= 0) {
        Py_ssize_t r = run_not(t, q, ' ');
        if (r > q && r < t->end && AT(t, r) == '\n') {
            set(g, G_ORIGIF, q, r);
            return r + 1;
        }
    }
    return p;
}

/* One record of this verbosity at p (a line start): its end, or -1. */
SCAN_INLINE Py_ssize_t record(const text_t *t, Py_ssize_t p, int verbosity, groups_t *g)
{
    int i;
    for (i = 0; i < NGROUPS; i++)
        g->start[i] = -1;
    if ((p = state_line(t, p, g)) < 0 || verbosity == 0)
        return p;
    p = seq_line(t, p, g);
    if ((p = age_line(t, p, g)) < 0 || verbosity == 1)
        return p;
    return id_line(t, p, g);
}

/* The text's kind as a constant, so each copy reads its own width without a switch. */
#define RECORD_OF_KIND(K)                                                                   \
    static Py_ssize_t record_##K(const void *data, Py_ssize_t end, Py_ssize_t p, int v,    \
                                 groups_t *g)                                               \
    {                                                                                       \
        text_t t = {K, data, end};                                                          \
        return record(&t, p, v, g);                                                         \
    }
RECORD_OF_KIND(PyUnicode_1BYTE_KIND)
RECORD_OF_KIND(PyUnicode_2BYTE_KIND)
RECORD_OF_KIND(PyUnicode_4BYTE_KIND)

static PyObject *empty;  /* "" for every group that took no part */

/* Shared strings.  Most of findall's cost is making 34 str per record, and most of those
 * fields repeat all through a table: a few interfaces, protocols and state names, 3,600
 * "MM:SS", a few hundred rules, one or two creatorids.  One call keeps a direct-mapped
 * cache of the strs it made for those fields (SHARED), keyed by their code units (every
 * slice is of the same text, so the same kind): a slice equal to a cached one is that
 * str again.  Equal, as the regex's are; only identity differs, which no caller uses.  A
 * miss replaces the slot's str, so a field that does not repeat costs a hash and a store.
 * The cache lives for the call only, sized by the text (SLOTS_*), and holds one reference
 * to each of its strs. */
static const char SHARED[NGROUPS] = {
    [G_IFNAME] = 1, [G_PROTO] = 1, [G_STATE] = 1, [G_AGE_H] = 1, [G_AGE_MS] = 1,
    [G_EXP_H] = 1, [G_EXP_MS] = 1, [G_ANCHOR] = 1, [G_RULE] = 1, [G_OPTS] = 1,
    [G_CREATORID] = 1, [G_IDX] = 1, [G_ORIGIF] = 1,
};
#define SHARED_MAX 40                /* longer slices are not looked up */
#define SLOTS_MIN 64
#define SLOTS_MAX 16384              /* ~5,000 distinct values on the 200,000-state table */
#define BYTES_PER_SLOT 64            /* text bytes per slot, up to SLOTS_MAX */

typedef struct {
    PyObject *str;
    uint64_t head, tail;             /* the slice's key (slice_key) */
    Py_ssize_t bytes, at;            /* its size in bytes, where in the text it was sliced */
} slot_t;

typedef struct {
    slot_t *slots;
    size_t mask;
} cache_t;

static int cache_open(cache_t *c, Py_ssize_t span)
{
    size_t n = SLOTS_MIN;
    while (n < SLOTS_MAX && (Py_ssize_t)n * BYTES_PER_SLOT < span)
        n <<= 1;
    c->mask = n - 1;
    if ((c->slots = PyMem_Calloc(n, sizeof(slot_t))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void cache_close(cache_t *c)
{
    size_t i;
    for (i = 0; i <= c->mask; i++)
        Py_XDECREF(c->slots[i].str);
    PyMem_Free(c->slots);
}

SCAN_INLINE uint64_t load64(const unsigned char *u)
{
    uint64_t v;
    memcpy(&v, u, 8);
    return v;
}

SCAN_INLINE uint64_t load32(const unsigned char *u)
{
    uint32_t v;
    memcpy(&v, u, 4);
    return v;
}

/* The n bytes at u as two words that, with n, tell any two slices of up to 16 bytes
 * apart (overlapping loads, all inside the slice); longer ones also need a memcmp. */
SCAN_INLINE void slice_key(const unsigned char *u, Py_ssize_t n, uint64_t *head, uint64_t *tail)
{
    if (n >= 8) {
        *head = load64(u);
        *tail = load64(u + n - 8);
    }
    else if (n >= 4) {
        *head = load32(u) | load32(u + n - 4) << 32;
        *tail = 0;
    }
    else {
        *head = n ? (uint64_t)u[0] | (uint64_t)u[n >> 1] << 8 | (uint64_t)u[n - 1] << 16 : 0;
        *tail = 0;
    }
}

/* text[a:b] as a new reference: the cached str when an equal slice is there. */
static PyObject *shared_slice(cache_t *c, PyObject *text, int kind, const char *data,
                              Py_ssize_t a, Py_ssize_t b)
{
    Py_ssize_t n = (b - a) * kind;
    const unsigned char *u = (const unsigned char *)data + a * kind;
    uint64_t head, tail, h;
    slot_t *slot;
    PyObject *s;
    slice_key(u, n, &head, &tail);
    h = (head * 0x9e3779b97f4a7c15u) ^ (tail * 0xc2b2ae3d27d4eb4fu) ^ (uint64_t)n;
    slot = &c->slots[(h ^ (h >> 29)) & c->mask];
    /* the size first: memcmp must not read past the cached slice */
    if (slot->str != NULL && slot->bytes == n && slot->head == head && slot->tail == tail
        && (n <= 16 || memcmp(data + slot->at * kind, u, (size_t)n) == 0)) {
        Py_INCREF(slot->str);
        return slot->str;
    }
    if ((s = PyUnicode_Substring(text, a, b)) == NULL)
        return NULL;
    Py_INCREF(s);
    Py_XSETREF(slot->str, s);
    slot->head = head;
    slot->tail = tail;
    slot->bytes = n;
    slot->at = a;
    return s;
}

static PyObject *groups_tuple(PyObject *text, const groups_t *g, cache_t *c)
{
    PyObject *tuple = PyTuple_New(NGROUPS), *s;
    int kind = PyUnicode_KIND(text), i;
    const char *data = PyUnicode_DATA(text);
    if (tuple == NULL)
        return NULL;
    for (i = 0; i < NGROUPS; i++) {
        if (g->start[i] < 0) {
            Py_INCREF(empty);
            s = empty;
        }
        else if (SHARED[i] && g->stop[i] - g->start[i] <= SHARED_MAX)
            s = shared_slice(c, text, kind, data, g->start[i], g->stop[i]);
        else
            s = PyUnicode_Substring(text, g->start[i], g->stop[i]);
        if (s == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, s);
    }
    /* Only strs: it can be in no cycle.  The collector would untrack it at its first
     * look (as it does every such tuple); untracked now, 200,000 new tuples do not set
     * off collections that walk them. */
    PyObject_GC_UnTrack(tuple);
    return tuple;
}

/* The first line start after p (the index after the next "\n" before end), or -1. */
static Py_ssize_t next_line(int kind, const void *data, Py_ssize_t p, Py_ssize_t end)
{
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = (const Py_UCS1 *)data;
        const void *nl = memchr(s + p, '\n', (size_t)(end - p));
        return nl ? (const Py_UCS1 *)nl - s + 1 : -1;
    }
    for (; p < end; p++)
        if (PyUnicode_READ(kind, data, p) == '\n')
            return p + 1;
    return -1;
}

PyDoc_STRVAR(findall_doc,
"findall(kind, text, pos, end) -> list of 34-str tuples\n\n"
"grammar.FAST_RECORD[(\"ss\", \"v\", \"vv\")[kind]].findall(text, pos, end), in C.");

static PyObject *fastscan_findall(PyObject *module, PyObject *args)
{
    int verbosity, kind;
    PyObject *text, *list, *tuple;
    Py_ssize_t pos, end, length, p, q;
    const void *data;
    groups_t g;
    cache_t cache;
    Py_ssize_t (*match)(const void *, Py_ssize_t, Py_ssize_t, int, groups_t *);

    (void)module;
    if (!PyArg_ParseTuple(args, "iUnn:findall", &verbosity, &text, &pos, &end))
        return NULL;
    if (verbosity < 0 || verbosity > 2) {
        PyErr_Format(PyExc_ValueError, "kind must be 0 (ss), 1 (v) or 2 (vv), not %d", verbosity);
        return NULL;
    }
    if (PyUnicode_READY(text) < 0)
        return NULL;
    length = PyUnicode_GET_LENGTH(text);
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    /* sre's clamping of pos and endpos */
    pos = pos < 0 ? 0 : (pos > length ? length : pos);
    end = end < 0 ? 0 : (end > length ? length : end);
    match = kind == PyUnicode_1BYTE_KIND ? record_PyUnicode_1BYTE_KIND
          : kind == PyUnicode_2BYTE_KIND ? record_PyUnicode_2BYTE_KIND
          : record_PyUnicode_4BYTE_KIND;
    if ((list = PyList_New(0)) == NULL)
        return NULL;
    if (cache_open(&cache, end - pos) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    p = pos;
    if (p > 0 && p < end && PyUnicode_READ(kind, data, p - 1) != '\n')
        p = next_line(kind, data, p, end);
    while (p >= 0 && p < end) {
        q = match(data, end, p, verbosity, &g);
        if (q < 0) {
            p = next_line(kind, data, p, end);
            continue;
        }
        if ((tuple = groups_tuple(text, &g, &cache)) == NULL || PyList_Append(list, tuple) < 0) {
            Py_XDECREF(tuple);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(tuple);
        p = q;
    }
    cache_close(&cache);
    return list;
}

/* ---- The tracker's steady poll: its tails and the table's layout ---------------------- */

/* The first c at or after p, or -1. */
SCAN_INLINE Py_ssize_t find(const text_t *t, Py_ssize_t p, Py_UCS4 c)
{
    if (p >= t->end)
        return -1;
    if (t->kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = (const Py_UCS1 *)t->data;
        const void *at = memchr(s + p, (int)c, (size_t)(t->end - p));
        return at ? (const Py_UCS1 *)at - s : -1;
    }
    for (; p < t->end; p++)
        if (PyUnicode_READ(t->kind, t->data, p) == c)
            return p;
    return -1;
}

/* grammar.TRACK_TAIL at p: " pkts, (\d++:\d++ bytes[^\n]*+\n   id: [0-9a-f]{16}
 * creatorid: [0-9a-f]{8})". The group runs from p + 7 to the position returned, or -1. */
SCAN_INLINE Py_ssize_t track_tail(const text_t *t, Py_ssize_t p)
{
    Py_ssize_t q;
    if ((p = LIT(t, p, " pkts, ")) < 0 || (p = digits_then(t, p, ':')) < 0)
        return -1;
    if ((q = digits(t, p)) == p || (q = LIT(t, q, " bytes")) < 0)
        return -1;
    q = run_not(t, q, '\n');
    if ((q = LIT(t, q, "\n   id: ")) < 0 || !hex_n(t, q, 16)
        || (q = LIT(t, q + 16, " creatorid: ")) < 0 || !hex_n(t, q, 8))
        return -1;
    return q + 8;
}

/* Go on counting newlines, and those a space follows, from *at up to limit. */
SCAN_INLINE void count_lines(const text_t *t, Py_ssize_t *at, Py_ssize_t limit,
                             Py_ssize_t *lines, Py_ssize_t *indented)
{
    text_t upto = {t->kind, t->data, limit};
    Py_ssize_t p = *at;
    while ((p = find(&upto, p, '\n')) >= 0) {
        (*lines)++;
        p++;
        if (p < t->end && PyUnicode_READ(t->kind, t->data, p) == ' ')
            (*indented)++;
    }
    *at = limit;
}

/* list.append(n): 0, or -1 with an exception set. */
static int append_ssize(PyObject *list, Py_ssize_t n)
{
    PyObject *o = PyLong_FromSsize_t(n);
    int r = o == NULL ? -1 : PyList_Append(list, o);
    Py_XDECREF(o);
    return r;
}

typedef struct {
    PyObject *tails, *fresh, *offsets, *lines;
    Py_ssize_t repeats, nlines, indented;
    PyObject *prev;  /* the last poll's tails in order (a list), or NULL */
    Py_ssize_t at;   /* where in prev the next tail is looked for */
    Py_ssize_t hits, misses;  /* tails found where expected; known ones resync missed */
} sight_t;

/* Whether the hint still pays in this chunk: not once resync has missed more than
 * RESYNC times and more often than tails were found where expected (a table printed
 * in another order: each miss costs RESYNC comparisons, and saves nothing). */
#define HINTING(o) ((o)->prev != NULL && ((o)->misses <= RESYNC || (o)->misses <= (o)->hits))

#define RESYNC 64  /* how far on in prev a known tail out of its place is looked for */

/* text[a:b] == s, for a str s: its kind, its length, its characters. */
SCAN_INLINE int same_text(const text_t *t, Py_ssize_t a, Py_ssize_t b, PyObject *s)
{
    return PyUnicode_Check(s) && PyUnicode_KIND(s) == t->kind && PyUnicode_GET_LENGTH(s) == b - a
           && memcmp(PyUnicode_DATA(s), (const char *)t->data + a * t->kind,
                     (size_t)((b - a) * t->kind)) == 0;
}

/* The tail text[a:b] as the last poll's str, if it is the one expected next in o->prev
 * (or the one after: the expected one changed or went), with o->at moved past it; else
 * NULL.  The same str is the tracker's key: its hash is known, and the dict finds it by
 * identity, with no new str to make, hash and compare (most of a quiet poll's cost). */
SCAN_INLINE PyObject *expected(const text_t *t, Py_ssize_t a, Py_ssize_t b, sight_t *o)
{
    Py_ssize_t n = HINTING(o) ? PyList_GET_SIZE(o->prev) : 0;
    for (Py_ssize_t j = o->at; j < n && j < o->at + 2; j++) {
        PyObject *s = PyList_GET_ITEM(o->prev, j);
        if (same_text(t, a, b, s)) {
            o->at = j + 1;
            o->hits++;
            Py_INCREF(s);
            return s;
        }
    }
    return NULL;
}

/* A known tail s found out of its place (states gone, or printed in another order):
 * where it is in o->prev, within RESYNC on, is where the next one is looked for. */
static void resync(PyObject *s, sight_t *o)
{
    if (!HINTING(o))
        return;
    Py_ssize_t n = PyList_GET_SIZE(o->prev);
    for (Py_ssize_t j = o->at; j < n && j < o->at + RESYNC; j++) {
        PyObject *p = PyList_GET_ITEM(o->prev, j);
        if (p == s || (PyUnicode_Check(p) && PyUnicode_GET_LENGTH(p) == PyUnicode_GET_LENGTH(s)
                       && PyUnicode_Compare(p, s) == 0)) {
            o->at = j + 1;
            return;
        }
    }
    o->misses++;
}

/* TRACK_TAIL.findall(text) into o->tails: 0, or -1 with an exception set.  Every match
 * holds the "k" of "pkts" two characters in, and nothing else in a table does but an odd
 * interface or option (no hex digit, state name or keyword has one), so memchr leads from
 * one to the next; a failed look resumes one character on, as sre's search.
 *
 * With unseen (NULL for tails()), sight(): each tail is taken out of `unseen` (the
 * tracker's states not yet seen this poll) if it is there; else it was seen before in
 * this poll (in `seen`, or a key of `known` no longer unseen: a repeat, counted) or it is
 * fresh (into `seen`, with its offset and the newlines before it).  Newlines are counted
 * as far as the fresh tails need, then to the end: one memchr pass per line. */
SCAN_INLINE int sight_into(const text_t *t, PyObject *text, PyObject *known,
                           PyObject *unseen, PyObject *seen, sight_t *o)
{
    Py_ssize_t p = 0, k, e, counted = 0;
    PyObject *s;
    int in;
    while ((k = find(t, p + 2, 'k')) >= 0) {
        if ((e = track_tail(t, k - 2)) < 0) {
            p = k - 1;
            continue;
        }
        PyObject *reused = unseen != NULL ? expected(t, k + 5, e, o) : NULL;
        if ((s = reused ? reused : PyUnicode_Substring(text, k + 5, e)) == NULL
            || PyList_Append(o->tails, s) < 0)
            goto fail;
        if (unseen == NULL) {
            Py_DECREF(s);
            p = e;
            continue;
        }
        in = 0;
        if (PyDict_GET_SIZE(unseen)) {
            if (PyDict_GetItemWithError(unseen, s) != NULL) {
                if (PyDict_DelItem(unseen, s) < 0)
                    goto fail;
                in = 1;
                if (!reused)
                    resync(s, o);
            } else if (PyErr_Occurred())
                goto fail;
        }
        if (!in) {
            if ((in = PySet_Contains(seen, s)) == 0)
                in = PyDict_Contains(known, s);
            if (in < 0)
                goto fail;
            if (in)
                o->repeats++;
            else {
                count_lines(t, &counted, k + 5, &o->nlines, &o->indented);
                if (PySet_Add(seen, s) < 0 || PyList_Append(o->fresh, s) < 0
                    || append_ssize(o->offsets, k + 5) < 0 || append_ssize(o->lines, o->nlines) < 0)
                    goto fail;
            }
        }
        Py_DECREF(s);
        p = e;
    }
    if (unseen != NULL)
        count_lines(t, &counted, t->end, &o->nlines, &o->indented);
    return 0;
fail:
    Py_XDECREF(s);
    return -1;
}

/* (text.count("\n"), text.count("\n ")): one memchr per line on the 1-byte kind. */
SCAN_INLINE void newlines(const text_t *t, Py_ssize_t *lines, Py_ssize_t *indented)
{
    Py_ssize_t at = 0;
    *lines = *indented = 0;
    count_lines(t, &at, t->end, lines, indented);
}

#define STEADY_OF_KIND(K)                                                                   \
    static int sight_##K(PyObject *text, const void *data, Py_ssize_t end, PyObject *known, \
                         PyObject *unseen, PyObject *seen, sight_t *o)                     \
    {                                                                                       \
        text_t t = {K, data, end};                                                          \
        return sight_into(&t, text, known, unseen, seen, o);                                \
    }                                                                                       \
    static void newlines_##K(const void *data, Py_ssize_t end, Py_ssize_t *n, Py_ssize_t *m) \
    {                                                                                       \
        text_t t = {K, data, end};                                                          \
        newlines(&t, n, m);                                                                 \
    }
STEADY_OF_KIND(PyUnicode_1BYTE_KIND)
STEADY_OF_KIND(PyUnicode_2BYTE_KIND)
STEADY_OF_KIND(PyUnicode_4BYTE_KIND)

static int ready_str(PyObject *text, const char *name)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s() argument must be str, not %.100s", name,
                     Py_TYPE(text)->tp_name);
        return -1;
    }
    return PyUnicode_READY(text);
}

PyDoc_STRVAR(tails_doc,
"tails(text) -> list of str\n\n"
"grammar.TRACK_TAIL.findall(text), in C.");

/* sight_into() on text of any kind (ready_str() done). */
static int scan(PyObject *text, PyObject *known, PyObject *unseen, PyObject *seen, sight_t *o)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t end = PyUnicode_GET_LENGTH(text);
    return kind == PyUnicode_1BYTE_KIND
               ? sight_PyUnicode_1BYTE_KIND(text, data, end, known, unseen, seen, o)
         : kind == PyUnicode_2BYTE_KIND
               ? sight_PyUnicode_2BYTE_KIND(text, data, end, known, unseen, seen, o)
               : sight_PyUnicode_4BYTE_KIND(text, data, end, known, unseen, seen, o);
}

static PyObject *fastscan_tails(PyObject *module, PyObject *text)
{
    sight_t o = {NULL, NULL, NULL, NULL, 0, 0, 0, NULL, 0, 0, 0};

    (void)module;
    if (ready_str(text, "tails") < 0 || (o.tails = PyList_New(0)) == NULL)
        return NULL;
    if (scan(text, NULL, NULL, NULL, &o))
        Py_CLEAR(o.tails);
    return o.tails;
}

/* (lines, heads) from the counts of newlines and of those a space follows. */
static Py_ssize_t heads_of(int kind, const void *data, Py_ssize_t end, Py_ssize_t lines,
                           Py_ssize_t indented)
{
    Py_ssize_t heads = lines - indented;
    if (end == 0 || PyUnicode_READ(kind, data, end - 1) != '\n')
        heads++;
    if (end > 0 && PyUnicode_READ(kind, data, 0) == ' ')
        heads--;
    return heads;
}

PyDoc_STRVAR(sight_doc,
"sight(text, known, unseen, seen, hint=None) -> (tails, fresh, offsets, lines, repeats,\n"
"nlines, heads)\n\n"
"fastscan.sight_regex(text, known, unseen, seen, hint), in one pass: the tails, each taken\n"
"out of the dict `unseen` or else counted a repeat (in the set `seen` or the dict `known`)\n"
"or else fresh (added to `seen`; its offset, and the newlines before it), and layout().\n"
"hint: [the last poll's tails in order, where in them to look next] (updated), whose\n"
"str is taken for a tail equal to it.");

static PyObject *fastscan_sight(PyObject *module, PyObject *args)
{
    PyObject *text, *known, *unseen, *seen, *hint = Py_None, *out = NULL;
    sight_t o = {NULL, NULL, NULL, NULL, 0, 0, 0, NULL, 0, 0, 0};
    int kind;
    const void *data;
    Py_ssize_t end;

    (void)module;
    if (!PyArg_ParseTuple(args, "OO!O!O!|O:sight", &text, &PyDict_Type, &known, &PyDict_Type,
                          &unseen, &PySet_Type, &seen, &hint))
        return NULL;
    if (ready_str(text, "sight") < 0)
        return NULL;
    if (hint != Py_None) {  /* [the last poll's tails, where the next one is looked for] */
        if (!PyList_CheckExact(hint) || PyList_GET_SIZE(hint) != 2
            || !PyList_CheckExact(PyList_GET_ITEM(hint, 0))
            || !PyLong_CheckExact(PyList_GET_ITEM(hint, 1))) {
            PyErr_SetString(PyExc_TypeError, "sight: hint must be [list, int] or None");
            return NULL;
        }
        o.at = PyLong_AsSsize_t(PyList_GET_ITEM(hint, 1));
        if (o.at == -1 && PyErr_Occurred())
            return NULL;
        if (o.at < 0)
            o.at = 0;
        o.prev = PyList_GET_ITEM(hint, 0);
        Py_INCREF(o.prev);  /* held while it is read, whatever becomes of hint */
    }
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    end = PyUnicode_GET_LENGTH(text);
    if ((o.tails = PyList_New(0)) == NULL || (o.fresh = PyList_New(0)) == NULL
        || (o.offsets = PyList_New(0)) == NULL || (o.lines = PyList_New(0)) == NULL)
        goto done;
    if (!scan(text, known, unseen, seen, &o)) {
        PyObject *at = o.prev ? PyLong_FromSsize_t(o.at) : NULL;
        if (o.prev && (at == NULL || PyList_SetItem(hint, 1, at) < 0))  /* steals at */
            goto done;
        out = Py_BuildValue("(OOOOnnn)", o.tails, o.fresh, o.offsets, o.lines, o.repeats,
                            o.nlines, heads_of(kind, data, end, o.nlines, o.indented));
    }
done:
    Py_XDECREF(o.prev);
    Py_XDECREF(o.tails);
    Py_XDECREF(o.fresh);
    Py_XDECREF(o.offsets);
    Py_XDECREF(o.lines);
    return out;
}

PyDoc_STRVAR(layout_doc,
"layout(text) -> (lines, heads)\n\n"
"fastscan.layout_regex(text), in C: text.count(\"\\n\"), and the lines that do not start\n"
"with a space (a last line without its newline counts).");

static PyObject *fastscan_layout(PyObject *module, PyObject *text)
{
    const void *data;
    Py_ssize_t end, lines, indented, heads;
    int kind;

    (void)module;
    if (ready_str(text, "layout") < 0)
        return NULL;
    kind = PyUnicode_KIND(text);
    data = PyUnicode_DATA(text);
    end = PyUnicode_GET_LENGTH(text);
    if (kind == PyUnicode_1BYTE_KIND)
        newlines_PyUnicode_1BYTE_KIND(data, end, &lines, &indented);
    else if (kind == PyUnicode_2BYTE_KIND)
        newlines_PyUnicode_2BYTE_KIND(data, end, &lines, &indented);
    else
        newlines_PyUnicode_4BYTE_KIND(data, end, &lines, &indented);
    heads = heads_of(kind, data, end, lines, indented);
    return Py_BuildValue("(nn)", lines, heads);
}

PyDoc_STRVAR(pairs_doc,
"pairs(tails, i, records, fresh) -> (pairs, lines) or None\n\n"
"fastscan.pairs_py(tails, i, records, fresh), in C: each record (a FastRecord of\n"
"findall()) paired with tails[i + j], checked to end with its id and creatorid;\n"
"(tail, record) of those whose tail is in the set `fresh` (None: all), and the lines\n"
"the records take.  None if a pair does not hold or the tails run out.");

#define TRACK_KEY 36  /* grammar.TRACK_KEY: "<16 hex> creatorid: <8 hex>" ends a tail */

static int nonempty(PyObject *o)
{
    return PyUnicode_Check(o) && PyUnicode_GET_LENGTH(o) > 0;
}

static PyObject *fastscan_pairs(PyObject *module, PyObject *args)
{
    PyObject *tails, *recs, *fresh, *out;
    Py_ssize_t i, k, lines = 0;

    (void)module;
    if (!PyArg_ParseTuple(args, "O!nO!O:pairs", &PyList_Type, &tails, &i, &PyList_Type, &recs,
                          &fresh))
        return NULL;
    if (fresh != Py_None && !PyAnySet_Check(fresh)) {
        PyErr_SetString(PyExc_TypeError, "pairs: fresh must be a set or None");
        return NULL;
    }
    k = PyList_GET_SIZE(recs);
    if (i < 0 || i + k > PyList_GET_SIZE(tails))
        Py_RETURN_NONE;
    if ((out = PyList_New(0)) == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *t = PyList_GET_ITEM(tails, i + j), *r = PyList_GET_ITEM(recs, j);
        if (!PyUnicode_Check(t) || !PyTuple_Check(r) || PyTuple_GET_SIZE(r) != NGROUPS)
            goto mismatch;
        PyObject *id = PyTuple_GET_ITEM(r, G_ID), *cid = PyTuple_GET_ITEM(r, G_CREATORID);
        Py_ssize_t n = PyUnicode_GET_LENGTH(t);
        /* t.endswith(creatorid) and t.startswith(id, len(t) - TRACK_KEY) */
        if (n < TRACK_KEY || !nonempty(id) || !nonempty(cid)
            || PyUnicode_Tailmatch(t, cid, 0, n, 1) != 1
            || PyUnicode_Tailmatch(t, id, n - TRACK_KEY, n, -1) != 1)
            goto mismatch;
        lines += 3 + nonempty(PyTuple_GET_ITEM(r, G_SEQ)) + nonempty(PyTuple_GET_ITEM(r, G_ORIGIF));
        int take = fresh == Py_None ? 1 : PySet_Contains(fresh, t);
        if (take < 0)
            goto fail;
        if (take) {
            PyObject *pair = PyTuple_Pack(2, t, r);
            if (pair == NULL || PyList_Append(out, pair) < 0) {
                Py_XDECREF(pair);
                goto fail;
            }
            Py_DECREF(pair);
        }
    }
    return Py_BuildValue("(Nn)", out, lines);
mismatch:
    PyErr_Clear();
    Py_DECREF(out);
    Py_RETURN_NONE;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef fastscan_methods[] = {
    {"findall", fastscan_findall, METH_VARARGS, findall_doc},
    {"tails", fastscan_tails, METH_O, tails_doc},
    {"layout", fastscan_layout, METH_O, layout_doc},
    {"sight", fastscan_sight, METH_VARARGS, sight_doc},
    {"pairs", fastscan_pairs, METH_VARARGS, pairs_doc},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef fastscan_module = {
    PyModuleDef_HEAD_INIT, "_fastscan",
    "grammar.FAST_RECORD's findall(), TRACK_TAIL's and the layout count in C (see\n"
    "pflowbsd/pf/fastscan.py).", -1, fastscan_methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__fastscan(void)
{
    if (empty == NULL && (empty = PyUnicode_FromStringAndSize("", 0)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&fastscan_module);
    /* what the Python side must agree on (tests/unit/test_fastscan.py asks) */
    if (m != NULL && (PyModule_AddIntConstant(m, "TRACK_KEY", TRACK_KEY) < 0
                      || PyModule_AddIntConstant(m, "RESYNC", RESYNC) < 0))
        Py_CLEAR(m);
    return m;
}
