/* NetFlow v5 records of tracker entries in C: export/v5.py's entry_records() for the
 * common entry, so that the 10,000 states a busy poll sees gone do not cost 20,000
 * rounds of the Python packer.
 *
 * Strategy.  run(entries, i, out) walks entries[i:] (flows.Entry bytes) and appends to
 * the list out the 48-byte struct pflow_flow records v5.entry_records() makes of each:
 * one per direction with bytes, both under PFLOW_MAXBYTES, IPv4.  It stops at the first
 * entry it does not take (IPv6, a counter to split, anything not an entry) and returns
 * its index; the caller packs that one in Python and calls again from the next, so an
 * unusual entry takes the reference path.  The two layouts are v5.RECORD's and
 * flows.ENTRY's: v5.py uses run() only while their formats, the INET6 flag and
 * PFLOW_MAXBYTES equal this module's LAYOUT, so a layout changed there and not here
 * turns this off rather than packing the old one.  tests/unit/test_v5.py checks the
 * two packers against each other under hypothesis.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* v5.RECORD, big-endian: 0 src | 4 dst | 8 nexthop | 12 if_in u16 | 14 if_out u16 |
 * 16 packets u32 | 20 octets u32 | 24 start u32 | 28 finish u32 | 32 sport u16 |
 * 34 dport u16 | 36 pad, tcp_flags, proto, tos | 40 src_as, dst_as u16 | 44 masks, pad2 */
#define RECORD_FORMAT "!4s4sIHHIIIIHHBBBBHHBBH"
#define RECORD_SIZE 48
/* flows.ENTRY, little-endian: 0 flags | 1 proto | 2 sport | 4 dport | 6 first i32 |
 * 10 last i32 | 14 packets[2] u64 | 30 bytes[2] u64 | 46 if_in | 48 if_out | 50 src, dst */
#define ENTRY_FORMAT "<BBHHiiQQQQHH"
#define ENTRY_SIZE 50
#define INET6 0x02
#define MAXBYTES 0xFFFFFFFFULL

static inline uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; k--)
        v = v << 8 | p[k];
    return v;
}

static inline void be(unsigned char *p, uint64_t v, int n)
{
    for (int k = n - 1; k >= 0; k--, v >>= 8)
        p[k] = (unsigned char)v;
}

/* One record: the entry's side 0 (initiator -> responder) or side 1 (the mirror). */
static PyObject *record(const unsigned char *e, int side, uint64_t start, uint64_t finish)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, RECORD_SIZE);
    if (out == NULL)
        return NULL;
    unsigned char *r = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *a = e + ENTRY_SIZE, *b = e + ENTRY_SIZE + 4;
    memset(r, 0, RECORD_SIZE);
    memcpy(r, side ? b : a, 4);
    memcpy(r + 4, side ? a : b, 4);
    be(r + 12, le(e + 46 + 2 * side, 2), 2);
    be(r + 14, le(e + 48 - 2 * side, 2), 2);
    be(r + 16, le(e + 14 + 8 * side, 8) & 0xFFFFFFFFULL, 4);
    be(r + 20, le(e + 30 + 8 * side, 8), 4);
    be(r + 24, start, 4);
    be(r + 28, finish, 4);
    be(r + 32, le(e + 2 + 2 * side, 2), 2);
    be(r + 34, le(e + 4 - 2 * side, 2), 2);
    r[38] = e[1];
    return out;
}

PyDoc_STRVAR(run_doc,
"run(entries, i, out) -> int\n\n"
"v5.entry_records() of entries[i], entries[i + 1], ... appended to the list out, up to\n"
"the first entry it leaves to Python (IPv6, a counter past PFLOW_MAXBYTES, not an entry):\n"
"that one's index, or len(entries).");

static PyObject *v5pack_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyLong_CheckExact(args[1])
        || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "run(list, int, list)");
        return NULL;
    }
    PyObject *entries = args[0], *out = args[2];
    Py_ssize_t i = PyLong_AsSsize_t(args[1]);
    if (i < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "run: a negative index");
        return NULL;
    }
    for (; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (!PyBytes_CheckExact(entry) || PyBytes_GET_SIZE(entry) < ENTRY_SIZE + 8)
            break;
        const unsigned char *e = (const unsigned char *)PyBytes_AS_STRING(entry);
        uint64_t b0 = le(e + 30, 8), b1 = le(e + 38, 8);
        if (e[0] & INET6 || b0 >= MAXBYTES || b1 >= MAXBYTES)
            break;
        /* v5.record_times()' guards, on the entry's times in milliseconds */
        int64_t first = (int32_t)(uint32_t)le(e + 6, 4), last = (int32_t)(uint32_t)le(e + 10, 4);
        int64_t start = first * 1000, end = last * 1000;
        uint64_t s = start < 0 || start > end ? 0 : (uint64_t)start & 0xFFFFFFFFULL;
        uint64_t f = end < 0 ? 0 : (uint64_t)end & 0xFFFFFFFFULL;
        for (int side = 0; side < 2; side++) {
            if (!(side ? b1 : b0))
                continue;
            PyObject *r = record(e, side, s, f);
            if (r == NULL || PyList_Append(out, r) < 0) {
                Py_XDECREF(r);
                return NULL;
            }
            Py_DECREF(r);
        }
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef v5pack_methods[] = {
    {"run", (PyCFunction)(void (*)(void))v5pack_run, METH_FASTCALL, run_doc},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef v5pack_module = {
    PyModuleDef_HEAD_INIT, "_v5pack",
    "v5.entry_records()' common case in C (see pflowbsd/export/v5.py).", -1,
    v5pack_methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__v5pack(void)
{
    PyObject *m = PyModule_Create(&v5pack_module);
    PyObject *layout = Py_BuildValue("(ssiK)", RECORD_FORMAT, ENTRY_FORMAT, INET6, MAXBYTES);
    if (m == NULL || layout == NULL || PyModule_AddObject(m, "LAYOUT", layout) < 0) {
        Py_XDECREF(layout);
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}
