/* tracedfuture/_core/_records.h: one raw record as the compiled ring holds it.
 *
 * Shared by _cfuture.c (the ring, which writes records), _batch.c (RecordBatch:
 * records taken out of the ring as structs, never as tuples) and _lines.c (which
 * formats them). The fields after (op, fid, ts) are those of _seam.LAYOUTS, slot
 * k holding field k; _batch.c checks the names it reads against LAYOUTS at import.
 */
#ifndef TRACEDFUTURE_RECORDS_H
#define TRACEDFUTURE_RECORDS_H

#include <Python.h>

/* ------------------------------------------------------------------------ */
/* References taken or dropped while the GIL is released (_lines.c, _eventfold.c):
 * queued, then applied in one pass once the GIL is back (increments first). */

typedef struct {
    PyObject **p;
    size_t n, cap;
} RefQueue;

static inline int
refq_push(RefQueue *r, PyObject *o) /* -1: out of memory (no exception: the GIL may be released) */
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        PyObject **p = PyMem_RawRealloc(r->p, cap * sizeof(PyObject *));
        if (p == NULL) {
            return -1;
        }
        r->p = p;
        r->cap = cap;
    }
    r->p[r->n++] = o;
    return 0;
}

static inline void
refq_apply(RefQueue *inc, RefQueue *dec) /* the GIL held */
{
    for (size_t i = 0; i < inc->n; i++) {
        Py_INCREF(inc->p[i]);
    }
    inc->n = 0;
    for (size_t i = 0; i < dec->n; i++) {
        Py_DECREF(dec->p[i]);
    }
    dec->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Ops, as in _seam.LAYOUTS                                                  */

enum {
    OP_CREATED = 0,
    OP_CB_ADDED = 1,
    OP_CB_REMOVED = 2,
    OP_RESOLVED = 3,
    OP_FAILED = 4,
    OP_CANCELLED = 5,
    OP_CANCEL_REQ = 6,
    OP_RENAMED = 7,
    OP_COLLECTED = 8,
    OP_LINT = 9,
    OP_CAUGHT = 10,
    OP_EMPTY = 255,
};

#define NSLOT 11 /* CREATED's fields, the most of any op */
#define F_RAW 1 /* s[0].o is a whole tuple, made off the hot path */
#define F_WHO 2 /* cancel: s[2..7] are (code, lasti, user_code, user_lasti, waiting_code, waiting_lasti) */
#define WHO_LEN 6

typedef union {
    long long i;
    PyObject *o;
} Slot;

/* One record. objmask: slots holding an object (NULL reads None); nonemask:
 * integer slots that read None; boolmask: integer slots that read as bool.
 * nslots: the slots a record in a ring takes there (its fields' up to the last
 * that does not read zero, or a cancel's who: a ring holds only those; see
 * _cfuture.c's Ring), 0 elsewhere. A ring
 * holds a record's words up to its slots: boolmask, last, is not among them
 * (the hot path's bools are fixed by op, see ring_copy_out). */
typedef struct {
    unsigned char op;
    unsigned char nfields;
    unsigned char flags;
    unsigned char nslots;
    unsigned short objmask;
    unsigned short nonemask;
    long long fid;
    long long ts;
    Slot s[NSLOT];
    unsigned short boolmask;
} Rec;

static inline void
rec_release(Rec *r)
{
    if (r->op == OP_EMPTY) {
        return;
    }
    /* only the slots that hold objects: a fresh ring's slots hold none */
    unsigned mask = r->objmask;
    for (int k = 0; mask != 0; k++, mask >>= 1) {
        if (mask & 1u) {
            Py_CLEAR(r->s[k].o);
        }
    }
    r->op = OP_EMPTY;
    r->objmask = 0;
}

static inline void
rec_incref(Rec *r)
{
    for (int k = 0; k < NSLOT; k++) {
        if (r->objmask & (1u << k)) {
            Py_XINCREF(r->s[k].o);
        }
    }
}

static inline PyObject *
slot_value(const Rec *r, int k)
{
    if (r->objmask & (1u << k)) {
        PyObject *o = r->s[k].o ? r->s[k].o : Py_None;
        return Py_NewRef(o);
    }
    if (r->nonemask & (1u << k)) {
        return Py_NewRef(Py_None);
    }
    if (r->boolmask & (1u << k)) {
        return PyBool_FromLong((long)r->s[k].i);
    }
    return PyLong_FromLongLong(r->s[k].i);
}

/* The tuple of _seam.LAYOUTS for one record. */
static inline PyObject *
rec_tuple(const Rec *r)
{
    if (r->flags & F_RAW) {
        return Py_NewRef(r->s[0].o);
    }
    PyObject *t = PyTuple_New(3 + r->nfields);
    if (t == NULL) {
        return NULL;
    }
    PyObject *v;
    if ((v = PyLong_FromLong(r->op)) == NULL) goto fail;
    PyTuple_SET_ITEM(t, 0, v);
    if ((v = PyLong_FromLongLong(r->fid)) == NULL) goto fail;
    PyTuple_SET_ITEM(t, 1, v);
    if ((v = PyLong_FromLongLong(r->ts)) == NULL) goto fail;
    PyTuple_SET_ITEM(t, 2, v);
    if (r->op == OP_CANCELLED || r->op == OP_CANCEL_REQ) {
        if ((v = slot_value(r, 0)) == NULL) goto fail;
        PyTuple_SET_ITEM(t, 3, v);
        if ((v = slot_value(r, 1)) == NULL) goto fail;
        PyTuple_SET_ITEM(t, 4, v);
        if (r->flags & F_WHO) {
            v = Py_BuildValue("(NNNNNN)", slot_value(r, 2), slot_value(r, 3), slot_value(r, 4), slot_value(r, 5),
                              slot_value(r, 6), slot_value(r, 7));
            if (v == NULL) goto fail;
        }
        else {
            v = Py_NewRef(Py_None);
        }
        PyTuple_SET_ITEM(t, 5, v);
        return t;
    }
    for (int k = 0; k < r->nfields; k++) {
        if ((v = slot_value(r, k)) == NULL) goto fail;
        PyTuple_SET_ITEM(t, 3 + k, v);
    }
    return t;
fail:
    Py_DECREF(t);
    return NULL;
}

/* A record made of a tuple (F_RAW: a lint, a MARK, one of the pipeline's): its
 * op (OP_MARK for _convert.MARK), id and timestamp are read once, here. */
#define OP_MARK 254

static inline int
rec_set_tuple(Rec *r, PyObject *t) /* t borrowed: the record holds it */
{
    memset(r, 0, sizeof(*r));
    r->flags = F_RAW;
    r->objmask = 1;
    r->s[0].o = Py_NewRef(t);
    r->op = OP_LINT;
    if (PyTuple_Check(t) && PyTuple_GET_SIZE(t) >= 3) {
        PyObject *op = PyTuple_GET_ITEM(t, 0), *fid = PyTuple_GET_ITEM(t, 1), *ts = PyTuple_GET_ITEM(t, 2);
        long v = PyLong_Check(op) ? PyLong_AsLong(op) : 0;
        r->op = v == -1 ? OP_MARK : (v >= 0 && v <= OP_CAUGHT ? (unsigned char)v : OP_LINT);
        r->fid = PyLong_Check(fid) ? PyLong_AsLongLong(fid) : 0;
        r->ts = PyLong_Check(ts) ? PyLong_AsLongLong(ts) : 0;
        if (PyErr_Occurred()) {
            PyErr_Clear(); /* an int too big to be an id: no future's */
            r->fid = 0;
        }
    }
    return 0;
}

/* The number of items of each op's tuple (_seam.LAYOUTS), -1: kept as a tuple. */
static const signed char REC_TUPLE_LEN[OP_CAUGHT + 1] = {14, 6, 6, 6, 10, 6, 6, 5, 5, -1, 10};

static inline int
rec_put_item(Rec *r, int k, PyObject *v)
{
    if (v == Py_None) {
        r->nonemask |= (unsigned short)(1u << k);
        return 0;
    }
    if (PyBool_Check(v)) {
        r->s[k].i = v == Py_True;
        r->boolmask |= (unsigned short)(1u << k);
        return 0;
    }
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow && !(x == -1 && PyErr_Occurred())) {
            r->s[k].i = x;
            return 0;
        }
        PyErr_Clear(); /* too big for a slot: held as the object */
    }
    r->s[k].o = Py_NewRef(v);
    r->objmask |= (unsigned short)(1u << k);
    return 0;
}

/* A record of a tuple laid out as _seam.LAYOUTS says (a list of records the
 * pipeline made, tail sampling's, a test's), as the ring would have written it,
 * so that compiled readers read it in place; anything else (a MARK, a lint, an
 * odd shape) is an F_RAW record holding the tuple. rec_tuple() gives back an
 * equal tuple either way. */
static inline int
rec_from_tuple(Rec *r, PyObject *t) /* t borrowed */
{
    Py_ssize_t len = PyTuple_GET_SIZE(t);
    PyObject **it = &PyTuple_GET_ITEM(t, 0);
    long long op = -1, fid = 0, ts = 0;
    int overflow = 0;
    if (len < 3 || !PyLong_CheckExact(it[0]) || !PyLong_CheckExact(it[1]) || !PyLong_CheckExact(it[2])) {
        return rec_set_tuple(r, t);
    }
    op = PyLong_AsLongLongAndOverflow(it[0], &overflow);
    if (!overflow) {
        fid = PyLong_AsLongLongAndOverflow(it[1], &overflow);
    }
    if (!overflow) {
        ts = PyLong_AsLongLongAndOverflow(it[2], &overflow);
    }
    if (PyErr_Occurred()) {
        PyErr_Clear();
        overflow = 1;
    }
    if (overflow || op < 0 || op > OP_CAUGHT || REC_TUPLE_LEN[op] != len) {
        return rec_set_tuple(r, t);
    }
    PyObject *who = NULL;
    if (op == OP_CANCELLED || op == OP_CANCEL_REQ) {
        who = it[5];
        if (who != Py_None && !(PyTuple_CheckExact(who) && PyTuple_GET_SIZE(who) == WHO_LEN)) {
            return rec_set_tuple(r, t);
        }
    }
    memset(r, 0, sizeof(*r));
    r->fid = fid;
    r->ts = ts;
    if (who != NULL) {
        r->nfields = 3;
        rec_put_item(r, 0, it[3]);
        rec_put_item(r, 1, it[4]);
        if (who != Py_None) {
            r->flags = F_WHO;
            for (int k = 0; k < WHO_LEN; k++) {
                rec_put_item(r, 2 + k, PyTuple_GET_ITEM(who, k));
            }
        }
    }
    else {
        r->nfields = (unsigned char)(len - 3);
        for (Py_ssize_t k = 3; k < len; k++) {
            rec_put_item(r, (int)(k - 3), it[k]);
        }
    }
    r->op = (unsigned char)op;
    return 0;
}

/* Slots, read in place (valid while the record is). */
static inline int
slot_is_none(const Rec *r, int k)
{
    return (r->objmask & (1u << k)) ? r->s[k].o == NULL : (r->nonemask >> k) & 1u;
}

static inline PyObject * /* borrowed, NULL for None; only for object slots */
slot_obj(const Rec *r, int k)
{
    return (r->objmask & (1u << k)) ? r->s[k].o : NULL;
}

static inline int
slot_is_int(const Rec *r, int k)
{
    return !((r->objmask | r->nonemask) & (1u << k));
}

/* An exact int's value when it is small and not negative, read from the int's
 * own storage (which never changes) without the GIL; -1 for anything else (a
 * bool, a negative or large int, another type), which is the reference's to
 * read. A CB_REMOVED record's positions are such ints. 3.12 made an int a tag
 * and its digits (PyUnstable_Long_CompactValue); 3.11's is ob_size and digits,
 * a small one a single digit (cpython/longintrepr.h, which Python.h includes). */
static inline long long
small_index(PyObject *o)
{
    if (!PyLong_CheckExact(o)) {
        return -1;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        return -1;
    }
    Py_ssize_t v = PyUnstable_Long_CompactValue((PyLongObject *)o);
    return v >= 0 ? (long long)v : -1;
#else
    Py_ssize_t size = Py_SIZE(o);
    if (size == 0) {
        return 0;
    }
    return size == 1 ? (long long)((PyLongObject *)o)->ob_digit[0] : -1;
#endif
}

/* A CB_REMOVED record's positions as the ring writes them: a tuple of small
 * ints, each read by small_index(). Anything else is the reference's. */
static inline int
removed_indices_ok(PyObject *indices)
{
    if (indices == NULL || !PyTuple_CheckExact(indices)) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(indices); k++) {
        if (small_index(PyTuple_GET_ITEM(indices, k)) < 0) {
            return 0;
        }
    }
    return 1;
}

/* RecordBatch (_batch.c): records out of a ring, as structs. */
PyObject *tf_batch_steal(Rec *recs, Py_ssize_t n); /* takes recs (PyMem_Raw) and their references */
/* The same, the references being objs[0..nobjs) (PyMem_Raw, taken; NULL: the records'). */
PyObject *tf_batch_steal_refs(Rec *recs, Py_ssize_t n, PyObject **objs, Py_ssize_t nobjs);
int tf_batch_view(PyObject *obj, const Rec **recs, Py_ssize_t *n); /* 1 for a RecordBatch, else 0 */
int tf_batch_add_type(PyObject *module);
PyObject *tf_batch_of(PyObject *records); /* a RecordBatch (new reference) of a batch or a sequence of tuples */
/* 0 when field `index` of op's records is named `name` in _seam.LAYOUTS, else -1 (ImportError set). */
int tf_check_field(int op, int index, const char *name);
int tf_eventfold_add_type(PyObject *module);

/* ------------------------------------------------------------------------ */
/* Hashing, for the open-addressed tables of _lines.c and _eventfold.c       */

static inline size_t
tf_hash(const void *p, long long extra)
{
    uint64_t h = (uint64_t)(uintptr_t)p ^ ((uint64_t)extra * 0x9E3779B97F4A7C15ULL);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h;
}

/* A record's future id, for a table of per-future state. Ids are handed out in
 * order, and a batch speaks mostly of futures made close together: runs of 4
 * consecutive ids share one home block (4 FidSlots, one cache line), the blocks
 * spread by the mix. Records of neighbouring futures then find their state in
 * the same few cache lines, where a mix of the whole id sends each to a random
 * line of a table of tens of megabytes (a tenth of the trace file writer's time,
 * measured with perf). Not longer runs: at half load, blocks of 16 made clusters
 * of several full blocks, which each lookup probed and each deletion shifted
 * back, slot by slot (callgrind, 10,000 tasks x 10 futures to a trace file: the
 * writer's instructions 429M with runs of 16, 362M with runs of 4, for 4% more
 * first-level misses). */
static inline size_t
tf_hash_fid(long long fid)
{
    return (tf_hash(NULL, fid >> 2) << 2) | (size_t)(fid & 3);
}

/* Future ids to pointers (0 is never a key): open addressing, backward-shift
 * deletion. Tail sampling's held futures (_tail.c) and the line writer's
 * futures' states (_lines.c) are FidMaps; a FidSet (for shedding, _batch.c, and
 * the kept set) is one whose values are NULL. */
typedef struct {
    long long fid; /* 0: empty */
    void *value;
} FidSlot;

typedef struct {
    FidSlot *slots; /* PyMem_Raw */
    size_t cap, used;
} FidMap;

static inline FidSlot *
fidmap_get(const FidMap *m, long long fid)
{
    if (m->cap == 0 || fid == 0) {
        return NULL;
    }
    for (size_t i = tf_hash_fid(fid) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].fid == fid) {
            return &m->slots[i];
        }
        if (m->slots[i].fid == 0) {
            return NULL;
        }
    }
}

/* fid -> value, fid not a key yet; -1 (MemoryError set) when it cannot grow. */
static inline int
fidmap_put(FidMap *m, long long fid, void *value)
{
    if ((m->used + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        FidSlot *slots = PyMem_RawCalloc(cap, sizeof(FidSlot));
        if (slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i].fid != 0) {
                size_t j = tf_hash_fid(m->slots[i].fid) & (cap - 1);
                while (slots[j].fid != 0) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = m->slots[i];
            }
        }
        PyMem_RawFree(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    size_t i = tf_hash_fid(fid) & (m->cap - 1);
    while (m->slots[i].fid != 0) {
        i = (i + 1) & (m->cap - 1);
    }
    m->slots[i].fid = fid;
    m->slots[i].value = value;
    m->used++;
    return 0;
}

/* Removes fid; 1 with *value set if it was a key, else 0. */
static inline int
fidmap_remove(FidMap *m, long long fid, void **value)
{
    FidSlot *found = fidmap_get(m, fid);
    if (found == NULL) {
        return 0;
    }
    if (value != NULL) {
        *value = found->value;
    }
    size_t mask = m->cap - 1, hole = (size_t)(found - m->slots);
    m->slots[hole].fid = 0;
    m->slots[hole].value = NULL;
    m->used--;
    /* move back the keys of the cluster that probed past the hole */
    for (size_t i = (hole + 1) & mask; m->slots[i].fid != 0; i = (i + 1) & mask) {
        size_t home = tf_hash_fid(m->slots[i].fid) & mask;
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            m->slots[hole] = m->slots[i];
            m->slots[i].fid = 0;
            m->slots[i].value = NULL;
            hole = i;
        }
    }
    return 1;
}

static inline void
fidmap_free(FidMap *m)
{
    PyMem_RawFree(m->slots);
    m->slots = NULL;
    m->cap = m->used = 0;
}

/* Room for one more key in m, so that fidmap_put (which would set MemoryError,
 * needing the GIL) never grows it: -1 when out of memory, nothing set. What a
 * reader working without the GIL calls first (tail sampling, the line writer). */
static inline int
fidmap_room_for_one(FidMap *m)
{
    if ((m->used + 1) * 2 <= m->cap) {
        return 0;
    }
    FidMap bigger = {PyMem_RawCalloc(m->cap ? m->cap * 2 : 64, sizeof(FidSlot)), m->cap ? m->cap * 2 : 64, 0};
    if (bigger.slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].fid != 0) {
            fidmap_put(&bigger, m->slots[i].fid, m->slots[i].value); /* room enough: never grows */
        }
    }
    fidmap_free(m);
    *m = bigger;
    return 0;
}

typedef FidMap FidSet;

static inline int
fidset_has(const FidSet *s, long long fid)
{
    return fidmap_get(s, fid) != NULL;
}

/* 1: added, 0: there already (or 0), -1: out of memory. */
static inline int
fidset_add(FidSet *s, long long fid)
{
    if (fid == 0 || fidset_has(s, fid)) {
        return 0;
    }
    return fidmap_put(s, fid, NULL) < 0 ? -1 : 1;
}

static inline void
fidset_discard(FidSet *s, long long fid)
{
    fidmap_remove(s, fid, NULL);
}

static inline void
fidset_free(FidSet *s)
{
    fidmap_free(s);
}

/* Blocks of one size let go, kept for the next to be taken (SPARES_LIMIT at
 * most), chained through their first word: a future's first array of callbacks
 * in the line writer's and the event fold's tables (most futures hold one or
 * two callbacks in their lives, and a malloc and a free cost more than the rest
 * of their state's bookkeeping). */
#define SPARES_LIMIT 1024

typedef struct {
    void *head;
    size_t n;
} Spares;

/* A block let go earlier, or NULL. */
static inline void *
spares_take(Spares *s)
{
    void *block = s->head;
    if (block != NULL) {
        s->head = *(void **)block;
        s->n--;
    }
    return block;
}

/* Kept, or freed when there are enough (s NULL: freed). */
static inline void
spares_put(Spares *s, void *block)
{
    if (s != NULL && s->n < SPARES_LIMIT) {
        *(void **)block = s->head;
        s->head = block;
        s->n++;
    }
    else {
        PyMem_RawFree(block);
    }
}

static inline void
spares_free(Spares *s)
{
    while (s->head != NULL) {
        PyMem_RawFree(spares_take(s));
    }
}

/* A callback of a future's state, in the line writer's and the event fold's
 * tables: its name (owned: a str for the writer, anything for the fold) and the
 * task it wakes, if it is a task's wakeup. */
typedef struct {
    PyObject *callback;
    long long awaiter;
    int has_awaiter;
} Cb;

/* The callbacks at a CB_REMOVED record's positions (removed_indices_ok) go,
 * as the reference removes them: from the last position named to the first,
 * one past the end skipped, so that those left are the ones scheduled. Each
 * callback removed is handed to let_go(ctx, callback), its reference. */
static inline void
cbs_remove_at(Cb *cbs, Py_ssize_t *n, PyObject *indices, void (*let_go)(void *, PyObject *), void *ctx)
{
    for (Py_ssize_t k = PyTuple_GET_SIZE(indices); k-- > 0;) {
        long long at = small_index(PyTuple_GET_ITEM(indices, k));
        if (at < *n) {
            let_go(ctx, cbs[at].callback);
            memmove(&cbs[at], &cbs[at + 1], (size_t)(*n - at - 1) * sizeof(Cb));
            (*n)--;
        }
    }
}

/* A future's first array of callbacks has room for CB_FIRST, one let go by an
 * earlier future where there is one (Spares). */
#define CB_FIRST 2

/* Room for one more callback at cbs[n]: -1 when there is no memory for it. */
static inline int
cbs_room(Spares *spare, Cb **cbs, Py_ssize_t n, Py_ssize_t *cap)
{
    if (n < *cap) {
        return 0;
    }
    if (*cap == 0 && spare->head != NULL) {
        *cbs = (Cb *)spares_take(spare);
        *cap = CB_FIRST;
        return 0;
    }
    Py_ssize_t want = *cap ? *cap * 2 : CB_FIRST;
    Cb *p = (Cb *)PyMem_RawRealloc(*cbs, (size_t)want * sizeof(Cb));
    if (p == NULL) {
        return -1;
    }
    *cbs = p;
    *cap = want;
    return 0;
}

/* An array of callbacks let go (their references already): kept for the next
 * future if it is of the first size (spare NULL: freed). */
static inline void
cbs_let_go(Spares *spare, Cb *cbs, Py_ssize_t cap)
{
    if (cbs != NULL) {
        spares_put(cap == CB_FIRST ? spare : NULL, cbs);
    }
}

/* A growing array of records, each holding its references (a batch being made:
 * RecordBatch.join, tail sampling's output). */
typedef struct {
    Rec *recs;
    Py_ssize_t n, cap;
} Recs;

static inline int
recs_room(Recs *out, Py_ssize_t more)
{
    if (out->n + more <= out->cap) {
        return 0;
    }
    Py_ssize_t cap = out->cap ? out->cap : 16;
    while (cap < out->n + more) {
        cap *= 2;
    }
    Rec *p = PyMem_RawRealloc(out->recs, (size_t)cap * sizeof(Rec));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->recs = p;
    out->cap = cap;
    return 0;
}

static inline void
recs_free(Recs *out)
{
    for (Py_ssize_t i = 0; i < out->n; i++) {
        rec_release(&out->recs[i]);
    }
    PyMem_RawFree(out->recs);
    out->recs = NULL;
    out->n = out->cap = 0;
}

/* Appends a copy of r, with its own references. */
static inline int
recs_copy(Recs *out, const Rec *r)
{
    if (recs_room(out, 1) < 0) {
        return -1;
    }
    out->recs[out->n] = *r;
    rec_incref(&out->recs[out->n]);
    out->n++;
    return 0;
}

/* The records as a RecordBatch, which takes them (and their references). */
static inline PyObject *
recs_batch(Recs *out)
{
    Rec *recs = out->recs;
    Py_ssize_t n = out->n;
    out->recs = NULL;
    out->n = out->cap = 0;
    return tf_batch_steal(recs, n);
}

#endif
