/* tracedfuture._core._cfuture.LineWriter: trace-file lines from raw records, in C.
 *
 * The compiled twin of tracedfuture/_pipeline/_lines.py's Lines, which stays the
 * reference (tests/test_lines.py compares the two byte for byte). It writes the
 * records that make up most of every trace itself (a future created, awaited,
 * resolved, collected; and failed, cancelled, a task's cancel requested, a
 * rename, a callback removed, and the unretrieved or abandoned event of a future
 * collected so, with the callback_scheduled lines of every end), from per-future
 * state kept in a C hash table and JSON fragments cached per creation site,
 * result or exception type, and canceller. Everything else goes to the
 * reference, in order: a future whose history needs it (a mark, a lint, a value
 * or exception message captured, a name or cancel message to redact, a record
 * not in the shape the ring writes) is handed over with its state
 * (helper.adopt) the first time, and the reference writes the rest of it.
 * First-seen sites, types and cancellers
 * are turned into JSON by the helper (helper.site_text, result_text,
 * exc_type_text, canceller_text, ...), with the reference's own functions, so
 * that both decide alike; strings are escaped here, as
 * json.encoder.encode_basestring and then UTF-8 with backslashreplace do.
 *
 * A cancelled future gives the tasks waiting on it their cause (_convert's
 * CANCELLED), across the two writers: a waiter the reference holds gets it
 * through helper.cancel_awaiter, in order; a task of ours that waits on a future
 * the reference holds goes to the reference, since only the reference can give
 * it the cause then.
 *
 * It reads a RecordBatch's structs in place (no tuple per record) and works with
 * the GIL released: the program's thread runs while a trace file is formatted.
 * It takes the GIL back only to fill a cache (a site or type seen first), to hand
 * a future to the reference, and at the end. write(records, fd) appends the lines
 * to a file in the same call, still without the GIL (JsonLinesExporter's
 * export_records): a usual batch of a trace file costs its thread one GIL taken
 * back from the program, where lines() and then a write() cost two or three. Without the GIL no reference count
 * may change, so the references a future's state takes or drops meanwhile are
 * queued (RefQueue, _records.h) and applied, increments first, when the GIL is back: every object
 * involved is alive until then (the batch holds what its records name, the
 * table what it held). Memory outside Python objects is PyMem_Raw, callable
 * without the GIL.
 *
 * The writer runs on a trace file's own delivery thread (_pipeline/_sink.py);
 * one call at a time (a second thread gets RuntimeError).
 *
 * This file is compiled into the _cfuture extension (setup.py); _cfuture.c calls
 * tf_lines_add_type() once at import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "_records.h"
#include "_gil.h" /* the GIL taken back at the program's next traced future, not a switch interval later */

int tf_lines_add_type(PyObject *module);

/* Field positions after (op, fid, ts), from _seam.LAYOUTS (checked at import). */
enum { C_TASK_ID, C_IS_TASK, C_CODE, C_LASTI, C_THREAD_ID, C_NAME, C_CORO, C_ROUTE, C_CONTEXT, C_PCODE, C_PLASTI };
enum { A_TASK_ID, A_CALLBACK, A_AWAITER };
enum { R_TASK_ID, R_TYPE, R_VALUE };
enum { E_TASK_ID, E_TYPE, E_MSG, E_CODE, E_LASTI, E_PCODE, E_PLASTI };
/* A cancel's who, (code, lasti, user_code, user_lasti, waiting_code, waiting_lasti), is
 * slots 2-7 of its record (F_WHO) */
enum { K_TASK_ID, K_MSG, K_CODE, K_LASTI, K_UCODE, K_ULASTI, K_WCODE, K_WLASTI };
enum { X_STATE, X_INCOMPLETE };
enum { N_TASK_ID, N_NAME };
enum { V_TASK_ID, V_CALLBACK, V_INDICES };
#define CACHE_LIMIT 100000
/* From this size on, the result is copied into its bytes object without the GIL. */
#define COPY_WITHOUT_GIL (256 * 1024)

/* ------------------------------------------------------------------------ */
/* An output buffer                                                          */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int
buf_grow(Buf *b, size_t more) /* -1: out of memory (no exception set: the GIL may be released) */
{
    if (b->n + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + more) {
        cap *= 2;
    }
    char *p = PyMem_RawRealloc(b->p, cap);
    if (p == NULL) {
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

static const unsigned long long POW10[20] = {
    1ULL,
    10ULL,
    100ULL,
    1000ULL,
    10000ULL,
    100000ULL,
    1000000ULL,
    10000000ULL,
    100000000ULL,
    1000000000ULL,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL,
    10000000000000000000ULL,
};

/* How many decimal digits u has: from its bit length (log10(2) is about
 * 1233/4096), one comparison to settle it. */
static inline int
digits10(unsigned long long u)
{
    int t = ((64 - __builtin_clzll(u | 1)) * 1233) >> 12;
    int n = t + (u >= POW10[t]);
    return n ? n : 1; /* 0 */
}

/* u's digits at o (its length known first: written in place, no copy); the end. */
static inline char *
put_digits(char *o, unsigned long long u)
{
    char *end = o + digits10(u), *e = end;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--e = DIGITS[d + 1];
        *--e = DIGITS[d];
    }
    if (u >= 10) {
        *--e = DIGITS[u * 2 + 1];
        *--e = DIGITS[u * 2];
    }
    else {
        *--e = (char)('0' + u);
    }
    return end;
}

/* An integer at o, room made by the caller (20 characters at most); the end. */
static inline char *
put_ll(char *o, long long v)
{
    if (v < 0) {
        *o++ = '-';
    }
    return put_digits(o, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
}

/* A literal at o, room made by the caller; the end. */
#define LIT(o, lit) ((char *)memcpy((o), (lit), sizeof(lit) - 1) + sizeof(lit) - 1)

/* An integer (a line holds four or five of them). */
static inline int
buf_ll(Buf *b, long long v)
{
    if (buf_grow(b, 21) < 0) {
        return -1;
    }
    b->n = (size_t)(put_ll(b->p + b->n, v) - b->p);
    return 0;
}

/* A timestamp's whole seconds as digits, the last seen: every line has a
 * ts_ns, and a batch's are seconds apart at most (16 bytes, zero-padded, copied
 * whole). */
typedef struct {
    long long from; /* the seconds in ns (a timestamp of theirs is from + u, u < 10^9); -1: none yet */
    char text[16];
    int len;
} Seconds;

/* The most put_ts writes: 16 bytes of seconds copied whole, 9 digits (or an
 * integer of 20 characters). */
#define TS_ROOM 25

/* 2^57 / 10^8, rounded up: u * NS_SCALE, for u < 10^9, holds u / 10^8 above
 * bit 57 and the rest as a fraction below it, each next two digits a multiple
 * of 100 away (checked for every u < 10^9). */
#define NS_SCALE 1441151881ULL
#define NS_FRACTION ((1ULL << 57) - 1)
#define NEXT_TWO(o, t) ((t) = ((t) & NS_FRACTION) * 100, memcpy((o), DIGITS + 2 * ((t) >> 57), 2))

/* A timestamp in ns at o (TS_ROOM made by the caller): its seconds' digits from
 * *sec (made when they change), then exactly nine more, a multiplication per
 * two digits (no division: a timestamp of the last second seen is that
 * second's ns and a difference); the end. */
static inline char *
put_ts(char *o, Seconds *sec, long long v)
{
    if (v < 1000000000LL) {
        return put_ll(o, v); /* no whole second, or negative */
    }
    if ((unsigned long long)(v - sec->from) >= 1000000000ULL) { /* another second (or none yet) */
        long long seconds = v / 1000000000LL;
        memset(sec->text, 0, sizeof(sec->text));
        sec->len = (int)(put_digits(sec->text, (unsigned long long)seconds) - sec->text); /* 10 digits at most */
        sec->from = seconds * 1000000000LL;
    }
    memcpy(o, sec->text, sizeof(sec->text));
    o += sec->len;
    uint64_t t = (uint64_t)(v - sec->from) * NS_SCALE;
    o[0] = (char)('0' + (t >> 57));
    NEXT_TWO(o + 1, t);
    NEXT_TWO(o + 3, t);
    NEXT_TWO(o + 5, t);
    NEXT_TWO(o + 7, t);
    return o + 9;
}

static inline int
buf_ts(Buf *b, Seconds *sec, long long v)
{
    if (buf_grow(b, TS_ROOM) < 0) {
        return -1;
    }
    b->n = (size_t)(put_ts(b->p + b->n, sec, v) - b->p);
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* One character of a str as JSON, UTF-8 (see buf_json_str); the first test is
 * the usual case. */
static inline char *
json_char(char *o, Py_UCS4 c)
{
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
        *o++ = (char)c;
    }
    else if (c < 0x80) {
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = HEX[(c >> 4) & 0xf];
            *o++ = HEX[c & 0xf];
        }
    }
    else if (c < 0x800) {
        *o++ = (char)(0xc0 | (c >> 6));
        *o++ = (char)(0x80 | (c & 0x3f));
    }
    else if (c >= 0xd800 && c <= 0xdfff) { /* a lone surrogate: backslashreplace */
        *o++ = '\\';
        *o++ = 'u';
        *o++ = HEX[(c >> 12) & 0xf];
        *o++ = HEX[(c >> 8) & 0xf];
        *o++ = HEX[(c >> 4) & 0xf];
        *o++ = HEX[c & 0xf];
    }
    else if (c < 0x10000) {
        *o++ = (char)(0xe0 | (c >> 12));
        *o++ = (char)(0x80 | ((c >> 6) & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    }
    else {
        *o++ = (char)(0xf0 | (c >> 18));
        *o++ = (char)(0x80 | ((c >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((c >> 6) & 0x3f));
        *o++ = (char)(0x80 | (c & 0x3f));
    }
    return o;
}

/* Whether 8 characters of one byte each are JSON as they are: none below 0x20
 * or above 0x7f, no '"' or '\\' (a byte of each test's result is set where a
 * character is: v - 0x01.. & ~v & 0x80.. finds a zero byte, or one below n for
 * 0x0n..). */
static inline int
plain8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t found = (w & high) | ((w - ones * 0x20) & ~w & high) | ((quote - ones) & ~quote & high) |
                     ((backslash - ones) & ~backslash & high);
    return found == 0;
}

/* A str as JSON, UTF-8: what encode_basestring(s).encode("utf-8",
 * "backslashreplace") makes. It reads the string's own storage, which a ready
 * str never changes, so it needs no GIL. One loop per kind of storage: the
 * usual name or callback is of one byte per character, read eight at a time. */
static int
buf_json_str(Buf *b, PyObject *s)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (buf_grow(b, 2 + (size_t)len * 6) < 0) { /* the most one character takes: \u00XX, \udcXX */
        return -1;
    }
    char *o = b->p + b->n;
    *o++ = '"';
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *d = data;
        Py_ssize_t i = 0;
        for (; i + 8 <= len; i += 8) { /* eight at a time while nothing needs escaping */
            uint64_t w;
            memcpy(&w, d + i, 8);
            if (!plain8(w)) {
                break;
            }
            memcpy(o, &w, 8);
            o += 8;
        }
        for (; i < len; i++) {
            o = json_char(o, d[i]);
        }
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        const Py_UCS2 *d = data;
        for (Py_ssize_t i = 0; i < len; i++) {
            o = json_char(o, d[i]);
        }
    }
    else {
        for (Py_ssize_t i = 0; i < len; i++) {
            o = json_char(o, PyUnicode_READ(kind, data, i));
        }
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
    return 0;
}

/* A str this file can escape without the GIL. */
static inline int
plain_str(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_Check(s) && PyUnicode_IS_READY(s);
#else
    return PyUnicode_Check(s);
#endif
}

/* ------------------------------------------------------------------------ */
/* Caches: (object, int[, object, int]) -> a UTF-8 fragment, holding the objects */

typedef struct {
    PyObject *key; /* owned: its address is not reused while cached */
    long long extra;
    PyObject *key2; /* owned, or NULL: a canceller's user code */
    long long extra2;
    PyObject *text; /* bytes */
} CacheSlot;

typedef struct {
    CacheSlot *slots;
    size_t cap, used;
    const CacheSlot *last; /* the last found, asked first: a program's futures come from few sites, one at a time */
} Cache;

static void
cache_clear(Cache *c)
{
    for (size_t i = 0; i < c->cap; i++) {
        Py_CLEAR(c->slots[i].key);
        Py_CLEAR(c->slots[i].key2);
        Py_CLEAR(c->slots[i].text);
    }
    c->used = 0;
    c->last = NULL;
}

static void
cache_free(Cache *c)
{
    cache_clear(c);
    PyMem_RawFree(c->slots);
    c->slots = NULL;
    c->cap = 0;
}

static inline size_t
cache_hash(const PyObject *key, long long extra, const PyObject *key2, long long extra2)
{
    return key2 == NULL ? tf_hash(key, extra) : tf_hash(key, extra) ^ (tf_hash(key2, extra2) * 31);
}

/* Safe without the GIL on the thread that owns the writer (no reference changes). */
static PyObject *
cache_get(Cache *c, const PyObject *key, long long extra, const PyObject *key2, long long extra2)
{
    const CacheSlot *s = c->last;
    if (s != NULL && s->key == key && s->extra == extra && s->key2 == key2 && s->extra2 == extra2) {
        return s->text;
    }
    if (c->cap == 0) {
        return NULL;
    }
    size_t mask = c->cap - 1;
    for (size_t i = cache_hash(key, extra, key2, extra2) & mask;; i = (i + 1) & mask) {
        s = &c->slots[i];
        if (s->key == NULL) {
            return NULL;
        }
        if (s->key == key && s->extra == extra && s->key2 == key2 && s->extra2 == extra2) {
            c->last = s;
            return s->text;
        }
    }
}

/* Stores text (a new reference, stolen) for key; returns it borrowed, or NULL.
 * With the GIL only. */
static PyObject *
cache_put(Cache *c, PyObject *key, long long extra, PyObject *key2, long long extra2, PyObject *text)
{
    if (c->used >= CACHE_LIMIT) {
        cache_clear(c);
    }
    if ((c->used + 1) * 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        CacheSlot *slots = PyMem_RawCalloc(cap, sizeof(CacheSlot));
        if (slots == NULL) {
            Py_DECREF(text);
            PyErr_NoMemory();
            return NULL;
        }
        for (size_t i = 0; i < c->cap; i++) {
            CacheSlot *s = &c->slots[i];
            if (s->key != NULL) {
                size_t j = cache_hash(s->key, s->extra, s->key2, s->extra2) & (cap - 1);
                while (slots[j].key != NULL) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = *s;
            }
        }
        PyMem_RawFree(c->slots);
        c->slots = slots;
        c->cap = cap;
        c->last = NULL; /* it was in the old slots */
    }
    size_t mask = c->cap - 1;
    size_t i = cache_hash(key, extra, key2, extra2) & mask;
    while (c->slots[i].key != NULL) {
        i = (i + 1) & mask;
    }
    c->slots[i].key = Py_NewRef(key);
    c->slots[i].extra = extra;
    c->slots[i].key2 = Py_XNewRef(key2);
    c->slots[i].extra2 = extra2;
    c->slots[i].text = text;
    c->used++;
    return text;
}

/* ------------------------------------------------------------------------ */
/* Per-future state: fid -> Fut, open addressing, backward-shift deletion     */


/* How a future was cancelled, as _convert's _cancel() gets it: (msg, canceller_id,
 * who); the reference turns it into text, here its fragments are cached. */
typedef struct {
    PyObject *msg; /* owned str, or NULL */
    int has_cid, has_who;
    long long cid;
    PyObject *code, *ucode, *wcode; /* who (owned, NULL for None): the caller, its user code, where a task waited */
    long long lasti, ulasti, wlasti;
} Cancel;

typedef struct {
    long long fid; /* 0: empty slot */
    int is_task, done, has_awaiter, has_plasti;
    long long lasti, plasti, created, awaiter;
    PyObject *name, *code, *pcode; /* owned, or NULL */
    PyObject *exc;                 /* owned: the type of its failure, or NULL */
    Cancel *cancel;                /* PyMem_Raw, or NULL: the cause of its cancellation */
    Cb *cbs, *sched;               /* PyMem_Raw */
    Py_ssize_t ncb, capcb, nsched, capsched;
} Fut;

/* The futures' states stay where they are made (blocks of TABLE_BLOCK, reused
 * through a free list), found through a FidMap: its probes and backward shifts
 * read and move only its 16-byte slots, never a state's 144 (ten thousand live
 * tasks: a removal walked a cluster of states a cache line each, a tenth of the
 * drain). */
#define TABLE_BLOCK 1024

typedef struct {
    FidMap keys;  /* fid -> its state */
    Fut **blocks; /* PyMem_Raw, nblocks of TABLE_BLOCK states */
    size_t nblocks;
    Fut *free;     /* states let go, chained through their cbs field (fid 0) */
    Spares spare;  /* arrays of CB_FIRST let go */
} Table;

typedef struct {
    PyObject_HEAD
    PyObject *helper; /* the reference Lines: adopt, lines, clear, and the fragments' methods */
    int redacts;      /* names go through redact: futures with one are the reference's */
    Table futs;
    Cache sites, psites, types, excs, callers, bare; /* bare: a site's {...} alone */
    RefQueue inc, dec;     /* queued while the GIL is released; empty whenever it is held */
    Buf out;           /* the output buffer, kept from one lines() to the next */
    long busy;         /* the pid of a lines() call under way, else 0 */
} LineWriter;

/* What the reference is given, deferred to the end of a call (with the GIL):
 * a future's state (adopt), the cause a cancelled future of ours gives a waiter
 * of the reference's (cancel_awaiter), or a run of records, whose lines go at
 * `at` in the output. The reference's state depends only on what it is given,
 * in order, so doing it later changes nothing but where its bytes are put. */
enum { D_RUN, D_ADOPT, D_CANCEL };

typedef struct {
    int kind;
    Fut fut;            /* adopt: the state handed over (its references with it);
                           cancel_awaiter: fid the waiter, cancel the cause */
    Py_ssize_t from, to; /* a run: positions in Ctx.idx */
    size_t at;          /* a run: where its lines go in the output */
    PyObject *data;     /* a run: its lines, once written */
    Py_ssize_t count;
} Deferred;

/* A str escaped in this call, and where its text is in the output (which only
 * grows during a call): a callback's name, a task's, a coroutine's come again
 * and again, each copied from its last text. By address: a str this call
 * writes is one its records name (the batch holds them to the end) or one the
 * writer's table took from them, alive either way, so an address met again is
 * the same str. They are forgotten whenever the GIL is taken back all the same
 * (the references let go meanwhile are dropped then). */
typedef struct {
    const PyObject *s;
    size_t at, len;
} Text;

#define NTEXTS 4 /* by address, bits 4-5 (objects are 16-byte aligned) */

/* One call of lines(): where its GIL is, and what waits for it. */
typedef struct {
    LineWriter *w;
    PyThreadState *save; /* non-NULL: the GIL is released */
    Buf b;
    Py_ssize_t count;
    Deferred *dv; /* PyMem_Raw */
    Py_ssize_t nd, capd;
    Py_ssize_t *idx; /* records for the reference, by position in the batch */
    Py_ssize_t nidx, capidx;
    const Rec *recs;
    Seconds sec; /* the last timestamp's seconds, as digits */
    Text texts[NTEXTS];
} Ctx;

static PyObject *s_lines, *s_text, *s_site_text, *s_program_site_text, *s_result_text, *s_clear,
    *s_FINISHED, *s_CANCELLED, *s_UNRETRIEVED, *s_PENDING, *s_site_json, *s_exc_type_text, *s_canceller_text,
    *s_cancel_awaiter, *s_adopt;

/* Take the GIL back (if released): queued references are settled first. */
static void
gil(Ctx *c)
{
    if (c->save != NULL) {
        tf_gil_restore(c->save);
        c->save = NULL;
        refq_apply(&c->w->inc, &c->w->dec);
        memset(c->texts, 0, sizeof(c->texts)); /* a str let go may be freed now, its address another's */
    }
}

static void
nogil(Ctx *c)
{
    if (c->save == NULL) {
        c->save = tf_gil_release();
    }
}

/* A reference for the writer's state (o alive: the batch holds it). */
static void
own(Ctx *c, PyObject *o)
{
    if (o == NULL) {
        return;
    }
    if (c == NULL || c->save == NULL || refq_push(&c->w->inc, o) < 0) {
        gil(c);
        Py_INCREF(o);
    }
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
    else if (refq_push(&c->w->dec, o) < 0) {
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

static void
cancel_free(Ctx *c, Cancel *k)
{
    if (k != NULL) {
        disown(c, k->msg);
        disown(c, k->code);
        disown(c, k->ucode);
        disown(c, k->wcode);
        PyMem_RawFree(k);
    }
}

/* c NULL: the GIL is held (clear, dealloc, the reference's adopt). */
static void
fut_release(Ctx *c, Fut *f)
{
    disown(c, f->name);
    disown(c, f->code);
    disown(c, f->pcode);
    disown(c, f->exc);
    cancel_free(c, f->cancel);
    for (Py_ssize_t i = 0; i < f->ncb; i++) {
        disown(c, f->cbs[i].callback);
    }
    for (Py_ssize_t i = 0; i < f->nsched; i++) {
        disown(c, f->sched[i].callback);
    }
    Spares *spare = c != NULL ? &c->w->futs.spare : NULL;
    cbs_let_go(spare, f->cbs, f->capcb);
    cbs_let_go(spare, f->sched, f->capsched);
    memset(f, 0, sizeof(*f));
}

static Fut *
table_find(const Table *t, long long fid)
{
    FidSlot *slot = fidmap_get(&t->keys, fid);
    return slot != NULL ? slot->value : NULL;
}

/* Lets go of f's state (to the free list) and its key. */
static void
table_remove(Ctx *c, Table *t, Fut *f)
{
    fidmap_remove(&t->keys, f->fid, NULL);
    fut_release(c, f);
    f->cbs = (Cb *)t->free;
    t->free = f;
}

/* A state from the free list, or from a new block; NULL: out of memory. */
static Fut *
table_new_state(Table *t)
{
    if (t->free == NULL) {
        Fut **blocks = PyMem_RawRealloc(t->blocks, (t->nblocks + 1) * sizeof(Fut *));
        if (blocks == NULL) {
            return NULL;
        }
        t->blocks = blocks;
        Fut *block = PyMem_RawCalloc(TABLE_BLOCK, sizeof(Fut));
        if (block == NULL) {
            return NULL;
        }
        t->blocks[t->nblocks++] = block;
        for (size_t k = TABLE_BLOCK; k-- > 0;) {
            block[k].cbs = (Cb *)t->free;
            t->free = &block[k];
        }
    }
    Fut *f = t->free;
    t->free = (Fut *)f->cbs;
    f->cbs = NULL;
    return f;
}

/* A fresh state for fid (an existing one is released first); NULL: out of memory. */
static Fut *
table_add(Ctx *c, Table *t, long long fid)
{
    Fut *old = table_find(t, fid);
    if (old != NULL) {
        table_remove(c, t, old);
    }
    if (fidmap_room_for_one(&t->keys) < 0) {
        return NULL;
    }
    Fut *f = table_new_state(t);
    if (f == NULL) {
        return NULL;
    }
    f->fid = fid;
    fidmap_put(&t->keys, fid, f); /* room enough: never raises */
    return f;
}

/* Every state let go, and the memory of all of them. */
static void
table_clear(Table *t)
{
    for (size_t i = 0; i < t->keys.cap; i++) {
        if (t->keys.slots[i].fid != 0) {
            fut_release(NULL, t->keys.slots[i].value);
        }
    }
    for (size_t k = 0; k < t->nblocks; k++) {
        PyMem_RawFree(t->blocks[k]);
    }
    spares_free(&t->spare);
    PyMem_RawFree(t->blocks);
    fidmap_free(&t->keys);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------------ */
/* LineWriter                                                                */

static int
writer_init(LineWriter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"helper", "redacts", NULL};
    PyObject *helper;
    int redacts = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$p:LineWriter", kwlist, &helper, &redacts)) {
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "LineWriter is writing: it cannot be initialised again now");
        return -1;
    }
    Py_XSETREF(self->helper, Py_NewRef(helper));
    self->redacts = redacts;
    return 0;
}

static void
writer_free_state(LineWriter *self)
{
    table_clear(&self->futs);
    cache_free(&self->sites);
    cache_free(&self->psites);
    cache_free(&self->types);
    cache_free(&self->excs);
    cache_free(&self->callers);
    cache_free(&self->bare);
    PyMem_RawFree(self->inc.p);
    PyMem_RawFree(self->dec.p);
    memset(&self->inc, 0, sizeof(RefQueue));
    memset(&self->dec, 0, sizeof(RefQueue));
    PyMem_RawFree(self->out.p);
    memset(&self->out, 0, sizeof(Buf));
}

static int
writer_traverse(LineWriter *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->helper);
    return 0;
}

static int
writer_clear_refs(LineWriter *self)
{
    Py_CLEAR(self->helper);
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
    if (s == NULL) {
        return NULL;
    }
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "LineWriter's helper returned %R, not a str", s);
        Py_DECREF(s);
        return NULL;
    }
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
    Py_DECREF(s);
    return b;
}

/* A cached fragment (borrowed); the first time, the GIL is taken and the
 * helper's method called, and what it returns encoded as the reference encodes
 * its lines (UTF-8, lone surrogates as their JSON escape). nargs: the method is
 * called with (key), (key, lasti) or (key, lasti, key2 or None, lasti2). */
static PyObject *
fragment_of(Ctx *c, Cache *cache, PyObject *method, int nargs, PyObject *key, long long lasti, PyObject *key2,
            long long lasti2)
{
    PyObject *text = cache_get(cache, key, lasti, key2, lasti2);
    if (text != NULL) {
        return text;
    }
    gil(c);
    PyObject *s = NULL;
    if (nargs == 1) {
        s = PyObject_CallMethodObjArgs(c->w->helper, method, key, NULL);
    }
    else {
        PyObject *n = PyLong_FromLongLong(lasti);
        PyObject *n2 = nargs == 4 ? PyLong_FromLongLong(lasti2) : NULL;
        if (n != NULL && nargs == 2) {
            s = PyObject_CallMethodObjArgs(c->w->helper, method, key, n, NULL);
        }
        else if (n != NULL && n2 != NULL) {
            s = PyObject_CallMethodObjArgs(c->w->helper, method, key, n, key2 ? key2 : Py_None, n2, NULL);
        }
        Py_XDECREF(n);
        Py_XDECREF(n2);
    }
    PyObject *b = encoded(s);
    if (b == NULL) {
        return NULL;
    }
    return cache_put(cache, key, lasti, key2, lasti2, b);
}

static PyObject *
fragment(Ctx *c, Cache *cache, PyObject *method, PyObject *key, int with_lasti, long long lasti)
{
    return fragment_of(c, cache, method, with_lasti ? 2 : 1, key, lasti, NULL, 0);
}

static int
put_fragment(Buf *b, PyObject *bytes)
{
    return buf_put(b, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
}

/* The end of a line: the program's site fragment (psite, may be NULL), then
 * "}\n"; the line is counted. */
static int
end_line(Ctx *c, PyObject *psite)
{
    if ((psite != NULL && put_fragment(&c->b, psite) < 0) || PUT(&c->b, "}\n") < 0) {
        return -1;
    }
    c->count++;
    return 0;
}

static int
put_text(Ctx *c, PyObject *s)
{
    if (plain_str(s)) {
        Buf *b = &c->b;
        Text *t = &c->texts[((uintptr_t)s >> 4) & (NTEXTS - 1)];
        if (t->s == s) {
            if (buf_grow(b, t->len) < 0) {
                return -1;
            }
            memcpy(b->p + b->n, b->p + t->at, t->len); /* at is before n: the buffer keeps it */
            b->n += t->len;
            return 0;
        }
        size_t at = b->n;
        if (buf_json_str(b, s) < 0) {
            return -1;
        }
        t->s = s;
        t->at = at;
        t->len = b->n - at;
        return 0;
    }
    gil(c); /* not a str: the reference decides (and raises, as it would) */
    PyObject *t = encoded(PyObject_CallMethodOneArg(c->w->helper, s_text, s));
    if (t == NULL) {
        return -1;
    }
    int rc = put_fragment(&c->b, t);
    Py_DECREF(t);
    return rc;
}

/* ,"is_task":..,"name":.. */
static int
put_head(Ctx *c, const Fut *f)
{
    if ((f->is_task ? PUT(&c->b, ",\"is_task\":true") : PUT(&c->b, ",\"is_task\":false")) < 0) {
        return -1;
    }
    if (f->name != NULL && (PUT(&c->b, ",\"name\":") < 0 || put_text(c, f->name) < 0)) {
        return -1;
    }
    return 0;
}

/* The most put_ids writes: three keys, two integers and a timestamp. */
#define IDS_ROOM (sizeof(",\"future_id\":,\"ts_ns\":,\"task_id\":") + 20 + TS_ROOM + 20)

/* ,"future_id":..,"ts_ns":..[,"task_id":..]: every line has them, written in
 * room made once. */
static int
put_ids(Ctx *c, const Rec *r, int tid_slot)
{
    Buf *b = &c->b;
    if (buf_grow(b, IDS_ROOM) < 0) {
        return -1;
    }
    char *o = LIT(b->p + b->n, ",\"future_id\":");
    o = put_ll(o, r->fid);
    o = LIT(o, ",\"ts_ns\":");
    o = put_ts(o, &c->sec, r->ts);
    if (slot_is_int(r, tid_slot)) {
        o = LIT(o, ",\"task_id\":");
        o = put_ll(o, r->s[tid_slot].i);
    }
    b->n = (size_t)(o - b->p);
    return 0;
}

static PyObject *
or_none(PyObject *o)
{
    return o ? o : Py_None;
}

static PyObject *
opt_int(int has, long long v)
{
    return has ? PyLong_FromLongLong(v) : Py_NewRef(Py_None);
}

static PyObject *
cb_list(const Cb *cbs, Py_ssize_t n)
{
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = Py_BuildValue("(ON)", cbs[i].callback, opt_int(cbs[i].has_awaiter, cbs[i].awaiter));
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
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

/* Hand a future's state to the reference, which writes the rest of its history:
 * it leaves the table now, and is adopted at the end, in order. The tasks that
 * wait on it go too: a cancel of this future, now the reference's, gives its
 * waiters their cause (_convert's CANCELLED), which only the reference's own
 * states can receive. */
static int
hand_over(Ctx *c, Fut *f)
{
    Deferred *d = defer(c);
    if (d == NULL) {
        return -1;
    }
    d->kind = D_ADOPT;
    d->fut = *f; /* its references move along */
    memset(f, 0, sizeof(*f));
    f->fid = d->fut.fid; /* table_remove frees an empty state */
    table_remove(c, &c->w->futs, f);
    const Cb *cbs = d->fut.cbs; /* the deferred's own: it stays while c->dv grows */
    Py_ssize_t n = d->fut.ncb;
    for (Py_ssize_t i = 0; i < n; i++) {
        Fut *waiter = cbs[i].has_awaiter ? table_find(&c->w->futs, cbs[i].awaiter) : NULL;
        if (waiter != NULL && hand_over(c, waiter) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A record for the reference: it joins the run under way, or starts one here. */
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
    Deferred *last = c->nd ? &c->dv[c->nd - 1] : NULL;
    if (last == NULL || last->kind != D_RUN || last->at != c->b.n) {
        if ((last = defer(c)) == NULL) {
            return -1;
        }
        last->from = last->to = c->nidx;
        last->at = c->b.n;
    }
    c->idx[c->nidx++] = i;
    last->to = c->nidx;
    return 0;
}

/* (msg, canceller_id, who) of a cancel, as the reference's _cancel() takes them. */
static PyObject *
cancel_args(const Cancel *k)
{
    PyObject *who;
    if (k->has_who) {
        who = Py_BuildValue("(OLOLOL)", or_none(k->code), k->lasti, or_none(k->ucode), k->ulasti, or_none(k->wcode),
                            k->wlasti);
        if (who == NULL) {
            return NULL;
        }
    }
    else {
        who = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(ONN)", or_none(k->msg), opt_int(k->has_cid, k->cid), who);
}

static PyObject *
adopt(LineWriter *w, const Fut *f)
{
    PyObject *callbacks = cb_list(f->cbs, f->ncb);
    PyObject *scheduled = callbacks ? cb_list(f->sched, f->nsched) : NULL;
    PyObject *args = NULL, *kwargs = NULL, *res = NULL;
    if (scheduled != NULL) {
        args = Py_BuildValue("(LOOOLLOONOON)", f->fid, f->is_task ? Py_True : Py_False, or_none(f->name),
                             or_none(f->code), f->lasti, f->created, callbacks, scheduled,
                             opt_int(f->has_awaiter, f->awaiter), f->done ? Py_True : Py_False, or_none(f->pcode),
                             opt_int(f->has_plasti, f->plasti));
    }
    if (args != NULL && (f->exc != NULL || f->cancel != NULL)) {
        /* what its failure and its cancel left: the reference's state says it too */
        PyObject *cancel = f->cancel ? cancel_args(f->cancel) : Py_NewRef(Py_None);
        kwargs = cancel ? Py_BuildValue("{sOsN}", "failed", or_none(f->exc), "cancel", cancel) : NULL;
        if (kwargs == NULL) {
            Py_CLEAR(args);
        }
    }
    PyObject *method = args ? PyObject_GetAttr(w->helper, s_adopt) : NULL;
    if (method != NULL) {
        res = PyObject_Call(method, args, kwargs);
        Py_DECREF(method);
    }
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(callbacks);
    Py_XDECREF(scheduled);
    return res;
}

/* With the GIL: what was deferred, in order; each run's lines kept for the output. */
static int
run_deferred(Ctx *c)
{
    long long since = 0;
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        Deferred *d = &c->dv[k];
        if (tf_gil_turn_due(&since)) {
            nogil(c); /* the program's turn: see _gil.h */
            tf_gil_pause();
            gil(c);
        }
        if (d->kind != D_RUN) {
            PyObject *res = NULL;
            if (d->kind == D_ADOPT) {
                res = adopt(c->w, &d->fut);
            }
            else {
                PyObject *args = cancel_args(d->fut.cancel);
                PyObject *fid = args ? PyLong_FromLongLong(d->fut.fid) : NULL;
                if (fid != NULL) {
                    res = PyObject_CallMethodObjArgs(c->w->helper, s_cancel_awaiter, fid, PyTuple_GET_ITEM(args, 0),
                                                     PyTuple_GET_ITEM(args, 1), PyTuple_GET_ITEM(args, 2), NULL);
                }
                Py_XDECREF(fid);
                Py_XDECREF(args);
            }
            fut_release(NULL, &d->fut);
            d->kind = D_RUN; /* released: nothing left to free */
            d->from = d->to = 0;
            if (res == NULL) {
                return -1;
            }
            Py_DECREF(res);
            continue;
        }
        PyObject *list = PyList_New(d->to - d->from);
        if (list == NULL) {
            return -1;
        }
        for (Py_ssize_t j = d->from; j < d->to; j++) {
            PyObject *t = rec_tuple(&c->recs[c->idx[j]]);
            if (t == NULL) {
                Py_DECREF(list);
                return -1;
            }
            PyList_SET_ITEM(list, j - d->from, t);
        }
        PyObject *res = PyObject_CallMethodObjArgs(c->w->helper, s_lines, list, NULL);
        Py_DECREF(list);
        if (res == NULL) {
            return -1;
        }
        PyObject *data;
        Py_ssize_t n;
        if (!PyArg_ParseTuple(res, "Sn", &data, &n)) {
            Py_DECREF(res);
            return -1;
        }
        d->data = Py_NewRef(data);
        d->count = n;
        c->count += n;
        Py_DECREF(res);
    }
    return 0;
}

static void
free_deferred(Ctx *c)
{
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        if (c->dv[k].kind != D_RUN) {
            fut_release(NULL, &c->dv[k].fut);
        }
        Py_XDECREF(c->dv[k].data);
    }
    PyMem_RawFree(c->dv);
    PyMem_RawFree(c->idx);
}

static int
add_cb(Table *t, Cb **cbs, Py_ssize_t *n, Py_ssize_t *cap, PyObject *callback, int has_awaiter, long long awaiter)
{
    if (cbs_room(&t->spare, cbs, *n, cap) < 0) {
        return -1;
    }
    (*cbs)[*n].callback = callback; /* the caller owns it for the table */
    (*cbs)[*n].awaiter = awaiter;
    (*cbs)[*n].has_awaiter = has_awaiter;
    (*n)++;
    return 0;
}

/* The state a COLLECTED record names: one of the ring's interned strings, or an equal str. */
static int
is_state(PyObject *state, PyObject *interned)
{
    if (state == interned) {
        return 1;
    }
    return state != NULL && PyUnicode_CheckExact(state) && plain_str(state) && PyUnicode_KIND(state) == 1 &&
           PyUnicode_GET_LENGTH(state) == PyUnicode_GET_LENGTH(interned) &&
           memcmp(PyUnicode_DATA(state), PyUnicode_DATA(interned), (size_t)PyUnicode_GET_LENGTH(interned)) == 0;
}

/* Slot k is an int, or None. */
static inline int
int_or_none(const Rec *r, int k)
{
    return slot_is_int(r, k) || slot_is_none(r, k);
}

/* A (code, lasti) pair as site_of() reads it: no code, or a code and an int. */
static inline int
site_ok(const Rec *r, int code, int lasti)
{
    return slot_is_none(r, code) || (slot_obj(r, code) != NULL && slot_is_int(r, lasti));
}

static int
write_created(Ctx *c, const Rec *r)
{
    LineWriter *w = c->w;
    PyObject *name = slot_obj(r, C_NAME);
    PyObject *code = slot_obj(r, C_CODE), *pcode = slot_obj(r, C_PCODE), *coro = slot_obj(r, C_CORO);
    if ((w->redacts && !slot_is_none(r, C_NAME)) || r->fid == 0 || !slot_is_int(r, C_LASTI) ||
        (name == NULL && !slot_is_none(r, C_NAME)) || (code == NULL && !slot_is_none(r, C_CODE)) ||
        (pcode == NULL && !slot_is_none(r, C_PCODE)) || (coro == NULL && !slot_is_none(r, C_CORO)) ||
        !(slot_is_int(r, C_THREAD_ID) || slot_is_none(r, C_THREAD_ID)) ||
        !(slot_is_int(r, C_PLASTI) || slot_is_none(r, C_PLASTI)) || !slot_is_int(r, C_IS_TASK) ||
        !(slot_is_int(r, C_TASK_ID) || slot_is_none(r, C_TASK_ID))) {
        return 0; /* not as the ring writes it: the reference's */
    }
    long long lasti = r->s[C_LASTI].i;
    int has_plasti = slot_is_int(r, C_PLASTI);
    long long plasti = has_plasti ? r->s[C_PLASTI].i : 0;
    /* The fragments first, while nothing is changed yet. */
    PyObject *site = NULL, *psite = NULL;
    if (code != NULL && (site = fragment(c, &w->sites, s_site_text, code, 1, lasti)) == NULL) {
        return -1;
    }
    if (pcode != NULL && has_plasti &&
        (psite = fragment(c, &w->psites, s_program_site_text, pcode, 1, plasti)) == NULL) {
        return -1;
    }
    Fut *f = table_add(c, &w->futs, r->fid);
    if (f == NULL) {
        return -1;
    }
    f->is_task = r->s[C_IS_TASK].i != 0;
    own(c, name);
    own(c, code);
    own(c, pcode);
    f->name = name;
    f->code = code;
    f->pcode = pcode;
    f->lasti = lasti;
    f->has_plasti = has_plasti;
    f->plasti = plasti;
    f->created = r->ts;
    Buf *b = &c->b;
    if (PUT(b, "{\"kind\":\"created\"") < 0 || put_ids(c, r, C_TASK_ID) < 0 || put_head(c, f) < 0) {
        return -1;
    }
    if (site != NULL && put_fragment(b, site) < 0) {
        return -1;
    }
    if (slot_is_int(r, C_THREAD_ID) && (PUT(b, ",\"thread_id\":") < 0 || buf_ll(b, r->s[C_THREAD_ID].i) < 0)) {
        return -1;
    }
    if (coro != NULL && (PUT(b, ",\"coro\":") < 0 || put_text(c, coro) < 0)) {
        return -1;
    }
    if (f->is_task && slot_is_int(r, C_TASK_ID) &&
        (PUT(b, ",\"parent_id\":") < 0 || buf_ll(b, r->s[C_TASK_ID].i) < 0)) {
        return -1;
    }
    /* The program's line: the same fragment as the site's when it is the same frame. */
    if (end_line(c, psite) < 0) {
        return -1;
    }
    return 1;
}

static int
write_cb_added(Ctx *c, const Rec *r, Fut *f)
{
    PyObject *callback = slot_obj(r, A_CALLBACK);
    int has = slot_is_int(r, A_AWAITER);
    long long awaiter = has ? r->s[A_AWAITER].i : 0;
    if (has) {
        f->has_awaiter = 1;
        f->awaiter = awaiter;
    }
    if (add_cb(&c->w->futs, &f->cbs, &f->ncb, &f->capcb, callback, has, awaiter) < 0) {
        return -1;
    }
    own(c, callback);
    Buf *b = &c->b;
    if ((has ? PUT(b, "{\"kind\":\"awaited\"") : PUT(b, "{\"kind\":\"callback_added\"")) < 0 ||
        put_ids(c, r, A_TASK_ID) < 0 || put_head(c, f) < 0 || PUT(b, ",\"callback\":") < 0 ||
        put_text(c, callback) < 0) {
        return -1;
    }
    if (has && (PUT(b, ",\"awaiter_id\":") < 0 || buf_ll(b, awaiter) < 0)) {
        return -1;
    }
    if (end_line(c, NULL) < 0) {
        return -1;
    }
    return 1;
}

/* set_name() on a task (on 3.11 and 3.12, every name given to create_task()):
 * its head carries the new name from now on, as the reference's state does. */
static int
write_renamed(Ctx *c, const Rec *r, Fut *f)
{
    PyObject *name = slot_obj(r, N_NAME);
    own(c, name);
    disown(c, f->name);
    f->name = name;
    Buf *b = &c->b;
    if (PUT(b, "{\"kind\":\"renamed\"") < 0 || put_ids(c, r, N_TASK_ID) < 0 || put_head(c, f) < 0 ||
        end_line(c, NULL) < 0) {
        return -1;
    }
    return 1;
}

/* remove_done_callback() (asyncio.wait(), and 3.11's wait_for(), call it on
 * every future they waited for): cbs_remove_at() says which callbacks go. */
static int
write_cb_removed(Ctx *c, const Rec *r, Fut *f)
{
    cbs_remove_at(f->cbs, &f->ncb, slot_obj(r, V_INDICES), disown_cb, c);
    PyObject *callback = slot_obj(r, V_CALLBACK);
    Buf *b = &c->b;
    if (PUT(b, "{\"kind\":\"callback_removed\"") < 0 || put_ids(c, r, V_TASK_ID) < 0 || put_head(c, f) < 0) {
        return -1;
    }
    if (callback != NULL && (PUT(b, ",\"callback\":") < 0 || put_text(c, callback) < 0)) {
        return -1;
    }
    return end_line(c, NULL) < 0 ? -1 : 1;
}

/* The future is done (_convert's _finish): every callback it holds is scheduled
 * now, each line the record's ids and head again (the `rest` bytes at `from`). */
static int
finish(Ctx *c, Fut *f, size_t from, size_t rest)
{
    Buf *b = &c->b;
    f->done = 1;
    for (Py_ssize_t i = 0; i < f->nsched; i++) {
        disown(c, f->sched[i].callback);
    }
    cbs_let_go(&c->w->futs.spare, f->sched, f->capsched);
    f->sched = f->cbs;
    f->nsched = f->ncb;
    f->capsched = f->capcb;
    f->cbs = NULL;
    f->ncb = f->capcb = 0;
    for (Py_ssize_t i = 0; i < f->nsched; i++) {
        if (PUT(b, "{\"kind\":\"callback_scheduled\"") < 0 || buf_grow(b, rest) < 0) {
            return -1;
        }
        memcpy(b->p + b->n, b->p + from, rest); /* from is before b->n: the buffer keeps it */
        b->n += rest;
        if (PUT(b, ",\"callback\":") < 0 || put_text(c, f->sched[i].callback) < 0) {
            return -1;
        }
        if (f->sched[i].has_awaiter && (PUT(b, ",\"awaiter_id\":") < 0 || buf_ll(b, f->sched[i].awaiter) < 0)) {
            return -1;
        }
        if (end_line(c, NULL) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The start of an end's line: its kind, then the part that each of its
 * callback_scheduled lines repeats (ids and head), which starts at *from and is
 * *rest bytes long. */
static int
open_end(Ctx *c, Fut *f, const Rec *r, int task_slot, const char *kind, size_t kindlen, size_t *from, size_t *rest)
{
    Buf *b = &c->b;
    if (buf_put(b, kind, kindlen) < 0) {
        return -1;
    }
    *from = b->n;
    if (put_ids(c, r, task_slot) < 0 || put_head(c, f) < 0) {
        return -1;
    }
    *rest = b->n - *from;
    return 0;
}

#define OPEN_END(c, f, r, slot, lit, from, rest) open_end((c), (f), (r), (slot), (lit), sizeof(lit) - 1, (from), (rest))

static int
write_resolved(Ctx *c, const Rec *r, Fut *f)
{
    PyObject *tp = or_none(slot_obj(r, R_TYPE));
    PyObject *result = fragment(c, &c->w->types, s_result_text, tp, 0, 0);
    if (result == NULL) {
        return -1;
    }
    Buf *b = &c->b;
    size_t from, rest;
    if (OPEN_END(c, f, r, R_TASK_ID, "{\"kind\":\"resolved\"", &from, &rest) < 0) {
        return -1;
    }
    if (put_fragment(b, result) < 0 || end_line(c, NULL) < 0) {
        return -1;
    }
    return finish(c, f, from, rest) < 0 ? -1 : 1;
}

/* A site's {...} fragment (borrowed), or NULL with *err 0 when there is none. */
static PyObject *
bare_site(Ctx *c, PyObject *code, long long lasti, int *err)
{
    if (code == NULL) {
        return NULL;
    }
    PyObject *site = fragment(c, &c->w->bare, s_site_json, code, 1, lasti);
    *err = site == NULL;
    return site;
}

/* ,"key":{...} of a site, if any. */
static int
put_site(Buf *b, const char *key, size_t keylen, PyObject *site)
{
    if (site == NULL) {
        return 0;
    }
    return buf_put(b, key, keylen) < 0 || put_fragment(b, site) < 0 ? -1 : 0;
}

#define PUT_SITE(b, lit, site) put_site((b), (lit), sizeof(lit) - 1, (site))

static int
write_failed(Ctx *c, const Rec *r, Fut *f)
{
    LineWriter *w = c->w;
    PyObject *tp = slot_obj(r, E_TYPE);
    int err = 0;
    PyObject *exc = fragment(c, &w->excs, s_exc_type_text, tp, 0, 0);
    if (exc == NULL) {
        return -1;
    }
    PyObject *raised = bare_site(c, slot_obj(r, E_CODE), r->s[E_LASTI].i, &err);
    PyObject *praised = err ? NULL : bare_site(c, slot_obj(r, E_PCODE), r->s[E_PLASTI].i, &err);
    if (err) {
        return -1;
    }
    own(c, tp); /* the exception's type names an unretrieved one too */
    disown(c, f->exc);
    f->exc = tp;
    Buf *b = &c->b;
    size_t from, rest;
    if (OPEN_END(c, f, r, E_TASK_ID, "{\"kind\":\"failed\"", &from, &rest) < 0) {
        return -1;
    }
    if (put_fragment(b, exc) < 0 || PUT_SITE(b, ",\"raise_site\":", raised) < 0 ||
        PUT_SITE(b, ",\"raise_program_site\":", praised) < 0 || end_line(c, NULL) < 0) {
        return -1;
    }
    return finish(c, f, from, rest) < 0 ? -1 : 1;
}

/* A cancel record's cause (its references owned), or NULL: out of memory. */
static Cancel *
cancel_of(Ctx *c, const Rec *r)
{
    Cancel *k = PyMem_RawCalloc(1, sizeof(Cancel));
    if (k == NULL) {
        return NULL;
    }
    k->msg = slot_obj(r, K_MSG);
    k->has_cid = slot_is_int(r, K_TASK_ID);
    k->cid = k->has_cid ? r->s[K_TASK_ID].i : 0;
    if (r->flags & F_WHO) {
        k->has_who = 1;
        k->code = slot_obj(r, K_CODE);
        k->ucode = slot_obj(r, K_UCODE);
        k->wcode = slot_obj(r, K_WCODE);
        k->lasti = slot_is_int(r, K_LASTI) ? r->s[K_LASTI].i : 0;
        k->ulasti = slot_is_int(r, K_ULASTI) ? r->s[K_ULASTI].i : 0;
        k->wlasti = slot_is_int(r, K_WLASTI) ? r->s[K_WLASTI].i : 0;
    }
    own(c, k->msg);
    own(c, k->code);
    own(c, k->ucode);
    own(c, k->wcode);
    return k;
}

/* What a cancelled future gives a waiter that has no cause yet: the same, but
 * where the waiter waited is not where the future's canceller's task did. */
static Cancel *
cancel_for_waiter(Ctx *c, const Cancel *from)
{
    Cancel *k = PyMem_RawMalloc(sizeof(Cancel));
    if (k == NULL) {
        return NULL;
    }
    *k = *from;
    k->wcode = NULL;
    k->wlasti = 0;
    own(c, k->msg);
    own(c, k->code);
    own(c, k->ucode);
    return k;
}

/* ,"msg":..,"canceller_id":..,"canceller":..,"waiting_site":.. of a cause (its
 * fragments looked up first, by the caller). */
static int
put_cancel(Ctx *c, const Cancel *k, PyObject *canceller, PyObject *waiting)
{
    Buf *b = &c->b;
    if (k->msg != NULL && (PUT(b, ",\"msg\":") < 0 || put_text(c, k->msg) < 0)) {
        return -1;
    }
    if (k->has_cid && (PUT(b, ",\"canceller_id\":") < 0 || buf_ll(b, k->cid) < 0)) {
        return -1;
    }
    if (canceller != NULL && put_fragment(b, canceller) < 0) {
        return -1;
    }
    return PUT_SITE(b, ",\"waiting_site\":", waiting);
}

/* The fragments of a cause: ,"canceller":"..." (empty when caller_text has
 * none) and where a task waited. */
static int
cancel_fragments(Ctx *c, const Cancel *k, PyObject **canceller, PyObject **waiting)
{
    int err = 0;
    *canceller = *waiting = NULL;
    if (k->has_who && k->code != NULL &&
        (*canceller = fragment_of(c, &c->w->callers, s_canceller_text, 4, k->code, k->lasti, k->ucode, k->ulasti)) ==
            NULL) {
        return -1;
    }
    *waiting = bare_site(c, k->wcode, k->wlasti, &err);
    return err ? -1 : 0;
}

/* CANCELLED and CANCEL_REQ, as _convert writes them: a request's record gives the
 * task its cause; a cancelled future's too when it has a canceller (or no cause
 * yet); the waiters of a cancelled future that have none get its cause. */
static int
write_cancel(Ctx *c, const Rec *r, Fut *f)
{
    int cancelled = r->op == OP_CANCELLED;
    Cancel *k = f->cancel;
    if (!cancelled || (r->flags & F_WHO) || k == NULL) {
        if ((k = cancel_of(c, r)) == NULL) {
            return -1;
        }
        cancel_free(c, f->cancel);
        f->cancel = k;
    }
    PyObject *canceller, *waiting;
    if (cancel_fragments(c, k, &canceller, &waiting) < 0) {
        return -1;
    }
    size_t from, rest;
    if ((cancelled ? OPEN_END(c, f, r, K_TASK_ID, "{\"kind\":\"cancelled\"", &from, &rest)
                   : OPEN_END(c, f, r, K_TASK_ID, "{\"kind\":\"cancel_requested\"", &from, &rest)) < 0) {
        return -1;
    }
    if (put_cancel(c, k, canceller, waiting) < 0 || end_line(c, NULL) < 0) {
        return -1;
    }
    if (!cancelled) {
        return 1;
    }
    if (finish(c, f, from, rest) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < f->nsched; i++) {
        if (!f->sched[i].has_awaiter) {
            continue;
        }
        Fut *waiter = table_find(&c->w->futs, f->sched[i].awaiter);
        if (waiter != NULL) {
            if (waiter->cancel == NULL && (waiter->cancel = cancel_for_waiter(c, k)) == NULL) {
                return -1;
            }
            continue;
        }
        /* Not ours: the reference's, maybe, which gives it the cause then, in order. */
        Deferred *d = defer(c);
        if (d == NULL) {
            return -1;
        }
        d->kind = D_CANCEL;
        d->fut.fid = f->sched[i].awaiter;
        if ((d->fut.cancel = cancel_for_waiter(c, k)) == NULL) {
            return -1;
        }
    }
    return 1;
}

/* A future collected pending (abandoned) or with its exception never retrieved
 * (unretrieved): its site and age, and the table lets it go. */
static int
write_collected(Ctx *c, const Rec *r, Fut *f, int unretrieved)
{
    LineWriter *w = c->w;
    PyObject *site = NULL, *psite = NULL, *exc = NULL;
    if (f->code != NULL && (site = fragment(c, &w->sites, s_site_text, f->code, 1, f->lasti)) == NULL) {
        return -1;
    }
    if (f->pcode != NULL && f->has_plasti &&
        (psite = fragment(c, &w->psites, s_program_site_text, f->pcode, 1, f->plasti)) == NULL) {
        return -1;
    }
    if (unretrieved && f->exc != NULL && (exc = fragment(c, &w->excs, s_exc_type_text, f->exc, 0, 0)) == NULL) {
        return -1;
    }
    Buf *b = &c->b;
    if ((unretrieved ? PUT(b, "{\"kind\":\"unretrieved\",\"future_id\":")
                     : PUT(b, "{\"kind\":\"abandoned\",\"future_id\":")) < 0 ||
        buf_ll(b, r->fid) < 0 || PUT(b, ",\"ts_ns\":") < 0 || buf_ts(b, &c->sec, r->ts) < 0 || put_head(c, f) < 0) {
        return -1;
    }
    if (site != NULL && put_fragment(b, site) < 0) {
        return -1;
    }
    if (f->has_awaiter && (PUT(b, ",\"awaiter_id\":") < 0 || buf_ll(b, f->awaiter) < 0)) {
        return -1;
    }
    if (exc != NULL && put_fragment(b, exc) < 0) {
        return -1;
    }
    if (PUT(b, ",\"age_ns\":") < 0 || buf_ll(b, r->ts - f->created) < 0) {
        return -1;
    }
    if (end_line(c, psite) < 0) {
        return -1;
    }
    table_remove(c, &w->futs, f);
    return 1;
}

/* One record: 1 when written here, 0 when it is the reference's, -1 on error. */
static int
write_record(Ctx *c, const Rec *r)
{
    LineWriter *w = c->w;
    if (r->flags & F_RAW) {
        /* A mark, a lint, a tuple of another shape: a future held here is the
         * reference's from now on (it writes incomplete for a mark). */
        Fut *f = table_find(&w->futs, r->fid);
        if (f != NULL && hand_over(c, f) < 0) {
            return -1;
        }
        return 0;
    }
    if (r->op == OP_CREATED) {
        return write_created(c, r);
    }
    Fut *f = table_find(&w->futs, r->fid);
    if (f == NULL) {
        /* The reference's, or nobody's. A task of ours that waits on it goes to
         * the reference too: the cause a cancel of this future gives it is the
         * reference's to give. */
        Fut *waiter = r->op == OP_CB_ADDED && slot_is_int(r, A_AWAITER) ? table_find(&w->futs, r->s[A_AWAITER].i)
                                                                        : NULL;
        if (waiter != NULL && hand_over(c, waiter) < 0) {
            return -1;
        }
        return 0;
    }
    switch (r->op) {
    case OP_COLLECTED: {
        int incomplete;
        if (slot_is_int(r, X_INCOMPLETE)) {
            incomplete = r->s[X_INCOMPLETE].i != 0;
        }
        else if (slot_obj(r, X_INCOMPLETE) != NULL) {
            gil(c);
            if ((incomplete = PyObject_IsTrue(slot_obj(r, X_INCOMPLETE))) < 0) {
                return -1;
            }
        }
        else {
            incomplete = 0;
        }
        PyObject *state = slot_obj(r, X_STATE);
        if (incomplete) {
            break;
        }
        if (is_state(state, s_FINISHED) || is_state(state, s_CANCELLED)) { /* nothing to say */
            table_remove(c, &w->futs, f);
            return 1;
        }
        if (is_state(state, s_UNRETRIEVED) || is_state(state, s_PENDING)) {
            return write_collected(c, r, f, is_state(state, s_UNRETRIEVED));
        }
        break;
    }
    case OP_CB_ADDED:
        if (!f->done && slot_obj(r, A_CALLBACK) != NULL && PyUnicode_Check(slot_obj(r, A_CALLBACK)) &&
            int_or_none(r, A_AWAITER) && int_or_none(r, A_TASK_ID)) {
            return write_cb_added(c, r, f);
        }
        break;
    case OP_RESOLVED:
        if (slot_is_none(r, R_VALUE) && int_or_none(r, R_TASK_ID)) {
            return write_resolved(c, r, f);
        }
        break;
    case OP_CB_REMOVED: {
        /* positions of another shape (not small ints in a tuple) are the reference's */
        PyObject *callback = slot_obj(r, V_CALLBACK);
        if (int_or_none(r, V_TASK_ID) &&
            (slot_is_none(r, V_CALLBACK) || (callback != NULL && PyUnicode_Check(callback))) &&
            removed_indices_ok(slot_obj(r, V_INDICES))) {
            return write_cb_removed(c, r, f);
        }
        break;
    }
    case OP_RENAMED:
        /* a name goes through redact, the reference's */
        if (int_or_none(r, N_TASK_ID) && (slot_is_none(r, N_NAME) || (slot_obj(r, N_NAME) != NULL && !w->redacts))) {
            return write_renamed(c, r, f);
        }
        break;
    case OP_FAILED:
        /* a message (capture_values) is the reference's: it decides and redacts */
        if (slot_obj(r, E_TYPE) != NULL && slot_is_none(r, E_MSG) && int_or_none(r, E_TASK_ID) &&
            site_ok(r, E_CODE, E_LASTI) && site_ok(r, E_PCODE, E_PLASTI)) {
            return write_failed(c, r, f);
        }
        break;
    case OP_CANCELLED:
    case OP_CANCEL_REQ: {
        /* a message goes through redact, the reference's */
        PyObject *msg = slot_obj(r, K_MSG);
        if (int_or_none(r, K_TASK_ID) && (slot_is_none(r, K_MSG) || (msg != NULL && plain_str(msg) && !w->redacts)) &&
            (!(r->flags & F_WHO) ||
             (site_ok(r, K_CODE, K_LASTI) && site_ok(r, K_UCODE, K_ULASTI) && site_ok(r, K_WCODE, K_WLASTI)))) {
            return write_cancel(c, r, f);
        }
        break;
    }
    default:
        break;
    }
    /* Anything else: the future is the reference's from now on. */
    return hand_over(c, f) < 0 ? -1 : 0;
}

/* The output: the writer's bytes with each run's lines put where it came.
 * Called with the GIL; a large output is copied with it released, and left so. */
static PyObject *
assemble(Ctx *c)
{
    size_t total = c->b.n;
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        if (c->dv[k].data != NULL) {
            total += (size_t)PyBytes_GET_SIZE(c->dv[k].data);
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out == NULL) {
        return NULL;
    }
    int release = total >= COPY_WITHOUT_GIL;
    if (release) {
        nogil(c); /* out is ours alone until returned; the pieces are immutable */
    }
    char *o = PyBytes_AS_STRING(out);
    size_t done = 0;
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        Deferred *d = &c->dv[k];
        if (d->data == NULL) {
            continue;
        }
        if (d->at > done) { /* the writer's own lines before it (none: b.p may be NULL) */
            memcpy(o, c->b.p + done, d->at - done);
            o += d->at - done;
            done = d->at;
        }
        memcpy(o, PyBytes_AS_STRING(d->data), (size_t)PyBytes_GET_SIZE(d->data));
        o += PyBytes_GET_SIZE(d->data);
    }
    if (c->b.n > done) {
        memcpy(o, c->b.p + done, c->b.n - done);
    }
    return out; /* the GIL maybe released: the caller takes it back when it is done */
}

/* The most output buffer a writer keeps between calls (a batch of some 50,000
 * records), so that an idle writer holds little. */
#define KEEP_BUFFER ((size_t)8 << 20)

/* Whether the output is the writer's buffer alone: no run of the reference's
 * has lines to put in it. */
static int
buffer_only(const Ctx *c)
{
    for (Py_ssize_t k = 0; k < c->nd; k++) {
        if (c->dv[k].data != NULL) {
            return 0;
        }
    }
    return 1;
}

/* The batch's lines appended to fd, written as they were made: with the GIL
 * released from the first record to the last byte (the reference's runs, and
 * first-seen fragments, excepted), and taken back once, at the end. Returns
 * (count, written, None, None), or (count, written, error, data) when a write
 * failed: the OSError, and the lines it was writing (written of their bytes
 * went through), from which the exporter keeps the whole lines. */
static PyObject *
write_out(Ctx *c, int fd)
{
    PyObject *joined = NULL;
    const char *p = c->b.p;
    size_t len = c->b.n;
    if (!buffer_only(c)) {
        gil(c); /* held already (the reference's runs were written): assemble makes a bytes object */
        if ((joined = assemble(c)) == NULL) {
            return NULL;
        }
        p = PyBytes_AS_STRING(joined);
        len = (size_t)PyBytes_GET_SIZE(joined);
    }
    nogil(c);
    size_t done = 0;
    int err = 0;
    while (done < len) {
        ssize_t k = write(fd, p + done, len - done);
        if (k < 0) {
            if (errno == EINTR) {
                continue; /* os.write retries too (PEP 475); a handler runs on the main thread */
            }
            err = errno;
            break;
        }
        done += (size_t)k;
    }
    gil(c);
    if (err == 0) {
        Py_XDECREF(joined);
        return Py_BuildValue("(nnOO)", c->count, (Py_ssize_t)done, Py_None, Py_None);
    }
    /* What os.write raises: OSError(errno, strerror) is made the errno's subclass. */
    PyObject *error = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    PyObject *data = joined != NULL ? joined : PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
    if (error == NULL || data == NULL) {
        Py_XDECREF(error);
        Py_XDECREF(data);
        return NULL;
    }
    return Py_BuildValue("(nnNN)", c->count, (Py_ssize_t)done, error, data);
}

/* The most output buffer a writer keeps between calls (a batch of some 50,000
 * records), so that an idle writer holds little. */
#define KEEP_BUFFER ((size_t)8 << 20)

/* lines(records), or write(records, fd) with fd >= 0. */
static PyObject *
writer_run(LineWriter *self, PyObject *records, int fd)
{
    if (self->helper == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "LineWriter() was not initialised");
        return NULL;
    }
    if (self->busy == (long)getpid()) {
        PyErr_SetString(PyExc_RuntimeError, "LineWriter is already writing (one call at a time)");
        return NULL;
    }
    PyObject *batch = tf_batch_of(records);
    if (batch == NULL) {
        return NULL;
    }
    const Rec *recs;
    Py_ssize_t n;
    tf_batch_view(batch, &recs, &n);
    self->busy = (long)getpid();
    Ctx c;
    memset(&c, 0, sizeof(c));
    c.w = self;
    c.recs = recs;
    c.sec.from = -1;
    /* The last call's buffer, taken for this one: growing a new one batch after
     * batch costs page faults and copies (and, freed, another thread's TLB). */
    c.b = self->out;
    c.b.n = 0;
    memset(&self->out, 0, sizeof(Buf));
    PyObject *result = NULL, *data = NULL;
    /* The batch holds every object its records name, and nothing else touches
     * it or this writer's state meanwhile: the GIL can go. */
    nogil(&c);
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = write_record(&c, &recs[i]);
        if (rc < 0 || (rc == 0 && add_pending(&c, i) < 0)) {
            goto done;
        }
        nogil(&c); /* after a first-seen site or type */
    }
    if (c.nd > 0) {
        gil(&c); /* the reference's share (none in a usual batch) */
        if (run_deferred(&c) < 0) {
            goto done;
        }
    }
    if (fd >= 0) {
        result = write_out(&c, fd);
    }
    else {
        gil(&c); /* assemble makes the bytes object */
        if ((data = assemble(&c)) != NULL) {
            gil(&c);
            result = Py_BuildValue("(Nn)", data, c.count);
        }
    }
done:
    gil(&c);
    if (result == NULL && !PyErr_Occurred()) {
        PyErr_NoMemory(); /* what failed could not say so without the GIL */
    }
    free_deferred(&c);
    self->busy = 0;
    if (c.b.cap <= KEEP_BUFFER) {
        self->out = c.b;
    }
    else {
        PyMem_RawFree(c.b.p); /* an unusually large batch: its memory is not kept */
    }
    Py_DECREF(batch);
    return result;
}

static PyObject *
writer_lines(LineWriter *self, PyObject *records)
{
    return writer_run(self, records, -1);
}

static PyObject *
writer_write(LineWriter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "write() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(args[1]);
    if (fd < 0) {
        return NULL;
    }
    return writer_run(self, args[0], fd);
}

static PyObject *
writer_clear(LineWriter *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy == (long)getpid()) {
        PyErr_SetString(PyExc_RuntimeError, "LineWriter.clear() while lines() is running");
        return NULL;
    }
    if (self->busy) {
        /* The child of a fork() made while the parent's writer ran without the
         * GIL: its table may be half-changed and its queued references were
         * never settled. Left as they are (a leak, once), never freed. */
        memset(&self->futs, 0, sizeof(Table));
        memset(&self->inc, 0, sizeof(RefQueue));
        memset(&self->dec, 0, sizeof(RefQueue));
        self->busy = 0;
    }
    table_clear(&self->futs);
    if (self->helper != NULL) {
        return PyObject_CallMethodNoArgs(self->helper, s_clear);
    }
    Py_RETURN_NONE;
}

static PyObject *
writer_len(LineWriter *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(self->futs.keys.used);
}

static PyMethodDef writer_methods[] = {
    {"lines", (PyCFunction)writer_lines, METH_O,
     "The lines of records (a RecordBatch, or a sequence of record tuples; UTF-8, each newline-terminated) "
     "and how many: Lines.lines, compiled."},
    {"write", (PyCFunction)(void (*)(void))writer_write, METH_FASTCALL,
     "write(records, fd) -> (count, written, error, data): the lines of records appended to the file "
     "descriptor fd in the same call, the GIL released throughout (Lines.write, compiled)."},
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
    LINES_INTERN(s_program_site_text, "program_site_text");
    LINES_INTERN(s_lines, "lines");
    LINES_INTERN(s_text, "text");
    LINES_INTERN(s_site_text, "site_text");
    LINES_INTERN(s_result_text, "result_text");
    LINES_INTERN(s_clear, "clear");
    LINES_INTERN(s_FINISHED, "FINISHED");
    LINES_INTERN(s_CANCELLED, "CANCELLED");
    LINES_INTERN(s_UNRETRIEVED, "UNRETRIEVED");
    LINES_INTERN(s_PENDING, "PENDING");
    LINES_INTERN(s_site_json, "site_json");
    LINES_INTERN(s_exc_type_text, "exc_type_text");
    LINES_INTERN(s_canceller_text, "canceller_text");
    LINES_INTERN(s_cancel_awaiter, "cancel_awaiter");
    LINES_INTERN(s_adopt, "adopt");
    static const struct {
        int op, index;
        const char *name;
    } read[] = {
        {OP_CREATED, C_TASK_ID, "task_id"}, {OP_CREATED, C_IS_TASK, "is_task"},
        {OP_CREATED, C_CODE, "code"},       {OP_CREATED, C_LASTI, "lasti"},
        {OP_CREATED, C_THREAD_ID, "thread_id"}, {OP_CREATED, C_NAME, "name"},
        {OP_CREATED, C_CORO, "coro"},       {OP_CREATED, C_PCODE, "program_code"},
        {OP_CREATED, C_PLASTI, "program_lasti"}, {OP_CB_ADDED, A_TASK_ID, "task_id"},
        {OP_CB_ADDED, A_CALLBACK, "callback_name"}, {OP_CB_ADDED, A_AWAITER, "awaiter_id"},
        {OP_RESOLVED, R_TASK_ID, "task_id"}, {OP_RESOLVED, R_TYPE, "result_type"},
        {OP_RESOLVED, R_VALUE, "value_repr"}, {OP_COLLECTED, X_STATE, "state"},
        {OP_COLLECTED, X_INCOMPLETE, "incomplete"}, {OP_FAILED, E_TASK_ID, "task_id"},
        {OP_FAILED, E_TYPE, "exc_type"}, {OP_FAILED, E_MSG, "exc_msg"},
        {OP_FAILED, E_CODE, "raise_code"}, {OP_FAILED, E_LASTI, "raise_lasti"},
        {OP_FAILED, E_PCODE, "raise_program_code"}, {OP_FAILED, E_PLASTI, "raise_program_lasti"},
        {OP_CANCELLED, K_TASK_ID, "task_id"}, {OP_CANCELLED, K_MSG, "msg"},
        {OP_CANCELLED, 2, "who"}, {OP_CANCEL_REQ, K_TASK_ID, "task_id"},
        {OP_CANCEL_REQ, K_MSG, "msg"}, {OP_CANCEL_REQ, 2, "who"},
        {OP_RENAMED, N_TASK_ID, "task_id"}, {OP_RENAMED, N_NAME, "name"},
        {OP_CB_REMOVED, V_TASK_ID, "task_id"}, {OP_CB_REMOVED, V_CALLBACK, "callback_name"},
        {OP_CB_REMOVED, V_INDICES, "removed_indices"},
    };
    for (size_t i = 0; i < sizeof(read) / sizeof(read[0]); i++) {
        if (tf_check_field(read[i].op, read[i].index, read[i].name) < 0) {
            return -1;
        }
    }
    PyObject *tp = PyType_FromModuleAndSpec(module, &writer_spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "LineWriter", tp);
    Py_DECREF(tp);
    return rc;
}
