/* tracedfuture._core._cfuture.LineWriter: trace-file lines from raw records, in C.
 *
 * The compiled twin of tracedfuture/_pipeline/_lines.py's Lines, which stays the
 * reference (tests/test_lines.py compares the two byte for byte). It writes the
 * four records that make up most of every trace (a future created, awaited,
 * resolved, collected) itself, from per-future state kept in a C hash table and
 * JSON fragments cached per string, creation site and result type. Everything
 * else goes to the reference, in order: a future whose history needs it (a
 * failure, a cancel, a rename, a callback removed, a mark) is handed over with
 * its state (helper.adopt) the first time, and the reference writes the rest of
 * it. First-seen strings, sites and types are turned into JSON by the helper too
 * (helper.text / site_text / result_text), so that both decide alike.
 *
 * The writer runs on a trace file's own delivery thread (_pipeline/_sink.py), on
 * records the queue kept; it holds the GIL (it reads the record tuples), but
 * allocates no Python object per record.
 *
 * This file is compiled into the _cfuture extension (setup.py); _cfuture.c calls
 * tf_lines_add_type() once at import. It needs nothing else of _cfuture.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

int tf_lines_add_type(PyObject *module);

/* As in _seam.LAYOUTS (ops) and _pipeline/_convert.MARK. */
enum { L_CREATED = 0, L_CB_ADDED = 1, L_RESOLVED = 3, L_COLLECTED = 8 };
/* (op, fid, ts, task_id, is_task, code, lasti, thread_id, name, coro, route, context, program_code, program_lasti) */
#define CREATED_LEN 14
#define CACHE_LIMIT 100000

/* ------------------------------------------------------------------------ */
/* An output buffer                                                          */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int
buf_grow(Buf *b, size_t more)
{
    if (b->n + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more) {
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int
buf_put(Buf *b, const char *s, size_t n)
{
    if (n == 0) {
        return 0; /* an empty buffer has no memory yet: memcpy must not see its NULL */
    }
    if (buf_grow(b, n) < 0) {
        return -1;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

#define PUT(b, lit) buf_put((b), (lit), sizeof(lit) - 1)

static const char DIGITS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline int
buf_ll(Buf *b, long long v)
{
    char tmp[24];
    int k = 24;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        tmp[--k] = DIGITS[d + 1];
        tmp[--k] = DIGITS[d];
    }
    if (u >= 10) {
        tmp[--k] = DIGITS[u * 2 + 1];
        tmp[--k] = DIGITS[u * 2];
    }
    else {
        tmp[--k] = (char)('0' + u);
    }
    if (v < 0) {
        tmp[--k] = '-';
    }
    return buf_put(b, tmp + k, (size_t)(24 - k));
}

/* An int of a record, as Python's f-string writes it (any size). */
static int
buf_int(Buf *b, PyObject *v)
{
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        return buf_ll(b, x);
    }
    PyObject *s = PyObject_Str(v);
    if (s == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    int rc = u == NULL ? -1 : buf_put(b, u, (size_t)n);
    Py_DECREF(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Caches: (object, int) -> a UTF-8 fragment, holding the object             */

typedef struct {
    PyObject *key; /* owned: its address is not reused while cached */
    long long extra;
    PyObject *text; /* bytes */
} CacheSlot;

typedef struct {
    CacheSlot *slots;
    size_t cap, used;
} Cache;

static inline size_t
hash_ptr(const void *p, long long extra)
{
    uint64_t h = (uint64_t)(uintptr_t)p ^ ((uint64_t)extra * 0x9E3779B97F4A7C15ULL);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h;
}

static void
cache_clear(Cache *c)
{
    for (size_t i = 0; i < c->cap; i++) {
        Py_CLEAR(c->slots[i].key);
        Py_CLEAR(c->slots[i].text);
    }
    c->used = 0;
}

static void
cache_free(Cache *c)
{
    cache_clear(c);
    PyMem_Free(c->slots);
    c->slots = NULL;
    c->cap = 0;
}

static PyObject *
cache_get(Cache *c, PyObject *key, long long extra)
{
    if (c->cap == 0) {
        return NULL;
    }
    size_t mask = c->cap - 1;
    for (size_t i = hash_ptr(key, extra) & mask;; i = (i + 1) & mask) {
        CacheSlot *s = &c->slots[i];
        if (s->key == NULL) {
            return NULL;
        }
        if (s->key == key && s->extra == extra) {
            return s->text;
        }
    }
}

/* Stores text (a new reference, stolen) for key; returns it borrowed, or NULL. */
static PyObject *
cache_put(Cache *c, PyObject *key, long long extra, PyObject *text)
{
    if (c->used >= CACHE_LIMIT) {
        cache_clear(c);
    }
    if ((c->used + 1) * 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        CacheSlot *slots = PyMem_Calloc(cap, sizeof(CacheSlot));
        if (slots == NULL) {
            Py_DECREF(text);
            PyErr_NoMemory();
            return NULL;
        }
        for (size_t i = 0; i < c->cap; i++) {
            CacheSlot *s = &c->slots[i];
            if (s->key != NULL) {
                size_t j = hash_ptr(s->key, s->extra) & (cap - 1);
                while (slots[j].key != NULL) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = *s;
            }
        }
        PyMem_Free(c->slots);
        c->slots = slots;
        c->cap = cap;
    }
    size_t mask = c->cap - 1;
    size_t i = hash_ptr(key, extra) & mask;
    while (c->slots[i].key != NULL) {
        i = (i + 1) & mask;
    }
    c->slots[i].key = Py_NewRef(key);
    c->slots[i].extra = extra;
    c->slots[i].text = text;
    c->used++;
    return text;
}

/* ------------------------------------------------------------------------ */
/* Per-future state: fid -> Fut, open addressing, backward-shift deletion     */

typedef struct {
    PyObject *callback; /* owned str */
    PyObject *awaiter;  /* owned int, or NULL */
} Cb;

typedef struct {
    long long fid; /* 0: empty slot */
    int is_task, done;
    PyObject *name;    /* owned, or NULL */
    PyObject *code;    /* owned, or NULL */
    PyObject *lasti;   /* owned int */
    PyObject *pcode;   /* the program's frame: owned, or NULL */
    PyObject *plasti;  /* owned int, or NULL */
    PyObject *created; /* owned int */
    PyObject *awaiter; /* owned int, or NULL */
    Cb *cbs, *sched;
    Py_ssize_t ncb, capcb, nsched;
} Fut;

typedef struct {
    Fut *slots;
    size_t cap, used;
} Table;

static void
cbs_release(Cb *cbs, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(cbs[i].callback);
        Py_XDECREF(cbs[i].awaiter);
    }
}

static void
fut_release(Fut *f)
{
    Py_CLEAR(f->name);
    Py_CLEAR(f->code);
    Py_CLEAR(f->lasti);
    Py_CLEAR(f->pcode);
    Py_CLEAR(f->plasti);
    Py_CLEAR(f->created);
    Py_CLEAR(f->awaiter);
    cbs_release(f->cbs, f->ncb);
    cbs_release(f->sched, f->nsched);
    PyMem_Free(f->cbs);
    PyMem_Free(f->sched);
    memset(f, 0, sizeof(*f));
}

static inline size_t
hash_fid(long long fid)
{
    return hash_ptr(NULL, fid);
}

static Fut *
table_find(Table *t, long long fid)
{
    if (t->cap == 0 || fid == 0) { /* 0 marks an empty slot (and a loop-wide lint) */
        return NULL;
    }
    size_t mask = t->cap - 1;
    for (size_t i = hash_fid(fid) & mask;; i = (i + 1) & mask) {
        if (t->slots[i].fid == fid) {
            return &t->slots[i];
        }
        if (t->slots[i].fid == 0) {
            return NULL;
        }
    }
}

/* Frees f's slot, moving back the entries of its cluster that probed past it. */
static void
table_remove(Table *t, Fut *f)
{
    fut_release(f);
    t->used--;
    size_t mask = t->cap - 1;
    size_t hole = (size_t)(f - t->slots);
    for (size_t i = (hole + 1) & mask; t->slots[i].fid != 0; i = (i + 1) & mask) {
        size_t home = hash_fid(t->slots[i].fid) & mask;
        /* movable when its home is not in (hole, i] cyclically */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            t->slots[hole] = t->slots[i];
            memset(&t->slots[i], 0, sizeof(Fut));
            hole = i;
        }
    }
}

/* A fresh slot for fid (an existing one is released first). */
static Fut *
table_add(Table *t, long long fid)
{
    Fut *old = table_find(t, fid);
    if (old != NULL) {
        table_remove(t, old);
    }
    if ((t->used + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        Fut *slots = PyMem_Calloc(cap, sizeof(Fut));
        if (slots == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (t->slots[i].fid != 0) {
                size_t j = hash_fid(t->slots[i].fid) & (cap - 1);
                while (slots[j].fid != 0) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = t->slots[i];
            }
        }
        PyMem_Free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    size_t mask = t->cap - 1;
    size_t i = hash_fid(fid) & mask;
    while (t->slots[i].fid != 0) {
        i = (i + 1) & mask;
    }
    t->slots[i].fid = fid;
    t->used++;
    return &t->slots[i];
}

static void
table_clear(Table *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].fid != 0) {
            fut_release(&t->slots[i]);
        }
    }
    t->used = 0;
}

/* ------------------------------------------------------------------------ */
/* LineWriter                                                                */

typedef struct {
    PyObject_HEAD
    PyObject *helper; /* the reference Lines: adopt, lines, text, site_text, result_text, clear */
    int redacts;      /* names go through redact: futures with one are the reference's */
    Table futs;
    PyObject *texts; /* str -> its JSON, UTF-8: by value (a callback's name is often a new str each time) */
    Cache sites, psites, types;
    PyObject *pending; /* records for the reference, in order, not yet written */
} LineWriter;

static PyObject *s_adopt, *s_lines, *s_text, *s_site_text, *s_program_site_text, *s_result_text, *s_clear,
    *s_FINISHED;

static int
writer_init(LineWriter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"helper", "redacts", NULL};
    PyObject *helper;
    int redacts = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$p:LineWriter", kwlist, &helper, &redacts)) {
        return -1;
    }
    Py_XSETREF(self->helper, Py_NewRef(helper));
    self->redacts = redacts;
    if (self->pending == NULL && (self->pending = PyList_New(0)) == NULL) {
        return -1;
    }
    if (self->texts == NULL && (self->texts = PyDict_New()) == NULL) {
        return -1;
    }
    return 0;
}

static void
writer_free_state(LineWriter *self)
{
    table_clear(&self->futs);
    PyMem_Free(self->futs.slots);
    self->futs.slots = NULL;
    self->futs.cap = 0;
    cache_free(&self->sites);
    cache_free(&self->psites);
    cache_free(&self->types);
}

static int
writer_traverse(LineWriter *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->helper);
    Py_VISIT(self->pending);
    Py_VISIT(self->texts);
    return 0;
}

static int
writer_clear_refs(LineWriter *self)
{
    Py_CLEAR(self->helper);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->texts);
    return 0;
}

static void
writer_dealloc(LineWriter *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    writer_free_state(self);
    writer_clear_refs(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
encoded(PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "LineWriter's helper returned %R, not a str", s);
        Py_DECREF(s);
        return NULL;
    }
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
    Py_DECREF(s);
    return b;
}

/* A cached fragment: the helper's method called once per key, encoded as the
 * reference encodes its lines (UTF-8, lone surrogates as their JSON escape). */
static PyObject *
fragment(LineWriter *self, Cache *c, PyObject *method, PyObject *key, PyObject *arg2, long long extra)
{
    PyObject *text = cache_get(c, key, extra);
    if (text != NULL) {
        return text;
    }
    PyObject *s = arg2 ? PyObject_CallMethodObjArgs(self->helper, method, key, arg2, NULL)
                       : PyObject_CallMethodObjArgs(self->helper, method, key, NULL);
    if (s == NULL) {
        return NULL;
    }
    PyObject *b = encoded(s);
    if (b == NULL) {
        return NULL;
    }
    return cache_put(c, key, extra, b);
}

static int
put_fragment(Buf *b, PyObject *bytes)
{
    return buf_put(b, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
}

static int
put_text(LineWriter *self, Buf *b, PyObject *s)
{
    PyObject *t = PyDict_GetItemWithError(self->texts, s);
    if (t == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
        t = encoded(PyObject_CallMethodOneArg(self->helper, s_text, s));
        if (t == NULL) {
            return -1;
        }
        if (PyDict_GET_SIZE(self->texts) >= CACHE_LIMIT) {
            PyDict_Clear(self->texts);
        }
        int rc = PyDict_SetItem(self->texts, s, t);
        Py_DECREF(t); /* the dict holds it */
        if (rc < 0) {
            return -1;
        }
    }
    return put_fragment(b, t);
}

/* ,"is_task":..,"name":.. */
static int
put_head(LineWriter *self, Buf *b, Fut *f)
{
    if ((f->is_task ? PUT(b, ",\"is_task\":true") : PUT(b, ",\"is_task\":false")) < 0) {
        return -1;
    }
    if (f->name != NULL && (PUT(b, ",\"name\":") < 0 || put_text(self, b, f->name) < 0)) {
        return -1;
    }
    return 0;
}

/* ,"future_id":..,"ts_ns":..[,"task_id":..] */
static int
put_ids(Buf *b, PyObject *fid, PyObject *ts, PyObject *tid)
{
    if (PUT(b, ",\"future_id\":") < 0 || buf_int(b, fid) < 0 || PUT(b, ",\"ts_ns\":") < 0 || buf_int(b, ts) < 0) {
        return -1;
    }
    if (tid != Py_None && (PUT(b, ",\"task_id\":") < 0 || buf_int(b, tid) < 0)) {
        return -1;
    }
    return 0;
}

static PyObject *
opt_ref(PyObject *o)
{
    return o == Py_None ? NULL : Py_NewRef(o);
}

static PyObject *
or_none(PyObject *o)
{
    return o ? o : Py_None;
}

static PyObject *
cb_list(Cb *cbs, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_Pack(2, cbs[i].callback, or_none(cbs[i].awaiter));
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
}

/* Hand a future's state to the reference, which writes the rest of its history. */
static int
hand_over(LineWriter *self, Fut *f)
{
    PyObject *callbacks = cb_list(f->cbs, f->ncb);
    PyObject *scheduled = callbacks ? cb_list(f->sched, f->nsched) : NULL;
    PyObject *fid = scheduled ? PyLong_FromLongLong(f->fid) : NULL;
    PyObject *res = NULL;
    if (fid != NULL) {
        res = PyObject_CallMethodObjArgs(self->helper, s_adopt, fid, f->is_task ? Py_True : Py_False,
                                         or_none(f->name), or_none(f->code), f->lasti, f->created, callbacks,
                                         scheduled, or_none(f->awaiter), f->done ? Py_True : Py_False,
                                         or_none(f->pcode), f->plasti ? f->plasti : Py_None, NULL);
    }
    Py_XDECREF(callbacks);
    Py_XDECREF(scheduled);
    Py_XDECREF(fid);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    table_remove(&self->futs, f);
    return 0;
}

/* Write what the reference was given so far, in order. */
static int
flush_pending(LineWriter *self, Buf *b, Py_ssize_t *count)
{
    if (PyList_GET_SIZE(self->pending) == 0) {
        return 0;
    }
    PyObject *res = PyObject_CallMethodObjArgs(self->helper, s_lines, self->pending, NULL);
    if (PyList_SetSlice(self->pending, 0, PyList_GET_SIZE(self->pending), NULL) < 0) {
        Py_XDECREF(res);
        return -1;
    }
    if (res == NULL) {
        return -1;
    }
    PyObject *data;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(res, "Sn", &data, &n)) {
        Py_DECREF(res);
        return -1;
    }
    int rc = put_fragment(b, data);
    *count += n;
    Py_DECREF(res);
    return rc;
}

static int
add_cb(Cb **cbs, Py_ssize_t *n, Py_ssize_t *cap, PyObject *callback, PyObject *awaiter)
{
    if (*n == *cap) {
        Py_ssize_t c = *cap ? *cap * 2 : 2;
        Cb *p = PyMem_Realloc(*cbs, (size_t)c * sizeof(Cb));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *cbs = p;
        *cap = c;
    }
    (*cbs)[*n].callback = Py_NewRef(callback);
    (*cbs)[*n].awaiter = opt_ref(awaiter);
    (*n)++;
    return 0;
}

/* One record of a future this writer holds, or one it starts: 1 when written
 * here, 0 when it is the reference's, -1 on error. */
static int
write_record(LineWriter *self, Buf *b, PyObject *r, long op, Py_ssize_t *count)
{
    Py_ssize_t len = PyTuple_GET_SIZE(r);
    PyObject **it = &PyTuple_GET_ITEM(r, 0);
    if (op == L_CREATED) {
        if (len != CREATED_LEN || !PyLong_Check(it[1])) {
            return 0;
        }
        PyObject *name = it[8];
        if (self->redacts && name != Py_None) {
            return 0;
        }
        long long fid = PyLong_AsLongLong(it[1]);
        if (fid == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (fid == 0) {
            return 0;
        }
        Fut *f = table_add(&self->futs, fid);
        if (f == NULL) {
            return -1;
        }
        f->is_task = PyObject_IsTrue(it[4]);
        f->name = opt_ref(name);
        f->code = opt_ref(it[5]);
        f->lasti = Py_NewRef(it[6]);
        f->pcode = opt_ref(it[12]);
        f->plasti = opt_ref(it[13]);
        f->created = Py_NewRef(it[2]);
        if (f->is_task < 0) {
            return -1;
        }
        if (PUT(b, "{\"kind\":\"created\"") < 0 || put_ids(b, it[1], it[2], it[3]) < 0 || put_head(self, b, f) < 0) {
            return -1;
        }
        if (f->code != NULL) {
            long long lasti = PyLong_AsLongLong(it[6]);
            if (lasti == -1 && PyErr_Occurred()) {
                return -1;
            }
            PyObject *site = fragment(self, &self->sites, s_site_text, f->code, it[6], lasti);
            if (site == NULL || put_fragment(b, site) < 0) {
                return -1;
            }
        }
        if (it[7] != Py_None && (PUT(b, ",\"thread_id\":") < 0 || buf_int(b, it[7]) < 0)) {
            return -1;
        }
        if (it[9] != Py_None && (PUT(b, ",\"coro\":") < 0 || put_text(self, b, it[9]) < 0)) {
            return -1;
        }
        if (f->is_task && it[3] != Py_None && (PUT(b, ",\"parent_id\":") < 0 || buf_int(b, it[3]) < 0)) {
            return -1;
        }
        if (f->pcode != NULL && f->plasti != NULL) {
            /* The program's line: the site's own fragment when it is the same frame. */
            long long plasti = PyLong_AsLongLong(f->plasti);
            if (plasti == -1 && PyErr_Occurred()) {
                return -1;
            }
            PyObject *psite = fragment(self, &self->psites, s_program_site_text, f->pcode, f->plasti, plasti);
            if (psite == NULL || put_fragment(b, psite) < 0) {
                return -1;
            }
        }
        if (PUT(b, "}\n") < 0) {
            return -1;
        }
        (*count)++;
        return 1;
    }
    if (len < 3 || !PyLong_Check(it[1])) {
        return 0;
    }
    long long fid = PyLong_AsLongLong(it[1]);
    if (fid == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    Fut *f = table_find(&self->futs, fid);
    if (f == NULL) {
        return 0; /* the reference's, or nobody's */
    }
    if (op == L_COLLECTED && len >= 4) {
        int finished = PyUnicode_Check(it[3]) && PyUnicode_Compare(it[3], s_FINISHED) == 0;
        int incomplete = len > 4 ? PyObject_IsTrue(it[4]) : 0;
        if (incomplete < 0) {
            return -1;
        }
        if (finished && !incomplete) {
            table_remove(&self->futs, f);
            return 1;
        }
    }
    else if (op == L_CB_ADDED && len == 6 && !f->done && it[4] != Py_None && PyUnicode_Check(it[4])) {
        PyObject *awaiter = it[5];
        if (awaiter != Py_None) {
            Py_XSETREF(f->awaiter, Py_NewRef(awaiter));
        }
        if (add_cb(&f->cbs, &f->ncb, &f->capcb, it[4], awaiter) < 0) {
            return -1;
        }
        if ((awaiter != Py_None ? PUT(b, "{\"kind\":\"awaited\"") : PUT(b, "{\"kind\":\"callback_added\"")) < 0 ||
            put_ids(b, it[1], it[2], it[3]) < 0 || put_head(self, b, f) < 0 || PUT(b, ",\"callback\":") < 0 ||
            put_text(self, b, it[4]) < 0) {
            return -1;
        }
        if (awaiter != Py_None && (PUT(b, ",\"awaiter_id\":") < 0 || buf_int(b, awaiter) < 0)) {
            return -1;
        }
        if (PUT(b, "}\n") < 0) {
            return -1;
        }
        (*count)++;
        return 1;
    }
    else if (op == L_RESOLVED && len == 6 && it[5] == Py_None) {
        PyObject *result = fragment(self, &self->types, s_result_text, it[4], NULL, 0);
        if (result == NULL) {
            return -1;
        }
        /* The part every line of this record repeats: ids and head. */
        if (PUT(b, "{\"kind\":\"resolved\"") < 0) {
            return -1;
        }
        size_t from = b->n;
        if (put_ids(b, it[1], it[2], it[3]) < 0 || put_head(self, b, f) < 0) {
            return -1;
        }
        size_t rest = b->n - from;
        if (put_fragment(b, result) < 0 || PUT(b, "}\n") < 0) {
            return -1;
        }
        (*count)++;
        f->done = 1;
        cbs_release(f->sched, f->nsched);
        PyMem_Free(f->sched);
        f->sched = f->cbs;
        f->nsched = f->ncb;
        f->cbs = NULL;
        f->ncb = f->capcb = 0;
        for (Py_ssize_t i = 0; i < f->nsched; i++) {
            if (PUT(b, "{\"kind\":\"callback_scheduled\"") < 0 || buf_grow(b, rest) < 0) {
                return -1;
            }
            memcpy(b->p + b->n, b->p + from, rest); /* from is before b->n: the buffer keeps it */
            b->n += rest;
            if (PUT(b, ",\"callback\":") < 0 || put_text(self, b, f->sched[i].callback) < 0) {
                return -1;
            }
            if (f->sched[i].awaiter != NULL &&
                (PUT(b, ",\"awaiter_id\":") < 0 || buf_int(b, f->sched[i].awaiter) < 0)) {
                return -1;
            }
            if (PUT(b, "}\n") < 0) {
                return -1;
            }
            (*count)++;
        }
        return 1;
    }
    /* Anything else: the future is the reference's from now on. */
    if (hand_over(self, f) < 0) {
        return -1;
    }
    return 0;
}

static PyObject *
writer_lines(LineWriter *self, PyObject *records)
{
    if (self->helper == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LineWriter() was not initialised");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(records, "records must be a sequence of tuples");
    if (seq == NULL) {
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    Py_ssize_t count = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PySequence_Fast_GET_ITEM(seq, i);
        int rc = 0;
        if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) >= 1 && PyLong_Check(PyTuple_GET_ITEM(r, 0))) {
            long op = PyLong_AsLong(PyTuple_GET_ITEM(r, 0));
            if (op == -1 && PyErr_Occurred()) {
                goto fail;
            }
            if (op >= 0) {
                /* In order: what the reference was given is written before this. */
                int common = op == L_CREATED || op == L_CB_ADDED || op == L_RESOLVED || op == L_COLLECTED;
                if (common && PyList_GET_SIZE(self->pending) && flush_pending(self, &b, &count) < 0) {
                    goto fail;
                }
                rc = write_record(self, &b, r, op, &count);
                if (rc < 0) {
                    goto fail;
                }
            }
            else {
                /* A MARK: the future is the reference's (it writes incomplete). */
                if (PyTuple_GET_SIZE(r) >= 2 && PyLong_Check(PyTuple_GET_ITEM(r, 1))) {
                    long long fid = PyLong_AsLongLong(PyTuple_GET_ITEM(r, 1));
                    if (fid == -1 && PyErr_Occurred()) {
                        PyErr_Clear();
                    }
                    else {
                        Fut *f = table_find(&self->futs, fid);
                        if (f != NULL && hand_over(self, f) < 0) {
                            goto fail;
                        }
                    }
                }
            }
        }
        if (rc == 0 && PyList_Append(self->pending, r) < 0) {
            goto fail;
        }
    }
    if (flush_pending(self, &b, &count) < 0) {
        goto fail;
    }
    Py_DECREF(seq);
    PyObject *data = PyBytes_FromStringAndSize(b.p ? b.p : "", (Py_ssize_t)b.n);
    PyMem_Free(b.p);
    if (data == NULL) {
        return NULL;
    }
    return Py_BuildValue("(Nn)", data, count);
fail:
    if (self->pending != NULL) {
        PyList_SetSlice(self->pending, 0, PyList_GET_SIZE(self->pending), NULL);
    }
    Py_DECREF(seq);
    PyMem_Free(b.p);
    return NULL;
}

static PyObject *
writer_clear(LineWriter *self, PyObject *Py_UNUSED(ignored))
{
    table_clear(&self->futs);
    if (self->texts != NULL) {
        PyDict_Clear(self->texts);
    }
    if (self->pending != NULL) {
        PyList_SetSlice(self->pending, 0, PyList_GET_SIZE(self->pending), NULL);
    }
    if (self->helper != NULL) {
        return PyObject_CallMethodNoArgs(self->helper, s_clear);
    }
    Py_RETURN_NONE;
}

static PyObject *
writer_len(LineWriter *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(self->futs.used);
}

static PyMethodDef writer_methods[] = {
    {"lines", (PyCFunction)writer_lines, METH_O,
     "The lines of records (UTF-8, each newline-terminated) and how many: Lines.lines, compiled."},
    {"clear", (PyCFunction)writer_clear, METH_NOARGS, "Forget every future held (after fork(), in the child)."},
    {"held", (PyCFunction)writer_len, METH_NOARGS, "How many futures this writer holds (not the reference's)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_doc, "LineWriter(helper, *, redacts=False): trace-file lines from raw records (see _lines.c)."},
    {Py_tp_init, writer_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, writer_dealloc},
    {Py_tp_traverse, writer_traverse},
    {Py_tp_clear, writer_clear_refs},
    {Py_tp_methods, writer_methods},
    {0, NULL},
};

static PyType_Spec writer_spec = {
    .name = "tracedfuture._core._cfuture.LineWriter",
    .basicsize = sizeof(LineWriter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = writer_slots,
};

#define LINES_INTERN(var, text)                                                                                    \
    do {                                                                                                           \
        if ((var = PyUnicode_InternFromString(text)) == NULL) {                                                    \
            return -1;                                                                                             \
        }                                                                                                          \
    } while (0)

int
tf_lines_add_type(PyObject *module)
{
    LINES_INTERN(s_adopt, "adopt");
    LINES_INTERN(s_program_site_text, "program_site_text");
    LINES_INTERN(s_lines, "lines");
    LINES_INTERN(s_text, "text");
    LINES_INTERN(s_site_text, "site_text");
    LINES_INTERN(s_result_text, "result_text");
    LINES_INTERN(s_clear, "clear");
    LINES_INTERN(s_FINISHED, "FINISHED");
    PyObject *tp = PyType_FromModuleAndSpec(module, &writer_spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "LineWriter", tp);
    Py_DECREF(tp);
    return rc;
}
