/* tracedfuture._core._cfuture: the compiled implementation of the seam (_seam.py).
 *
 * TracedFuture and TracedTask are heap subtypes of _asyncio.Future and
 * _asyncio.Task; LoopHooks is a traced loop's create_future / create_task; Ring
 * is a preallocated array of fixed-size records. The hot path fills one record
 * per lifecycle point, holding strong references to atoms only (ints are stored
 * as C integers, strings, types and code objects by reference): no Python object
 * is allocated per event. Ring.take() and Ring.window() build the tuples of
 * _seam.LAYOUTS.
 *
 * The pure-Python twin of everything decided here is tracedfuture/_core/_future.py,
 * but neither imports the other: what both use lives in _frames.py (whose code is
 * the program's, the canceller's frames, hiding tracedfuture's frames from a
 * traceback) and _shared.py (a callback's name, value text, asyncio's own
 * create_task for debug mode and task factories). Rare paths call into those,
 * so that both implementations decide alike.
 *
 * Facts about CPython that shape this file (3.11-3.13):
 * - 3.11's Future/Task dealloc runs the finalizer only for exact instances: our
 *   dealloc calls it itself (a second call is a no-op, the object is marked).
 * - From 3.12 _asyncio's types are heap types whose dealloc drops the type
 *   reference and whose traverse visits the type: we do neither again there.
 * - 3.13 changed the Future struct: our fields live at the runtime offset
 *   base->tp_basicsize, and base fields are read through the API, except in
 *   TracedTask's own step ("The step"), which reads and writes them through
 *   _asyncio_layout.h, verified at import (else asyncio's step runs tasks).
 * - asyncio is imported before _asyncio, or asyncio.tasks keeps its Python
 *   fallbacks and current_task() returns None.
 *
 * State is in C globals: the module is single-phase and not meant for
 * subinterpreters (asyncio's own C module is per interpreter; this one refuses
 * a second initialisation).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#endif

#if PY_VERSION_HEX >= 0x030C0000
#define BASE_IS_HEAP 1
#else
#define BASE_IS_HEAP 0
#endif

#include "_records.h" /* the record struct, shared with _batch.c and _lines.c */
#include "_gil.h" /* the GIL handed to tracing's threads at the program's next traced future */
#include "_clock.h" /* a record's timestamp: TSC ticks where they are sound, converted when read */
#include "_asyncio_layout.h" /* _asyncio's FutureObj / TaskObj, for the step: verified at import */
#include "_frame_layout.h" /* CPython's interpreter frames, walked in place: verified at import */

/* Set to 1 by build_pgo.py for the build laid out by a profile (PROFILE_GUIDED). */
#ifndef TRACEDFUTURE_PROFILE_GUIDED
#define TRACEDFUTURE_PROFILE_GUIDED 0
#endif

/* ------------------------------------------------------------------------ */
/* Ring                                                                      */

/* A ring holds its records packed: each takes the words (Slots) of its header,
 * id and time and of the slots it uses, not a whole Rec: a CREATED takes 7 to
 * 13 words (see below), a RESOLVED or CB_ADDED 5 or 6, a COLLECTED 4, so a burst's
 * three records of a future write 16 words (128 bytes) where whole Recs wrote 45
 * (360): memory written is most of what a flight recorder's ring costs the
 * program beyond its instructions.
 *
 * A record's trailing slots that read zero (an object NULL, an integer 0, or
 * None by nonemask) are left out where its writer knows them at once: nslots
 * ends before them, and its masks still name every field (in place, only the
 * objects among its first nslots slots are its: ring_objects). A CREATED is
 * held in its ring order (CR_*): its two instruction offsets share a word, the
 * fields that are mostly empty come last, and its thread and route, when they
 * are those of the ring's first CREATED (a loop's thread, its route), are the
 * ring's (F_USUAL), so a future the program made takes 7 words and a task 9,
 * not 14. ring_copy_out makes the whole Rec again, and is the only reader of a
 * record's slots: everything downstream sees Recs.
 *
 * A record at word offset o takes buf[o, o + its words); one
 * that begins near the end runs on into the REC_WORDS words of slack past
 * `size`, so that no record is ever split and a reader reads each in place.
 * Records are found by walking from one known (the oldest held, the first
 * unread): positions count the words ever written (a record at position p
 * begins at buf[p % size]; the slack is not counted), and the record counts go
 * along with them. Because the live records span at most `size` words, a
 * record that ran into the slack shadows words at the buffer's start that no
 * live record uses.
 *
 * The ring holds at most `capacity` records (max_bytes / sizeof(Rec): _seam's
 * contract, Ring.record_size being the largest record's size), and so at most
 * capacity * REC_WORDS words, the size a ring reaches: the bytes it takes are
 * max_bytes, and one record's slack, at most.
 *
 * A streaming ring's words are allocated as records need them: RING_START
 * whole records' worth at first, doubling (the live records moved, never
 * copied) up to that size. One whose reader keeps up stays small, its records
 * in the cache and its pages few. A flight recorder's ring is allocated whole
 * (see ring_init): the OS backs its pages as records reach them. Past
 * RING_HURRY unread records (and half its words), a streaming ring hurries its
 * reader (on_full) before it grows further: smaller batches hold the GIL for
 * less (an HTTP server writing every event to a trace file: p99 4x plain's
 * with 32,768, 1.5x with 4,096; 1,024 costs throughput in GIL handovers). */
#define RING_START 4096
#define RING_HURRY 4096
/* Doublings from RING_START up to any capacity a long long allows: fewer. */
#define RETIRED_MAX 64
/* From this many records on, take_batch() copies them with the GIL released. */
#define COPY_WITHOUT_GIL 512
#define REC_WORDS (sizeof(Rec) / sizeof(Slot))        /* the largest record's words */
#define HEAD_WORDS (offsetof(Rec, s) / sizeof(Slot)) /* its op and masks, id and time */

static inline unsigned long long
rec_words(const Rec *r)
{
    return HEAD_WORDS + r->nslots;
}

/* The objects a record in a ring holds there: its masks name all its fields,
 * its words are only its first nslots slots. */
static inline unsigned
ring_objects(const Rec *r)
{
    return r->objmask & ((1u << r->nslots) - 1u);
}

/* A CREATED in a ring: its fields in this order (the mostly empty ones last,
 * so that they are left out), lasti and plasti the two halves of one word;
 * thread and route last, left out when they are the ring's usual ones. */
enum { CR_TID, CR_CODE, CR_LASTIS, CR_PCODE, CR_CORO, CR_IS_TASK, CR_NAME, CR_CONTEXT, CR_THREAD, CR_ROUTE, CR_SLOTS };
#define F_USUAL 4 /* a CREATED in a ring: its thread and route are the ring's (a flag of rings only) */
#define CR_OBJECTS ((1u << CR_CODE) | (1u << CR_PCODE) | (1u << CR_CORO) | (1u << CR_NAME) | (1u << CR_CONTEXT))
/* _seam.LAYOUTS' CREATED: its object fields (code, name, coro, context, program_code) */
#define CREATED_OBJECTS ((1u << 2) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9))

static inline long long
lastis(int lasti, int plasti)
{
    return (long long)((unsigned long long)(unsigned)lasti | (unsigned long long)(unsigned)plasti << 32);
}

/* A CREATED's fields, from its ring order (every slot of it read: the ring's
 * left-out ones as zero; thread and route the ring's usual ones where F_USUAL
 * says so) into LAYOUTS'. Its nonemask (task_id, slot 0 in both) stays. */
static inline void
created_from_ring(Rec *to, long long thread, long long route)
{
    Slot v[CR_SLOTS];
    memcpy(v, to->s, sizeof(v));
    if (to->flags & F_USUAL) {
        v[CR_THREAD].i = thread;
        v[CR_ROUTE].i = route;
        to->flags &= (unsigned char)~F_USUAL;
    }
    unsigned long long both = (unsigned long long)v[CR_LASTIS].i;
    to->s[0] = v[CR_TID];
    to->s[1] = v[CR_IS_TASK];
    to->s[2] = v[CR_CODE];
    to->s[3].i = (int)(unsigned)both;
    to->s[4] = v[CR_THREAD];
    to->s[5] = v[CR_NAME];
    to->s[6] = v[CR_CORO];
    to->s[7] = v[CR_ROUTE];
    to->s[8] = v[CR_CONTEXT];
    to->s[9] = v[CR_PCODE];
    to->s[10].i = (int)(unsigned)(both >> 32);
    to->objmask = CREATED_OBJECTS;
}

/* What a claim let go: the references of the records it overwrote, released
 * by the writer once its new record is complete (releasing may run Python code
 * that writes to this ring). A claim lets go of one record when the ring is at
 * its full size (capacity records of at most REC_WORDS words fit in it); a
 * streaming ring that could not grow lets go of records while their words are
 * fewer than the new one's: at most 2 * REC_WORDS words of them, fewer objects. */
#define OLD_MAX (2 * REC_WORDS)
typedef struct {
    int n;
    PyObject *o[OLD_MAX];
} Old;

static inline void
old_release(Old *old)
{
    for (int i = 0; i < old->n; i++) {
        Py_DECREF(old->o[i]);
    }
    old->n = 0;
}

typedef struct Prefault Prefault;

typedef struct {
    PyObject_HEAD
    Slot *buf;            /* size words, then REC_WORDS of slack */
    long long capacity;   /* records held at most: max_bytes / sizeof(Rec) */
    unsigned long long size;    /* words allocated, less the slack */
    unsigned long long maxsize; /* the size it may grow to: capacity * REC_WORDS */
    long long limit;      /* admit a new future while fewer records are unread */
    unsigned long long w;     /* records ever written */
    unsigned long long rd;    /* records taken (or overwritten unread) */
    unsigned long long start; /* the oldest record still held: [start, w) are live */
    unsigned long long wpos, rdpos, startpos; /* the same three, as positions in words */
    unsigned long long woff, soff; /* wpos % size and startpos % size, kept as they move: no division per record */
    int streaming;
    int history; /* taken records stay (for window()) until their words are needed */
    int hurried; /* on_full was called since the last take: once is enough */
    int held;    /* hold(True): its reader takes nothing now, so no new future is traced */
    int reading; /* take_batch() copies records with the GIL released (see there) */
    int nretired;
    Slot *retired[RETIRED_MAX]; /* buffers grown out of while reading: freed once it is done */
    PyObject *on_full;
    unsigned long long written, taken, overwritten, dropped, untraced;
    /* the thread and route of its first CREATED, which a CREATED with the same
     * leaves out (F_USUAL): set once, before that record, never changed */
    long long thread, route;
    int usual;
    Prefault *prefault; /* the thread backing a flight ring's pages ahead of its writer, or NULL */
    unsigned long long prefault_at; /* wpos at which to wake it next (ULLONG_MAX: never) */
} RingObject;

static PyTypeObject *RingType;

/* The record at word offset o, and the offset of the one after it. */
static inline Rec *
ring_at(const RingObject *r, unsigned long long o)
{
    return (Rec *)&r->buf[o];
}

static inline unsigned long long
ring_next(unsigned long long o, const Rec *rec, unsigned long long size)
{
    o += rec_words(rec);
    return o >= size ? o - size : o;
}

/* The offset of record n (start <= n <= w), walked to from the nearest one
 * known: the first unread, else the oldest held. */
static unsigned long long
ring_offset_of(const RingObject *r, unsigned long long n)
{
    unsigned long long i = r->start, o = r->soff;
    if (n >= r->rd) {
        i = r->rd;
        o = r->rdpos % r->size;
    }
    for (; i < n; i++) {
        o = ring_next(o, ring_at(r, o), r->size);
    }
    return o;
}

/* A ring's buffer of `words` (and the slack), asked to be backed by huge pages
 * where the kernel offers them on request (transparent huge pages in "madvise"
 * mode, the default of most distributions): a ring is written front to back
 * once before it wraps, and with 4 KiB pages each page's first record takes a
 * page fault (16,500 of them, 38 ms of system time, for a 300k-future burst
 * through 64 MiB of whole Recs); with 2 MiB pages, 32. Only the buffer's whole
 * huge pages inside it are asked for; the advice is a hint, and a kernel
 * without it leaves the buffer as it is. */
static Slot *
ring_buf_new(unsigned long long words)
{
    size_t bytes = (size_t)(words + REC_WORDS) * sizeof(Slot);
    Slot *buf = (Slot *)PyMem_RawMalloc(bytes);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (buf != NULL && bytes >= 2 * huge) {
        uintptr_t lo = ((uintptr_t)buf + huge - 1) & ~(huge - 1);
        uintptr_t hi = ((uintptr_t)buf + bytes) & ~(huge - 1);
        if (hi > lo) {
            (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
        }
    }
#endif
    return buf;
}

/* A flight recorder's ring is written front to back once before it wraps, and
 * each page's first record took its page fault on the program's thread: on a VM
 * whose host backs memory as it is first touched, zeroing a 2 MiB page stalled
 * the loop for milliseconds (an HTTP server under a new flight recorder kept
 * 0.78-0.98 of plain's throughput, p99 x3, until its ring had been written
 * once). A thread of its own takes those faults instead, a window ahead of the
 * writer: the writer wakes it each time it crosses a step (one comparison a
 * record, a signal every 2 MiB), and it backs the pages up to PREFAULT_AHEAD
 * past the writer with MADV_POPULATE_WRITE (Linux 5.14+), which writes no byte:
 * records written meanwhile are left as they are. Pages the writer has not come
 * near stay unbacked, so a ring still costs only the memory its records
 * reached. Once the ring has been written through, the thread ends; with a
 * kernel without the advice, at its first call (pages are then backed as
 * records reach them, as before). It needs no GIL and blocks every signal (they
 * are the program's threads'). Its ring's dealloc, and stop_prefaulting()
 * before a fork() (so that the threads a 3.12+ fork warning counts are only
 * those tracedfuture counts), stop it at its next huge page and join it; after
 * a fork(), the parent's writer starts it again at its next step, from where it
 * stopped (3.13 counts threads after the after-fork hooks, so not in one of
 * them), and the child's ring is backed as records reach it. A streaming ring
 * (an exporter's) is not prefaulted: it grows with its backlog, and a new
 * buffer's first pages are the records copied into it. */
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
#define PREFAULT_MIN ((size_t)4 << 20) /* smaller rings' faults are few */
#define PREFAULT_PAGE ((uintptr_t)4096)
#define PREFAULT_STEP ((uintptr_t)2 << 20) /* a huge page */
#define PREFAULT_AHEAD ((uintptr_t)8 << 20)
#define PREFAULT_MAX 64 /* threads at once; a ring past them is backed lazily */

struct Prefault {
    char *lo, *hi;   /* the pages of the ring's buffer */
    char *want;      /* back up to here (under mu) */
    int stop;        /* set under mu, read atomically between steps */
    char *done;      /* backed up to here: the thread's, read once it is joined */
    int ended;       /* the thread's: it is done for good (the whole ring, or the advice failed) */
    pid_t pid;       /* the process that started it: a fork()'s child has no such thread */
    int joined;      /* no thread now (with the GIL held) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
};

/* The prefaults not yet forgotten, with the GIL held. */
static Prefault *prefaults[PREFAULT_MAX];
static int nprefaults;

static void *
prefault_run(void *arg)
{
    Prefault *p = (Prefault *)arg;
    char *done = p->done;
#ifdef __GLIBC__
    (void)pthread_setname_np(pthread_self(), "tracedfuture-pf"); /* as ps and top show it (15 bytes at most) */
#endif
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && done >= p->want) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
        char *want = p->want;
        pthread_mutex_unlock(&p->mu);
        while (done < want && !__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
            char *end = (char *)(((uintptr_t)done + PREFAULT_STEP) & ~(PREFAULT_STEP - 1)); /* a huge page's end */
            if (end > want) {
                end = want;
            }
            if (madvise(done, (size_t)(end - done), MADV_POPULATE_WRITE) != 0) {
                p->ended = 1; /* EINVAL: a kernel without it; ENOMEM: no memory to back it now */
                break;
            }
            done = end;
        }
        p->done = done;
        if (done >= p->hi) {
            p->ended = 1; /* the whole ring */
        }
        if (p->ended || __atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
            return NULL;
        }
    }
}

/* Its thread, started (again: after a fork(), from where it stopped); -1 when
 * no thread can be had (the pages are then backed as records reach them). */
static int
prefault_spawn(Prefault *p)
{
    p->stop = 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* the new thread's mask */
    int rc = pthread_create(&p->thread, NULL, prefault_run, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    p->joined = rc != 0;
    return rc == 0 ? 0 : -1;
}

/* Back the pages up to words `upto` of the ring (from the writer, at each step,
 * with the GIL held): the next step to wake it at, in words. */
static Py_NO_INLINE unsigned long long
prefault_ahead(RingObject *r, unsigned long long upto)
{
    Prefault *p = r->prefault;
    if (p->pid != getpid()) {
        return ULLONG_MAX; /* a fork()'s child: the thread is its parent's */
    }
    if (p->joined && (p->ended || prefault_spawn(p) < 0)) {
        return ULLONG_MAX; /* stopped before a fork(), and started again here, at the writer's next step */
    }
    /* upto grows past the buffer once the ring wraps: the whole of it, then;
     * else a page's end (madvise() takes a range of whole pages) */
    uintptr_t left = (uintptr_t)(p->hi - (char *)r->buf) / sizeof(Slot);
    char *want = p->hi;
    if (upto + PREFAULT_AHEAD / sizeof(Slot) < left) {
        uintptr_t at = (uintptr_t)&r->buf[upto] + PREFAULT_AHEAD;
        want = (char *)((at + PREFAULT_PAGE - 1) & ~(PREFAULT_PAGE - 1));
        want = want < p->hi ? want : p->hi;
    }
    pthread_mutex_lock(&p->mu);
    p->want = want;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (want == p->hi) {
        return ULLONG_MAX; /* asked for the whole ring: never again */
    }
    return upto + PREFAULT_STEP / sizeof(Slot);
}

static void
prefault_start(RingObject *r, size_t bytes)
{
    const uintptr_t page = PREFAULT_PAGE;
    if (bytes < PREFAULT_MIN || nprefaults == PREFAULT_MAX) {
        return;
    }
    Prefault *p = (Prefault *)PyMem_RawCalloc(1, sizeof(Prefault));
    if (p == NULL) {
        return;
    }
    p->lo = (char *)(((uintptr_t)r->buf + page - 1) & ~(page - 1));
    p->hi = (char *)(((uintptr_t)r->buf + bytes) & ~(page - 1));
    p->want = p->lo + PREFAULT_AHEAD; /* the first window, now */
    p->done = p->lo;
    p->pid = getpid();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (prefault_spawn(p) < 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        PyMem_RawFree(p); /* no thread to be had: backed lazily */
        return;
    }
    prefaults[nprefaults++] = p;
    r->prefault = p;
    r->prefault_at = PREFAULT_STEP / sizeof(Slot);
}

/* Stopped and joined (a fork()'s child has no thread to join). */
static void
prefault_join(Prefault *p)
{
    if (p->pid != getpid() || p->joined) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    (void)pthread_join(p->thread, NULL); /* at most a huge page's advice away */
    p->joined = 1;
}

/* Joined, then forgotten (its ring's dealloc). */
static void
prefault_end(RingObject *r)
{
    Prefault *p = r->prefault;
    prefault_join(p);
    for (int k = 0; k < nprefaults; k++) {
        if (prefaults[k] == p) {
            prefaults[k] = prefaults[--nprefaults];
            break;
        }
    }
    if (p->pid == getpid()) { /* a child's copies of them are in whatever state the fork left */
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
    }
    PyMem_RawFree(p);
    r->prefault = NULL;
    r->prefault_at = ULLONG_MAX;
}

static PyObject *
mod_stop_prefaulting(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    for (int k = 0; k < nprefaults; k++) {
        prefault_join(prefaults[k]); /* its writer starts it again at its next step */
    }
    Py_RETURN_NONE;
}
#else
static void
prefault_start(RingObject *r, size_t bytes)
{
    (void)r;
    (void)bytes;
}

static unsigned long long
prefault_ahead(RingObject *r, unsigned long long upto)
{
    (void)r;
    (void)upto;
    return ULLONG_MAX;
}

static PyObject *
mod_stop_prefaulting(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_NONE;
}
#endif

static int
ring_init(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_bytes", "streaming", "on_full", "history", NULL};
    PyObject *max_bytes;
    int streaming = -1, history = 1;
    PyObject *on_full = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$pOp:Ring", kwlist, &max_bytes, &streaming, &on_full,
                                     &history)) {
        return -1;
    }
    if (streaming == -1) {
        PyErr_SetString(PyExc_TypeError, "Ring() needs streaming=True (a reader takes records) or False (overwrite)");
        return -1;
    }
    long long nbytes = -1;
    if (PyLong_Check(max_bytes) && !PyBool_Check(max_bytes)) {
        nbytes = PyLong_AsLongLong(max_bytes);
        if (nbytes == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            nbytes = -1;
        }
    }
    if (nbytes < (long long)sizeof(Rec)) {
        PyErr_Format(PyExc_ValueError,
                     "max_bytes must be an int of at least one record (%d bytes), not %R",
                     (int)sizeof(Rec), max_bytes);
        return -1;
    }
    if (on_full != Py_None && !PyCallable_Check(on_full)) {
        PyErr_Format(PyExc_TypeError, "on_full must be a callable taking no arguments, or None, not %R", on_full);
        return -1;
    }
    if (self->buf != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Ring is initialised once");
        return -1;
    }
    long long cap = nbytes / (long long)sizeof(Rec);
    unsigned long long maxsize = (unsigned long long)cap * REC_WORDS;
    /* A flight recorder's ring (no reader but a dump) fills to its capacity
     * anyway: whole from the start, filling it copies nothing (growing touched
     * every page twice: 50,700 page faults, not 16,400, for a 300k-future
     * burst through 64 MiB). Not zeroed: only the live records, [start, w),
     * are ever read, and the OS backs a page when a record first reaches it. */
    unsigned long long size = !streaming || cap < RING_START ? maxsize : (unsigned long long)RING_START * REC_WORDS;
    self->buf = ring_buf_new(size);
    if (self->buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->prefault_at = ULLONG_MAX;
    if (!streaming) {
        prefault_start(self, (size_t)size * sizeof(Slot));
    }
    self->capacity = cap;
    self->size = size;
    self->maxsize = maxsize;
    self->streaming = streaming;
    self->history = history;
    /* streaming: a new future is traced while fewer than 7/8 of the capacity is
     * unread; a flight recorder alone never refuses one. */
    self->limit = streaming ? (7 * cap + 7) / 8 : LLONG_MAX;
    self->on_full = on_full == Py_None ? NULL : Py_NewRef(on_full);
    return 0;
}

static void
ring_dealloc(RingObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
#ifdef PREFAULT_MIN
    if (self->prefault != NULL) {
        prefault_end(self); /* before its pages go */
    }
#endif
    if (self->buf != NULL) {
        unsigned long long o = self->soff;
        for (unsigned long long n = self->start; n < self->w; n++) {
            Rec *rec = ring_at(self, o);
            o = ring_next(o, rec, self->size);
            rec->objmask = (unsigned short)ring_objects(rec); /* those its words hold */
            rec_release(rec); /* the live records: dead words hold nothing of theirs */
        }
        PyMem_RawFree(self->buf);
        self->buf = NULL;
    }
    for (int k = 0; k < self->nretired; k++) {
        PyMem_RawFree(self->retired[k]); /* a fork()'s child's, left by a copy under way */
    }
    Py_CLEAR(self->on_full);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Twice the words (at most maxsize), each live record moved to its position's
 * offset in the new buffer. -1, with no exception set (the hot path), when
 * there is no memory for it. */
static int
ring_grow(RingObject *r)
{
    unsigned long long size = r->size, bigger = size * 2 < r->maxsize ? size * 2 : r->maxsize;
    if (r->reading && r->nretired == RETIRED_MAX) {
        return -1; /* never: RETIRED_MAX doublings are more than any capacity has */
    }
    /* Not zeroed: only live records are ever read, and the pages are the OS's
     * until records reach them. */
    Slot *buf = ring_buf_new(bigger);
    if (buf == NULL) {
        return -1;
    }
    unsigned long long o = r->soff, p = r->startpos;
    for (unsigned long long n = r->start; n < r->w; n++) {
        const Rec *rec = ring_at(r, o);
        unsigned long long len = rec_words(rec);
        memcpy(&buf[p % bigger], rec, (size_t)len * sizeof(Slot));
        p += len;
        o = ring_next(o, rec, size);
    }
    if (r->reading) {
        r->retired[r->nretired++] = r->buf; /* take_batch() is copying out of it */
    }
    else {
        PyMem_RawFree(r->buf);
    }
    r->buf = buf;
    r->size = bigger;
    r->woff = r->wpos % bigger;
    r->soff = r->startpos % bigger;
    return 0;
}

/* Room for a record of len words, made by letting the oldest records go (and
 * growing a streaming ring first); 0, or -1 when a streaming ring is full of
 * unread records (the record is dropped and counted). The references of the
 * records let go are moved into *old. */
static int
ring_make_room(RingObject *r, unsigned long long len, Old *old)
{
    unsigned long long cap = (unsigned long long)r->capacity;
    if (r->streaming && r->w - r->rd >= cap) {
        r->dropped++;
        return -1;
    }
    while (r->wpos - r->startpos + len > r->size && r->size < r->maxsize) {
        if (ring_grow(r) < 0) {
            break; /* no memory to grow: the oldest taken records make room, or it is full */
        }
    }
    while (r->w - r->start >= cap || r->wpos - r->startpos + len > r->size) {
        Rec *oldest = ring_at(r, r->soff);
        if (r->rd <= r->start) {
            if (r->streaming) {
                r->dropped++; /* unread: a streaming ring never overwrites it */
                return -1;
            }
            r->overwritten++; /* unread, gone */
        }
        if (old->n + NSLOT > (int)OLD_MAX) {
            r->dropped++; /* never: see OLD_MAX */
            return -1;
        }
        for (unsigned mask = ring_objects(oldest); mask != 0; mask &= mask - 1) {
            PyObject *o = oldest->s[__builtin_ctz(mask)].o;
            if (o != NULL) {
                old->o[old->n++] = o; /* its reference, moved: its words are the new record's */
            }
        }
        r->start++;
        r->startpos += rec_words(oldest);
        r->soff = ring_next(r->soff, oldest, r->size);
        if (r->rd < r->start) {
            r->rd = r->start;
            r->rdpos = r->startpos;
        }
    }
    return 0;
}

/* Room for a record of nslots slots, or NULL when a streaming ring is full of
 * unread records (the record is dropped and counted). The references of the
 * records it overwrote (the oldest held, when the ring is full) are moved into
 * *old, to be released once the new record is complete. Its writer fills
 * the record's header (its words are whatever was there). */
static inline Rec *
ring_claim(RingObject *r, unsigned nslots, Old *old)
{
    unsigned long long len = HEAD_WORDS + nslots;
    old->n = 0;
    /* fewer than capacity records held (so fewer unread) and room for its words:
     * a ring that has not wrapped yet */
    if (r->w - r->start >= (unsigned long long)r->capacity || r->wpos - r->startpos + len > r->size) {
        if (r->buf == NULL || ring_make_room(r, len, old) < 0) {
            return NULL;
        }
    }
    Rec *slot = ring_at(r, r->woff);
    slot->nslots = (unsigned char)nslots;
    r->w++;
    r->wpos += len;
    if (r->wpos >= r->prefault_at) {
        r->prefault_at = prefault_ahead(r, r->wpos);
    }
    r->woff += len;
    if (r->woff >= r->size) {
        r->woff -= r->size;
    }
    r->written++;
    return slot;
}

static inline int
ring_admit(RingObject *r)
{
    long long unread = (long long)(r->w - r->rd);
    if (unread < r->limit && !r->held) {
        if (unread >= RING_HURRY && r->wpos - r->rdpos >= r->size / 2 && r->on_full != NULL && !r->hurried) {
            goto hurry; /* traced, but the reader is asked to take before the ring grows more */
        }
        return 1;
    }
    r->untraced++;
    if (r->on_full == NULL || r->hurried) {
        return 0;
    }
hurry:
    r->hurried = 1;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *res = PyObject_CallNoArgs(r->on_full);
    if (res == NULL) {
        PyErr_Clear(); /* the reader's hurry must not break future creation */
    }
    Py_XDECREF(res);
    PyErr_Restore(exc_type, exc_value, exc_tb);
    return unread < r->limit && !r->held;
}

/* A record leaving the ring: its time as monotonic nanoseconds (one made of a
 * tuple, ring.append's, has them already). */
static inline void
rec_to_ns(Rec *r)
{
    if (!(r->flags & F_RAW)) {
        r->ts = clock_to_ns(r->ts);
    }
}

/* A whole Rec of a record in a ring (the slots past its fields left as they
 * are): the trailing slots the ring left out read zero, a CREATED's fields are
 * put back in their order (CR_*), and its boolmask, which the ring does not
 * hold, is its op's (the hot path's bools are CREATED.is_task and
 * COLLECTED.incomplete; a raw record has none). */
static inline void
ring_copy_out(Rec *to, const Rec *rec, const RingObject *ring)
{
    memcpy(to, rec, (size_t)rec_words(rec) * sizeof(Slot));
    for (unsigned k = to->nslots; k < to->nfields; k++) {
        to->s[k].i = 0;
    }
    if (to->flags & F_RAW) {
        to->boolmask = 0;
        return;
    }
    if (to->op == OP_CREATED) {
        created_from_ring(to, ring->thread, ring->route);
    }
    to->boolmask = to->op == OP_CREATED || to->op == OP_COLLECTED ? 1u << 1 : 0;
}

/* A Rec's words into a ring's (its boolmask left out). */
static inline void
ring_copy_in(Rec *slot, const Rec *rec)
{
    memcpy(slot, rec, (size_t)rec_words(rec) * sizeof(Slot));
}

/* Copies of records [from, w), with their references, then the tuples. */
static PyObject *
ring_list(RingObject *r, unsigned long long from, int advance)
{
    unsigned long long n = r->w - from;
    /* Taken without history (start == rd: every live record is unread), the
     * records move out, as take_batch's do: nobody reads the window. */
    int move = advance && !r->history && r->start == from;
    Rec *copy = NULL;
    if (n) {
        copy = (Rec *)PyMem_RawMalloc((size_t)n * sizeof(Rec));
        if (copy == NULL) {
            return PyErr_NoMemory();
        }
        clock_sync();
        unsigned long long o = ring_offset_of(r, from);
        for (unsigned long long i = 0; i < n; i++) {
            const Rec *rec = ring_at(r, o);
            ring_copy_out(&copy[i], rec, r);
            o = ring_next(o, rec, r->size);
            rec_to_ns(&copy[i]);
            if (!move) {
                rec_incref(&copy[i]);
            }
        }
    }
    if (advance) {
        r->rd = r->w;
        r->rdpos = r->wpos;
        r->taken += n;
        r->hurried = 0;
        if (move) {
            r->start = r->w; /* their words are dead: the copies have their references */
            r->startpos = r->wpos;
            r->soff = r->woff;
        }
    }
    /* From here on, Python code may run (allocation, collection) and write to
     * the ring: the copies are ours. */
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (unsigned long long i = 0; i < n; i++) {
        if (out != NULL) {
            PyObject *t = rec_tuple(&copy[i]);
            if (t == NULL) {
                Py_CLEAR(out);
            }
            else {
                PyList_SET_ITEM(out, (Py_ssize_t)i, t);
            }
        }
        rec_release(&copy[i]);
    }
    PyMem_RawFree(copy);
    return out;
}

static PyObject *
ring_take(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->buf == NULL || self->reading) { /* another thread's take_batch() takes them */
        return PyList_New(0);
    }
    return ring_list(self, self->rd, 1);
}

/* The records written since the last take(), as one RecordBatch (_batch.c): the
 * records copied out as whole Recs with their references, no tuple made. A
 * ring without history moves them out instead (no reference taken or dropped:
 * their words are dead, and a reader that keeps up keeps the ring small).
 *
 * A streaming ring's records are copied with the GIL released, so that the
 * program runs meanwhile (the copy and the conversion of timestamps were a
 * drain thread's main work under the GIL, its memmove most of it). That is
 * safe because of what the program's thread may do to the ring meanwhile: it
 * writes new records at wpos and after, never over [rdpos, wpos) (a streaming
 * ring drops a record rather than overwrite an unread one, and rd moves only
 * once the copy is done), and it may grow the ring, which copies the records
 * to a bigger buffer but, while `reading`, keeps the old one (retired) until
 * the copy is done. The records copied hold their references in the ring all
 * the while (they are unread: nothing releases them), so the copies'
 * increments, for a ring with history, wait for the GIL. One reader at a time:
 * a second take meanwhile gets nothing (the first takes those records). */
static PyObject *
ring_take_batch(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->reading) {
        return tf_batch_steal(NULL, 0);
    }
    unsigned long long n = self->buf == NULL ? 0 : self->w - self->rd;
    /* Without history, every live record is unread (start == rd): they move out. */
    int move = !self->history && self->start == self->rd;
    Rec *copy = NULL;
    if (n) {
        const Slot *buf = self->buf;
        unsigned long long size = self->size, o = self->rdpos % size, to = self->w, topos = self->wpos;
        int release = self->streaming && n >= COPY_WITHOUT_GIL;
        ClockCopy clock;
        clock_sync();
        clock_copy(&clock);
        PyObject **objs = NULL;
        size_t nobjs = 0, capobjs = 0;
        int objs_ok = 1;
        PyThreadState *save = NULL;
        if (release) {
            self->reading = 1;
            save = tf_gil_release();
        }
        copy = (Rec *)PyMem_RawMalloc((size_t)n * sizeof(Rec));
        if (copy != NULL) {
            for (unsigned long long i = 0; i < n; i++) {
                const Rec *rec = (const Rec *)&buf[o];
                Rec *r = &copy[i];
                ring_copy_out(r, rec, self);
                o = ring_next(o, rec, size);
                if (!(r->flags & F_RAW)) { /* one made of a tuple, ring.append's, has them already */
                    r->ts = clock_copy_to_ns(&clock, r->ts);
                }
                /* The references it holds, gathered while it is in the cache (no
                 * memory for it: the records release their own). */
                for (unsigned mask = r->objmask; mask != 0 && objs_ok; mask &= mask - 1) {
                    unsigned k = (unsigned)__builtin_ctz(mask);
                    if (r->s[k].o != NULL) {
                        if (nobjs == capobjs) {
                            size_t cap = capobjs ? capobjs * 2 : (size_t)n * 2;
                            PyObject **p = (PyObject **)PyMem_RawRealloc(objs, cap * sizeof(PyObject *));
                            if (p == NULL) {
                                objs_ok = 0;
                                break;
                            }
                            objs = p;
                            capobjs = cap;
                        }
                        objs[nobjs++] = r->s[k].o;
                    }
                }
            }
        }
        if (!objs_ok) {
            PyMem_RawFree(objs);
            objs = NULL;
            nobjs = 0;
        }
        if (release) {
            tf_gil_restore(save);
            self->reading = 0;
            for (int k = 0; k < self->nretired; k++) {
                PyMem_RawFree(self->retired[k]);
            }
            self->nretired = 0;
        }
        if (copy == NULL) {
            PyMem_RawFree(objs);
            return PyErr_NoMemory();
        }
        if (!move && objs != NULL) {
            for (size_t i = 0; i < nobjs; i++) {
                Py_INCREF(objs[i]);
            }
        }
        else if (!move) {
            for (unsigned long long i = 0; i < n; i++) {
                if (copy[i].objmask) {
                    rec_incref(&copy[i]);
                }
            }
        }
        /* Records written meanwhile, from `to` on, stay unread. */
        self->rd = to;
        self->rdpos = topos;
        self->hurried = 0;
        self->taken += n;
        if (move) {
            self->start = to; /* their words are dead: the batch has their references */
            self->startpos = topos;
            self->soff = topos % self->size; /* the ring may have grown meanwhile */
        }
        /* Allocating the batch may run Python code that writes to the ring: the
         * copies are ours already. */
        return tf_batch_steal_refs(copy, (Py_ssize_t)n, objs, (Py_ssize_t)nobjs);
    }
    return tf_batch_steal(copy, 0);
}

static PyObject *
ring_window(RingObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:window", kwlist, &limit)) {
        return NULL;
    }
    if (self->buf == NULL) {
        return PyList_New(0);
    }
    unsigned long long from = self->start;
    if (limit != Py_None) {
        long long n = PyLong_AsLongLong(limit);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (n < 0) {
            n = 0;
        }
        /* Only the newest n records: a console's refresh costs what it shows. */
        if (self->w - from > (unsigned long long)n) {
            from = self->w - (unsigned long long)n;
        }
    }
    return ring_list(self, from, 0);
}

static PyObject *
ring_append(RingObject *self, PyObject *record)
{
    if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) < 3) {
        PyErr_Format(PyExc_TypeError, "a record is a tuple (op, future_id, ts_ns, ...), not %R", record);
        return NULL;
    }
    Old old;
    Rec *slot = ring_claim(self, 1, &old);
    if (slot != NULL) {
        Rec raw;
        rec_set_tuple(&raw, record); /* its op, id and time read once, for batches */
        raw.nslots = 1; /* the tuple, in s[0] */
        ring_copy_in(slot, &raw);
    }
    old_release(&old);
    Py_RETURN_NONE;
}

static PyObject *
ring_hold(RingObject *self, PyObject *flag)
{
    int held = PyObject_IsTrue(flag);
    if (held < 0) {
        return NULL;
    }
    /* A ring a flight recorder reads (history) is never held: what went wrong
     * while an exporter was stuck is what it is for. */
    self->held = held && self->streaming && !self->history;
    Py_RETURN_NONE;
}

static PyObject *
ring_stats(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{sLsisKsKsKsKsK}", "capacity", self->capacity, "record_size", (int)sizeof(Rec),
                         "written", self->written, "taken", self->taken, "overwritten", self->overwritten,
                         "dropped", self->dropped, "untraced", self->untraced);
}

static PyObject *
ring_clear(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->buf == NULL) {
        Py_RETURN_NONE;
    }
    if (self->reading) {
        /* The child of a fork() made while a take_batch() copied without the
         * GIL: that thread is not here; its retired buffers are nobody's. */
        for (int k = 0; k < self->nretired; k++) {
            PyMem_RawFree(self->retired[k]);
        }
        self->nretired = 0;
        self->reading = 0;
    }
    unsigned long long n = self->w - self->start;
    Rec *gone = n ? (Rec *)PyMem_RawMalloc((size_t)n * sizeof(Rec)) : NULL;
    if (n && gone == NULL) {
        return PyErr_NoMemory();
    }
    unsigned long long o = self->soff;
    for (unsigned long long i = 0; i < n; i++) {
        const Rec *rec = ring_at(self, o);
        ring_copy_out(&gone[i], rec, self); /* moved: the words are dead from here on */
        o = ring_next(o, rec, self->size);
    }
    self->start = self->rd = self->w;
    self->startpos = self->rdpos = self->wpos;
    self->soff = self->woff;
    self->hurried = 0;
    for (unsigned long long i = 0; i < n; i++) {
        rec_release(&gone[i]);
    }
    PyMem_RawFree(gone);
    Py_RETURN_NONE;
}

static PyObject *
ring_repr(RingObject *self)
{
    return PyUnicode_FromFormat("<tracedfuture Ring %s capacity=%lld unread=%llu>",
                                self->streaming ? "streaming" : "overwriting", self->capacity, self->w - self->rd);
}

static PyMethodDef ring_methods[] = {
    {"take", (PyCFunction)ring_take, METH_NOARGS, "The records written since the last take(), oldest first."},
    {"take_batch", (PyCFunction)ring_take_batch, METH_NOARGS,
     "The records written since the last take(), oldest first, as one RecordBatch (no tuple made)."},
    {"window", (PyCFunction)(void (*)(void))ring_window, METH_VARARGS | METH_KEYWORDS,
     "Every record still held, taken or not, oldest first (the newest limit of them, if given)."},
    {"append", (PyCFunction)ring_append, METH_O, "Write a record made off the hot path (a lint), from any thread."},
    {"stats", (PyCFunction)ring_stats, METH_NOARGS, "The ring's counters."},
    {"hold", (PyCFunction)ring_hold, METH_O,
     "hold(True): the reader takes nothing now; no new future is traced until hold(False)."},
    {"clear", (PyCFunction)ring_clear, METH_NOARGS, "Forget every record held (after fork(), in the child)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ring_members[] = {
    {"capacity", T_LONGLONG, offsetof(RingObject, capacity), READONLY, "records held at most"},
    {"streaming", T_INT, offsetof(RingObject, streaming), READONLY, "refuses rather than overwrites"},
    {"history", T_INT, offsetof(RingObject, history), READONLY, "taken records stay in the window"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot ring_slots[] = {
    {Py_tp_doc, "Ring(max_bytes, *, streaming, on_full=None, history=True): raw records of one route, "
                "bounded in bytes, its slots allocated as records need them (see tracedfuture._core._seam)."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, ring_init},
    {Py_tp_dealloc, ring_dealloc},
    {Py_tp_repr, ring_repr},
    {Py_tp_methods, ring_methods},
    {Py_tp_members, ring_members},
    {0, NULL},
};

static PyType_Spec ring_spec = {
    "tracedfuture._core._cfuture.Ring", sizeof(RingObject), 0, Py_TPFLAGS_DEFAULT, ring_slots,
};

/* ------------------------------------------------------------------------ */
/* Globals                                                                   */

static PyTypeObject *BaseFuture, *BaseTask;
static PyTypeObject *TracedFutureType, *TracedTaskType, *LoopHooksType;
static Py_ssize_t fut_ext_off, task_ext_off;

static PyObject *py_canceller, *py_callback_name, *py_text, *py_classify, *py_hide_own_frames, *py_raised_at;
static PyObject *py_primitive_label;
static PyObject *py_value_repr, *py_exc_message;
static PyObject *py_current_task;  /* 3.12+: _asyncio.current_task */
static PyObject *py_current_tasks; /* 3.11: _asyncio._current_tasks */
static PyObject *py_get_running_loop;
static PyObject *foreign_ids;      /* weakref.WeakKeyDictionary: task -> id */
static PyObject *asyncio_create_future, *asyncio_create_task, *asyncio_eager_create_task;
static PyObject *eager_factory, *base_event_loop;
static PyObject *base_check_closed, *base_get_debug;
static PyObject *base_create_future_fn, *futures_module, *s_Future;
static PyObject *base_create_task_fn, *tasks_module, *s_Task;
static PyObject *m_add_done_callback, *m_remove_done_callback, *m_set_result, *m_set_exception, *m_fut_cancel;
static PyObject *m_task_cancel, *m_task_set_name, *m_task_callbacks;
static PyObject *task_done_fn;
static PyObject *wakeup_names; /* dict: task type -> its wakeup's qualname */
static PyObject *last_wakeup_type, *last_wakeup_name; /* borrowed from wakeup_names */
static PyObject *empty_tuple;
static PyObject *s_state, *s_result, *s_exception, *s_log_traceback, *s_loop, *s_get_debug, *s_closed, *s_debug;
static PyObject *s_task_factory, *s_FINISHED, *s_CANCELLED, *s_PENDING, *s_UNRETRIEVED;
static PyObject *s_name, *s_context, *s_eager_start, *s_qualname, *s_get_name, *s_done, *s_callbacks_attr;
static PyObject *s_ready, *s_callback, *s_args, *s_dunder_name, *s_label, *s_get_task_factory, *s_is_closed;
static PyObject *s_create_future, *s_create_task, *s_call_soon, *s__loop, *s_coro, *s_check_closed, *s_dunder_self, *s_close;
/* asyncio's own getters of its base fields (_state, _exception, _result,
 * _log_traceback, _loop of Future; get_name of Task; a coroutine's
 * __qualname__), taken from their descriptors once at import and called
 * directly: the base's own accessor code, without a lookup by name, and without
 * a copy of CPython's private FutureObj / TaskObj layouts (3.11-3.13). */
typedef struct {
    getter get;
    void *closure;
} BaseGetter;
static BaseGetter g_state, g_exception, g_result, g_log_tb, g_loop, g_coro_qualname;
static PyObject *m_task_get_name, *m_fut_result;

static inline PyObject *
base_get(const BaseGetter *g, PyObject *obj)
{
    return g->get(obj, g->closure);
}

static const char *own_dir;
static size_t own_dir_len;
static unsigned long long next_id;
static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;

static inline double
random_unit(void)
{
    /* xorshift64*: head sampling decides before anything is allocated */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* ------------------------------------------------------------------------ */
/* Per-future fields, at the runtime offset base->tp_basicsize               */

typedef struct TFExt {
    long long fid; /* 0: not traced */
    RingObject *ring;
    long long created; /* clock_now()'s: clock_to_ns() reads it */
    PyObject *code;
    PyObject *pcode; /* the program's own frame that made it, or NULL */
    PyObject *label;
    long long creator; /* 0: none */
    int lasti, plasti;
    unsigned char values, incomplete, ended, linked;
    Py_ssize_t slot; /* its place in live_slots, while linked */
    PyObject *self;  /* borrowed: the list never owns */
} TFExt;

/* Every traced future and task that is not done (for live()): a slot each in
 * one array, its index kept in its TFExt, free slots reused last in, first out.
 * Taking one out writes into the array and the free list, both recently used,
 * and into no other future: a doubly linked list's removal wrote into its two
 * neighbours, futures made at other moments, a cold cache line each (callgrind,
 * 10k tasks x 10 futures under the flight recorder: 214 D1 read misses per task).
 * Only the thread holding the GIL changes it. */
static TFExt **live_slots;
static Py_ssize_t *live_free;
static Py_ssize_t live_used, live_nfree, live_cap; /* slots ever used, free ones, allocated */

static inline TFExt *
ext_of(PyObject *obj)
{
    /* the exact types first: PyObject_TypeCheck walks the MRO on a miss */
    if (Py_IS_TYPE(obj, TracedFutureType)) {
        return (TFExt *)((char *)obj + fut_ext_off);
    }
    if (Py_IS_TYPE(obj, TracedTaskType)) {
        return (TFExt *)((char *)obj + task_ext_off);
    }
    if (PyObject_TypeCheck(obj, TracedTaskType)) {
        return (TFExt *)((char *)obj + task_ext_off);
    }
    if (PyObject_TypeCheck(obj, TracedFutureType)) {
        return (TFExt *)((char *)obj + fut_ext_off);
    }
    return NULL;
}

/* Room for one more slot; 0 if none could be had (the future is then left out
 * of live(), as snapshots of it can bear, and nothing else changes). */
static int
live_room(void)
{
    if (live_nfree > 0 || live_used < live_cap) {
        return 1;
    }
    Py_ssize_t cap = live_cap ? live_cap * 2 : 1024;
    TFExt **slots = PyMem_RawRealloc(live_slots, (size_t)cap * sizeof(*slots));
    if (slots == NULL) {
        return 0;
    }
    live_slots = slots;
    Py_ssize_t *free_list = PyMem_RawRealloc(live_free, (size_t)cap * sizeof(*free_list));
    if (free_list == NULL) {
        return 0; /* the larger slots array is kept; the capacity is not */
    }
    live_free = free_list;
    live_cap = cap;
    return 1;
}

static inline void
live_link(TFExt *e, PyObject *self)
{
    if (e->linked || !live_room()) {
        return;
    }
    Py_ssize_t slot = live_nfree > 0 ? live_free[--live_nfree] : live_used++;
    live_slots[slot] = e;
    e->slot = slot;
    e->self = self;
    e->linked = 1;
}

static inline void
live_unlink(TFExt *e)
{
    if (!e->linked) {
        return;
    }
    live_slots[e->slot] = NULL;
    live_free[live_nfree++] = e->slot;
    e->linked = 0;
}

static void
ext_clear(TFExt *e)
{
    live_unlink(e);
    e->fid = 0;
    Py_CLEAR(e->ring);
    Py_CLEAR(e->code);
    Py_CLEAR(e->pcode);
    Py_CLEAR(e->label);
}

/* ------------------------------------------------------------------------ */
/* Which task, which code                                                    */

/* The running task of loop: a new reference, or NULL without an error.
 * 3.11-3.13 keep it in _asyncio._current_tasks (the dict _enter_task,
 * _leave_task and 3.12's eager swap write, and current_task() reads); a later
 * Python goes through current_task(). */
static PyObject *
current_task(PyObject *loop)
{
    if (py_current_tasks != NULL) {
        PyObject *task = PyDict_GetItemWithError(py_current_tasks, loop);
        if (task == NULL) {
            PyErr_Clear();
            return NULL;
        }
        return Py_NewRef(task);
    }
    PyObject *task = PyObject_CallOneArg(py_current_task, loop);
    if (task == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (task == Py_None) {
        Py_DECREF(task);
        return NULL;
    }
    return task;
}

/* The id of a task: ours carry it, others get one on first sight. 0: none. */
static long long
task_id(PyObject *task)
{
    if (task == NULL || task == Py_None) {
        return 0;
    }
    if (PyObject_TypeCheck(task, TracedTaskType)) {
        return ((TFExt *)((char *)task + task_ext_off))->fid;
    }
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    long long tid = 0;
    PyObject *found = PyObject_GetItem(foreign_ids, task);
    if (found != NULL) {
        tid = PyLong_AsLongLong(found);
        Py_DECREF(found);
    }
    else if (PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        tid = (long long)++next_id;
        PyObject *v = PyLong_FromLongLong(tid);
        if (v == NULL || PyObject_SetItem(foreign_ids, task, v) < 0) {
            tid = 0; /* not weakly referenceable: no id */
        }
        Py_XDECREF(v);
    }
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
    return tid;
}

/* The running task's id on a loop, remembered with the version of the dict
 * that holds the running tasks (_current_tasks, 3.11-3.13): every record a
 * task's step makes asks for it, and a dict lookup (and the foreign id's)
 * was a tenth of what recording a burst's future cost. Any change to the dict
 * (a task entered or left, on any loop or thread, by anyone: asyncio's steps,
 * eager starts, nest_asyncio's) gives it a new version, so a remembered id
 * whose version is the dict's is the one a lookup would find. The version tag
 * is deprecated from 3.12 on, and checked at import to change as the dict
 * does (else running_versions stays 0 and every call looks up). */
static int running_versions;
static struct {
    PyObject *loop; /* borrowed: compared, never used */
    uint64_t version;
    long long tid;
} running;

static inline uint64_t
current_tasks_version(void)
{
#if PY_VERSION_HEX < 0x030E0000
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
    return ((PyDictObject *)py_current_tasks)->ma_version_tag;
    _Pragma("GCC diagnostic pop")
#else
    return 0;
#endif
}

static inline void
remember_running(PyObject *loop, long long tid)
{
    if (running_versions) {
        running.loop = loop;
        running.version = current_tasks_version();
        running.tid = tid;
    }
}

static long long
running_task_id(PyObject *loop)
{
    if (running_versions && running.loop == loop && running.version == current_tasks_version()) {
        return running.tid;
    }
    PyObject *task = current_task(loop);
    long long tid = task_id(task);
    Py_XDECREF(task);
    remember_running(loop, tid);
    return tid;
}

/* Whether _current_tasks' version tag changes with every change of a dict
 * (its item set, replaced, deleted): running_task_id relies on it. */
static int
versions_follow_changes(void)
{
#if PY_VERSION_HEX < 0x030E0000
    if (py_current_tasks == NULL || !PyDict_CheckExact(py_current_tasks)) {
        return 0;
    }
    PyObject *d = PyDict_New(), *k = PyLong_FromLong(12345);
    if (d == NULL || k == NULL) {
        Py_XDECREF(d);
        Py_XDECREF(k);
        PyErr_Clear();
        return 0;
    }
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wdeprecated-declarations\"")
    uint64_t v[4];
    v[0] = ((PyDictObject *)d)->ma_version_tag;
    int ok = PyDict_SetItem(d, k, Py_True) == 0;
    v[1] = ((PyDictObject *)d)->ma_version_tag;
    ok = ok && PyDict_SetItem(d, k, Py_False) == 0;
    v[2] = ((PyDictObject *)d)->ma_version_tag;
    ok = ok && PyDict_DelItem(d, k) == 0;
    v[3] = ((PyDictObject *)d)->ma_version_tag;
    _Pragma("GCC diagnostic pop")
    Py_DECREF(d);
    Py_DECREF(k);
    PyErr_Clear();
    return ok && v[0] != v[1] && v[1] != v[2] && v[2] != v[3] && v[0] != v[3];
#else
    return 0;
#endif
}

enum { K_PROGRAM = 0, K_INTERNAL = 1, K_BOUNDARY = 2, K_LIBRARY = 3, K_PRIMITIVE = 4 }; /* _frames' */

#define KIND_CACHE 4096
static struct {
    PyObject *code;
    int kind;
} kind_cache[KIND_CACHE];

/* _frames.kind, with a table keyed by the code object's address. */
static int
code_kind(PyObject *code)
{
    size_t h = ((uintptr_t)code >> 4) & (KIND_CACHE - 1);
    if (kind_cache[h].code == code) {
        return kind_cache[h].kind;
    }
    PyObject *res = PyObject_CallOneArg(py_classify, code);
    if (res == NULL) {
        PyErr_Clear();
        return K_INTERNAL;
    }
    int kind = (int)PyLong_AsLong(res);
    Py_DECREF(res);
    PyObject *old = kind_cache[h].code;
    kind_cache[h].code = Py_NewRef(code); /* kept alive: its address is not reused */
    kind_cache[h].kind = kind;
    Py_XDECREF(old);
    return kind;
}

static int
in_dir(PyObject *code, const char *dir, size_t len)
{
    PyObject *filename = ((PyCodeObject *)code)->co_filename;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(filename, &n);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    return (size_t)n >= len && memcmp(s, dir, len) == 0;
}

/* _frames.primitive_label: "Lock#1" for the frame of a primitive's method that
 * makes a future (a new reference), else NULL with no error set. */
static PyObject *
primitive_label(PyFrameObject *frame)
{
    if (frame == NULL) {
        return NULL;
    }
    PyObject *label = PyObject_CallOneArg(py_primitive_label, (PyObject *)frame);
    if (label == NULL) {
        PyErr_Clear(); /* an observer never breaks the observed */
    }
    else if (!PyUnicode_CheckExact(label)) {
        Py_CLEAR(label); /* an exact str: it holds nothing (fut_traverse visits none) */
    }
    return label;
}

/* A walk up the running thread's frames: in place (frames_fast, see
 * _frame_layout.h), or through frame objects (the public API, which makes
 * one per frame it passes). Exactly one of i and o is set until the walk ends;
 * o is a strong reference. */
static int frames_fast;
typedef struct {
#if TF_HAVE_IFRAME
    TFIFrame *i;
#endif
    PyFrameObject *o;
} Cursor;

static inline Cursor
cursor_here(int fast)
{
    Cursor c = {0};
#if TF_HAVE_IFRAME
    if (fast) {
        c.i = tf_iframe_complete(TF_THREAD_IFRAME(PyThreadState_Get()));
        return c;
    }
#endif
    (void)fast;
    c.o = (PyFrameObject *)Py_XNewRef(PyEval_GetFrame());
    return c;
}

static inline int
cursor_done(const Cursor *c)
{
#if TF_HAVE_IFRAME
    if (c->i != NULL) {
        return 0;
    }
#endif
    return c->o == NULL;
}

/* the frame's code (borrowed: the frame holds it) */
static inline PyObject *
cursor_code(const Cursor *c)
{
#if TF_HAVE_IFRAME
    if (c->i != NULL) {
        return (PyObject *)TF_IFRAME_CODE(c->i);
    }
#endif
    PyObject *code = (PyObject *)PyFrame_GetCode(c->o);
    Py_DECREF(code);
    return code;
}

static inline int
cursor_lasti(const Cursor *c)
{
#if TF_HAVE_IFRAME
    if (c->i != NULL) {
        return tf_iframe_lasti(c->i);
    }
#endif
    return PyFrame_GetLasti(c->o);
}

static inline void
cursor_back(Cursor *c)
{
#if TF_HAVE_IFRAME
    if (c->i != NULL) {
        c->i = tf_iframe_complete(c->i->previous);
        return;
    }
#endif
    PyFrameObject *back = PyFrame_GetBack(c->o);
    Py_SETREF(c->o, back);
}

static inline void
cursor_end(Cursor *c)
{
#if TF_HAVE_IFRAME
    c->i = NULL;
#endif
    Py_CLEAR(c->o);
}

/* Whether the walk in place sees the frames the public walk does, from here
 * up: the same code and instruction, frame by frame (at import). */
static int
frames_agree(void)
{
#if TF_HAVE_IFRAME
    Cursor fast = cursor_here(1), slow = cursor_here(0);
    int same = 1;
    while (same && !(cursor_done(&fast) && cursor_done(&slow))) {
        same = !cursor_done(&fast) && !cursor_done(&slow) && cursor_code(&fast) == cursor_code(&slow) &&
               cursor_lasti(&fast) == cursor_lasti(&slow);
        if (same) {
            cursor_back(&fast);
            cursor_back(&slow);
        }
    }
    cursor_end(&fast);
    cursor_end(&slow);
    return same;
#else
    return 0;
#endif
}

/* _frames.creation in C: (code, lasti) of the first frame outside asyncio and
 * tracedfuture, and (pcode, plasti) of the first frame of the program's own code
 * up the stack, from the frame at c (ended here); *code_out and *pcode_out are
 * new references or NULL. *maker_out (may be NULL) gets the code of the asyncio
 * function that made the future on the user's behalf, when there was one
 * between the site and tracedfuture (new reference), else NULL; *label_out then
 * gets _frames.primitive_label's ("Lock#1") when that function is a primitive's
 * (K_PRIMITIVE), else NULL. -1 (nothing out) when that label needs a frame
 * object and the walk is in place: walk again through frame objects. */
static int
site_of(Cursor *c, PyObject **code_out, int *lasti_out, PyObject **maker_out, PyObject **label_out,
        PyObject **pcode_out, int *plasti_out)
{
    PyObject *first = NULL;
    PyFrameObject *first_frame = NULL; /* when first is a primitive's */
    int first_lasti = 0;
    *code_out = *pcode_out = NULL;
    *lasti_out = *plasti_out = 0;
    if (maker_out != NULL) {
        *maker_out = NULL;
        *label_out = NULL;
    }
    while (!cursor_done(c)) {
        PyObject *code = cursor_code(c);
        int kind = code_kind(code);
        if (kind == K_PROGRAM || kind == K_LIBRARY) {
            int lasti = cursor_lasti(c);
            if (*code_out == NULL) {
                *code_out = Py_NewRef(code);
                *lasti_out = lasti;
                if (maker_out != NULL) {
                    *maker_out = first; /* steals */
                    first = NULL;
                    *label_out = primitive_label(first_frame);
                }
            }
            if (kind == K_PROGRAM) {
                *pcode_out = Py_NewRef(code);
                *plasti_out = lasti;
                Py_XDECREF(first);
                Py_XDECREF(first_frame);
                cursor_end(c);
                return 0;
            }
        }
        else if (kind == K_BOUNDARY) {
            break;
        }
        else if (*code_out == NULL && first == NULL && !in_dir(code, own_dir, own_dir_len)) {
            if (kind == K_PRIMITIVE && maker_out != NULL) {
                if (c->o == NULL) { /* its label reads the frame's locals */
                    cursor_end(c);
                    return -1;
                }
                first_frame = (PyFrameObject *)Py_NewRef(c->o);
            }
            first = Py_NewRef(code);
            first_lasti = cursor_lasti(c);
        }
        cursor_back(c);
    }
    cursor_end(c);
    if (*code_out == NULL) {
        *code_out = first; /* steals */
        *lasti_out = first_lasti;
        if (maker_out != NULL) {
            /* create_task(queue.get()): the primitive's method is the site itself */
            *label_out = primitive_label(first_frame);
        }
    }
    else {
        Py_XDECREF(first);
    }
    Py_XDECREF(first_frame);
    return 0;
}

/* Forget every cached kind: what counts as the program changed. */
static PyObject *
forget_code_kinds(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    for (size_t h = 0; h < KIND_CACHE; h++) {
        Py_CLEAR(kind_cache[h].code);
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* Recording                                                                 */

static inline void
set_int(Rec *r, int k, long long v)
{
    r->s[k].i = v;
}

static inline void
set_opt_int(Rec *r, int k, long long v)
{
    r->s[k].i = v;
    if (v == 0) {
        r->nonemask |= (unsigned short)(1u << k);
    }
}

static inline void
set_obj(Rec *r, int k, PyObject *o) /* o borrowed, may be NULL */
{
    r->s[k].o = o;
    Py_XINCREF(o);
    r->objmask |= (unsigned short)(1u << k);
}

/* A record of nslots slots: its fields', or more (a cancel's who). */
static inline Rec *
begin_slots(TFExt *e, RingObject *ring, Old *old, int op, int nfields, int nslots, long long fid)
{
    Rec *r = ring_claim(ring, (unsigned)nslots, old);
    if (r == NULL) {
        if (e != NULL) {
            e->incomplete = 1;
        }
        return NULL;
    }
    r->nfields = (unsigned char)nfields;
    r->flags = 0;
    r->objmask = r->nonemask = 0; /* its bools are its op's (ring_copy_out) */
    r->fid = fid;
    r->ts = clock_now(); /* converted to monotonic ns when read (_clock.h) */
    r->op = (unsigned char)op; /* set last by callers' convention: op only */
    return r;
}

static inline Rec *
begin(TFExt *e, RingObject *ring, Old *old, int op, int nfields, long long fid)
{
    return begin_slots(e, ring, old, op, nfields, nfields, fid);
}

/* The writers of the hot path's most frequent records. Each leaves out the
 * trailing slots that read zero where that is known at once (see Ring): the
 * objmask still names all of a record's objects (NULL reads None), the
 * nonemask every integer that reads None. */

/* A RESOLVED (its value's repr NULL unless captured). */
static inline void
record_resolved(TFExt *e, long long tid, PyObject *result, PyObject *value)
{
    Old old;
    Rec *r = begin_slots(e, e->ring, &old, OP_RESOLVED, 3, value != NULL ? 3 : 2, e->fid);
    if (r != NULL) {
        set_opt_int(r, 0, tid);
        set_obj(r, 1, (PyObject *)Py_TYPE(result));
        r->objmask |= 1u << 2;
        if (value != NULL) {
            r->s[2].o = Py_NewRef(value);
        }
    }
    old_release(&old);
}

/* A CB_ADDED (awaiter 0, None: not a task's wakeup). */
static inline void
record_cb_added(TFExt *e, long long tid, PyObject *name, long long awaiter)
{
    Old old;
    Rec *r = begin_slots(e, e->ring, &old, OP_CB_ADDED, 3, awaiter ? 3 : 2, e->fid);
    if (r != NULL) {
        set_opt_int(r, 0, tid);
        set_obj(r, 1, name);
        if (awaiter) {
            r->s[2].i = awaiter;
        }
        else {
            r->nonemask |= 1u << 2;
        }
    }
    old_release(&old);
}

static PyObject *
text_of(PyObject *fn, PyObject *value)
{
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *res = PyObject_CallOneArg(fn, value);
    if (res == NULL) {
        PyErr_Clear();
    }
    else if (res == Py_None) {
        Py_CLEAR(res);
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
    return res;
}

/* How a finished future or task ended, read without side effects; tid: the
 * task running then (0: none, or the task itself). */
/* A FAILED or CAUGHT record of exc (the message only with the future's
 * capture_values; where it was raised, _frames.raised_at: failures are rare,
 * so Python runs here, before the record is begun). 1 if it was recorded. */
static int
record_exception(TFExt *e, int op, long long tid, PyObject *exc)
{
    PyObject *msg = e->values ? text_of(py_exc_message, exc) : NULL;
    PyObject *where = text_of(py_raised_at, exc);
    if (where != NULL && !(PyTuple_Check(where) && PyTuple_GET_SIZE(where) == 4)) {
        Py_CLEAR(where);
    }
    Old old;
    Rec *r;
    int recorded = 0;
    if ((r = begin(e, e->ring, &old, op, 7, e->fid)) != NULL) {
        set_opt_int(r, 0, tid);
        set_obj(r, 1, (PyObject *)Py_TYPE(exc));
        set_obj(r, 2, msg);
        for (int k = 0; k < 4; k += 2) {
            PyObject *c = where ? PyTuple_GET_ITEM(where, k) : Py_None;
            set_obj(r, 3 + k, c == Py_None ? NULL : c);
            set_int(r, 4 + k, where ? PyLong_AsLongLong(PyTuple_GET_ITEM(where, k + 1)) : 0);
        }
        recorded = 1;
    }
    old_release(&old);
    Py_XDECREF(where);
    Py_XDECREF(msg);
    PyErr_Clear();
    return recorded;
}

static void
record_outcome(PyObject *self, TFExt *e, long long tid)
{
    PyObject *state = base_get(&g_state, self);
    if (state == NULL) {
        PyErr_Clear();
        return;
    }
    int cancelled = PyUnicode_Check(state) && PyUnicode_Compare(state, s_CANCELLED) == 0;
    Py_DECREF(state);
    Old old;
    Rec *r;
    if (cancelled) {
        if ((r = begin(e, e->ring, &old, OP_CANCELLED, 3, e->fid)) != NULL) {
            set_opt_int(r, 0, tid);
            set_obj(r, 1, NULL);
        }
        old_release(&old);
        return;
    }
    PyObject *exc = base_get(&g_exception, self);
    if (exc == NULL) {
        PyErr_Clear();
        return;
    }
    if (exc != Py_None) {
        record_exception(e, OP_FAILED, tid, exc);
        Py_DECREF(exc);
        return;
    }
    Py_DECREF(exc);
    PyObject *result = base_get(&g_result, self);
    if (result == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *value = e->values ? text_of(py_value_repr, result) : NULL;
    record_resolved(e, tid, result, value);
    Py_XDECREF(value);
    Py_DECREF(result);
}

static PyObject *
loop_of(PyObject *self)
{
    PyObject *loop = base_get(&g_loop, self);
    if (loop == NULL) {
        PyErr_Clear();
    }
    else if (loop == Py_None) {
        Py_CLEAR(loop); /* a future whose __init__ never ran */
    }
    return loop;
}

/* ------------------------------------------------------------------------ */
/* LoopHooks                                                                 */

typedef struct {
    PyObject_HEAD
    PyObject *loop;
    RingObject *ring;
    long long route;
    double sample_rate;
    PyObject *capture;
    int capture_values;
    PyObject *installations;
    PyObject *base_create_future;
    PyObject *base_create_task;
    PyObject *base_call_soon;
    PyObject *call_soon_on_first_task; /* set on the loop as call_soon with the first traced task */
    PyObject *loop_kwargs; /* {"loop": loop}, reused by every creation */
    PyObject *saved;       /* _loops' bookkeeping */
    int asyncio_loop;      /* inherits BaseEventLoop: asyncio's own checks apply */
    int plain_checks;      /* and neither _check_closed nor get_debug is overridden */
    int stock_future;      /* and base_create_future is asyncio's own: see untraced_future */
    int stock_task;        /* and base_create_task is asyncio's own: see untraced_task */
    /* Carried by the loop's class (see "Carried by the class" below): loop is
     * borrowed, kept valid by loop_ref, a weak reference whose callback clears
     * it, and the base methods are the class's own, called with the loop
     * first. Otherwise carried by the loop itself: loop is a strong reference,
     * the base methods are bound to it. */
    int carried;
    int registered;         /* in the table of carried hooks, under carried_key */
    long long carried_key;
    PyObject *loop_ref;
    PyObject *carrier_class; /* the class whose Carriers dispatch to these hooks */
} HooksObject;

/* ------------------------------------------------------------------------ */
/* Carried by the class                                                      */

/* A loop whose instances keep no dict (uvloop's: its state lives in the
 * compiled base) pays for one as soon as it has an attribute: every lookup of
 * a method by name on it, asyncio's own (Future.__init__'s get_debug, a
 * resolved future's call_soon) and uvloop's, searches that dict first (+127
 * instructions a lookup on 3.11, an empty dict included), and the program's
 * loop.create_future() loses its specialization. Such a loop carries nothing:
 * its class does, a Carrier per method (see below), which finds the loop's
 * hooks in this table, by the loop's address. The table holds a strong
 * reference to each hooks, the hooks a weak one to their loop: a loop dropped
 * by the program is collected as it would be untraced, and its hooks leave
 * the table then (or at detach()). */
static FidMap carried_table;
static PyObject *carried_last_loop; /* borrowed: the loop last found, and its hooks */
static PyObject *carried_last_hooks;

static inline long long
carried_key_of(PyObject *loop)
{
    return (long long)(uintptr_t)loop;
}

/* The hooks the class of loop carries for it (borrowed), else NULL. */
static inline PyObject *
carried_of(PyObject *loop)
{
    if (loop == carried_last_loop) {
        return carried_last_hooks;
    }
    if (carried_table.used == 0) {
        return NULL;
    }
    FidSlot *slot = fidmap_get(&carried_table, carried_key_of(loop));
    if (slot == NULL) {
        return NULL;
    }
    carried_last_loop = loop;
    carried_last_hooks = (PyObject *)slot->value;
    return carried_last_hooks;
}

static void
carried_remove(PyObject *hooks, long long key)
{
    void *value = NULL;
    if (!fidmap_remove(&carried_table, key, &value)) {
        return;
    }
    if (value == (void *)carried_last_hooks) {
        carried_last_loop = carried_last_hooks = NULL;
    }
    assert(value == (void *)hooks);
    Py_DECREF((PyObject *)value);
}

static PyObject *
captured(HooksObject *h)
{
    if (h->capture == NULL || h->capture == Py_None) {
        return NULL;
    }
    /* an exception being raised is kept (there is seldom one) */
    PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
    int raised = PyErr_Occurred() != NULL;
    if (raised) {
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    }
    PyObject *res = PyObject_CallNoArgs(h->capture);
    if (res == NULL || PyErr_Occurred()) {
        PyErr_Clear(); /* an exporter's hook must not break future creation */
    }
    if (raised) {
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    return res;
}

/* Give a new future or task its id and binding, and record "created". */
static void
register_new(PyObject *obj, TFExt *e, HooksObject *h, PyObject *loop, PyObject *name, PyObject *coro_name,
             int is_task)
{
    PyObject *code = NULL, *pcode = NULL;
    PyObject *maker = NULL; /* a future made by asyncio's own code: that function */
    PyObject *primitive = NULL; /* and when that is a primitive's: "Lock#1" */
    int lasti = 0, plasti = 0;
    Cursor c = cursor_here(frames_fast);
    if (!cursor_done(&c) && code_kind(cursor_code(&c)) == K_PROGRAM) {
        code = Py_NewRef(cursor_code(&c)); /* the common case: the program made it */
        pcode = Py_NewRef(code);
        lasti = plasti = cursor_lasti(&c);
        cursor_end(&c);
    }
    else if (!cursor_done(&c)) {
        if (site_of(&c, &code, &lasti, is_task ? NULL : &maker, &primitive, &pcode, &plasti) < 0) {
            c = cursor_here(0);
            site_of(&c, &code, &lasti, is_task ? NULL : &maker, &primitive, &pcode, &plasti);
        }
        if (name == NULL && primitive != NULL) {
            name = primitive; /* the label of a primitive's waiter */
        }
    }
    long long tid = running_task_id(loop);
    PyObject *context = captured(h);
    long long fid = (long long)++next_id;
    e->fid = fid;
    Py_XSETREF(e->ring, (RingObject *)Py_NewRef(h->ring));
    e->values = (unsigned char)h->capture_values;
    e->incomplete = 0;
    e->ended = 0;
    e->creator = tid;
    e->lasti = lasti;
    e->plasti = plasti;
    Py_XSETREF(e->code, code);   /* steals */
    Py_XSETREF(e->pcode, pcode); /* steals */
    Py_XSETREF(e->label, is_task ? NULL : Py_XNewRef(name));
    live_link(e, obj);
    Old old;
    /* coro: a task's coroutine, or the asyncio function that made a future */
    PyObject *coro = is_task || maker == NULL ? coro_name : ((PyCodeObject *)maker)->co_qualname;
    RingObject *ring = e->ring;
    long long thread = (long long)PyThread_get_thread_ident();
    if (!ring->usual) {
        ring->thread = thread;
        ring->route = h->route;
        ring->usual = 1;
    }
    int usual = thread == ring->thread && h->route == ring->route;
    int n = !usual          ? CR_SLOTS
            : context != NULL ? CR_CONTEXT + 1
            : name != NULL    ? CR_NAME + 1
            : is_task         ? CR_IS_TASK + 1
            : coro != NULL    ? CR_CORO + 1
                              : CR_PCODE + 1;
    Rec *r = begin_slots(e, ring, &old, OP_CREATED, 11, n, fid);
    e->created = r ? r->ts : clock_now();
    if (r != NULL) {
        r->flags = usual ? F_USUAL : 0;
        r->objmask = CR_OBJECTS;
        r->nonemask = tid == 0;
        r->s[CR_TID].i = tid;
        r->s[CR_CODE].o = Py_XNewRef(code);
        r->s[CR_LASTIS].i = lastis(lasti, plasti);
        r->s[CR_PCODE].o = Py_XNewRef(pcode);
        if (n > CR_CORO) {
            r->s[CR_CORO].o = Py_XNewRef(coro);
            if (n > CR_IS_TASK) {
                r->s[CR_IS_TASK].i = is_task;
                if (n > CR_NAME) {
                    r->s[CR_NAME].o = Py_XNewRef(name);
                    if (n > CR_CONTEXT) {
                        r->s[CR_CONTEXT].o = Py_XNewRef(context);
                        if (n > CR_THREAD) {
                            r->s[CR_THREAD].i = thread;
                            r->s[CR_ROUTE].i = h->route;
                        }
                    }
                }
            }
        }
    }
    old_release(&old);
    Py_XDECREF(context);
    Py_XDECREF(maker);
    Py_XDECREF(primitive);
}

/* The hooks of a traced loop that records new futures (borrowed), else NULL:
 * those its class carries for it, else the __self__ of the loop's
 * create_future, create_task or close (the first the program did not
 * replace), which are the hooks' own methods or _loops' wrappers while the
 * loop is traced. No attribute of ours is kept on the loop: see
 * _loops.hooks_of. */
static HooksObject *
hooks_of(PyObject *loop)
{
    if (loop == NULL) {
        return NULL;
    }
    HooksObject *carried = (HooksObject *)carried_of(loop);
    if (carried != NULL) {
        return carried->ring == NULL ? NULL : carried;
    }
    PyObject *names[3] = {s_create_future, s_create_task, s_close};
    for (int i = 0; i < 3; i++) {
        PyObject *fn = PyObject_GetAttr(loop, names[i]);
        if (fn == NULL) {
            PyErr_Clear();
            continue;
        }
        PyObject *owner;
        if (PyCFunction_Check(fn)) {
            owner = PyCFunction_GET_SELF(fn);
        }
        else if (PyMethod_Check(fn)) {
            owner = PyMethod_GET_SELF(fn);
        }
        else {
            owner = PyObject_GetAttr(fn, s_dunder_self);
            if (owner == NULL) {
                PyErr_Clear();
            }
            else {
                Py_DECREF(owner); /* the wrapper keeps it */
            }
        }
        Py_DECREF(fn); /* kept by the loop when it is ours */
        if (owner != NULL && PyObject_TypeCheck(owner, LoopHooksType)) {
            return ((HooksObject *)owner)->ring == NULL ? NULL : (HooksObject *)owner;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The methods shared by futures and tasks                                   */

/* A base method (one of the m_* descriptors of _asyncio's Future or Task,
 * called on one of ours) called through its C function, as its descriptor's
 * vectorcall would after checking the instance's type (ours are subtypes) and
 * the recursion limit (these methods do not recurse): 1 with *res set, or 0
 * for a signature this does not know, to be called the usual way. Spares every
 * set_result, add_done_callback and cancel a second vectorcall (about 100
 * instructions of the 1,000 the flight recorder adds to a burst's future). */
static inline int
call_direct(PyObject *method, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
            PyObject **res)
{
    if (!Py_IS_TYPE(method, &PyMethodDescr_Type)) {
        return 0;
    }
    PyMethodDescrObject *d = (PyMethodDescrObject *)method;
    PyMethodDef *ml = d->d_method;
    assert(PyObject_TypeCheck(self, PyDescr_TYPE(d)));
    switch (ml->ml_flags & (METH_VARARGS | METH_FASTCALL | METH_NOARGS | METH_O | METH_KEYWORDS | METH_METHOD)) {
    case METH_NOARGS:
        if (nargs != 0 || kwnames != NULL) {
            return 0;
        }
        *res = ml->ml_meth(self, NULL);
        return 1;
    case METH_O:
        if (nargs != 1 || kwnames != NULL) {
            return 0;
        }
        *res = ml->ml_meth(self, args[0]);
        return 1;
    case METH_FASTCALL | METH_KEYWORDS:
        *res = ((_PyCFunctionFastWithKeywords)(void (*)(void))ml->ml_meth)(self, args, nargs, kwnames);
        return 1;
    case METH_METHOD | METH_FASTCALL | METH_KEYWORDS:
        *res = ((PyCMethod)(void (*)(void))ml->ml_meth)(self, PyDescr_TYPE(d), args, nargs, kwnames);
        return 1;
    default:
        return 0;
    }
}

/* method(a), a base method on one of ours */
static inline PyObject *
call1(PyObject *method, PyObject *a)
{
    PyObject *direct = NULL;
    if (call_direct(method, a, NULL, 0, NULL, &direct)) {
        return direct;
    }
    return PyObject_CallOneArg(method, a);
}

/* method(a, b), without building a tuple */
static inline PyObject *
call2(PyObject *method, PyObject *a, PyObject *b)
{
    PyObject *direct = NULL;
    if (call_direct(method, a, &b, 1, NULL, &direct)) {
        return direct;
    }
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(method, args, 2, NULL);
}

static PyObject *
call_base(PyObject *method, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *direct = NULL;
    if (call_direct(method, self, args, nargs, kwnames, &direct)) {
        return direct;
    }
    PyObject *small[8];
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **all = small;
    if (total + 1 > 8) {
        /* more than any of these methods takes: asyncio's own error follows */
        all = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (all == NULL) {
            return PyErr_NoMemory();
        }
    }
    all[0] = self;
    for (Py_ssize_t i = 0; i < total; i++) {
        all[i + 1] = args[i];
    }
    PyObject *res = PyObject_Vectorcall(method, all, (size_t)(nargs + 1), kwnames);
    if (all != small) {
        PyMem_Free(all);
    }
    return res;
}

static int
is_wakeup(PyObject *fn, PyObject **owner)
{
    *owner = NULL;
    if (PyCFunction_Check(fn)) {
        PyObject *self = PyCFunction_GET_SELF(fn);
        const char *name = ((PyCFunctionObject *)fn)->m_ml->ml_name;
        if (self != NULL && PyObject_TypeCheck(self, BaseTask) && strcmp(name, "task_wakeup") == 0) {
            *owner = self;
            return 1;
        }
        return 0;
    }
    if (PyMethod_Check(fn)) {
        /* a Python Task subclass's bound wakeup */
        PyObject *self = PyMethod_GET_SELF(fn);
        PyObject *func = PyMethod_GET_FUNCTION(fn);
        if (PyObject_TypeCheck(self, BaseTask) && PyFunction_Check(func)) {
            PyObject *name = ((PyFunctionObject *)func)->func_name;
            if (PyUnicode_CompareWithASCIIString(name, "task_wakeup") == 0 ||
                PyUnicode_CompareWithASCIIString(name, "__wakeup") == 0 ||
                PyUnicode_CompareWithASCIIString(name, "_Task__wakeup") == 0) {
                *owner = self;
                return 1;
            }
        }
    }
    return 0;
}

/* The qualnames of builtin callbacks (id, list.append, a C method bound to an
 * object), made once: a builtin's __qualname__ is a new string at each read.
 * Keyed by its PyMethodDef and the type it is bound to (NULL: a module's), both
 * kept alive by the entry so that neither address is reused while cached. */
#define NAME_CACHE 512
static struct {
    PyMethodDef *ml;
    PyObject *owner;
    PyObject *name;
} name_cache[NAME_CACHE];

static PyObject *
builtin_name(PyObject *fn)
{
    PyObject *self = PyCFunction_GET_SELF(fn);
    PyObject *owner = NULL;
    if (self != NULL && !PyModule_Check(self)) {
        owner = PyType_Check(self) ? self : (PyObject *)Py_TYPE(self);
    }
    PyMethodDef *ml = ((PyCFunctionObject *)fn)->m_ml;
    size_t h = (((uintptr_t)ml >> 4) ^ ((uintptr_t)owner >> 6)) & (NAME_CACHE - 1);
    if (name_cache[h].ml == ml && name_cache[h].owner == owner && name_cache[h].name != NULL) {
        return Py_NewRef(name_cache[h].name);
    }
    PyObject *name = text_of(py_callback_name, fn);
    if (name == NULL || !PyUnicode_CheckExact(name)) {
        return name;
    }
    PyUnicode_InternInPlace(&name);
    PyObject *old_owner = name_cache[h].owner, *old_name = name_cache[h].name;
    name_cache[h].ml = ml;
    name_cache[h].owner = Py_XNewRef(owner);
    name_cache[h].name = Py_NewRef(name);
    Py_XDECREF(old_owner);
    Py_XDECREF(old_name);
    return name;
}

/* _shared.callback_name: a function's qualname read directly (the common
 * cases: a function, a bound method, a builtin), anything else through the
 * Python twin. Nothing is allocated for the common cases. A new reference. */
static PyObject *
callback_name(PyObject *fn)
{
    PyObject *func = PyMethod_Check(fn) ? PyMethod_GET_FUNCTION(fn) : fn;
    if (PyFunction_Check(func)) {
        PyObject *q = ((PyFunctionObject *)func)->func_qualname;
        if (q != NULL && PyUnicode_Check(q)) {
            return Py_NewRef(q);
        }
    }
    if (PyCFunction_Check(fn)) {
        return builtin_name(fn);
    }
    return text_of(py_callback_name, fn);
}

/* A task's wakeup on one of our futures.
 *
 * asyncio's C step takes a fast path only for an exact Future or Task; a
 * TracedFuture gets the generic one, whose wakeup calls fut.result() looked up
 * by name (a new string, a lookup that misses the type cache, a bound method).
 * When a task registers asyncio's own wakeup (TaskWakeupDef, its
 * PyCFunction) on a TracedFuture or TracedTask, add_done_callback registers
 * this one instead: the same name ("task_wakeup", bound to the task: reprs,
 * _callbacks and records read the same), which calls asyncio's own
 * task_wakeup, giving it the future itself when it failed or was cancelled
 * (asyncio raises fut.result() into the coroutine, as before) and a finished
 * exact Future when it succeeded, so that asyncio takes its fast path:
 * task_step(task, NULL), as the generic path does after a successful result()
 * (whose only effect on a finished future without exception is none; the
 * coroutine reads the result from the future itself). 3.11-3.13's task_wakeup
 * reads nothing else of its argument (3.14 also discards it from the
 * awaited-by set: see docs/python-versions.md). */
static PyMethodDef *base_wakeup_def; /* asyncio's TaskWakeupDef, seen at the first await */
static PyObject *done_sentinel;      /* an exact _asyncio.Future, finished with None */

static PyObject *
tf_task_wakeup(PyObject *task, PyObject *fut)
{
    PyObject *arg = fut;
    if (Py_IS_TYPE(fut, TracedFutureType) || Py_IS_TYPE(fut, TracedTaskType)) {
        PyObject *state = base_get(&g_state, fut);
        if (state != NULL &&
            (state == s_FINISHED || (PyUnicode_Check(state) && PyUnicode_Compare(state, s_FINISHED) == 0))) {
            PyObject *exc = base_get(&g_exception, fut);
            if (exc == Py_None) {
                arg = done_sentinel;
            }
            Py_XDECREF(exc);
        }
        Py_XDECREF(state);
        PyErr_Clear();
    }
    return base_wakeup_def->ml_meth(task, arg);
}

static PyMethodDef tf_wakeup_def = {"task_wakeup", (PyCFunction)tf_task_wakeup, METH_O, NULL};
static PyMethodDef own_wakeup_def; /* TracedTask's own wakeup (see "The step") */

/* asyncio's own wakeup of a task, bound to it? */
static int
is_base_wakeup(PyObject *fn)
{
    if (!PyCFunction_Check(fn)) {
        return 0;
    }
    PyMethodDef *ml = ((PyCFunctionObject *)fn)->m_ml;
    if (ml == base_wakeup_def) {
        return 1;
    }
    if (base_wakeup_def != NULL || ml == &tf_wakeup_def || ml == &own_wakeup_def || ml->ml_flags != METH_O ||
        strcmp(ml->ml_name, "task_wakeup") != 0) {
        return 0;
    }
    PyObject *owner = PyCFunction_GET_SELF(fn);
    if (owner == NULL || !PyObject_TypeCheck(owner, BaseTask) || done_sentinel == NULL) {
        return 0;
    }
    base_wakeup_def = ml; /* static in _asyncio: never freed */
    return 1;
}

static PyObject *add_done_callback_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                        PyObject *kwnames);

static PyObject *
shared_add_done_callback(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs < 1 || !is_base_wakeup(args[0]) || ext_of(self) == NULL) {
        return add_done_callback_impl(self, args, nargs, kwnames);
    }
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[4];
    if (total > 4) {
        return add_done_callback_impl(self, args, nargs, kwnames); /* asyncio's own error follows */
    }
    PyObject *ours = PyCFunction_NewEx(&tf_wakeup_def, PyCFunction_GET_SELF(args[0]), NULL);
    if (ours == NULL) {
        return NULL;
    }
    small[0] = ours;
    for (Py_ssize_t i = 1; i < total; i++) {
        small[i] = args[i];
    }
    PyObject *res = add_done_callback_impl(self, small, nargs, kwnames);
    Py_DECREF(ours);
    return res;
}

/* A task (owner) started waiting on the traced future of e: its wakeup fn is the
 * callback. The wakeup's qualname is kept per task type, made once. */
static void
record_awaiter(TFExt *e, PyObject *owner, PyObject *fn)
{
    long long aid = task_id(owner);
    PyObject *tp = (PyObject *)Py_TYPE(owner);
    /* the last type seen first: one task type per program, nearly always */
    PyObject *name = tp == last_wakeup_type ? last_wakeup_name : PyDict_GetItemWithError(wakeup_names, tp);
    if (name == NULL) {
        PyErr_Clear();
        name = PyObject_GetAttr(fn, s_qualname);
        if (name == NULL) {
            PyErr_Clear();
            return;
        }
        if (PyDict_SetItem(wakeup_names, tp, name) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(name); /* the dict keeps it, or it is the function's own */
        name = PyDict_GetItemWithError(wakeup_names, tp);
        if (name == NULL) {
            PyErr_Clear();
            return;
        }
    }
    last_wakeup_type = tp; /* both kept alive by wakeup_names */
    last_wakeup_name = name;
    record_cb_added(e, aid, name, aid);
}

static PyObject *
add_done_callback_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *res = call_base(m_add_done_callback, self, args, nargs, kwnames);
    if (res == NULL) {
        return NULL;
    }
    TFExt *e = ext_of(self);
    if (e == NULL || !e->fid || nargs < 1) {
        return res;
    }
    PyObject *fn = args[0];
    PyObject *owner;
    if (is_wakeup(fn, &owner)) {
        record_awaiter(e, owner, fn);
        return res;
    }
    PyObject *loop = loop_of(self);
    long long tid = loop ? running_task_id(loop) : 0;
    Py_XDECREF(loop);
    PyObject *name = callback_name(fn);
    record_cb_added(e, tid, name, 0);
    Py_XDECREF(name);
    return res;
}

static PyObject *
base_callbacks(PyObject *self)
{
    return Py_TYPE(m_task_callbacks)->tp_descr_get(m_task_callbacks, self, (PyObject *)Py_TYPE(self));
}

static PyObject *
callbacks_list(PyObject *self)
{
    /* the base's own getter, past TracedTask's hiding one */
    PyObject *cbs = base_callbacks(self);
    if (cbs == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyList_Check(cbs)) {
        Py_DECREF(cbs);
        return NULL;
    }
    return cbs;
}

static PyObject *
shared_remove_done_callback(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    TFExt *e = ext_of(self);
    if (e == NULL || !e->fid) {
        return call_base(m_remove_done_callback, self, args, nargs, kwnames);
    }
    /* A copy: asyncio's getter gives its own list once its first slot is empty,
     * and remove_done_callback changes that list in place. */
    PyObject *cbs = callbacks_list(self);
    PyObject *before = cbs ? PyList_GetSlice(cbs, 0, PY_SSIZE_T_MAX) : NULL;
    Py_XDECREF(cbs);
    if (before == NULL) {
        PyErr_Clear();
    }
    PyObject *removed = call_base(m_remove_done_callback, self, args, nargs, kwnames);
    if (removed == NULL) {
        Py_XDECREF(before);
        return NULL;
    }
    PyObject *fn = args[0];
    Py_ssize_t count = PyLong_AsSsize_t(removed);
    if (count > 0 && before != NULL) {
        /* Which positions went, compared by identity: no user __eq__ runs twice. */
        PyObject *after = callbacks_list(self);
        Py_ssize_t nafter = after ? PyList_GET_SIZE(after) : 0;
        PyObject *gone = PyList_New(0);
        Py_ssize_t j = 0;
        for (Py_ssize_t i = 0; gone != NULL && i < PyList_GET_SIZE(before); i++) {
            PyObject *item = PyList_GET_ITEM(before, i);
            int kept = 0;
            if (j < nafter) {
                PyObject *other = PyList_GET_ITEM(after, j);
                if (PyTuple_Check(item) && PyTuple_Check(other) && PyTuple_GET_SIZE(item) == 2 &&
                    PyTuple_GET_SIZE(other) == 2 && PyTuple_GET_ITEM(item, 0) == PyTuple_GET_ITEM(other, 0) &&
                    PyTuple_GET_ITEM(item, 1) == PyTuple_GET_ITEM(other, 1)) {
                    kept = 1;
                }
            }
            if (kept) {
                j++;
            }
            else {
                PyObject *v = PyLong_FromSsize_t(i);
                if (v == NULL || PyList_Append(gone, v) < 0) {
                    Py_CLEAR(gone);
                }
                Py_XDECREF(v);
            }
        }
        Py_XDECREF(after);
        PyObject *indices = gone ? PyList_AsTuple(gone) : NULL;
        Py_XDECREF(gone);
        PyObject *loop = loop_of(self);
        long long tid = loop ? running_task_id(loop) : 0;
        Py_XDECREF(loop);
        PyObject *name = callback_name(fn);
        Old old;
    Rec *r;
        if (indices != NULL && (r = begin(e, e->ring, &old, OP_CB_REMOVED, 3, e->fid)) != NULL) {
            set_opt_int(r, 0, tid);
            set_obj(r, 1, name);
            set_obj(r, 2, indices);
            old_release(&old);
        }
        PyErr_Clear();
        Py_XDECREF(name);
        Py_XDECREF(indices);
    }
    else if (count < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(before);
    return removed;
}

/* _frames.canceller(frame, task): who cancelled, and where a task waited. */
static PyObject *
who_of(PyFrameObject *frame, PyObject *task)
{
    PyObject *res = PyObject_CallFunctionObjArgs(py_canceller, frame ? (PyObject *)frame : Py_None, task, NULL);
    if (res == NULL) {
        PyErr_Clear();
    }
    return res;
}

static void
record_cancel(PyObject *self, TFExt *e, int op, PyObject *msg)
{
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *loop = loop_of(self);
    long long tid = loop ? running_task_id(loop) : 0;
    Py_XDECREF(loop);
    PyObject *text = NULL;
    if (msg != NULL && msg != Py_None) {
        text = PyUnicode_CheckExact(msg) ? Py_NewRef(msg) : text_of(py_text, msg);
    }
    /* a task's request also says where it was waiting (op: only tasks request) */
    PyObject *who = who_of(PyEval_GetFrame(), op == OP_CANCEL_REQ ? self : Py_None);
    int has_who = who != NULL && PyTuple_Check(who) && PyTuple_GET_SIZE(who) == WHO_LEN;
    Old old;
    Rec *r;
    if ((r = begin_slots(e, e->ring, &old, op, 3, has_who ? 2 + WHO_LEN : 3, e->fid)) != NULL) {
        set_opt_int(r, 0, tid);
        set_obj(r, 1, text);
        if (has_who) {
            r->flags |= F_WHO;
            for (int k = 0; k < WHO_LEN; k += 2) {
                PyObject *c = PyTuple_GET_ITEM(who, k);
                set_obj(r, 2 + k, c == Py_None ? NULL : c);
                set_int(r, 3 + k, PyLong_AsLongLong(PyTuple_GET_ITEM(who, k + 1)));
            }
        }
    }
    old_release(&old);
    Py_XDECREF(text);
    Py_XDECREF(who);
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

/* caught(task, exc): an exception a framework caught in a traced task that
 * goes on (tracedfuture.asgi), recorded as CAUGHT with FAILED's fields. Off the
 * hot path; never raises. */
static PyObject *
mod_caught(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *task, *exc;
    if (!PyArg_ParseTuple(args, "OO:caught", &task, &exc)) {
        return NULL;
    }
    TFExt *e = PyExceptionInstance_Check(exc) ? ext_of(task) : NULL;
    if (e == NULL || !e->fid || e->ring == NULL || !PyObject_TypeCheck(task, TracedTaskType)) {
        Py_RETURN_FALSE;
    }
    PyObject *loop = loop_of(task);
    long long tid = loop ? running_task_id(loop) : 0;
    Py_XDECREF(loop);
    return PyBool_FromLong(record_exception(e, OP_CAUGHT, tid, exc));
}

static PyObject *
get_tf_id(PyObject *self, void *Py_UNUSED(closure))
{
    TFExt *e = ext_of(self);
    return PyLong_FromLongLong(e ? e->fid : 0);
}

/* ------------------------------------------------------------------------ */
/* TracedFuture                                                              */

static int
fut_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "label", NULL};
    PyObject *loop = Py_None, *label = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OO:Future", kwlist, &loop, &label)) {
        return -1;
    }
    if (label != Py_None && !PyUnicode_Check(label)) {
        PyErr_Format(PyExc_TypeError, "TracedFuture(label=...): label must be a str or None, not %.100s",
                     Py_TYPE(label)->tp_name);
        return -1;
    }
    PyObject *kw = NULL;
    if (loop != Py_None) {
        kw = Py_BuildValue("{sO}", "loop", loop);
        if (kw == NULL) {
            return -1;
        }
    }
    int rc = BaseFuture->tp_init(self, empty_tuple, kw);
    Py_XDECREF(kw);
    if (rc < 0) {
        return -1;
    }
    TFExt *e = ext_of(self);
    if (e->fid) {
        return 0; /* initialised again: keep the first identity */
    }
    PyObject *own_loop = loop_of(self);
    HooksObject *h = hooks_of(own_loop);
    if (h != NULL && ring_admit(h->ring)) {
        /* an exact str (a subclass's text copied): fut_traverse visits no label */
        PyObject *text = label == Py_None ? NULL : PyUnicode_FromObject(label);
        PyErr_Clear();
        register_new(self, e, h, own_loop, text, NULL, 0);
        Py_XDECREF(text);
    }
    Py_XDECREF(own_loop);
    tf_gil_yield_point();
    return 0;
}

/* The overrides take asyncio's own arguments and hand them to asyncio's method
 * first: a wrong call fails with asyncio's own message, and nothing is recorded. */
static PyObject *
fut_set_result(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *res = call_base(m_set_result, self, args, nargs, kwnames);
    if (res == NULL) {
        return NULL;
    }
    PyObject *result = args[0];
    TFExt *e = ext_of(self);
    if (e != NULL && e->fid) {
        PyObject *loop = loop_of(self);
        long long tid = loop ? running_task_id(loop) : 0;
        Py_XDECREF(loop);
        PyObject *value = e->values ? text_of(py_value_repr, result) : NULL;
        record_resolved(e, tid, result, value);
        Py_XDECREF(value);
        live_unlink(e);
    }
    return res;
}

static PyObject *
fut_set_exception(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *res = call_base(m_set_exception, self, args, nargs, kwnames);
    if (res == NULL) {
        return NULL;
    }
    TFExt *e = ext_of(self);
    if (e != NULL && e->fid) {
        PyObject *loop = loop_of(self);
        if (loop != NULL) {
            record_outcome(self, e, running_task_id(loop));
            Py_DECREF(loop);
        }
        live_unlink(e);
    }
    return res;
}

static PyObject *
fut_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *res = call_base(m_fut_cancel, self, args, nargs, kwnames);
    if (res != Py_True) {
        return res;
    }
    TFExt *e = ext_of(self);
    if (e != NULL && e->fid) {
        PyObject *msg = nargs >= 1 ? args[0] : (kwnames && PyTuple_GET_SIZE(kwnames) ? args[nargs] : NULL);
        record_cancel(self, e, OP_CANCELLED, msg);
        live_unlink(e);
    }
    return res;
}

static void
record_collected(PyObject *self, TFExt *e, PyObject *state)
{
    Old old;
    live_unlink(e);
    Rec *r = begin_slots(NULL, e->ring, &old, OP_COLLECTED, 2, e->incomplete ? 2 : 1, e->fid);
    if (r != NULL) {
        set_obj(r, 0, state);
        if (e->incomplete) {
            r->s[1].i = 1;
        }
    }
    old_release(&old);
}

/* The state asyncio's finalizer reports: "UNRETRIEVED" for an exception nobody
 * looked at, else _state. A new reference, or NULL. */
static int layout_ok; /* 1: asyncio's structs are _asyncio_layout.h's (verified at import, step_init) */

static PyObject *
final_state(PyObject *self)
{
    if (layout_ok) { /* the struct's fields: no getter called, no string compared */
        tf_fut_state st = ((TFFut *)self)->fut_state;
        if (st == TF_FINISHED) {
            return Py_NewRef(((TFFut *)self)->fut_log_tb ? s_UNRETRIEVED : s_FINISHED);
        }
        return Py_NewRef(st == TF_CANCELLED ? s_CANCELLED : s_PENDING);
    }
    PyObject *state = base_get(&g_state, self);
    if (state == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (PyUnicode_Check(state) && PyUnicode_Compare(state, s_FINISHED) == 0) {
        PyObject *log_tb = base_get(&g_log_tb, self);
        if (log_tb == NULL) {
            PyErr_Clear();
        }
        else {
            if (PyObject_IsTrue(log_tb) == 1) {
                Py_SETREF(state, Py_NewRef(s_UNRETRIEVED));
            }
            Py_DECREF(log_tb);
        }
    }
    PyErr_Clear();
    return state;
}

static void
fut_finalize(PyObject *self)
{
    TFExt *e = ext_of(self);
    if (e->fid) {
        /* an exception being raised is kept (there is seldom one) */
        PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
        int raised = PyErr_Occurred() != NULL;
        if (raised) {
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        }
        PyObject *state = final_state(self);
        if (state != NULL) {
            record_collected(self, e, state);
            Py_DECREF(state);
        }
        PyErr_Clear();
        if (raised) {
            PyErr_Restore(exc_type, exc_value, exc_tb);
        }
    }
    if (BaseFuture->tp_finalize) {
        BaseFuture->tp_finalize(self); /* asyncio's "exception was never retrieved" */
    }
}

static void
fut_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return; /* resurrected */
    }
    ext_clear(ext_of(self));
    BaseFuture->tp_dealloc(self);
#if !BASE_IS_HEAP
    Py_DECREF(tp);
#else
    (void)tp;
#endif
}

static int
fut_traverse(PyObject *self, visitproc visit, void *arg)
{
#if !BASE_IS_HEAP
    /* A heap type's instances visit it, so that the collector finds a cycle
     * through the type; TracedFuture and TracedTask themselves live as long as
     * this module's references to them, in no collectable cycle, and 3.11's
     * asyncio.Future, a static type, is not visited either (callgrind, 5,000
     * tasks x 10 futures under the flight recorder: 7.6M of the 26M
     * instructions over plain). A subclass's still are. */
    if (!Py_IS_TYPE(self, TracedFutureType)) {
        Py_VISIT(Py_TYPE(self));
    }
#endif
    /* Nothing of ours is visited: a label is an exact str, codes are not
     * tracked by the collector, and the ring is not a container. Reading them
     * took each future's last cache line into every collection. */
    return BaseFuture->tp_traverse(self, visit, arg);
}

static int
fut_clear(PyObject *self)
{
    return BaseFuture->tp_clear(self);
}

static PyMethodDef fut_methods[] = {
    {"add_done_callback", (PyCFunction)(void (*)(void))shared_add_done_callback, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's add_done_callback, recorded."},
    {"remove_done_callback", (PyCFunction)(void (*)(void))shared_remove_done_callback, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's remove_done_callback, recorded."},
    {"set_result", (PyCFunction)(void (*)(void))fut_set_result, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's set_result, recorded."},
    {"set_exception", (PyCFunction)(void (*)(void))fut_set_exception, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's set_exception, recorded."},
    {"cancel", (PyCFunction)(void (*)(void))fut_cancel, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's cancel, recorded with its msg and canceller."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef fut_getset[] = {
    {"_tf_id", get_tf_id, NULL, "the future_id events give this future, 0 when untraced", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot fut_slots[] = {
    {Py_tp_doc, "An asyncio.Future that records its life.\n\n"
                "loop.create_future() returns one on a traced loop; construct one directly\n"
                "(TracedFuture(label=\"db reply\")) where code would call asyncio.Future().\n"
                "On a loop that is not traced it records nothing. Behaviour, repr and errors\n"
                "are asyncio's."},
    {Py_tp_init, fut_init},
    {Py_tp_finalize, fut_finalize},
    {Py_tp_dealloc, fut_dealloc},
    {Py_tp_traverse, fut_traverse},
    {Py_tp_clear, fut_clear},
    {Py_tp_getset, fut_getset},
    {0, NULL},
};

static PyType_Spec fut_spec = {
    "tracedfuture._core._cfuture.Future", 0, 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, fut_slots,
};

#define INTERN_OR(var, text)                                    \
    do {                                                        \
        if ((var = PyUnicode_InternFromString(text)) == NULL) { \
            return -1;                                          \
        }                                                       \
    } while (0)

static PyObject *method_of(PyTypeObject *tp, const char *name);

/* ------------------------------------------------------------------------ */
/* The step: TracedTask steps itself                                         */

/* asyncio's C step takes its fast path only for an exact _asyncio.Future or
 * Task: for a TracedFuture it looks up _asyncio_future_blocking, get_loop,
 * add_done_callback and result by name, and it ends a task from C, where no
 * override sees it. So a TracedTask has a step and a wakeup of its own, which
 * translate 3.11-3.13's task_step_impl / task_wakeup (the semantics of tasks.py's
 * __step and __wakeup as the C Task has them, error texts included), with the
 * fast path for the four types whose fields we know (TracedFuture, TracedTask,
 * asyncio's Future and Task), and which record the end of the task where it
 * happens. The fields are read and written through _asyncio_layout.h, which
 * verify_layout() checks at import; when it refuses, own_step stays 0 and a
 * TracedTask is stepped by asyncio (its end seen through a hidden done callback,
 * below). */

static int own_step;                  /* 1: new TracedTasks step themselves */
static int deferred_task_names;       /* 1: an unnamed task's task_name is its number, see task_name_of */
static char step_reason[240] = "";    /* why not, in one line */
static PyObject *exc_CancelledError, *exc_InvalidStateError;
static PyObject *m_make_cancelled_error, *py_register_eager, *py_unregister_eager;
static PyObject *s_throw, *s_cancel, *s_blocking, *s_get_loop, *s_add_done_callback, *s_result_attr, *s_is_running;
static PyObject *context_kwnames; /* ("context",) */

#define FUT(o) ((TFFut *)(o))
#define TASK(o) ((TFTask *)(o))

/* The loop that base Task.__init__ sees while a TracedTask is made: it answers
 * get_debug() with the real loop's answer and takes the call_soon of asyncio's
 * step, which it drops (ours is scheduled instead, on the real loop, which is put
 * back in the task right after). Everything else __init__ does (the name and its
 * counter, the context, _source_traceback, all_tasks) stays asyncio's own. */
typedef struct {
    PyObject_HEAD
    int debug;
} StandInObject;

static PyTypeObject *StandInType;
static PyObject *asyncio_step_type; /* what asyncio's Task.__init__ gave the stand-in (the probe) */
static PyObject *stand_in;        /* the one instance */
static PyObject *stand_in_kwargs; /* {"loop": stand_in} */

static PyObject *
stand_in_get_debug(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(((StandInObject *)self)->debug);
}

static PyObject *
stand_in_call_soon(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (asyncio_step_type == NULL && nargs >= 1) {
        asyncio_step_type = Py_NewRef((PyObject *)Py_TYPE(args[0])); /* the probe's: seen once */
    }
    Py_RETURN_NONE; /* asyncio's step, dropped */
}

static PyMethodDef stand_in_methods[] = {
    {"get_debug", stand_in_get_debug, METH_NOARGS, NULL},
    {"call_soon", (PyCFunction)(void (*)(void))stand_in_call_soon, METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot stand_in_slots[] = {
    {Py_tp_methods, stand_in_methods},
    {0, NULL},
};

static PyType_Spec stand_in_spec = {
    "tracedfuture._core._cfuture._StandInLoop", sizeof(StandInObject), 0, Py_TPFLAGS_DEFAULT, stand_in_slots,
};

/* Base Task.__init__(self, *args, **kw) with kw's loop the stand-in, then the
 * real loop put in its place. */
static int
base_task_init(PyObject *self, PyObject *args, PyObject *kw, PyObject *loop, int debug)
{
    ((StandInObject *)stand_in)->debug = debug;
    int rc = BaseTask->tp_init(self, args, kw);
    if (FUT(self)->fut_loop == stand_in) {
        Py_SETREF(FUT(self)->fut_loop, Py_NewRef(loop));
    }
    return rc;
}

/* Base Future.__init__(fut, loop=stand-in), then the real loop put in its
 * place, debug being the real loop's get_debug(): a future of a loop whose
 * hooks must not keep it alive (carried by its class), without a dict per
 * future to hand asyncio the loop by keyword. */
static int
base_future_init(PyObject *fut, PyObject *loop, int debug)
{
    ((StandInObject *)stand_in)->debug = debug;
    int rc = BaseFuture->tp_init(fut, empty_tuple, stand_in_kwargs);
    if (FUT(fut)->fut_loop == stand_in) {
        Py_SETREF(FUT(fut)->fut_loop, Py_NewRef(loop));
    }
    return rc;
}

/* loop.call_soon(fn[, arg], context=ctx), as asyncio's C calls it. */
static int
call_soon(PyObject *loop, PyObject *fn, PyObject *arg, PyObject *ctx)
{
    PyObject *stack[4];
    size_t n = 0;
    stack[n++] = loop;
    stack[n++] = fn;
    if (arg != NULL) {
        stack[n++] = arg;
    }
    stack[n] = ctx;
    PyObject *handle = PyObject_VectorcallMethod(s_call_soon, stack, n, context_kwnames);
    if (handle == NULL) {
        return -1;
    }
    Py_DECREF(handle);
    return 0;
}

static PyObject *own_step_run(PyObject *task, PyObject *exc);

/* What the loop is given to step a task soon: like asyncio's TaskStepMethWrapper
 * (its type's name, read from asyncio's own at import, its __self__, no
 * __name__), so that a loop's own call_soon sees what it sees untraced. */
typedef struct {
    PyObject_HEAD
    PyObject *task;
    PyObject *arg; /* an exception to throw in, or NULL */
} StepObject;

static PyTypeObject *StepType;

static PyObject *
step_call(StepObject *self, PyObject *args, PyObject *kwds)
{
    if ((kwds != NULL && PyDict_GET_SIZE(kwds) != 0) || PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "function takes no arguments");
        return NULL;
    }
    return own_step_run(self->task, self->arg);
}

static int
step_traverse(StepObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->task);
    Py_VISIT(self->arg);
    return 0;
}

static int
step_clear(StepObject *self)
{
    Py_CLEAR(self->task);
    Py_CLEAR(self->arg);
    return 0;
}

static void
step_dealloc(StepObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    step_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
step_get_self(StepObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->task);
}

static PyGetSetDef step_getset[] = {
    {"__self__", (getter)step_get_self, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot step_slots[] = {
    {Py_tp_call, step_call},
    {Py_tp_traverse, step_traverse},
    {Py_tp_clear, step_clear},
    {Py_tp_dealloc, step_dealloc},
    {Py_tp_getset, step_getset},
    {0, NULL},
};

static PyType_Spec step_spec = {
    "tracedfuture._core._cfuture.TaskStepMethWrapper", sizeof(StepObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    step_slots,
};

/* task_call_step_soon */
static int
step_soon(PyObject *task, PyObject *exc)
{
    StepObject *fn = PyObject_GC_New(StepObject, StepType);
    if (fn == NULL) {
        return -1;
    }
    fn->task = Py_NewRef(task);
    fn->arg = Py_XNewRef(exc);
    PyObject_GC_Track(fn);
    /* held: an odd call_soon could replace them */
    PyObject *loop = Py_NewRef(TASK(task)->fut_loop), *ctx = Py_NewRef(TASK(task)->task_context);
    int rc = call_soon(loop, (PyObject *)fn, NULL, ctx);
    Py_DECREF(ctx);
    Py_DECREF(loop);
    Py_DECREF(fn);
    return rc;
}

/* task_set_error_soon: the step again, soon, throwing RuntimeError(msg) */
static PyObject *
error_soon(PyObject *task, const char *format, PyObject *a, PyObject *b)
{
    PyObject *msg = b ? PyUnicode_FromFormat(format, a, b) : PyUnicode_FromFormat(format, a);
    if (msg == NULL) {
        return NULL;
    }
    PyObject *e = PyObject_CallOneArg(PyExc_RuntimeError, msg);
    Py_DECREF(msg);
    if (e == NULL) {
        return NULL;
    }
    int rc = step_soon(task, e);
    Py_DECREF(e);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _enter_task / _leave_task / _swap_current_task: _asyncio._current_tasks, the
 * dict that current_task() reads (3.11-3.13). */
static int
enter_task(PyObject *loop, PyObject *task)
{
    PyObject *item = PyDict_GetItemWithError(py_current_tasks, loop);
    if (item != NULL) {
        Py_INCREF(item);
        PyErr_Format(PyExc_RuntimeError, "Cannot enter into task %R while another task %R is being executed.", task,
                     item);
        Py_DECREF(item);
        return -1;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    return PyDict_SetItem(py_current_tasks, loop, task);
}

static int
leave_task(PyObject *loop, PyObject *task)
{
    PyObject *item = PyDict_GetItemWithError(py_current_tasks, loop);
    if (item != task) {
        if (item == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            item = Py_None;
        }
        PyErr_Format(PyExc_RuntimeError, "Leaving task %R does not match the current task %R.", task, item);
        return -1;
    }
    return PyDict_DelItem(py_current_tasks, loop);
}

static PyObject *
swap_current_task(PyObject *loop, PyObject *task)
{
    PyObject *prev = PyDict_GetItemWithError(py_current_tasks, loop);
    if (prev == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        prev = Py_None;
    }
    Py_INCREF(prev);
    int rc = task == Py_None ? PyDict_DelItem(py_current_tasks, loop) : PyDict_SetItem(py_current_tasks, loop, task);
    if (rc < 0) {
        Py_DECREF(prev);
        return NULL;
    }
    return prev;
}

/* An error raised while another was pending: the pending one becomes its
 * __context__ (asyncio's _PyErr_ChainExceptions). */
static void
chain_onto(PyObject *et, PyObject *ev, PyObject *tb)
{
    if (et == NULL) {
        return;
    }
    if (!PyErr_Occurred()) {
        PyErr_Restore(et, ev, tb);
        return;
    }
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(ev, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(et);
    PyObject *et2, *ev2, *tb2;
    PyErr_Fetch(&et2, &ev2, &tb2);
    PyErr_NormalizeException(&et2, &ev2, &tb2);
    PyException_SetContext(ev2, ev); /* steals ev */
    PyErr_Restore(et2, ev2, tb2);
}

static inline int
is_known_future(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    return tp == TracedFutureType || tp == TracedTaskType || tp == BaseFuture || tp == BaseTask;
}

/* A StopIteration raised by coro.throw(): its value into *result (new), 0; else -1. */
static int
stop_value(PyObject **result)
{
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return -1;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    PyObject *value = NULL;
    if (ev != NULL && PyObject_TypeCheck(ev, (PyTypeObject *)PyExc_StopIteration)) {
        value = ((PyStopIterationObject *)ev)->value;
    }
    *result = Py_NewRef(value ? value : Py_None);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    return 0;
}

/* The task ended in its own step: record how (the step's task is the running
 * one, so "by" is none), with the fields read directly. */
static void
task_ended(PyObject *task)
{
    TFExt *e = (TFExt *)((char *)task + task_ext_off);
    if (!e->fid || e->ended) {
        return;
    }
    e->ended = 1;
    TFTask *t = TASK(task);
    if (t->fut_state == TF_CANCELLED || t->fut_exception != NULL) {
        record_outcome(task, e, 0); /* rarer: the shared path */
    }
    else if (t->fut_state == TF_FINISHED) {
        PyObject *result = t->fut_result ? t->fut_result : Py_None;
        PyObject *value = e->values ? text_of(py_value_repr, result) : NULL;
        record_resolved(e, 0, result, value);
        Py_XDECREF(value);
    }
    live_unlink(e);
}

/* future_add_done_callback on a known future's fields (3.11-3.13): the first
 * callback in callback0/context0, the others as (fn, context) in callbacks, or,
 * when it is done already, scheduled at once. */
static int
add_callback(PyObject *fut, PyObject *fn, PyObject *ctx)
{
    TFFut *f = FUT(fut);
    if (f->fut_state != TF_PENDING) {
        return call_soon(f->fut_loop, fn, fut, ctx);
    }
    if (f->fut_callbacks == NULL && f->fut_callback0 == NULL) {
        f->fut_callback0 = Py_NewRef(fn);
        f->fut_context0 = Py_NewRef(ctx);
        return 0;
    }
    PyObject *pair = PyTuple_Pack(2, fn, ctx);
    if (pair == NULL) {
        return -1;
    }
    if (f->fut_callbacks != NULL) {
        int rc = PyList_Append(f->fut_callbacks, pair);
        Py_DECREF(pair);
        return rc;
    }
    f->fut_callbacks = PyList_New(1);
    if (f->fut_callbacks == NULL) {
        Py_DECREF(pair);
        return -1;
    }
    PyList_SET_ITEM(f->fut_callbacks, 0, pair);
    return 0;
}

/* After the task started waiting on fut: a cancel() that came first goes on to it. */
static PyObject *
cancel_waiter_if_must(PyObject *task, PyObject *fut)
{
    TFTask *t = TASK(task);
    if (t->task_must_cancel) {
        PyObject *msg = Py_NewRef(t->fut_cancel_msg ? t->fut_cancel_msg : Py_None);
        Py_INCREF(fut);
        PyObject *r = PyObject_CallMethodOneArg(fut, s_cancel, msg);
        Py_DECREF(fut);
        Py_DECREF(msg);
        if (r == NULL) {
            return NULL;
        }
        int is_true = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (is_true < 0) {
            return NULL;
        }
        if (is_true) {
            t->task_must_cancel = 0;
        }
    }
    Py_RETURN_NONE;
}

/* asyncio.futures._get_loop, for a foreign future */
static PyObject *
future_loop(PyObject *fut)
{
    PyObject *getloop;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(fut, s_get_loop, &getloop) < 0) {
#else
    if (_PyObject_LookupAttr(fut, s_get_loop, &getloop) < 0) {
#endif
        return NULL;
    }
    if (getloop != NULL) {
        PyObject *res = PyObject_CallNoArgs(getloop);
        Py_DECREF(getloop);
        return res;
    }
    return PyObject_GetAttr(fut, s__loop);
}

/* What the coroutine yielded (result, a new reference that this steals). */
static PyObject *
handle_yield(PyObject *task, PyObject *result)
{
    TFTask *t = TASK(task);
    PyObject *o, *res;
    if (result == task) {
        res = error_soon(task, "Task cannot await on itself: %R", task, NULL);
        Py_DECREF(result);
        return res;
    }
    if (is_known_future(result)) {
        /* the fast path: fields, no lookups by name */
        TFFut *fut = FUT(result);
        if (fut->fut_loop != t->fut_loop) {
            goto different_loop;
        }
        if (!fut->fut_blocking) {
            goto yield_insteadof_yf;
        }
        fut->fut_blocking = 0;
        PyObject *wakeup = PyCFunction_New(&own_wakeup_def, task);
        if (wakeup == NULL) {
            goto fail;
        }
        if (add_callback(result, wakeup, t->task_context) < 0) {
            Py_DECREF(wakeup);
            goto fail;
        }
        if (Py_TYPE(result) == TracedFutureType || Py_TYPE(result) == TracedTaskType) {
            TFExt *e = ext_of(result);
            if (e->fid) {
                record_awaiter(e, task, wakeup); /* what our add_done_callback records */
            }
        }
        Py_DECREF(wakeup);
        Py_XSETREF(t->task_fut_waiter, result); /* steals */
        return cancel_waiter_if_must(task, result);
    }
    if (result == Py_None) {
        /* a bare yield: one iteration of the loop */
        if (step_soon(task, NULL) < 0) {
            goto fail;
        }
        return result;
    }
    /* a Future-compatible object: the generic protocol, by name */
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(result, s_blocking, &o) < 0) {
#else
    if (_PyObject_LookupAttr(result, s_blocking, &o) < 0) {
#endif
        goto fail;
    }
    if (o != NULL && o != Py_None) {
        int blocking = PyObject_IsTrue(o);
        Py_DECREF(o);
        if (blocking < 0) {
            goto fail;
        }
        PyObject *oloop = future_loop(result);
        if (oloop == NULL) {
            goto fail;
        }
        Py_DECREF(oloop); /* compared by identity only */
        if (oloop != t->fut_loop) {
            goto different_loop;
        }
        if (!blocking) {
            goto yield_insteadof_yf;
        }
        if (PyObject_SetAttr(result, s_blocking, Py_False) < 0) {
            goto fail;
        }
        PyObject *wakeup = PyCFunction_New(&own_wakeup_def, task);
        if (wakeup == NULL) {
            goto fail;
        }
        PyObject *add = PyObject_GetAttr(result, s_add_done_callback);
        if (add == NULL) {
            Py_DECREF(wakeup);
            goto fail;
        }
        PyObject *stack[2] = {wakeup, t->task_context};
        PyObject *tmp = PyObject_Vectorcall(add, stack, 1, context_kwnames);
        Py_DECREF(add);
        Py_DECREF(wakeup);
        if (tmp == NULL) {
            goto fail;
        }
        Py_DECREF(tmp);
        Py_XSETREF(t->task_fut_waiter, result); /* steals */
        return cancel_waiter_if_must(task, result);
    }
    Py_XDECREF(o);
    int is_gen = PyObject_IsInstance(result, (PyObject *)&PyGen_Type);
    if (is_gen < 0) {
        goto fail;
    }
    if (is_gen) {
        res = error_soon(task, "yield was used instead of yield from for generator in task %R with %R", task, result);
    }
    else {
        res = error_soon(task, "Task got bad yield: %R", result, NULL);
    }
    Py_DECREF(result);
    return res;

different_loop:
    res = error_soon(task, "Task %R got Future %R attached to a different loop", task, result);
    Py_DECREF(result);
    return res;

yield_insteadof_yf:
    res = error_soon(task, "yield was used instead of yield from in task %R with %R", task, result);
    Py_DECREF(result);
    return res;

fail:
    Py_DECREF(result);
    return NULL;
}

/* task_step_impl: one send (or throw) into the coroutine, and what follows. */
static PyObject *
own_step_impl(PyObject *task, PyObject *exc)
{
    TFTask *t = TASK(task);
    int clear_exc = 0;
    PyObject *result = NULL;
    if (t->fut_state != TF_PENDING) {
        task_ended(task); /* ended outside its step (asyncio.Future.cancel(task)): recorded now at the latest */
        PyErr_Format(exc_InvalidStateError, "_step(): already done: %R %R", task, exc ? exc : Py_None);
        return NULL;
    }
    if (t->task_must_cancel) {
        if (exc != NULL) {
            int is_cancel = PyObject_IsInstance(exc, exc_CancelledError);
            if (is_cancel < 0) {
                return NULL;
            }
            if (!is_cancel) {
                exc = NULL;
            }
        }
        if (exc == NULL) {
            exc = call1(m_make_cancelled_error, task);
            if (exc == NULL) {
                return NULL;
            }
            clear_exc = 1;
        }
        t->task_must_cancel = 0;
    }
    Py_CLEAR(t->task_fut_waiter);
    PyObject *coro = t->task_coro;
    if (coro == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "uninitialized Task object");
        if (clear_exc) {
            Py_DECREF(exc);
        }
        return NULL;
    }
    int status;
    if (exc == NULL) {
        status = PyIter_Send(coro, Py_None, &result);
    }
    else {
        result = PyObject_CallMethodOneArg(coro, s_throw, exc);
        status = result != NULL ? PYGEN_NEXT : (stop_value(&result) == 0 ? PYGEN_RETURN : PYGEN_ERROR);
        if (clear_exc) {
            Py_DECREF(exc);
        }
    }
    if (status == PYGEN_NEXT) {
        return handle_yield(task, result);
    }
    PyObject *res;
    if (status == PYGEN_RETURN) {
        if (t->task_must_cancel) {
            /* cancelled right before the coroutine returned */
            t->task_must_cancel = 0;
            res = call2(m_fut_cancel, task, t->fut_cancel_msg ? t->fut_cancel_msg : Py_None);
        }
        else {
            res = call2(m_set_result, task, result);
        }
        Py_DECREF(result);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
        task_ended(task);
        Py_RETURN_NONE;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(ev, tb);
    }
    if (PyErr_GivenExceptionMatches(et, exc_CancelledError)) {
        /* the coroutine let a CancelledError out: the task is cancelled with it */
        Py_XDECREF(tb);
        Py_DECREF(et);
        Py_XSETREF(t->fut_cancelled_exc, ev); /* steals */
        res = call1(m_fut_cancel, task);
        if (res != NULL) {
            task_ended(task);
        }
        return res;
    }
    res = call2(m_set_exception, task, ev);
    if (res == NULL) {
        Py_DECREF(et);
        Py_XDECREF(tb);
        Py_XDECREF(ev);
        return NULL;
    }
    Py_DECREF(res);
    task_ended(task);
    if (PyErr_GivenExceptionMatches(et, PyExc_KeyboardInterrupt) || PyErr_GivenExceptionMatches(et, PyExc_SystemExit)) {
        PyErr_Restore(et, ev, tb); /* re-raised, out of the loop */
        return NULL;
    }
    Py_DECREF(et);
    Py_XDECREF(tb);
    Py_XDECREF(ev);
    Py_RETURN_NONE;
}

/* task_step: the step between _enter_task and _leave_task */
static PyObject *
own_step_run(PyObject *task, PyObject *exc)
{
    PyObject *loop = Py_NewRef(TASK(task)->fut_loop);
    if (enter_task(loop, task) < 0) {
        Py_DECREF(loop);
        return NULL;
    }
    remember_running(loop, ((TFExt *)((char *)task + task_ext_off))->fid);
    PyObject *res = own_step_impl(task, exc);
    if (res == NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        leave_task(loop, task);
        chain_onto(et, ev, tb);
    }
    else if (leave_task(loop, task) < 0) {
        Py_CLEAR(res);
    }
    Py_DECREF(loop);
    return res;
}

/* task_wakeup: the future the task waited on is done */
static PyObject *
own_wakeup(PyObject *task, PyObject *fut)
{
    if (is_known_future(fut) && FUT(fut)->fut_state == TF_FINISHED && FUT(fut)->fut_exception == NULL) {
        return own_step_run(task, NULL); /* the coroutine reads the result from the future */
    }
    /* failed, cancelled (its CancelledError made by result()), or foreign */
    PyObject *r = is_known_future(fut) ? call1(m_fut_result, fut)
                                       : PyObject_CallMethodNoArgs(fut, s_result_attr);
    if (r != NULL) {
        Py_DECREF(r);
        return own_step_run(task, NULL);
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(ev, tb);
    }
    PyObject *res = own_step_run(task, ev);
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(tb);
    return res;
}

static PyMethodDef own_wakeup_def = {"task_wakeup", (PyCFunction)own_wakeup, METH_O, NULL};

/* task_eager_start (3.12+): the first step, inside __init__, as the loop's
 * current task, in the task's context. */
static int
own_eager_start(PyObject *task)
{
    TFTask *t = TASK(task);
    PyObject *loop = Py_NewRef(t->fut_loop);
    PyObject *prev = swap_current_task(loop, task);
    if (prev == NULL) {
        Py_DECREF(loop);
        return -1;
    }
    PyObject *reg = PyObject_CallOneArg(py_register_eager, task);
    if (reg == NULL) {
        Py_DECREF(prev);
        Py_DECREF(loop);
        return -1;
    }
    Py_DECREF(reg);
    PyObject *ctx = Py_NewRef(t->task_context);
    if (PyContext_Enter(ctx) < 0) {
        Py_DECREF(ctx);
        Py_DECREF(prev);
        Py_DECREF(loop);
        return -1;
    }
    int rc = 0;
    PyObject *et = NULL, *ev = NULL, *tb = NULL;
    PyObject *res = own_step_impl(task, NULL);
    if (res == NULL) {
        PyErr_Fetch(&et, &ev, &tb);
        rc = -1;
    }
    Py_XDECREF(res);
    PyObject *cur = swap_current_task(loop, prev);
    Py_DECREF(prev);
    if (cur == NULL) {
        rc = -1;
        chain_onto(et, ev, tb);
        PyErr_Fetch(&et, &ev, &tb);
    }
    Py_XDECREF(cur);
    PyObject *unreg = PyObject_CallOneArg(py_unregister_eager, task);
    if (unreg == NULL) {
        rc = -1;
        chain_onto(et, ev, tb);
        PyErr_Fetch(&et, &ev, &tb);
    }
    Py_XDECREF(unreg);
    if (PyContext_Exit(ctx) < 0) {
        rc = -1;
        chain_onto(et, ev, tb);
        PyErr_Fetch(&et, &ev, &tb);
    }
    Py_DECREF(ctx);
    if (t->fut_state != TF_PENDING) {
        Py_CLEAR(t->task_coro); /* as asyncio: a task done eagerly lets its coroutine go */
    }
    Py_DECREF(loop);
    if (et != NULL) {
        PyErr_Restore(et, ev, tb);
    }
    return rc;
}

/* "Task-<n>" for the number n (an int), as 3.12's and 3.13's get_name() format
 * an unnamed task's name ("Task-%S"): ASCII written into a new string, none of
 * PyUnicode_FromFormat's machinery. NULL with an exception if n is no
 * non-negative int that fits 64 bits. */
static PyObject *
task_number_name(PyObject *number)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(number);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    char digits[20];
    Py_ssize_t len = 0;
    do {
        digits[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    PyObject *name = PyUnicode_New(5 + len, 127);
    if (name == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(name);
    memcpy(out, "Task-", 5);
    for (Py_ssize_t i = 0; i < len; i++) {
        out[5 + i] = (Py_UCS1)digits[len - 1 - i];
    }
    return name;
}

/* A task's name as get_name() gives it, for its "created" record. On a verified
 * layout, read in place, and an unnamed task's number is formatted here without
 * storing it: asyncio formats it only when asked (3.12+), and recording a task
 * is no reason to. Elsewhere, get_name(). */
static PyObject *
task_name_of(PyObject *task)
{
    if (layout_ok) {
        PyObject *name = TASK(task)->task_name;
        if (name != NULL && PyUnicode_CheckExact(name)) {
            return Py_NewRef(name);
        }
        if (deferred_task_names && name != NULL && PyLong_CheckExact(name)) {
            PyObject *formatted = task_number_name(name);
            if (formatted != NULL) {
                return formatted;
            }
            PyErr_Clear();
        }
    }
    return call1(m_task_get_name, task);
}

/* Do the task's own fields sit where _asyncio_layout.h says, on this Python?
 * NULL if so, else why not. Probes a Future and a Task made on the stand-in loop
 * (which drops the Task's step), and leaves nothing behind. */
static const char *
verify_layout(void)
{
#if !TF_HAVE_LAYOUT
    return "no layout of _asyncio's Task is known for this Python";
#else
    static char why[200];
    if (BaseFuture->tp_basicsize != (Py_ssize_t)sizeof(TFFut) || BaseTask->tp_basicsize != (Py_ssize_t)sizeof(TFTask)) {
        snprintf(why, sizeof why, "_asyncio.Future/Task are %zd/%zd bytes, the known layout %zu/%zu",
                 BaseFuture->tp_basicsize, BaseTask->tp_basicsize, sizeof(TFFut), sizeof(TFTask));
        return why;
    }
    const char *bad = NULL;
    PyObject *f = NULL, *f2 = NULL, *t = NULL, *coro = NULL, *ctx = NULL, *ns = NULL, *code = NULL, *r = NULL;
    PyObject *exc = NULL, *name = NULL, *msg = NULL, *cb[2] = {(PyObject *)&PyBool_Type, (PyObject *)&PyLong_Type};
    ((StandInObject *)stand_in)->debug = 0;
#define CHECK(cond, what)          \
    do {                           \
        if (!(cond)) {             \
            bad = what;            \
            goto done;             \
        }                          \
    } while (0)
#define CALL(expr)                 \
    do {                           \
        Py_XSETREF(r, (expr));     \
        CHECK(r != NULL, #expr);   \
    } while (0)
    ctx = PyContext_CopyCurrent();
    CHECK(ctx != NULL, "copy_context");
    /* a Future */
    f = PyObject_Call((PyObject *)BaseFuture, empty_tuple, stand_in_kwargs);
    CHECK(f != NULL, "Future(loop=...)");
    CHECK(FUT(f)->fut_loop == stand_in && FUT(f)->fut_state == TF_PENDING && FUT(f)->fut_callback0 == NULL &&
              FUT(f)->fut_callbacks == NULL && !FUT(f)->fut_blocking && !FUT(f)->fut_log_tb,
          "a new Future's fields");
    CHECK(PyObject_SetAttr(f, s_blocking, Py_True) == 0 && FUT(f)->fut_blocking && !FUT(f)->fut_log_tb,
          "Future._asyncio_future_blocking");
    CHECK(PyObject_SetAttr(f, s_blocking, Py_False) == 0 && !FUT(f)->fut_blocking, "Future._asyncio_future_blocking");
    for (int i = 0; i < 2; i++) {
        PyObject *args[3] = {f, cb[i], ctx};
        CALL(PyObject_VectorcallMethod(s_add_done_callback, args, 2, context_kwnames));
    }
    CHECK(FUT(f)->fut_callback0 == cb[0] && FUT(f)->fut_context0 == ctx && FUT(f)->fut_callbacks != NULL &&
              PyList_Check(FUT(f)->fut_callbacks) && PyList_GET_SIZE(FUT(f)->fut_callbacks) == 1,
          "Future callbacks");
    CALL(call2(m_set_result, f, (PyObject *)StandInType)); /* its callbacks go to the stand-in */
    CHECK(FUT(f)->fut_state == TF_FINISHED && FUT(f)->fut_result == (PyObject *)StandInType &&
              FUT(f)->fut_exception == NULL && FUT(f)->fut_callback0 == NULL,
          "Future.set_result");
    exc = PyObject_CallNoArgs(PyExc_ValueError);
    f2 = PyObject_Call((PyObject *)BaseFuture, empty_tuple, stand_in_kwargs);
    CHECK(exc != NULL && f2 != NULL, "Future(loop=...)");
    CALL(call2(m_set_exception, f2, exc));
    CHECK(FUT(f2)->fut_state == TF_FINISHED && FUT(f2)->fut_exception == exc && FUT(f2)->fut_log_tb &&
              !FUT(f2)->fut_blocking,
          "Future.set_exception");
    CHECK(PyObject_SetAttr(f2, s_log_traceback, Py_False) == 0 && !FUT(f2)->fut_log_tb, "Future._log_traceback");
    /* a Task */
    Py_CLEAR(asyncio_step_type); /* the stand-in notes what Task.__init__ schedules */
    ns = PyDict_New();
    CHECK(ns != NULL && PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) == 0, "a namespace");
    code = PyRun_String("async def _tracedfuture_probe():\n    pass\n", Py_file_input, ns, ns);
    CHECK(code != NULL, "a coroutine function");
    PyObject *fn = PyDict_GetItemString(ns, "_tracedfuture_probe");
    CHECK(fn != NULL && (coro = PyObject_CallNoArgs(fn)) != NULL, "a coroutine");
    name = PyUnicode_FromString("tracedfuture-probe");
    msg = PyUnicode_FromString("probe");
    PyObject *kw = name && msg ? Py_BuildValue("{sOsOsO}", "loop", stand_in, "name", name, "context", ctx) : NULL;
    PyObject *pos = kw ? PyTuple_Pack(1, coro) : NULL;
    t = pos ? PyObject_Call((PyObject *)BaseTask, pos, kw) : NULL;
    Py_XDECREF(pos);
    Py_XDECREF(kw);
    CHECK(t != NULL, "Task(coro, loop=..., name=..., context=...)");
    TFTask *tt = TASK(t);
    CHECK(tt->fut_loop == stand_in && tt->task_coro == coro && tt->task_name == name && tt->task_context == ctx &&
              tt->fut_state == TF_PENDING && !tt->task_must_cancel && tt->task_log_destroy_pending &&
              tt->task_num_cancels_requested == 0 && tt->task_fut_waiter == NULL && !tt->fut_blocking &&
              !tt->fut_log_tb,
          "a new Task's fields");
    CALL(PyObject_CallMethodOneArg(t, s_cancel, msg));
    CHECK(tt->task_must_cancel && tt->task_num_cancels_requested == 1 && tt->fut_cancel_msg == msg &&
              tt->task_log_destroy_pending && tt->fut_state == TF_PENDING && !tt->fut_log_tb && !tt->fut_blocking,
          "Task.cancel");
    CALL(PyObject_CallMethod(t, "uncancel", NULL)); /* 3.13's also clears must_cancel */
    CHECK(tt->task_num_cancels_requested == 0 && tt->fut_state == TF_PENDING, "Task.uncancel");
    CALL(PyObject_CallMethodOneArg(t, s_cancel, msg));
    CHECK(tt->task_must_cancel && tt->task_num_cancels_requested == 1, "Task.cancel");
    CHECK(PyObject_SetAttrString(t, "_log_destroy_pending", Py_False) == 0 && !tt->task_log_destroy_pending &&
              tt->task_must_cancel,
          "Task._log_destroy_pending");
    CHECK(PyObject_SetAttr(t, s_blocking, Py_True) == 0 && tt->fut_blocking && tt->task_must_cancel &&
              !tt->task_log_destroy_pending,
          "Task._asyncio_future_blocking");
    /* 3.12 and 3.13 keep an unnamed task's number (an int) as its name until
     * get_name() formats "Task-<n>" in its place. Probed on this task with a
     * number of our own: a new unnamed task would take one of the program's. */
    deferred_task_names = 0;
    Py_XSETREF(r, PyLong_FromUnsignedLongLong(4294967297ULL));
    CHECK(r != NULL, "an int");
    PyObject *given_name = tt->task_name;
    tt->task_name = Py_NewRef(r);
    PyObject *formatted = task_number_name(r);
    PyObject *asked = call1(m_task_get_name, t);
    deferred_task_names = formatted != NULL && asked != NULL && PyUnicode_CheckExact(asked) &&
                          tt->task_name == asked && PyUnicode_Compare(formatted, asked) == 0;
    Py_XDECREF(formatted);
    Py_XDECREF(asked);
    PyErr_Clear();
    Py_SETREF(tt->task_name, given_name);
done:
    if (bad != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        snprintf(why, sizeof why, "the probe of _asyncio's layout failed at %s%s", bad, et ? " (it raised)" : "");
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
    }
    if (coro != NULL) {
        PyObject *closed = PyObject_CallMethod(coro, "close", NULL);
        Py_XDECREF(closed);
        PyErr_Clear();
    }
    if (t != NULL) {
        PyObject_SetAttrString(t, "_log_destroy_pending", Py_False);
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_XDECREF(t);
    Py_XDECREF(f);
    Py_XDECREF(f2);
    Py_XDECREF(exc);
    Py_XDECREF(coro);
    Py_XDECREF(code);
    Py_XDECREF(ns);
    Py_XDECREF(ctx);
    Py_XDECREF(name);
    Py_XDECREF(msg);
#undef CHECK
#undef CALL
    return bad ? why : NULL;
#endif
}

/* The stand-in, asyncio's exceptions and eager-task functions, then the probe. */
static int
step_init(PyObject *module, PyObject *asyncio, PyObject *casyncio)
{
    INTERN_OR(s_throw, "throw");
    INTERN_OR(s_cancel, "cancel");
    INTERN_OR(s_blocking, "_asyncio_future_blocking");
    INTERN_OR(s_get_loop, "get_loop");
    INTERN_OR(s_add_done_callback, "add_done_callback");
    INTERN_OR(s_result_attr, "result");
    INTERN_OR(s_is_running, "is_running");
    context_kwnames = PyTuple_Pack(1, s_context);
    exc_CancelledError = PyObject_GetAttrString(asyncio, "CancelledError");
    exc_InvalidStateError = PyObject_GetAttrString(asyncio, "InvalidStateError");
    m_make_cancelled_error = method_of(BaseFuture, "_make_cancelled_error");
    StandInType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &stand_in_spec, NULL);
    stand_in = StandInType ? PyType_GenericAlloc(StandInType, 0) : NULL;
    stand_in_kwargs = stand_in ? Py_BuildValue("{sO}", "loop", stand_in) : NULL;
    if (!context_kwnames || !exc_CancelledError || !exc_InvalidStateError || !m_make_cancelled_error ||
        !stand_in_kwargs) {
        return -1;
    }
    py_register_eager = PyObject_GetAttrString(casyncio, "_register_eager_task"); /* 3.12+ */
    py_unregister_eager = PyObject_GetAttrString(casyncio, "_unregister_eager_task");
    PyErr_Clear();
    const char *why = NULL;
    const char *env = getenv("TRACEDFUTURE_ASYNCIO_STEP");
    if (env != NULL && env[0] != '\0' && strcmp(env, "0") != 0) {
        why = "TRACEDFUTURE_ASYNCIO_STEP is set";
    }
    else if (py_current_tasks == NULL || !PyDict_Check(py_current_tasks)) {
        why = "_asyncio._current_tasks is not a dict on this Python";
    }
    else if (PY_VERSION_HEX >= 0x030C0000 && (py_register_eager == NULL || py_unregister_eager == NULL)) {
        why = "_asyncio has no _register_eager_task";
    }
    else {
        why = verify_layout();
        layout_ok = why == NULL;
    }
    if (why == NULL) {
        /* our TaskStepMethWrapper takes the name of asyncio's (3.12+: "_asyncio.TaskStepMethWrapper") */
        if (asyncio_step_type == NULL) {
            why = "asyncio's Task.__init__ scheduled no step on the stand-in loop";
        }
        else {
            StepType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &step_spec, NULL);
            if (StepType == NULL) {
                return -1;
            }
            const char *names[] = {"__module__", "__name__", "__qualname__"};
            for (int i = 0; i < 3; i++) {
                PyObject *v = PyObject_GetAttrString(asyncio_step_type, names[i]);
                if (v == NULL || PyObject_SetAttrString((PyObject *)StepType, names[i], v) < 0) {
                    Py_XDECREF(v);
                    return -1;
                }
                Py_DECREF(v);
            }
        }
    }
    own_step = why == NULL;
    snprintf(step_reason, sizeof step_reason, "%s", why ? why : "");
    return 0;
}

/* A switch of the core for tests, `name([flag])`: returns what it was, and
 * sets it to flag; turning it on where `refused` says why it cannot be is a
 * RuntimeError saying so. */
static PyObject *
switch_flag(int *flag, const char *name, const char *refused, PyObject *const *args, Py_ssize_t nargs)
{
    int was = *flag;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s([flag])", name);
        return NULL;
    }
    if (nargs == 1) {
        int on = PyObject_IsTrue(args[0]);
        if (on < 0) {
            return NULL;
        }
        if (on && refused != NULL) {
            PyErr_SetString(PyExc_RuntimeError, refused);
            return NULL;
        }
        *flag = on;
    }
    return PyBool_FromLong(was);
}

/* _cfuture._own_step([flag]): whether new TracedTasks step themselves; a flag
 * turns it off (asyncio's step, as when the layout is unknown) or back on
 * where the layout was verified. For tests. */
static PyObject *
mod_own_step(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    char refused[300];
    snprintf(refused, sizeof refused, "TracedTask cannot step itself here: %s", step_reason);
    return switch_flag(&own_step, "_own_step", step_reason[0] != '\0' ? refused : NULL, args, nargs);
}

/* _cfuture._frames_in_place([flag]): whether sites are found walking the
 * frames in place (_frame_layout.h), as they are where the walk agreed with
 * the public one at import; a flag sets it (for tests: False walks through
 * frame objects). */
static int frames_agreed;
static PyObject *
mod_frames_in_place(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return switch_flag(&frames_fast, "_frames_in_place",
                       frames_agreed ? NULL : "frames cannot be walked in place on this Python", args, nargs);
}

/* ------------------------------------------------------------------------ */
/* TracedTask                                                                */

static void
task_done_impl(PyObject *task)
{
    TFExt *e = ext_of(task);
    if (e == NULL || !e->fid || e->ended) {
        return;
    }
    e->ended = 1;
    PyObject *loop = loop_of(task);
    if (loop != NULL) {
        long long tid = running_task_id(loop);
        record_outcome(task, e, tid == e->fid ? 0 : tid); /* in its own step: "by itself" says nothing */
        Py_DECREF(loop);
    }
    live_unlink(e);
}

/* The hidden first done callback of every TracedTask: records how it ended. */
static PyObject *
task_done(PyObject *Py_UNUSED(module), PyObject *task)
{
    task_done_impl(task);
    Py_RETURN_NONE;
}

static int
observe_completion(PyObject *task, int may_be_done)
{
    if (!may_be_done) {
        /* a task just made, not eagerly: pending */
        PyObject *res = call2(m_add_done_callback, task, task_done_fn);
        Py_XDECREF(res);
        return res == NULL ? -1 : 0;
    }
    PyObject *done = PyObject_CallMethodNoArgs(task, s_done);
    if (done == NULL) {
        return -1;
    }
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done) {
        task_done_impl(task); /* an eager task that finished in its first step */
        return 0;
    }
    PyObject *res = call2(m_add_done_callback, task, task_done_fn);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static PyObject *
coro_qualname(PyObject *coro)
{
    PyObject *q = PyCoro_CheckExact(coro) ? base_get(&g_coro_qualname, coro) : PyObject_GetAttr(coro, s_qualname);
    if (q != NULL && PyUnicode_Check(q)) {
        return q;
    }
    Py_XDECREF(q);
    PyErr_Clear();
    return PyObject_GetAttr((PyObject *)Py_TYPE(coro), s_qualname);
}

/* The loop's call_soon is shadowed only once it has a traced task, whose
 * completion callback it must catch (see hooks_call_soon): until then, and so on
 * a loop whose tasks are all sampled out, the loop's own call_soon runs untouched. */
static void
arm_call_soon(HooksObject *h, PyObject *loop)
{
    PyObject *shadow = h->call_soon_on_first_task;
    if (shadow == NULL) {
        return;
    }
    h->call_soon_on_first_task = NULL;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    if (PyObject_SetAttr(loop, s_call_soon, shadow) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
    Py_DECREF(shadow);
}

static void
register_task(PyObject *task, HooksObject *h, PyObject *loop, PyObject *coro, PyObject *name)
{
    TFExt *e = (TFExt *)((char *)task + task_ext_off);
    PyObject *qualname = coro_qualname(coro);
    PyErr_Clear();
    register_new(task, e, h, loop, name, qualname, 1);
    Py_XDECREF(qualname);
    if (!own_step) {
        arm_call_soon(h, loop); /* asyncio's step: its end comes through call_soon */
    }
}

/* A TracedTask just made on loop: "created", when the loop is traced and its
 * ring admits it. */
static void
own_task_created(PyObject *task, PyObject *loop)
{
    HooksObject *h = hooks_of(loop);
    PyObject *coro = TASK(task)->task_coro;
    if (h != NULL && coro != NULL && ring_admit(h->ring)) {
        PyObject *name = task_name_of(task);
        PyErr_Clear();
        register_task(task, h, loop, coro, name);
        Py_XDECREF(name);
    }
}

/* Task.__init__ for a task that steps itself: asyncio's own __init__ on the
 * stand-in loop (see base_task_init), then our step scheduled on the real one,
 * or, for 3.12's eager_start on a running loop, run at once. */
static int
task_init_own(PyObject *self, PyObject *args, PyObject *kwds)
{
    TFExt *e = (TFExt *)((char *)self + task_ext_off);
    PyObject *loop = NULL, *eager = NULL;
    if (kwds != NULL) {
        loop = PyDict_GetItemWithError(kwds, s_loop);
        if (loop == NULL && PyErr_Occurred()) {
            return -1;
        }
#if PY_VERSION_HEX >= 0x030C0000
        eager = PyDict_GetItemWithError(kwds, s_eager_start);
        if (eager == NULL && PyErr_Occurred()) {
            return -1;
        }
#endif
    }
    int is_eager = eager != NULL ? PyObject_IsTrue(eager) : 0;
    if (is_eager < 0) {
        return -1;
    }
    PyObject *real;
    if (loop == NULL || loop == Py_None) {
        /* asyncio's choice of loop, with its warnings and errors: Future.__init__'s */
        if (BaseFuture->tp_init(self, empty_tuple, NULL) < 0) {
            return -1;
        }
        real = Py_NewRef(FUT(self)->fut_loop);
    }
    else {
        real = Py_NewRef(loop);
    }
    PyObject *d = PyObject_CallMethodNoArgs(real, s_get_debug);
    int debug = d != NULL ? PyObject_IsTrue(d) : -1;
    Py_XDECREF(d);
    PyObject *kw = debug < 0 ? NULL : kwds != NULL ? PyDict_Copy(kwds) : PyDict_New();
    if (kw == NULL || PyDict_SetItem(kw, s_loop, stand_in) < 0 || (eager != NULL && PyDict_DelItem(kw, s_eager_start) < 0)) {
        Py_XDECREF(kw);
        Py_DECREF(real);
        return -1;
    }
    int fresh = !e->fid;
    int rc = base_task_init(self, args, kw, real, debug);
    Py_DECREF(kw);
    if (rc == 0 && is_eager) {
        PyObject *running = PyObject_CallMethodNoArgs(real, s_is_running);
        int is_running = running != NULL ? PyObject_IsTrue(running) : -1;
        Py_XDECREF(running);
        if (is_running != 0) {
            if (is_running > 0) {
                if (fresh) {
                    own_task_created(self, real); /* before the step: what it awaits names this task */
                }
                rc = own_eager_start(self);
            }
            Py_DECREF(real);
            return is_running < 0 ? -1 : rc;
        }
    }
    if (rc == 0) {
        rc = step_soon(self, NULL);
    }
    if (rc == 0 && fresh) {
        own_task_created(self, real);
    }
    Py_DECREF(real);
    return rc;
}

static int
task_init_body(PyObject *self, PyObject *args, PyObject *kwds)
{
    if (own_step) {
        return task_init_own(self, args, kwds);
    }
    /* asyncio's step (the layout is unknown): its end seen through a done callback */
    TFExt *e = (TFExt *)((char *)self + task_ext_off);
    PyObject *eager = kwds ? PyDict_GetItemWithError(kwds, s_eager_start) : NULL;
    if (eager == NULL && PyErr_Occurred()) {
        return -1;
    }
    int is_eager = eager != NULL && PyObject_IsTrue(eager) == 1;
    PyObject *coro = PyTuple_GET_SIZE(args) >= 1 ? PyTuple_GET_ITEM(args, 0) : NULL;
    if (coro == NULL && kwds) {
        coro = PyDict_GetItemWithError(kwds, s_coro);
        PyErr_Clear();
    }
    if (!is_eager || e->fid) {
        if (BaseTask->tp_init(self, args, kwds) < 0) {
            return -1;
        }
        if (e->fid) {
            return 0;
        }
        PyObject *loop = loop_of(self);
        HooksObject *h = hooks_of(loop);
        if (h != NULL && coro != NULL && ring_admit(h->ring)) {
            PyObject *name = call1(m_task_get_name, self);
            PyErr_Clear();
            register_task(self, h, loop, coro, name);
            Py_XDECREF(name);
            if (observe_completion(self, 1) < 0) {
                Py_XDECREF(loop);
                return -1;
            }
        }
        Py_XDECREF(loop);
        return 0;
    }
    /* 3.12+ eager start: the first step runs inside __init__, and what it awaits
     * names this task, so the id and "created" must exist before it. */
    PyObject *loop = kwds ? PyDict_GetItemWithError(kwds, s_loop) : NULL;
    PyErr_Clear();
    PyObject *running = NULL;
    if (loop == NULL || loop == Py_None) {
        running = PyObject_CallNoArgs(py_get_running_loop);
        if (running == NULL) {
            PyErr_Clear();
        }
        loop = running;
    }
    HooksObject *h = hooks_of(loop);
    PyObject *name = kwds ? PyDict_GetItemWithError(kwds, s_name) : NULL;
    PyErr_Clear();
    long long fid = 0;
    if (h != NULL && coro != NULL && ring_admit(h->ring)) {
        register_task(self, h, loop, coro, name == Py_None ? NULL : name);
        fid = e->fid;
    }
    Py_XDECREF(running);
    if (BaseTask->tp_init(self, args, kwds) < 0) {
        return -1;
    }
    if (fid) {
        if (name == NULL || name == Py_None) {
            PyObject *given = call1(m_task_get_name, self);
            Old old;
    Rec *r;
            if (given != NULL && (r = begin(e, e->ring, &old, OP_RENAMED, 2, fid)) != NULL) {
                set_opt_int(r, 0, 0);
                set_obj(r, 1, given);
                old_release(&old);
            }
            Py_XDECREF(given);
            PyErr_Clear();
        }
        if (observe_completion(self, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
task_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    int rc = task_init_body(self, args, kwds);
    if (rc == 0) {
        tf_gil_yield_point(); /* called by the program: nothing of ours is half done */
    }
    return rc;
}

static PyObject *
task_get_callbacks(PyObject *self, void *Py_UNUSED(closure))
{
    /* asyncio's repr reads _callbacks: hide the completion observer. */
    PyObject *cbs = base_callbacks(self);
    if (cbs == NULL || !PyList_Check(cbs) || PyList_GET_SIZE(cbs) == 0) {
        return cbs;
    }
    PyObject *first = PyList_GET_ITEM(cbs, 0);
    if (!PyTuple_Check(first) || PyTuple_GET_SIZE(first) < 1 || PyTuple_GET_ITEM(first, 0) != task_done_fn) {
        return cbs;
    }
    Py_ssize_t n = PyList_GET_SIZE(cbs);
    if (n == 1) {
        Py_DECREF(cbs);
        Py_RETURN_NONE;
    }
    PyObject *rest = PyList_GetSlice(cbs, 1, n);
    Py_DECREF(cbs);
    return rest;
}

static PyObject *
task_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *res = call_base(m_task_cancel, self, args, nargs, kwnames);
    if (res != Py_True) {
        return res;
    }
    TFExt *e = ext_of(self);
    if (e != NULL && e->fid) {
        PyObject *msg = nargs >= 1 ? args[0] : (kwnames && PyTuple_GET_SIZE(kwnames) ? args[nargs] : NULL);
        record_cancel(self, e, OP_CANCEL_REQ, msg);
    }
    return res;
}

static PyObject *
task_set_name(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *res = call_base(m_task_set_name, self, args, nargs, kwnames);
    if (res == NULL) {
        return NULL;
    }
    TFExt *e = ext_of(self);
    if (e != NULL && e->fid) {
        PyObject *loop = loop_of(self);
        long long tid = loop ? running_task_id(loop) : 0;
        Py_XDECREF(loop);
        PyObject *name = call1(m_task_get_name, self);
        Old old;
    Rec *r;
        if (name != NULL && (r = begin(e, e->ring, &old, OP_RENAMED, 2, e->fid)) != NULL) {
            set_opt_int(r, 0, tid);
            set_obj(r, 1, name);
            old_release(&old);
        }
        Py_XDECREF(name);
        PyErr_Clear();
    }
    return res;
}

static void
task_finalize(PyObject *self)
{
    TFExt *e = ext_of(self);
    if (e->fid) {
        /* an exception being raised is kept (there is seldom one) */
        PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
        int raised = PyErr_Occurred() != NULL;
        if (raised) {
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        }
        int alive, pending;
        if (layout_ok) { /* what _state answers, from the fields: no getter called, no string compared */
            alive = FUT(self)->fut_loop != NULL; /* _state raises for a future never initialised */
            pending = FUT(self)->fut_state == TF_PENDING;
        }
        else {
            PyObject *state = base_get(&g_state, self);
            alive = state != NULL;
            pending = !alive || !PyUnicode_Check(state) || PyUnicode_Compare(state, s_PENDING) == 0;
            Py_XDECREF(state);
        }
        if (alive) { /* else an eager task whose __init__ failed */
            if (!e->ended && !pending) {
                task_done_impl(self); /* finished, but its loop closed before the callback ran */
            }
            PyObject *state = final_state(self);
            if (state != NULL) {
                record_collected(self, e, state);
                Py_DECREF(state);
            }
        }
        PyErr_Clear();
        if (raised) {
            PyErr_Restore(exc_type, exc_value, exc_tb);
        }
    }
    if (BaseTask->tp_finalize) {
        BaseTask->tp_finalize(self); /* asyncio's "Task was destroyed but it is pending!" */
    }
}

static void
task_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;
    }
    ext_clear((TFExt *)((char *)self + task_ext_off));
    BaseTask->tp_dealloc(self);
#if !BASE_IS_HEAP
    Py_DECREF(tp);
#else
    (void)tp;
#endif
}

static int
task_traverse(PyObject *self, visitproc visit, void *arg)
{
#if !BASE_IS_HEAP
    if (!Py_IS_TYPE(self, TracedTaskType)) { /* as fut_traverse */
        Py_VISIT(Py_TYPE(self));
    }
#endif
    return BaseTask->tp_traverse(self, visit, arg);
}

static int
task_clear(PyObject *self)
{
    return BaseTask->tp_clear(self);
}

static PyMethodDef task_methods[] = {
    {"add_done_callback", (PyCFunction)(void (*)(void))shared_add_done_callback, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's add_done_callback, recorded."},
    {"remove_done_callback", (PyCFunction)(void (*)(void))shared_remove_done_callback, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's remove_done_callback, recorded."},
    {"cancel", (PyCFunction)(void (*)(void))task_cancel, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's cancel, recorded with its msg and canceller."},
    {"set_name", (PyCFunction)(void (*)(void))task_set_name, METH_FASTCALL | METH_KEYWORDS,
     "asyncio's set_name, recorded."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef task_getset[] = {
    {"_callbacks", task_get_callbacks, NULL, "asyncio's _callbacks, without tracedfuture's observer", NULL},
    {"_tf_id", get_tf_id, NULL, "the future_id events give this task, 0 when untraced", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot task_slots[] = {
    {Py_tp_doc, "An asyncio.Task that records its life (and the futures it awaits).\n\n"
                "loop.create_task() and asyncio.create_task() return one on a traced\n"
                "loop. Behaviour, repr, name numbering and errors are asyncio's."},
    {Py_tp_init, task_init},
    {Py_tp_finalize, task_finalize},
    {Py_tp_dealloc, task_dealloc},
    {Py_tp_traverse, task_traverse},
    {Py_tp_clear, task_clear},
    {Py_tp_getset, task_getset},
    {0, NULL},
};

static PyType_Spec task_spec = {
    "tracedfuture._core._cfuture.Task", 0, 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, task_slots,
};

/* ------------------------------------------------------------------------ */
/* LoopHooks methods                                                         */

/* Let go of the loop: a strong reference, or (carried by the class) the
 * borrowed one with its weak reference, and the place in the table. */
static void
hooks_forget_loop(HooksObject *self)
{
    if (self->registered) {
        self->registered = 0;
        carried_remove((PyObject *)self, self->carried_key);
    }
    if (self->carried) {
        self->loop = NULL; /* borrowed */
        self->carried = 0;
    }
    else {
        Py_CLEAR(self->loop);
    }
    Py_CLEAR(self->loop_ref);
    Py_CLEAR(self->carrier_class);
}

/* The callback of loop_ref: the loop is being collected. The weak reference
 * stays (it may be the caller's only one to it), dead. */
static PyObject *
hooks_loop_gone(HooksObject *self, PyObject *Py_UNUSED(ref))
{
    if (self->carried) {
        if (self->registered) {
            self->registered = 0;
            carried_remove((PyObject *)self, self->carried_key);
        }
        self->loop = NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef loop_gone_def = {"_loop_gone", (PyCFunction)hooks_loop_gone, METH_O, NULL};

/* LoopHooks(loop, carried_by=None), carried_by: (cls, create_future,
 * create_task), the class whose Carriers dispatch to these hooks and its own
 * methods (see _seam). */
static int
hooks_carry(HooksObject *self, PyObject *loop, PyObject *carried_by)
{
    PyObject *cls, *create_future, *create_task;
    if (!PyTuple_Check(carried_by) ||
        !PyArg_ParseTuple(carried_by, "O!OO:carried_by", &PyType_Type, &cls, &create_future, &create_task)) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "carried_by must be (cls, create_future, create_task), not %R", carried_by);
        }
        return -1;
    }
    int ok = PyObject_IsInstance(loop, cls);
    int is_base = ok > 0 ? PyObject_IsInstance(loop, base_event_loop) : 0;
    if (ok < 0 || is_base < 0) {
        return -1;
    }
    if (!ok || is_base) {
        PyErr_Format(PyExc_TypeError, "%R cannot be carried by %R: %s", loop, cls,
                     ok ? "asyncio's own loops carry their hooks themselves" : "it is not an instance");
        return -1;
    }
    PyObject *gone = PyCFunction_NewEx(&loop_gone_def, (PyObject *)self, NULL);
    PyObject *ref = gone ? PyWeakref_NewRef(loop, gone) : NULL;
    Py_XDECREF(gone);
    if (ref == NULL) {
        return -1;
    }
    PyObject *kw = Py_BuildValue("{OO}", s_loop, Py_None); /* the loop only while lent */
    if (kw == NULL) {
        Py_DECREF(ref);
        return -1;
    }
    long long key = carried_key_of(loop);
    PyObject *previous = carried_of(loop);
    if (previous != NULL) {
        /* the loop's earlier hooks are its hooks no more */
        ((HooksObject *)previous)->registered = 0;
        carried_remove(previous, key);
    }
    if (fidmap_put(&carried_table, key, self) < 0) {
        Py_DECREF(ref);
        Py_DECREF(kw);
        return -1;
    }
    Py_INCREF(self); /* the table's */
    self->registered = 1;
    self->carried_key = key;
    self->carried = 1;
    self->loop = loop; /* borrowed: loop_ref's callback clears it */
    self->loop_ref = ref;
    self->carrier_class = Py_NewRef(cls);
    self->loop_kwargs = kw;
    Py_XSETREF(self->base_create_future, Py_NewRef(create_future));
    Py_XSETREF(self->base_create_task, Py_NewRef(create_task));
    return 0;
}

static int
hooks_init(HooksObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "carried_by", NULL};
    PyObject *loop, *carried_by = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:LoopHooks", kwlist, &loop, &carried_by)) {
        return -1;
    }
    hooks_forget_loop(self);
    Py_CLEAR(self->base_call_soon);
    Py_CLEAR(self->call_soon_on_first_task);
    Py_CLEAR(self->loop_kwargs);
    Py_XSETREF(self->installations, PyTuple_New(0));
    self->sample_rate = 1.0;
    self->route = 0;
    Py_CLEAR(self->ring);
    self->asyncio_loop = self->plain_checks = self->stock_future = self->stock_task = 0;
    if (carried_by != Py_None) {
        return hooks_carry(self, loop, carried_by);
    }
    self->loop = Py_NewRef(loop);
    Py_XSETREF(self->base_create_future, PyObject_GetAttr(loop, s_create_future));
    Py_XSETREF(self->base_create_task, PyObject_GetAttr(loop, s_create_task));
    if (self->base_create_future == NULL || self->base_create_task == NULL) {
        return -1;
    }
    self->loop_kwargs = Py_BuildValue("{OO}", s_loop, loop); /* interned: found by identity */
    if (self->loop_kwargs == NULL) {
        return -1;
    }
    int is_base = PyObject_IsInstance(loop, base_event_loop);
    if (is_base < 0) {
        return -1;
    }
    self->asyncio_loop = is_base;
    if (is_base) {
        PyObject *cc = PyObject_GetAttr((PyObject *)Py_TYPE(loop), s_check_closed);
        PyObject *gd = PyObject_GetAttr((PyObject *)Py_TYPE(loop), s_get_debug);
        self->plain_checks = cc == base_check_closed && gd == base_get_debug;
        Py_XDECREF(cc);
        Py_XDECREF(gd);
        PyErr_Clear();
    }
    self->stock_task = self->plain_checks && PyMethod_Check(self->base_create_task) &&
                       PyMethod_GET_FUNCTION(self->base_create_task) == base_create_task_fn &&
                       PyMethod_GET_SELF(self->base_create_task) == loop;
    self->stock_future = self->plain_checks && PyMethod_Check(self->base_create_future) &&
                         PyMethod_GET_FUNCTION(self->base_create_future) == base_create_future_fn &&
                         PyMethod_GET_SELF(self->base_create_future) == loop;
    return 0;
}

static int
hooks_traverse(HooksObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (!self->carried) {
        Py_VISIT(self->loop); /* carried by the class: borrowed */
    }
    Py_VISIT(self->loop_ref);
    Py_VISIT(self->carrier_class);
    Py_VISIT(self->capture);
    Py_VISIT(self->installations);
    Py_VISIT(self->base_create_future);
    Py_VISIT(self->base_create_task);
    Py_VISIT(self->base_call_soon);
    Py_VISIT(self->call_soon_on_first_task);
    Py_VISIT(self->loop_kwargs);
    Py_VISIT(self->saved);
    return 0;
}

static int
hooks_clear(HooksObject *self)
{
    hooks_forget_loop(self);
    Py_CLEAR(self->ring);
    Py_CLEAR(self->capture);
    Py_CLEAR(self->installations);
    Py_CLEAR(self->base_create_future);
    Py_CLEAR(self->base_create_task);
    Py_CLEAR(self->base_call_soon);
    Py_CLEAR(self->call_soon_on_first_task);
    Py_CLEAR(self->loop_kwargs);
    Py_CLEAR(self->saved);
    return 0;
}

static void
hooks_dealloc(HooksObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    hooks_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The hooks' loop (borrowed), or NULL with RuntimeError once a loop carried
 * by its class is gone. */
static PyObject *
hooks_loop(HooksObject *self)
{
    if (self->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "these LoopHooks have no loop: it was collected");
    }
    return self->loop;
}

/* own(*args, **kwargs), the loop's own method the hooks stand in for: bound to
 * the loop, or (carried by the class) the class's, called with the loop first. */
static PyObject *
call_own(HooksObject *self, PyObject *own, PyObject *loop, PyObject *const *args, Py_ssize_t nargs,
         PyObject *kwnames)
{
    if (!self->carried) {
        return PyObject_Vectorcall(own, args, (size_t)nargs, kwnames);
    }
    PyObject *small[8];
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **stack = total < 8 ? small : PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    stack[0] = loop;
    if (total) {
        memcpy(stack + 1, args, (size_t)total * sizeof(PyObject *));
    }
    PyObject *res = PyObject_Vectorcall(own, stack, (size_t)(nargs + 1), kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return res;
}

static PyObject *
hooks_bind(HooksObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "bind() takes (ring, route, sample_rate, capture, capture_values), %zd given", nargs);
        return NULL;
    }
    PyObject *ring = args[0];
    if (ring != Py_None && !PyObject_TypeCheck(ring, RingType)) {
        PyErr_Format(PyExc_TypeError, "ring must be a tracedfuture._core._cfuture.Ring or None, not %R", ring);
        return NULL;
    }
    long long route = PyLong_AsLongLong(args[1]);
    if (route == -1 && PyErr_Occurred()) {
        return NULL;
    }
    double rate = PyFloat_AsDouble(args[2]);
    if (rate == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(rate >= 0.0 && rate <= 1.0)) {
        PyErr_Format(PyExc_ValueError, "sample_rate must be between 0.0 and 1.0, not %R", args[2]);
        return NULL;
    }
    int values = PyObject_IsTrue(args[4]);
    if (values < 0) {
        return NULL;
    }
    Py_XSETREF(self->ring, ring == Py_None ? NULL : (RingObject *)Py_NewRef(ring));
    self->route = route;
    self->sample_rate = rate;
    Py_XSETREF(self->capture, args[3] == Py_None ? NULL : Py_NewRef(args[3]));
    self->capture_values = values;
    Py_RETURN_NONE;
}

static int
loop_flag(PyObject *loop, PyObject *attr)
{
    PyObject *v = PyObject_GetAttr(loop, attr);
    if (v == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

static int
loop_debug(HooksObject *h, PyObject *loop)
{
    if (h->plain_checks) {
        return loop_flag(loop, s_debug);
    }
    PyObject *v = PyObject_CallMethodNoArgs(loop, s_get_debug);
    if (v == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* A future that head sampling leaves out: exactly what asyncio's create_future
 * makes, futures.Future(loop=self). On a loop whose create_future is asyncio's
 * own (BaseEventLoop.create_future, 3.11-3.13: that one line) and that is not in
 * debug mode, it is built here, without entering a Python frame for that line;
 * otherwise the loop's own create_future is called (in debug mode, so that the
 * future's _source_traceback starts in asyncio's frame, as untraced). */
static PyObject *
untraced_future(HooksObject *self, PyObject *loop)
{
    if (self->stock_future) {
        PyObject *cls = PyObject_GetAttr(futures_module, s_Future); /* what that line reads */
        int exact = cls == (PyObject *)BaseFuture;
        Py_XDECREF(cls);
        int debug = exact ? loop_flag(loop, s_debug) : 1;
        if (debug == 0) {
            return PyObject_Call((PyObject *)BaseFuture, empty_tuple, self->loop_kwargs);
        }
        PyErr_Clear();
    }
    return call_own(self, self->base_create_future, loop, NULL, 0, NULL);
}

/* {"loop": loop}, the hooks' own (borrowed). Carried by the class, which must
 * not keep the loop alive, it holds the loop only while lent (where the Future
 * layout is unknown: else base_future_init, cheaper than a dict's round trip):
 * return_loop_kwargs() puts None back. Future.__init__ takes its own reference
 * to the loop before it runs any Python code. */
static PyObject *
lend_loop_kwargs(HooksObject *self, PyObject *loop)
{
    if (self->carried && PyDict_SetItem(self->loop_kwargs, s_loop, loop) < 0) {
        return NULL;
    }
    return self->loop_kwargs;
}

static void
return_loop_kwargs(HooksObject *self)
{
    if (self->carried) {
        PyObject *exc_type, *exc_value, *exc_tb;
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        if (PyDict_SetItem(self->loop_kwargs, s_loop, Py_None) < 0) {
            PyErr_Clear(); /* replacing a key's value allocates nothing */
        }
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
}

/* Whether a new future or task of the loop is traced: not when it records
 * nothing, when head sampling leaves it out, or when its ring refuses it
 * (full, or held while every exporter's queue is full). Else it is exactly
 * the loop's own, as if untraced. */
static inline int
admitted(HooksObject *self)
{
    RingObject *ring = self->ring;
    double rate = self->sample_rate;
    return ring != NULL && (rate >= 1.0 || (rate > 0.0 && random_unit() < rate)) && ring_admit(ring);
}

/* A traced future, admitted. */
static PyObject *
traced_future(HooksObject *self, PyObject *loop)
{
    /* Future.__init__ asks the loop's get_debug(), to keep a _source_traceback
     * in debug mode; in debug mode, asyncio's own create_future makes an
     * asyncio loop's future, so that "created at" is its frame. Where asyncio's
     * layout is known, the flag is asked here, once, and a future of a loop not
     * in debug mode is made without a call of __init__ and its keywords: on a
     * new (zeroed) future, __init__ sets the loop and asks, nothing else. */
    int direct = layout_ok && (self->asyncio_loop || self->carried);
    int debug = 0;
    if (direct || self->asyncio_loop) {
        debug = loop_debug(self, loop);
        if (debug < 0) {
            return NULL;
        }
        if (debug && self->asyncio_loop) {
            return PyObject_CallOneArg(asyncio_create_future, loop);
        }
    }
    PyObject *fut = TracedFutureType->tp_alloc(TracedFutureType, 0);
    if (fut == NULL) {
        return NULL;
    }
    int rc = 0;
    if (direct && !debug) {
        FUT(fut)->fut_loop = Py_NewRef(loop);
    }
    else if (direct) {
        rc = base_future_init(fut, loop, debug); /* a carried loop's: the stand-in answers get_debug() */
    }
    else {
        PyObject *kw = lend_loop_kwargs(self, loop);
        rc = kw ? BaseFuture->tp_init(fut, empty_tuple, kw) : -1;
        return_loop_kwargs(self);
    }
    if (rc < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    register_new(fut, (TFExt *)((char *)fut + fut_ext_off), self, loop, NULL, NULL, 0);
    tf_gil_yield_point(); /* last: ring and loop are borrowed */
    return fut;
}

static PyObject *
create_future_on(HooksObject *self, PyObject *loop)
{
    if (admitted(self)) {
        return traced_future(self, loop);
    }
    int recording = self->ring != NULL; /* read first: the call may run any code */
    PyObject *fut = untraced_future(self, loop);
    if (fut != NULL && recording) {
        tf_gil_yield_point(); /* last (loop is borrowed): a held ring's drain needs its turn most */
    }
    return fut;
}

static PyObject *
hooks_create_future(HooksObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *loop = hooks_loop(self);
    return loop ? create_future_on(self, loop) : NULL;
}

/* Drop the leading traceback entries of tracedfuture's own Python helpers from
 * the exception being raised (_frames.hide_own_frames, on this rare path): the
 * user sees asyncio's frames only. */
static void
hide_own_frames(void)
{
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyErr_NormalizeException(&exc_type, &exc_value, &exc_tb);
    if (exc_value == NULL) {
        PyErr_Restore(exc_type, exc_value, exc_tb);
        return;
    }
    if (exc_tb != NULL) {
        PyException_SetTraceback(exc_value, exc_tb);
    }
    PyObject *res = PyObject_CallOneArg(py_hide_own_frames, exc_value);
    if (res == NULL) {
        PyErr_Clear(); /* keep the traceback as it was */
    }
    else {
        Py_DECREF(res);
        Py_XSETREF(exc_tb, PyException_GetTraceback(exc_value));
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

/* fn(loop, *args, **kwargs), from a vectorcall's arguments. */
static PyObject *
call_with(PyObject *fn, PyObject *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int hide)
{
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **all = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
    if (all == NULL) {
        return PyErr_NoMemory();
    }
    all[0] = loop;
    for (Py_ssize_t i = 0; i < total; i++) {
        all[i + 1] = args[i];
    }
    PyObject *res = PyObject_Vectorcall(fn, all, (size_t)(nargs + 1), kwnames);
    PyMem_Free(all);
    if (res == NULL && hide) {
        hide_own_frames();
    }
    return res;
}

enum { KEY_OTHER, KEY_CORO, KEY_NAME, KEY_CONTEXT };

/* Which of create_task's keywords a call's keyword (a str of kwnames) is:
 * usually the same interned string, found without comparing any (3.13's
 * asyncio.create_task passes name= and context= to every loop.create_task). */
static int
task_keyword(PyObject *key)
{
    if (key == s_name) {
        return KEY_NAME;
    }
    if (key == s_context) {
        return KEY_CONTEXT;
    }
    if (key == s_coro) {
        return KEY_CORO;
    }
    return PyUnicode_Compare(key, s_name) == 0      ? KEY_NAME
           : PyUnicode_Compare(key, s_context) == 0 ? KEY_CONTEXT
           : PyUnicode_Compare(key, s_coro) == 0    ? KEY_CORO
                                                    : KEY_OTHER;
}

/* Whether create_task's arguments are (coro, name=..., context=...) with a
 * coroutine, as new_task takes them: name and context are set (borrowed) when
 * given. */
static int
coro_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **name, PyObject **context)
{
    if (nargs != 1 || !PyCoro_CheckExact(args[0])) {
        return 0;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        int key = task_keyword(PyTuple_GET_ITEM(kwnames, i));
        if (key == KEY_NAME) {
            *name = args[nargs + i];
        }
        else if (key == KEY_CONTEXT) {
            *context = args[nargs + i];
        }
        else {
            return 0;
        }
    }
    return 1;
}

/* create_task(coro, name=..., context=...) with a coroutine, on a loop that is
 * open, not in debug mode and has no task factory: the case that asyncio's own
 * create_task serves with Task(coro, loop=self, name=name, context=context)
 * alone. 1 and *name, *context (borrowed, may be NULL) if so. */
static int
plain_create_task(HooksObject *self, PyObject *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  PyObject **name, PyObject **context)
{
    *name = *context = NULL;
    if (!self->plain_checks || !coro_call(args, nargs, kwnames, name, context)) {
        return 0;
    }
    PyObject *factory = PyObject_GetAttr(loop, s_task_factory);
    int has_factory = factory == NULL || factory != Py_None;
    Py_XDECREF(factory);
    int closed = has_factory ? 1 : loop_flag(loop, s_closed);
    int debug = closed ? 1 : loop_debug(self, loop);
    if (has_factory || closed < 0 || debug < 0) {
        PyErr_Clear(); /* asyncio's own code says what is wrong */
        return 0;
    }
    return !closed && !debug;
}

/* {"loop": loop} with name and context added when given: a new reference. */
static PyObject *
task_kwargs(PyObject *loop_kwargs, PyObject *name, PyObject *context)
{
    if ((name == NULL || name == Py_None) && (context == NULL || context == Py_None)) {
        return Py_NewRef(loop_kwargs);
    }
    PyObject *kw = PyDict_Copy(loop_kwargs);
    if (kw != NULL && ((name != NULL && name != Py_None && PyDict_SetItem(kw, s_name, name) < 0) ||
                       (context != NULL && context != Py_None && PyDict_SetItem(kw, s_context, context) < 0))) {
        Py_CLEAR(kw);
    }
    return kw;
}

/* A task that head sampling leaves out: exactly what asyncio's create_task
 * makes. Where that is Task(coro, loop=self, ...) alone (plain_create_task) and
 * asyncio.tasks.Task is asyncio's own, it is built here, without entering a
 * Python frame for asyncio's create_task; otherwise the loop's own create_task
 * is called. */
static PyObject *
untraced_task(HooksObject *self, PyObject *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *name, *context;
    if (self->stock_task && plain_create_task(self, loop, args, nargs, kwnames, &name, &context)) {
        PyObject *cls = PyObject_GetAttr(tasks_module, s_Task); /* what asyncio's create_task reads */
        int exact = cls == (PyObject *)BaseTask;
        Py_XDECREF(cls);
        PyErr_Clear();
        if (exact) {
            PyObject *kw = task_kwargs(self->loop_kwargs, name, context);
            PyObject *pos = kw ? PyTuple_Pack(1, args[0]) : NULL;
            PyObject *task = pos ? PyObject_Call((PyObject *)BaseTask, pos, kw) : NULL;
            Py_XDECREF(pos);
            Py_XDECREF(kw);
            return task;
        }
    }
    return call_own(self, self->base_create_task, loop, args, nargs, kwnames);
}

/* create_task(coro, name=..., context=...) on an open loop, built here: a
 * TracedTask made and initialised as asyncio's Task.__init__ would be by the
 * loop's own create_task (debug: the loop's get_debug(), for the task's source
 * traceback), scheduled, and recorded when the ring admits it. own: the task
 * steps itself (base_task_init on the stand-in loop). */
static PyObject *
new_task(HooksObject *self, PyObject *loop, PyObject *coro, PyObject *name, PyObject *context, int debug, int own)
{
    RingObject *ring = self->ring;
    PyObject *kw = own ? stand_in_kwargs : self->loop_kwargs;
    int own_kw = 0;
    if ((name != NULL && name != Py_None) || (context != NULL && context != Py_None)) {
        kw = PyDict_Copy(kw);
        if (kw == NULL) {
            return NULL;
        }
        own_kw = 1;
        if ((name != NULL && name != Py_None && PyDict_SetItem(kw, s_name, name) < 0) ||
            (context != NULL && context != Py_None && PyDict_SetItem(kw, s_context, context) < 0)) {
            Py_DECREF(kw);
            return NULL;
        }
    }
    PyObject *pos = PyTuple_Pack(1, coro);
    PyObject *task = pos ? TracedTaskType->tp_alloc(TracedTaskType, 0) : NULL;
    if (task == NULL ||
        (own ? base_task_init(task, pos, kw, loop, debug) < 0 || step_soon(task, NULL) < 0 : BaseTask->tp_init(task, pos, kw) < 0)) {
        Py_XDECREF(task);
        Py_XDECREF(pos);
        if (own_kw) {
            Py_DECREF(kw);
        }
        return NULL;
    }
    Py_DECREF(pos);
    if (own_kw) {
        Py_DECREF(kw);
    }
    if (ring_admit(ring)) {
        PyObject *given = task_name_of(task);
        PyErr_Clear();
        register_task(task, self, loop, coro, given);
        Py_XDECREF(given);
        if (!own && observe_completion(task, 0) < 0) {
            Py_DECREF(task);
            return NULL;
        }
    }
    tf_gil_yield_point(); /* last: ring and loop are borrowed */
    return task;
}

/* A traced task, admitted. */
static PyObject *
traced_task(HooksObject *self, PyObject *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (!self->asyncio_loop) {
        /* A loop that is not asyncio's own (uvloop): its checks, then a TracedTask. */
        PyObject *factory = PyObject_CallMethodNoArgs(loop, s_get_task_factory);
        if (factory == NULL) {
            return NULL;
        }
        int has_factory = factory != Py_None;
        Py_DECREF(factory);
        if (has_factory) {
            return call_own(self, self->base_create_task, loop, args, nargs, kwnames);
        }
        PyObject *closed = PyObject_CallMethodNoArgs(loop, s_is_closed);
        if (closed == NULL) {
            return NULL;
        }
        int is_closed = PyObject_IsTrue(closed);
        Py_DECREF(closed);
        if (is_closed) {
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
            return NULL;
        }
        /* create_task(coro, name=..., context=...), as the loop's own would
         * make it (uvloop: aio_Task(coro, loop=self, context=context), named),
         * built without a call by keywords: anything else, by TracedTask(...). */
        PyObject *name = NULL, *context = NULL;
        int fast = own_step && coro_call(args, nargs, kwnames, &name, &context);
        if (fast) {
            int debug = loop_debug(self, loop);
            return debug < 0 ? NULL : new_task(self, loop, args[0], name, context, debug, 1);
        }
        PyObject *kw = PyDict_New();
        if (kw == NULL || PyDict_SetItem(kw, s_loop, loop) < 0) {
            Py_XDECREF(kw);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                Py_DECREF(kw);
                return NULL;
            }
        }
        PyObject *pos = PyTuple_New(nargs);
        if (pos == NULL) {
            Py_DECREF(kw);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(pos, i, Py_NewRef(args[i]));
        }
        PyObject *task = PyObject_Call((PyObject *)TracedTaskType, pos, kw);
        Py_DECREF(pos);
        Py_DECREF(kw);
        return task;
    }
    PyObject *factory = PyObject_GetAttr(loop, s_task_factory);
    if (factory == NULL) {
        return NULL;
    }
    int has_factory = factory != Py_None;
    int is_eager = eager_factory != NULL && factory == eager_factory;
    Py_DECREF(factory);
    if (has_factory) {
        if (is_eager && asyncio_eager_create_task != NULL) {
            return call_with(asyncio_eager_create_task, loop, args, nargs, kwnames, 1);
        }
        return call_with(asyncio_create_task, loop, args, nargs, kwnames, 0);
    }
    /* The fast path takes create_task(coro, name=..., context=...) with a
     * coroutine on a loop that is open and not in debug mode; anything else
     * runs asyncio's own create_task code, with its own checks and errors. */
    PyObject *name = NULL, *context = NULL;
    int fast = self->plain_checks && coro_call(args, nargs, kwnames, &name, &context);
    if (fast) {
        int closed = loop_flag(loop, s_closed);
        int debug = closed ? 1 : loop_debug(self, loop);
        if (closed < 0 || debug < 0) {
            PyErr_Clear();
            fast = 0;
        }
        else if (closed || debug) {
            fast = 0;
        }
    }
    if (!fast) {
        return call_with(asyncio_create_task, loop, args, nargs, kwnames, 0);
    }
    return new_task(self, loop, args[0], name, context, 0, own_step);
}

static PyObject *
create_task_on(HooksObject *self, PyObject *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!admitted(self)) {
        int recording = self->ring != NULL;
        PyObject *task = untraced_task(self, loop, args, nargs, kwnames);
        if (task != NULL && recording) {
            tf_gil_yield_point(); /* as create_future_on's */
        }
        return task;
    }
    return traced_task(self, loop, args, nargs, kwnames);
}

static PyObject *
hooks_create_task(HooksObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *loop = hooks_loop(self);
    return loop ? create_task_on(self, loop, args, PyVectorcall_NARGS(nargsf), kwnames) : NULL;
}

static PyObject *
hooks_captured(HooksObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res = captured(self);
    return res ? res : Py_NewRef(Py_None);
}

static PyObject *
hooks_get_ring(HooksObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->ring ? (PyObject *)self->ring : Py_None);
}

static PyObject *
hooks_get_capture(HooksObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->capture ? self->capture : Py_None);
}

static PyObject *
hooks_get_values(HooksObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->capture_values);
}

/* The traced loop's call_soon: the loop's own, called as it is, except for the
 * completion callback of a TracedTask, which asyncio schedules as the task ends
 * (args: the callback, the task; the keyword context). Recording the end at that
 * moment, instead of queueing a Handle that would hold the finished task until the
 * next iteration, keeps its lifetime the program's own: asyncio logs "Task
 * exception was never retrieved" when the program drops it, as without tracing.
 * "The loop's own" is base_call_soon when _loops found an attribute the program
 * had set on the loop, else type(loop).call_soon(loop, ...), looked up at each
 * call as loop.call_soon() would be (a class patched later is obeyed). */
static PyObject *
hooks_call_soon(HooksObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 2 && args[0] == task_done_fn) {
        task_done_impl(args[1]);
        Py_RETURN_NONE;
    }
    if (self->base_call_soon != NULL) {
        return PyObject_Vectorcall(self->base_call_soon, args, (size_t)nargs, kwnames);
    }
    PyObject *loop = hooks_loop(self);
    if (loop == NULL) {
        return NULL;
    }
    PyTypeObject *tp = Py_TYPE(loop);
    PyObject *fn = _PyType_Lookup(tp, s_call_soon); /* borrowed */
    if (fn != NULL && PyType_HasFeature(Py_TYPE(fn), Py_TPFLAGS_METHOD_DESCRIPTOR)) {
        /* a function (asyncio's), a method descriptor or a Cython function
         * (uvloop's): what type(loop).call_soon gives, without the lookup */
        Py_INCREF(fn);
    }
    else if ((fn = PyObject_GetAttr((PyObject *)tp, s_call_soon)) == NULL) {
        return NULL;
    }
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8];
    PyObject **stack = total < 8 ? small : PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
    if (stack == NULL) {
        Py_DECREF(fn);
        return PyErr_NoMemory();
    }
    Py_INCREF(loop);
    stack[0] = loop;
    memcpy(stack + 1, args, (size_t)total * sizeof(PyObject *));
    PyObject *res = PyObject_Vectorcall(fn, stack, (size_t)(nargs + 1), kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    Py_DECREF(loop);
    Py_DECREF(fn);
    return res;
}

static PyObject *
hooks_detach(HooksObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->registered) {
        self->registered = 0;
        carried_remove((PyObject *)self, self->carried_key);
    }
    Py_RETURN_NONE;
}

static PyObject *
hooks_get_carrier_class(HooksObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->carrier_class && self->registered ? self->carrier_class : Py_None);
}

static int
hooks_set_base_call_soon(HooksObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    Py_XSETREF(self->base_call_soon, value == Py_None ? NULL : Py_XNewRef(value));
    return 0;
}

static PyObject *
hooks_get_base_call_soon(HooksObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->base_call_soon ? self->base_call_soon : Py_None);
}

static int
hooks_set_call_soon_on_first_task(HooksObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    Py_XSETREF(self->call_soon_on_first_task, value == NULL || value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyObject *
hooks_get_call_soon_on_first_task(HooksObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->call_soon_on_first_task ? self->call_soon_on_first_task : Py_None);
}

static PyMethodDef hooks_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))hooks_bind, METH_FASTCALL,
     "bind(ring, route, sample_rate, capture, capture_values): point the loop at a ring (None: record "
     "nothing) and its settings; futures made before keep theirs."},
    {"create_future", (PyCFunction)hooks_create_future, METH_NOARGS, "The traced loop's create_future()."},
    {"create_task", (PyCFunction)(void (*)(void))hooks_create_task, METH_FASTCALL | METH_KEYWORDS,
     "The traced loop's create_task(coro, **kwargs): asyncio's own, building a TracedTask."},
    {"call_soon", (PyCFunction)(void (*)(void))hooks_call_soon, METH_FASTCALL | METH_KEYWORDS,
     "The traced loop's call_soon(callback, *args, context=None): the loop's own, except that a TracedTask's\n"
     "completion is recorded when it is scheduled, not queued."},
    {"captured", (PyCFunction)hooks_captured, METH_NOARGS, "What capture() returns now, None if it raises."},
    {"detach", (PyCFunction)hooks_detach, METH_NOARGS,
     "Hooks carried by the loop's class: no longer the loop's (carried_hooks(loop) is None)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef hooks_members[] = {
    {"loop", T_OBJECT, offsetof(HooksObject, loop), READONLY, NULL},
    {"route", T_LONGLONG, offsetof(HooksObject, route), READONLY, NULL},
    {"sample_rate", T_DOUBLE, offsetof(HooksObject, sample_rate), READONLY, NULL},
    {"installations", T_OBJECT, offsetof(HooksObject, installations), 0, "kept for _install's bookkeeping"},
    {"saved", T_OBJECT, offsetof(HooksObject, saved), 0, "what _loops restores when the loop is no longer traced"},
    {"base_create_future", T_OBJECT, offsetof(HooksObject, base_create_future), READONLY, NULL},
    {"base_create_task", T_OBJECT, offsetof(HooksObject, base_create_task), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef hooks_getset[] = {
    {"ring", (getter)hooks_get_ring, NULL, NULL, NULL},
    {"capture", (getter)hooks_get_capture, NULL, NULL, NULL},
    {"capture_values", (getter)hooks_get_values, NULL, NULL, NULL},
    {"base_call_soon", (getter)hooks_get_base_call_soon, (setter)hooks_set_base_call_soon,
     "the call_soon the program set on the loop itself, else None (the class's)", NULL},
    {"call_soon_on_first_task", (getter)hooks_get_call_soon_on_first_task, (setter)hooks_set_call_soon_on_first_task,
     "what the hooks set as the loop's call_soon when they make its first traced task, else None", NULL},
    {"carrier_class", (getter)hooks_get_carrier_class, NULL,
     "the class whose Carriers dispatch to these hooks, else None (carried by the loop, or detached)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot hooks_slots[] = {
    {Py_tp_doc, "LoopHooks(loop, carried_by=None): the per-loop create_future and create_task of a traced loop, "
                "configured only through bind(); carried_by=(cls, create_future, create_task): carried by the "
                "loop's class (Carrier), holding the loop weakly."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, hooks_init},
    {Py_tp_dealloc, hooks_dealloc},
    {Py_tp_traverse, hooks_traverse},
    {Py_tp_clear, hooks_clear},
    {Py_tp_methods, hooks_methods},
    {Py_tp_members, hooks_members},
    {Py_tp_getset, hooks_getset},
    {0, NULL},
};

static PyType_Spec hooks_spec = {
    "tracedfuture._core._cfuture.LoopHooks", sizeof(HooksObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    hooks_slots,
};

/* ------------------------------------------------------------------------ */
/* Carrier: a method of a loop class that dispatches to the loop's hooks     */

enum { CARRY_OTHER, CARRY_FUTURE, CARRY_TASK };

typedef struct {
    PyObject_HEAD
    PyObject *cls;    /* the class it is set on */
    PyObject *name;
    PyObject *own;    /* the class's own method: own(loop, *args, **kwargs) */
    PyObject *traced; /* NULL: the hooks' own create_future / create_task; else traced(own, loop, ...) */
    int kind;
    vectorcallfunc vectorcall;
} CarrierObject;

static PyTypeObject *CarrierType;

/* traced(own, loop, *args, **kwargs) */
static Py_NO_INLINE PyObject *
carrier_call_traced(CarrierObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *small[8];
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **stack = total < 8 ? small : PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    stack[0] = self->own;
    memcpy(stack + 1, args, (size_t)total * sizeof(PyObject *));
    PyObject *res = PyObject_Vectorcall(self->traced, stack, (size_t)(nargs + 1), kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return res;
}

/* create_task(coro, *, name=None, context=None), the coroutine given by
 * position or as coro=: what the hooks take. Anything else is the class's own
 * method's to take or refuse, in its own words. */
static int
hooks_take_task(Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t given = nargs - 1;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        int key = task_keyword(PyTuple_GET_ITEM(kwnames, i));
        if (key == KEY_CORO) {
            given++;
        }
        else if (key == KEY_OTHER) {
            return 0;
        }
    }
    return given == 1;
}

/* A traced future or task, admitted: out of carrier_vectorcall's way. */
static Py_NO_INLINE PyObject *
carrier_traced_new(CarrierObject *self, HooksObject *h, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (self->kind == CARRY_FUTURE) {
        return traced_future(h, args[0]);
    }
    return traced_task(h, args[0], args + 1, nargs - 1, kwnames);
}

/* callable(*args), called through its vectorcall slot as the interpreter
 * would: the caller of the Carrier checks the result. */
static inline PyObject *
vectorcall_direct(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    vectorcallfunc func = PyVectorcall_Function(callable);
    if (func == NULL) {
        return PyObject_Vectorcall(callable, args, nargsf, kwnames);
    }
    return func(callable, args, nargsf, kwnames);
}

/* loop.name(*args, **kwargs): args[0] is the loop. A method descriptor: the
 * program's loop.create_future() keeps CPython's specialization and calls
 * this with the loop first, which has no frame of its own. A future or task
 * left out is made by the class's own method, called with the program's
 * arguments as they came. */
static PyObject *
carrier_vectorcall(CarrierObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    HooksObject *h = nargs ? (HooksObject *)carried_of(args[0]) : NULL;
    PyObject *own = self->own;
    /* else untraced, or traced through a subclass's own carriers (a super() call) */
    if (h != NULL && h->carrier_class == self->cls) {
        if (self->traced != NULL) {
            return carrier_call_traced(self, args, nargs, kwnames);
        }
        if (self->kind == CARRY_FUTURE ? nargs == 1 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0)
                                       : hooks_take_task(nargs, kwnames)) {
            if (admitted(h)) {
                return carrier_traced_new(self, h, args, nargs, kwnames);
            }
            own = self->kind == CARRY_FUTURE ? h->base_create_future : h->base_create_task;
        }
    }
    return vectorcall_direct(own, args, nargsf, kwnames);
}

static PyObject *
carrier_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cls", "name", "own", "traced", NULL};
    PyObject *cls, *name, *own, *traced;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!UOO:Carrier", kwlist, &PyType_Type, &cls, &name, &own, &traced)) {
        return NULL;
    }
    int kind = PyUnicode_CompareWithASCIIString(name, "create_future") == 0 ? CARRY_FUTURE
               : PyUnicode_CompareWithASCIIString(name, "create_task") == 0 ? CARRY_TASK
                                                                            : CARRY_OTHER;
    if (!PyCallable_Check(own) || (traced != Py_None && !PyCallable_Check(traced))) {
        PyErr_SetString(PyExc_TypeError, "Carrier: own must be callable, and traced callable or None");
        return NULL;
    }
    if (traced == Py_None && kind == CARRY_OTHER) {
        PyErr_Format(PyExc_ValueError, "Carrier: the hooks carry create_future and create_task only, not %R", name);
        return NULL;
    }
    CarrierObject *self = (CarrierObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->cls = Py_NewRef(cls);
    self->name = Py_NewRef(name);
    self->own = Py_NewRef(own);
    self->traced = traced == Py_None ? NULL : Py_NewRef(traced);
    self->kind = kind;
    self->vectorcall = (vectorcallfunc)carrier_vectorcall;
    return (PyObject *)self;
}

static int
carrier_traverse(CarrierObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->cls);
    Py_VISIT(self->name);
    Py_VISIT(self->own);
    Py_VISIT(self->traced);
    return 0;
}

static int
carrier_clear(CarrierObject *self)
{
    Py_CLEAR(self->cls);
    Py_CLEAR(self->name);
    Py_CLEAR(self->own);
    Py_CLEAR(self->traced);
    return 0;
}

static void
carrier_dealloc(CarrierObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    carrier_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
carrier_descr_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* What the program reads of it is the class's own method's: its repr, name,
 * qualified name, module and doc (a bound one's repr reads "<bound method
 * Loop.create_future of ...>" as untraced), and __wrapped__ for inspect. */
static PyObject *
carrier_repr(CarrierObject *self)
{
    return PyObject_Repr(self->own);
}

static PyObject *
carrier_own_attr(CarrierObject *self, void *closure)
{
    return PyObject_GetAttrString(self->own, (const char *)closure);
}

static PyObject *
carrier_get_wrapped(CarrierObject *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->own);
}

static PyMemberDef carrier_members[] = {
    {"cls", T_OBJECT, offsetof(CarrierObject, cls), READONLY, NULL},
    {"own", T_OBJECT, offsetof(CarrierObject, own), READONLY, NULL},
    {"traced", T_OBJECT, offsetof(CarrierObject, traced), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(CarrierObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef carrier_getset[] = {
    {"__name__", (getter)carrier_own_attr, NULL, NULL, "__name__"},
    {"__qualname__", (getter)carrier_own_attr, NULL, NULL, "__qualname__"},
    {"__module__", (getter)carrier_own_attr, NULL, NULL, "__module__"},
    {"__doc__", (getter)carrier_own_attr, NULL, NULL, "__doc__"},
    {"__wrapped__", (getter)carrier_get_wrapped, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot carrier_slots[] = {
    {Py_tp_new, carrier_new},
    {Py_tp_dealloc, carrier_dealloc},
    {Py_tp_traverse, carrier_traverse},
    {Py_tp_clear, carrier_clear},
    {Py_tp_descr_get, carrier_descr_get},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, carrier_repr},
    {Py_tp_members, carrier_members},
    {Py_tp_getset, carrier_getset},
    {0, NULL},
};

static PyType_Spec carrier_spec = {
    "tracedfuture._core._cfuture.Carrier", sizeof(CarrierObject), 0,
    /* immutable, and a method descriptor: what CPython's specializing interpreter asks of a method's type */
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR |
        Py_TPFLAGS_IMMUTABLETYPE,
    carrier_slots,
};

/* ------------------------------------------------------------------------ */
/* Module functions                                                          */

static PyObject *
mod_future_id(PyObject *Py_UNUSED(module), PyObject *obj)
{
    TFExt *e = ext_of(obj);
    if (e != NULL && e->fid) {
        return PyLong_FromLongLong(e->fid);
    }
    if (PyObject_TypeCheck(obj, BaseTask)) {
        PyObject *found = PyObject_GetItem(foreign_ids, obj);
        if (found != NULL) {
            return found;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
mod_assign_id(PyObject *Py_UNUSED(module), PyObject *obj)
{
    TFExt *e = ext_of(obj);
    long long fid = (e != NULL && e->fid) ? e->fid : task_id(obj);
    if (fid) {
        return PyLong_FromLongLong(fid);
    }
    Py_RETURN_NONE;
}

typedef struct {
    long long fid;
    PyObject *obj;
} LiveRef;

static int
live_ref_order(const void *a, const void *b)
{
    long long x = ((const LiveRef *)a)->fid, y = ((const LiveRef *)b)->fid;
    return (x > y) - (x < y);
}

static PyObject *
mod_live(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *all = PyList_New(0);
    if (all == NULL) {
        return NULL;
    }
    /* First the references, atomically, oldest (smallest id) first; then
     * done(), which may run code. */
    Py_ssize_t n = 0;
    LiveRef *refs = live_used ? PyMem_RawMalloc((size_t)live_used * sizeof(LiveRef)) : NULL;
    if (live_used && refs == NULL) {
        Py_DECREF(all);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < live_used; i++) {
        TFExt *e = live_slots[i];
        if (e != NULL && Py_REFCNT(e->self) > 0) {
            refs[n].fid = e->fid;
            refs[n++].obj = e->self;
        }
    }
    if (n > 1) {
        qsort(refs, (size_t)n, sizeof(LiveRef), live_ref_order); /* refs is NULL when n is 0 */
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_Append(all, refs[i].obj) < 0) {
            PyMem_RawFree(refs);
            Py_DECREF(all);
            return NULL;
        }
    }
    PyMem_RawFree(refs);
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(all); i++) {
        PyObject *obj = PyList_GET_ITEM(all, i);
        PyObject *done = PyObject_CallMethodNoArgs(obj, s_done);
        if (done == NULL) {
            PyErr_Clear();
            continue;
        }
        if (!PyObject_IsTrue(done) && PyList_Append(out, obj) < 0) {
            Py_CLEAR(out);
        }
        Py_DECREF(done);
    }
    Py_DECREF(all);
    return out;
}

static PyObject *
mod_info(PyObject *Py_UNUSED(module), PyObject *obj)
{
    TFExt *e = ext_of(obj);
    if (e == NULL || !e->fid) {
        Py_RETURN_NONE;
    }
    int is_task = PyObject_TypeCheck(obj, TracedTaskType);
    PyObject *creator = e->creator ? PyLong_FromLongLong(e->creator) : Py_NewRef(Py_None);
    clock_sync();
    return Py_BuildValue("(LLOiNOOi)", e->fid, clock_to_ns(e->created), e->code ? e->code : Py_None, e->lasti, creator,
                         (!is_task && e->label) ? e->label : Py_None, e->pcode ? e->pcode : Py_None, e->plasti);
}

static PyObject *
mod_set_text(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *value_repr, *exc_message;
    if (!PyArg_ParseTuple(args, "OO:set_text", &value_repr, &exc_message)) {
        return NULL;
    }
    if (!PyCallable_Check(value_repr) || !PyCallable_Check(exc_message)) {
        PyErr_SetString(PyExc_TypeError, "set_text takes two callables: value_repr(value), exc_message(exc)");
        return NULL;
    }
    Py_XSETREF(py_value_repr, Py_NewRef(value_repr));
    Py_XSETREF(py_exc_message, Py_NewRef(exc_message));
    Py_RETURN_NONE;
}

static PyObject *
mod_flush_pending_completions(PyObject *Py_UNUSED(module), PyObject *loop)
{
    PyObject *ready = PyObject_GetAttr(loop, s_ready);
    if (ready == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *handles = PySequence_List(ready);
    Py_DECREF(ready);
    if (handles == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(handles); i++) {
        PyObject *handle = PyList_GET_ITEM(handles, i);
        PyObject *cb = PyObject_GetAttr(handle, s_callback);
        if (cb == NULL) {
            PyErr_Clear();
            continue;
        }
        if (cb == task_done_fn) {
            PyObject *cargs = PyObject_GetAttr(handle, s_args);
            if (cargs != NULL && PyTuple_Check(cargs) && PyTuple_GET_SIZE(cargs) >= 1) {
                task_done_impl(PyTuple_GET_ITEM(cargs, 0));
            }
            Py_XDECREF(cargs);
            PyErr_Clear();
        }
        Py_DECREF(cb);
    }
    Py_DECREF(handles);
    Py_RETURN_NONE;
}

static PyObject *
mod_carried_hooks(PyObject *Py_UNUSED(module), PyObject *loop)
{
    PyObject *hooks = carried_of(loop);
    return Py_NewRef(hooks ? hooks : Py_None);
}

static PyMethodDef module_methods[] = {
    {"carried_hooks", mod_carried_hooks, METH_O,
     "The hooks the class of loop carries for it (LoopHooks(loop, carried_by=...)), else None."},
    {"future_id", mod_future_id, METH_O,
     "The future_id that events give obj, a future or task, or None when it is not traced: to find a\n"
     "future's events, or to log its id.\n\n"
     ">>> import asyncio, tracedfuture\n"
     ">>> async def main():\n"
     "...     return tracedfuture.future_id(asyncio.get_running_loop().create_future())\n"
     ">>> tracedfuture.run(main()) > 0\n"
     "True\n"
     ">>> tracedfuture.future_id(object()) is None\n"
     "True\n"},
    {"assign_id", mod_assign_id, METH_O,
     "The id of a future or task, given on first sight to one tracedfuture did not make, so that events\n"
     "can name it as an awaiter or canceller."},
    {"live", mod_live, METH_NOARGS, "The traced futures and tasks that exist and are not done, oldest first."},
    {"stop_prefaulting", mod_stop_prefaulting, METH_NOARGS,
     "Stop the threads that back flight rings' pages ahead of their records, and join them (before a\n"
     "fork(): the process's threads are then only those tracedfuture counts); each ring's writer starts\n"
     "its thread again at its next step."},
    {"info", mod_info, METH_O,
     "(future_id, created_ns, code, lasti, creator_task_id, label, program_code, program_lasti) of a\n"
     "traced future or task, else None."},
    {"caught", mod_caught, METH_VARARGS,
     "Record that a framework caught exc, raised in the traced task, which goes on; whether it recorded."},
    {"_forget_code_kinds", forget_code_kinds, METH_NOARGS, "Forget the cached kinds of code objects."},
    {"set_text", mod_set_text, METH_VARARGS,
     "Set the functions that turn a result and an exception into text (capture_values)."},
    {"flush_pending_completions", mod_flush_pending_completions, METH_O,
     "Record the end of tasks whose hidden done callback is still queued (before close() drops it)."},
    {"_task_done", task_done, METH_O, "The hidden first done callback of a TracedTask stepped by asyncio."},
    {"_own_step", (PyCFunction)(void (*)(void))mod_own_step, METH_FASTCALL,
     "_own_step([flag]): whether new TracedTasks step themselves (for tests: False gives asyncio's step)."},
    {"_frames_in_place", (PyCFunction)(void (*)(void))mod_frames_in_place, METH_FASTCALL,
     "_frames_in_place([flag]): whether sites are found walking frames in place (for tests: False walks "
     "through frame objects)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tracedfuture._core._cfuture",
    .m_doc = "The compiled implementation of tracedfuture's hot path (see tracedfuture._core._seam).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* ------------------------------------------------------------------------ */
/* Initialisation                                                            */

static PyObject *
get(PyObject *obj, const char *name)
{
    return PyObject_GetAttrString(obj, name);
}

static PyObject *
method_of(PyTypeObject *tp, const char *name)
{
    /* the descriptor in the type's own dict, so that overrides are bypassed */
    PyObject *d = PyDict_GetItemString(tp->tp_dict, name);
    if (d == NULL) {
        PyErr_Format(PyExc_AttributeError, "%s has no %s", tp->tp_name, name);
        return NULL;
    }
    return Py_NewRef(d);
}

/* The getter behind tp's getset descriptor name (looked up through the type:
 * from 3.12 a static builtin type's tp_dict is not the field). */
static int
getter_of(PyTypeObject *tp, const char *name, BaseGetter *out)
{
    PyObject *key = PyUnicode_InternFromString(name);
    PyObject *d = key ? _PyType_Lookup(tp, key) : NULL; /* borrowed */
    Py_XDECREF(key);
    if (d == NULL || !PyObject_TypeCheck(d, &PyGetSetDescr_Type) || ((PyGetSetDescrObject *)d)->d_getset->get == NULL) {
        PyErr_Format(PyExc_ImportError, "%s.%s is not a getset descriptor", tp->tp_name, name);
        return -1;
    }
    out->get = ((PyGetSetDescrObject *)d)->d_getset->get;
    out->closure = ((PyGetSetDescrObject *)d)->d_getset->closure;
    return 0;
}

#define INTERN(var, text)                                       \
    do {                                                        \
        if ((var = PyUnicode_InternFromString(text)) == NULL) { \
            return NULL;                                        \
        }                                                       \
    } while (0)

/* The base's C methods that tp inherits (done, cancelled, result, get_coro,
 * ...) as descriptors of tp's own, with the base's C function. CPython
 * specializes a call of a C method on an instance of exactly the method's type
 * (CALL_NO_KW_METHOD_DESCRIPTOR_NOARGS and friends check Py_IS_TYPE against the
 * descriptor's type): an inherited one, called on one of ours, took the generic
 * call every time (asyncio's gather calls three on each child, streams two on
 * each waiter: 20 generic calls per request of an HTTP server). A method that
 * takes its defining class (METH_METHOD, 3.12+) stays the base's: its function
 * reads its module's state from the class it is given. */
static int
mirror_base_methods(PyTypeObject *tp)
{
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t i = 1; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        PyObject *dict = base == &PyBaseObject_Type ? NULL : base->tp_dict;
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (dict != NULL && PyDict_Next(dict, &pos, &key, &value)) {
            if (!Py_IS_TYPE(value, &PyMethodDescr_Type) || !PyUnicode_Check(key) ||
                (((PyMethodDescrObject *)value)->d_method->ml_flags & (METH_METHOD | METH_CLASS | METH_STATIC)) ||
                _PyType_Lookup(tp, key) != value) {
                continue; /* not a plain C method, or one that tp (or a nearer base) has */
            }
            PyObject *own = PyDescr_NewMethod(tp, ((PyMethodDescrObject *)value)->d_method);
            if (own == NULL || PyDict_SetItem(tp->tp_dict, key, own) < 0) {
                Py_XDECREF(own);
                return -1;
            }
            Py_DECREF(own);
        }
    }
    PyType_Modified(tp);
    return 0;
}

static PyTypeObject *
make_subtype(PyType_Spec *spec, PyTypeObject *base, Py_ssize_t *ext_off, PyObject *module)
{
    Py_ssize_t off = base->tp_basicsize;
    off = (off + 7) & ~(Py_ssize_t)7;
    *ext_off = off;
    spec->basicsize = (int)(off + (Py_ssize_t)sizeof(TFExt));
    PyObject *bases = PyTuple_Pack(1, (PyObject *)base);
    if (bases == NULL) {
        return NULL;
    }
    PyObject *tp = PyType_FromModuleAndSpec(module, spec, bases);
    Py_DECREF(bases);
    if (tp == NULL) {
        return NULL;
    }
    if (mirror_base_methods((PyTypeObject *)tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    /* asyncio's reprs use type(fut).__name__: "Future" / "Task" */
    return (PyTypeObject *)tp;
}

static int initialised;

int tf_lines_add_type(PyObject *module); /* _lines.c: the trace-line writer */
int tf_tail_add_type(PyObject *module);  /* _tail.c: tail sampling on raw records */
int tf_reader_add_type(PyObject *module); /* _reader.c: a trace file's events, read */
/* tf_batch_add_type: _batch.c, RecordBatch (declared in _records.h) */

PyMODINIT_FUNC
PyInit__cfuture(void)
{
    if (initialised) {
        PyErr_SetString(PyExc_ImportError, "tracedfuture._core._cfuture cannot be initialised twice in one process");
        return NULL;
    }
    PyObject *asyncio = PyImport_ImportModule("asyncio"); /* before _asyncio: see the top */
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *casyncio = PyImport_ImportModule("_asyncio");
    PyObject *frames = casyncio ? PyImport_ImportModule("tracedfuture._core._frames") : NULL;
    PyObject *shared = frames ? PyImport_ImportModule("tracedfuture._core._shared") : NULL;
    PyObject *m = shared ? PyModule_Create(&module_def) : NULL;
    if (m == NULL) {
        Py_XDECREF(casyncio);
        Py_XDECREF(frames);
        Py_XDECREF(shared);
        Py_DECREF(asyncio);
        return NULL;
    }
    INTERN(s_state, "_state");
    INTERN(s_result, "_result");
    INTERN(s_exception, "_exception");
    INTERN(s_log_traceback, "_log_traceback");
    INTERN(s_loop, "loop");
    INTERN(s_get_debug, "get_debug");
    INTERN(s_closed, "_closed");
    INTERN(s_debug, "_debug");
    INTERN(s_task_factory, "_task_factory");
    INTERN(s_FINISHED, "FINISHED");
    INTERN(s_CANCELLED, "CANCELLED");
    INTERN(s_PENDING, "PENDING");
    INTERN(s_UNRETRIEVED, "UNRETRIEVED");
    INTERN(s_name, "name");
    INTERN(s_context, "context");
    INTERN(s_eager_start, "eager_start");
    INTERN(s_qualname, "__qualname__");
    INTERN(s_get_name, "get_name");
    INTERN(s_done, "done");
    INTERN(s_callbacks_attr, "_callbacks");
    INTERN(s_ready, "_ready");
    INTERN(s_callback, "_callback");
    INTERN(s_args, "_args");
    INTERN(s_dunder_name, "__name__");
    INTERN(s_label, "label");
    INTERN(s_get_task_factory, "get_task_factory");
    INTERN(s_is_closed, "is_closed");
    INTERN(s_create_future, "create_future");
    INTERN(s_create_task, "create_task");
    INTERN(s_call_soon, "call_soon");
    INTERN(s__loop, "_loop");
    INTERN(s_coro, "coro");
    INTERN(s_check_closed, "_check_closed");
    INTERN(s_dunder_self, "__self__");
    INTERN(s_close, "close");
    empty_tuple = PyTuple_New(0);
    wakeup_names = PyDict_New();
    if (empty_tuple == NULL || wakeup_names == NULL) {
        return NULL;
    }

    BaseFuture = (PyTypeObject *)get(casyncio, "Future");
    BaseTask = (PyTypeObject *)get(casyncio, "Task");
    if (BaseFuture == NULL || BaseTask == NULL) {
        return NULL;
    }
    if (PY_VERSION_HEX < 0x030E0000) {
        py_current_tasks = get(casyncio, "_current_tasks");
        if (py_current_tasks == NULL) {
            return NULL;
        }
    }
    else {
        py_current_task = get(casyncio, "current_task");
        if (py_current_task == NULL) {
            return NULL;
        }
    }
    running_versions = versions_follow_changes();
    frames_fast = frames_agreed = frames_agree();
    py_get_running_loop = get(casyncio, "_get_running_loop");
    py_canceller = get(frames, "canceller");
    py_classify = get(frames, "classify");
    py_primitive_label = get(frames, "primitive_label");
    py_hide_own_frames = get(frames, "hide_own_frames");
    py_raised_at = get(frames, "raised_at");
    py_callback_name = get(shared, "callback_name");
    py_text = get(shared, "text");
    py_value_repr = get(shared, "value_repr_default");
    py_exc_message = get(shared, "exc_message_default");
    PyObject *own = get(frames, "OWN_DIR");
    if (!py_get_running_loop || !py_canceller || !py_callback_name || !py_text || !py_classify ||
        !py_primitive_label || !py_hide_own_frames || !py_raised_at || !py_value_repr || !py_exc_message || !own) {
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(own, &n);
    if (s == NULL) {
        return NULL;
    }
    own_dir = strdup(s);
    own_dir_len = (size_t)n;
    /* the module keeps the string; ours is a copy */
    Py_DECREF(own);

    PyObject *weakref = PyImport_ImportModule("weakref");
    if (weakref == NULL) {
        return NULL;
    }
    PyObject *wkd = get(weakref, "WeakKeyDictionary");
    Py_DECREF(weakref);
    if (wkd == NULL || (foreign_ids = PyObject_CallNoArgs(wkd)) == NULL) {
        return NULL;
    }
    Py_DECREF(wkd);

    if ((m_add_done_callback = method_of(BaseFuture, "add_done_callback")) == NULL ||
        (m_remove_done_callback = method_of(BaseFuture, "remove_done_callback")) == NULL ||
        (m_set_result = method_of(BaseFuture, "set_result")) == NULL ||
        (m_set_exception = method_of(BaseFuture, "set_exception")) == NULL ||
        (m_fut_cancel = method_of(BaseFuture, "cancel")) == NULL ||
        (m_task_cancel = method_of(BaseTask, "cancel")) == NULL ||
        (m_task_set_name = method_of(BaseTask, "set_name")) == NULL ||
        (m_task_callbacks = method_of(BaseFuture, "_callbacks")) == NULL ||
        (m_task_get_name = method_of(BaseTask, "get_name")) == NULL ||
        (m_fut_result = method_of(BaseFuture, "result")) == NULL) {
        return NULL;
    }
    if (getter_of(BaseFuture, "_state", &g_state) < 0 || getter_of(BaseFuture, "_exception", &g_exception) < 0 ||
        getter_of(BaseFuture, "_result", &g_result) < 0 || getter_of(BaseFuture, "_log_traceback", &g_log_tb) < 0 ||
        getter_of(BaseFuture, "_loop", &g_loop) < 0 || getter_of(&PyCoro_Type, "__qualname__", &g_coro_qualname) < 0) {
        return NULL;
    }

    RingType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &ring_spec, NULL);
    LoopHooksType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &hooks_spec, NULL);
    CarrierType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &carrier_spec, NULL);
    TracedFutureType = make_subtype(&fut_spec, BaseFuture, &fut_ext_off, m);
    TracedTaskType = make_subtype(&task_spec, BaseTask, &task_ext_off, m);
    if (!RingType || !LoopHooksType || !CarrierType || !TracedFutureType || !TracedTaskType) {
        return NULL;
    }
    PyObject *record_size = PyLong_FromLong((long)sizeof(Rec));
    if (record_size == NULL || PyObject_SetAttrString((PyObject *)RingType, "record_size", record_size) < 0) {
        Py_XDECREF(record_size);
        return NULL;
    }
    Py_DECREF(record_size);
    /* TracedFuture's methods apply to any asyncio Future, as asyncio.Future's do
     * (CPython's tests call Future.set_result(task, ...)). */
    for (PyMethodDef *def = fut_methods; def->ml_name != NULL; def++) {
        PyObject *descr = PyDescr_NewMethod(BaseFuture, def);
        if (descr == NULL || PyObject_SetAttrString((PyObject *)TracedFutureType, def->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return NULL;
        }
        Py_DECREF(descr);
    }
    for (PyMethodDef *def = task_methods; def->ml_name != NULL; def++) {
        PyObject *descr = PyDescr_NewMethod(BaseTask, def);
        if (descr == NULL || PyObject_SetAttrString((PyObject *)TracedTaskType, def->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return NULL;
        }
        Py_DECREF(descr);
    }
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)RingType) < 0 ||
        PyModule_AddObjectRef(m, "LoopHooks", (PyObject *)LoopHooksType) < 0 ||
        PyModule_AddObjectRef(m, "Carrier", (PyObject *)CarrierType) < 0 ||
        PyModule_AddObjectRef(m, "TracedFuture", (PyObject *)TracedFutureType) < 0 ||
        PyModule_AddObjectRef(m, "TracedTask", (PyObject *)TracedTaskType) < 0 ||
        PyModule_AddStringConstant(m, "IMPLEMENTATION", "c") < 0 || tf_lines_add_type(m) < 0 ||
        tf_batch_add_type(m) < 0 || tf_eventfold_add_type(m) < 0 || tf_tail_add_type(m) < 0 ||
        tf_reader_add_type(m) < 0 || tf_gil_init(m) < 0) {
        return NULL;
    }
    task_done_fn = PyObject_GetAttrString(m, "_task_done");
    if (task_done_fn == NULL) {
        return NULL;
    }
    clock_init();
    if (step_init(m, asyncio, casyncio) < 0 ||
        PyModule_AddStringConstant(m, "STEP_REASON", step_reason) < 0 ||
        PyModule_AddStringConstant(m, "CLOCK", clock_name) < 0 ||
        PyModule_AddIntConstant(m, "REMEMBERS_RUNNING_TASK", running_versions) < 0 ||
        PyModule_AddObjectRef(m, "PROFILE_GUIDED", TRACEDFUTURE_PROFILE_GUIDED ? Py_True : Py_False) < 0) {
        return NULL;
    }

    /* the finished exact Future that tf_task_wakeup gives asyncio's wakeup:
     * made on a stand-in loop (Future.__init__ asks only get_debug()) */
    PyObject *types = PyImport_ImportModule("types");
    PyObject *ns = types ? PyObject_GetAttrString(types, "SimpleNamespace") : NULL;
    Py_XDECREF(types);
    PyObject *stand_in = ns ? PyObject_CallNoArgs(ns) : NULL;
    Py_XDECREF(ns);
    if (stand_in == NULL || PyObject_SetAttrString(stand_in, "get_debug", (PyObject *)&PyBool_Type) < 0) {
        Py_XDECREF(stand_in);
        return NULL;
    }
    PyObject *kw = Py_BuildValue("{sO}", "loop", stand_in);
    Py_DECREF(stand_in);
    done_sentinel = kw ? PyObject_Call((PyObject *)BaseFuture, empty_tuple, kw) : NULL;
    Py_XDECREF(kw);
    PyObject *set = done_sentinel ? call2(m_set_result, done_sentinel, Py_None) : NULL;
    if (set == NULL) {
        return NULL;
    }
    Py_DECREF(set);

    base_event_loop = get(asyncio, "BaseEventLoop");
    if (base_event_loop == NULL) {
        return NULL;
    }
    base_check_closed = PyObject_GetAttrString(base_event_loop, "_check_closed");
    base_get_debug = PyObject_GetAttrString(base_event_loop, "get_debug");
    base_create_future_fn = PyObject_GetAttrString(base_event_loop, "create_future");
    futures_module = PyImport_ImportModule("asyncio.futures");
    s_Future = PyUnicode_InternFromString("Future");
    base_create_task_fn = PyObject_GetAttrString(base_event_loop, "create_task");
    tasks_module = PyImport_ImportModule("asyncio.tasks");
    s_Task = PyUnicode_InternFromString("Task");
    if (base_create_future_fn == NULL || futures_module == NULL || s_Future == NULL || base_create_task_fn == NULL ||
        tasks_module == NULL || s_Task == NULL) {
        return NULL;
    }
    eager_factory = PyObject_GetAttrString(asyncio, "eager_task_factory");
    if (eager_factory == NULL) {
        PyErr_Clear();
    }
    PyObject *factories = PyObject_CallMethod(shared, "asyncio_factories", "OO", TracedFutureType, TracedTaskType);
    if (factories == NULL || !PyArg_ParseTuple(factories, "OOO", &asyncio_create_future, &asyncio_create_task,
                                               &asyncio_eager_create_task)) {
        Py_XDECREF(factories);
        return NULL;
    }
    Py_INCREF(asyncio_create_future);
    Py_INCREF(asyncio_create_task);
    if (asyncio_eager_create_task == Py_None) {
        asyncio_eager_create_task = NULL;
    }
    else {
        Py_INCREF(asyncio_eager_create_task);
    }
    Py_DECREF(factories);
    PyObject *forget = PyObject_GetAttrString(m, "_forget_code_kinds");
    PyObject *registered = forget ? PyObject_CallMethod(frames, "on_program_change", "O", forget) : NULL;
    Py_XDECREF(forget);
    if (registered == NULL) {
        return NULL;
    }
    Py_DECREF(registered);
    Py_DECREF(frames);
    Py_DECREF(shared);
    Py_DECREF(casyncio);
    Py_DECREF(asyncio);
    rng_state ^= (unsigned long long)mono_ns() ^ ((unsigned long long)getpid() << 32);
    initialised = 1;
    return m;
}
