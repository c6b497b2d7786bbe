/* tracedfuture/_core/_gil.c: the GIL handed to tracing's own threads on request
 * (see _gil.h). */
#include "_gil.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

int tf_gil_asked;                  /* threads in tf_gil_restore() now */
static unsigned long tf_gil_turns; /* GILs they were given back: a handover waits for it to move */
static unsigned long tf_gil_releases; /* GILs they released (tf_gil_release()) */
static long long quiet_until;      /* a handover timed out: none before this (monotonic ns) */
static unsigned long long handed, missed; /* handovers an asker took, and those that timed out */

#define HAND_OVER_WAIT_NS 300000LL /* 300 us */
#define QUIET_NS 5000000LL         /* 5 ms */
#define SPINS 256
#define TURN_WAIT_NS 200000LL /* 200 us: then asleep in the GIL's wait */

static long long
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline void
relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a bounded wait with the GIL released: spin briefly, then yield
 * the CPU (one core: the other thread runs only if this one steps aside).
 * 1 once wait_ns have passed since the first yield. */
static int
wait_step(int *spin, long long *until, long long wait_ns)
{
    if ((*spin)++ < SPINS) {
        relax();
        return 0;
    }
    long long now = now_ns();
    if (*until == 0) {
        *until = now + wait_ns;
    }
    else if (now >= *until) {
        return 1;
    }
    sched_yield();
    return 0;
}

void
tf_gil_restore(PyThreadState *save)
{
    __atomic_add_fetch(&tf_gil_asked, 1, __ATOMIC_SEQ_CST);
    PyEval_RestoreThread(save);
    /* Ours now. (A daemon thread that takes it back while the interpreter
     * finalizes never gets here: it exits; the handover checks finalizing.) */
    __atomic_add_fetch(&tf_gil_turns, 1, __ATOMIC_SEQ_CST); /* first: a handover sees it given */
    __atomic_sub_fetch(&tf_gil_asked, 1, __ATOMIC_SEQ_CST);
}

PyThreadState *
tf_gil_release(void)
{
    PyThreadState *save = PyEval_SaveThread();
    __atomic_add_fetch(&tf_gil_releases, 1, __ATOMIC_SEQ_CST);
    return save;
}

void
tf_gil_hand_over(void)
{
    /* The GIL is held: these plain reads and writes are the holder's alone. */
    if (quiet_until != 0) {
        if (now_ns() < quiet_until) {
            return;
        }
        quiet_until = 0;
    }
    if (tf_is_finalizing()) {
        return;
    }
    unsigned long turns = __atomic_load_n(&tf_gil_turns, __ATOMIC_SEQ_CST);
    unsigned long releases = __atomic_load_n(&tf_gil_releases, __ATOMIC_SEQ_CST);
    int given = 0, spin = 0;
    long long until = 0;
    PyThreadState *save = PyEval_SaveThread();
    while (!wait_step(&spin, &until, HAND_OVER_WAIT_NS)) {
        if (__atomic_load_n(&tf_gil_turns, __ATOMIC_SEQ_CST) != turns) {
            given = 1;
            break;
        }
        if (__atomic_load_n(&tf_gil_asked, __ATOMIC_SEQ_CST) == 0) {
            break; /* the asker got it already, or gave up waiting */
        }
    }
    if (given) {
        /* The asker's turn is usually short (its Python share, to its next
         * release): wait for its end here rather than asleep in the GIL's own
         * wait, whose wake-up costs the program a context switch each time. */
        spin = 0;
        until = 0;
        while (__atomic_load_n(&tf_gil_releases, __ATOMIC_SEQ_CST) == releases &&
               !wait_step(&spin, &until, TURN_WAIT_NS)) {
        }
    }
    PyEval_RestoreThread(save);
    if (given) {
        handed++;
    }
    else if (__atomic_load_n(&tf_gil_asked, __ATOMIC_SEQ_CST) != 0) {
        missed++;
        quiet_until = now_ns() + QUIET_NS;
    }
}

/* ------------------------------------------------------------------------ */
/* Waker: what the drain waits on (threading.Event's set/clear/is_set/wait).
 * Its wait releases the GIL and takes it back with tf_gil_restore(): woken by
 * a ring that hurries it, the drain runs at the program's next traced future. */

typedef struct WakerObject {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int flag;
    struct WakerObject *next, *prev; /* every live waker, for a fork()'s child */
} WakerObject;

static WakerObject *wakers; /* the GIL held */

static int
waker_init_sync(WakerObject *w)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return -1;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&w->mu, NULL) != 0 || pthread_cond_init(&w->cv, &attr) != 0 ? -1 : 0;
    pthread_condattr_destroy(&attr);
    return rc;
}

static PyObject *
waker_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Waker() takes no arguments");
        return NULL;
    }
    WakerObject *w = (WakerObject *)type->tp_alloc(type, 0);
    if (w == NULL) {
        return NULL;
    }
    if (waker_init_sync(w) < 0) {
        Py_DECREF(w);
        return PyErr_NoMemory();
    }
    w->next = wakers;
    if (wakers != NULL) {
        wakers->prev = w;
    }
    wakers = w;
    return (PyObject *)w;
}

static void
waker_dealloc(WakerObject *w)
{
    PyTypeObject *tp = Py_TYPE(w);
    if (w->prev != NULL) {
        w->prev->next = w->next;
    }
    else if (wakers == w) {
        wakers = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    tp->tp_free((PyObject *)w);
    Py_DECREF(tp);
}

static PyObject *
waker_set(WakerObject *w, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&w->mu); /* held by a waiter only for a moment, never waiting for the GIL */
    w->flag = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    Py_RETURN_NONE;
}

static PyObject *
waker_clear(WakerObject *w, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&w->mu);
    w->flag = 0;
    pthread_mutex_unlock(&w->mu);
    Py_RETURN_NONE;
}

static PyObject *
waker_is_set(WakerObject *w, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(__atomic_load_n(&w->flag, __ATOMIC_SEQ_CST));
}

static PyObject *
waker_wait(WakerObject *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "wait() takes at most 1 argument (%zd given)", nargs);
        return NULL;
    }
    double timeout = -1.0;
    if (nargs == 1 && args[0] != Py_None) {
        timeout = PyFloat_AsDouble(args[0]);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (timeout < 0) {
            timeout = 0;
        }
    }
    if (__atomic_load_n(&w->flag, __ATOMIC_SEQ_CST) || timeout == 0) {
        return PyBool_FromLong(__atomic_load_n(&w->flag, __ATOMIC_SEQ_CST));
    }
    struct timespec until;
    if (timeout > 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        double whole = timeout > 1e9 ? 1e9 : timeout;
        long long ns = until.tv_nsec + (long long)((whole - (long long)whole) * 1e9);
        until.tv_sec += (time_t)whole + (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
    }
    int flag;
    PyThreadState *save = tf_gil_release();
    pthread_mutex_lock(&w->mu);
    while (!w->flag) {
        if (timeout < 0) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        else if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    flag = w->flag;
    pthread_mutex_unlock(&w->mu);
    tf_gil_restore(save);
    return PyBool_FromLong(flag);
}

static PyMethodDef waker_methods[] = {
    {"set", (PyCFunction)waker_set, METH_NOARGS, "Set the flag and wake the waiting threads."},
    {"clear", (PyCFunction)waker_clear, METH_NOARGS, "Clear the flag."},
    {"is_set", (PyCFunction)waker_is_set, METH_NOARGS, "Whether the flag is set."},
    {"wait", (PyCFunction)(void (*)(void))waker_wait, METH_FASTCALL,
     "wait(timeout=None) -> bool: wait until the flag is set (at most timeout seconds); the flag.\n"
     "The GIL is taken back at the program's next traced future (see _gil.h)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot waker_slots[] = {
    {Py_tp_new, waker_new},
    {Py_tp_dealloc, waker_dealloc},
    {Py_tp_methods, waker_methods},
    {Py_tp_doc, "Waker(): threading.Event's set/clear/is_set/wait, for tracing's own threads."},
    {0, NULL},
};

static PyType_Spec waker_spec = {
    .name = "tracedfuture._core._cfuture.Waker",
    .basicsize = sizeof(WakerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = waker_slots,
};

/* ------------------------------------------------------------------------ */
/* write(fd, data): os.write, taking the GIL back as tf_gil_restore() does. */

static PyObject *
gil_write(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "write() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_ssize_t n;
    int err;
    do {
        PyThreadState *save = tf_gil_release();
        n = write((int)fd, view.buf, (size_t)view.len);
        err = errno;
        tf_gil_restore(save);
    } while (n < 0 && err == EINTR && PyErr_CheckSignals() == 0);
    PyBuffer_Release(&view);
    if (n < 0) {
        if (!PyErr_Occurred()) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
        }
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *
gil_stats(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{sKsKsk}", "handed", handed, "missed", missed, "taken",
                         __atomic_load_n(&tf_gil_turns, __ATOMIC_SEQ_CST));
}

static PyMethodDef gil_functions[] = {
    {"_gil_stats", gil_stats, METH_NOARGS,
     "{'handed': GILs the program's thread handed to an asking thread, 'missed': handovers that timed out, "
     "'taken': GILs tracing's threads took back (tf_gil_restore: handed over or not)}"},
    {"write", (PyCFunction)(void (*)(void))gil_write, METH_FASTCALL,
     "write(fd, data) -> int: os.write, the GIL taken back at the program's next traced future."},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------ */

#define TURN_NS 1000000LL /* 1 ms */
#define PAUSE_NS 50000LL  /* 50 us */

int
tf_gil_turn_due(long long *since)
{
    long long now = now_ns();
    if (*since == 0) {
        *since = now;
        return 0;
    }
    if (now - *since < TURN_NS) {
        return 0;
    }
    *since = now;
    return 1;
}

void
tf_gil_pause(void)
{
    int spin = 0;
    long long until = 0;
    while (!wait_step(&spin, &until, PAUSE_NS)) {
    }
}

static void
after_fork_in_child(void)
{
    /* Only the forking thread lives on: nobody asks for the GIL, and a waker's
     * lock may have been held by a thread that is gone. */
    __atomic_store_n(&tf_gil_asked, 0, __ATOMIC_SEQ_CST);
    quiet_until = 0;
    for (WakerObject *w = wakers; w != NULL; w = w->next) {
        waker_init_sync(w);
    }
}

int
tf_gil_init(PyObject *module)
{
    static int done;
    if (!done) {
        done = 1;
        pthread_atfork(NULL, NULL, after_fork_in_child);
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &waker_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "Waker", type);
    Py_DECREF(type);
    return rc < 0 ? -1 : PyModule_AddFunctions(module, gil_functions);
}
