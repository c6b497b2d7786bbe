/* tracedfuture._core._cfuture.EventFold: events made only when they are read.
 *
 * The compiled twin of tracedfuture/_pipeline/_convert.py's Converter for the
 * records that make up most of every trace (a future created, awaited,
 * resolved, collected), the way _lines.c's LineWriter is the twin of Lines.
 * fold.events(records) folds a batch into the per-future state the converter
 * keeps (in a C table) and returns an EventView: a sequence of Events whose
 * items are built when an exporter reads them. An exporter that reads nothing
 * costs the fold alone; one that reads everything gets the same Events, built in
 * C (renames and callbacks removed too). A future whose history needs anything
 * else (a failure, a cancel, a mark, a redacted name, a captured value) is
 * handed to the reference Converter (helper.adopt) the first time, and the
 * reference converts the rest of it, in order (tests/test_batch.py compares).
 *
 * The fold reads the batch's structs in place with the GIL released, as
 * _lines.c does: the program's thread runs while an exporter's events are
 * folded. What needs the GIL is deferred to the end of the call, in order: the
 * reference's work (its adopt() and convert() calls, whose state depends only
 * on what it is given, in order; their events take the places of placeholder
 * entries), and the references the table and the entries take or drop (queued
 * in a RefQueue (_records.h), increments applied first: every object involved is alive until then,
 * the batch holding what its records name and the table what it held). A state
 * that is not an exact str, or an `incomplete` that is an object, is read with
 * the GIL taken back for it (never, from the hot path). Memory is PyMem_Raw.
 * One call at a time: a second thread waits for the first (an inline exporter
 * is delivered to by the drain and by flush()).
 *
 * Compiled into the _cfuture extension (setup.py); _cfuture.c calls
 * tf_eventfold_add_type() once at import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "_records.h"
#include "_gil.h" /* the GIL taken back at the program's next traced future, not a switch interval later */

/* Field positions after (op, fid, ts), from _seam.LAYOUTS. */
enum { C_TASK_ID, C_IS_TASK, C_CODE, C_LASTI, C_THREAD_ID, C_NAME, C_CORO, C_ROUTE, C_CONTEXT, C_PCODE, C_PLASTI };
enum { A_TASK_ID, A_CALLBACK, A_AWAITER };
enum { R_TASK_ID, R_TYPE, R_VALUE };
enum { X_STATE, X_INCOMPLETE };
enum { N_TASK_ID, N_NAME };
enum { V_TASK_ID, V_CALLBACK, V_INDICES };

/* From this many records on, a batch is folded with the GIL released. */
#define FOLD_WITHOUT_GIL 128

/* Event kinds this file builds; E_OBJECT: an Event the reference made; E_RUN:
 * where the events of a run of records given to the reference go (while folding). */
enum {
    E_CREATED,
    E_AWAITED,
    E_CB_ADDED,
    E_RESOLVED,
    E_SCHEDULED,
    E_RENAMED,
    E_CB_REMOVED,
    E_OBJECT,
    E_KINDS = E_OBJECT,
    E_RUN
};

/* Event's fields, by name (read from Event._fields at import). */
enum { F_KIND, F_FID, F_TS, F_TID, F_IS_TASK, F_NAME, F_SITE, F_THREAD, F_CORO, F_PARENT, F_CALLBACK, F_AWAITER,
       F_RESULT, F_CONTEXT, F_PSITE, F_COUNT };
static const char *field_names[F_COUNT] = {"kind",      "future_id", "ts_ns",       "task_id",     "is_task",
                                           "name",      "site",      "thread_id",   "coro",        "parent_id",
                                           "callback",  "awaiter_id", "result_type", "context",     "program_site"};
static Py_ssize_t field_at[F_COUNT];
static Py_ssize_t nfields;
static PyObject *kind_text[E_KINDS];
static PyObject *s_adopt, *s_convert, *s_FINISHED_e;

/* ------------------------------------------------------------------------ */
/* Per-future state: fid -> Fut, open addressing, backward-shift deletion     */


typedef struct {
    long long fid; /* 0: empty */
    int is_task, done, has_awaiter, has_plasti;
    long long awaiter, lasti, plasti, created;
    PyObject *name, *code, *pcode; /* owned, or NULL */
    Cb *cbs, *sched;               /* PyMem_Raw */
    Py_ssize_t ncb, capcb, nsched, capsched;
} Fut;

/* Ids made together share a home block (tf_hash_fid) and go together, the
 * oldest first: a backward-shift deletion, which walks to the end of its
 * cluster, then walks most of a block for each (most of a sink's time, with
 * perf). A deleted id leaves a tombstone instead, which the next id of that
 * home takes; the table is rebuilt when the tombstones and the ids fill half
 * of it. The ids apart from the states: a probe reads 8 bytes, not 128. */
#define TOMB LLONG_MIN /* never an id this table holds (fold_record) */
typedef struct {
    long long *keys; /* PyMem_Raw; 0: empty, TOMB: deleted */
    Fut *slots;      /* PyMem_Raw; slots[i] is keys[i]'s */
    size_t cap, used, dead;
    Spares spare; /* arrays of CB_FIRST let go */
} Table;

typedef struct {
    unsigned char kind, is_task, has_awaiter;
    Py_ssize_t rec; /* the record; E_RUN: its Deferred */
    long long awaiter;
    PyObject *name; /* owned or NULL */
    PyObject *obj;  /* E_SCHEDULED: its callback; E_OBJECT: the Event (owned) */
} Entry;

typedef struct {
    Entry *p; /* PyMem_Raw */
    Py_ssize_t n, cap;
} Entries;

/* What the reference is given, deferred to the end of a call: a future's state
 * (adopt), or a run of records to convert, whose events go where its E_RUN
 * entry is. In the order the fold met them, which is the order a fold holding
 * the GIL throughout would have called the reference in. */
typedef struct {
    int adopt;
    Fut fut;             /* adopt: the state handed over (its references with it) */
    Py_ssize_t from, to; /* a run: positions in Ctx.idx */
    PyObject *events;    /* a run: its events, once converted */
} Deferred;

typedef struct {
    PyObject_HEAD
    PyObject *helper;    /* the reference Converter: adopt(), convert() */
    PyObject *site_of;   /* _convert.site_of */
    PyObject *type_name; /* _convert.type_name */
    PyObject *event;     /* the Event class */
    PyObject *sites;     /* (id(code), lasti) -> (code, Site): dict, holding the code */
    PyObject *types;     /* type -> its name */
    int redacts;
    Table futs;
    PyThread_type_lock lock; /* held by the events() or clear() under way */
    long lock_pid;           /* the process that made the lock */
    unsigned long owner;     /* the thread that holds it, else 0 */
} FoldObject;

/* One call of events(): where its GIL is, and what waits for it. */
typedef struct {
    FoldObject *fold;
    PyThreadState *save; /* non-NULL: the GIL is released */
    RefQueue inc, dec;       /* queued while the GIL is released; applied when it is back */
    Entries e;
    Deferred *dv; /* PyMem_Raw */
    Py_ssize_t nd, capd;
    Py_ssize_t *idx; /* records for the reference, by position in the batch */
    Py_ssize_t nidx, capidx;
    Py_ssize_t run_from; /* idx[run_from:] are not in a run yet */
    Py_ssize_t nruns;
    const Rec *recs;
} Ctx;

/* Take the GIL back (if released): queued references are settled first. */
static void
gil(Ctx *c)
{
    if (c != NULL && c->save != NULL) {
        tf_gil_restore(c->save);
        c->save = NULL;
        refq_apply(&c->inc, &c->dec);
    }
}

static void
nogil(Ctx *c)
{
    if (c->save == NULL) {
        c->save = tf_gil_release();
    }
}

/* A reference for the fold's state or an entry (o alive: the batch or the table holds it). */
static PyObject *
own(Ctx *c, PyObject *o)
{
    if (o == NULL) {
        return NULL;
    }
    if (c == NULL || c->save == NULL || refq_push(&c->inc, o) < 0) {
        gil(c);
        Py_INCREF(o);
    }
    return o;
}

static void
disown(Ctx *c, PyObject *o)
{
    if (o == NULL) {
        return;
    }
    if (c == NULL || c->save == NULL) {
        Py_DECREF(o);
    }
    else if (refq_push(&c->dec, o) < 0) {
        gil(c);
        Py_DECREF(o);
    }
}

/* disown, as cbs_remove_at() lets a callback go. */
static void
disown_cb(void *c, PyObject *o)
{
    disown((Ctx *)c, o);
}

/* c NULL: the GIL is held (clear, dealloc, the end of a call); the array is
 * freed, not kept. */
static void
cbs_free(Ctx *c, Cb *cbs, Py_ssize_t n, Py_ssize_t cap)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        disown(c, cbs[i].callback);
    }
    cbs_let_go(c != NULL ? &c->fold->futs.spare : NULL, cbs, cap);
}

static void
fut_release(Ctx *c, Fut *f)
{
    disown(c, f->name);
    disown(c, f->code);
    disown(c, f->pcode);
    cbs_free(c, f->cbs, f->ncb, f->capcb);
    cbs_free(c, f->sched, f->nsched, f->capsched);
}

static Fut *
table_find(Table *t, long long fid)
{
    if (t->cap == 0 || fid == 0 || fid == TOMB) {
        return NULL;
    }
    size_t mask = t->cap - 1;
    const long long *keys = t->keys;
    for (size_t i = tf_hash_fid(fid) & mask;; i = (i + 1) & mask) {
        if (keys[i] == fid) {
            return &t->slots[i];
        }
        if (keys[i] == 0) {
            return NULL;
        }
    }
}

/* Takes f's slot out of the table; what it held is the caller's (released, or
 * handed over). The slot is dead: table_add clears it when it is taken again. */
static void
table_unlink(Table *t, Fut *f)
{
    t->keys[f - t->slots] = TOMB;
    t->used--;
    t->dead++;
}

static void
table_remove(Ctx *c, Table *t, Fut *f)
{
    fut_release(c, f);
    table_unlink(t, f);
}

/* NULL: out of memory (no exception set: the GIL may be released). */
static Fut *
table_add(Ctx *c, Table *t, long long fid)
{
    Fut *old = table_find(t, fid);
    if (old != NULL) {
        table_remove(c, t, old);
    }
    if ((t->used + t->dead + 1) * 2 > t->cap) {
        /* Rebuilt without its tombstones, a quarter full at most: a rebuild
         * every so many new futures as it holds, at least. */
        size_t cap = 1024;
        while (cap < (t->used + 1) * 4) {
            cap *= 2;
        }
        long long *keys = PyMem_RawCalloc(cap, sizeof(long long));
        Fut *slots = keys ? PyMem_RawMalloc(cap * sizeof(Fut)) : NULL; /* a slot is cleared when taken */
        if (slots == NULL) {
            PyMem_RawFree(keys);
            return NULL;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (t->keys[i] != 0 && t->keys[i] != TOMB) {
                size_t j = tf_hash_fid(t->keys[i]) & (cap - 1);
                while (keys[j] != 0) {
                    j = (j + 1) & (cap - 1);
                }
                keys[j] = t->keys[i];
                slots[j] = t->slots[i];
            }
        }
        PyMem_RawFree(t->keys);
        PyMem_RawFree(t->slots);
        t->keys = keys;
        t->slots = slots;
        t->cap = cap;
        t->dead = 0;
    }
    /* Not there (found above): the first free slot of its probe, a tombstone's or an empty one. */
    size_t mask = t->cap - 1;
    size_t i = tf_hash_fid(fid) & mask;
    while (t->keys[i] != 0 && t->keys[i] != TOMB) {
        i = (i + 1) & mask;
    }
    if (t->keys[i] == TOMB) {
        t->dead--;
    }
    t->keys[i] = fid;
    memset(&t->slots[i], 0, sizeof(Fut));
    t->slots[i].fid = fid;
    t->used++;
    return &t->slots[i];
}

static void
table_clear(Table *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        if (t->keys[i] != 0 && t->keys[i] != TOMB) {
            fut_release(NULL, &t->slots[i]);
        }
        t->keys[i] = 0;
    }
    t->used = t->dead = 0;
    spares_free(&t->spare);
}

/* ------------------------------------------------------------------------ */
/* EventFold                                                                 */

typedef struct {
    PyObject_HEAD
    FoldObject *fold;
    PyObject *batch; /* a RecordBatch: the records the entries point at */
    Entry *entries;  /* PyMem_Raw */
    Py_ssize_t n;
} ViewObject;

static PyTypeObject *FoldType, *ViewType;

static int
fold_init(FoldObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"helper", "site_of", "type_name", "event", "redacts", NULL};
    PyObject *helper, *site_of, *type_name, *event;
    int redacts = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|$p:EventFold", kwlist, &helper, &site_of, &type_name, &event,
                                     &redacts)) {
        return -1;
    }
    if (self->lock == NULL) {
        if ((self->lock = PyThread_allocate_lock()) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->lock_pid = (long)getpid();
    }
    Py_XSETREF(self->helper, Py_NewRef(helper));
    Py_XSETREF(self->site_of, Py_NewRef(site_of));
    Py_XSETREF(self->type_name, Py_NewRef(type_name));
    Py_XSETREF(self->event, Py_NewRef(event));
    self->redacts = redacts;
    if ((self->sites == NULL && (self->sites = PyDict_New()) == NULL) ||
        (self->types == NULL && (self->types = PyDict_New()) == NULL)) {
        return -1;
    }
    if (nfields == 0) {
        PyObject *fields = PyObject_GetAttrString(event, "_fields");
        if (fields == NULL || !PyTuple_Check(fields)) {
            Py_XDECREF(fields);
            PyErr_SetString(PyExc_TypeError, "EventFold: event must be a NamedTuple class");
            return -1;
        }
        for (int k = 0; k < F_COUNT; k++) {
            field_at[k] = -1;
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(fields); j++) {
                if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(fields, j), field_names[k]) == 0) {
                    field_at[k] = j;
                }
            }
            if (field_at[k] < 0) {
                PyErr_Format(PyExc_TypeError, "EventFold: Event has no field %s", field_names[k]);
                Py_DECREF(fields);
                return -1;
            }
        }
        nfields = PyTuple_GET_SIZE(fields);
        Py_DECREF(fields);
    }
    return 0;
}

/* The fold for this call, waited for if another thread has it (without the
 * GIL); -1 (RuntimeError) when this thread has it already. */
static int
fold_acquire(FoldObject *self)
{
    if (self->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "EventFold() was not initialised");
        return -1;
    }
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        if (self->lock_pid != (long)getpid()) {
            /* The child of a fork() made while a thread of the parent had the
             * fold, maybe without the GIL: that thread is not here, and the
             * table may be half-changed. Left as it is (a leak, once), never
             * freed; a fresh lock. */
            memset(&self->futs, 0, sizeof(Table));
            PyThread_type_lock lock = PyThread_allocate_lock();
            if (lock == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->lock = lock;
            self->lock_pid = (long)getpid();
            PyThread_acquire_lock(self->lock, WAIT_LOCK);
        }
        else if (self->owner == PyThread_get_thread_ident()) {
            PyErr_SetString(PyExc_RuntimeError, "EventFold.events() is already running on this thread");
            return -1;
        }
        else {
            Py_BEGIN_ALLOW_THREADS
            PyThread_acquire_lock(self->lock, WAIT_LOCK);
            Py_END_ALLOW_THREADS
        }
    }
    self->owner = PyThread_get_thread_ident();
    self->lock_pid = (long)getpid(); /* a fork()'s child that found it free holds it now */
    return 0;
}

static void
fold_release(FoldObject *self)
{
    self->owner = 0;
    PyThread_release_lock(self->lock);
}

static int
fold_traverse(FoldObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->helper);
    Py_VISIT(self->site_of);
    Py_VISIT(self->type_name);
    Py_VISIT(self->event);
    Py_VISIT(self->sites);
    Py_VISIT(self->types);
    return 0;
}

static int
fold_clear_refs(FoldObject *self)
{
    Py_CLEAR(self->helper);
    Py_CLEAR(self->site_of);
    Py_CLEAR(self->type_name);
    Py_CLEAR(self->event);
    Py_CLEAR(self->sites);
    Py_CLEAR(self->types);
    return 0;
}

static void
fold_dealloc(FoldObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    table_clear(&self->futs);
    PyMem_RawFree(self->futs.keys);
    PyMem_RawFree(self->futs.slots);
    if (self->lock != NULL) {
        PyThread_free_lock(self->lock);
    }
    fold_clear_refs(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
cb_list(Cb *cbs, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *pair = cbs[i].has_awaiter ? Py_BuildValue("(OL)", cbs[i].callback, cbs[i].awaiter)
                                            : PyTuple_Pack(2, cbs[i].callback, Py_None);
        if (pair == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
}

static PyObject *
or_none(PyObject *o)
{
    return o ? o : Py_None;
}

/* With the GIL: the reference takes over a future, its state as Converter keeps it. */
static int
adopt(FoldObject *self, Fut *f)
{
    PyObject *callbacks = cb_list(f->cbs, f->ncb);
    PyObject *scheduled = callbacks ? cb_list(f->sched, f->nsched) : NULL;
    PyObject *res = NULL;
    if (scheduled != NULL) {
        PyObject *awaiter = f->has_awaiter ? PyLong_FromLongLong(f->awaiter) : Py_NewRef(Py_None);
        PyObject *plasti = f->has_plasti ? PyLong_FromLongLong(f->plasti) : Py_NewRef(Py_None);
        PyObject *lasti = PyLong_FromLongLong(f->lasti), *fid = PyLong_FromLongLong(f->fid);
        PyObject *created = PyLong_FromLongLong(f->created);
        if (awaiter && plasti && lasti && fid && created) {
            res = PyObject_CallMethodObjArgs(self->helper, s_adopt, fid, f->is_task ? Py_True : Py_False,
                                             or_none(f->name), or_none(f->code), lasti, created, callbacks, scheduled,
                                             awaiter, f->done ? Py_True : Py_False, or_none(f->pcode), plasti, NULL);
        }
        Py_XDECREF(awaiter);
        Py_XDECREF(plasti);
        Py_XDECREF(lasti);
        Py_XDECREF(fid);
        Py_XDECREF(created);
    }
    Py_XDECREF(callbacks);
    Py_XDECREF(scheduled);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static Deferred *
defer(Ctx *c)
{
    if (c->nd == c->capd) {
        Py_ssize_t cap = c->capd ? c->capd * 2 : 16;
        Deferred *p = PyMem_RawRealloc(c->dv, (size_t)cap * sizeof(Deferred));
        if (p == NULL) {
            return NULL;
        }
        c->dv = p;
        c->capd = cap;
    }
    Deferred *d = &c->dv[c->nd++];
    memset(d, 0, sizeof(*d));
    return d;
}

/* The future is the reference's from now on: its state goes with the deferred adopt(). */
static int
hand_over(Ctx *c, Fut *f)
{
    Deferred *d = defer(c);
    if (d == NULL) {
        return -1;
    }
    d->adopt = 1;
    d->fut = *f; /* its references with it */
    table_unlink(&c->fold->futs, f);
    return 0;
}

static Entry *
push(Ctx *c, int kind, Py_ssize_t rec)
{
    Entries *v = &c->e;
    if (v->n == v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 64;
        Entry *p = PyMem_RawRealloc(v->p, (size_t)cap * sizeof(Entry));
        if (p == NULL) {
            return NULL;
        }
        v->p = p;
        v->cap = cap;
    }
    Entry *e = &v->p[v->n++];
    memset(e, 0, sizeof(*e));
    e->kind = (unsigned char)kind;
    e->rec = rec;
    return e;
}

/* A record for the reference (by its position in the batch). */
static int
add_pending(Ctx *c, Py_ssize_t i)
{
    if (c->nidx == c->capidx) {
        Py_ssize_t cap = c->capidx ? c->capidx * 2 : 64;
        Py_ssize_t *p = PyMem_RawRealloc(c->idx, (size_t)cap * sizeof(Py_ssize_t));
        if (p == NULL) {
            return -1;
        }
        c->idx = p;
        c->capidx = cap;
    }
    c->idx[c->nidx++] = i;
    return 0;
}

/* What the reference was given so far is converted here, in order: a run, its
 * events in place of an E_RUN entry. */
static int
flush_pending(Ctx *c)
{
    if (c->run_from == c->nidx) {
        return 0;
    }
    Deferred *d = defer(c);
    if (d == NULL) {
        return -1;
    }
    d->from = c->run_from;
    d->to = c->run_from = c->nidx;
    c->nruns++;
    return push(c, E_RUN, c->nd - 1) == NULL ? -1 : 0;
}

static int
add_cb(Ctx *c, Cb **cbs, Py_ssize_t *n, Py_ssize_t *cap, PyObject *callback, int has_awaiter, long long awaiter)
{
    if (cbs_room(&c->fold->futs.spare, cbs, *n, cap) < 0) {
        return -1;
    }
    (*cbs)[*n].callback = own(c, callback);
    (*cbs)[*n].awaiter = awaiter;
    (*cbs)[*n].has_awaiter = has_awaiter;
    (*n)++;
    return 0;
}

/* The hot path's state is the interned "FINISHED"; a str read without the GIL
 * is one that needs no readying. -1: ask with the GIL. */
static int
is_finished(PyObject *state)
{
    if (state == s_FINISHED_e) {
        return 1;
    }
    if (state == NULL) {
        return 0;
    }
    if (!PyUnicode_CheckExact(state)) {
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(state)) {
        return -1;
    }
#endif
    return PyUnicode_KIND(state) == PyUnicode_1BYTE_KIND && PyUnicode_GET_LENGTH(state) == 8 &&
           memcmp(PyUnicode_DATA(state), "FINISHED", 8) == 0;
}

/* One record: 1 when folded here, 0 when it is the reference's, -1 on error
 * (an exception set only if the GIL is held). */
static int
fold_record(Ctx *c, const Rec *r, Py_ssize_t i)
{
    FoldObject *self = c->fold;
    if (r->flags & F_RAW) {
        /* A record made off the hot path (a mark, a lint): the reference writes
         * its event, so it must hold the future's state first. */
        if (r->fid != 0) {
            Fut *f = table_find(&self->futs, r->fid);
            if (f != NULL && hand_over(c, f) < 0) {
                return -1;
            }
        }
        return 0;
    }
    if (r->op == OP_CREATED) {
        PyObject *name = slot_obj(r, C_NAME);
        if ((self->redacts && name != NULL) || r->fid == 0 || r->fid == TOMB || !slot_is_int(r, C_LASTI)) {
            return 0;
        }
        if (flush_pending(c) < 0) {
            return -1;
        }
        Fut *f = table_add(c, &self->futs, r->fid);
        if (f == NULL) {
            return -1;
        }
        f->is_task = slot_is_int(r, C_IS_TASK) && r->s[C_IS_TASK].i != 0;
        f->name = own(c, name);
        f->code = own(c, slot_obj(r, C_CODE));
        f->pcode = own(c, slot_obj(r, C_PCODE));
        f->lasti = r->s[C_LASTI].i;
        f->has_plasti = slot_is_int(r, C_PLASTI);
        f->plasti = f->has_plasti ? r->s[C_PLASTI].i : 0;
        f->created = r->ts;
        Entry *e = push(c, E_CREATED, i);
        if (e == NULL) {
            return -1;
        }
        e->is_task = (unsigned char)f->is_task;
        e->name = own(c, name);
        return 1;
    }
    Fut *f = table_find(&self->futs, r->fid);
    if (f == NULL) {
        return 0; /* the reference's, or nobody's */
    }
    int common = 0;
    if (r->op == OP_COLLECTED) {
        PyObject *state = slot_obj(r, X_STATE);
        int finished = is_finished(state);
        if (finished < 0) {
            gil(c);
            finished = PyUnicode_Check(state) && PyUnicode_Compare(state, s_FINISHED_e) == 0;
            if (finished == 0 && PyErr_Occurred()) {
                return -1;
            }
        }
        int incomplete = 0;
        if (slot_obj(r, X_INCOMPLETE) != NULL) {
            gil(c);
            if ((incomplete = PyObject_IsTrue(slot_obj(r, X_INCOMPLETE))) < 0) {
                return -1;
            }
        }
        else if (!slot_is_none(r, X_INCOMPLETE)) {
            incomplete = r->s[X_INCOMPLETE].i != 0;
        }
        if (finished && !incomplete) {
            table_remove(c, &self->futs, f);
            return 1;
        }
    }
    else if (r->op == OP_CB_ADDED && !f->done && slot_obj(r, A_CALLBACK) != NULL) {
        common = 1;
    }
    else if (r->op == OP_RESOLVED && slot_is_none(r, R_VALUE)) {
        common = 1;
    }
    else if (r->op == OP_RENAMED && (slot_is_int(r, N_TASK_ID) || slot_is_none(r, N_TASK_ID)) &&
             (slot_is_none(r, N_NAME) || (slot_obj(r, N_NAME) != NULL && !self->redacts))) {
        /* set_name() (on 3.11 and 3.12, every name given to create_task()): the
         * state's name is the new one, as the reference's; a name to redact is
         * the reference's */
        if (flush_pending(c) < 0) {
            return -1;
        }
        PyObject *name = own(c, slot_obj(r, N_NAME));
        disown(c, f->name);
        f->name = name;
        Entry *e = push(c, E_RENAMED, i);
        if (e == NULL) {
            return -1;
        }
        e->is_task = (unsigned char)f->is_task;
        e->name = own(c, f->name);
        return 1;
    }
    else if (r->op == OP_CB_REMOVED && (slot_is_int(r, V_TASK_ID) || slot_is_none(r, V_TASK_ID)) &&
             (slot_is_none(r, V_CALLBACK) || slot_obj(r, V_CALLBACK) != NULL) &&
             removed_indices_ok(slot_obj(r, V_INDICES))) {
        /* remove_done_callback() (asyncio.wait(), and 3.11's wait_for(), call it
         * on every future they waited for): cbs_remove_at() says which go */
        if (flush_pending(c) < 0) {
            return -1;
        }
        cbs_remove_at(f->cbs, &f->ncb, slot_obj(r, V_INDICES), disown_cb, c);
        Entry *e = push(c, E_CB_REMOVED, i);
        if (e == NULL) {
            return -1;
        }
        e->is_task = (unsigned char)f->is_task;
        e->name = own(c, f->name);
        return 1;
    }
    if (!common) {
        return hand_over(c, f) < 0 ? -1 : 0;
    }
    if (flush_pending(c) < 0) {
        return -1;
    }
    if (r->op == OP_CB_ADDED) {
        int has = slot_is_int(r, A_AWAITER);
        long long awaiter = has ? r->s[A_AWAITER].i : 0;
        if (has) {
            f->has_awaiter = 1;
            f->awaiter = awaiter;
        }
        if (add_cb(c, &f->cbs, &f->ncb, &f->capcb, slot_obj(r, A_CALLBACK), has, awaiter) < 0) {
            return -1;
        }
        Entry *e = push(c, has ? E_AWAITED : E_CB_ADDED, i);
        if (e == NULL) {
            return -1;
        }
        e->is_task = (unsigned char)f->is_task;
        e->name = own(c, f->name);
        return 1;
    }
    /* resolved, then each callback it holds, scheduled */
    Entry *e = push(c, E_RESOLVED, i);
    if (e == NULL) {
        return -1;
    }
    e->is_task = (unsigned char)f->is_task;
    e->name = own(c, f->name);
    f->done = 1;
    cbs_free(c, f->sched, f->nsched, f->capsched);
    f->sched = f->cbs;
    f->nsched = f->ncb;
    f->capsched = f->capcb;
    f->cbs = NULL;
    f->ncb = f->capcb = 0;
    for (Py_ssize_t k = 0; k < f->nsched; k++) {
        e = push(c, E_SCHEDULED, i);
        if (e == NULL) {
            return -1;
        }
        e->is_task = (unsigned char)f->is_task;
        e->name = own(c, f->name);
        e->obj = own(c, f->sched[k].callback);
        e->has_awaiter = (unsigned char)f->sched[k].has_awaiter;
        e->awaiter = f->sched[k].awaiter;
    }
    return 1;
}

/* With the GIL: the reference's work, in order (adopt, convert). */
static int
run_deferred(Ctx *c, Py_ssize_t *nevents)
{
    int rc = 0;
    long long since = 0;
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        Deferred *d = &c->dv[k];
        if (tf_gil_turn_due(&since)) {
            nogil(c); /* the program's turn: see _gil.h */
            tf_gil_pause();
            gil(c);
        }
        if (d->adopt) {
            if (rc == 0 && adopt(c->fold, &d->fut) < 0) {
                rc = -1;
            }
            fut_release(NULL, &d->fut);
            d->adopt = 0;
            continue;
        }
        if (rc < 0) {
            continue;
        }
        PyObject *records = PyList_New(d->to - d->from);
        for (Py_ssize_t j = d->from; records != NULL && j < d->to; j++) {
            PyObject *t = rec_tuple(&c->recs[c->idx[j]]);
            if (t == NULL) {
                Py_CLEAR(records);
                break;
            }
            PyList_SET_ITEM(records, j - d->from, t);
        }
        PyObject *events = records ? PyObject_CallMethodObjArgs(c->fold->helper, s_convert, records, NULL) : NULL;
        Py_XDECREF(records);
        d->events = events ? PySequence_Fast(events, "convert() returns a list") : NULL;
        Py_XDECREF(events);
        if (d->events == NULL) {
            rc = -1;
            continue;
        }
        *nevents += PySequence_Fast_GET_SIZE(d->events) - 1; /* in place of its E_RUN entry */
    }
    return rc;
}

static void
free_deferred(Ctx *c)
{
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        if (c->dv[k].adopt) {
            fut_release(NULL, &c->dv[k].fut);
        }
        Py_CLEAR(c->dv[k].events);
    }
    PyMem_RawFree(c->dv);
    PyMem_RawFree(c->idx);
    c->dv = NULL;
    c->idx = NULL;
    c->nd = c->nidx = 0;
}

static void
entries_free(Entry *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_CLEAR(p[i].name);
        Py_CLEAR(p[i].obj);
    }
    PyMem_RawFree(p);
}

/* With the GIL: the entries with each run's events in place of its E_RUN entry. */
static int
expand_runs(Ctx *c, Py_ssize_t total)
{
    Entry *out = PyMem_RawMalloc((size_t)(total ? total : 1) * sizeof(Entry));
    if (out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < c->e.n; i++) {
        Entry *e = &c->e.p[i];
        if (e->kind != E_RUN) {
            out[j++] = *e;
            continue;
        }
        PyObject *events = c->dv[e->rec].events;
        for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(events); k++) {
            memset(&out[j], 0, sizeof(Entry));
            out[j].kind = E_OBJECT;
            out[j].rec = -1;
            out[j].obj = Py_NewRef(PySequence_Fast_GET_ITEM(events, k));
            j++;
        }
    }
    PyMem_RawFree(c->e.p);
    c->e.p = out;
    c->e.n = c->e.cap = total;
    return 0;
}

static PyObject *
fold_events(FoldObject *self, PyObject *records)
{
    if (self->helper == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "EventFold() was not initialised");
        return NULL;
    }
    PyObject *batch = tf_batch_of(records);
    if (batch == NULL) {
        return NULL;
    }
    if (fold_acquire(self) < 0) {
        Py_DECREF(batch);
        return NULL;
    }
    Ctx c;
    memset(&c, 0, sizeof(c));
    c.fold = self;
    Py_ssize_t n;
    tf_batch_view(batch, &c.recs, &n);
    ViewObject *v = NULL;
    int ok = 0;
    /* About an entry per record (a collected record has none, an end one per
     * callback): room for as many at once, not doubled up to it from 64 with
     * its entries copied at each step. */
    if (n > 64 && (c.e.p = PyMem_RawMalloc((size_t)n * sizeof(Entry))) != NULL) {
        c.e.cap = n;
    }
    /* The batch holds every object its records name, the fold's table is this
     * call's alone (the lock), and nothing here is seen by the collector: the
     * GIL can go. */
    if (n >= FOLD_WITHOUT_GIL) {
        nogil(&c);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = fold_record(&c, &c.recs[i], i);
        if (rc < 0 || (rc == 0 && add_pending(&c, i) < 0)) {
            goto done;
        }
        if (c.save == NULL && n >= FOLD_WITHOUT_GIL) {
            nogil(&c); /* after an odd record read with the GIL */
        }
    }
    if (flush_pending(&c) < 0) {
        goto done;
    }
    gil(&c);
    Py_ssize_t total = c.e.n;
    if (run_deferred(&c, &total) < 0 || (c.nruns && expand_runs(&c, total) < 0)) {
        goto done;
    }
    v = PyObject_GC_New(ViewObject, ViewType);
    if (v == NULL) {
        goto done;
    }
    v->fold = (FoldObject *)Py_NewRef(self);
    v->batch = Py_NewRef(batch);
    v->entries = c.e.p;
    v->n = c.e.n;
    c.e.p = NULL;
    c.e.n = 0;
    PyObject_GC_Track(v);
    ok = 1;
done:
    gil(&c);
    if (!ok && !PyErr_Occurred()) {
        PyErr_NoMemory(); /* what failed could not say so without the GIL */
    }
    entries_free(c.e.p, c.e.n);
    free_deferred(&c);
    PyMem_RawFree(c.inc.p);
    PyMem_RawFree(c.dec.p);
    fold_release(self);
    Py_DECREF(batch);
    return (PyObject *)v;
}

static PyObject *
fold_clear(FoldObject *self, PyObject *Py_UNUSED(ignored))
{
    if (fold_acquire(self) < 0) {
        return NULL;
    }
    table_clear(&self->futs);
    fold_release(self);
    Py_RETURN_NONE;
}

static PyObject *
fold_held(FoldObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(self->futs.used);
}

static PyMethodDef fold_methods[] = {
    {"events", (PyCFunction)fold_events, METH_O,
     "events(batch): the events of a RecordBatch, as a sequence whose items are made when read."},
    {"clear", (PyCFunction)fold_clear, METH_NOARGS, "Forget every future held (after fork(), in the child)."},
    {"held", (PyCFunction)fold_held, METH_NOARGS, "How many futures this fold holds (not the reference's)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fold_slots[] = {
    {Py_tp_doc, "EventFold(helper, site_of, type_name, event, *, redacts=False): see _eventfold.c."},
    {Py_tp_init, fold_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, fold_dealloc},
    {Py_tp_traverse, fold_traverse},
    {Py_tp_clear, fold_clear_refs},
    {Py_tp_methods, fold_methods},
    {0, NULL},
};

static PyType_Spec fold_spec = {
    .name = "tracedfuture._core._cfuture.EventFold",
    .basicsize = sizeof(FoldObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = fold_slots,
};

/* ------------------------------------------------------------------------ */
/* EventView                                                                 */

static void
entry_release(Entry *e)
{
    Py_CLEAR(e->name);
    Py_CLEAR(e->obj);
}

static int
view_traverse(ViewObject *v, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(v));
    Py_VISIT(v->fold);
    Py_VISIT(v->batch);
    for (Py_ssize_t i = 0; i < v->n; i++) {
        Py_VISIT(v->entries[i].name);
        Py_VISIT(v->entries[i].obj);
    }
    return 0;
}

static int
view_clear(ViewObject *v)
{
    Py_CLEAR(v->fold);
    Py_CLEAR(v->batch);
    for (Py_ssize_t i = 0; i < v->n; i++) {
        entry_release(&v->entries[i]);
    }
    return 0;
}

static void
view_dealloc(ViewObject *v)
{
    PyTypeObject *tp = Py_TYPE(v);
    PyObject_GC_UnTrack(v);
    view_clear(v);
    PyMem_RawFree(v->entries);
    PyObject_GC_Del(v);
    Py_DECREF(tp);
}

static Py_ssize_t
view_len(ViewObject *v)
{
    return v->n;
}

/* A cached value of key (borrowed), or the function's result for args, stored. */
/* Event and Site are tuple subclasses, which the collector never untracks by
 * itself (it does so for exact tuples only): one that holds no tracked object can
 * be in no reference cycle, and is untracked here, as CPython untracks such
 * tuples. Otherwise every event a MemoryExporter keeps would be traversed by
 * every collection (most of the time of a program that keeps many). */
static void
untrack_if_atoms(PyObject *tuple)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(tuple); k++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, k);
        if (PyObject_IS_GC(item) && PyObject_GC_IsTracked(item)) {
            return;
        }
    }
    PyObject_GC_UnTrack(tuple);
}

static PyObject *
site_of(FoldObject *fold, PyObject *code, long long lasti)
{
    PyObject *key = Py_BuildValue("(nL)", (Py_ssize_t)(uintptr_t)code, lasti);
    if (key == NULL) {
        return NULL;
    }
    PyObject *hit = PyDict_GetItemWithError(fold->sites, key);
    if (hit != NULL) {
        Py_DECREF(key);
        return Py_NewRef(PyTuple_GET_ITEM(hit, 1));
    }
    PyObject *site = PyErr_Occurred() ? NULL : PyObject_CallFunction(fold->site_of, "OL", code, lasti);
    if (site != NULL && PyTuple_Check(site)) {
        untrack_if_atoms(site);
    }
    if (site != NULL) {
        if (PyDict_GET_SIZE(fold->sites) >= 100000) {
            PyDict_Clear(fold->sites);
        }
        PyObject *value = PyTuple_Pack(2, code, site); /* keeps code alive: its address is not reused */
        if (value == NULL || PyDict_SetItem(fold->sites, key, value) < 0) {
            Py_CLEAR(site);
        }
        Py_XDECREF(value);
    }
    Py_DECREF(key);
    return site;
}

static PyObject *
type_text(FoldObject *fold, PyObject *tp)
{
    PyObject *hit = PyDict_GetItemWithError(fold->types, tp);
    if (hit != NULL) {
        return Py_NewRef(hit);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *name = PyObject_CallOneArg(fold->type_name, tp);
    if (name != NULL && PyDict_GET_SIZE(fold->types) < 10000 && PyDict_SetItem(fold->types, tp, name) < 0) {
        Py_CLEAR(name);
    }
    return name;
}

static inline PyObject *
int_or_none(const Rec *r, int k)
{
    if (!slot_is_int(r, k)) {
        return Py_NewRef(or_none(slot_obj(r, k)));
    }
    return PyLong_FromLongLong(r->s[k].i);
}

static PyObject *
make_event(ViewObject *v, Entry *e)
{
    if (e->kind == E_OBJECT) {
        return Py_NewRef(e->obj);
    }
    const Rec *recs;
    Py_ssize_t n;
    if (!tf_batch_view(v->batch, &recs, &n) || e->rec < 0 || e->rec >= n) {
        PyErr_SetString(PyExc_RuntimeError, "EventView: its batch is gone");
        return NULL;
    }
    const Rec *r = &recs[e->rec];
    PyTypeObject *tp = (PyTypeObject *)v->fold->event;
    PyObject *ev = tp->tp_alloc(tp, nfields);
    if (ev == NULL) {
        return NULL;
    }
    PyObject **items = ((PyTupleObject *)ev)->ob_item;
    items[field_at[F_KIND]] = Py_NewRef(kind_text[e->kind]);
    items[field_at[F_FID]] = PyLong_FromLongLong(r->fid);
    items[field_at[F_TS]] = PyLong_FromLongLong(r->ts);
    items[field_at[F_TID]] = int_or_none(r, 0); /* task_id is the first field of these ops */
    items[field_at[F_IS_TASK]] = PyBool_FromLong(e->is_task);
    items[field_at[F_NAME]] = Py_NewRef(or_none(e->name));
    if (e->kind == E_CREATED) {
        PyObject *code = slot_obj(r, C_CODE), *pcode = slot_obj(r, C_PCODE);
        long long lasti = r->s[C_LASTI].i;
        PyObject *site = code ? site_of(v->fold, code, lasti) : Py_NewRef(Py_None);
        items[field_at[F_SITE]] = site;
        items[field_at[F_THREAD]] = int_or_none(r, C_THREAD_ID);
        items[field_at[F_CORO]] = Py_NewRef(or_none(slot_obj(r, C_CORO)));
        items[field_at[F_PARENT]] = e->is_task ? int_or_none(r, C_TASK_ID) : Py_NewRef(Py_None);
        items[field_at[F_CONTEXT]] = Py_NewRef(or_none(slot_obj(r, C_CONTEXT)));
        PyObject *psite;
        if (pcode == NULL || !slot_is_int(r, C_PLASTI)) {
            psite = Py_NewRef(Py_None);
        }
        else if (pcode == code && r->s[C_PLASTI].i == lasti) {
            psite = Py_XNewRef(site);
        }
        else {
            psite = site_of(v->fold, pcode, r->s[C_PLASTI].i);
        }
        items[field_at[F_PSITE]] = psite;
    }
    else if (e->kind == E_AWAITED || e->kind == E_CB_ADDED) {
        items[field_at[F_CALLBACK]] = Py_NewRef(or_none(slot_obj(r, A_CALLBACK)));
        items[field_at[F_AWAITER]] = int_or_none(r, A_AWAITER);
    }
    else if (e->kind == E_RESOLVED) {
        PyObject *rt = slot_obj(r, R_TYPE);
        items[field_at[F_RESULT]] = rt ? type_text(v->fold, rt) : Py_NewRef(Py_None);
    }
    else if (e->kind == E_CB_REMOVED) {
        items[field_at[F_CALLBACK]] = Py_NewRef(or_none(slot_obj(r, V_CALLBACK)));
    }
    else if (e->kind == E_SCHEDULED) {
        items[field_at[F_CALLBACK]] = Py_NewRef(e->obj);
        items[field_at[F_AWAITER]] = e->has_awaiter ? PyLong_FromLongLong(e->awaiter) : Py_NewRef(Py_None);
    }
    for (Py_ssize_t k = 0; k < nfields; k++) {
        if (items[k] == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(ev);
                return NULL;
            }
            items[k] = Py_NewRef(Py_None);
        }
    }
    untrack_if_atoms(ev);
    return ev;
}

static PyObject *
view_item(ViewObject *v, Py_ssize_t i)
{
    if (i < 0 || i >= v->n) {
        PyErr_SetString(PyExc_IndexError, "EventView index out of range");
        return NULL;
    }
    return make_event(v, &v->entries[i]);
}

static PyObject *
view_subscript(ViewObject *v, PyObject *key)
{
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            return NULL;
        }
        return view_item(v, i < 0 ? i + v->n : i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "EventView indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
        return NULL;
    }
    Py_ssize_t len = PySlice_AdjustIndices(v->n, &start, &stop, step);
    PyObject *out = PyList_New(len);
    for (Py_ssize_t k = 0, i = start; out != NULL && k < len; k++, i += step) {
        PyObject *item = view_item(v, i);
        if (item == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, item);
    }
    return out;
}

static PyObject *
view_repr(ViewObject *v)
{
    return PyUnicode_FromFormat("<tracedfuture EventView of %zd events>", v->n);
}

static PyType_Slot view_slots[] = {
    {Py_tp_doc, "The events of a batch, each made when it is read (see _eventfold.c)."},
    {Py_tp_dealloc, view_dealloc},
    {Py_tp_traverse, view_traverse},
    {Py_tp_clear, view_clear},
    {Py_tp_repr, view_repr},
    {Py_sq_length, view_len},
    {Py_sq_item, view_item},
    {Py_mp_length, view_len},
    {Py_mp_subscript, view_subscript},
    {0, NULL},
};

static PyType_Spec view_spec = {
    .name = "tracedfuture._core._cfuture.EventView",
    .basicsize = sizeof(ViewObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_SEQUENCE,
    .slots = view_slots,
};

int
tf_eventfold_add_type(PyObject *module)
{
    static const char *kinds[E_KINDS] = {"created",            "awaited", "callback_added",  "resolved",
                                         "callback_scheduled", "renamed", "callback_removed"};
    for (int k = 0; k < E_KINDS; k++) {
        if ((kind_text[k] = PyUnicode_InternFromString(kinds[k])) == NULL) {
            return -1;
        }
    }
    /* The fields read here, where _seam.LAYOUTS puts them. */
    if (tf_check_field(OP_CREATED, C_TASK_ID, "task_id") < 0 || tf_check_field(OP_CREATED, C_IS_TASK, "is_task") < 0 ||
        tf_check_field(OP_CREATED, C_CODE, "code") < 0 || tf_check_field(OP_CREATED, C_LASTI, "lasti") < 0 ||
        tf_check_field(OP_CREATED, C_THREAD_ID, "thread_id") < 0 || tf_check_field(OP_CREATED, C_NAME, "name") < 0 ||
        tf_check_field(OP_CREATED, C_CORO, "coro") < 0 || tf_check_field(OP_CREATED, C_CONTEXT, "context") < 0 ||
        tf_check_field(OP_CREATED, C_PCODE, "program_code") < 0 ||
        tf_check_field(OP_CREATED, C_PLASTI, "program_lasti") < 0 ||
        tf_check_field(OP_CB_ADDED, A_TASK_ID, "task_id") < 0 ||
        tf_check_field(OP_CB_ADDED, A_CALLBACK, "callback_name") < 0 ||
        tf_check_field(OP_CB_ADDED, A_AWAITER, "awaiter_id") < 0 ||
        tf_check_field(OP_RESOLVED, R_TASK_ID, "task_id") < 0 ||
        tf_check_field(OP_RESOLVED, R_TYPE, "result_type") < 0 ||
        tf_check_field(OP_RESOLVED, R_VALUE, "value_repr") < 0 ||
        tf_check_field(OP_COLLECTED, X_STATE, "state") < 0 ||
        tf_check_field(OP_COLLECTED, X_INCOMPLETE, "incomplete") < 0 ||
        tf_check_field(OP_RENAMED, N_TASK_ID, "task_id") < 0 || tf_check_field(OP_RENAMED, N_NAME, "name") < 0 ||
        tf_check_field(OP_CB_REMOVED, V_TASK_ID, "task_id") < 0 ||
        tf_check_field(OP_CB_REMOVED, V_CALLBACK, "callback_name") < 0 ||
        tf_check_field(OP_CB_REMOVED, V_INDICES, "removed_indices") < 0) {
        return -1;
    }
    if ((s_adopt = PyUnicode_InternFromString("adopt")) == NULL ||
        (s_convert = PyUnicode_InternFromString("convert")) == NULL ||
        (s_FINISHED_e = PyUnicode_InternFromString("FINISHED")) == NULL) {
        return -1;
    }
    FoldType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &fold_spec, NULL);
    ViewType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &view_spec, NULL);
    if (FoldType == NULL || ViewType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "EventFold", (PyObject *)FoldType) < 0 ||
        PyModule_AddObjectRef(module, "EventView", (PyObject *)ViewType) < 0) {
        return -1;
    }
    return 0;
}
