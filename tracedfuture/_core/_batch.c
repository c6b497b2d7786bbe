/* tracedfuture._core._cfuture.RecordBatch: records out of a ring, as structs.
 *
 * Ring.take_batch() copies the new records of a ring into one buffer (with the
 * GIL released, for a streaming ring: see _cfuture.c) and wraps it here, with
 * the references its records hold gathered in one array: no tuple is made per
 * record. Readers that need tuples get them on access
 * (batch[i], iteration: the layout of _seam.LAYOUTS, as Ring.take() gives);
 * the compiled readers (_lines.c's LineWriter) read the structs in place.
 *
 * A batch also sheds itself (shed()): what an exporter's full queue cannot
 * take is dropped a whole future at a time, in C, with no Python-level loop
 * per record. The pure-Python twin of every decision here is
 * tracedfuture/_core/_ring.py's RecordBatch (the same tests run on both).
 *
 * Records built from tuples (a tail-sampled list, a test's) are read into
 * structs as the ring writes them (rec_from_tuple); the pipeline's MARKs and
 * lints are F_RAW records holding their tuple.
 *
 * Compiled into the _cfuture extension (setup.py); _cfuture.c calls
 * tf_batch_add_type() once at import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_records.h"

typedef struct {
    PyObject_HEAD
    Rec *recs; /* PyMem_Raw; each record holds its references (unless objs) */
    Py_ssize_t n;
    /* A ring's batch (take_batch): the references its records hold, gathered
     * while they were copied, released at the end without reading the records
     * again (cold by then: reading them was most of a batch's release). */
    PyObject **objs; /* PyMem_Raw, or NULL */
    Py_ssize_t nobjs;
} BatchObject;

static PyTypeObject *BatchType;

static BatchObject *
batch_alloc(void)
{
    return (BatchObject *)BatchType->tp_alloc(BatchType, 0);
}

PyObject *
tf_batch_steal(Rec *recs, Py_ssize_t n)
{
    BatchObject *b = batch_alloc();
    if (b == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            rec_release(&recs[i]);
        }
        PyMem_RawFree(recs);
        return NULL;
    }
    b->recs = recs;
    b->n = n;
    return (PyObject *)b;
}

PyObject *
tf_batch_steal_refs(Rec *recs, Py_ssize_t n, PyObject **objs, Py_ssize_t nobjs)
{
    if (objs == NULL) {
        return tf_batch_steal(recs, n);
    }
    BatchObject *b = batch_alloc();
    if (b == NULL) {
        for (Py_ssize_t i = 0; i < nobjs; i++) {
            Py_DECREF(objs[i]);
        }
        PyMem_RawFree(objs);
        PyMem_RawFree(recs);
        return NULL;
    }
    b->recs = recs;
    b->n = n;
    b->objs = objs;
    b->nobjs = nobjs;
    return (PyObject *)b;
}

int
tf_batch_view(PyObject *obj, const Rec **recs, Py_ssize_t *n)
{
    if (Py_TYPE(obj) != BatchType) {
        return 0;
    }
    *recs = ((BatchObject *)obj)->recs;
    *n = ((BatchObject *)obj)->n;
    return 1;
}

static void
batch_dealloc(BatchObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->objs != NULL) {
        for (Py_ssize_t i = 0; i < self->nobjs; i++) {
            Py_DECREF(self->objs[i]);
        }
        PyMem_RawFree(self->objs);
    }
    else {
        for (Py_ssize_t i = 0; i < self->n; i++) {
            rec_release(&self->recs[i]);
        }
    }
    PyMem_RawFree(self->recs);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Appends parts (batches, or sequences of tuples) to a growing buffer (Recs, _records.h). */
static int
recs_extend(Recs *out, PyObject *part)
{
    const Rec *src;
    Py_ssize_t n;
    if (tf_batch_view(part, &src, &n)) {
        if (n == 0) {
            return 0; /* an empty batch has no buffer: memcpy must not see its NULL */
        }
        if (recs_room(out, n) < 0) {
            return -1;
        }
        memcpy(out->recs + out->n, src, (size_t)n * sizeof(Rec));
        for (Py_ssize_t i = 0; i < n; i++) {
            rec_incref(&out->recs[out->n + i]);
        }
        out->n += n;
        return 0;
    }
    PyObject *seq = PySequence_Fast(part, "a RecordBatch is made of batches or sequences of record tuples");
    if (seq == NULL) {
        return -1;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    if (recs_room(out, n) < 0) {
        Py_DECREF(seq);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 3) {
            PyErr_Format(PyExc_TypeError, "a record is a tuple (op, future_id, ts_ns, ...), not %R", t);
            Py_DECREF(seq);
            return -1;
        }
        rec_from_tuple(&out->recs[out->n++], t);
    }
    Py_DECREF(seq);
    return 0;
}


static PyObject *
batch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"records", NULL};
    PyObject *records = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:RecordBatch", kwlist, &records)) {
        return NULL;
    }
    Recs out = {NULL, 0, 0};
    if (records != NULL && recs_extend(&out, records) < 0) {
        recs_free(&out);
        return NULL;
    }
    return recs_batch(&out);
}

PyObject *
tf_batch_of(PyObject *records)
{
    if (Py_TYPE(records) == BatchType) {
        return Py_NewRef(records);
    }
    Recs out = {NULL, 0, 0};
    if (recs_extend(&out, records) < 0) {
        recs_free(&out);
        return NULL;
    }
    return recs_batch(&out);
}

int
tf_check_field(int op, int index, const char *name)
{
    PyObject *seam = PyImport_ImportModule("tracedfuture._core._seam");
    PyObject *layouts = seam ? PyObject_GetAttrString(seam, "LAYOUTS") : NULL;
    PyObject *key = PyLong_FromLong(op);
    PyObject *layout = layouts && key ? PyObject_GetItem(layouts, key) : NULL;
    PyObject *fields = layout ? PySequence_GetItem(layout, 1) : NULL;
    PyObject *field = fields ? PySequence_GetItem(fields, index) : NULL;
    int ok = field != NULL && PyUnicode_Check(field) && PyUnicode_CompareWithASCIIString(field, name) == 0;
    Py_XDECREF(seam);
    Py_XDECREF(layouts);
    Py_XDECREF(key);
    Py_XDECREF(layout);
    Py_XDECREF(fields);
    Py_XDECREF(field);
    if (!ok) {
        PyErr_Clear();
        PyErr_Format(PyExc_ImportError, "the compiled core reads field %d of op %d as %s, which _seam.LAYOUTS moved: "
                     "update the compiled readers (_eventfold.c, _lines.c)", index, op, name);
        return -1;
    }
    return 0;
}

static PyObject *
batch_join(PyObject *Py_UNUSED(cls), PyObject *const *args, Py_ssize_t nargs)
{
    Recs out = {NULL, 0, 0};
    for (Py_ssize_t i = 0; i < nargs; i++) {
        if (recs_extend(&out, args[i]) < 0) {
            recs_free(&out);
            return NULL;
        }
    }
    return recs_batch(&out);
}

static Py_ssize_t
batch_len(BatchObject *self)
{
    return self->n;
}

static PyObject *
batch_item(BatchObject *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "RecordBatch index out of range");
        return NULL;
    }
    return rec_tuple(&self->recs[i]);
}

static PyObject *
batch_repr(BatchObject *self)
{
    return PyUnicode_FromFormat("<tracedfuture RecordBatch of %zd records>", self->n);
}

/* ------------------------------------------------------------------------ */
/* Shedding                                                                  */

/* Is fid a key of dict d? -1 on error. */
static int
in_dict(PyObject *d, long long fid)
{
    if (PyDict_GET_SIZE(d) == 0) {
        return 0;
    }
    PyObject *key = PyLong_FromLongLong(fid);
    if (key == NULL) {
        return -1;
    }
    int rc = PyDict_Contains(d, key);
    Py_DECREF(key);
    return rc;
}

static int
dict_put(PyObject *d, long long fid)
{
    PyObject *key = PyLong_FromLongLong(fid);
    if (key == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(d, key, Py_None);
    Py_DECREF(key);
    return rc;
}

/* Stop screening the futures whose life ended; keep each screen under limit. */
static int
forget(PyObject *untold, PyObject *holed, const long long *ended, Py_ssize_t nended, Py_ssize_t limit)
{
    for (Py_ssize_t i = 0; i < nended; i++) {
        PyObject *key = PyLong_FromLongLong(ended[i]);
        if (key == NULL) {
            return -1;
        }
        PyObject *screens[2] = {untold, holed};
        for (int k = 0; k < 2; k++) {
            if (PyDict_GET_SIZE(screens[k]) && PyDict_DelItem(screens[k], key) < 0) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                    Py_DECREF(key);
                    return -1;
                }
                PyErr_Clear();
            }
        }
        Py_DECREF(key);
    }
    PyObject *screens[2] = {untold, holed};
    for (int k = 0; k < 2; k++) {
        PyObject *d = screens[k];
        while (PyDict_GET_SIZE(d) > limit) { /* the oldest first: dicts keep insertion order */
            Py_ssize_t pos = 0;
            PyObject *key, *value;
            if (!PyDict_Next(d, &pos, &key, &value)) {
                break;
            }
            Py_INCREF(key);
            int rc = PyDict_DelItem(d, key);
            Py_DECREF(key);
            if (rc < 0) {
                return -1;
            }
        }
    }
    return 0;
}

typedef struct {
    long long *ids;
    Py_ssize_t n, cap;
} Ids;

static int
ids_add(Ids *ids, long long fid)
{
    if (ids->n == ids->cap) {
        Py_ssize_t cap = ids->cap ? ids->cap * 2 : 64;
        long long *p = PyMem_RawRealloc(ids->ids, (size_t)cap * sizeof(long long));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ids->ids = p;
        ids->cap = cap;
    }
    ids->ids[ids->n++] = fid;
    return 0;
}

/* shed(untold, holed, room, reserve, unit, max_screened): see _ring.RecordBatch.shed. */
static PyObject *
batch_shed(BatchObject *self, PyObject *args)
{
    PyObject *untold, *holed;
    long long room, reserve, unit;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!LLLn:shed", &PyDict_Type, &untold, &PyDict_Type, &holed, &room, &reserve,
                          &unit, &limit)) {
        return NULL;
    }
    if (unit <= 0) {
        PyErr_SetString(PyExc_ValueError, "unit must be positive");
        return NULL;
    }
    Py_ssize_t n = self->n, kept = n;
    unsigned char *keep = PyMem_RawMalloc(n ? (size_t)n : 1);
    PyObject *marks = PyList_New(0);
    FidSet born = {NULL, 0, 0}, gone = {NULL, 0, 0};
    Ids ended = {NULL, 0, 0}, gone_order = {NULL, 0, 0};
    long long dropped = 0, dropped_futures = 0, incomplete = 0;
    PyObject *result = NULL;
    if (keep == NULL || marks == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memset(keep, 1, n ? (size_t)n : 1);
    const Rec *recs = self->recs;
    /* 1. The screen: futures dropped whole or marked incomplete lose every record. */
    if (PyDict_GET_SIZE(untold) || PyDict_GET_SIZE(holed)) {
        for (Py_ssize_t i = 0; i < n; i++) {
            long long fid = recs[i].fid;
            int a = in_dict(untold, fid), b = a ? 0 : in_dict(holed, fid);
            if (a < 0 || b < 0) {
                goto done;
            }
            if (a || b) {
                keep[i] = 0;
                kept--;
                dropped++;
                if (recs[i].op == OP_COLLECTED && ids_add(&ended, fid) < 0) {
                    goto done;
                }
            }
        }
        if (forget(untold, holed, ended.ids, ended.n, limit) < 0) {
            goto done;
        }
        ended.n = 0;
    }
    /* 2. The budget: the later records of futures already queued first (the
     * first `reserve` bytes are theirs alone), then whole new futures. */
    if (kept * unit > room) {
        long long owed_room = room, new_room = room - reserve;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (keep[i] && recs[i].op == OP_CREATED && fidset_add(&born, recs[i].fid) < 0) {
                goto done;
            }
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!keep[i]) {
                continue;
            }
            long long fid = recs[i].fid;
            int a = in_dict(untold, fid), b = a ? 0 : in_dict(holed, fid);
            if (a < 0 || b < 0) {
                goto done;
            }
            if (a || b || fidset_has(&gone, fid)) {
                keep[i] = 0;
                dropped++;
            }
            else if (fid == 0 || fidset_has(&born, fid)) {
                if (new_room >= unit) {
                    new_room -= unit;
                    owed_room -= unit;
                    continue;
                }
                keep[i] = 0;
                dropped++;
                if (fid) {
                    if (fidset_add(&gone, fid) < 0 || ids_add(&gone_order, fid) < 0) {
                        goto done;
                    }
                    dropped_futures++;
                }
            }
            else if (owed_room >= unit) {
                owed_room -= unit;
                new_room -= unit;
                continue;
            }
            else {
                keep[i] = 0;
                dropped++;
                if (dict_put(holed, fid) < 0) {
                    goto done;
                }
                incomplete++;
                PyObject *mark = Py_BuildValue("(LL)", fid, recs[i].ts);
                if (mark == NULL || PyList_Append(marks, mark) < 0) {
                    Py_XDECREF(mark);
                    goto done;
                }
                Py_DECREF(mark);
            }
            if (recs[i].op == OP_COLLECTED && ids_add(&ended, fid) < 0) {
                goto done;
            }
        }
        if (gone.used) {
            /* Their records kept earlier in this batch go too: whole futures. */
            for (Py_ssize_t i = 0; i < n; i++) {
                if (keep[i] && fidset_has(&gone, recs[i].fid)) {
                    keep[i] = 0;
                    dropped++;
                }
            }
            for (Py_ssize_t j = 0; j < gone_order.n; j++) {
                if (dict_put(untold, gone_order.ids[j]) < 0) {
                    goto done;
                }
            }
        }
        if (forget(untold, holed, ended.ids, ended.n, limit) < 0) {
            goto done;
        }
        kept = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            kept += keep[i];
        }
    }
    PyObject *out;
    if (kept == n) {
        out = Py_NewRef(self);
    }
    else {
        Rec *recs_out = PyMem_RawMalloc(kept ? (size_t)kept * sizeof(Rec) : 1);
        if (recs_out == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        Py_ssize_t j = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (keep[i]) {
                recs_out[j] = recs[i];
                rec_incref(&recs_out[j]);
                j++;
            }
        }
        out = tf_batch_steal(recs_out, kept);
        if (out == NULL) {
            goto done;
        }
    }
    result = Py_BuildValue("(NLLLO)", out, dropped, dropped_futures, incomplete, marks);
done:
    PyMem_RawFree(keep);
    fidset_free(&born);
    fidset_free(&gone);
    PyMem_RawFree(ended.ids);
    PyMem_RawFree(gone_order.ids);
    Py_XDECREF(marks);
    return result;
}

static PyMethodDef batch_methods[] = {
    {"join", (PyCFunction)(void (*)(void))batch_join, METH_FASTCALL | METH_STATIC,
     "join(*parts): one batch of the records of batches or sequences of record tuples, in order."},
    {"shed", (PyCFunction)batch_shed, METH_VARARGS,
     "shed(untold, holed, room, reserve, unit, max_screened) -> (kept, dropped, dropped_futures, "
     "incomplete_futures, marks): see tracedfuture._core._ring.RecordBatch.shed."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot batch_slots[] = {
    {Py_tp_doc, "RecordBatch(records=()): raw records out of a ring, as structs; a sequence of record tuples "
                "made on access (see tracedfuture._core._seam)."},
    {Py_tp_new, batch_new},
    {Py_tp_dealloc, batch_dealloc},
    {Py_tp_repr, batch_repr},
    {Py_sq_length, batch_len},
    {Py_sq_item, batch_item},
    {Py_tp_methods, batch_methods},
    {0, NULL},
};

static PyType_Spec batch_spec = {
    .name = "tracedfuture._core._cfuture.RecordBatch",
    .basicsize = sizeof(BatchObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = batch_slots,
};

int
tf_batch_add_type(PyObject *module)
{
    BatchType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &batch_spec, NULL);
    if (BatchType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "RecordBatch", (PyObject *)BatchType);
}
