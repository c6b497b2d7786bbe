/* tracedfuture._core._cfuture.EventReader: a trace file's events read in C.
 *
 * The twin of tracedfuture/trace.py's _checked_event, which is the reference and
 * says what a line may hold (read it first). Given the object a line parsed to,
 * event(obj) returns the Event the reference makes of it, when obj is an event as
 * the writer writes one: known fields of their JSON types, no null, ids and clocks
 * from 0 to 2**64-1, a known kind, a future id (0 only for a loop's lint), sites
 * of exactly file, line and function. For anything else it returns None and
 * decides nothing: the reference reads that object again and accepts it, or says
 * what is wrong, so that every message has one source. The vocabulary (Event's
 * fields, each field's type, the kinds) is the reference's, given at
 * construction; nothing about it is written here.
 *
 * The viewers read hundreds of thousands of events: here one costs a dict walk,
 * where the reference pays a dozen Python operations per field.
 *
 * Compiled into the _cfuture extension (setup.py); _cfuture.c calls
 * tf_reader_add_type() once at import. trace.py picks it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_records.h"

/* What a field's value must be: the reference's expected types. */
enum { T_INT, T_STR, T_BOOL, T_SITE, T_OTHER, T_BITS = 3 };
#define MAX_FIELDS 64
#define MAX_SITES 100000 /* as the reference's own cache */

typedef struct {
    PyObject_HEAD
    PyTypeObject *event, *site;
    PyObject *codes;      /* field name -> index << T_BITS | T_* */
    PyObject *kinds;      /* the kinds a trace may hold */
    PyObject *loop_kinds; /* the kinds that may have future_id 0 */
    PyObject *sites;      /* (file, line, function) -> Site: traces repeat a few thousand */
    PyObject *s_file, *s_line, *s_function;
    Py_ssize_t nfields, at_kind, at_fid, at_ts, at_is_task;
} ReaderObject;

static PyTypeObject *ReaderType;

/* As _eventfold.c does: a tuple subclass holding no tracked object can be in no
 * cycle, and the collector never untracks one by itself. */
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

/* 1 for an exact int from 0 to 2**64-1 (its value in *out), else 0. */
static int
read_u64(PyObject *value, unsigned long long *out)
{
    if (!PyLong_CheckExact(value)) {
        return 0;
    }
    unsigned long long u = PyLong_AsUnsignedLongLong(value);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* OverflowError: negative, or past 64 bits */
        return 0;
    }
    *out = u;
    return 1;
}

static PyObject *
site_field(ReaderObject *self, PyObject *d, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(d, name);
    return value != NULL && PyUnicode_CheckExact(value) ? value : NULL;
}

/* A new reference to the Site of d; NULL with no error set when d is not a
 * site as written (the reference says why), NULL with an error on failure. */
static PyObject *
read_site(ReaderObject *self, PyObject *d)
{
    if (!PyDict_CheckExact(d) || PyDict_GET_SIZE(d) != 3) {
        return NULL;
    }
    PyObject *file = site_field(self, d, self->s_file);
    PyObject *function = site_field(self, d, self->s_function);
    PyObject *line = PyDict_GetItemWithError(d, self->s_line);
    unsigned long long lineno;
    if (file == NULL || function == NULL || line == NULL || !read_u64(line, &lineno)) {
        return NULL; /* or an error from a key's own __eq__, which goes up */
    }
    PyObject *key = PyTuple_Pack(3, file, line, function);
    if (key == NULL) {
        return NULL;
    }
    PyObject *site = PyDict_GetItemWithError(self->sites, key);
    if (site != NULL || PyErr_Occurred()) {
        Py_DECREF(key);
        return Py_XNewRef(site);
    }
    site = self->site->tp_alloc(self->site, 3);
    if (site != NULL) {
        PyTuple_SET_ITEM(site, 0, Py_NewRef(file));
        PyTuple_SET_ITEM(site, 1, Py_NewRef(line));
        PyTuple_SET_ITEM(site, 2, Py_NewRef(function));
        untrack_if_atoms(site);
        if (PyDict_GET_SIZE(self->sites) < MAX_SITES && PyDict_SetItem(self->sites, key, site) < 0) {
            Py_CLEAR(site);
        }
    }
    Py_DECREF(key);
    return site;
}

static PyObject *
reader_event(ReaderObject *self, PyObject *obj)
{
    if (!PyDict_CheckExact(obj)) {
        Py_RETURN_NONE;
    }
    PyObject *values[MAX_FIELDS] = {NULL}; /* owned */
    PyObject *key, *value, *result = Py_None;
    Py_ssize_t pos = 0;
    int fid_zero = 0;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        PyObject *code = PyDict_GetItemWithError(self->codes, key);
        if (code == NULL) {
            result = PyErr_Occurred() ? NULL : Py_None; /* an unknown field: the reference says so */
            goto done;
        }
        long c = PyLong_AsLong(code);
        Py_ssize_t at = (Py_ssize_t)(c >> T_BITS);
        unsigned long long u;
        switch (c & ((1 << T_BITS) - 1)) {
        case T_INT:
            if (!read_u64(value, &u)) {
                goto done;
            }
            fid_zero |= at == self->at_fid && u == 0;
            values[at] = Py_NewRef(value);
            break;
        case T_STR:
            if (!PyUnicode_CheckExact(value)) {
                goto done;
            }
            values[at] = Py_NewRef(value);
            break;
        case T_BOOL:
            if (!PyBool_Check(value)) {
                goto done;
            }
            values[at] = Py_NewRef(value);
            break;
        case T_SITE:
            if ((values[at] = read_site(self, value)) == NULL) {
                result = PyErr_Occurred() ? NULL : Py_None;
                goto done;
            }
            break;
        default: /* a chain: rare, and the reference checks its items */
            goto done;
        }
    }
    PyObject *kind = values[self->at_kind];
    if (kind == NULL || values[self->at_fid] == NULL || values[self->at_ts] == NULL) {
        goto done;
    }
    int known = PySet_Contains(self->kinds, kind);
    if (known > 0 && fid_zero) {
        known = PySet_Contains(self->loop_kinds, kind);
    }
    if (known <= 0) {
        result = known < 0 ? NULL : Py_None;
        goto done;
    }
    PyObject *event = self->event->tp_alloc(self->event, self->nfields);
    if (event == NULL) {
        result = NULL;
        goto done;
    }
    if (values[self->at_is_task] == NULL) {
        values[self->at_is_task] = Py_NewRef(Py_False);
    }
    for (Py_ssize_t k = 0; k < self->nfields; k++) {
        PyTuple_SET_ITEM(event, k, values[k] != NULL ? values[k] : Py_NewRef(Py_None));
        values[k] = NULL;
    }
    untrack_if_atoms(event);
    return event;
done:
    for (Py_ssize_t k = 0; k < self->nfields; k++) {
        Py_XDECREF(values[k]);
    }
    return Py_XNewRef(result);
}

static int
field_index(PyObject *codes, const char *name, Py_ssize_t *at)
{
    PyObject *code = PyDict_GetItemString(codes, name);
    if (code == NULL) {
        PyErr_Format(PyExc_ValueError, "EventReader: fields must include %s", name);
        return -1;
    }
    *at = (Py_ssize_t)(PyLong_AsLong(code) >> T_BITS);
    return 0;
}

static int
reader_init(ReaderObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"event", "site", "fields", "kinds", "loop_kinds", NULL};
    PyObject *event, *site, *fields, *kinds, *loop_kinds;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!O!O!:EventReader", kwlist, &PyType_Type, &event,
                                     &PyType_Type, &site, &PyDict_Type, &fields, &PyFrozenSet_Type, &kinds,
                                     &PyFrozenSet_Type, &loop_kinds)) {
        return -1;
    }
    if (!PyType_IsSubtype((PyTypeObject *)event, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)site, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "EventReader: event and site must be tuple types");
        return -1;
    }
    PyObject *names = PyObject_GetAttrString(event, "_fields");
    if (names == NULL) {
        return -1;
    }
    Py_ssize_t nfields = PyTuple_Check(names) ? PyTuple_GET_SIZE(names) : -1;
    Py_DECREF(names);
    if (nfields < 3 || nfields > MAX_FIELDS) {
        PyErr_SetString(PyExc_ValueError, "EventReader: event must be a named tuple of 3 to 64 fields");
        return -1;
    }
    PyObject *codes = PyDict_New();
    if (codes == NULL) {
        return -1;
    }
    PyObject *name, *spec;
    Py_ssize_t pos = 0;
    while (PyDict_Next(fields, &pos, &name, &spec)) {
        Py_ssize_t at;
        PyObject *tp;
        if (!PyArg_ParseTuple(spec, "nO;EventReader: each field is (index, type)", &at, &tp)) {
            Py_DECREF(codes);
            return -1;
        }
        if (at < 0 || at >= nfields) {
            PyErr_Format(PyExc_ValueError, "EventReader: field %R has index %zd, past the event's fields", name, at);
            Py_DECREF(codes);
            return -1;
        }
        long c = tp == (PyObject *)&PyLong_Type      ? T_INT
                 : tp == (PyObject *)&PyUnicode_Type ? T_STR
                 : tp == (PyObject *)&PyBool_Type    ? T_BOOL
                 : tp == (PyObject *)&PyDict_Type    ? T_SITE
                                                     : T_OTHER;
        PyObject *code = PyLong_FromLong((long)at << T_BITS | c);
        if (code == NULL || PyDict_SetItem(codes, name, code) < 0) {
            Py_XDECREF(code);
            Py_DECREF(codes);
            return -1;
        }
        Py_DECREF(code);
    }
    Py_ssize_t at_kind, at_fid, at_ts, at_is_task;
    if (field_index(codes, "kind", &at_kind) < 0 || field_index(codes, "future_id", &at_fid) < 0 ||
        field_index(codes, "ts_ns", &at_ts) < 0 || field_index(codes, "is_task", &at_is_task) < 0) {
        Py_DECREF(codes);
        return -1;
    }
    PyObject *sites = PyDict_New();
    PyObject *s_file = PyUnicode_InternFromString("file");
    PyObject *s_line = PyUnicode_InternFromString("line");
    PyObject *s_function = PyUnicode_InternFromString("function");
    if (sites == NULL || s_file == NULL || s_line == NULL || s_function == NULL) {
        Py_DECREF(codes);
        Py_XDECREF(sites);
        Py_XDECREF(s_file);
        Py_XDECREF(s_line);
        Py_XDECREF(s_function);
        return -1;
    }
    Py_XSETREF(self->event, (PyTypeObject *)Py_NewRef(event));
    Py_XSETREF(self->site, (PyTypeObject *)Py_NewRef(site));
    Py_XSETREF(self->codes, codes);
    Py_XSETREF(self->kinds, Py_NewRef(kinds));
    Py_XSETREF(self->loop_kinds, Py_NewRef(loop_kinds));
    Py_XSETREF(self->sites, sites);
    Py_XSETREF(self->s_file, s_file);
    Py_XSETREF(self->s_line, s_line);
    Py_XSETREF(self->s_function, s_function);
    self->nfields = nfields;
    self->at_kind = at_kind;
    self->at_fid = at_fid;
    self->at_ts = at_ts;
    self->at_is_task = at_is_task;
    return 0;
}

static PyObject *
reader_call_event(ReaderObject *self, PyObject *obj)
{
    if (self->codes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "EventReader: not initialized");
        return NULL;
    }
    return reader_event(self, obj);
}

static int
reader_traverse(ReaderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->event);
    Py_VISIT(self->site);
    Py_VISIT(self->codes);
    Py_VISIT(self->kinds);
    Py_VISIT(self->loop_kinds);
    Py_VISIT(self->sites);
    return 0;
}

static int
reader_clear(ReaderObject *self)
{
    Py_CLEAR(self->event);
    Py_CLEAR(self->site);
    Py_CLEAR(self->codes);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->loop_kinds);
    Py_CLEAR(self->sites);
    Py_CLEAR(self->s_file);
    Py_CLEAR(self->s_line);
    Py_CLEAR(self->s_function);
    return 0;
}

static void
reader_dealloc(ReaderObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef reader_methods[] = {
    {"event", (PyCFunction)reader_call_event, METH_O,
     "event(obj) -> Event | None: the Event trace._checked_event makes of an event as the writer writes it; "
     "None for anything else, which the reference then reads."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot reader_slots[] = {
    {Py_tp_doc, "EventReader(event, site, fields, kinds, loop_kinds): a trace file's common events read in C; "
                "the twin of tracedfuture.trace._checked_event."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, reader_init},
    {Py_tp_dealloc, reader_dealloc},
    {Py_tp_traverse, reader_traverse},
    {Py_tp_clear, reader_clear},
    {Py_tp_methods, reader_methods},
    {0, NULL},
};

static PyType_Spec reader_spec = {
    .name = "tracedfuture._core._cfuture.EventReader",
    .basicsize = sizeof(ReaderObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = reader_slots,
};

int
tf_reader_add_type(PyObject *module)
{
    ReaderType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &reader_spec, NULL);
    if (ReaderType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "EventReader", (PyObject *)ReaderType);
}
