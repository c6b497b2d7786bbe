/* tracedfuture._core._cfuture.TailPolicy: tail sampling, decided on raw records
 * in C.
 *
 * The twin of tracedfuture/_pipeline/_tail.py's TailPolicy, which is the
 * reference and says what is decided and why (read it first): the same state
 * (held futures, undecided and lingering ones in order, the kept set, the
 * creation times), the same steps in the same order, so that both keep the same
 * records. Here the records are structs read in place (a RecordBatch, or tuples
 * read into structs); a held future's records are copies holding their
 * references; nothing is a Python object until a kept future's records leave as
 * a RecordBatch. A healthy program, whose futures are all forgotten, makes no
 * Python object at all, and holds none the collector must traverse.
 *
 * feed() and flush() work with the GIL released: the program's thread runs
 * while the drain thread samples. Without the GIL no Python object may be
 * touched, so the references that held records take or drop meanwhile are
 * queued, netted per object (Refs: a batch's records name the same few code
 * objects, types and strings over and over, so its thousands of changes come
 * to a few), and applied, increments first, when the GIL is back at the end of
 * the call: every object involved is alive until then (the batch holds what its
 * records name, the policy what it held). Memory is PyMem_Raw, callable
 * without the GIL, and nothing here sets an exception without it (an
 * allocation that fails returns -1; the call raises MemoryError once it has the
 * GIL back). A record that must be read as an object (a tuple, F_RAW; a state
 * that is not one of the core's interned strings) takes the GIL back for the
 * rest of the call. A lock, not the GIL, keeps calls one at a time.
 *
 * Compiled into the _cfuture extension (setup.py); _cfuture.c calls
 * tf_tail_add_type() once at import. _pipeline._tail.make_tail picks it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pythread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "_records.h"
#include "_gil.h" /* the GIL taken back at the program's next traced future, not a switch interval later */

/* ------------------------------------------------------------------------ */
/* A held future                                                            */

/* The orders the reference's dicts keep. (Its dict of every held future is the
 * table alone: its order would only be read to forget the oldest future when
 * none is lingering or undecided, and the future just held is undecided.) */
enum { L_LINGERING, L_UNDECIDED, NLISTS };

struct Held;

typedef struct {
    struct Held *prev, *next;
    int in;
} Node;

typedef struct {
    struct Held *head, *tail;
    Py_ssize_t n;
} List;

/* ------------------------------------------------------------------------ */
/* The policy's state                                                        */

typedef struct {
    long long created_ns, fid;
} Born;

/* References taken (delta > 0) or dropped (< 0) during a call, per object:
 * open addressing on the pointer, emptied when applied. */
typedef struct {
    PyObject *o; /* NULL: empty */
    Py_ssize_t delta;
} RefSlot;

/* In front of the table, a few slots by the pointer's bits, where most
 * changes land: a batch's records name the same few objects again and again. */
#define REFS_FRONT 64

typedef struct {
    RefSlot front[REFS_FRONT];
    RefSlot *slots;  /* PyMem_Raw */
    size_t *filled;  /* the slots in use, as filled: what is applied (not the whole table, kept between calls) */
    size_t cap, used;
} Refs;

typedef struct {
    PyObject_HEAD
    long long slow_ns;
    Py_ssize_t linger, max_held;
    long long forgotten;
    FidMap items;
    List lists[NLISTS];
    FidSet kept;
    Born *born; /* a ring: [born_head, born_head + nborn) modulo capborn */
    Py_ssize_t born_head, nborn, capborn;
    struct Slab *room; /* slabs with a Held to hand out, the last one given room first */
    Py_ssize_t nempty; /* slabs of room whose every Held is let go */
    /* One call at a time: lock held by the thread `owner` of process `owner_pid`. */
    PyThread_type_lock lock;
    unsigned long owner;
    long owner_pid;
    int calling;         /* a call is under way: reference changes go to refs */
    int keep_gil;        /* this call read a record as an object: it keeps the GIL */
    PyThreadState *save; /* non-NULL: this call released the GIL */
    Refs refs;
} TailObject;

static int
refs_grow(Refs *r)
{
    size_t cap = r->cap ? r->cap * 2 : 1024;
    RefSlot *slots = PyMem_RawCalloc(cap, sizeof(RefSlot));
    size_t *filled = PyMem_RawMalloc(cap / 2 * sizeof(size_t)); /* used stays below cap / 2 */
    if (slots == NULL || filled == NULL) {
        PyMem_RawFree(slots);
        PyMem_RawFree(filled);
        return -1;
    }
    for (size_t k = 0; k < r->used; k++) {
        RefSlot *old = &r->slots[r->filled[k]];
        size_t j = tf_hash(old->o, 0) & (cap - 1);
        while (slots[j].o != NULL) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = *old;
        filled[k] = j;
    }
    PyMem_RawFree(r->slots);
    PyMem_RawFree(r->filled);
    r->slots = slots;
    r->filled = filled;
    r->cap = cap;
    return 0;
}

static int
refs_table(Refs *r, PyObject *o, Py_ssize_t delta)
{
    if ((r->used + 1) * 2 > r->cap && refs_grow(r) < 0) {
        return -1;
    }
    size_t mask = r->cap - 1;
    for (size_t i = tf_hash(o, 0) & mask;; i = (i + 1) & mask) {
        if (r->slots[i].o == o) {
            r->slots[i].delta += delta;
            return 0;
        }
        if (r->slots[i].o == NULL) {
            r->slots[i].o = o;
            r->slots[i].delta = delta;
            r->filled[r->used++] = i;
            return 0;
        }
    }
}

/* Queues a change of o's reference count: -1 when there is no room for it. */
static inline int
refs_note(Refs *r, PyObject *o, Py_ssize_t delta)
{
    RefSlot *f = &r->front[((uintptr_t)o >> 4) & (REFS_FRONT - 1)];
    if (f->o == o) {
        f->delta += delta;
        return 0;
    }
    if (f->o != NULL && f->delta != 0 && refs_table(r, f->o, f->delta) < 0) {
        return -1; /* f kept as it was */
    }
    f->o = o;
    f->delta = delta;
    return 0;
}

/* The most slots a policy keeps between calls (a batch naming some 16,000 objects). */
#define KEEP_REFS 32768

/* With the GIL: the queued changes, increments first (a decrement may free an
 * object, and run its finalizer). */
static void
refs_increment(RefSlot *slot)
{
    for (Py_ssize_t d = slot->delta; d > 0; d--) {
        Py_INCREF(slot->o);
    }
}

static void
refs_decrement(RefSlot *slot)
{
    PyObject *o = slot->o;
    Py_ssize_t d = slot->delta;
    slot->o = NULL;
    slot->delta = 0;
    for (; d < 0; d++) {
        Py_DECREF(o);
    }
}

static void
refs_apply(Refs *r)
{
    for (size_t i = 0; i < REFS_FRONT; i++) {
        refs_increment(&r->front[i]);
    }
    for (size_t k = 0; k < r->used; k++) {
        refs_increment(&r->slots[r->filled[k]]);
    }
    for (size_t i = 0; i < REFS_FRONT; i++) {
        refs_decrement(&r->front[i]);
    }
    for (size_t k = 0; k < r->used; k++) {
        refs_decrement(&r->slots[r->filled[k]]);
    }
    r->used = 0;
    if (r->cap > KEEP_REFS) {
        PyMem_RawFree(r->slots);
        PyMem_RawFree(r->filled);
        r->slots = NULL;
        r->filled = NULL;
        r->cap = 0;
    }
}

/* Take the GIL back, if this call released it. */
static void
gil(TailObject *p)
{
    if (p->save != NULL) {
        tf_gil_restore(p->save);
        p->save = NULL;
    }
}

static void
nogil(TailObject *p)
{
    if (p->save == NULL && !p->keep_gil) {
        p->save = tf_gil_release();
    }
}

/* A reference for the policy's state (o alive: the batch holds it). */
static void
own(TailObject *p, PyObject *o)
{
    if (o != NULL && !(p->calling && refs_note(&p->refs, o, +1) == 0)) {
        gil(p); /* no room to queue it: done now */
        Py_INCREF(o);
    }
}

static void
disown(TailObject *p, PyObject *o)
{
    if (o != NULL && !(p->calling && refs_note(&p->refs, o, -1) == 0)) {
        gil(p);
        Py_DECREF(o);
    }
}

/* recs_room and recs_copy (_records.h) without the GIL: -1 when out of memory, nothing set. */
static int
out_room(Recs *out, Py_ssize_t more)
{
    if (out->n + more <= out->cap) {
        return 0;
    }
    Py_ssize_t cap = out->cap ? out->cap : 16;
    while (cap < out->n + more) {
        cap *= 2;
    }
    Rec *recs = PyMem_RawRealloc(out->recs, (size_t)cap * sizeof(Rec));
    if (recs == NULL) {
        return -1;
    }
    out->recs = recs;
    out->cap = cap;
    return 0;
}

static int
out_copy(TailObject *p, Recs *out, const Rec *r)
{
    if (out_room(out, 1) < 0) {
        return -1;
    }
    Rec *copy = &out->recs[out->n++];
    *copy = *r;
    for (unsigned mask = r->objmask, k = 0; mask != 0; k++, mask >>= 1) {
        if (mask & 1u) {
            own(p, copy->s[k].o);
        }
    }
    return 0;
}

/* A held record, packed: the fields of a Rec but its id (its future's) and
 * only the slots it uses. A future's records are one run of these, inline in
 * its Held while they fit (a future's usual history does), so that holding a
 * healthy future is one allocation of a few hundred bytes, not a Rec (120
 * bytes, most of them empty slots) per record in an array of its own. */
typedef struct {
    unsigned char op, nfields, flags, nslots;
    unsigned short objmask, nonemask, boolmask, pad;
    long long ts;
    Slot s[];
} Packed;

#define INLINE_LINKS 4   /* a future's awaiters, a task's awaited: usually one or two */
#define INLINE_BYTES 304 /* CREATED, two CB_ADDED, RESOLVED and COLLECTED, packed: a Held of 512 bytes */

typedef struct Held {
    /* The first cache line: all that a pin, or letting a pin go, touches of a
     * future other than the one a record is about (a task's ten awaited
     * futures at its end, cold by then), its place among the lingering first.
     * A Held starts a cache line (its slab's are aligned), so that this is one
     * line, not two, and its records are in as few as they can be. */
    _Alignas(64) long long fid;
    long long pins, created_ns, parent;
    int has_parent, done;
    Node nodes[NLISTS];
    long long *links; /* in the order added; 0: discarded; inline_links until it grows */
    Py_ssize_t nlinks, caplinks;
    FidSet linkset; /* membership, once there are many links */
    unsigned char *data; /* its records, packed, in order, each holding its references */
    uint32_t len, cap, nrecs, collected; /* collected: it has a COLLECTED record */
    uint32_t holes;                      /* links let go (0s in links) since it was last compacted */
    struct Slab *slab;                   /* where it lives */
    long long inline_links[INLINE_LINKS];
    _Alignas(8) unsigned char inline_data[INLINE_BYTES];
} Held;

static inline size_t
packed_size(unsigned nslots)
{
    return sizeof(Packed) + (size_t)nslots * sizeof(Slot);
}

/* The slots r uses: its fields', and any a mask names (a raw record's tuple,
 * the who of a cancel: all of them, they are rare). */
static inline unsigned
rec_nslots(const Rec *r)
{
    if (r->flags & (F_RAW | F_WHO)) {
        return NSLOT;
    }
    unsigned mask = (unsigned)(r->objmask | r->nonemask | r->boolmask), n = r->nfields;
    if (mask >> n) {
        n = 32u - (unsigned)__builtin_clz(mask); /* past its highest bit */
    }
    return n < NSLOT ? n : NSLOT;
}

/* Appends a copy of r (which is h's) with its own references. */
static int
held_push(TailObject *pol, Held *h, const Rec *r)
{
    unsigned nslots = rec_nslots(r);
    size_t size = packed_size(nslots);
    if (h->len + size > h->cap) {
        size_t cap = h->cap * 2;
        while (cap < h->len + size) {
            cap *= 2;
        }
        unsigned char *data = h->data == h->inline_data ? PyMem_RawMalloc(cap) : PyMem_RawRealloc(h->data, cap);
        if (data == NULL) {
            return -1;
        }
        if (h->data == h->inline_data) {
            memcpy(data, h->inline_data, h->len);
        }
        h->data = data;
        h->cap = (uint32_t)cap;
    }
    Packed *p = (Packed *)(h->data + h->len);
    p->op = r->op;
    p->nfields = r->nfields;
    p->flags = r->flags;
    p->nslots = (unsigned char)nslots;
    p->objmask = r->objmask;
    p->nonemask = r->nonemask;
    p->boolmask = r->boolmask;
    p->pad = 0;
    p->ts = r->ts;
    for (unsigned k = 0; k < nslots; k++) { /* a few words: no call to memcpy */
        p->s[k] = r->s[k];
    }
    for (unsigned mask = r->objmask; mask != 0; mask &= mask - 1) {
        own(pol, p->s[__builtin_ctz(mask)].o);
    }
    h->len += (uint32_t)size;
    h->nrecs++;
    h->collected |= r->op == OP_COLLECTED;
    return 0;
}

#define HELD_EACH(h, p) \
    for (Packed *p = (Packed *)(h)->data; (unsigned char *)p < (h)->data + (h)->len; \
         p = (Packed *)((unsigned char *)p + packed_size(p->nslots)))

/* The held records as Recs, moved (references and all) into out[0..nrecs). */
static void
held_unpack(Held *h, Rec *out)
{
    Rec *r = out;
    HELD_EACH(h, p)
    {
        memset(r, 0, sizeof(*r));
        r->op = p->op;
        r->nfields = p->nfields;
        r->flags = p->flags;
        r->objmask = p->objmask;
        r->nonemask = p->nonemask;
        r->boolmask = p->boolmask;
        r->fid = h->fid;
        r->ts = p->ts;
        memcpy(r->s, p->s, (size_t)p->nslots * sizeof(Slot));
        r++;
    }
    h->len = h->nrecs = 0; /* their references moved out */
}

/* Drops the held records' references and forgets them. */
static void
held_clear(TailObject *pol, Held *h)
{
    HELD_EACH(h, p)
    {
        for (unsigned mask = p->objmask; mask != 0; mask &= mask - 1) {
            unsigned k = (unsigned)__builtin_ctz(mask);
            disown(pol, p->s[k].o);
            p->s[k].o = NULL;
        }
    }
    h->len = h->nrecs = h->collected = 0;
}

static void
list_append(List *l, int which, Held *h)
{
    Node *n = &h->nodes[which];
    if (n->in) {
        return; /* a dict's existing key keeps its place */
    }
    n->in = 1;
    n->prev = l->tail;
    n->next = NULL;
    if (l->tail != NULL) {
        l->tail->nodes[which].next = h;
    }
    else {
        l->head = h;
    }
    l->tail = h;
    l->n++;
}

static void
list_remove(List *l, int which, Held *h)
{
    Node *n = &h->nodes[which];
    if (!n->in) {
        return;
    }
    if (n->prev != NULL) {
        n->prev->nodes[which].next = n->next;
    }
    else {
        l->head = n->next;
    }
    if (n->next != NULL) {
        n->next->nodes[which].prev = n->prev;
    }
    else {
        l->tail = n->prev;
    }
    n->prev = n->next = NULL;
    n->in = 0;
    l->n--;
}

/* The key of a future in items (and in a linkset): its id, scattered. A
 * FidMap gives each run of consecutive keys (16 when this was measured, 4 now)
 * one home block (locality, for tables read in id order); a policy holds tens
 * of thousands of futures of consecutive ids, every block full, and at half
 * load a block whose home is taken moves whole: 7 to 17 probes a lookup with
 * runs of 16 (10,000 tasks x 10 futures; a sixth of feed()'s instructions). An
 * odd multiplier (a bijection, 0 for 0 alone) gives each id a block of its
 * own: 1.4 probes. A task's linkset is keyed alike: a task that lives the
 * whole run links thousands of futures of consecutive ids. */
static inline long long
items_key(long long fid)
{
    return (long long)((uint64_t)fid * 0x9E3779B97F4A7C15ULL);
}

#define LINKSET_FROM 16 /* links looked up in the array below this many, in a set above */

static int
links_has(const Held *h, long long fid)
{
    if (h->linkset.cap) {
        return fidset_has(&h->linkset, items_key(fid));
    }
    for (Py_ssize_t i = 0; i < h->nlinks; i++) {
        if (h->links[i] == fid) {
            return 1;
        }
    }
    return 0;
}

/* Past LINKSET_FROM links, linkset maps each to its place in links (+1), so
 * that a link is found and let go at once: a task that lives the whole run
 * awaits a future after another, and every one of them is let go in turn. */
static int
linkset_put(Held *h, Py_ssize_t i)
{
    if (fidmap_room_for_one(&h->linkset) < 0) {
        return -1;
    }
    return fidmap_put(&h->linkset, items_key(h->links[i]), (void *)(intptr_t)(i + 1));
}

static int
links_add(Held *h, long long fid)
{
    if (fid == 0 || links_has(h, fid)) {
        return 0;
    }
    if (h->nlinks == h->caplinks) {
        Py_ssize_t cap = h->caplinks * 2;
        long long *p = h->links == h->inline_links ? PyMem_RawMalloc((size_t)cap * sizeof(long long))
                                                   : PyMem_RawRealloc(h->links, (size_t)cap * sizeof(long long));
        if (p == NULL) {
            return -1;
        }
        if (h->links == h->inline_links) {
            memcpy(p, h->inline_links, sizeof(h->inline_links));
        }
        h->links = p;
        h->caplinks = cap;
    }
    h->links[h->nlinks++] = fid;
    if (h->linkset.cap) {
        return linkset_put(h, h->nlinks - 1);
    }
    if (h->nlinks >= LINKSET_FROM) {
        for (Py_ssize_t i = 0; i < h->nlinks; i++) {
            if (h->links[i] != 0 && linkset_put(h, i) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* Closes the holes of links, in order (and the places linkset holds). */
static void
links_compact(Held *h)
{
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < h->nlinks; i++) {
        if (h->links[i] != 0) {
            if (n != i) {
                h->links[n] = h->links[i];
                FidSlot *slot = fidmap_get(&h->linkset, items_key(h->links[n]));
                if (slot != NULL) {
                    slot->value = (void *)(intptr_t)(n + 1);
                }
            }
            n++;
        }
    }
    h->nlinks = n;
    h->holes = 0;
}

static void
links_discard(Held *h, long long fid)
{
    if (h->linkset.cap) {
        void *at = NULL;
        if (fidmap_remove(&h->linkset, items_key(fid), &at)) {
            h->links[(intptr_t)at - 1] = 0; /* a hole; iteration skips it */
            if (++h->holes > LINKSET_FROM && h->holes * 2 > (uint32_t)h->nlinks) {
                links_compact(h);
            }
        }
        return;
    }
    for (Py_ssize_t i = 0; i < h->nlinks; i++) {
        if (h->links[i] == fid) {
            h->links[i] = 0;
            return;
        }
    }
}

/* A Held as new: no records, no links (its place in the lists is the caller's). */
static void
held_reset(TailObject *p, Held *h)
{
    held_clear(p, h);
    if (h->data != h->inline_data) {
        PyMem_RawFree(h->data);
        h->data = h->inline_data;
        h->cap = INLINE_BYTES;
    }
    if (h->links != h->inline_links) {
        PyMem_RawFree(h->links);
        h->links = h->inline_links;
        h->caplinks = INLINE_LINKS;
    }
    h->nlinks = 0;
    h->holes = 0;
    fidset_free(&h->linkset);
}

/* ------------------------------------------------------------------------ */
/* fid -> Held (a FidMap, _records.h)                                        */

static Held *
items_get(const FidMap *t, long long fid)
{
    FidSlot *slot = fidmap_get(t, items_key(fid));
    return slot ? (Held *)slot->value : NULL;
}

static Held *
items_pop(FidMap *t, long long fid)
{
    void *value = NULL;
    return fidmap_remove(t, items_key(fid), &value) ? (Held *)value : NULL;
}

static int
items_put(FidMap *t, Held *h)
{
    return fidmap_room_for_one(t) < 0 ? -1 : fidmap_put(t, items_key(h->fid), h); /* room enough: never raises */
}

/* ------------------------------------------------------------------------ */
/* The policy                                                                */

/* Helds are carved out of slabs, not allocated one by one. A program with
 * tens of thousands of tasks pending has tail sampling hold every future they
 * await until they end (a task's links), and as many mallocs of half a
 * kilobyte from the drain thread's arena grew that arena a few pages at a time,
 * an mprotect() each, while the program's thread ran (10,000 tasks x 10
 * futures: 4,400 calls a run). A slab's Helds let go are handed out again
 * first, from the slab with room given most recently; a slab whose every Held
 * is let go is freed, but for KEEP_EMPTY of them, kept for the next futures. */
#define SLAB_HELDS 496 /* some 256 KiB */
#define KEEP_EMPTY 1

typedef struct Slab {
    struct Slab *prev, *next; /* in the policy's slabs with room; a full slab is in no list */
    Held *free;               /* its Helds let go, chained by nodes[0].next */
    Py_ssize_t live, used;    /* Helds handed out now; ever (helds[used..] never were) */
    void *block;              /* what was allocated: the slab is its first cache line on */
    Held helds[];             /* from the slab's second cache line on */
} Slab;

/* A slab at a cache line's start, in memory PyMem_Raw gives (16-byte aligned). */
static Slab *
slab_new(void)
{
    void *block = PyMem_RawMalloc(sizeof(Slab) + SLAB_HELDS * sizeof(Held) + 63);
    if (block == NULL) {
        return NULL;
    }
    Slab *s = (Slab *)(((uintptr_t)block + 63) & ~(uintptr_t)63);
    s->block = block;
    return s;
}

static void
slab_free(Slab *s)
{
    PyMem_RawFree(s->block);
}

static void
room_push(TailObject *p, Slab *s)
{
    s->prev = NULL;
    s->next = p->room;
    if (p->room != NULL) {
        p->room->prev = s;
    }
    p->room = s;
}

static void
room_remove(TailObject *p, Slab *s)
{
    if (s->prev != NULL) {
        s->prev->next = s->next;
    }
    else {
        p->room = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    s->prev = s->next = NULL;
}

static Held *
held_new(TailObject *p)
{
    Slab *s = p->room;
    if (s == NULL) {
        s = slab_new();
        if (s == NULL) {
            return NULL;
        }
        s->free = NULL;
        s->live = s->used = 0;
        room_push(p, s);
        p->nempty++;
    }
    Held *h = s->free;
    if (h != NULL) {
        s->free = h->nodes[0].next;
    }
    else {
        h = &s->helds[s->used++];
    }
    if (s->live++ == 0) {
        p->nempty--;
    }
    if (s->live == SLAB_HELDS) {
        room_remove(p, s);
    }
    /* everything but the inline storage, which is written before it is read */
    memset(h, 0, offsetof(Held, inline_links));
    h->slab = s;
    h->links = h->inline_links;
    h->caplinks = INLINE_LINKS;
    h->data = h->inline_data;
    h->cap = INLINE_BYTES;
    return h;
}

/* h, out of every list and table, let go: its references dropped, its place
 * in its slab handed out again. */
static void
held_recycle(TailObject *p, Held *h)
{
    held_reset(p, h);
    Slab *s = h->slab;
    h->nodes[0].next = s->free; /* in no list now */
    s->free = h;
    if (s->live-- == SLAB_HELDS) {
        room_push(p, s);
    }
    if (s->live == 0) {
        if (p->nempty < KEEP_EMPTY) {
            p->nempty++;
        }
        else {
            room_remove(p, s);
            slab_free(s);
        }
    }
}

static PyTypeObject *TailType;
static PyObject *s_FINISHED, *s_PENDING, *s_CANCELLED; /* interned, as the core writes COLLECTED's state */

/* Must r be read as an object, with the GIL? A tuple (F_RAW: a lint, a
 * pipeline's record), or a state that is not one of the core's strings. */
static int
reads_objects(const Rec *r)
{
    if (r->flags & F_RAW) {
        return 1;
    }
    if (r->op == OP_COLLECTED && r->nfields > 0) {
        PyObject *state = slot_obj(r, 0);
        return state != NULL && state != s_FINISHED && state != s_PENDING && state != s_CANCELLED;
    }
    return 0;
}

/* A record's slot k as an int: 1 with *v set, 0 for None (or anything else). */
static int
slot_int(const Rec *r, int k, long long *v)
{
    if (r->flags & F_RAW) {
        PyObject *t = r->s[0].o;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) <= 3 + k) {
            return 0;
        }
        PyObject *item = PyTuple_GET_ITEM(t, 3 + k);
        if (!PyLong_Check(item)) {
            return 0;
        }
        *v = PyLong_AsLongLong(item);
        if (*v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return 1;
    }
    if (k >= r->nfields || !slot_is_int(r, k)) {
        return 0;
    }
    *v = r->s[k].i;
    return 1;
}

/* Is slot k the str "FINISHED"? (COLLECTED's state) */
static int
slot_is_finished(const Rec *r, int k)
{
    PyObject *o;
    if (r->flags & F_RAW) {
        PyObject *t = r->s[0].o;
        o = PyTuple_Check(t) && PyTuple_GET_SIZE(t) > 3 + k ? PyTuple_GET_ITEM(t, 3 + k) : NULL;
    }
    else {
        o = k < r->nfields ? slot_obj(r, k) : NULL;
    }
    if (o == s_FINISHED || o == s_PENDING || o == s_CANCELLED) {
        return o == s_FINISHED; /* read without the GIL (reads_objects) */
    }
    return o != NULL && PyUnicode_Check(o) && PyUnicode_CompareWithASCIIString(o, "FINISHED") == 0;
}

#define PREFETCH 8

static inline void
prefetch_slot(const FidMap *m, long long fid)
{
    if (m->cap) {
        __builtin_prefetch(&m->slots[tf_hash_fid(items_key(fid)) & (m->cap - 1)]);
    }
}

static inline void
prefetch_held(const FidMap *m, long long fid)
{
    if (m->cap) {
        const FidSlot *slot = &m->slots[tf_hash_fid(items_key(fid)) & (m->cap - 1)];
        if (slot->fid == items_key(fid)) {
            const char *h = slot->value;
            for (size_t at = 0; at < sizeof(Held); at += 64) {
                __builtin_prefetch(h + at);
            }
        }
    }
}

static void pin(TailObject *p, long long fid, long long delta);
static int keep(TailObject *p, long long fid, Recs *out);
static void drop(TailObject *p, long long fid);

/* A pin more (delta 1) or less (-1) on a held future. */
static void
pin_held(TailObject *p, Held *h, long long delta)
{
    h->pins += delta;
    if (h->done) {
        if (h->pins > 0) {
            list_remove(&p->lists[L_LINGERING], L_LINGERING, h);
        }
        else {
            list_append(&p->lists[L_LINGERING], L_LINGERING, h);
        }
    }
}

static void
pin(TailObject *p, long long fid, long long delta)
{
    Held *h = items_get(&p->items, fid);
    if (h != NULL) {
        pin_held(p, h, delta);
    }
}

static void
pin_chain(TailObject *p, int has_parent, long long parent, long long delta)
{
    for (int seen = 0; has_parent && seen < 1000; seen++) { /* chains cannot loop; be safe anyway */
        Held *h = items_get(&p->items, parent);
        if (h == NULL) {
            return;
        }
        pin_held(p, h, delta);
        has_parent = h->has_parent;
        parent = h->parent;
    }
}

/* fid is no longer undecided: what it pinned may be forgotten. */
static void
undecide(TailObject *p, Held *h)
{
    list_remove(&p->lists[L_UNDECIDED], L_UNDECIDED, h);
    pin_chain(p, h->has_parent, h->parent, -1);
    if (h->nlinks > 1) {
        /* a task's awaited futures, cold by now: ask for them all at once */
        for (Py_ssize_t i = 0; i < h->nlinks; i++) {
            prefetch_slot(&p->items, h->links[i]);
        }
        for (Py_ssize_t i = 0; i < h->nlinks; i++) {
            prefetch_held(&p->items, h->links[i]);
        }
    }
    for (Py_ssize_t i = 0; i < h->nlinks; i++) {
        if (h->links[i] != 0) {
            pin(p, h->links[i], -1);
        }
    }
}

static int
born_push(TailObject *p, long long created_ns, long long fid)
{
    if (p->nborn == p->capborn) {
        Py_ssize_t cap = p->capborn ? p->capborn * 2 : 1024;
        Born *b = PyMem_RawMalloc((size_t)cap * sizeof(Born));
        if (b == NULL) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < p->nborn; i++) {
            b[i] = p->born[(p->born_head + i) % p->capborn];
        }
        PyMem_RawFree(p->born);
        p->born = b;
        p->born_head = 0;
        p->capborn = cap;
    }
    p->born[(p->born_head + p->nborn) % p->capborn] = (Born){created_ns, fid};
    p->nborn++;
    return 0;
}

static void
forget_oldest(TailObject *p)
{
    Held *old = p->lists[L_LINGERING].head;
    if (old != NULL) {
        list_remove(&p->lists[L_LINGERING], L_LINGERING, old);
    }
    else {
        old = p->lists[L_UNDECIDED].head; /* never NULL: hold() made one undecided */
    }
    if (old != NULL) {
        drop(p, old->fid);
    }
}

static int
hold(TailObject *p, const Rec *r)
{
    long long task_id = 0, is_task = 0;
    int has_task = slot_int(r, 0, &task_id);
    slot_int(r, 1, &is_task);
    Held *h = items_get(&p->items, r->fid);
    if (h != NULL) {
        /* A second CREATED of one id: the reference starts it afresh in its
         * place (the orders it was in are kept, as a dict's key keeps its place). */
        held_reset(p, h);
        h->pins = 0;
        h->done = 0;
    }
    else {
        h = held_new(p);
        if (h == NULL) {
            return -1;
        }
        h->fid = r->fid;
        if (items_put(&p->items, h) < 0) {
            held_recycle(p, h);
            return -1;
        }
    }
    h->created_ns = r->ts;
    h->has_parent = is_task && has_task;
    h->parent = h->has_parent ? task_id : 0;
    if (held_push(p, h, r) < 0) {
        return -1;
    }
    list_append(&p->lists[L_UNDECIDED], L_UNDECIDED, h);
    if (born_push(p, h->created_ns, h->fid) < 0) {
        return -1;
    }
    pin_chain(p, h->has_parent, h->parent, +1);
    if ((Py_ssize_t)p->items.used > p->max_held) {
        forget_oldest(p);
    }
    return 0;
}

/* other_id (a task) awaits fid: each needs the other while either is undecided. */
static int
link_futures(TailObject *p, long long fid, Held *h, long long other_id)
{
    if (links_add(h, other_id) < 0) {
        return -1;
    }
    Held *other = items_get(&p->items, other_id);
    if (other == NULL) {
        return 0;
    }
    if (links_add(other, fid) < 0) {
        return -1;
    }
    if (!h->done) {
        pin_held(p, other, +1);
    }
    if (!other->done) {
        pin_held(p, h, +1);
    }
    return 0;
}

/* A healthy end: undecided -> lingering (or pinned, if still needed). */
static void
settle(TailObject *p, Held *h)
{
    h->done = 1;
    undecide(p, h);
    if (!h->pins) {
        list_append(&p->lists[L_LINGERING], L_LINGERING, h);
    }
    while (p->lists[L_LINGERING].n > p->linger) {
        Held *old = p->lists[L_LINGERING].head;
        Held *next = old->nodes[L_LINGERING].next;
        if (next != NULL) { /* the next one to go, while this one goes */
            prefetch_slot(&p->items, next->fid);
            for (size_t at = 0; at < sizeof(Held); at += 64) {
                __builtin_prefetch((const char *)next + at);
            }
        }
        list_remove(&p->lists[L_LINGERING], L_LINGERING, old);
        drop(p, old->fid);
    }
}

/* Take one more record of a held future: 1 when it keeps the future, -1 on error. */
static int
decides(TailObject *p, Held *h, const Rec *r)
{
    switch (r->op) {
    case OP_FAILED:
    case OP_CANCELLED:
    case OP_LINT:
    case OP_CAUGHT:
        return 1;
    case OP_COLLECTED:
        return !slot_is_finished(r, 0);
    case OP_CB_ADDED: {
        long long awaiter;
        if (slot_int(r, 2, &awaiter) && !links_has(h, awaiter)) {
            return link_futures(p, r->fid, h, awaiter);
        }
        return 0;
    }
    case OP_RESOLVED:
        if (!h->done) {
            if (r->ts - h->created_ns >= p->slow_ns) {
                return 1;
            }
            settle(p, h);
        }
        return 0;
    default:
        return 0;
    }
}

/* Moves fid's held future into group (kept from now on): 1 if it was held. */
static int
take(TailObject *p, long long fid, Held ***group, Py_ssize_t *n, Py_ssize_t *cap)
{
    Held *h = items_pop(&p->items, fid);
    if (h == NULL) {
        return 0;
    }
    if (!h->done) {
        undecide(p, h);
    }
    list_remove(&p->lists[L_LINGERING], L_LINGERING, h);
    list_remove(&p->lists[L_UNDECIDED], L_UNDECIDED, h);
    if (*n == *cap) {
        Py_ssize_t c = *cap ? *cap * 2 : 8;
        Held **g = PyMem_RawRealloc(*group, (size_t)c * sizeof(Held *));
        if (g == NULL) {
            held_recycle(p, h);
            return -1;
        }
        *group = g;
        *cap = c;
    }
    (*group)[(*n)++] = h;
    if (fidmap_room_for_one(&p->kept) < 0 || fidset_add(&p->kept, fid) < 0) {
        return -1;
    }
    if (h->collected) {
        fidset_discard(&p->kept, fid); /* its history is over already */
    }
    return 1;
}

typedef struct {
    long long ts;
    Py_ssize_t seq;
} Order;

static int
by_time(const void *a, const void *b)
{
    const Order *x = a, *y = b;
    if (x->ts != y->ts) {
        return x->ts < y->ts ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : (x->seq > y->seq); /* as recorded: a stable sort */
}

/* Keep fid's group; emit its members' records in recorded order. */
static int
keep(TailObject *p, long long fid, Recs *out)
{
    Held **group = NULL;
    Py_ssize_t n = 0, cap = 0;
    int rc = take(p, fid, &group, &n, &cap);
    if (rc > 0) {
        Held *first = group[0];
        /* the links as they are now: taking a member changes no one's links */
        Py_ssize_t nlinks = first->nlinks;
        for (Py_ssize_t i = 0; rc >= 0 && i < nlinks; i++) {
            if (first->links[i] != 0) {
                rc = take(p, first->links[i], &group, &n, &cap);
            }
        }
        Py_ssize_t members = n;
        for (Py_ssize_t m = 0; rc >= 0 && m < members; m++) {
            int has_parent = group[m]->has_parent;
            long long parent = group[m]->parent;
            while (has_parent && (rc = take(p, parent, &group, &n, &cap)) > 0) {
                has_parent = group[n - 1]->has_parent;
                parent = group[n - 1]->parent;
            }
        }
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t m = 0; m < n; m++) {
        total += group[m]->nrecs;
    }
    Order *order = total ? PyMem_RawMalloc((size_t)total * sizeof(Order)) : NULL;
    Rec *flat = total ? PyMem_RawMalloc((size_t)total * sizeof(Rec)) : NULL;
    if (rc >= 0 && total && (order == NULL || flat == NULL || out_room(out, total) < 0)) {
        rc = -1;
    }
    if (rc >= 0 && total) {
        Py_ssize_t k = 0;
        for (Py_ssize_t m = 0; m < n; m++) {
            Py_ssize_t first = k;
            k += group[m]->nrecs;
            held_unpack(group[m], &flat[first]); /* moved, references and all */
            for (Py_ssize_t i = first; i < k; i++) {
                order[i] = (Order){flat[i].ts, i};
            }
        }
        qsort(order, (size_t)total, sizeof(Order), by_time);
        for (Py_ssize_t i = 0; i < total; i++) {
            out->recs[out->n++] = flat[order[i].seq];
        }
    }
    PyMem_RawFree(order);
    PyMem_RawFree(flat);
    for (Py_ssize_t m = 0; m < n; m++) {
        held_recycle(p, group[m]); /* its records moved out (or, on error, released) */
    }
    PyMem_RawFree(group);
    return rc < 0 ? -1 : 0;
}

static void
drop(TailObject *p, long long fid)
{
    Held *h = items_pop(&p->items, fid);
    if (h == NULL) {
        return;
    }
    p->forgotten++;
    if (!h->done) {
        undecide(p, h);
    }
    list_remove(&p->lists[L_LINGERING], L_LINGERING, h);
    list_remove(&p->lists[L_UNDECIDED], L_UNDECIDED, h);
    for (Py_ssize_t i = 0; i < h->nlinks; i++) {
        Held *linked = h->links[i] != 0 ? items_get(&p->items, h->links[i]) : NULL;
        if (linked != NULL) {
            links_discard(linked, fid);
        }
    }
    held_recycle(p, h);
}

static int
expire(TailObject *p, long long now_ns, Recs *out)
{
    while (p->nborn) {
        Born b = p->born[p->born_head];
        Held *h = items_get(&p->items, b.fid);
        if (h == NULL || !h->nodes[L_UNDECIDED].in) {
            p->born_head = (p->born_head + 1) % p->capborn;
            p->nborn--;
            continue;
        }
        if (now_ns - b.created_ns < p->slow_ns) {
            break;
        }
        p->born_head = (p->born_head + 1) % p->capborn;
        p->nborn--;
        if (keep(p, b.fid, out) < 0) { /* still pending after `slow` */
            return -1;
        }
    }
    return 0;
}

static int
feed_one(TailObject *p, const Rec *r, Recs *out)
{
    if (p->save != NULL && reads_objects(r)) {
        gil(p);
        p->keep_gil = 1; /* the rest of the call: odd records come together (a test's, the pipeline's) */
    }
    if (fidset_has(&p->kept, r->fid)) {
        if (out_copy(p, out, r) < 0) {
            return -1;
        }
        if (r->op == OP_COLLECTED) {
            fidset_discard(&p->kept, r->fid);
        }
        return 0;
    }
    if (r->op == OP_CREATED) {
        return hold(p, r);
    }
    Held *h = items_get(&p->items, r->fid);
    if (h == NULL) {
        return r->fid == 0 ? out_copy(p, out, r) : 0; /* a loop-wide lint; else not held */
    }
    if (held_push(p, h, r) < 0) {
        return -1;
    }
    int rc = decides(p, h, r);
    if (rc > 0) {
        return keep(p, r->fid, out);
    }
    return rc;
}

/* One call at a time: take the lock (waiting without the GIL for another
 * thread's call). A call already under way on this thread (a finalizer run by
 * one of its decrements) is an error, as is a lock held at fork() by a thread
 * of the parent: the child makes a policy of its own. */
static int
enter(TailObject *p)
{
    if (p->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "TailPolicy() was not initialised");
        return -1;
    }
    if (!PyThread_acquire_lock(p->lock, NOWAIT_LOCK)) {
        long pid = p->owner_pid;
        if (pid != 0 && (pid != (long)getpid() || p->owner == PyThread_get_thread_ident())) {
            PyErr_SetString(PyExc_RuntimeError, "TailPolicy: feed() or flush() is already running (one at a time)");
            return -1;
        }
        /* Another thread's call. Waited for, but not past the start of the
         * interpreter's finalization: a daemon thread taking the GIL back then
         * exits, its call and the lock with it. */
        PyLockStatus got = PY_LOCK_FAILURE;
        while (got != PY_LOCK_ACQUIRED) {
            if (tf_is_finalizing()) {
                PyErr_SetString(PyExc_RuntimeError, "TailPolicy: a feed() or flush() never ended (the interpreter exits)");
                return -1;
            }
            Py_BEGIN_ALLOW_THREADS
            got = PyThread_acquire_lock_timed(p->lock, 100000, 0); /* 100 ms */
            Py_END_ALLOW_THREADS
        }
    }
    p->owner = PyThread_get_thread_ident();
    p->owner_pid = (long)getpid();
    p->calling = 1;
    p->keep_gil = 0;
    return 0;
}

/* The end of a call, with the GIL: queued references applied, the lock let go;
 * the error of a failure that could not set one without the GIL. */
static void
leave(TailObject *p, int rc)
{
    gil(p);
    refs_apply(&p->refs);
    p->calling = 0;
    p->owner = 0;
    p->owner_pid = 0;
    PyThread_release_lock(p->lock);
    if (rc < 0 && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
}

static PyObject *
tail_feed(TailObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"records", "now_ns", NULL};
    PyObject *records;
    long long now_ns;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OL:feed", kwlist, &records, &now_ns)) {
        return NULL;
    }
    PyObject *batch = tf_batch_of(records);
    if (batch == NULL || enter(self) < 0) {
        Py_XDECREF(batch);
        return NULL;
    }
    const Rec *recs;
    Py_ssize_t n;
    tf_batch_view(batch, &recs, &n);
    Recs out = {NULL, 0, 0};
    int rc = 0;
    /* The batch holds every object its records name, and nothing else touches
     * this policy's state meanwhile (the lock): the GIL can go. */
    nogil(self);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        /* A batch's records name tens of thousands of futures, held in tables
         * bigger than the cache, each looked up once or twice, independently:
         * ask for the slots and the held futures a few records ahead. */
        if (i + 2 * PREFETCH < n) {
            prefetch_slot(&self->items, recs[i + 2 * PREFETCH].fid);
        }
        if (i + PREFETCH < n) {
            prefetch_held(&self->items, recs[i + PREFETCH].fid);
        }
        rc = feed_one(self, &recs[i], &out);
        nogil(self); /* after a reference that had no room to be queued */
    }
    if (rc == 0) {
        rc = expire(self, now_ns, &out);
    }
    leave(self, rc);
    Py_DECREF(batch); /* after the increments: the batch held their objects */
    if (rc < 0) {
        recs_free(&out);
        return NULL;
    }
    return recs_batch(&out);
}

static PyObject *
tail_flush(TailObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"now_ns", NULL};
    long long now_ns;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L:flush", kwlist, &now_ns) || enter(self) < 0) {
        return NULL;
    }
    Recs out = {NULL, 0, 0};
    nogil(self);
    int rc = expire(self, now_ns, &out);
    leave(self, rc);
    if (rc < 0) {
        recs_free(&out);
        return NULL;
    }
    return recs_batch(&out);
}

static void
tail_free_state(TailObject *self)
{
    for (size_t i = 0; i < self->items.cap; i++) { /* every held future is in items */
        if (self->items.slots[i].fid != 0) {
            held_recycle(self, self->items.slots[i].value); /* its slab freed once empty, but for KEEP_EMPTY */
        }
    }
    memset(self->lists, 0, sizeof(self->lists));
    while (self->room != NULL) { /* every slab empty now */
        Slab *next = self->room->next;
        slab_free(self->room);
        self->room = next;
    }
    self->nempty = 0;
    fidmap_free(&self->items);
    fidset_free(&self->kept);
    PyMem_RawFree(self->born);
    self->born = NULL;
    self->born_head = self->nborn = self->capborn = 0;
}

static int
tail_init(TailObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"slow_ns", "linger", "max_held", NULL};
    long long slow_ns;
    Py_ssize_t linger = 10000, max_held = 500000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|$nn:TailPolicy", kwlist, &slow_ns, &linger, &max_held)) {
        return -1;
    }
    if (self->lock == NULL && (self->lock = PyThread_allocate_lock()) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (enter(self) < 0) {
        return -1;
    }
    tail_free_state(self); /* __init__ again: what was held is let go */
    self->slow_ns = slow_ns;
    self->linger = linger;
    self->max_held = max_held;
    self->forgotten = 0;
    leave(self, 0);
    return 0;
}

static void
tail_dealloc(TailObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->lock == NULL) {
        tail_free_state(self); /* never initialised: nothing held */
    }
    else if (PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        tail_free_state(self);
        PyMem_RawFree(self->refs.slots);
        PyMem_RawFree(self->refs.filled);
        PyThread_release_lock(self->lock);
        PyThread_free_lock(self->lock);
    }
    /* else the child of a fork() made during a call: its state half-changed and
     * its queued references never applied; left as they are (a leak, once). */
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static Py_ssize_t
tail_len(TailObject *self)
{
    return (Py_ssize_t)self->items.used;
}

static PyObject *
tail_repr(TailObject *self)
{
    return PyUnicode_FromFormat("<tracedfuture TailPolicy holding %zd futures>", (Py_ssize_t)self->items.used);
}

static PyMemberDef tail_members[] = {
    {"slow_ns", T_LONGLONG, offsetof(TailObject, slow_ns), READONLY, "what counts as slow, in nanoseconds"},
    {"linger", T_PYSSIZET, offsetof(TailObject, linger), READONLY, "healthy finished futures kept for a while"},
    {"max_held", T_PYSSIZET, offsetof(TailObject, max_held), READONLY, "futures held at most"},
    {"forgotten", T_LONGLONG, offsetof(TailObject, forgotten), 0, "futures dropped whole, never converted"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef tail_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))tail_feed, METH_VARARGS | METH_KEYWORDS,
     "feed(records, now_ns) -> RecordBatch: the records to convert now, in order (see _pipeline._tail)."},
    {"flush", (PyCFunction)(void (*)(void))tail_flush, METH_VARARGS | METH_KEYWORDS,
     "flush(now_ns) -> RecordBatch: at shutdown, what is still pending after `slow`."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot tail_slots[] = {
    {Py_tp_doc, "TailPolicy(slow_ns, *, linger=10000, max_held=500000): tail sampling on raw records, in C; "
                "the twin of tracedfuture._pipeline._tail.TailPolicy."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, tail_init},
    {Py_tp_dealloc, tail_dealloc},
    {Py_tp_repr, tail_repr},
    {Py_sq_length, tail_len},
    {Py_tp_members, tail_members},
    {Py_tp_methods, tail_methods},
    {0, NULL},
};

static PyType_Spec tail_spec = {
    .name = "tracedfuture._core._cfuture.TailPolicy",
    .basicsize = sizeof(TailObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = tail_slots,
};

int
tf_tail_add_type(PyObject *module)
{
    if ((s_FINISHED = PyUnicode_InternFromString("FINISHED")) == NULL ||
        (s_PENDING = PyUnicode_InternFromString("PENDING")) == NULL ||
        (s_CANCELLED = PyUnicode_InternFromString("CANCELLED")) == NULL) {
        return -1;
    }
    TailType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &tail_spec, NULL);
    if (TailType == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "TailPolicy", (PyObject *)TailType);
}
