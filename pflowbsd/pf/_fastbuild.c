/* The bulk builder's common case in C: record._build_py() for the records it can take
 * whole, so that a first sighting of 200,000 states does not cost 200,000 rounds of the
 * Python loop that sets a State's 31 slots.
 *
 * Strategy.  build(records, i, line, base, out) walks records[i:] (grammar.FastRecord
 * tuples, absent groups "" or None) and appends one State per record to the list out,
 * exactly as pflowbsd/pf/record.py's _build_py() would make it: the same words taken
 * from the same memo caches (tokens.SHARED, PROTOCOLS and their levels, NUMBER, PFLOW,
 * record._HOURS and _MMSS), the same Host tuples (shared by both keys where a side was
 * not translated), the same af, direction and state pair.  It stops at the first record
 * it does not take whole and returns (its index, its line): a word not in a cache yet,
 * an id line with extras (a route), a port or counter out of range or not plain ASCII
 * digits, anything not a str.  The caller builds that
 * one record in Python (which learns the word, or raises the ValueError that names what
 * is wrong) and calls again from the next, so every unusual record takes the reference
 * path and the two cannot disagree on one.  tests/unit/test_fastbuild.py checks them
 * against each other on the golden tables and under hypothesis.
 *
 * State's slots are written through the offsets of its member descriptors, found once
 * by setup() (which refuses a State whose slots are not the 31 listed here, and then
 * the pure path runs); a Host is a tuple subclass, made by its type's tp_alloc.
 *
 * More of the tracker's per-state steps live here for the same reason: pack_entry()
 * (flows.pack_entry's bytes for such a State), admit() (the same with its First and
 * Last, as a poll packs its new states; admit_all() over a batch), change() (a known
 * state's entry with its record's new counters, Sightings._counters' common case;
 * changes() over a chunk), gone() (the tracker's loop over the states a poll saw gone)
 * and keys_of() (the key -> tail map of the states a poll did not see).  Last, which takes
 * pf's timeout rules (Python's, pf/timeouts.py), is not worked out here: change() finds
 * it in a dict the caller fills, under a key of everything Last depends on, so each
 * poll works out one Last per (class words, `expires in`, rule), not one per state;
 * admit() finds a class's timeouts so, under timeouts.class_key().
 *
 * One file past the usual ~400 lines (some 1,300): the builder and the tracker's steps
 * share State's slot offsets, the memo caches setup() hands over and the one C copy of
 * flows.ENTRY's layout; one translation unit keeps those defined once and setup.py's
 * optional build one extension.  Each function has its Python reference and its tests.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

enum {
    G_IFNAME, G_PROTO, G_LA, G_LP4, G_LP6, G_LXA, G_LXP4, G_LXP6, G_GW1, G_ARROW,
    G_RA, G_RP4, G_RP6, G_RXA, G_RXP4, G_RXP6, G_GW2, G_STATE,
    G_SEQ, G_AGE_H, G_AGE_MS, G_EXP_H, G_EXP_MS, G_P0, G_P1, G_B0, G_B1, G_ANCHOR, G_RULE,
    G_OPTS, G_ID, G_CREATORID, G_IDX, G_ORIGIF, NGROUPS
};

/* State's slots, in the order of the offsets below. */
enum {
    S_IFNAME, S_PROTO, S_PROTO_NAME, S_AF, S_STACK_AF, S_DIRECTION, S_WIRE_SRC, S_WIRE_DST,
    S_STACK_SRC, S_STACK_DST, S_NAT, S_SRC_STATE, S_DST_STATE, S_STATE_TEXT, S_AGE_S,
    S_EXPIRES_IN_S, S_PACKETS, S_BYTES, S_RULE, S_ANCHOR, S_ID, S_CREATORID, S_PFLOW,
    S_ROUTE_ADDR, S_ROUTE, S_RTABLEID, S_ORIG_IFNAME, S_LINE, S_NLINES, S_TCP, S_FLAGS,
    NSLOTS
};
static const char *slot_names[NSLOTS] = {
    "ifname", "proto", "proto_name", "af", "stack_af", "direction", "wire_src", "wire_dst",
    "stack_src", "stack_dst", "nat", "src_state", "dst_state", "state_text", "age_s",
    "expires_in_s", "packets", "bytes", "rule", "anchor", "id", "creatorid", "pflow",
    "route_addr", "route", "rtableid", "orig_ifname", "line", "nlines", "_tcp", "_flags"
};

static Py_ssize_t offsets[NSLOTS];
static PyTypeObject *state_type, *host_type;
static PyObject *shared, *protocols, *hours, *mmss, *number, *pflow_of;
static PyObject *s_in, *s_out, *s_inet, *s_inet6, *s_empty, *s_cache, *zero_pair;
/* the last protocol word seen and its levels memo's cache (findall shares the word) */
static PyObject *last_proto, *last_levels;

#define MAX_PORT 65535

/* A group that took part: a non-empty str.  -1: not a str nor None (not ours). */
static inline int present(PyObject *o)
{
    if (o == Py_None)
        return 0;
    if (!PyUnicode_Check(o))
        return -1;
    return PyUnicode_GET_LENGTH(o) > 0;
}

/* A port: ASCII digits of an ASCII str up to MAX_PORT; -1 if not that. */
static long port_digits(PyObject *s)
{
    if (!PyUnicode_IS_ASCII(s))
        return -1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned d = p[i] - '0';
        if (d > 9 || (v = v * 10 + d) > MAX_PORT)
            return -1;
    }
    return n ? v : -1;
}

/* A counter: ASCII digits up to 2**64-1, as a new int; NULL (no error set) if not. */
static PyObject *counter(PyObject *s)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    if (n == 0 || n > 20)
        return NULL;
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned d = p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    return PyLong_FromUnsignedLongLong(v);
}

/* The port of a host: its ":p" or "[p]" group, 0 where it has none; -1: not ours. */
static long port_of(PyObject *p4, PyObject *p6)
{
    int a = present(p4), b = present(p6);
    if (a < 0 || b < 0)
        return -1;
    PyObject *p = a ? p4 : b ? p6 : NULL;
    if (p == NULL)
        return 0;
    return port_digits(p);
}

/* Host(addr, port, rdomain) of "addr" or "(rdomain) addr" (_rd_host()), or NULL with no
 * error set when the text is not ours and with one set when memory ran out. */
static PyObject *host(PyObject *text, long port)
{
    PyObject *addr = text, *rd = NULL;
    if (PyUnicode_READ_CHAR(text, 0) == '(') {
        Py_ssize_t n = PyUnicode_GET_LENGTH(text), close;
        if (!PyUnicode_IS_ASCII(text))
            return NULL;
        const char *p = (const char *)PyUnicode_1BYTE_DATA(text);
        const char *c = memchr(p, ')', (size_t)n);
        close = c ? c - p : -1;
        if (close < 2 || close > 10 || close + 2 >= n || p[close + 1] != ' ')
            return NULL;
        long v = 0;
        for (Py_ssize_t i = 1; i < close; i++) {
            if (p[i] < '0' || p[i] > '9')
                return NULL;
            v = v * 10 + (p[i] - '0');
        }
        if ((rd = PyLong_FromLong(v)) == NULL)
            return NULL;
        if ((addr = PyUnicode_Substring(text, close + 2, n)) == NULL) {
            Py_DECREF(rd);
            return NULL;
        }
    } else {
        Py_INCREF(addr);
        rd = PyLong_FromLong(0);
    }
    PyObject *h = host_type->tp_alloc(host_type, 3);
    PyObject *pt = h ? PyLong_FromLong(port) : NULL;
    if (pt == NULL) {
        Py_XDECREF(h);
        Py_DECREF(addr);
        Py_XDECREF(rd);
        return NULL;
    }
    PyTuple_SET_ITEM(h, 0, addr);
    PyTuple_SET_ITEM(h, 1, pt);
    PyTuple_SET_ITEM(h, 2, rd);
    return h;
}

static inline int has_colon(PyObject *s)
{
    return PyUnicode_FindChar(s, ':', 0, PyUnicode_GET_LENGTH(s), 1) >= 0;
}

/* d[key] borrowed, NULL (no error) when missing or key is not hashable alike. */
static inline PyObject *lookup(PyObject *d, PyObject *key)
{
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

static inline void put(PyObject *st, int slot, PyObject *v)
{
    PyObject **at = (PyObject **)((char *)st + offsets[slot]);
    PyObject *old = *at;
    *at = v;  /* a new reference */
    Py_XDECREF(old);
}

static inline void put_ref(PyObject *st, int slot, PyObject *v)
{
    Py_INCREF(v);
    put(st, slot, v);
}

/* One record -> a new State; NULL with no error set: not ours (the caller builds it in
 * Python); NULL with an error set: out of memory. */
static PyObject *build_one(PyObject *rec, long line, long base)
{
    if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) != NGROUPS)
        return NULL;
    PyObject **g = &PyTuple_GET_ITEM(rec, 0);
    int age_p, opts_p, cid_p, lx_p, rx_p, seq_p, id_p, origif_p, gw1_p, gw2_p, an_p, ru_p;
    if ((age_p = present(g[G_AGE_H])) < 0 || (opts_p = present(g[G_OPTS])) < 0
        || (cid_p = present(g[G_CREATORID])) < 0 || (lx_p = present(g[G_LXA])) < 0
        || (rx_p = present(g[G_RXA])) < 0 || (seq_p = present(g[G_SEQ])) < 0
        || (id_p = present(g[G_ID])) < 0 || (origif_p = present(g[G_ORIGIF])) < 0
        || (gw1_p = present(g[G_GW1])) < 0 || (gw2_p = present(g[G_GW2])) < 0
        || (an_p = present(g[G_ANCHOR])) < 0 || (ru_p = present(g[G_RULE])) < 0
        || present(g[G_IDX]) != 0 || present(g[G_LA]) != 1 || present(g[G_RA]) != 1
        || present(g[G_ARROW]) < 0 || !PyUnicode_Check(g[G_AGE_H])
        || !PyUnicode_Check(g[G_EXP_H]))  /* (the reference takes their len()) */
        return NULL;
    /* the words, from the caches the Python builder reads */
    PyObject *ifname = lookup(shared, g[G_IFNAME]);
    PyObject *pt = lookup(protocols, g[G_PROTO]);
    if (ifname == NULL || pt == NULL || !PyTuple_Check(pt) || PyTuple_GET_SIZE(pt) != 3)
        return NULL;
    PyObject *levels;
    if (g[G_PROTO] == last_proto && last_levels != NULL) {
        levels = last_levels;
    } else {
        PyObject *c = PyObject_GetAttr(PyTuple_GET_ITEM(pt, 2), s_cache);
        if (c == NULL || !PyDict_Check(c)) {
            PyErr_Clear();
            Py_XDECREF(c);
            return NULL;
        }
        Py_XSETREF(last_levels, c);
        Py_INCREF(g[G_PROTO]);
        Py_XSETREF(last_proto, g[G_PROTO]);
        levels = c;
    }
    PyObject *lvl = lookup(levels, g[G_STATE]);
    if (lvl == NULL || !PyTuple_Check(lvl) || PyTuple_GET_SIZE(lvl) != 3)
        return NULL;
    long age = 0, expires = 0;
    if (age_p) {
        if (PyUnicode_GET_LENGTH(g[G_AGE_H]) > 12 || present(g[G_EXP_H]) != 1
            || PyUnicode_GET_LENGTH(g[G_EXP_H]) > 12)
            return NULL;
        PyObject *ah = lookup(hours, g[G_AGE_H]), *am = lookup(mmss, g[G_AGE_MS]);
        PyObject *eh = lookup(hours, g[G_EXP_H]), *em = lookup(mmss, g[G_EXP_MS]);
        if (ah == NULL || am == NULL || eh == NULL || em == NULL || !PyLong_CheckExact(ah)
            || !PyLong_CheckExact(am) || !PyLong_CheckExact(eh) || !PyLong_CheckExact(em))
            return NULL;
        age = PyLong_AsLong(ah) + PyLong_AsLong(am);
        expires = PyLong_AsLong(eh) + PyLong_AsLong(em);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return NULL;
        }
    }
    PyObject *anchor = Py_None, *rule = Py_None;
    if (an_p && (anchor = lookup(number, g[G_ANCHOR])) == NULL)
        return NULL;
    if (ru_p && (rule = lookup(number, g[G_RULE])) == NULL)
        return NULL;
    PyObject *pflow = Py_False, *flags = s_empty;
    if (opts_p) {
        PyObject *pf = lookup(pflow_of, g[G_OPTS]);
        if (pf == NULL || !PyTuple_Check(pf) || PyTuple_GET_SIZE(pf) != 2)
            return NULL;
        pflow = PyTuple_GET_ITEM(pf, 0);
        flags = PyTuple_GET_ITEM(pf, 1);
    }
    PyObject *creatorid = Py_None;
    if (cid_p && (creatorid = lookup(shared, g[G_CREATORID])) == NULL)
        return NULL;
    long lp = port_of(g[G_LP4], g[G_LP6]), rp = port_of(g[G_RP4], g[G_RP6]);
    long lxp = lx_p ? port_of(g[G_LXP4], g[G_LXP6]) : 0;
    long rxp = rx_p ? port_of(g[G_RXP4], g[G_RXP6]) : 0;
    if (lp < 0 || rp < 0 || lxp < 0 || rxp < 0)
        return NULL;
    PyObject *pk0 = NULL, *pk1 = NULL, *by0 = NULL, *by1 = NULL;
    if (age_p) {
        if ((pk0 = counter(g[G_P0])) == NULL || (pk1 = counter(g[G_P1])) == NULL
            || (by0 = counter(g[G_B0])) == NULL || (by1 = counter(g[G_B1])) == NULL) {
            Py_XDECREF(pk0);
            Py_XDECREF(pk1);
            Py_XDECREF(by0);
            return NULL;  /* past 64 bits, or an error: the Python builder says which */
        }
    }
    /* the hosts: a side not translated shares one Host for both keys */
    PyObject *left = NULL, *right = NULL, *left_x = NULL, *right_x = NULL, *st = NULL;
    if ((left = host(g[G_LA], lp)) == NULL || (right = host(g[G_RA], rp)) == NULL)
        goto fail;
    if (lx_p) {
        if ((left_x = host(g[G_LXA], lxp)) == NULL)
            goto fail;
    } else {
        Py_INCREF(left);
        left_x = left;
    }
    if (rx_p) {
        if ((right_x = host(g[G_RXA], rxp)) == NULL)
            goto fail;
    } else {
        Py_INCREF(right);
        right_x = right;
    }
    if ((st = state_type->tp_alloc(state_type, 0)) == NULL)
        goto fail;
    put_ref(st, S_IFNAME, ifname);
    put_ref(st, S_PROTO, PyTuple_GET_ITEM(pt, 0));
    put_ref(st, S_PROTO_NAME, PyTuple_GET_ITEM(pt, 1));
    put_ref(st, S_STATE_TEXT, PyTuple_GET_ITEM(lvl, 2));
    put_ref(st, S_NAT, lx_p || rx_p ? Py_True : Py_False);
    PyObject *lv = PyTuple_GET_ITEM(lvl, 0), *rv = PyTuple_GET_ITEM(lvl, 1);
    int l6 = has_colon(g[G_LA]);
    int lx6 = lx_p ? has_colon(g[G_LXA]) : l6;
    if (present(g[G_ARROW])) {  /* "<-" */
        put_ref(st, S_DIRECTION, s_in);
        put(st, S_STACK_DST, left);
        put(st, S_WIRE_DST, left_x);
        put(st, S_STACK_SRC, right);
        put(st, S_WIRE_SRC, right_x);
        put_ref(st, S_AF, has_colon(PyTuple_GET_ITEM(right_x, 0)) ? s_inet6 : s_inet);
        put_ref(st, S_STACK_AF, has_colon(g[G_RA]) ? s_inet6 : s_inet);
        put_ref(st, S_SRC_STATE, rv);
        put_ref(st, S_DST_STATE, lv);
    } else if (l6 != lx6) {  /* af-to: inbound, printed "->" */
        put_ref(st, S_DIRECTION, s_in);
        put(st, S_STACK_SRC, left);
        put(st, S_WIRE_SRC, left_x);
        put(st, S_STACK_DST, right);
        put(st, S_WIRE_DST, right_x);
        put_ref(st, S_AF, lx6 ? s_inet6 : s_inet);
        put_ref(st, S_STACK_AF, l6 ? s_inet6 : s_inet);
        put_ref(st, S_SRC_STATE, rv);
        put_ref(st, S_DST_STATE, lv);
    } else {
        put_ref(st, S_DIRECTION, s_out);
        put(st, S_WIRE_SRC, left);
        put(st, S_STACK_SRC, left_x);
        put(st, S_WIRE_DST, right);
        put(st, S_STACK_DST, right_x);
        put_ref(st, S_AF, l6 ? s_inet6 : s_inet);
        put_ref(st, S_STACK_AF, l6 ? s_inet6 : s_inet);
        put_ref(st, S_SRC_STATE, lv);
        put_ref(st, S_DST_STATE, rv);
    }
    left = right = left_x = right_x = NULL;  /* the State holds them now */
    long nl = base;
    if (seq_p) {
        put_ref(st, S_TCP, g[G_SEQ]);
        nl++;
    } else {
        put_ref(st, S_TCP, Py_None);
    }
    if (age_p) {
        PyObject *a = PyLong_FromLong(age), *e = PyLong_FromLong(expires);
        PyObject *pk = PyTuple_Pack(2, pk0, pk1), *by = PyTuple_Pack(2, by0, by1);
        Py_CLEAR(pk0);
        Py_CLEAR(pk1);
        Py_CLEAR(by0);
        Py_CLEAR(by1);
        if (a == NULL || e == NULL || pk == NULL || by == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(e);
            Py_XDECREF(pk);
            Py_XDECREF(by);
            goto fail;
        }
        put(st, S_AGE_S, a);
        put(st, S_EXPIRES_IN_S, e);
        put(st, S_PACKETS, pk);
        put(st, S_BYTES, by);
    } else {
        put_ref(st, S_AGE_S, Py_None);
        put_ref(st, S_EXPIRES_IN_S, Py_None);
        put_ref(st, S_PACKETS, zero_pair);
        put_ref(st, S_BYTES, zero_pair);
    }
    put_ref(st, S_ANCHOR, anchor);
    put_ref(st, S_RULE, rule);
    put_ref(st, S_PFLOW, pflow);
    put_ref(st, S_FLAGS, flags);
    put_ref(st, S_ID, id_p ? g[G_ID] : Py_None);
    put_ref(st, S_CREATORID, creatorid);
    if (origif_p) {
        put_ref(st, S_ORIG_IFNAME, g[G_ORIGIF]);
        nl++;
    } else {
        put_ref(st, S_ORIG_IFNAME, id_p ? ifname : Py_None);
    }
    put_ref(st, S_ROUTE_ADDR, gw1_p ? g[G_GW1] : gw2_p ? g[G_GW2] : Py_None);
    put_ref(st, S_ROUTE, Py_None);
    put_ref(st, S_RTABLEID, Py_None);
    PyObject *ln = PyLong_FromLong(line), *nn = PyLong_FromLong(nl);
    if (ln == NULL || nn == NULL) {
        Py_XDECREF(ln);
        Py_XDECREF(nn);
        goto fail;
    }
    put(st, S_LINE, ln);
    put(st, S_NLINES, nn);
    return st;
fail:
    Py_XDECREF(pk0);
    Py_XDECREF(pk1);
    Py_XDECREF(by0);
    Py_XDECREF(by1);
    Py_XDECREF(left);
    Py_XDECREF(right);
    Py_XDECREF(left_x);
    Py_XDECREF(right_x);
    Py_XDECREF(st);
    return NULL;
}

PyDoc_STRVAR(build_doc,
"build(records, i, line, base, out) -> (i, line)\n\n"
"Append to the list out a State per record of the list records from index i on, as\n"
"record._build_py() makes it, up to the first record this does not take whole; return\n"
"that record's index (len(records) when done) and its line number.");

static PyObject *fastbuild_build(PyObject *module, PyObject *args)
{
    PyObject *records, *out;
    Py_ssize_t i;
    long line, base;
    if (!PyArg_ParseTuple(args, "O!nllO!:build", &PyList_Type, &records, &i, &line, &base,
                          &PyList_Type, &out))
        return NULL;
    if (state_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fastbuild.setup() was not called");
        return NULL;
    }
    if (i < 0)
        i = 0;
    for (; i < PyList_GET_SIZE(records); i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        Py_INCREF(rec);
        PyObject *st = build_one(rec, line, base);
        Py_DECREF(rec);
        if (st == NULL) {
            if (PyErr_Occurred())
                return NULL;
            break;
        }
        long nl = PyLong_AsLong(*(PyObject **)((char *)st + offsets[S_NLINES]));
        int r = PyList_Append(out, st);
        Py_DECREF(st);
        if (r < 0)
            return NULL;
        line += nl;
    }
    return Py_BuildValue("(nl)", i, line);
}

/* ---- flows.pack_entry()'s common case ------------------------------------------------- */

static inline void le16(unsigned char *p, uint64_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void le64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static inline PyObject *slot(PyObject *st, int k)
{
    return *(PyObject **)((char *)st + offsets[k]);
}

/* AF_INET / AF_INET6 of "inet" / "inet6"; 0 for anything else. */
static int family(PyObject *af)
{
    if (af == s_inet || (PyUnicode_Check(af) && PyUnicode_CompareWithASCIIString(af, "inet") == 0))
        return AF_INET;
    if (af == s_inet6 || (PyUnicode_Check(af) && PyUnicode_CompareWithASCIIString(af, "inet6") == 0))
        return AF_INET6;
    return 0;
}

/* A Host's (addr, port) checked: 1 if an ASCII str and an int in 0..65535. */
static int host_ok(PyObject *h, long *port)
{
    if (!PyTuple_Check(h) || PyTuple_GET_SIZE(h) < 2)
        return 0;
    PyObject *a = PyTuple_GET_ITEM(h, 0), *p = PyTuple_GET_ITEM(h, 1);
    if (!PyUnicode_Check(a) || !PyUnicode_IS_ASCII(a) || !PyLong_CheckExact(p))
        return 0;
    *port = PyLong_AsLong(p);
    if (*port < 0 || *port > MAX_PORT) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* inet_pton() of a Host's address into out; 0 if it does not take it. */
static int pton(int fam, PyObject *h, unsigned char *out)
{
    PyObject *a = PyTuple_GET_ITEM(h, 0);
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    const char *text = (const char *)PyUnicode_1BYTE_DATA(a);
    if ((Py_ssize_t)strlen(text) != n)
        return 0;
    return inet_pton(fam, text, out) == 1;
}

/* Two ints of a (packets or bytes) pair as uint64; 0 if not that. */
static int pair(PyObject *t, uint64_t *a, uint64_t *b)
{
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2)
        return 0;
    PyObject *x = PyTuple_GET_ITEM(t, 0), *y = PyTuple_GET_ITEM(t, 1);
    if (!PyLong_CheckExact(x) || !PyLong_CheckExact(y))
        return 0;
    *a = PyLong_AsUnsignedLongLong(x);
    *b = PyLong_AsUnsignedLongLong(y);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static int same_host(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    int r = PyObject_RichCompareBool(PyTuple_GET_ITEM(a, 0), PyTuple_GET_ITEM(b, 0), Py_EQ);
    if (r != 1) {
        PyErr_Clear();
        return 0;
    }
    r = PyObject_RichCompareBool(PyTuple_GET_ITEM(a, 1), PyTuple_GET_ITEM(b, 1), Py_EQ);
    if (r != 1)
        PyErr_Clear();
    return r == 1;
}

/* flows.ENTRY and its flags, as packed below: flows.py takes this path only while its
 * (ENTRY.format, NATTED, INET6, OUTBOUND) equals the module's ENTRY_LAYOUT. */
#define ENTRY_FORMAT "<BBHHiiQQQQHH"
#define ENTRY_SIZE 50
#define E_FIRST 6      /* first, then last: uptime seconds, int32 (flows.clamp_time) */
#define E_LAST 10
#define E_COUNTERS 14  /* packets[0], packets[1], bytes[0], bytes[1]: uint64 */
#define E_IFINDEX 46   /* if_index_in, if_index_out: uint16 */
#define NATTED 0x01
#define INET6 0x02
#define OUTBOUND 0x04

/* An uptime second into an entry, clamped as flows.clamp_time() does, and back. */
static inline void put_time(unsigned char *p, long long t)
{
    uint32_t v = (uint32_t)(t < -INT32_MAX ? -INT32_MAX : t > INT32_MAX ? INT32_MAX : (int32_t)t);
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static inline long long get_time(const unsigned char *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)v;
}

PyDoc_STRVAR(pack_entry_doc,
"pack_entry(state, first, last, if_in, if_out) -> bytes or None\n\n"
"flows.pack_entry()'s bytes for a State build() could have made; None where that one\n"
"must decide (an address inet_pton() refuses, a value out of its field's range).");

static PyObject *pack(PyObject *st, long long first, long long last, unsigned long long ifin,
                      unsigned long long ifout);

static PyObject *fastbuild_pack_entry(PyObject *module, PyObject *args)
{
    PyObject *st, *first_o, *last_o, *ifin_o, *ifout_o;
    if (!PyArg_ParseTuple(args, "OOOOO:pack_entry", &st, &first_o, &last_o, &ifin_o, &ifout_o))
        return NULL;
    if (state_type == NULL || !Py_IS_TYPE(st, state_type) || !PyLong_Check(first_o)
        || !PyLong_Check(last_o) || !PyLong_Check(ifin_o) || !PyLong_Check(ifout_o))
        Py_RETURN_NONE;
    long long first = PyLong_AsLongLong(first_o), last = PyLong_AsLongLong(last_o);
    unsigned long long ifin = PyLong_AsUnsignedLongLongMask(ifin_o);
    unsigned long long ifout = PyLong_AsUnsignedLongLongMask(ifout_o);
    if (PyErr_Occurred()) {  /* past 64 bits: struct.error, the Python one's to raise */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return pack(st, first, last, ifin, ifout);
}

/* pack_entry() of a State, its numbers read; None where the Python packer must decide. */
static PyObject *pack(PyObject *st, long long first, long long last, unsigned long long ifin,
                      unsigned long long ifout)
{
    for (int k = 0; k < NSLOTS; k++)
        if (slot(st, k) == NULL)
            Py_RETURN_NONE;
    PyObject *dir = slot(st, S_DIRECTION);
    int in;
    if (dir == s_in || dir == s_out)
        in = dir == s_in;
    else if (PyUnicode_Check(dir) && PyUnicode_CompareWithASCIIString(dir, "in") == 0)
        in = 1;
    else if (PyUnicode_Check(dir) && PyUnicode_CompareWithASCIIString(dir, "out") == 0)
        in = 0;
    else
        Py_RETURN_NONE;
    PyObject *af, *src, *dst, *oaf, *osrc, *odst;
    if (in) {
        af = slot(st, S_AF), src = slot(st, S_WIRE_SRC), dst = slot(st, S_WIRE_DST);
        oaf = slot(st, S_STACK_AF), osrc = slot(st, S_STACK_SRC), odst = slot(st, S_STACK_DST);
    } else {
        af = slot(st, S_STACK_AF), src = slot(st, S_STACK_SRC), dst = slot(st, S_STACK_DST);
        oaf = slot(st, S_AF), osrc = slot(st, S_WIRE_SRC), odst = slot(st, S_WIRE_DST);
    }
    int fam = family(af), ofam = family(oaf);
    long sp, dp, osp, odp;
    uint64_t p0, p1, b0, b1;
    PyObject *proto = slot(st, S_PROTO);
    long pr = PyLong_CheckExact(proto) ? PyLong_AsLong(proto) : -1;
    if (pr < 0 || pr > 255 || !fam || !ofam || !host_ok(src, &sp) || !host_ok(dst, &dp)
        || !host_ok(osrc, &osp) || !host_ok(odst, &odp)
        || !pair(slot(st, S_PACKETS), &p0, &p1) || !pair(slot(st, S_BYTES), &b0, &b1)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int natted = fam == ofam && (osrc != src || odst != dst)
                 && (!same_host(osrc, src) || !same_host(odst, dst));
    Py_ssize_t n = fam == AF_INET6 ? 16 : 4;
    unsigned char buf[ENTRY_SIZE + 4 + 4 * 16];
    unsigned char *p = buf;
    p[0] = (natted ? NATTED : 0) | (fam == AF_INET6 ? INET6 : 0) | (in ? 0 : OUTBOUND);
    p[1] = (unsigned char)pr;
    le16(p + 2, (uint64_t)sp);
    le16(p + 4, (uint64_t)dp);
    put_time(p + E_FIRST, first);
    put_time(p + E_LAST, last);
    le64(p + E_COUNTERS, p0);
    le64(p + E_COUNTERS + 8, p1);
    le64(p + E_COUNTERS + 16, b0);
    le64(p + E_COUNTERS + 24, b1);
    le16(p + E_IFINDEX, (uint64_t)(ifin & 0xFFFF));
    le16(p + E_IFINDEX + 2, (uint64_t)(ifout & 0xFFFF));
    p += ENTRY_SIZE;
    if (!pton(fam, src, p) || !pton(fam, dst, p + n))
        Py_RETURN_NONE;
    p += 2 * n;
    if (natted) {
        le16(p, (uint64_t)osp);
        le16(p + 2, (uint64_t)odp);
        if (!pton(fam, osrc, p + 4) || !pton(fam, odst, p + 4 + n))
            Py_RETURN_NONE;
        p += 4 + 2 * n;
    } else if (ofam != fam) {  /* af-to: the other key, unpacked, still checked */
        unsigned char scratch[16];
        if (!pton(ofam, osrc, scratch) || !pton(ofam, odst, scratch))
            Py_RETURN_NONE;
    }
    return PyBytes_FromStringAndSize((const char *)buf, p - buf);
}

/* d[key] (borrowed) for a key just made (NULL: an error), the key dropped; NULL if d
 * lacks it, with *missing the key (a new reference, the caller's to return), or with
 * *missing NULL and an exception set. */
static PyObject *memo_get(PyObject *d, PyObject *key, PyObject **missing)
{
    *missing = NULL;
    if (key == NULL)
        return NULL;
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL) {
        if (PyErr_Occurred())
            Py_DECREF(key);
        else
            *missing = key;
        return NULL;
    }
    Py_DECREF(key);
    return v;
}

/* A METH_FASTCALL function's argument count: 1, or 0 with TypeError set. */
static int nargs_are(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 1;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return 0;
}

PyDoc_STRVAR(admit_doc,
"admit(state, now, poll, known) -> bytes, tuple or None\n\n"
"A new state's entry as Sightings._admit() packs it with no rule of its own timeouts and\n"
"no interface table: pack_entry(state, now - age, Last, 0, 0), Last as Policy.last_packet()\n"
"works it out, from `known` (Policy.known_classes(): timeouts.class_key(state) -> (its\n"
"class's timeout, the longer alternative's) or None).  The key, when `known` lacks it\n"
"(the caller learns it and asks again); None where the Python path must decide.");

static PyObject *admit_one(PyObject *st, PyObject *now_o, PyObject *poll_o, PyObject *known);

static PyObject *fastbuild_admit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (!nargs_are("admit", nargs, 4))
        return NULL;
    return admit_one(args[0], args[1], args[2], args[3]);
}

static PyObject *admit_one(PyObject *st, PyObject *now_o, PyObject *poll_o, PyObject *known)
{
    if (state_type == NULL || !Py_IS_TYPE(st, state_type) || !PyLong_CheckExact(now_o)
        || !(PyFloat_CheckExact(poll_o) || PyLong_CheckExact(poll_o)) || !PyDict_CheckExact(known))
        Py_RETURN_NONE;
    for (int k = 0; k < NSLOTS; k++)
        if (slot(st, k) == NULL)
            Py_RETURN_NONE;
    double poll = PyFloat_CheckExact(poll_o) ? PyFloat_AS_DOUBLE(poll_o) : PyLong_AsDouble(poll_o);
    long long now = PyLong_AsLongLong(now_o), age = 0;
    PyObject *age_o = slot(st, S_AGE_S), *exp_o = slot(st, S_EXPIRES_IN_S);
    if (age_o != Py_None && !PyLong_CheckExact(age_o))
        Py_RETURN_NONE;
    if (age_o != Py_None)
        age = PyLong_AsLongLong(age_o);
    /* int(poll) below, and the numbers to 2^53 that a double holds exactly */
    if (PyErr_Occurred() || !(poll > -9e15 && poll < 9e15) || now > (1LL << 53)
        || now < -(1LL << 53) || age > (1LL << 53) || age < -(1LL << 53)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    long long last = (long long)poll;  /* int(poll): Last unknown */
    if (exp_o != Py_None) {
        uint64_t p0, p1;
        if (!PyLong_CheckExact(exp_o) || !pair(slot(st, S_PACKETS), &p0, &p1)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        long long remaining = PyLong_AsLongLong(exp_o);
        if ((remaining == -1 && PyErr_Occurred()) || remaining > (1LL << 53)
            || remaining < -(1LL << 53)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        /* timeouts.class_key(): what the class functions read */
        PyObject *key = PyTuple_Pack(7, slot(st, S_PROTO), slot(st, S_STATE_TEXT),
                                     slot(st, S_SRC_STATE), slot(st, S_DST_STATE),
                                     p0 <= 1 ? Py_True : Py_False,
                                     p0 <= 1 && p1 <= 1 - p0 ? Py_True : Py_False,
                                     p1 > 0 ? Py_True : Py_False);
        PyObject *missing, *ts = memo_get(known, key, &missing);
        if (ts == NULL)
            return missing;  /* the key to learn, or NULL: an error */
        if (ts != Py_None) {
            if (!PyTuple_CheckExact(ts) || PyTuple_GET_SIZE(ts) != 2
                || !PyLong_CheckExact(PyTuple_GET_ITEM(ts, 0))
                || !PyLong_CheckExact(PyTuple_GET_ITEM(ts, 1)))
                Py_RETURN_NONE;
            long long t = PyLong_AsLongLong(PyTuple_GET_ITEM(ts, 0));
            long long alt = PyLong_AsLongLong(PyTuple_GET_ITEM(ts, 1));
            if (PyErr_Occurred() || t > (1LL << 53) || t < 0 || alt > (1LL << 53) || alt < 0) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            if (remaining > t) {  /* the longer alternative; past even that: read as 0 */
                t = alt;
                if (remaining > t)
                    remaining = 0;
            }
            last = (long long)(poll - (double)(t - remaining));
        }
    }
    return pack(st, now - age, last, 0, 0);
}

PyDoc_STRVAR(admit_all_doc,
"admit_all(tails, states, i, entries, select, now, poll, known, added) -> int\n\n"
"Sightings._admit_all()'s loop from states[i] on: each state select() takes whose admit()\n"
"is an entry is set in `entries` under its tail (tails[i], ...) and the tail appended to\n"
"the list `added`.  It stops at the first state it leaves to Python (not selected, a\n"
"class not learnt yet, anything admit() leaves, select() raising ValueError) and returns\n"
"its index, or len(states): the caller admits that one and calls again from the next.\n"
"Any other exception select() raises is raised, as from the Python step.");

static PyObject *fastbuild_admit_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (!nargs_are("admit_all", nargs, 9))
        return NULL;
    PyObject *tails = args[0], *states = args[1], *entries = args[3], *select = args[4];
    PyObject *added = args[8];
    if (!PyList_CheckExact(tails) || !PyList_CheckExact(states) || !PyLong_CheckExact(args[2])
        || !PyDict_CheckExact(entries) || !PyList_CheckExact(added)
        || PyList_GET_SIZE(tails) != PyList_GET_SIZE(states)) {
        PyErr_SetString(PyExc_TypeError,
                        "admit_all(list, list of the same length, int, dict, select, now, poll, "
                        "known, list)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[2]), n = PyList_GET_SIZE(states);
    if (i < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "admit_all: a negative index");
        return NULL;
    }
    for (; i < n; i++) {
        PyObject *st = PyList_GET_ITEM(states, i), *t = PyList_GET_ITEM(tails, i);
        PyObject *r = PyObject_CallOneArg(select, st);
        int take = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (take < 0 && !PyErr_ExceptionMatches(PyExc_ValueError))
            return NULL;  /* as Python's step lets it through */
        if (take != 1) {  /* Python's step asks again, and records a ValueError */
            PyErr_Clear();
            break;
        }
        PyObject *entry = admit_one(st, args[5], args[6], args[7]);
        if (entry == NULL)
            return NULL;
        if (!PyBytes_CheckExact(entry)) {
            Py_DECREF(entry);
            break;
        }
        int bad = PyDict_SetItem(entries, t, entry) < 0 || PyList_Append(added, t) < 0;
        Py_DECREF(entry);
        if (bad)
            return NULL;
    }
    return PyLong_FromSsize_t(i);
}

/* ---- a known state's counters: counters.read_change() and Sightings._counters() ----- */

/* ASCII digits of a str as a uint64; 0 if not that or past 64 bits. */
static int digits64(PyObject *s, uint64_t *out)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    if (n == 0 || n > 20)
        return 0;
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned d = p[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

static inline uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | p[k];
    return v;
}

/* Whether a host's text and port groups are the entry's packed address and port
 * (flows.key_is()); -1: not ours to say (a routing domain, not ASCII, a bad port). */
static int same_key_host(PyObject *a, PyObject *p4, PyObject *p6, int fam,
                         const unsigned char *addr, long port)
{
    if (present(a) != 1 || !PyUnicode_IS_ASCII(a) || PyUnicode_READ_CHAR(a, 0) == '(')
        return -1;
    long pt = port_of(p4, p6);
    if (pt < 0)
        return -1;
    const char *text = (const char *)PyUnicode_1BYTE_DATA(a);
    unsigned char packed[16];
    if ((Py_ssize_t)strlen(text) != PyUnicode_GET_LENGTH(a) || inet_pton(fam, text, packed) != 1)
        return -1;
    return pt == port && memcmp(packed, addr, fam == AF_INET6 ? 16 : 4) == 0;
}

PyDoc_STRVAR(change_doc,
"change(record, entry, lasts) -> bytes, tuple or None\n\n"
"A known state's entry with its record's counters (Sightings._counters()' common case,\n"
"record a grammar.FastRecord): the same bytes flows.with_update() makes, Last taken from\n"
"the dict lasts under what decides it (the protocol and state words, `expires in`, the\n"
"anchor and rule, the side the state pair is read from, what of the packet counts\n"
"timeouts.timeout_class() asks: p0 <= 1, p0 + p1 <= 1, p1 > 0).  That\n"
"key, a tuple, is returned when lasts does not hold it yet: the caller works Last out in\n"
"Python and stores it there.  None where the Python path must decide: a routing domain,\n"
"an hours field past 12 digits, a counter past 64 bits or gone down, another pflow key.");

static PyObject *change_one(PyObject *rec, PyObject *entry, PyObject *lasts);

static PyObject *fastbuild_change(PyObject *module, PyObject *args)
{
    PyObject *rec, *entry, *lasts;
    if (!PyArg_ParseTuple(args, "O!O!O!:change", &PyTuple_Type, &rec, &PyBytes_Type, &entry,
                          &PyDict_Type, &lasts))
        return NULL;
    return change_one(rec, entry, lasts);
}

/* change() of a tuple and a dict; None for an entry that is not bytes (not selected). */
static PyObject *change_one(PyObject *rec, PyObject *entry, PyObject *lasts)
{
    if (!PyBytes_CheckExact(entry) || PyTuple_GET_SIZE(rec) != NGROUPS)
        Py_RETURN_NONE;
    PyObject **g = &PyTuple_GET_ITEM(rec, 0);
    const unsigned char *e = (const unsigned char *)PyBytes_AS_STRING(entry);
    Py_ssize_t elen = PyBytes_GET_SIZE(entry);
    if (elen < ENTRY_SIZE)
        Py_RETURN_NONE;
    int fam = e[0] & INET6 ? AF_INET6 : AF_INET;
    Py_ssize_t n = fam == AF_INET6 ? 16 : 4;
    if (elen < ENTRY_SIZE + 2 * n)
        Py_RETURN_NONE;
    for (int k = 0; k < NGROUPS; k++)
        if (present(g[k]) < 0)
            Py_RETURN_NONE;
    if (present(g[G_LA]) != 1 || present(g[G_RA]) != 1 || PyUnicode_READ_CHAR(g[G_LA], 0) == '('
        || PyUnicode_READ_CHAR(g[G_RA], 0) == '(' || PyUnicode_GET_LENGTH(g[G_AGE_H]) > 12
        || PyUnicode_GET_LENGTH(g[G_EXP_H]) > 12)
        Py_RETURN_NONE;
    /* an age read_change() reads (its words are known to it, as the rest are to lasts) */
    if (hours == NULL || mmss == NULL || lookup(hours, g[G_AGE_H]) == NULL
        || lookup(mmss, g[G_AGE_MS]) == NULL)
        Py_RETURN_NONE;
    /* the pflow key's hosts, as read_change() picks them, and the side of the state pair */
    int arrow = present(g[G_ARROW]), lx = present(g[G_LXA]), rx = present(g[G_RXA]);
    int sa, da, side;
    if (arrow) {
        sa = rx ? G_RXA : G_RA;
        da = lx ? G_LXA : G_LA;
        side = 1;
    } else {
        sa = lx ? G_LXA : G_LA;
        da = rx ? G_RXA : G_RA;
        side = lx && has_colon(g[G_LXA]) != has_colon(g[G_LA]) ? 2 : 0;  /* af-to */
    }
    long sport = (long)e[2] | (long)e[3] << 8, dport = (long)e[4] | (long)e[5] << 8;
    if (same_key_host(g[sa], g[sa + 1], g[sa + 2], fam, e + ENTRY_SIZE, sport) != 1
        || same_key_host(g[da], g[da + 1], g[da + 2], fam, e + ENTRY_SIZE + n, dport) != 1)
        Py_RETURN_NONE;
    uint64_t c[4];
    for (int k = 0; k < 4; k++)
        if (!digits64(g[G_P0 + k], &c[k]) || c[k] < get_le64(e + E_COUNTERS + 8 * k))
            Py_RETURN_NONE;
    /* what of the packet counts a timeout class asks (timeouts.timeout_class()) */
    int packets = (c[0] <= 1) | (c[0] <= 1 && c[1] <= 1 - c[0]) << 1 | (c[1] != 0) << 2;
    PyObject *how = PyLong_FromLong(side * 8 + packets);
    PyObject *key = how ? PyTuple_Pack(7, g[G_PROTO], g[G_STATE], g[G_EXP_H], g[G_EXP_MS],
                                       g[G_ANCHOR], g[G_RULE], how) : NULL;
    Py_XDECREF(how);
    PyObject *missing, *last_o = memo_get(lasts, key, &missing);
    if (last_o == NULL)
        return missing;  /* the key whose Last the caller works out, or NULL: an error */
    if (!PyLong_Check(last_o))
        Py_RETURN_NONE;
    long long last = PyLong_AsLongLong(last_o);
    if (last == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)e, elen);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    put_time(o + E_LAST, last);
    for (int k = 0; k < 4; k++)
        le64(o + E_COUNTERS + 8 * k, c[k]);
    return out;
}

PyDoc_STRVAR(changes_doc,
"changes(todo, old, entries, rules, lasts, touched) -> (rest, changed, not_new)\n\n"
"Sightings._read()'s loop over the bulk scanner's (tail, record) pairs, for the changed\n"
"states change() updates: each whose key (tail[-TRACK_KEY:]) is in `old` (key -> the tail\n"
"it had), its entry bytes, with a rule number or no kept rule (not in `rules`), and whose\n"
"change() is an entry: the old tail's entry and `old`'s key deleted, the new entry set\n"
"under the new tail, both tails added to the set `touched` (None: none kept).  The\n"
"pairs it leaves (new, not selected, a Last not known yet, anything change() leaves to\n"
"Python), in order, how many it updated, and how many of those left are not new (a key\n"
"in `old`, or not a (str, record) pair): none, and the rest are all new states.");

#define TRACK_KEY 36  /* grammar.TRACK_KEY (the module's TRACK_KEY): a tail's state key */

/* tail[-TRACK_KEY:], the tracker's key of a state (a new reference, or NULL). */
static PyObject *key_of(PyObject *tail)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(tail);
    return PyUnicode_Substring(tail, n > TRACK_KEY ? n - TRACK_KEY : 0, n);
}

PyDoc_STRVAR(keys_of_doc,
"keys_of(tails) -> dict\n\n"
"{tail[-TRACK_KEY:]: tail for tail in tails} of a dict's keys (tracker.py's `old`: the\n"
"states a poll has not seen, by their key), in one C loop.");

static PyObject *fastbuild_keys_of(PyObject *module, PyObject *tails)
{
    (void)module;
    if (!PyDict_CheckExact(tails)) {
        PyErr_SetString(PyExc_TypeError, "keys_of(dict)");
        return NULL;
    }
    PyObject *out = PyDict_New(), *t, *v;
    Py_ssize_t pos = 0;
    if (out == NULL)
        return NULL;
    while (PyDict_Next(tails, &pos, &t, &v)) {
        PyObject *key = PyUnicode_Check(t) ? key_of(t) : NULL;
        if (key == NULL && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "keys_of: a tail is not a str");
        if (key == NULL || PyDict_SetItem(out, key, t) < 0) {
            Py_XDECREF(key);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(key);
    }
    return out;
}

static PyObject *fastbuild_changes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (!nargs_are("changes", nargs, 6))
        return NULL;
    PyObject *todo = args[0], *old = args[1], *entries = args[2], *rules = args[3];
    PyObject *lasts = args[4], *touched = args[5];
    if (!PyList_CheckExact(todo) || !PyDict_CheckExact(old) || !PyDict_CheckExact(entries)
        || !PyDict_CheckExact(rules) || !PyDict_CheckExact(lasts)
        || (touched != Py_None && !PySet_CheckExact(touched))) {
        PyErr_SetString(PyExc_TypeError, "changes(list, dict, dict, dict, dict, set or None)");
        return NULL;
    }
    PyObject *rest = PyList_New(0);
    Py_ssize_t changed = 0, not_new = 0;
    if (rest == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(todo); i++) {
        PyObject *item = PyList_GET_ITEM(todo, i), *key = NULL, *prev, *e, *new = NULL;
        PyObject *t, *rec;
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2
            || !PyUnicode_CheckExact(t = PyTuple_GET_ITEM(item, 0))
            || !PyTuple_CheckExact(rec = PyTuple_GET_ITEM(item, 1))
            || PyTuple_GET_SIZE(rec) != NGROUPS) {
            not_new++;
            goto keep;
        }
        if ((key = key_of(t)) == NULL)
            goto fail;
        if ((prev = PyDict_GetItemWithError(old, key)) == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto keep;  /* new */
        }
        not_new++;  /* left below, or updated (and then taken off again) */
        if ((e = PyDict_GetItemWithError(entries, prev)) == NULL) {
            if (PyErr_Occurred())
                goto fail;
            goto keep;
        }
        if (present(PyTuple_GET_ITEM(rec, G_RULE)) != 1) {  /* a kept rule decides Last */
            int kept = PyDict_Contains(rules, key);
            if (kept < 0)
                goto fail;
            if (kept)
                goto keep;
        }
        if ((new = change_one(rec, e, lasts)) == NULL)
            goto fail;
        if (!PyBytes_CheckExact(new))
            goto keep;  /* a Last not known yet, or Python's to decide: asked again there */
        Py_INCREF(prev);  /* held past its deletion from old */
        int bad = PyDict_DelItem(entries, prev) < 0 || PyDict_DelItem(old, key) < 0
                  || PyDict_SetItem(entries, t, new) < 0
                  || (touched != Py_None && (PySet_Add(touched, t) < 0 || PySet_Add(touched, prev) < 0));
        Py_DECREF(prev);
        if (bad)
            goto fail;
        changed++;
        not_new--;
        Py_DECREF(key);
        Py_DECREF(new);
        continue;
keep:
        Py_XDECREF(key);
        Py_XDECREF(new);
        if (PyList_Append(rest, item) < 0) {
            Py_DECREF(rest);
            return NULL;
        }
        continue;
fail:
        Py_XDECREF(key);
        Py_XDECREF(new);
        Py_DECREF(rest);
        return NULL;
    }
    return Py_BuildValue("(Nnn)", rest, changed, not_new);
}

PyDoc_STRVAR(gone_doc,
"gone(tails, entries, rules, exported, overdue, touched, seen_gone) -> (list, left)\n\n"
"The tracker's loop over the states a poll saw gone (tracker.py): each tail's entry\n"
"popped from `entries`, the tail added to `touched` (a set, or None), its key\n"
"(tail[-TRACK_KEY:]) popped from `rules` and the tail discarded from `overdue`; of each\n"
"selected one, in order, what it exports: its entry with Last clamped into [First,\n"
"int(seen_gone)] (Tracker._final), or (key, entry) where `exported` holds its key (an\n"
"active-timeout span was sent, or an entry not of the tracker's making: Tracker._rest's to\n"
"work out), and how many of those (key, entry) pairs it holds.");

static PyObject *fastbuild_gone(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (!nargs_are("gone", nargs, 7))
        return NULL;
    PyObject *tails = args[0], *entries = args[1], *rules = args[2], *exported = args[3];
    PyObject *overdue = args[4], *touched = args[5];
    if (!PyList_CheckExact(tails) || !PyDict_CheckExact(entries) || !PyDict_CheckExact(rules)
        || !PyDict_CheckExact(exported) || !PySet_CheckExact(overdue)
        || (touched != Py_None && !PySet_CheckExact(touched)) || !PyFloat_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "gone(list, dict, dict, dict, set, set or None, float)");
        return NULL;
    }
    double seen = PyFloat_AS_DOUBLE(args[6]);
    if (!(seen > -9e18 && seen < 9e18)) {
        PyErr_SetString(PyExc_ValueError, "gone: seen_gone out of range");
        return NULL;
    }
    long long at = (long long)seen;  /* int(seen_gone) */
    PyObject *out = PyList_New(0);
    Py_ssize_t left = 0;
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tails); i++) {
        PyObject *t = PyList_GET_ITEM(tails, i), *key = NULL, *entry, *item = NULL;
        Py_INCREF(t);  /* held past its deletion from entries */
        if ((entry = PyDict_GetItemWithError(entries, t)) == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, t);
            goto fail;
        }
        Py_INCREF(entry);
        if (PyDict_DelItem(entries, t) < 0 || (touched != Py_None && PySet_Add(touched, t) < 0))
            goto fail;
        if (!PyUnicode_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "gone: a tail is not a str");
            goto fail;
        }
        if ((key = key_of(t)) == NULL)
            goto fail;
        if (PyDict_GET_SIZE(rules)) {
            int r = PyDict_Contains(rules, key);
            if (r < 0 || (r && PyDict_DelItem(rules, key) < 0))
                goto fail;
        }
        if (entry == Py_None)
            goto next;  /* tracked, not selected */
        if (PySet_GET_SIZE(overdue) && PySet_Discard(overdue, t) < 0)
            goto fail;
        int span = PyDict_GET_SIZE(exported) ? PyDict_Contains(exported, key) : 0;
        if (span < 0)
            goto fail;
        if (span || !PyBytes_CheckExact(entry) || PyBytes_GET_SIZE(entry) < ENTRY_SIZE) {
            item = PyTuple_Pack(2, key, entry);  /* Python's to work out (or refuse) */
            left++;
        } else {
            const unsigned char *e = (const unsigned char *)PyBytes_AS_STRING(entry);
            long long first = get_time(e + E_FIRST), last = get_time(e + E_LAST);
            long long clamped = last < first ? first : last;
            if (clamped > at)
                clamped = at;
            if (clamped == last) {
                item = entry;
                Py_INCREF(item);
            } else if ((item = PyBytes_FromStringAndSize((const char *)e, PyBytes_GET_SIZE(entry)))
                       != NULL) {
                put_time((unsigned char *)PyBytes_AS_STRING(item) + E_LAST, clamped);
            }
        }
        if (item == NULL || PyList_Append(out, item) < 0)
            goto fail;
next:
        Py_XDECREF(item);
        Py_DECREF(key);
        Py_DECREF(entry);
        Py_DECREF(t);
        continue;
fail:
        Py_XDECREF(item);
        Py_XDECREF(key);
        Py_XDECREF(entry);
        Py_DECREF(t);
        Py_DECREF(out);
        return NULL;
    }
    return Py_BuildValue("(Nn)", out, left);
}

PyDoc_STRVAR(setup_doc,
"setup(State, Host, shared, protocols, hours, mmss, number, pflow) -> None\n\n"
"The types and memo caches build() uses (record.py calls it once); TypeError if State's\n"
"slots are not the ones build() fills.");

static PyObject *fastbuild_setup(PyObject *module, PyObject *args)
{
    PyObject *st, *ho, *sh, *pr, *hr, *ms, *nu, *pf;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!O!:setup", &PyType_Type, &st, &PyType_Type,
                          &ho, &PyDict_Type, &sh, &PyDict_Type, &pr, &PyDict_Type, &hr,
                          &PyDict_Type, &ms, &PyDict_Type, &nu, &PyDict_Type, &pf))
        return NULL;
    PyTypeObject *t = (PyTypeObject *)st;
    if (!PyType_IsSubtype((PyTypeObject *)ho, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Host is not a tuple");
        return NULL;
    }
    PyObject *slots = PyObject_GetAttrString(st, "__slots__");
    if (slots == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Size(slots);
    Py_DECREF(slots);
    if (n != NSLOTS) {
        PyErr_SetString(PyExc_TypeError, "State's slots are not the ones build() fills");
        return NULL;
    }
    for (int k = 0; k < NSLOTS; k++) {
        PyObject *d = PyDict_GetItemString(t->tp_dict, slot_names[k]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "State has no slot %s", slot_names[k]);
            return NULL;
        }
        offsets[k] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    Py_INCREF(st);
    Py_XSETREF(state_type, t);
    Py_INCREF(ho);
    Py_XSETREF(host_type, (PyTypeObject *)ho);
    PyObject **dicts[] = {&shared, &protocols, &hours, &mmss, &number, &pflow_of};
    PyObject *given[] = {sh, pr, hr, ms, nu, pf};
    for (int k = 0; k < 6; k++) {
        Py_INCREF(given[k]);
        Py_XSETREF(*dicts[k], given[k]);
    }
    Py_CLEAR(last_proto);
    Py_CLEAR(last_levels);
    Py_RETURN_NONE;
}

static PyMethodDef fastbuild_methods[] = {
    {"build", fastbuild_build, METH_VARARGS, build_doc},
    {"setup", fastbuild_setup, METH_VARARGS, setup_doc},
    {"pack_entry", fastbuild_pack_entry, METH_VARARGS, pack_entry_doc},
    {"change", fastbuild_change, METH_VARARGS, change_doc},
    {"admit", (PyCFunction)(void (*)(void))fastbuild_admit, METH_FASTCALL, admit_doc},
    {"admit_all", (PyCFunction)(void (*)(void))fastbuild_admit_all, METH_FASTCALL, admit_all_doc},
    {"changes", (PyCFunction)(void (*)(void))fastbuild_changes, METH_FASTCALL, changes_doc},
    {"gone", (PyCFunction)(void (*)(void))fastbuild_gone, METH_FASTCALL, gone_doc},
    {"keys_of", fastbuild_keys_of, METH_O, keys_of_doc},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef fastbuild_module = {
    PyModuleDef_HEAD_INIT, "_fastbuild",
    "record._build_py()'s common case in C (see pflowbsd/pf/record.py).", -1,
    fastbuild_methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__fastbuild(void)
{
    if ((s_in = PyUnicode_InternFromString("in")) == NULL
        || (s_out = PyUnicode_InternFromString("out")) == NULL
        || (s_inet = PyUnicode_InternFromString("inet")) == NULL
        || (s_inet6 = PyUnicode_InternFromString("inet6")) == NULL
        || (s_empty = PyUnicode_FromStringAndSize("", 0)) == NULL
        || (s_cache = PyUnicode_InternFromString("cache")) == NULL)
        return NULL;
    PyObject *z = PyLong_FromLong(0);
    if (z == NULL || (zero_pair = PyTuple_Pack(2, z, z)) == NULL)
        return NULL;
    Py_DECREF(z);
    PyObject *m = PyModule_Create(&fastbuild_module);
    PyObject *layout = Py_BuildValue("(siii)", ENTRY_FORMAT, NATTED, INET6, OUTBOUND);
    if (m == NULL || layout == NULL || PyModule_AddObject(m, "ENTRY_LAYOUT", layout) < 0) {
        Py_XDECREF(layout);  /* AddObject takes it only when it succeeds */
        Py_XDECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "TRACK_KEY", TRACK_KEY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
